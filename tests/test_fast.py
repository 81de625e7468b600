"""The fast path (train/fast.py): how "auto" resolves, and that every switch computes the same
step as the eager fp32 reference (compiled: tests marked slow plus one small compiled graph)."""
import dataclasses

import pytest

from conftest import replaced
import torch

from duiit_fast import Trainer, ops
from duiit_fast.models.generator import ResnetGenerator, regions_supported, residual_blocks_as_regions
from duiit_fast.train.checkpoint import read_checkpoint
from duiit_fast.train import fast as fast_module
from duiit_fast.train.fast import cpu_features, cpu_native_bf16, resolve_fast_path
from duiit_fast.train.step_functions import REGION_COMPILE_OPTIONS, build_step_functions

CPU = torch.device("cpu")


def _first_step(cfg):
    """Losses and gradients of one joint step from the same initial weights and batch."""
    trainer = Trainer(cfg, progress=False)
    trainer.prepare()
    parts = trainer.read_step(trainer.train_step(), "step 1")
    grads = {name: [p.grad.detach().clone() for p in net.parameters() if p.grad is not None]
             for name, net in trainer.nets.items()}
    return trainer, parts, grads


def _assert_grads_close(grads, ref_grads, tol):
    """Each net's whole gradient within tol of the reference in relative L2 norm. (fp32 sums taken
    in another order differ elementwise where terms cancel; the bias before an instance norm has a
    gradient that is zero up to rounding, so per-parameter ratios would compare noise.)"""
    assert any(ref_grads.values())
    for name in ref_grads:
        assert len(grads[name]) == len(ref_grads[name])
        if not grads[name]:
            continue   # a frozen net (CycleGAN's stage-2 translators)
        got, want = (torch.cat([g.flatten() for g in gs]) for gs in (grads[name], ref_grads[name]))
        assert float((got - want).norm()) <= tol * float(want.norm()), name


@pytest.mark.parametrize("native_bf16", [False, True])
def test_auto_is_eager_fused_on_cpu_and_takes_the_reference_ops_when_compiled(tiny_config, monkeypatch, native_bf16):
    # bf16 only where the CPU has it natively (AVX-512 BF16 / AMX); emulated it ran ~14× slower.
    monkeypatch.setattr(fast_module, "cpu_native_bf16", lambda: native_bf16)
    auto = resolve_fast_path(tiny_config(precision="auto"), CPU)
    assert (auto.compile, auto.bf16, auto.channels_last, auto.fused_optimizer, auto.backend) == \
        (False, native_bf16, False, True, "auto")
    assert not resolve_fast_path(tiny_config(precision="fp32"), CPU).bf16
    # Compiled on CPU, auto takes the reference ops (Inductor fuses them; the C++ op is opaque).
    compiled = resolve_fast_path(tiny_config(compile="on"), CPU)
    assert compiled.compile and compiled.backend == "reference"
    assert resolve_fast_path(tiny_config(backend="cpp", compile="on"), CPU).backend == "cpp"
    # On CUDA too (measured faster than the Triton kernels inside the graph, H100); explicit stays.
    cuda = torch.device("cuda")
    on_cuda = resolve_fast_path(tiny_config(precision="fp32"), cuda)
    assert (on_cuda.compile, on_cuda.channels_last, on_cuda.backend) == (True, True, "reference")
    assert resolve_fast_path(tiny_config(precision="fp32", backend="triton"), cuda).backend == "triton"
    assert resolve_fast_path(tiny_config(precision="fp32", compile="off"), cuda).backend == "auto"
    forced = resolve_fast_path(tiny_config(precision="bf16", channels_last="on"), CPU)
    assert (forced.compile, forced.bf16, forced.channels_last) == (False, True, True)


def test_resolved_fast_path_is_recorded_in_the_checkpoint_and_history(tiny_config):
    trainer = Trainer(tiny_config(), progress=False)
    trainer.fit()
    state = read_checkpoint(trainer.cfg.out_dir + "/checkpoint.pt")
    assert state["fast_path"] == dataclasses.asdict(trainer.fast)
    assert all(r["pairs_per_s"] > 0 and r["steps"] == 2 and r["seconds"] > 0 for r in trainer.history)
    # slices/s counts every slice a step batches: here CT plus one source batch per pair
    assert all(r["slices_per_s"] == pytest.approx(2 * r["pairs_per_s"]) for r in trainer.history)
    assert trainer.optimizers["gen"].param_groups[0]["fused"] is True


