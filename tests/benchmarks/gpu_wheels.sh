#!/usr/bin/env bash
# The wheels gpu.sh needs on the lent GPU machine, which has torch, transformers,
# onnxruntime and OpenCV but not the packages below (nor network access): downloaded into
# .whl at the repository's root for Python 3.12 on x86-64 Linux, at requirements.lock's
# versions. gpu.sh installs them there. About 32 MB; the machine takes 64 MiB with the
# working tree. Then, on the device: command `tests/benchmarks/gpu.sh`, carry `.whl`.
set -euo pipefail
cd "$(dirname "$0")/../.."
pinned() { grep -i "^$1==" requirements.lock || { echo "$1 is not in requirements.lock" >&2; exit 1; }; }
wheels=()
for name in diffusers open_clip_torch nudenet ftfy wcwidth transformers importlib_metadata; do
    spec=$(pinned "$name")
    wheels+=("$spec")
done
rm -rf .whl
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    "${wheels[@]}"
ls -l .whl
du -sh .whl
