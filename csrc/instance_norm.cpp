#include "instance_norm.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace duiit {
namespace {

// Sums run in T (fp32 for fp32 input: SIMD-friendly) over chunks of kChunk elements and the
// chunk sums are added in double, which keeps the fp32 rounding error of a 16k-element plane
// near that of a 2k-element sum while the inner loops vectorise.
constexpr int64_t kChunk = 2048;

template <typename T>
double chunked_sum(const T* x, int64_t n) {
  double total = 0.0;
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t end = std::min(n, start + kChunk);
    T s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = start; i < end; ++i) s += x[i];
    total += static_cast<double>(s);
  }
  return total;
}

template <typename T>
double chunked_squared_deviation(const T* x, int64_t n, T mean) {
  double total = 0.0;
  for (int64_t start = 0; start < n; start += kChunk) {
    const int64_t end = std::min(n, start + kChunk);
    T s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = start; i < end; ++i) {
      const T d = x[i] - mean;
      s += d * d;
    }
    total += static_cast<double>(s);
  }
  return total;
}

// The activation and its derivative are written with comparisons converted to numbers, not
// branches: activation signs are random, and a mispredicted branch per element made the
// backward several times slower than the memory traffic allows.
template <Act A, typename T>
inline T activation_slope(T z, T slope) {
  // d act(z) / dz, with the value at 0 taken as torch does (0 for ReLU, slope for LeakyReLU).
  if constexpr (A == Act::Relu) return static_cast<T>(z > T(0));
  if constexpr (A == Act::LeakyRelu) return slope + (T(1) - slope) * static_cast<T>(z > T(0));
  return T(1);
}

template <Act A, typename T>
inline T activate(T z, T slope) {
  if constexpr (A == Act::Relu) return std::max(z, T(0));
  return z * activation_slope<A>(z, slope);
}

template <typename T, Act A>
void forward_planes(const T* x, const T* weight, const T* bias, const T* residual, T* y, T* mean,
                    T* rstd, PlaneShape shape, T slope, double eps) {
  const int64_t L = shape.length;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < shape.planes; ++p) {
    const T* xp = x + p * L;
    T* yp = y + p * L;
    const double m = chunked_sum(xp, L) / static_cast<double>(L);
    // Two passes: the squared deviations from the mean, never E[x^2] - E[x]^2.
    const double var = chunked_squared_deviation(xp, L, static_cast<T>(m)) / static_cast<double>(L);
    const double r = 1.0 / std::sqrt(var + eps);
    mean[p] = static_cast<T>(m);
    rstd[p] = static_cast<T>(r);
    const int64_t c = p % shape.channels;
    const double w = weight ? static_cast<double>(weight[c]) : 1.0;
    const double b = bias ? static_cast<double>(bias[c]) : 0.0;
    // y = act((x - mean) * (rstd * w) + b). Subtracting the mean first matters: folding it into
    // one shift (x * scale + shift) cancels catastrophically in fp32 for near-constant planes.
    const T mt = static_cast<T>(m);
    const T scale = static_cast<T>(r * w);
    const T shift = static_cast<T>(b);
    if (residual) {
      const T* rp = residual + p * L;
#pragma omp simd
      for (int64_t i = 0; i < L; ++i) yp[i] = rp[i] + ((xp[i] - mt) * scale + shift);
    } else {
#pragma omp simd
      for (int64_t i = 0; i < L; ++i) yp[i] = activate<A>((xp[i] - mt) * scale + shift, slope);
    }
  }
}

