#!/usr/bin/env bash
# H200 latency tables for tiny, pixel-1.6b and latent: every resolution, bf16, batch 1, blocks measured
# one shape at a time from the max supernet (pixel-1.6b: 1.6B params, ~3 GB in bf16), then validated
# end to end on a few extracted subnets (largest and smallest at the top resolution included).
#
#   OUT=/path/to/out bash benchmarks/gpu_latency.sh [EXPERIMENT ...]     (default: tiny pixel-1.6b latent)
#
# Writes, per experiment:  $OUT/<name>/latency-h200.parquet   (ship as experiments/<name>/latency-h200.parquet)
#                          $OUT/<name>/parity-h200.html, $OUT/<name>/measure.log, $OUT/<name>/validate.log
# and $OUT/summary.txt. Measuring resumes: run it again with the same $OUT and finished rows are skipped.
# Knobs (environment): REPEATS (15), WARMUP (3), VAL_N (6), VAL_REPEATS (7), STEP_TIMEOUT (s, 420), RES (all),
# DEVICE (cuda), DTYPE (bf16), LABEL (h200). A CPU dry run of the script's logic:
#   OUT=/tmp/g DEVICE=cpu DTYPE=fp32 LABEL=cpu-dry RES=32 REPEATS=2 VAL_N=3 bash benchmarks/gpu_latency.sh tiny
set -uo pipefail

OUT=${OUT:?set OUT to the output folder}
REPEATS=${REPEATS:-15}
WARMUP=${WARMUP:-3}
VAL_N=${VAL_N:-6}
VAL_REPEATS=${VAL_REPEATS:-7}
STEP_TIMEOUT=${STEP_TIMEOUT:-420}
RES=${RES:-all}
DEVICE=${DEVICE:-cuda}
DTYPE=${DTYPE:-bf16}
LABEL=${LABEL:-h200}
EXPERIMENTS=("$@")
[ ${#EXPERIMENTS[@]} -eq 0 ] && EXPERIMENTS=(tiny pixel-1.6b latent)
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
export TQDM_MININTERVAL=5 PYTHONUNBUFFERED=1

# A python with torch (CUDA) and sned's dependencies: the checkout's venv if it has CUDA, else the system one.
PY=${PY:-}
for candidate in "$PY" .venv/bin/python python3 python; do
  [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1 || continue
  if "$candidate" -c "import torch, sys; sys.exit(0 if '$DEVICE' == 'cpu' or torch.cuda.is_available() else 1)" \
      2>/dev/null; then
    PY=$candidate; break
  fi
done
if [ -z "$PY" ]; then echo "no python with torch (and CUDA for DEVICE=$DEVICE) found" | tee "$OUT/summary.txt"; exit 1; fi

# sned installs as sned.{supernet,search,predictors,experiments} from top-level folders; without an
# install, a folder of symlinks on PYTHONPATH gives the same package layout (namespace package `sned`).
if ! "$PY" -c "import sned.predictors.latency_measure" 2>/dev/null; then
  SHIM=$(mktemp -d)/shim
  mkdir -p "$SHIM/sned"
  for pkg in supernet search predictors experiments; do ln -s "$PWD/$pkg" "$SHIM/sned/$pkg"; done
  export PYTHONPATH="$SHIM${PYTHONPATH:+:$PYTHONPATH}"
fi
missing=$("$PY" - <<'EOF'
import importlib
names = ["numpy", "pandas", "pyarrow", "yaml", "einops", "tqdm", "scipy", "plotly"]
print(" ".join(n for n in names if importlib.util.find_spec(n) is None))
EOF
)
if [ -n "$missing" ]; then echo "missing python packages: $missing" | tee "$OUT/summary.txt"; exit 1; fi
SNED=("$PY" -m sned.search.cli)

{
  echo "gpu latency tables, $(date -u +%FT%TZ)"
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda,
                               torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader 2>/dev/null || true
} | tee "$OUT/summary.txt"

status=0
for name in "${EXPERIMENTS[@]}"; do
  dir="$OUT/$name"; table="$dir/latency-$LABEL.parquet"
  mkdir -p "$dir"
  start=$(date +%s)
  timeout "$STEP_TIMEOUT" "${SNED[@]}" latency measure "$name" --device "$DEVICE" --dtype "$DTYPE" --batch 1 \
      --res "$RES" --repeats "$REPEATS" --warmup "$WARMUP" --device-name "$LABEL" --out "$table" 2>&1 \
      | tee "$dir/measure.log"
  rc=${PIPESTATUS[0]}
  echo "$name: measure rc=$rc in $(( $(date +%s) - start )) s" | tee -a "$OUT/summary.txt"
  grep -E "rows|predicted at" "$dir/measure.log" >> "$OUT/summary.txt"
  if [ "$rc" -ne 0 ]; then status=1; continue; fi
  start=$(date +%s)
  timeout "$STEP_TIMEOUT" "${SNED[@]}" latency validate "$name" --table "$table" --n "$VAL_N" \
      --repeats "$VAL_REPEATS" --html "$dir/parity-$LABEL.html" 2>&1 | tee "$dir/validate.log"
  rc=${PIPESTATUS[0]}
  echo "$name: validate rc=$rc in $(( $(date +%s) - start )) s" | tee -a "$OUT/summary.txt"
  grep -E "median abs error|correction:|measured at" "$dir/validate.log" >> "$OUT/summary.txt"
  [ "$rc" -ne 0 ] && status=1
done
cat "$OUT/summary.txt"
exit $status
