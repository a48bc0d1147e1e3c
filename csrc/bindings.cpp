// pybind11 bindings for autoal_fast._C. This file only converts and checks
// arrays and releases the GIL; the algorithms live in plain C++ files.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "distance.h"
#include "sumtree.h"
#include "topk.h"
#include "uncertainty.h"

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

// Which row format x holds: float32, float16, or (bfloat16=true) bfloat16 bit
// patterns in an int16/uint16 array (numpy has no bfloat16; a torch bfloat16
// tensor viewed as int16 gives one without a copy).
enum class RowFormat { f32, f16, bf16 };

RowFormat row_format(const py::array& x, bool bfloat16) {
  const uint16_t one = 1;
  const bool little = *reinterpret_cast<const unsigned char*>(&one) == 1;
  if (x.dtype().byteorder() == (little ? '>' : '<')) {
    throw std::invalid_argument("x must be in native byte order");
  }
  const char kind = x.dtype().kind();
  const auto size = x.itemsize();
  if (bfloat16) {
    if ((kind == 'i' || kind == 'u') && size == 2) return RowFormat::bf16;
    throw std::invalid_argument(
        "with bfloat16=True, x must be an int16/uint16 array of bfloat16 bit patterns");
  }
  if (kind == 'f' && size == 4) return RowFormat::f32;
  if (kind == 'f' && size == 2) return RowFormat::f16;
  throw std::invalid_argument(
      "x must be a 2-D float32 or float16 array (or bfloat16 bits with bfloat16=True)");
}

// A 2-D row array as the distance steps read it: format, shape and row stride
// (in elements); rows may be strided, features must be contiguous.
struct Rows {
  RowFormat fmt;
  int64_t n, d, ld;
};

Rows rows_of(const py::array& x, bool bfloat16) {
  if (x.ndim() != 2) throw std::invalid_argument("x must be a 2-D array");
  const RowFormat fmt = row_format(x, bfloat16);
  const auto es = static_cast<py::ssize_t>(x.itemsize());
  if (x.strides(1) != es || x.strides(0) % es != 0) {
    throw std::invalid_argument("x must have unit stride along features");
  }
  return Rows{fmt, x.shape(0), x.shape(1), x.strides(0) / es};
}

template <typename T>
void min_dist_update_typed(const void* x, int64_t ld, int64_t d, const int64_t* idx,
                           int64_t m, const float* c, float* mind, int32_t* assign,
                           int32_t cid, float* dist_out, int num_threads) {
  py::gil_scoped_release release;
  autoal_fast::min_dist_update(static_cast<const T*>(x), ld, d, idx, m, c, mind, assign,
                               cid, dist_out, num_threads);
}

