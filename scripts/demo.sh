#!/usr/bin/env bash
# The main job, end to end on CPU (`make demo`): synthetic EVICAN in the release layout -> the EVICAN
# converter -> dataset statistics -> train the CPU demo model -> test it -> Table I / per-class AP.
# Everything lands in work_dirs/demo/ (data in data/). PY selects the interpreter (default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
WORK=${WORK:-work_dirs/demo}
SRC=data/synthetic_evican
DST=data/synthetic_evican_prepared
CONFIG=configs/demo/deepcis_s14-dcnv2_fpn_demo_synthetic-evican.py
start=$(date +%s)
mkdir -p "$WORK"
stage() { echo; echo "=== demo: $* ($(( $(date +%s) - start )) s)"; }

stage "1/5 synthetic EVICAN in the release layout -> $SRC"
"$PY" scripts/dataset_converters/make_synthetic_evican.py "$SRC" --demo
stage "2/5 EVICAN converter -> $DST"
"$PY" scripts/dataset_converters/prepare_evican.py "$SRC" "$DST" | tee "$WORK/dataset_summary.md"
stage "3/5 instance statistics and suggested anchors -> $WORK/stats"
"$PY" scripts/analysis_tools/dataset_stats.py "$DST" --out "$WORK/stats"
stage "4/5 train $CONFIG (log: $WORK/train.log)"
"$PY" tools/train.py "$CONFIG" --work-dir "$WORK" > "$WORK/train.log" 2>&1 || {
  tail -n 30 "$WORK/train.log"; echo "demo: training failed, see $WORK/train.log" >&2; exit 1; }
grep -E "Iter\(train\) \[ *[0-9]*0/" "$WORK/train.log" | awk 'NR % 5 == 0' | cut -c1-150 || true
CKPT=$(cat "$WORK/last_checkpoint")
stage "5/5 test $CKPT on the eval split (log: $WORK/test.log)"
"$PY" tools/test.py "$CONFIG" "$CKPT" --work-dir "$WORK" > "$WORK/test.log" 2>&1 || {
  tail -n 30 "$WORK/test.log"; echo "demo: test failed, see $WORK/test.log" >&2; exit 1; }
TABLES=$(ls -d "$WORK"/ap_tables/test_* | sort | tail -n 1)
echo
cat "$TABLES/table1.md"
echo
echo "demo: done in $(( $(date +%s) - start )) s; tables, per-class AP and plots in $TABLES"
