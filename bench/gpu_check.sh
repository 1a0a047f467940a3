#!/usr/bin/env bash
# The one-command GPU check: install phiforge on a bare GPU machine, run the `gpu` tests and the
# whole suite there, then the CUDA overhead benchmark; every table goes to $OUT (else
# ./gpu-check). Wheels of packages the machine lacks (k-diffusion, torchsde, trampoline,
# diffusers) may be laid in .whl/ beside the repository; see docs/bench-overhead.md.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-check}"
mkdir -p "$out"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/phiforge-site .whl/*.whl && export PYTHONPATH=/tmp/phiforge-site
fi
python3 -m pip install -q --no-deps --no-build-isolation -e . || exit 1
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv;
  python3 -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)"; } \
  | tee "$out/machine.txt"
status=0
python3 -m pytest -p no:cacheprovider -q -rs -m gpu 2>&1 | tee "$out/gpu-tests.txt" || status=1
workers=$(( $(nproc) > 16 ? 16 : $(nproc) ))
python3 -m pytest -p no:cacheprovider -q -n "$workers" 2>&1 | tail -n 30 | tee "$out/suite.txt" || status=1
python3 bench/overhead.py --device cuda --format json > "$out/overhead-cuda.json" || status=1
python3 bench/overhead.py --render "$out/overhead-cuda.json" | tee "$out/overhead-cuda.md"
exit $status
