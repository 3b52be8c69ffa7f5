#!/usr/bin/env bash
# The main job on the embedded defaults: set up, generate a small synthetic archive
# with known answers (ffmpeg), index it (local Ray, local folder, the bundled demo
# model: backbone + grounding head), search it, and show every annotated query's
# top result beside its true span with the IoU, including queries whose right
# answer is "not found"; then a lecture and deposition archive searched by what is said,
# shown as text and seen. Usage: bash scripts/demo.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT=${1:-demo-out}
GZ=.venv/bin/groundzero
export HF_HUB_OFFLINE=1
# 3 five-minute videos of the held-out test split (attribute pairs never seen in training)
$GZ synth "$OUT/archive" --train-videos 0 --val-videos 0 --test-videos 3 --minutes 5 --queries-per-video 5
printf 'not a video\n' > "$OUT/archive/test/README.txt"   # shows how a bad file is reported
set +e
$GZ index "$OUT/archive/test" --index "$OUT/index" --model demo
rc=$?
set -e
[ $rc -eq 0 ] || [ $rc -eq 3 ] || exit $rc   # 3 = indexed, but some files failed (README.txt)
$GZ catalog list --index "$OUT/index"
QUERY=$(head -n 1 "$OUT/archive/test.jsonl" | .venv/bin/python -c 'import json, sys; print(json.load(sys.stdin)["query"])')
$GZ search "$QUERY" --index "$OUT/index" --top 3
$GZ eval --index "$OUT/index" --gt "$OUT/archive/test.jsonl" --per-query
# What is said and what is shown: lectures and depositions with speech (captions as sidecar files
# or subtitle streams), slides and exhibit cards (read by OCR), cutaways to the demo's shapes
.venv/bin/python -m groundzero.synthetic.talks --out "$OUT/talks" --videos 3
$GZ index "$OUT/talks/videos" --index "$OUT/talks-index" --model demo --ocr
$GZ search "the witness is handed exhibit" --index "$OUT/talks-index" --top 3
.venv/bin/python -m groundzero.synthetic.talks_show --archive "$OUT/talks" --index "$OUT/talks-index"
