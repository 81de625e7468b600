#!/usr/bin/env bash
# The whole CUDA check in one command, ~8 minutes on one GPU: `OUT=dir bash bench/gpu_check.sh` from
# the repository root. CUDA correctness (tests/test_gpu.py: Triton vs reference ops fwd+bwd,
# fp32/bf16, NCHW and channels_last; the Trainer's joint step fused/compiled/bf16 vs eager; host
# syncs) while the paper-size joint-step variants compile, then their interleaved timing alone on the
# GPU (bench/step_ab.py: eager fp32 reference, eager fused bf16 (NHWC kernels),
# compiled reference bf16, compiled fused bf16), then a profile of the compiled
# fused bf16 step. GPU_CHECK_QUALITY=1 adds the
# bf16-vs-fp32 phantom experiment (5 cohorts, ~5 min, beside the tests). Needs torch, triton, pytest (pytest-xdist optional), no network; the package runs
# from the source tree (PYTHONPATH; no C++ build: CUDA uses the Triton kernels).
set -uo pipefail
START=$SECONDS
BUDGET=${GPU_CHECK_BUDGET_S:-540}          # the script ends its last step by then
mkdir -p "${OUT:-out}"
OUT=$(cd "${OUT:-out}" && pwd)
W=$(mktemp -d)                              # work folder; logs copied into $OUT/logs.tar.gz at the end
export PYTHONPATH=$(pwd) PYTHONUNBUFFERED=1
export TORCHINDUCTOR_CACHE_DIR=$W/inductor  # one cache: the profile reuses the bench's compiled step
ln -sfn ../kernels duiit_fast/kernels       # the installed name of kernels/ (pyproject wheel.packages)
left() { echo $(( BUDGET - (SECONDS - START) )); }
step() { echo "== [$((SECONDS - START)) s] $*"; }

step "machine"
{ nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.memory,driver_version --format=csv
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.version.cuda)"
  nproc; } 2>&1 | tee "$OUT/machine.txt"

if [ -n "${GPU_CHECK_QUALITY:-}" ]; then
  step "bf16 quality: phantom experiment fp32 vs bf16 in the background (5 cohorts)"
  for P in fp32 bf16; do
    timeout 330 python3 -m duiit_fast.cli experiment --cohorts 5 --arms PURE-CT MIX-CT-MRI --device cuda \
      --precision $P --compile off --workers 5 --out "$W/quality-$P" > "$W/quality-$P.log" 2>&1 &
  done
fi

step "CUDA correctness (tests/test_gpu.py) in the background"
XDIST=(); python3 -c "import xdist" 2>/dev/null && XDIST=(-n 4)
( timeout 300 python3 -m pytest -v -rfE --tb=short -m gpu "${XDIST[@]}" tests/test_gpu.py -p no:cacheprovider \
    > "$OUT/gpu_tests.log" 2>&1; touch "$W/tests.done" ) &
TESTS=$!

step "joint step at the paper's size (256², 16 pairs, ngf 64, ResNet50): build + compile now, time after the tests"
timeout $(( $(left) - 100 )) python3 bench/step_ab.py --size paper --device cuda --rounds 10 \
  --wait-for "$W/tests.done" --wait-max 300 --build-budget $(( $(left) - 300 )) --json "$OUT/step_ab.json" \
  --variants eager-reference-fp32 eager-fused-bf16 \
             compiled-fused-bf16 compiled-reference-bf16 2>&1 | tee "$W/step_ab.log" | grep -v "^  " | tail -9
wait $TESTS
grep -E "passed|failed|error" "$OUT/gpu_tests.log" | tail -3
grep -E "^(FAILED|ERROR)" "$OUT/gpu_tests.log" | head -10

step "profile of the compiled fused bf16 step ($(left) s left)"
if [ "$(left)" -gt 60 ]; then
  timeout $(( $(left) - 15 )) python3 -m duiit_fast.cli profile --size paper --variant compiled-fused-bf16 \
    --device cuda --steps 3 --out "$W/profile" > "$W/profile.log" 2>&1
  cp "$W"/profile/top-ops-*.txt "$OUT/" 2>/dev/null && head -30 "$OUT"/top-ops-*.txt
fi

wait
if [ -n "${GPU_CHECK_QUALITY:-}" ]; then
  for P in fp32 bf16; do echo "== $P"; cp "$W/quality-$P/results.json" "$OUT/quality-$P.json"
    sed -n '1,25p' "$W/quality-$P/report.md"; done 2>&1 | tee "$OUT/quality.txt"
fi
step "packing logs"
(cd "$W" && find . -path ./inductor -prune -o \( -name "*.log" -o -name "*.txt" -o -name "*.md" -o -name "*.json" \) \
   -size -20M -not -name "trace-*" -print | tar czf "$OUT/logs.tar.gz" -T - 2>/dev/null)
step "done"