// x: float32 / float16 / bfloat16-bits 2-D with unit stride along features
// (rows may be strided, e.g. a memmap slice; never copied); idx: None or int64
// 1-D; c: float32 (d,); mind: float32 (n,) writable; assign: int32 (n,)
// writable. Checked here, trusted in C++.
void min_dist_update(const py::array& x, const py::object& idx_obj,
                     const py::array& c, py::array& mind, py::array& assign,
                     int32_t cid, py::object dist_out_obj, int num_threads,
                     bool bfloat16) {
  const Rows rows = rows_of(x, bfloat16);
  const RowFormat fmt = rows.fmt;
  const int64_t n = rows.n, d = rows.d, ld = rows.ld;
  auto check_vec = [](const py::array& a, const char* name, int64_t len,
                      bool writable) {
    if (a.ndim() != 1 || a.shape(0) != len ||
        !(a.flags() & py::array::c_style)) {
      throw std::invalid_argument(std::string(name) +
                                  " must be a contiguous 1-D array of length " +
                                  std::to_string(len));
    }
    if (writable && !a.writeable()) {
      throw std::invalid_argument(std::string(name) + " must be writable");
    }
  };
  if (!py::isinstance<py::array_t<float>>(c)) throw std::invalid_argument("c must be float32");
  check_vec(c, "c", d, false);
  if (!py::isinstance<py::array_t<float>>(mind)) throw std::invalid_argument("mind must be float32");
  check_vec(mind, "mind", n, true);
  if (!py::isinstance<py::array_t<int32_t>>(assign)) throw std::invalid_argument("assign must be int32");
  check_vec(assign, "assign", n, true);
  const int64_t* idx = nullptr;
  int64_t m = n;
  py::array idx_arr;
  if (!idx_obj.is_none()) {
    idx_arr = py::array::ensure(idx_obj);
    if (!idx_arr || !py::isinstance<py::array_t<int64_t>>(idx_arr) ||
        idx_arr.ndim() != 1 || !(idx_arr.flags() & py::array::c_style)) {
      throw std::invalid_argument("idx must be None or a contiguous 1-D int64 array");
    }
    m = idx_arr.shape(0);
    idx = static_cast<const int64_t*>(idx_arr.data());
    for (int64_t r = 0; r < m; ++r) {
      if (idx[r] < 0 || idx[r] >= n) {
        throw std::invalid_argument("idx holds a row id outside [0, n)");
      }
    }
  }
  float* dist_out = nullptr;
  py::array dist_arr;
  if (!dist_out_obj.is_none()) {
    dist_arr = py::array::ensure(dist_out_obj);
    if (!dist_arr || !py::isinstance<py::array_t<float>>(dist_arr)) {
      throw std::invalid_argument("dist_out must be None or a float32 array");
    }
    check_vec(dist_arr, "dist_out", m, true);
    dist_out = static_cast<float*>(dist_arr.mutable_data());
  }
  const float* cp = static_cast<const float*>(c.data());
  float* mp = static_cast<float*>(mind.mutable_data());
  int32_t* ap = static_cast<int32_t*>(assign.mutable_data());
  auto* step = fmt == RowFormat::f32   ? &min_dist_update_typed<float>
               : fmt == RowFormat::f16 ? &min_dist_update_typed<autoal_fast::Half>
                                       : &min_dist_update_typed<autoal_fast::BFloat16>;
  step(x.data(), ld, d, idx, m, cp, mp, ap, cid, dist_out, num_threads);
}

template <typename T>
void kcenter_lazy_typed(const void* x, int64_t ld, int64_t n, int64_t d, float* mind,
                        int32_t* assign, int32_t cid0, int64_t k, int64_t first,
                        int64_t* picks, int64_t* stats, int num_threads) {
  py::gil_scoped_release release;
  autoal_fast::kcenter_lazy(static_cast<const T*>(x), ld, n, d, mind, assign, cid0, k, first,
                            picks, stats, num_threads);
}

// x as for min_dist_update; mind float32 (n,), assign int32 (n,), both
// writable. Returns (picks int64 (k,), (refreshes, heap pops)).
py::tuple kcenter_lazy(const py::array& x, py::array& mind, py::array& assign,
                       int32_t cid0, int64_t k, int64_t first, int num_threads,
                       bool bfloat16) {
  const Rows rows = rows_of(x, bfloat16);
  const RowFormat fmt = rows.fmt;
  const int64_t n = rows.n, d = rows.d, ld = rows.ld;
  if (!py::isinstance<py::array_t<float>>(mind) || mind.ndim() != 1 || mind.shape(0) != n ||
      !(mind.flags() & py::array::c_style) || !mind.writeable()) {
    throw std::invalid_argument("mind must be a writable contiguous float32 array of length n");
  }
  if (!py::isinstance<py::array_t<int32_t>>(assign) || assign.ndim() != 1 ||
      assign.shape(0) != n || !(assign.flags() & py::array::c_style) || !assign.writeable()) {
    throw std::invalid_argument("assign must be a writable contiguous int32 array of length n");
  }
  if (n > INT32_MAX) throw std::invalid_argument("kcenter_lazy: n must be < 2^31");
  if (k < 0 || k > n) {
    throw std::invalid_argument("k must be in [0, n=" + std::to_string(n) + "]; got " +
                                std::to_string(k));
  }
  if (first >= n) throw std::invalid_argument("first must be < n (or negative for none)");
  py::array_t<int64_t> picks(static_cast<py::ssize_t>(k));
  int64_t* pp = picks.mutable_data();
  for (int64_t t = 0; t < k; ++t) pp[t] = -1;
  int64_t stats[2] = {0, 0};
  auto* run = fmt == RowFormat::f32   ? &kcenter_lazy_typed<float>
              : fmt == RowFormat::f16 ? &kcenter_lazy_typed<autoal_fast::Half>
                                      : &kcenter_lazy_typed<autoal_fast::BFloat16>;
  run(x.data(), ld, n, d, static_cast<float*>(mind.mutable_data()),
      static_cast<int32_t*>(assign.mutable_data()), cid0, k, first, pp, stats, num_threads);
  return py::make_tuple(picks, py::make_tuple(stats[0], stats[1]));
}


