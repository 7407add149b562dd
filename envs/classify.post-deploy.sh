#!/usr/bin/env bash
# NudeNet on the GPU. nudenet depends on onnxruntime, whose CPU build has no CUDA provider;
# onnxruntime-gpu is the same Python package built with CUDA 13 (what torch's nvidia
# wheels bring) and with the CPU provider, so it takes onnxruntime's place: jobs without
# a GPU run on its CPU provider. Snakemake runs this in the classify environment once it
# is created; `make cuda` runs it in .venv. Both packages write the same files, so the CPU
# build goes first and the CUDA build is written afresh; it is downloaded before anything
# is removed, so a failed download leaves the environment as it was.
set -euo pipefail
wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT
python -m pip download --quiet --no-deps --dest "$wheels" onnxruntime-gpu==1.31.1
python -m pip uninstall --quiet --yes onnxruntime onnxruntime-gpu
python -m pip install --quiet --no-deps --no-index --force-reinstall "$wheels"/onnxruntime_gpu-*.whl
python -c "import onnxruntime; print('onnxruntime', onnxruntime.__version__, onnxruntime.get_available_providers())"
