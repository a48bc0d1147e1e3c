// pybind11 bindings for autoal_fast._C. This file only converts and checks
// arrays and releases the GIL; the algorithms live in plain C++ files.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstring>
#include <stdexcept>
#include <string>

#include "topk.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace py = pybind11;

namespace {

template <typename T>
py::tuple topk_typed(const py::array& arr, int64_t k, bool largest,
                     int num_threads) {
  const T* x = static_cast<const T*>(arr.data());
  const int64_t n = static_cast<int64_t>(arr.shape(0));
  std::vector<T> values;
  std::vector<int64_t> indices;
  int64_t nans = 0;
  {
    py::gil_scoped_release release;
    autoal_fast::topk<T>(x, n, k, largest, num_threads, &values, &indices,
                         &nans);
  }
  py::array_t<T> v(static_cast<py::ssize_t>(values.size()));
  py::array_t<int64_t> i(static_cast<py::ssize_t>(indices.size()));
  if (!values.empty()) {
    std::memcpy(v.mutable_data(), values.data(), values.size() * sizeof(T));
    std::memcpy(i.mutable_data(), indices.data(),
                indices.size() * sizeof(int64_t));
  }
  return py::make_tuple(v, i, nans);
}

py::tuple topk(const py::array& arr, int64_t k, bool largest,
               int num_threads) {
  if (arr.ndim() != 1) {
    throw std::invalid_argument("x must be 1-D; got ndim=" +
                                std::to_string(arr.ndim()));
  }
  if (!(arr.flags() & py::array::c_style)) {
    throw std::invalid_argument("x must be C-contiguous");
  }
  const int64_t n = static_cast<int64_t>(arr.shape(0));
  if (k < 0 || k > n) {
    throw std::invalid_argument("k must be in [0, n=" + std::to_string(n) +
                                "]; got " + std::to_string(k));
  }
  if (py::isinstance<py::array_t<float>>(arr)) {
    return topk_typed<float>(arr, k, largest, num_threads);
  }
  if (py::isinstance<py::array_t<double>>(arr)) {
    return topk_typed<double>(arr, k, largest, num_threads);
  }
  throw std::invalid_argument(
      "x must be float32 or float64 (the Python layer widens float16/bfloat16)");
}

bool has_openmp() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "autoal_fast compiled core: exact large-pool top-k (CPU).";
  m.def("topk", &topk, py::arg("x"), py::arg("k"), py::arg("largest") = true,
        py::arg("num_threads") = 0,
        "Exact top-k of a 1-D contiguous float32/float64 array.\n\n"
        "Returns (values, indices, nan_count): best first, ties to the lower\n"
        "index, NaNs skipped and counted. num_threads <= 0 uses OpenMP's\n"
        "default. Raises ValueError on bad rank, dtype or k.");
  m.def("has_openmp", &has_openmp, "Whether the extension was built with OpenMP.");
#ifdef AUTOAL_FAST_VERSION
  m.attr("__version__") = AUTOAL_FAST_VERSION;
#else
  m.attr("__version__") = "dev";
#endif
}
