// pybind11 bindings for duiit_fast._C. The extension does not link libtorch: Python passes
// numpy views of contiguous CPU tensors (inputs and preallocated outputs) and the kernels write
// into them with the GIL released.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>

#include "instance_norm.h"
#include "losses.h"

#ifdef DUIIT_HAVE_OPENMP
#include <omp.h>
#endif

namespace py = pybind11;

namespace {

template <typename T>
bool is_dtype(const py::array& a) {
  return a.dtype().is(py::dtype::of<T>());
}

void require_contiguous(const py::array& a, const char* name) {
  if (!(a.flags() & py::array::c_style))
    throw std::invalid_argument(std::string(name) + " must be C-contiguous");
}

// A pointer into an optional array argument, checked for dtype, layout and element count.
template <typename T>
const T* optional_ptr(const py::object& obj, int64_t expected, const char* name) {
  if (obj.is_none()) return nullptr;
  auto a = obj.cast<py::array>();
  if (!is_dtype<T>(a)) throw std::invalid_argument(std::string(name) + " has the wrong dtype");
  require_contiguous(a, name);
  if (a.size() != expected)
    throw std::invalid_argument(std::string(name) + " has " + std::to_string(a.size()) +
                                " elements, expected " + std::to_string(expected));
  return static_cast<const T*>(a.data());
}

template <typename T>
T* output_ptr(py::array& a, int64_t expected, const char* name) {
  if (!is_dtype<T>(a)) throw std::invalid_argument(std::string(name) + " has the wrong dtype");
  require_contiguous(a, name);
  if (!a.writeable()) throw std::invalid_argument(std::string(name) + " is read-only");
  if (a.size() != expected)
    throw std::invalid_argument(std::string(name) + " has the wrong size");
  return static_cast<T*>(a.mutable_data());
}

duiit::PlaneShape plane_shape(const py::array& x, int64_t channels) {
  if (x.ndim() < 3) throw std::invalid_argument("x must be (N, C, ...) with at least 3 dims");
  duiit::PlaneShape s{x.shape(0) * x.shape(1), channels, 1};
  if (x.shape(1) != channels) throw std::invalid_argument("channel count mismatch");
  for (py::ssize_t d = 2; d < x.ndim(); ++d) s.length *= x.shape(d);
  if (s.length == 0 || s.planes == 0) throw std::invalid_argument("x has an empty dimension");
  return s;
}

template <typename T>
void forward_typed(const py::array& x, const py::object& weight, const py::object& bias,
                   const py::object& residual, py::array& y, py::array& mean, py::array& rstd,
                   int act, double slope, double eps) {
  const auto shape = plane_shape(x, x.shape(1));
  const int64_t n = shape.planes * shape.length;
  require_contiguous(x, "x");
  const T* xp = static_cast<const T*>(x.data());
  const T* wp = optional_ptr<T>(weight, shape.channels, "weight");
  const T* bp = optional_ptr<T>(bias, shape.channels, "bias");
  const T* rp = optional_ptr<T>(residual, n, "residual");
  T* yp = output_ptr<T>(y, n, "y");
  T* mp = output_ptr<T>(mean, shape.planes, "mean");
  T* sp = output_ptr<T>(rstd, shape.planes, "rstd");
  py::gil_scoped_release release;
  duiit::instance_norm_act_forward<T>(xp, wp, bp, rp, yp, mp, sp, shape,
                                      static_cast<duiit::Act>(act), slope, eps);
}

template <typename T>
void backward_typed(const py::array& grad_y, const py::array& x, const py::array& mean,
                    const py::array& rstd, const py::object& weight, const py::object& bias,
                    py::array& grad_x, const py::object& grad_weight, const py::object& grad_bias,
                    int act, double slope) {
  const auto shape = plane_shape(x, x.shape(1));
  const int64_t n = shape.planes * shape.length;
  require_contiguous(x, "x");
  const T* gy = optional_ptr<T>(grad_y, n, "grad_y");
  const T* mp = optional_ptr<T>(mean, shape.planes, "mean");
  const T* sp = optional_ptr<T>(rstd, shape.planes, "rstd");
  const T* wp = optional_ptr<T>(weight, shape.channels, "weight");
  const T* bp = optional_ptr<T>(bias, shape.channels, "bias");
  T* gx = output_ptr<T>(grad_x, n, "grad_x");
  T* gw = nullptr;
  T* gb = nullptr;
  if (!grad_weight.is_none()) {
    auto a = grad_weight.cast<py::array>();
    gw = output_ptr<T>(a, shape.channels, "grad_weight");
  }
  if (!grad_bias.is_none()) {
    auto a = grad_bias.cast<py::array>();
    gb = output_ptr<T>(a, shape.channels, "grad_bias");
  }
  py::gil_scoped_release release;
  duiit::instance_norm_act_backward<T>(gy, static_cast<const T*>(x.data()), mp, sp, wp, bp, gx, gw,
                                       gb, shape, static_cast<duiit::Act>(act), slope);
}

void check_act(int act) {
  if (act < 0 || act > 2) throw std::invalid_argument("act must be 0 (none), 1 (relu) or 2 (leaky_relu)");
}

void forward(const py::array& x, const py::object& weight, const py::object& bias,
             const py::object& residual, py::array& y, py::array& mean, py::array& rstd, int act,
             double slope, double eps) {
  check_act(act);
  if (is_dtype<float>(x)) return forward_typed<float>(x, weight, bias, residual, y, mean, rstd, act, slope, eps);
  if (is_dtype<double>(x)) return forward_typed<double>(x, weight, bias, residual, y, mean, rstd, act, slope, eps);
  throw std::invalid_argument("instance_norm_act: x must be float32 or float64");
}

void backward(const py::array& grad_y, const py::array& x, const py::array& mean,
              const py::array& rstd, const py::object& weight, const py::object& bias,
              py::array& grad_x, const py::object& grad_weight, const py::object& grad_bias,
              int act, double slope) {
  check_act(act);
  if (is_dtype<float>(x))
    return backward_typed<float>(grad_y, x, mean, rstd, weight, bias, grad_x, grad_weight, grad_bias, act, slope);
  if (is_dtype<double>(x))
    return backward_typed<double>(grad_y, x, mean, rstd, weight, bias, grad_x, grad_weight, grad_bias, act, slope);
  throw std::invalid_argument("instance_norm_act_backward: x must be float32 or float64");
}

template <typename T>
double loss_forward_typed(const py::array& a, const py::object& b, double target, int loss) {
  require_contiguous(a, "a");
  const T* bp = optional_ptr<T>(b, a.size(), "b");
  const T* ap = static_cast<const T*>(a.data());
  const int64_t n = a.size();
  py::gil_scoped_release release;
  return duiit::loss_forward<T>(ap, bp, target, n, static_cast<duiit::Loss>(loss));
}

template <typename T>
void loss_backward_typed(const py::array& a, const py::object& b, double target, int loss,
                         double grad_out, py::array& grad_a, const py::object& grad_b) {
  require_contiguous(a, "a");
  const int64_t n = a.size();
  const T* bp = optional_ptr<T>(b, n, "b");
  T* ga = output_ptr<T>(grad_a, n, "grad_a");
  T* gb = nullptr;
  if (!grad_b.is_none()) {
    auto arr = grad_b.cast<py::array>();
    gb = output_ptr<T>(arr, n, "grad_b");
  }
  const T* ap = static_cast<const T*>(a.data());
  py::gil_scoped_release release;
  duiit::loss_backward<T>(ap, bp, target, n, static_cast<duiit::Loss>(loss), grad_out, ga, gb);
}

void check_loss(int loss, const py::array& a) {
  if (loss < 0 || loss > 1) throw std::invalid_argument("loss must be 0 (lsgan) or 1 (l1)");
  if (a.size() == 0) throw std::invalid_argument("loss of an empty tensor");
}

double loss_forward(const py::array& a, const py::object& b, double target, int loss) {
  check_loss(loss, a);
  if (is_dtype<float>(a)) return loss_forward_typed<float>(a, b, target, loss);
  if (is_dtype<double>(a)) return loss_forward_typed<double>(a, b, target, loss);
  throw std::invalid_argument("loss_forward: inputs must be float32 or float64");
}

void loss_backward(const py::array& a, const py::object& b, double target, int loss,
                   double grad_out, py::array& grad_a, const py::object& grad_b) {
  check_loss(loss, a);
  if (is_dtype<float>(a)) return loss_backward_typed<float>(a, b, target, loss, grad_out, grad_a, grad_b);
  if (is_dtype<double>(a)) return loss_backward_typed<double>(a, b, target, loss, grad_out, grad_a, grad_b);
  throw std::invalid_argument("loss_backward: inputs must be float32 or float64");
}

int max_threads() {
#ifdef DUIIT_HAVE_OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "duiit_fast C++ CPU kernels (OpenMP); called through duiit_fast.ops";
  m.def("instance_norm_act_forward", &forward, py::arg("x"), py::arg("weight"), py::arg("bias"),
        py::arg("residual"), py::arg("y"), py::arg("mean"), py::arg("rstd"), py::arg("act"),
        py::arg("slope"), py::arg("eps"));
  m.def("instance_norm_act_backward", &backward, py::arg("grad_y"), py::arg("x"), py::arg("mean"),
        py::arg("rstd"), py::arg("weight"), py::arg("bias"), py::arg("grad_x"),
        py::arg("grad_weight"), py::arg("grad_bias"), py::arg("act"), py::arg("slope"));
  m.def("loss_forward", &loss_forward, py::arg("a"), py::arg("b"), py::arg("target"), py::arg("loss"),
        "mean((a-b)^2) (loss=0) or mean(|a-b|) (loss=1); b=None uses the scalar target");
  m.def("loss_backward", &loss_backward, py::arg("a"), py::arg("b"), py::arg("target"),
        py::arg("loss"), py::arg("grad_out"), py::arg("grad_a"), py::arg("grad_b"));
  m.def("openmp_threads", &max_threads, "OpenMP's maximum thread count (1 without OpenMP)");
#ifdef DUIIT_HAVE_OPENMP
  m.attr("has_openmp") = true;
#else
  m.attr("has_openmp") = false;
#endif
}
