#!/usr/bin/env bash
# The accelerator check, ready for a borrowed GPU or TPU machine.
#
#   bash benchmarks/accelerator_run.sh [more check_accelerator flags]
#
# Run from anywhere inside the checkout. The machine needs jax (CUDA or TPU
# build), flax, optax and numpy, and torch (CUDA) for the PyTorch comparison;
# TensorFlow, tfds and clu are not used. If ml_collections is missing, carry
# its wheel in wheels/ at the checkout's root, made where pip reaches PyPI:
#
#   pip download ml_collections==1.1.0 --no-deps -d wheels/
#
# (it needs absl-py and PyYAML; download those the same way if the image lacks
# them). The wheels are installed into $SITE (not the image's site-packages)
# with `pip install --no-index --no-deps`.
#
# What it runs, each in its own process (the device's peak-memory counter is
# per process):
#   1. python -m fasjax.check_accelerator --json --torch
#      paper + synthetic config, the configs' remat policy, PyTorch port too;
#   2. for every other remat policy: the paper config alone, JAX only.
# One JSON line each, also written to $OUT/check_accelerator.jsonl (OUT
# defaults to the current directory). Set POLICIES='' to skip step 2, or
# POLICIES='none blocks' to choose. Expect a few minutes on a GPU: each paper
# step compiles in tens of seconds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
WHEELS="${WHEELS:-$ROOT/wheels}"
SITE="${SITE:-/tmp/fasjax_site}"
OUT="${OUT:-.}"
LOG="$OUT/check_accelerator.jsonl"

if ! "$PY" -c 'import ml_collections' 2>/dev/null; then
  if ! compgen -G "$WHEELS/*.whl" >/dev/null; then
    echo "accelerator_run.sh: ml_collections is not installed and" \
      "$WHEELS/ has no wheels; make them where pip reaches PyPI:" \
      "pip download ml_collections --no-deps -d wheels/" >&2
    exit 1
  fi
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target "$SITE" "$WHEELS"/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

"$PY" - <<'EOF' >&2
import jax
print('jax', jax.__version__, 'backend', jax.default_backend(), jax.devices())
EOF

: >"$LOG"
"$PY" -m fasjax.check_accelerator --json --torch "$@" | tee -a "$LOG"

if [ -z "${POLICIES+set}" ]; then
  # Every policy but the paper config's default (measured above).
  POLICIES="$("$PY" -c '
from configs import ocm_to_i
from fasjax.models import layers
default = ocm_to_i.get_config(None).model.get("remat", "none")
print(" ".join(p for p in layers.REMAT_POLICIES if p != default))')"
fi
for policy in $POLICIES; do
  "$PY" -m fasjax.check_accelerator --json --configs=paper \
    --remat="$policy" "$@" | tee -a "$LOG"
done
