"""The joint DUIIT step: eager reference vs eager fused vs compiled reference vs compiled fused,
fp32 and bf16, at sizes S (64², 4 pairs, ngf 32, small predictor), M (128², 4, ngf 32) and L (64²,
8, ngf 64, ResNet18). `duiit bench` prints the same table for one size.

Every variant is timed inside one interleaved loop (duiit_fast.bench.run_bench), so the recorded
numbers are ratios measured in the same run; the first steps (compilation) are reported apart.
pytest-benchmark times the whole interleaved measurement; the per-variant numbers are in
extra_info (pytest --benchmark-json keeps them).
"""
import pytest

from duiit_fast.bench import VARIANTS, format_table, run_bench

from conftest import device_name

SIZES = ["S", "M", "L"]


@pytest.mark.parametrize("size", SIZES)
def test_train_step(benchmark, device, size, capsys):
    # bf16 on a CPU without native bf16 is ~17× slower: timed only where it can be the fast path.
    variants = [v for v in VARIANTS if device.type == "cuda" or not v.bf16]
    result = {}
    benchmark.pedantic(lambda: result.update(run_bench(size, variants, str(device), rounds=5)), rounds=1,
                       iterations=1)
    benchmark.extra_info.update(device=device_name(device), size=size, rows=result["rows"],
                                flops_per_step=result["flops_per_step"])
    with capsys.disabled():
        print("\n" + format_table(result))
    assert result["rows"][0]["variant"] == "eager reference fp32"