template <typename T>
void nearest_pruned_typed(const void* x, int64_t ld, int64_t m, int64_t d, const float* lab,
                          const int64_t* lab_id, const int64_t* start, int64_t groups,
                          const float* dots, const double* anchor_sq, const double* radius,
                          double unit, float* mind, int32_t* assign, int64_t* visited,
                          int num_threads) {
  py::gil_scoped_release release;
  autoal_fast::nearest_labeled_pruned(static_cast<const T*>(x), ld, m, d, lab, lab_id, start,
                                      groups, dots, anchor_sq, radius, unit, mind, assign,
                                      visited, num_threads);
}

template <typename A>
const A* checked_c_array(const py::array& a, const char* name, int ndim, const int64_t* shape,
                         bool writable = false) {
  if (!py::isinstance<py::array_t<A>>(a) || a.ndim() != ndim || !(a.flags() & py::array::c_style) ||
      (writable && !a.writeable())) {
    throw std::invalid_argument(std::string(name) + " must be a " +
                                (writable ? "writable " : "") + "contiguous " +
                                std::to_string(ndim) + "-D " + py::str(py::dtype::of<A>()).cast<std::string>() +
                                " array");
  }
  for (int k = 0; k < ndim; ++k) {
    if (a.shape(k) != shape[k]) {
      throw std::invalid_argument(std::string(name) + " has the wrong shape along axis " +
                                  std::to_string(k) + ": " + std::to_string(a.shape(k)) +
                                  ", expected " + std::to_string(shape[k]));
    }
  }
  return static_cast<const A*>(a.data());
}

// x as for min_dist_update (m pool rows); lab float32 (nl, d) ordered by group;
// lab_id int64 (nl,); start int64 (G + 1,), start[0] = 0, non-decreasing,
// start[G] = nl; dots float32 (m, G); anchor_sq, radius float64 (G,); mind
// float32 (m,) and assign int32 (m,) written. Returns the member distances
// computed.
int64_t nearest_labeled_pruned(const py::array& x, const py::array& lab, const py::array& lab_id,
                               const py::array& start, const py::array& dots,
                               const py::array& anchor_sq, const py::array& radius, double unit,
                               py::array& mind, py::array& assign, int num_threads,
                               bool bfloat16) {
  const Rows rows = rows_of(x, bfloat16);
  const int64_t m = rows.n, d = rows.d;
  if (lab.ndim() != 2) throw std::invalid_argument("lab must be a 2-D float32 array");
  const int64_t nl = lab.shape(0);
  if (start.ndim() != 1 || start.shape(0) < 2) {
    throw std::invalid_argument("start must be a 1-D int64 array of length G + 1 >= 2");
  }
  const int64_t groups = start.shape(0) - 1;
  const int64_t s_lab[2] = {nl, d}, s_id[1] = {nl}, s_start[1] = {groups + 1},
                s_dots[2] = {m, groups}, s_g[1] = {groups}, s_m[1] = {m};
  const float* lp = checked_c_array<float>(lab, "lab", 2, s_lab);
  const int64_t* ip = checked_c_array<int64_t>(lab_id, "lab_id", 1, s_id);
  const int64_t* sp = checked_c_array<int64_t>(start, "start", 1, s_start);
  const float* dp = checked_c_array<float>(dots, "dots", 2, s_dots);
  const double* ap = checked_c_array<double>(anchor_sq, "anchor_sq", 1, s_g);
  const double* rp = checked_c_array<double>(radius, "radius", 1, s_g);
  checked_c_array<float>(mind, "mind", 1, s_m, true);
  checked_c_array<int32_t>(assign, "assign", 1, s_m, true);
  if (sp[0] != 0 || sp[groups] != nl) throw std::invalid_argument("start must run from 0 to nl");
  for (int64_t g = 0; g < groups; ++g) {
    if (sp[g + 1] <= sp[g]) throw std::invalid_argument("start must be strictly increasing (no empty group)");
    if (!(rp[g] >= 0.0) || !(ap[g] >= 0.0)) {
      throw std::invalid_argument("radius and anchor_sq must be >= 0");
    }
  }
  for (int64_t r = 0; r < nl; ++r) {
    if (ip[r] < 0 || ip[r] > INT32_MAX) throw std::invalid_argument("lab_id must be in [0, 2^31)");
  }
  if (!(unit > 0.0 && unit < 1e-2)) throw std::invalid_argument("unit must be in (0, 0.01)");
  int64_t visited = 0;
  auto* run = rows.fmt == RowFormat::f32   ? &nearest_pruned_typed<float>
              : rows.fmt == RowFormat::f16 ? &nearest_pruned_typed<autoal_fast::Half>
                                           : &nearest_pruned_typed<autoal_fast::BFloat16>;
  run(x.data(), rows.ld, m, d, lp, ip, sp, groups, dp, ap, rp, unit,
      static_cast<float*>(mind.mutable_data()), static_cast<int32_t*>(assign.mutable_data()),
      &visited, num_threads);
  return visited;
}


