// Instance norm + activation (+ residual) on contiguous (N*C, L) planes, CPU.
// Contract: duiit_fast/reference.py::instance_norm_act. Statistics take two passes (mean, then
// sum((x - mean)^2)), accumulated in the input type within 2048-element chunks and in double
// across chunks.
#pragma once
#include <cstdint>

namespace duiit {

enum class Act : int { None = 0, Relu = 1, LeakyRelu = 2 };

struct PlaneShape {
  int64_t planes;    // N * C
  int64_t channels;  // C: plane p uses weight[p % C]
  int64_t length;    // H * W
};

// y = act(xhat * w + b), or y = residual + xhat * w + b when residual != nullptr (act must be None).
// weight/bias may be null (affine=False). mean/rstd receive one value per plane for backward.
template <typename T>
void instance_norm_act_forward(const T* x, const T* weight, const T* bias, const T* residual, T* y,
                               T* mean, T* rstd, PlaneShape shape, Act act, double slope,
                               double eps);

// Gradients of the forward above. grad_weight/grad_bias (length C) are written only when not null.
// The activation mask is recomputed from x, mean and rstd instead of storing the pre-activation.
template <typename T>
void instance_norm_act_backward(const T* grad_y, const T* x, const T* mean, const T* rstd,
                                const T* weight, const T* bias, T* grad_x, T* grad_weight,
                                T* grad_bias, PlaneShape shape, Act act, double slope);

}  // namespace duiit
