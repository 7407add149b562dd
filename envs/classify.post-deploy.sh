#!/usr/bin/env bash
# NudeNet on the GPU. nudenet depends on onnxruntime, whose CPU build has no CUDA provider;
# onnxruntime-gpu is the same Python package built with CUDA 13 (what torch's nvidia
# wheels bring) and with the CPU provider, so it takes onnxruntime's place: jobs without
# a GPU run on its CPU provider. Snakemake runs this in the classify environment once it
# is created; `make cuda` runs it in .venv. Both packages write the same files, so the CPU
# build goes first and the CUDA build is written afresh.
set -euo pipefail
python -m pip uninstall --quiet --yes onnxruntime onnxruntime-gpu
python -m pip install --quiet --no-deps --force-reinstall onnxruntime-gpu==1.31.1
python -c "import onnxruntime; print('onnxruntime', onnxruntime.__version__, onnxruntime.get_available_providers())"
