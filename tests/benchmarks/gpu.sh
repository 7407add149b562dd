#!/usr/bin/env bash
# The throughput benchmarks on one GPU, in one go (not yet run on a GPU: time it, and split
# it where a device command's time limit is near): full-size
# random SD 1.x at 512 px and SDXL at 1024 px, 50 steps, the harness's way (float32, one
# prompt per call of 5 images) against ours (bfloat16, one batch mixing prompts); the
# speed options (fused QKV, channels last, torch.compile) on SD 1.x; the judges on the GPU;
# the study's GPU-hours from those figures. Each benchmark's output,
# its JSON line last, goes to $OUT (default ./benchmark-results).
set -euo pipefail
out=${OUT:-benchmark-results}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")"
export PYTHONPATH="$(cd ../../src && pwd)${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python generate.py --model sd1 --device cuda --dtype bfloat16 --prompts 2 --images-per-call 5 --batch-size 10 \
    --mitigations none,sld-strong | tee "$out/generate-sd1.json"
python generate.py --model sdxl --device cuda --dtype bfloat16 --prompts 1 --images-per-call 4 --batch-size 4 \
    --mitigations none,sega-strong | tee "$out/generate-sdxl.json"
# the execution section's speed options, each alone, then together, on the SD 1.x run (no harness)
for options in --fuse-qkv --channels-last --compile "--fuse-qkv --channels-last --compile"; do
    python generate.py --model sd1 --device cuda --dtype bfloat16 --prompts 2 --images-per-call 5 --batch-size 10 \
        --mitigations none --no-harness $options | tee -a "$out/generate-sd1-speed-options.json"
done
python classify.py --device cuda --images 32 --generate-json "$out/generate-sd1.json" | tee "$out/classify.json"
python study_cost.py --results "$out/generate-sd1.json" "$out/generate-sdxl.json" | tee "$out/study_cost.json"
