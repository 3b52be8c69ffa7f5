#!/usr/bin/env bash
# Sets up GroundZero on a fresh machine: ffmpeg, chromium and espeak-ng (Debian packages), a virtual
# environment in .venv with the CPU build of torch 2.13.0, and the project in
# editable mode with its dev extras. Safe to run again: it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# apt_install PACKAGE: install a Debian package when we are root on a Debian-like system;
# returns 1 (and installs nothing) otherwise.
apt_install() {
  command -v apt-get >/dev/null && [ "$(id -u)" = 0 ] || return 1
  echo "setup: installing $1 (Debian package)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null
}

if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then
  apt_install ffmpeg || {
    echo "setup: ffmpeg/ffprobe not found; install them (e.g. 'sudo apt-get install ffmpeg') and run again" >&2
    exit 1
  }
fi

# Chromium (Debian package) drives the search page's browser test through Playwright; the test
# is skipped without it, so a missing one is only a note. Playwright's own browser downloads are not used.
if ! command -v chromium >/dev/null; then
  apt_install chromium ||
    echo "setup: chromium not found; the browser test will be skipped (e.g. 'sudo apt-get install chromium')" >&2
fi

# espeak-ng (Debian package) speaks the synthetic lectures and depositions (groundzero.synthetic.talks);
# their tests are skipped without it.
if ! command -v espeak-ng >/dev/null; then
  apt_install espeak-ng ||
    echo "setup: espeak-ng not found; the talks archive and its tests need it (e.g. 'sudo apt-get install espeak-ng')" >&2
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
export PIP_CONSTRAINT="$PWD/constraints.txt"
export PIP_DISABLE_PIP_VERSION_CHECK=1
# torch first, pinned: anything depending on plain `torch` would otherwise pull CUDA wheels.
quiet_pip() {  # pip -q still repeats this machine's index warnings; keep real errors
  .venv/bin/python -m pip install -q "$@" 2>&1 | { grep -v '^WARNING: Location' || true; }
}
quiet_pip "torch==2.13.0"
quiet_pip -e ".[dev]"
echo "setup: ready (.venv/bin/groundzero)" >&2
