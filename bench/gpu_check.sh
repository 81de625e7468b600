#!/usr/bin/env bash
# The whole CUDA check in one command, ~9 minutes on one GPU: `OUT=dir bash bench/gpu_check.sh` from
# the repository root. CUDA correctness (Triton vs reference ops fwd+bwd fp32/bf16, the Trainer's
# joint step fused/compiled/bf16 vs eager, host syncs), the bf16 quality check (phantom experiment
# fp32 vs bf16, paired by cohort), kernel benches and the joint-step bench at the paper's size.
# Results land under $OUT in a few files (the logs tarred). Needs torch, triton, scipy, tqdm and
# matplotlib, no network; the package runs from the source tree (PYTHONPATH; no C++ build: CUDA
# uses the Triton kernels).
set -uo pipefail
START=$SECONDS
BUDGET=${GPU_CHECK_BUDGET_S:-560}          # the script ends its last step by then
COHORTS=${GPU_CHECK_COHORTS:-5}
mkdir -p "${OUT:-out}"
OUT=$(cd "${OUT:-out}" && pwd)
W=$(mktemp -d)                              # work folder; logs copied into $OUT/logs.tar.gz at the end
ROOT=$(pwd)
export PYTHONPATH=$ROOT PYTHONUNBUFFERED=1
ln -sfn ../kernels duiit_fast/kernels       # the installed name of kernels/ (pyproject wheel.packages)
left() { echo $(( BUDGET - (SECONDS - START) )); }
step() { echo "== [$((SECONDS - START)) s] $*"; }

step "machine"
{ nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,clocks.max.memory,driver_version --format=csv
  python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, 'cuda', torch.version.cuda)"
  nproc; } 2>&1 | tee "$OUT/machine.txt"

step "bf16 quality: phantom experiment fp32 vs bf16 in the background ($COHORTS cohorts)"
for P in fp32 bf16; do
  timeout $(( $(left) - 320 )) python3 -m duiit_fast.cli experiment --cohorts "$COHORTS" --arms PURE-CT MIX-CT-MRI \
    --device cuda --precision $P --compile off --workers 7 --out "$W/quality-$P" > "$W/quality-$P.log" 2>&1 &
done

step "CUDA correctness (tests/test_gpu.py), alongside"
timeout $(( $(left) - 320 )) python3 -m pytest -v -rfE --tb=short -m gpu tests/test_gpu.py -p no:cacheprovider \
  > "$OUT/gpu_tests.log" 2>&1
tail -5 "$OUT/gpu_tests.log"
wait
python3 bench/paired_runs.py "$W/quality-fp32" "$W/quality-bf16" --json "$OUT/quality.json" 2>&1 | tee "$W/quality.txt"
tail -2 "$W"/quality-*.log

step "kernel benches (instance norm, losses; CUDA, eager fused vs reference)"
(cd bench && timeout 45 python3 -m pytest -q --benchmark-only \
  -k "cuda and not compiled and ((instance_norm and not both) or (loss and both) or copy)" \
  -p no:cacheprovider --benchmark-json="$W/bench_kernels.json" --benchmark-columns=median > "$W/bench_kernels.log" 2>&1)
python3 - "$W/bench_kernels.json" <<'PY' | tee "$OUT/bench_kernels.txt"
import json, sys
for b in json.load(open(sys.argv[1]))["benchmarks"]:
    e = b["extra_info"]
    print(f"{b['name']:70s} {b['stats']['median'] * 1e3:8.3f} ms {e.get('GB/s', '')} GB/s")
PY

step "joint step at the paper's size (256², 16 pairs, ngf 64, ResNet50): eager variants"
timeout 70 python3 -m duiit_fast.cli bench --size paper --device cuda --rounds 10 \
  --variants eager-reference-fp32 eager-fused-fp32 eager-reference-bf16 eager-fused-bf16 \
  --json "$OUT/bench_step_paper_eager.json" > "$W/bench_step_paper_eager.txt" 2>&1
tail -8 "$W/bench_step_paper_eager.txt"

step "joint step at the paper's size: compiled bf16, reference vs Triton ops ($(left) s left)"
timeout $(( $(left) - 10 )) python3 -m duiit_fast.cli bench --size paper --device cuda --rounds 10 \
  --no-cached-compile --variants eager-reference-fp32 compiled-reference-bf16 compiled-fused-bf16 \
  --json "$OUT/bench_step_paper_compiled.json" > "$W/bench_step_paper_compiled.txt" 2>&1
tail -8 "$W/bench_step_paper_compiled.txt"

step "packing logs"
cp "$OUT/gpu_tests.log" "$W/" 2>/dev/null
(cd "$W" && find . -name "*.log" -o -name "*.txt" -o -name "*.md" -o -name "results.json" -o -name "result.json" \
   -o -name "*.json" -path "*bench*" | tar czf "$OUT/logs.tar.gz" -T - 2>/dev/null)
grep -E "passed|failed|error" "$OUT/gpu_tests.log" | tail -3
cat "$W/quality.txt" 2>/dev/null | head -12
step "done"
