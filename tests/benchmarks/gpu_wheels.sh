#!/usr/bin/env bash
# The wheels gpu.sh needs on the lent GPU machine, which has torch, transformers,
# onnxruntime and OpenCV but not the packages below (nor network access): downloaded into
# .whl at the repository's root for Python 3.12 on x86-64 Linux, at requirements.lock's
# versions. gpu.sh installs them there. About 33 MB; the machine takes 64 MiB with the
# working tree. Then, on the device: command `tests/benchmarks/gpu.sh`, carry `.whl`.
set -euo pipefail
cd "$(dirname "$0")/../.."
pinned() { grep -i "^$1==" requirements.lock; }
rm -rf .whl
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
    "$(pinned diffusers)" "$(pinned open_clip_torch)" "$(pinned nudenet)" "$(pinned ftfy)" "$(pinned wcwidth)" \
    "$(pinned transformers)" "$(pinned importlib_metadata)"
ls -l .whl
du -sh .whl
