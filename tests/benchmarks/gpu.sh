#!/usr/bin/env bash
# The throughput benchmarks on one GPU, in one go; each benchmark's output (its JSON line
# last) goes to $OUT (default ./benchmark-results) as it finishes, so a run cut short
# keeps what it measured. In order of what matters most:
#   1. full-size random SD 1.x at 512 px, 50 steps: the harness's way (float32, one prompt
#      per call of 5 images) against ours (bfloat16, one batch mixing prompts), under each
#      mitigation;
#   2. the judges on the GPU, the CLIP ones in float16 against float32, and classification
#      as a fraction of generation;
#   3. full-size random SDXL at 1024 px the same way (with and without SEGA), then the
#      study's GPU-hours from both;
#   4. the execution section's speed options on SD 1.x, each alone, then together
#      (torch.compile last: compiling takes minutes).
# Never run on a GPU yet. Estimated on one H100: steps 1-3 about 7 minutes, step 4 about
# 9 more (two compilations). Each step has its own time limit (STEP_LIMIT seconds,
# default 240) and the whole run a deadline (DEADLINE seconds, default 540, inside a lent
# machine's 10-minute command limit): a step that fails or runs out of time is reported
# and the next one runs; steps the deadline leaves no time for are skipped and listed.
# `gpu.sh speed-options` runs step 4 alone.
#
# The GPU machine needs the packages it lacks as wheels in .whl at the repository's root
# (tests/benchmarks/gpu_wheels.sh downloads them there); they are installed to
# /tmp/site. SMOKE=1 runs the same steps on the CPU at toy sizes (64 px, 2 steps, a tiny
# SDXL, no compile), to check the script before spending GPU time on it.
set -uo pipefail
deadline=$(($(date +%s) + ${DEADLINE:-540}))
limit=${STEP_LIMIT:-240}
only=${1:-all}
case $only in all | speed-options) ;; *) echo "usage: gpu.sh [all | speed-options]" >&2; exit 2 ;; esac
python=${PYTHON:-python3}
out=${OUT:-benchmark-results}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")"
root=$(cd ../.. && pwd)
if [ "${SMOKE:-0}" != 1 ] && compgen -G "$root/.whl/*.whl" >/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$root"/.whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

if [ "${SMOKE:-0}" = 1 ]; then
    device=cpu sdxl=tiny-sdxl classify_images=2
    sd1_run=(--size 64 --steps 2 --prompts 1 --images-per-call 2 --batch-size 2)
    sdxl_run=(--size 64 --steps 2 --prompts 1 --images-per-call 2 --batch-size 2)
    speed_options=(--fuse-qkv --channels-last)
else
    device=cuda sdxl=sdxl classify_images=32
    sd1_run=(--prompts 2 --images-per-call 5 --batch-size 10)
    sdxl_run=(--prompts 1 --images-per-call 4 --batch-size 4)
    speed_options=(--fuse-qkv --channels-last "--fuse-qkv --channels-last" --compile "--fuse-qkv --channels-last --compile")
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
fi
"$python" -c "import torch, diffusers, transformers, open_clip, nudenet, onnxruntime as ort
print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__,
      'open_clip', open_clip.__version__, 'onnxruntime', ort.__version__, ort.get_available_providers())" \
    | tee "$out/versions.txt" || exit 1

failed=() skipped=()
declare -A written
step() {  # step NAME OUTPUT_FILE COMMAND...: run it under the time limit, its output in OUTPUT_FILE
    local name=$1 file=$2 left=$((deadline - $(date +%s)))
    shift 2
    if [ "$left" -lt 30 ]; then
        skipped+=("$name")
        return
    fi
    [ -n "${written[$file]:-}" ] || : >"$out/$file"  # no earlier run's lines: readers take the last one
    written[$file]=1
    echo "== $name ($(date -u +%T))"
    SECONDS=0
    timeout -k 15 "$((left < limit ? left : limit))" "$@" 2>&1 | tee -a "$out/$file"
    local status=${PIPESTATUS[0]}
    echo "== $name: exit $status after $SECONDS s"
    [ "$status" = 0 ] || failed+=("$name")
}

[ "$only" = speed-options ] || {
step "generate sd1" generate-sd1.json "$python" generate.py --model sd1 --device $device --dtype bfloat16 \
    "${sd1_run[@]}" --mitigations none,negative_prompt,sega-strong,sld-strong
step "classify" classify.json "$python" classify.py --device $device --images $classify_images --dtype float16 \
    --generate-json "$out/generate-sd1.json"
step "generate sdxl" generate-sdxl.json "$python" generate.py --model $sdxl --device $device --dtype bfloat16 \
    "${sdxl_run[@]}" --mitigations none,sega-strong
if "$python" -c "import polars, jsonschema" 2>/dev/null; then
    step "study cost" study_cost.json "$python" study_cost.py --results "$out/generate-sd1.json" \
        "$out/generate-sdxl.json"
else  # it reads the configuration through the workflow's code, which needs them
    echo "== study cost: polars or jsonschema is missing here; where .venv is, run" \
        "python tests/benchmarks/study_cost.py --results generate-sd1.json generate-sdxl.json"
fi
}
for options in "${speed_options[@]}"; do
    # shellcheck disable=SC2086 # the options are words
    step "speed options $options" generate-sd1-speed-options.json "$python" generate.py --model sd1 --device $device \
        --dtype bfloat16 "${sd1_run[@]}" --mitigations none --no-harness $options
done
[ ${#skipped[@]} = 0 ] || echo "skipped, no time left before the deadline: ${skipped[*]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "failed or cut short: ${failed[*]}"
    exit 1
fi
