#!/usr/bin/env bash
# The GPU check on a fresh GPU machine with only this repository (no network needed where
# torch, numpy, scipy, pandas, matplotlib, pillow, tqdm and pyyaml are installed, as on
# the lent GPU machines): install the project without touching the machine's torch, then
# render benchmark v3's synthetic domains (glove level) on the GPU, train runs 1-4 of the `gpu` preset
# briefly, evaluate them and print images/s, the BMC share of a step and peak memory
# (bmclib.bench.gpu_check). Arguments go to `bmc gpu-check`; the CPU test runs
#   data_scripts/gpu_check.sh --device cpu --preset tiny --num 64 --num-eval 32 --steps 4
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import bmclib" 2>/dev/null; then
    # --no-deps / --no-build-isolation: keep the machine's CUDA torch, fetch nothing
    "$PY" -m pip install -q --no-deps --no-build-isolation -e . 2>/dev/null || export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
"$PY" -c "import torch; print('torch', torch.__version__, '| CUDA:', torch.cuda.is_available(), \
'|', torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU')"
exec "$PY" -m bmclib.bench.cli gpu-check "$@"
