"""Type stub for the compiled extension duiit_fast._C (csrc/module.cpp)."""
from typing import Optional

import numpy as np

has_openmp: bool

def instance_norm_act_forward(
    x: np.ndarray, weight: Optional[np.ndarray], bias: Optional[np.ndarray],
    residual: Optional[np.ndarray], y: np.ndarray, mean: np.ndarray, rstd: np.ndarray,
    act: int, slope: float, eps: float) -> None: ...
def instance_norm_act_backward(
    grad_y: np.ndarray, x: np.ndarray, mean: np.ndarray, rstd: np.ndarray,
    weight: Optional[np.ndarray], bias: Optional[np.ndarray], grad_x: np.ndarray,
    grad_weight: Optional[np.ndarray], grad_bias: Optional[np.ndarray], act: int,
    slope: float) -> None: ...
def loss_forward(a: np.ndarray, b: Optional[np.ndarray], target: float, loss: int) -> float: ...
def loss_backward(a: np.ndarray, b: Optional[np.ndarray], target: float, loss: int,
                  grad_out: float, grad_a: np.ndarray, grad_b: Optional[np.ndarray]) -> None: ...
def openmp_threads() -> int: ...
