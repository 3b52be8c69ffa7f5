#!/usr/bin/env bash
# The main job on the embedded defaults: set up, generate a small sample
# archive with ffmpeg, index it (local Ray, local folder, bundled model),
# show the catalog, search it. Usage: bash scripts/demo.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT=${1:-demo-out}
A="$OUT/archive"
mkdir -p "$A/lectures"
gen() { [ -s "$2" ] || ffmpeg -nostdin -loglevel error -y -f lavfi -i "$1" -c:v libx264 -preset ultrafast -pix_fmt yuv420p "$2"; }
gen "testsrc2=size=640x360:rate=25:duration=150" "$A/lectures/testsrc2.mp4"
gen "smptebars=size=640x360:rate=25:duration=90" "$A/lectures/bars.mp4"
gen "mandelbrot=size=320x240:rate=10,trim=duration=60" "$A/mandelbrot.mp4"
gen "color=c=red:s=320x240:r=10:d=30[a];color=c=blue:s=320x240:r=10:d=30[b];[a][b]concat=n=2:v=1:a=0" "$A/red_then_blue.mp4"
printf 'not a video\n' > "$A/README.txt"   # shows how a bad file is reported
export HF_HUB_OFFLINE=1
set +e
.venv/bin/groundzero index "$A" --index "$OUT/index"
rc=$?
set -e
[ $rc -eq 0 ] || [ $rc -eq 3 ] || exit $rc   # 3 = indexed, but some files failed (README.txt)
.venv/bin/groundzero catalog --index "$OUT/index"
.venv/bin/groundzero search "a red screen" --index "$OUT/index" --top 5
