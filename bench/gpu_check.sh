#!/usr/bin/env bash
# One call on a lent GPU machine (device tool): build, CUDA correctness (fused vs reference,
# fwd+bwd, fp32/bf16, torch.compile), then the CUDA benchmarks, all written under $OUT.
# That machine has torch, triton, pybind11, scikit-build-core, cmake, ninja, pytest and
# pytest-benchmark but no network: packages it lacks (scipy, tqdm, matplotlib, pydicom, nibabel)
# must travel as wheels (see the device tool's README) for the tests that import them.
set -euo pipefail
mkdir -p "${OUT:-out}"
OUT=$(cd "${OUT:-out}" && pwd)  # absolute: the benches run from bench/
python3 -m pip install -q --no-build-isolation --no-deps -e . 2>&1 | tail -3
nvidia-smi --query-gpu=name,memory.total,clocks.max.memory --format=csv | tee "$OUT/gpu.txt"
python3 -m pytest -q -m gpu tests/test_gpu.py 2>&1 | tee "$OUT/gpu_tests.log"
cd bench
python3 -m pytest -q --benchmark-only -k "cuda and not joint and not loader" -p no:cacheprovider \
  --benchmark-json="$OUT/bench_gpu.json" 2>&1 | tee "$OUT/bench_gpu.log"
cd ..
# The joint step at the paper's size (256², 16 pairs, ngf 64, ResNet50) and at M, every variant:
# speed-ups against the eager fp32 reference, pairs/s, MFU, compile times (issue targets: ≥ 5×, ≥ 250 pairs/s).
python3 -m duiit_fast.cli bench --size paper --device cuda --rounds 10 --json "$OUT/bench_step_paper.json" \
  2>&1 | tee "$OUT/bench_step_paper.txt"
python3 -m duiit_fast.cli profile --size paper --variant compiled-fused-bf16 --device cuda --steps 3 \
  --out "$OUT/profile" 2>&1 | tail -30 | tee "$OUT/profile_top_ops.txt"