// x float32 (m, d) rows (unit feature stride), c float32 (mc, d) contiguous,
// col int64 (m,) in [0, mc), out float64 (m,) written.
void sq_dist64_rows(const py::array& x, const py::array& c, const py::array& col, py::array& out,
                    int num_threads) {
  const Rows rows = rows_of(x, false);
  if (rows.fmt != RowFormat::f32) throw std::invalid_argument("x must be float32");
  if (c.ndim() != 2) throw std::invalid_argument("c must be a 2-D float32 array");
  const int64_t mc = c.shape(0);
  const int64_t s_c[2] = {mc, rows.d}, s_m[1] = {rows.n};
  const float* cp = checked_c_array<float>(c, "c", 2, s_c);
  const int64_t* ip = checked_c_array<int64_t>(col, "col", 1, s_m);
  checked_c_array<double>(out, "out", 1, s_m, true);
  for (int64_t r = 0; r < rows.n; ++r) {
    if (ip[r] < 0 || ip[r] >= mc) throw std::invalid_argument("col holds an id outside [0, len(c))");
  }
  double* op = static_cast<double*>(out.mutable_data());
  const float* xp = static_cast<const float*>(x.data());
  py::gil_scoped_release release;
  autoal_fast::sq_dist64_rows(xp, rows.ld, rows.n, rows.d, cp, ip, op, num_threads);
}

// Row-strided float32 matrix view: unit stride along the last axis.
struct F32Rows {
  const float* data;
  int64_t row_stride;  // elements
};

void check_f32_vec(const py::array& a, const char* name, int64_t len) {
  if (!py::isinstance<py::array_t<float>>(a) || a.ndim() != 1 ||
      a.shape(0) != len || !(a.flags() & py::array::c_style) || !a.writeable()) {
    throw std::invalid_argument(std::string(name) +
                                " must be a writable contiguous float32 array of length " +
                                std::to_string(len));
  }
}

void check_flags(const py::array& a, int64_t len) {
  if (!py::isinstance<py::array_t<int32_t>>(a) || a.ndim() != 1 ||
      a.shape(0) != len || !(a.flags() & py::array::c_style) || !a.writeable()) {
    throw std::invalid_argument("flags must be a writable contiguous int32 array of length " +
                                std::to_string(len));
  }
}

// z: float32 (n, C), unit class stride; outputs float32 (n,) each; flags int32 (n,).
void uncertainty_logits(const py::array& z, py::array& ent, py::array& mar,
                        py::array& lc, py::array& flags, int num_threads) {
  if (!py::isinstance<py::array_t<float>>(z) || z.ndim() != 2 ||
      z.strides(1) != static_cast<py::ssize_t>(sizeof(float)) ||
      z.strides(0) % static_cast<py::ssize_t>(sizeof(float)) != 0) {
    throw std::invalid_argument("logits must be 2-D float32 with unit stride along classes");
  }
  const int64_t n = z.shape(0), C = z.shape(1);
  check_f32_vec(ent, "entropy", n);
  check_f32_vec(mar, "margin", n);
  check_f32_vec(lc, "least_confidence", n);
  check_flags(flags, n);
  const float* zp = static_cast<const float*>(z.data());
  const int64_t ld = z.strides(0) / static_cast<py::ssize_t>(sizeof(float));
  float* e = static_cast<float*>(ent.mutable_data());
  float* m = static_cast<float*>(mar.mutable_data());
  float* l = static_cast<float*>(lc.mutable_data());
  int32_t* f = static_cast<int32_t*>(flags.mutable_data());
  py::gil_scoped_release release;
  autoal_fast::uncertainty_logits(zp, ld, n, C, e, m, l, f, num_threads);
}