def test_one_host_sync_per_step(tiny_config, monkeypatch):
    """Every loss term and the weight check reach the host as one tensor. (Reference ops: the C++
    loss backward reads its scalar upstream gradient on the host, which on the CPU is no sync.)"""
    trainer = Trainer(tiny_config(backend="reference"), progress=False)
    trainer.prepare()
    calls = {"item": 0, "tolist": 0}
    item, tolist = torch.Tensor.item, torch.Tensor.tolist

    def counting(name, fn):
        def wrapped(self, *args):
            calls[name] += 1
            return fn(self, *args)
        return wrapped
    monkeypatch.setattr(torch.Tensor, "item", counting("item", item))
    monkeypatch.setattr(torch.Tensor, "tolist", counting("tolist", tolist))
    trainer.read_step(trainer.train_step(measure_share=True), "step")
    assert calls == {"item": 0, "tolist": 1}


def test_channels_last_computes_the_nchw_step(tiny_config):
    _, ref_parts, ref_grads = _first_step(tiny_config(channels_last="off"))
    trainer, parts, grads = _first_step(tiny_config(channels_last="on", out_dir=tiny_config().out_dir + "-cl"))
    assert trainer.nets["G"]["mri"].model[1].weight.is_contiguous(memory_format=torch.channels_last)
    assert parts == pytest.approx(ref_parts, rel=1e-4)
    _assert_grads_close(grads, ref_grads, 1e-4)


def test_bf16_autocast_step_stays_close_to_fp32(tiny_config):
    _, ref_parts, _ = _first_step(tiny_config(precision="fp32"))
    trainer, parts, _ = _first_step(tiny_config(precision="bf16", out_dir=tiny_config().out_dir + "-bf16"))
    assert trainer.fast.bf16
    assert all(p.dtype == torch.float32 for net in trainer.nets.values() for p in net.parameters())
    assert parts == pytest.approx(ref_parts, rel=0.05)


def test_l1_loss_accepts_autocast_outputs():
    a = torch.randn(2, 1, 8, 8).bfloat16()
    b = torch.randn(2, 1, 8, 8)
    for backend in ("reference", "cpp"):
        torch.testing.assert_close(ops.l1_loss(a, b, backend), (a.float() - b).abs().mean(), rtol=1e-2, atol=1e-3)


def test_fused_flag_survives_loading_a_foreach_optimizer_state(tiny_config, tmp_path):
    plain = Trainer(tiny_config(fused_optimizer=False, out_dir=str(tmp_path / "plain")), progress=False)
    plain.fit()
    fused = Trainer.load(tmp_path / "plain" / "checkpoint.pt")
    assert plain.optimizers["gen"].param_groups[0]["fused"] in (None, False)
    assert fused.cfg.fast.fused_optimizer is False   # the saved config: this run stays unfused
    resumed = Trainer(replaced(plain.cfg, fused_optimizer=True, epochs=3), progress=False)
    resumed.fit(resume=True)
    assert resumed.optimizers["gen"].param_groups[0]["fused"] is True and len(resumed.history) == 3


def _compiled_matches_eager(cfg_eager, cfg_compiled):
    _, ref_parts, ref_grads = _first_step(cfg_eager)
    trainer, parts, grads = _first_step(cfg_compiled)
    assert trainer.fast.compile
    assert parts == pytest.approx(ref_parts, rel=1e-4)
    _assert_grads_close(grads, ref_grads, 1e-4)
    return trainer


def test_compiled_predictor_step_matches_eager(tiny_config):
    """The smallest compiled graph (PURE-CT: P's loss, fwd + bwd) against eager, fp32, one thread."""
    base = tiny_config("PURE-CT", backend="reference")
    trainer = _compiled_matches_eager(base, replaced(base, compile="on", out_dir=base.out_dir + "-c"))
    trainer.fit()                                   # and it keeps training, without graph breaks
    assert len(trainer.history) == 2


@pytest.mark.slow
@pytest.mark.parametrize("setting, overrides", [("MIX-CT-MRI", {}), ("CYCLEGAN-CT-MRI", {}),
                                                ("MIX-CT-MRI", {"predictor_source_weight": 0.5})])
def test_compiled_joint_and_translator_steps_match_eager(tiny_config, setting, overrides):
    base = tiny_config(setting, backend="reference", translator_warmup_steps=2, **overrides)
    trainer = _compiled_matches_eager(base, replaced(base, compile="on", out_dir=base.out_dir + "-c"))
    trainer.fit()
    assert len(trainer.history) == 2


needs_regions = pytest.mark.skipif(not regions_supported(), reason="torch.compiler.nested_compile_region needs torch >= 2.8")


