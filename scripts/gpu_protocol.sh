#!/usr/bin/env bash
# Issue 30, item 5: the chosen protocol at the papers' scale on one GPU (params/sweeps/gpu_protocol.yaml: the
# headline rows, one seed, both orders), keeping only the small result files.
#
#   scripts/gpu_protocol.sh                       # on a GPU machine, from the project root
#   OUT=/tmp/out JOBS=4 scripts/gpu_protocol.sh   # where to copy the small files; runs trained at once
#   scripts/gpu_protocol.sh --results /tmp/r -p output_dir /tmp/o -p max_train 40 ...   # a tiny check (tests)
#
# Every argument goes to both `frkit sweep` calls (its --results / -p KEY VALUE). The results folder holds only what
# a sweep exports (params, environment, metrics, AUC matrix, progress, checksums; never checkpoints or tensors);
# the summary and the probe report are rebuilt from it. A stopped run resumes when the script runs again.
set -uo pipefail
SWEEP=${GPU_SWEEP:-params/sweeps/gpu_protocol.yaml}
OUT=${OUT:-outputs/gpu_protocol_files}
JOBS=${JOBS:-4}
python - <<'PY'
import torch
from frkit.precision import cpu_model
print("device:", torch.cuda.get_device_name() if torch.cuda.is_available() else f"{cpu_model()} (no GPU)")
PY
frkit sweep "$SWEEP" --jobs "$JOBS" "$@"
status=$?
frkit sweep "$SWEEP" --summary-only "$@" > /dev/null || status=$?
results=$(frkit sweep "$SWEEP" --print-results "$@") || exit 2
mkdir -p "$OUT"
# small text files only: what the device tool brings back and what results/ may hold
(cd "$results" && find . -type f \( -name '*.json' -o -name '*.csv' -o -name '*.md' -o -name '*.yaml' \) -size -1024k \
    -print0 | tar --null -cf - --files-from=-) | tar -xf - -C "$OUT"
echo "results: $results; small files copied to $OUT"
exit $status
