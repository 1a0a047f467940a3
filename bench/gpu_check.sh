#!/usr/bin/env bash
# The one-command GPU check: install phiforge on a bare GPU machine, run the `gpu` tests and the
# whole suite there, then the CUDA overhead benchmark and the U-Net's CUDA sampling (float32,
# bfloat16, images per second); every table goes to $OUT (else
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
parallel=()  # pytest-xdist where the machine has it, else one process
python3 -c "import xdist" 2>/dev/null && parallel=(-n "$workers")
python3 -m pytest -p no:cacheprovider -q ${parallel[@]+"${parallel[@]}"} 2>&1 | tail -n 30 | tee "$out/suite.txt" \
  || status=1
python3 bench/overhead.py --device cuda --format json > "$out/overhead-cuda.json" || status=1
python3 bench/overhead.py --render "$out/overhead-cuda.json" | tee "$out/overhead-cuda.md"
# the U-Net on image patches: CUDA float32/bfloat16 against CPU float64, defect, images/s
python3 bench/unet_sampling.py --device cuda --batch 256 --format json > "$out/unet-cuda.json" \
  && python3 -c "import json, sys; sys.path.insert(0, 'bench'); import unet_sampling as u; \
print(u.render(json.load(open('$out/unet-cuda.json'))))" | tee "$out/unet-cuda.md" || status=1
exit $status