template <typename T, Act A>
void backward_planes(const T* grad_y, const T* x, const T* mean, const T* rstd, const T* weight,
                     const T* bias, T* grad_x, T* grad_weight, T* grad_bias, PlaneShape shape,
                     T slope) {
  const int64_t L = shape.length;
  const int64_t C = shape.channels;
  // Per-plane sums of g and g*xhat give grad_x within the plane and, added over the batch
  // afterwards in a fixed order, grad_weight and grad_bias (deterministic for any thread count).
  std::vector<double> sum_g(shape.planes), sum_g_xhat(shape.planes);
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < shape.planes; ++p) {
    const T* xp = x + p * L;
    const T* gp = grad_y + p * L;
    T* dxp = grad_x + p * L;
    const T m = mean[p], r = rstd[p];
    const int64_t c = p % C;
    const T w = weight ? weight[c] : T(1);
    const T b = bias ? bias[c] : T(0);
    // The activation mask is recomputed from x rather than stored: z = xhat * w + b.
    double sg = 0.0, sgx = 0.0;
    for (int64_t start = 0; start < L; start += kChunk) {
      const int64_t end = std::min(L, start + kChunk);
      T s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
      for (int64_t i = start; i < end; ++i) {
        const T xhat = (xp[i] - m) * r;
        const T g = gp[i] * activation_slope<A>(xhat * w + b, slope);
        s1 += g;
        s2 += g * xhat;
      }
      sg += static_cast<double>(s1);
      sgx += static_cast<double>(s2);
    }
    sum_g[p] = sg;
    sum_g_xhat[p] = sgx;
    // dx = rstd * w * (g - mean(g) - xhat * mean(g * xhat))
    const T mean_g = static_cast<T>(sg / static_cast<double>(L));
    const T mean_gx = static_cast<T>(sgx / static_cast<double>(L));
    const T k = r * w;
#pragma omp simd
    for (int64_t i = 0; i < L; ++i) {
      const T xhat = (xp[i] - m) * r;
      const T g = gp[i] * activation_slope<A>(xhat * w + b, slope);
      dxp[i] = k * (g - mean_g - xhat * mean_gx);
    }
  }
  if (grad_weight || grad_bias) {
    std::vector<double> dw(C, 0.0), db(C, 0.0);
    for (int64_t p = 0; p < shape.planes; ++p) {
      dw[p % C] += sum_g_xhat[p];
      db[p % C] += sum_g[p];
    }
    for (int64_t c = 0; c < C; ++c) {
      if (grad_weight) grad_weight[c] = static_cast<T>(dw[c]);
      if (grad_bias) grad_bias[c] = static_cast<T>(db[c]);
    }
  }
}

}  // namespace

template <typename T>
void instance_norm_act_forward(const T* x, const T* weight, const T* bias, const T* residual, T* y,
                               T* mean, T* rstd, PlaneShape shape, Act act, double slope,
                               double eps) {
  // The activation is a template parameter so the inner loops carry no branch on it.
  const T s = static_cast<T>(slope);
  switch (act) {
    case Act::Relu: return forward_planes<T, Act::Relu>(x, weight, bias, residual, y, mean, rstd, shape, s, eps);
    case Act::LeakyRelu: return forward_planes<T, Act::LeakyRelu>(x, weight, bias, residual, y, mean, rstd, shape, s, eps);
    default: return forward_planes<T, Act::None>(x, weight, bias, residual, y, mean, rstd, shape, s, eps);
  }
}

template <typename T>
void instance_norm_act_backward(const T* grad_y, const T* x, const T* mean, const T* rstd,
                                const T* weight, const T* bias, T* grad_x, T* grad_weight,
                                T* grad_bias, PlaneShape shape, Act act, double slope) {
  const T s = static_cast<T>(slope);
  switch (act) {
    case Act::Relu: return backward_planes<T, Act::Relu>(grad_y, x, mean, rstd, weight, bias, grad_x, grad_weight, grad_bias, shape, s);
    case Act::LeakyRelu: return backward_planes<T, Act::LeakyRelu>(grad_y, x, mean, rstd, weight, bias, grad_x, grad_weight, grad_bias, shape, s);
    default: return backward_planes<T, Act::None>(grad_y, x, mean, rstd, weight, bias, grad_x, grad_weight, grad_bias, shape, s);
  }
}

template void instance_norm_act_forward<float>(const float*, const float*, const float*,
                                               const float*, float*, float*, float*, PlaneShape,
                                               Act, double, double);
template void instance_norm_act_forward<double>(const double*, const double*, const double*,
                                                const double*, double*, double*, double*,
                                                PlaneShape, Act, double, double);
template void instance_norm_act_backward<float>(const float*, const float*, const float*,
                                                const float*, const float*, const float*, float*,
                                                float*, float*, PlaneShape, Act, double);
template void instance_norm_act_backward<double>(const double*, const double*, const double*,
                                                 const double*, const double*, const double*,
                                                 double*, double*, double*, PlaneShape, Act,
                                                 double);

}  // namespace duiit
