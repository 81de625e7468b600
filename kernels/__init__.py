"""Triton kernels of duiit_fast, shipped in the wheel as `duiit_fast.kernels`.

One module per op family, mirroring csrc/ and duiit_fast/ops/: `instance_norm`
(instance norm + activation + residual, forward and backward) and `losses` (LSGAN and L1).
Import them only through duiit_fast.ops (each op's Triton section), which does so lazily:
`@triton.jit` must not run before TRITON_INTERPRET is set on a CPU-only machine.
"""
