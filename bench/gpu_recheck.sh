#!/usr/bin/env bash
# A short second call (~5 min) after a kernel fix: the CUDA tests it touches, and the compiled bf16
# joint step at the paper's size with the fused ops and with the reference ops, each against its own
# eager fp32 baseline. The two compile at once in two processes (Dynamo/AOT/Inductor lowering is
# mostly one thread each), then time one after the other, after the tests, alone on the GPU.
set -uo pipefail
LIMIT=${RECHECK_LIMIT_S:-330}
mkdir -p "${OUT:-out}"; OUT=$(cd "${OUT:-out}" && pwd)
W=$(mktemp -d)
export PYTHONPATH=$(pwd) PYTHONUNBUFFERED=1
ln -sfn ../kernels duiit_fast/kernels
( timeout 200 python3 -m pytest -v -rfE --tb=short -m gpu tests/test_gpu.py -p no:cacheprovider \
    -k "channels_last or instance_norm_matches or compiles_with_inductor or opcheck" > "$OUT/gpu_tests.log" 2>&1
  touch "$W/tests.done" ) &
( timeout $LIMIT python3 bench/step_ab.py --size paper --device cuda --rounds 10 --wait-for "$W/tests.done" \
    --wait-max $LIMIT --json "$OUT/step_ab_fused.json" --variants eager-reference-fp32 compiled-fused-bf16 \
    > "$OUT/step_ab_fused.txt" 2>&1; touch "$W/fused.done" ) &
timeout $(( LIMIT + 10 )) python3 bench/step_ab.py --size paper --device cuda --rounds 10 --wait-for "$W/fused.done" \
  --wait-max $(( LIMIT + 10 )) --json "$OUT/step_ab_reference.json" \
  --variants eager-reference-fp32 compiled-reference-bf16 > "$OUT/step_ab_reference.txt" 2>&1
wait
grep -E "passed|failed" "$OUT/gpu_tests.log" | tail -2
grep -E "^(FAILED|ERROR)" "$OUT/gpu_tests.log" | head
tail -4 "$OUT/step_ab_fused.txt" "$OUT/step_ab_reference.txt"
