#include "losses.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace duiit {
namespace {
constexpr int64_t kChunk = 1 << 14;

template <typename T>
inline double difference(const T* a, const T* b, double target, int64_t i) {
  return static_cast<double>(a[i]) - (b ? static_cast<double>(b[i]) : target);
}
}  // namespace

template <typename T>
double loss_forward(const T* a, const T* b, double target, int64_t n, Loss loss) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(chunks, 0.0);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t end = std::min(n, (c + 1) * kChunk);
    double s = 0.0;
    if (loss == Loss::Lsgan) {
#pragma omp simd reduction(+ : s)
      for (int64_t i = c * kChunk; i < end; ++i) {
        const double d = difference(a, b, target, i);
        s += d * d;
      }
    } else {
#pragma omp simd reduction(+ : s)
      for (int64_t i = c * kChunk; i < end; ++i) s += std::fabs(difference(a, b, target, i));
    }
    partial[c] = s;
  }
  double total = 0.0;
  for (double s : partial) total += s;
  return total / static_cast<double>(n);
}

template <typename T>
void loss_backward(const T* a, const T* b, double target, int64_t n, Loss loss, double grad_out,
                   T* grad_a, T* grad_b) {
  const double scale = grad_out / static_cast<double>(n);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const double d = difference(a, b, target, i);
    double g;
    if (loss == Loss::Lsgan) {
      g = 2.0 * d * scale;
    } else {
      g = d > 0.0 ? scale : (d < 0.0 ? -scale : 0.0);
    }
    grad_a[i] = static_cast<T>(g);
    if (grad_b) grad_b[i] = static_cast<T>(-g);
  }
}

template double loss_forward<float>(const float*, const float*, double, int64_t, Loss);
template double loss_forward<double>(const double*, const double*, double, int64_t, Loss);
template void loss_backward<float>(const float*, const float*, double, int64_t, Loss, double,
                                   float*, float*);
template void loss_backward<double>(const double*, const double*, double, int64_t, Loss, double,
                                    double*, double*);

}  // namespace duiit
