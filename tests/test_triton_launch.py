"""How the Triton kernels are launched, checked without running them (no GPU, no interpreter):
a recording `launch` wrapper stands in for torch.library.wrap_triton."""
import pytest
import torch

from duiit_fast import ops

pytestmark = pytest.mark.skipif(not ops.triton_available(), reason="triton is not installed")


def _record_launches():
    launches = []

    def launch(kernel):
        class Grid:
            def __getitem__(self, grid):
                def run(*args, **kwargs):
                    launches.append((getattr(kernel, "__name__", repr(kernel)), args, kwargs))
                return run
        return Grid()
    return launches, launch


@pytest.mark.parametrize("chunk", [None, 8])     # one program per plane; planes split in chunks of 8
def test_no_float_reaches_a_kernel_as_a_runtime_argument(chunk):
    """Inductor launches user kernels (triton_op) with float scalars typed fp64: on an H200 with
    torch 2.11, `a - target` became fp64 and the compiled step failed to build. Every float a kernel
    takes is a constexpr (an upper-case keyword), every runtime argument a tensor or an int."""
    from duiit_fast.kernels import instance_norm, instance_norm_nhwc, losses
    launches, launch = _record_launches()
    x = torch.randn(2, 3, 6, 6)
    stats = torch.empty(6)
    for kernels, tiling in ((instance_norm, dict(chunk=chunk)), (instance_norm_nhwc, dict(rows=chunk))):
        kernels.instance_norm_act_forward(x, torch.ones(3), None, None, 2, 0.2, 1e-5, torch.empty_like(x),
                                          stats, stats, launch=launch, **tiling)
        kernels.instance_norm_act_backward(x, x, stats, stats, torch.ones(3), None, 2, 0.2, torch.empty_like(x),
                                           stats, stats, launch=launch, **tiling)
    partials = torch.empty(losses.num_partials(x.numel()))
    for b, target in ((None, 1.0), (x, 0.0)):
        losses.loss_forward_partials(x, b, target, 0, partials, launch=launch)
        losses.loss_backward(x, b, target, 0, torch.tensor(1.0), torch.empty_like(x), None, launch=launch)
    assert len(launches) >= 12
    for name, args, kwargs in launches:
        assert all(isinstance(a, (torch.Tensor, int)) and not isinstance(a, bool) for a in args), (name, args)
        runtime_floats = [k for k, v in kwargs.items() if isinstance(v, float) and not k.isupper()]
        assert not runtime_floats, (name, runtime_floats)


@pytest.mark.parametrize("n,c,length", [(16, 64, 256 * 256), (16, 256, 64 * 64), (1, 3, 7), (2, 512, 31 * 31),
                                        (1, 1, 1)])
def test_nhwc_plan_covers_every_pixel_with_enough_programs(n, c, length):
    """The channels_last tiling: chunks cover the plane exactly, the merge's tile holds every chunk,
    and a large activation gets enough programs to fill a GPU (the reason planes are split)."""
    from duiit_fast.kernels.instance_norm_nhwc import MAX_SPLITS, TARGET_PROGRAMS, TILE, nhwc_plan
    plan = nhwc_plan(n, c, length)
    assert (plan["splits"] - 1) * plan["rows"] < length <= plan["splits"] * plan["rows"]
    assert plan["splits"] <= min(MAX_SPLITS, plan["block_s"])
    assert plan["block_c"] * plan["cblocks"] >= c and plan["block_p"] * plan["block_c"] <= max(TILE, 2 * plan["block_c"])
    programs = n * plan["cblocks"] * plan["splits"]
    full_tiles = n * plan["cblocks"] * -(-length // (TILE // plan["block_c"]))   # no program gets less than a tile
    assert programs >= min(TARGET_PROGRAMS // 2, full_tiles)   # // 2: rows round up, so a few programs fewer


def _compile_mutation_analysis():
    """torch.compile's analysis of which tensors a user Triton kernel writes (from its TTIR), run
    against an sm_90 target without a GPU; None where this torch/triton lacks the pieces."""
    try:
        import triton
        from triton.backends.compiler import GPUTarget
        from torch._higher_order_ops.triton_kernel_wrap import identify_accessed_tensors
    except ImportError:
        return None

    class Sm90:
        def get_current_target(self):
            return GPUTarget("cuda", 90, 32)
    config = triton.runtime.driver
    if not hasattr(config, "set_active"):
        return None

    def writes(kernel, kwargs):
        saved = getattr(config, "_active", None)   # None until a GPU driver was asked for
        config.set_active(Sm90())
        try:
            accesses = identify_accessed_tensors(kernel, kwargs, {})
        finally:
            config.set_active(saved)
        return [kwargs[d.name] for d in accesses.read_writes.writes if isinstance(kwargs.get(d.name), torch.Tensor)]
    return writes


def test_compiled_graphs_see_the_kernels_write_only_their_outputs(caplog):
    """Inductor copies every tensor its TTIR analysis says a user kernel writes, before each launch.
    A helper that takes x_ptr and returns the offsets a store then uses made the analysis mark x, dy
    and the weights as written: the compiled H100 step copied ~156 activations per step (12 % of its
    GPU time) and a leaf input failed to compile. Every kernel must write only its outputs."""
    from duiit_fast.kernels import instance_norm, instance_norm_nhwc, losses
    writes = _compile_mutation_analysis()
    if writes is None:
        pytest.skip("this torch/triton has no TTIR mutation analysis to check against")
    x = torch.randn(2, 8, 6, 6).to(memory_format=torch.channels_last)
    dy, w, b = torch.randn_like(x), torch.randn(8), torch.randn(8)
    inputs = (x, dy, w, b)
    launched = []

    def launch(kernel):
        class Grid:
            def __getitem__(self, grid):
                def run(*args, **kwargs):
                    named = dict(zip(kernel.arg_names, args))
                    named.update({k: v for k, v in kwargs.items() if k in kernel.arg_names})
                    launched.append((kernel.fn.__name__, writes(kernel, named)))
                return run
        return Grid()
    stats = torch.empty(2, 8)
    for kernels, tiling in ((instance_norm, dict(chunk=None)), (instance_norm, dict(chunk=8)),
                            (instance_norm_nhwc, dict(rows=None)), (instance_norm_nhwc, dict(rows=8))):
        kernels.instance_norm_act_forward(x, w, b, None, 2, 0.2, 1e-5, torch.empty_like(x), stats.clone(),
                                          stats.clone(), launch=launch, **tiling)
        kernels.instance_norm_act_forward(x, w, None, dy, 0, 0.2, 1e-5, torch.empty_like(x), stats.clone(),
                                          stats.clone(), launch=launch, **tiling)
        kernels.instance_norm_act_backward(dy, x, stats, stats, w, b, 2, 0.2, torch.empty_like(x), stats.clone(),
                                           stats.clone(), launch=launch, **tiling)
    partials = torch.empty(losses.num_partials(x.numel()))
    losses.loss_forward_partials(x, dy, 0.0, 1, partials, launch=launch)
    losses.loss_backward(x, dy, 0.0, 1, torch.tensor(1.0), torch.empty_like(x), torch.empty_like(x), launch=launch)
    assert "assuming every input is mutated" not in caplog.text
    assert {name for name, _ in launched} >= {"_nhwc_fwd_kernel", "_nhwc_bwd_dx_kernel", "_in_act_fwd_split_kernel"}
    for name, written in launched:
        assert written, name
        assert not any(t is i for t in written for i in inputs), f"{name} is analysed as writing an input"
