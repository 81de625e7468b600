#include "instance_norm.h"

#include <cmath>
#include <vector>

namespace duiit {
namespace {

inline double activate(double z, Act act, double slope) {
  switch (act) {
    case Act::Relu: return z > 0.0 ? z : 0.0;
    case Act::LeakyRelu: return z > 0.0 ? z : slope * z;
    default: return z;
  }
}

// d act(z) / dz, with the derivative at 0 taken as torch does (0 for ReLU, slope for LeakyReLU).
inline double activation_slope(double z, Act act, double slope) {
  switch (act) {
    case Act::Relu: return z > 0.0 ? 1.0 : 0.0;
    case Act::LeakyRelu: return z > 0.0 ? 1.0 : slope;
    default: return 1.0;
  }
}

template <typename T>
void plane_moments(const T* xp, int64_t length, double eps, double* mean_out, double* rstd_out) {
  double sum = 0.0;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < length; ++i) sum += static_cast<double>(xp[i]);
  const double mean = sum / static_cast<double>(length);
  double sq = 0.0;
#pragma omp simd reduction(+ : sq)
  for (int64_t i = 0; i < length; ++i) {
    const double d = static_cast<double>(xp[i]) - mean;
    sq += d * d;
  }
  // Biased variance, as torch.nn.InstanceNorm2d.
  *mean_out = mean;
  *rstd_out = 1.0 / std::sqrt(sq / static_cast<double>(length) + eps);
}

}  // namespace

template <typename T>
void instance_norm_act_forward(const T* x, const T* weight, const T* bias, const T* residual, T* y,
                               T* mean, T* rstd, PlaneShape shape, Act act, double slope,
                               double eps) {
  const int64_t L = shape.length;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < shape.planes; ++p) {
    const T* xp = x + p * L;
    T* yp = y + p * L;
    double m, r;
    plane_moments(xp, L, eps, &m, &r);
    mean[p] = static_cast<T>(m);
    rstd[p] = static_cast<T>(r);
    const int64_t c = p % shape.channels;
    const double w = weight ? static_cast<double>(weight[c]) : 1.0;
    const double b = bias ? static_cast<double>(bias[c]) : 0.0;
    // Fold normalisation and affine into one multiply-add: y = x * scale + shift.
    const double scale = r * w;
    const double shift = b - m * scale;
    if (residual) {
      const T* rp = residual + p * L;
#pragma omp simd
      for (int64_t i = 0; i < L; ++i)
        yp[i] = static_cast<T>(static_cast<double>(rp[i]) + static_cast<double>(xp[i]) * scale + shift);
    } else if (act == Act::None) {
#pragma omp simd
      for (int64_t i = 0; i < L; ++i)
        yp[i] = static_cast<T>(static_cast<double>(xp[i]) * scale + shift);
    } else {
      for (int64_t i = 0; i < L; ++i)
        yp[i] = static_cast<T>(activate(static_cast<double>(xp[i]) * scale + shift, act, slope));
    }
  }
}

template <typename T>
void instance_norm_act_backward(const T* grad_y, const T* x, const T* mean, const T* rstd,
                                const T* weight, const T* bias, T* grad_x, T* grad_weight,
                                T* grad_bias, PlaneShape shape, Act act, double slope) {
  const int64_t L = shape.length;
  const int64_t C = shape.channels;
  // Per-plane sums of g and g*xhat: they give grad_x (within the plane) and, summed over the
  // batch afterwards, grad_weight and grad_bias. Reducing serially keeps the result deterministic.
  std::vector<double> sum_g(shape.planes), sum_g_xhat(shape.planes);
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < shape.planes; ++p) {
    const T* xp = x + p * L;
    const T* gp = grad_y + p * L;
    T* dxp = grad_x + p * L;
    const double m = static_cast<double>(mean[p]);
    const double r = static_cast<double>(rstd[p]);
    const int64_t c = p % C;
    const double w = weight ? static_cast<double>(weight[c]) : 1.0;
    const double b = bias ? static_cast<double>(bias[c]) : 0.0;
    double sg = 0.0, sgx = 0.0;
    for (int64_t i = 0; i < L; ++i) {
      const double xhat = (static_cast<double>(xp[i]) - m) * r;
      const double g = static_cast<double>(gp[i]) * activation_slope(xhat * w + b, act, slope);
      sg += g;
      sgx += g * xhat;
    }
    sum_g[p] = sg;
    sum_g_xhat[p] = sgx;
    // dx = rstd * w * (g - mean(g) - xhat * mean(g * xhat))
    const double inv_L = 1.0 / static_cast<double>(L);
    const double mean_g = sg * inv_L, mean_gx = sgx * inv_L;
    const double k = r * w;
    for (int64_t i = 0; i < L; ++i) {
      const double xhat = (static_cast<double>(xp[i]) - m) * r;
      const double g = static_cast<double>(gp[i]) * activation_slope(xhat * w + b, act, slope);
      dxp[i] = static_cast<T>(k * (g - mean_g - xhat * mean_gx));
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
