#!/usr/bin/env bash
# A short second call (~4.5 min): the compiled CUDA step after a fix, and the compiled bf16 joint
# step with the Triton ops (the CUDA default) against the eager fp32 reference at the paper's size.
set -uo pipefail
mkdir -p "${OUT:-out}"; OUT=$(cd "${OUT:-out}" && pwd)
export PYTHONPATH=$(pwd) PYTHONUNBUFFERED=1
ln -sfn ../kernels duiit_fast/kernels
timeout ${RECHECK_BENCH_S:-255} python3 -m duiit_fast.cli bench --size paper --device cuda --rounds 10 \
  --no-cached-compile --variants eager-reference-fp32 compiled-fused-bf16 \
  --json "$OUT/bench_step_paper_compiled.json" > "$OUT/bench_step_paper_compiled.txt" 2>&1 &
timeout 130 python3 -m pytest -v -rfE --tb=short -m gpu tests/test_gpu.py -p no:cacheprovider \
  -k "compiled_triton or auto_fast or compiles_with_inductor or losses or opcheck" > "$OUT/gpu_tests.log" 2>&1
tail -4 "$OUT/gpu_tests.log"
wait
cat "$OUT/bench_step_paper_compiled.txt" | tail -12
