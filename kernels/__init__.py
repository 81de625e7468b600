"""Triton kernels of duiit_fast, shipped in the wheel as `duiit_fast.kernels`.

The kernels and their host launchers arrive with the fused-kernel work (one module per op,
mirroring csrc/ and duiit_fast/reference.py). Until then duiit_fast.ops dispatches CUDA tensors
to the eager reference.
"""