// x: float32 (T, n, C), unit class stride; outputs float32 (n,); flags int32 (n,).
void uncertainty_mc(const py::array& x, py::array& vr, py::array& bald,
                    py::array& mstd, py::array& flags, int num_threads) {
  const auto fs = static_cast<py::ssize_t>(sizeof(float));
  if (!py::isinstance<py::array_t<float>>(x) || x.ndim() != 3 ||
      x.strides(2) != fs || x.strides(0) % fs != 0 || x.strides(1) % fs != 0) {
    throw std::invalid_argument("mc_logits must be 3-D float32 with unit stride along classes");
  }
  const int64_t T = x.shape(0), n = x.shape(1), C = x.shape(2);
  if (T < 1) throw std::invalid_argument("mc_logits needs at least one sample");
  check_f32_vec(vr, "var_ratio", n);
  check_f32_vec(bald, "bald", n);
  check_f32_vec(mstd, "mean_std", n);
  check_flags(flags, n);
  const float* xp = static_cast<const float*>(x.data());
  float* a = static_cast<float*>(vr.mutable_data());
  float* b = static_cast<float*>(bald.mutable_data());
  float* c = static_cast<float*>(mstd.mutable_data());
  int32_t* f = static_cast<int32_t*>(flags.mutable_data());
  py::gil_scoped_release release;
  autoal_fast::uncertainty_mc(xp, x.strides(0) / fs, x.strides(1) / fs, n, C, T, a, b, c, f,
                              num_threads);
}

