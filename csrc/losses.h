// LSGAN and L1 losses on contiguous CPU buffers. Contract: duiit_fast/reference.py.
//   lsgan: mean((a - target)^2)          grad_a = 2 (a - target) g / n
//   l1:    mean(|a - b|)                 grad_a = sign(a - b) g / n, sign(0) = 0; grad_b = -grad_a
// Sums run in the input type within fixed-size chunks and in double across chunks, in chunk
// order, so the result does not depend on the thread count.
#pragma once
#include <cstdint>

namespace duiit {

enum class Loss : int { Lsgan = 0, L1 = 1 };

template <typename T>
double loss_forward(const T* a, const T* b, double target, int64_t n, Loss loss);

template <typename T>
void loss_backward(const T* a, const T* b, double target, int64_t n, Loss loss, double grad_out,
                   T* grad_a, T* grad_b);

}  // namespace duiit