def test_compiled_on_cpu_makes_each_residual_block_one_region(tiny_config):
    """A compiled CPU run traces every block of G and F as a call of one compiled region (the
    cold-compile saving); eager and CUDA runs unroll them unless compile_regions says otherwise."""
    compiled = resolve_fast_path(tiny_config(compile="on"), CPU)
    assert compiled.regions == regions_supported() and not resolve_fast_path(tiny_config(), CPU).regions
    assert ("block regions" in compiled.describe()) == regions_supported()
    assert not resolve_fast_path(tiny_config(compile="on", compile_regions="off"), CPU).regions  # long runs
    # The regions take NHWC activations (no transposes at every block); eager and unrolled CPU steps do not.
    assert compiled.channels_last == regions_supported()
    assert not resolve_fast_path(tiny_config(compile="on", compile_regions="off"), CPU).channels_last
    cuda = torch.device("cuda")
    assert not resolve_fast_path(tiny_config(precision="fp32"), cuda).regions
    assert resolve_fast_path(tiny_config(precision="fp32", compile_regions="on"), cuda).regions == regions_supported()
    if not regions_supported():
        return
    graphs = []

    def capture(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    g, x = ResnetGenerator(ngf=2, n_blocks=3), torch.randn(1, 1, 16, 16)
    for on in (False, True):
        torch._dynamo.reset()
        with ops.use_backend("reference"), residual_blocks_as_regions(on):
            torch.compile(g, backend=capture, fullgraph=True)(x)
    unrolled, regional = (sum(node.target is torch.ops.higher_order.invoke_subgraph for node in gm.graph.nodes)
                          for gm in graphs)
    assert unrolled == 0 and regional == 3


@needs_regions
def test_compiled_generator_with_block_regions_matches_eager():
    """The Inductor options of a region run keep it right: a generator called twice, its blocks
    regions, computed values 10 % off eager with Inductor's defaults and overwrote the blocks'
    conv weights in place (torch 2.14.1, CPU; docs/torch-nested-region-bug.md)."""
    torch.manual_seed(0)
    g, x = ResnetGenerator(ngf=2, n_blocks=2), torch.randn(1, 1, 16, 16)
    weights = {k: v.clone() for k, v in g.state_dict().items()}

    def twice():
        return (g(x) + g(2 * x)).square().mean()
    torch._dynamo.reset()
    with ops.use_backend("reference"):
        want = twice()
        with residual_blocks_as_regions(True):
            got = torch.compile(twice, fullgraph=True, options=dict(REGION_COMPILE_OPTIONS))()
    assert float(got) == pytest.approx(float(want), rel=1e-5)
    assert all(torch.equal(v, weights[k]) for k, v in g.state_dict().items())


def test_the_regions_reflect_pad_is_reflection_pad_2d_to_the_bit():
    """The compiled region pads with slices and cat (Inductor vectorises them; its lowering of the
    reflection pad inside a region is a scalar gather): the same values, the same gradients."""
    from duiit_fast.models.generator import reflect_pad_1
    x = torch.randn(2, 3, 5, 7, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(2, 3, 7, 9, dtype=torch.float64)
    want = torch.nn.ReflectionPad2d(1)(x)
    (want_grad,) = torch.autograd.grad(want, x, upstream)
    got = reflect_pad_1(x)
    (got_grad,) = torch.autograd.grad(got, x, upstream)
    assert torch.equal(got, want)
    torch.testing.assert_close(got_grad, want_grad, rtol=0, atol=1e-12)   # border sums: order may differ


@pytest.fixture
def tiny_bench_size(monkeypatch):
    from duiit_fast import bench
    monkeypatch.setitem(bench.SIZES, "T", dict(image_size=32, batch_size=2, ngf=4, ndf=4, predictor="small"))
    return "T"


def test_bench_table_has_every_variant_against_the_baseline(tiny_bench_size):
    from duiit_fast.bench import VARIANTS, format_table, run_bench
    eager = [v for v in VARIANTS if not v.compile and not v.bf16]
    result = run_bench(tiny_bench_size, eager, "cpu", rounds=2, warmup=1, log=lambda m: None)
    rows = {r["variant"]: r for r in result["rows"]}
    assert set(rows) == {"eager reference fp32", "eager fused fp32"}
    assert rows["eager reference fp32"]["speedup"] == 1.0          # the baseline against itself
    assert result["flops_per_step"] > 0 and all(0 < r["mfu"] for r in rows.values())
    assert all(r["compile_cold_s"] is None for r in rows.values())
    table = format_table(result)
    assert "| eager fused fp32 |" in table and "GFLOP per step" in table
    for r in rows.values():   # the speed-up is the ratio of the medians shown, each inside its spread
        assert r["speedup"] == pytest.approx(result["baseline_step_s"] / r["step_s"], rel=1e-12)
        assert r["step_min_s"] <= r["step_s"] <= r["step_max_s"]
        assert f"| {r['step_s'] * 1e3:.1f} ({r['step_min_s'] * 1e3:.1f}–{r['step_max_s'] * 1e3:.1f}) |" in table


def test_a_bench_row_whose_ratio_contradicts_its_times_is_not_printed():
    """The issue's table: eager bf16 slower than fp32 (20,257 vs 13,076 ms) yet "1.56×"."""
    from duiit_fast.bench import format_table
    def row(name, ms, speedup):
        return {"variant": name, "step_s": ms / 1e3, "step_min_s": ms / 1e3, "step_max_s": ms / 1e3,
                "pairs_per_s": 1.0, "speedup": speedup, "mfu": 0.1, "compile_cold_s": None,
                "compile_cached_s": None, "paper_schedule_h": 1.0}
    result = {"size": "M", "config": {"image_size": 128, "batch_size": 4, "ngf": 32, "predictor": "small"},
              "device": "cpu", "torch": "x", "flops_per_step": 1e9, "rounds": 3, "paper_pairs": 1,
              "gemm_ceiling_flops": {"fp32": 1e11, "bf16": 2e11}, "baseline_step_s": 13.076,
              "rows": [row("eager reference fp32", 13076, 1.0), row("eager reference bf16", 20257, 1.56)]}
    with pytest.raises(ValueError, match="not the ratio of the medians"):
        format_table(result)
    result["rows"][1]["speedup"] = 13076 / 20257
    assert "| 0.65× |" in format_table(result)


def test_bench_on_a_cpu_defaults_to_the_eager_variants():
    """Each compiled variant first compiles cold for minutes on a CPU: named explicitly, or `all`."""
    from duiit_fast.bench import VARIANTS
    from duiit_fast.cli.perf import _bench_variants
    assert [v.compile for v in _bench_variants(None, "cpu")] == [False] * 4
    assert _bench_variants(None, "cuda") == list(VARIANTS) == _bench_variants(["all"], "cpu")


def test_bench_times_the_unrolled_compiled_step_beside_the_regions(tiny_bench_size):
    """Compiled on the CPU a run uses block regions; the bench can time the unrolled step beside it."""
    from duiit_fast.bench import StepHarness, variant_by_name
    unrolled = variant_by_name("compiled-reference-bf16-unrolled")
    assert unrolled.compile and unrolled.bf16 and unrolled.unrolled and not unrolled.fused
    with pytest.raises(ValueError, match="compiled-reference-fp32-unrolled"):
        variant_by_name("compiled-fused-fp32-unrolled")
    as_run = StepHarness(tiny_bench_size, variant_by_name("compiled-reference-bf16"), CPU)
    assert as_run.fast.regions == regions_supported()
    assert not StepHarness(tiny_bench_size, unrolled, CPU).fast.regions


def test_profile_writes_a_trace_and_top_ops(tiny_bench_size, tmp_path):
    from duiit_fast.bench import BASELINE, run_profile
    table = run_profile(tiny_bench_size, BASELINE, "cpu", 1, tmp_path, log=lambda m: None)
    assert "convolution" in table
    assert (tmp_path / "trace-T-eager-reference-fp32.json").stat().st_size > 0
    assert (tmp_path / "top-ops-T-eager-reference-fp32.txt").read_text().strip() == table.strip()


@pytest.mark.parametrize("argv, message", [
    (["bench", "--rounds", "0"], "--rounds must be at least 1"),
    (["bench", "--variants", "fastest"], "unknown variant 'fastest'"),
    (["profile", "--steps", "0"], "--steps must be at least 1"),
])
def test_bench_cli_rejects_bad_arguments_in_one_line(argv, message, capsys):
    from duiit_fast.cli import main
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cpu_features_name_the_isa_and_native_bf16():
    described = cpu_features()
    assert described.startswith(torch.backends.cpu.get_cpu_capability())
    assert ("native bf16" in described) == cpu_native_bf16()


def test_the_label_scale_is_a_graph_input_of_a_compiled_step(tiny_config, monkeypatch):
    """Each dataset has its own age std (label_scale). Baked into the graph as a constant, every
    cohort of `duiit experiment --compile on` missed Inductor's cache and recompiled; as an input
    a second scale runs the first graph, and its value still reaches the loss."""
    graphs = []

    def capture(gm, example_inputs):
        graphs.append(gm.code)
        return gm.forward

    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: real_compile(fn, backend=capture, fullgraph=True))
    trainer = Trainer(tiny_config("PURE-CT", compile="on", compile_regions="off"), progress=False)
    images, targets = torch.randn(2, 1, 32, 32), torch.randn(2)
    trainer.nets["P"].eval()
    losses = []
    for scale in (2.0, 3.0):
        fns = build_step_functions(trainer.nets, trainer.cfg, resolve_fast_path(trainer.cfg, CPU), CPU,
                                                label_scale=scale)
        losses.append(float(fns.predictor_loss(images, targets, [2]).detach()))
    assert len(graphs) == 1   # the second scale ran the first graph: a float constant would have retraced
    assert losses[1] == pytest.approx(losses[0] * 9 / 4, rel=1e-5)