void sumtree_build(autoal_fast::SumTree& t, const py::array& w) {
  if (!py::isinstance<py::array_t<double>>(w) || w.ndim() != 1 || w.shape(0) != t.size() ||
      !(w.flags() & py::array::c_style)) {
    throw std::invalid_argument("weights must be a contiguous float64 array of length n=" +
                                std::to_string(t.size()));
  }
  const double* p = static_cast<const double*>(w.data());
  for (int64_t i = 0; i < t.size(); ++i) {
    if (!(p[i] >= 0.0) || p[i] == INFINITY) {
      throw std::invalid_argument("weights must be finite and >= 0");
    }
  }
  t.build(p);
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
  m.doc() = "autoal_fast compiled core: exact large-pool top-k, the fused k-center distance step and fused uncertainty scores (CPU).";
  m.def("topk", &topk, py::arg("x"), py::arg("k"), py::arg("largest") = true,
        py::arg("num_threads") = 0,
        "Exact top-k of a 1-D contiguous float32/float64 array.\n\n"
        "Returns (values, indices, nan_count): best first, ties to the lower\n"
        "index, NaNs skipped and counted. num_threads <= 0 uses OpenMP's\n"
        "default. Raises ValueError on bad rank, dtype or k.");
  m.def("min_dist_update", &min_dist_update, py::arg("x"), py::arg("idx"),
        py::arg("c"), py::arg("mind"), py::arg("assign"), py::arg("cid"),
        py::arg("dist_out") = py::none(), py::arg("num_threads") = 0,
        py::arg("bfloat16") = false,
        "Fused k-center step on CPU: for rows i of x (all, or those in idx),\n"
        "d = ||x_i - c|| (difference form, float32); where mind[i] >= 0 and\n"
        "d < mind[i], set mind[i] = d and assign[i] = cid. In place; optional\n"
        "dist_out receives every row's distance. x is float32 or float16 (read\n"
        "in place, widened per element), or with bfloat16=True an int16/uint16\n"
        "array of bfloat16 bit patterns. Raises ValueError on bad dtypes,\n"
        "shapes or row ids.");
  m.def("kcenter_lazy", &kcenter_lazy, py::arg("x"), py::arg("mind"), py::arg("assign"),
        py::arg("cid0"), py::arg("k"), py::arg("first") = -1, py::arg("num_threads") = 0,
        py::arg("bfloat16") = false,
        "Exact k-center greedy by lazy evaluation: k picks (ties to the lower\n"
        "row) of the plain one-pass-per-step greedy over rows of x, starting\n"
        "from mind (exact distances to the initial centres, +inf for none,\n"
        "< 0 for rows never to pick) and, if first >= 0, with that row as pick\n"
        "0. Distances are min_dist_update's, bit for bit. mind/assign are\n"
        "scratch (left stale). Returns (picks int64 (k,), (refreshes, pops));\n"
        "a pick is -1 when fewer than k rows could be picked.");
  m.def("nearest_labeled_pruned", &nearest_labeled_pruned, py::arg("x"), py::arg("lab"),
        py::arg("lab_id"), py::arg("start"), py::arg("dots"), py::arg("anchor_sq"),
        py::arg("radius"), py::arg("unit"), py::arg("mind"), py::arg("assign"),
        py::arg("num_threads") = 0, py::arg("bfloat16") = false,
        "Exact nearest labeled row of each row of x, pruned by anchor groups:\n"
        "lab rows ordered by group (start), dots = x @ anchors.T from a float32\n"
        "matmul with unit roundoff `unit`, radius[g] >= every member's distance\n"
        "to its anchor. A group is skipped only when the triangle inequality\n"
        "(with every rounding error bounded) puts all its members farther than\n"
        "the best found; the winner has the smallest float64 difference-form\n"
        "distance, ties to the lower lab_id. Writes mind (float32 of the\n"
        "float64 distance) and assign (lab_id); returns the member distances\n"
        "computed.");
  m.def("sq_dist64_rows", &sq_dist64_rows, py::arg("x"), py::arg("c"), py::arg("col"),
        py::arg("out"), py::arg("num_threads") = 0,
        "out[r] = squared distance of float32 row x[r] to c[col[r]] in float64\n"
        "(difference form; the summation order of nearest_labeled_pruned).");
  m.attr("min_dist_row_types") = py::make_tuple("float32", "float16", "bfloat16");
  m.def("uncertainty_logits", &uncertainty_logits, py::arg("logits"),
        py::arg("entropy"), py::arg("margin"), py::arg("least_confidence"),
        py::arg("flags"), py::arg("num_threads") = 0,
        "Fused entropy / margin / least-confidence scores of float32 logits\n"
        "(n, C) into preallocated float32 (n,) arrays; flags |= 1 on rows with\n"
        "NaN/inf (their scores are NaN). Releases the GIL; OpenMP over rows.");
  m.def("uncertainty_mc", &uncertainty_mc, py::arg("mc_logits"),
        py::arg("var_ratio"), py::arg("bald"), py::arg("mean_std"),
        py::arg("flags"), py::arg("num_threads") = 0,
        "Fused var_ratio / BALD / mean_std of float32 mc_logits (T, n, C) into\n"
        "preallocated float32 (n,) arrays; flags |= 2 on rows with NaN/inf.");
  py::class_<autoal_fast::SumTree>(m, "SumTree",
      "Sum tree over n non-negative float64 weights: O(log n) updates and\n"
      "draws proportional to weight.")
      .def(py::init<int64_t>(), py::arg("n"))
      .def("build", &sumtree_build, py::arg("weights"), "Set all n weights (float64 array).")
      .def("set", [](autoal_fast::SumTree& t, int64_t i, double w) {
             if (i < 0 || i >= t.size()) throw std::invalid_argument("SumTree.set: index out of range");
             if (!(w >= 0.0) || w == INFINITY) throw std::invalid_argument("SumTree.set: weight must be finite and >= 0");
             t.set(i, w);
           }, py::arg("i"), py::arg("w"))
      .def("get", [](const autoal_fast::SumTree& t, int64_t i) {
             if (i < 0 || i >= t.size()) throw std::invalid_argument("SumTree.get: index out of range");
             return t.get(i);
           }, py::arg("i"))
      .def("total", &autoal_fast::SumTree::total)
      .def("find", &autoal_fast::SumTree::find, py::arg("target"),
           "First i with w_0 + ... + w_i > target (0 <= target < total()).")
      .def("__len__", &autoal_fast::SumTree::size);
  m.def("has_openmp", &has_openmp, "Whether the extension was built with OpenMP.");
#ifdef AUTOAL_FAST_VERSION
  m.attr("__version__") = AUTOAL_FAST_VERSION;
#else
  m.attr("__version__") = "dev";
#endif
}
