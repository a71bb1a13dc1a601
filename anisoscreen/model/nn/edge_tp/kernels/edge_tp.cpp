// Fused CPU kernels of anisoscreen's edge tensor product (see anisoscreen/model/fused.py).
//
// For one chunk of edges sorted by destination and every input order ("group") l1:
//
//     out[n, c, u] = sum_{e -> n} w[row_e, path(c), u] * sum_i coupling[e, c, i] * x[src_e, i, u]
//
// where coupling[e] = Y(r_e) . C (Clebsch-Gordan coefficients contracted with the edge's
// spherical harmonics, (cols, 2 l1 + 1)), path(c) the tensor-product path of output column c
// and w the radial weights, one row per distinct edge length (row_e: the row of edge e).
// The gather of the sources, the product, the weighting and the sum over edges happen in
// registers, so no (edges, cols, channels) intermediate is ever written. The backward pass
// gives the gradients with respect to x, w and coupling.
//
// Channels are processed in blocks of kBlock (one AVX2 register of floats); threads split
// (node, channel block) pairs in the forward pass and channel blocks in the backward pass,
// so no two threads ever write the same element. Plain C ABI: loaded with ctypes.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <thread>
#include <type_traits>
#include <vector>

namespace {

constexpr int kBlock = 8;
constexpr int kMaxOrder = 15;  // 2 l1 + 1 up to l1 = 7

struct Groups {
  int count;
  const int64_t* order;      // 2 l1 + 1 per group
  const int64_t* cols;       // output columns per group
  const int64_t* w_offset;   // first weight column of the group in a weight row
  const int32_t* const* path_of_col;
  const void* const* coupling;  // (edges, cols, order)
  const void* const* x;         // (nodes_all, order, mul)
  const int64_t* w_row;         // per edge, its row of the weight table (edges share rows)
};

// Splits tasks [0, tasks) into one contiguous range per thread. With OpenMP the threads are
// those of the process's OpenMP runtime, which is PyTorch's own when PyTorch loaded first:
// separate std::threads would compete with PyTorch's spinning workers for the same cores.
template <typename Fn>
void run_parallel(int64_t tasks, int threads, Fn fn) {
  threads = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, tasks)));
  const int64_t per = (tasks + threads - 1) / threads;
#ifdef _OPENMP
#pragma omp parallel for num_threads(threads) schedule(static, 1)
  for (int t = 0; t < threads; ++t) fn(std::min(tasks, t * per), std::min(tasks, (t + 1) * per));
#else
  if (threads == 1) {
    fn(0, tasks);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(threads - 1);
  for (int t = 1; t < threads; ++t) {
    const int64_t lo = std::min(tasks, t * per), hi = std::min(tasks, (t + 1) * per);
    pool.emplace_back([=] { fn(lo, hi); });
  }
  fn(0, std::min(tasks, per));
  for (auto& thread : pool) thread.join();
#endif
}

// A block of kBlock channels as one GCC vector (an AVX2 register of floats): the compiler
// does not reliably vectorise the short fixed-length loops by itself.
template <typename T>
struct VecOf;
template <>
struct VecOf<float> {
  typedef float type __attribute__((vector_size(kBlock * sizeof(float))));
};
template <>
struct VecOf<double> {
  typedef double type __attribute__((vector_size(kBlock * sizeof(double))));
};

// nb < kBlock (the last block when the channels are not a multiple of kBlock): zero-padded.
template <typename T, bool kFull>
inline typename VecOf<T>::type load(const T* p, int nb) {
  typename VecOf<T>::type v;
  if (kFull) {
    std::memcpy(&v, p, sizeof(v));
  } else {
    T tmp[kBlock] = {};
    for (int b = 0; b < nb; ++b) tmp[b] = p[b];
    std::memcpy(&v, tmp, sizeof(v));
  }
  return v;
}

template <typename T, bool kFull>
inline void store(T* p, typename VecOf<T>::type v, int nb) {
  if (kFull) {
    std::memcpy(p, &v, sizeof(v));
  } else {
    T tmp[kBlock];
    std::memcpy(tmp, &v, sizeof(v));
    for (int b = 0; b < nb; ++b) p[b] = tmp[b];
  }
}

// out[n, :, u0:u0+nb] for one destination node and one channel block.
template <typename T, int KT, bool kFull>
void forward_node(const Groups& g, int group, const T* weights, int64_t w_stride,
                  const int64_t* src, const int64_t* rowptr, int64_t mul, int64_t n, int64_t u0,
                  T* out) {
  typedef typename VecOf<T>::type V;
  const int K = KT > 0 ? KT : static_cast<int>(g.order[group]);
  const int nb = kFull ? kBlock : static_cast<int>(mul - u0);
  const int64_t cols = g.cols[group];
  const int32_t* path = g.path_of_col[group];
  const T* coupling = static_cast<const T*>(g.coupling[group]);
  const T* x = static_cast<const T*>(g.x[group]);
  T* o = out + n * cols * mul + u0;
  for (int64_t c = 0; c < cols; ++c) store<T, kFull>(o + c * mul, V{}, nb);
  V xv[kMaxOrder];
  for (int64_t e = rowptr[n]; e < rowptr[n + 1]; ++e) {
    const T* xs = x + src[e] * K * mul + u0;
    for (int i = 0; i < K; ++i) xv[i] = load<T, kFull>(xs + i * mul, nb);
    const T* ce = coupling + e * cols * K;
    const T* we = weights + g.w_row[e] * w_stride + g.w_offset[group] + u0;
    for (int64_t c = 0; c < cols; ++c) {
      const T* cc = ce + c * K;
      V s = cc[0] * xv[0];
      for (int i = 1; i < K; ++i) s += cc[i] * xv[i];
      const V w = load<T, kFull>(we + static_cast<int64_t>(path[c]) * mul, nb);
      T* oc = o + c * mul;
      store<T, kFull>(oc, load<T, kFull>(oc, nb) + s * w, nb);
    }
  }
}

template <typename T, int KT>
void forward_dispatch_full(bool full, const Groups& g, int group, const T* weights,
                           int64_t w_stride, const int64_t* src, const int64_t* rowptr,
                           int64_t mul, int64_t n, int64_t u0, T* out) {
  if (full)
    forward_node<T, KT, true>(g, group, weights, w_stride, src, rowptr, mul, n, u0, out);
  else
    forward_node<T, KT, false>(g, group, weights, w_stride, src, rowptr, mul, n, u0, out);
}

template <typename T>
void forward_task(const Groups& g, int group, const T* weights, int64_t w_stride,
                  const int64_t* src, const int64_t* rowptr, int64_t mul, int64_t n, int64_t u0,
                  T* out) {
  const bool full = u0 + kBlock <= mul;
  switch (g.order[group]) {
    case 1: return forward_dispatch_full<T, 1>(full, g, group, weights, w_stride, src, rowptr, mul, n, u0, out);
    case 3: return forward_dispatch_full<T, 3>(full, g, group, weights, w_stride, src, rowptr, mul, n, u0, out);
    case 5: return forward_dispatch_full<T, 5>(full, g, group, weights, w_stride, src, rowptr, mul, n, u0, out);
    case 7: return forward_dispatch_full<T, 7>(full, g, group, weights, w_stride, src, rowptr, mul, n, u0, out);
    default: return forward_dispatch_full<T, 0>(full, g, group, weights, w_stride, src, rowptr, mul, n, u0, out);
  }
}

template <typename T>
void forward(const Groups& g, const T* weights, int64_t w_stride, const int64_t* src,
             const int64_t* dst, int64_t num_edges, int64_t num_nodes, int64_t mul,
             void* const* outs, int threads) {
  // destination-sorted edges -> per-node edge ranges
  std::vector<int64_t> rowptr(num_nodes + 1, 0);
  for (int64_t e = 0; e < num_edges; ++e) ++rowptr[dst[e] + 1];
  for (int64_t n = 0; n < num_nodes; ++n) rowptr[n + 1] += rowptr[n];
  const int64_t blocks = (mul + kBlock - 1) / kBlock;
  const int64_t per_group = num_nodes * blocks;
  run_parallel(per_group * g.count, threads, [&](int64_t lo, int64_t hi) {
    for (int64_t task = lo; task < hi; ++task) {
      const int group = static_cast<int>(task / per_group);
      const int64_t rest = task % per_group, n = rest / blocks, u0 = (rest % blocks) * kBlock;
      forward_task<T>(g, group, weights, w_stride, src, rowptr.data(), mul, n, u0,
                      static_cast<T*>(outs[group]));
    }
  });
}

// Gradients of one edge for one group and one channel block.
template <typename T, int KT, bool kFull>
inline void backward_edge(const Groups& g, int group, const T* weights, int64_t w_stride,
                          const int64_t* src, const int64_t* dst, int64_t num_edges,
                          int64_t mul, int64_t e, int64_t block, const T* grad_out, T* grad_x,
                          T* grad_w, T* grad_coupling) {
  typedef typename VecOf<T>::type V;
  const int K = KT > 0 ? KT : static_cast<int>(g.order[group]);
  const int64_t u0 = block * kBlock;
  const int nb = kFull ? kBlock : static_cast<int>(mul - u0);
  const int64_t cols = g.cols[group];
  const int32_t* path = g.path_of_col[group];
  const T* x = static_cast<const T*>(g.x[group]);
  const int64_t w_offset = g.w_offset[group];
  V xv[kMaxOrder], gx[kMaxOrder];
  const T* xs = x + src[e] * K * mul + u0;
  for (int i = 0; i < K; ++i) {
    xv[i] = load<T, kFull>(xs + i * mul, nb);
    gx[i] = V{};
  }
  const T* ce = static_cast<const T*>(g.coupling[group]) + e * cols * K;
  const T* we = weights + g.w_row[e] * w_stride + w_offset + u0;
  // rows are shared by edges: gradients accumulate (the caller zeroes grad_w); the thread
  // owning this channel block handles every edge, so no other thread writes these elements
  T* gwe = grad_w ? grad_w + g.w_row[e] * w_stride + w_offset + u0 : nullptr;
  T* gce = grad_coupling ? grad_coupling + (block * num_edges + e) * cols * K : nullptr;
  const T* go = grad_out + dst[e] * cols * mul + u0;
  for (int64_t c = 0; c < cols; ++c) {
    const T* cc = ce + c * K;
    const int64_t p = static_cast<int64_t>(path[c]) * mul;
    const V gc = load<T, kFull>(go + c * mul, nb);
    if (gwe) {
      V s = cc[0] * xv[0];
      for (int i = 1; i < K; ++i) s += cc[i] * xv[i];
      store<T, kFull>(gwe + p, load<T, kFull>(gwe + p, nb) + gc * s, nb);
    }
    const V t = load<T, kFull>(we + p, nb) * gc;  // zero in padded lanes
    if (grad_x)
      for (int i = 0; i < K; ++i) gx[i] += cc[i] * t;
    if (gce)
      for (int i = 0; i < K; ++i) {
        const V prod = t * xv[i];
        T acc = T(0);
        for (int b = 0; b < kBlock; ++b) acc += prod[b];
        gce[c * K + i] = acc;
      }
  }
  if (grad_x) {
    T* gxs = grad_x + src[e] * K * mul + u0;
    for (int i = 0; i < K; ++i)
      store<T, kFull>(gxs + i * mul, load<T, kFull>(gxs + i * mul, nb) + gx[i], nb);
  }
}

// Edges outer, channel blocks [block_lo, block_hi) inner: an edge's couplings are read from
// memory once and reused by every block of the thread.
template <typename T, int KT>
void backward_range(const Groups& g, int group, const T* weights, int64_t w_stride,
                    const int64_t* src, const int64_t* dst, int64_t num_edges, int64_t mul,
                    int64_t block_lo, int64_t block_hi, const T* grad_out, T* grad_x, T* grad_w,
                    T* grad_coupling) {
  const int64_t full_hi = std::min(block_hi, mul / kBlock);  // blocks of kBlock channels
  for (int64_t e = 0; e < num_edges; ++e) {
    for (int64_t block = block_lo; block < full_hi; ++block)
      backward_edge<T, KT, true>(g, group, weights, w_stride, src, dst, num_edges, mul, e, block,
                                 grad_out, grad_x, grad_w, grad_coupling);
    for (int64_t block = std::max(block_lo, full_hi); block < block_hi; ++block)
      backward_edge<T, KT, false>(g, group, weights, w_stride, src, dst, num_edges, mul, e,
                                  block, grad_out, grad_x, grad_w, grad_coupling);
  }
}

template <typename T>
void backward(const Groups& g, const T* weights, int64_t w_stride, const int64_t* src,
              const int64_t* dst, int64_t num_edges, int64_t mul, const void* const* grad_outs,
              void* const* grad_xs, T* grad_w, void* const* grad_couplings, int threads) {
  const int64_t blocks = (mul + kBlock - 1) / kBlock;
  // threads own channel blocks: no two threads write the same gradient element
  run_parallel(blocks, threads, [&](int64_t lo, int64_t hi) {
    for (int group = 0; group < g.count; ++group) {
      const T* go = static_cast<const T*>(grad_outs[group]);
      T* gx = grad_xs ? static_cast<T*>(grad_xs[group]) : nullptr;
      T* gc = grad_couplings ? static_cast<T*>(grad_couplings[group]) : nullptr;
      const auto call = [&](auto kt) {
        backward_range<T, decltype(kt)::value>(g, group, weights, w_stride, src, dst, num_edges,
                                               mul, lo, hi, go, gx, grad_w, gc);
      };
      switch (g.order[group]) {
        case 1: call(std::integral_constant<int, 1>{}); break;
        case 3: call(std::integral_constant<int, 3>{}); break;
        case 5: call(std::integral_constant<int, 5>{}); break;
        case 7: call(std::integral_constant<int, 7>{}); break;
        default: call(std::integral_constant<int, 0>{}); break;
      }
    }
  });
}

}  // namespace

extern "C" {

// Returns 0 on success, 1 when an order is too large for the kernel.
#define ANISOSCREEN_CHECK_ORDERS(g)                                      \
  for (int k = 0; k < (g).count; ++k)                                    \
    if ((g).order[k] > kMaxOrder) return 1;

#define ANISOSCREEN_ENTRY(SUFFIX, T)                                                          \
  int edge_tp_forward_##SUFFIX(int count, const int64_t* order, const int64_t* cols,          \
                               const int64_t* w_offset, const int32_t* const* path_of_col,    \
                               const void* const* coupling, const void* const* x,             \
                               const void* weights, const int64_t* w_row, int64_t w_stride, const int64_t* src,     \
                               const int64_t* dst, int64_t num_edges, int64_t num_nodes,      \
                               int64_t mul, void* const* outs, int threads) {                 \
    const Groups g{count, order, cols, w_offset, path_of_col, coupling, x, w_row};            \
    ANISOSCREEN_CHECK_ORDERS(g)                                                               \
    forward<T>(g, static_cast<const T*>(weights), w_stride, src, dst, num_edges, num_nodes,   \
               mul, outs, threads);                                                           \
    return 0;                                                                                 \
  }                                                                                           \
  int edge_tp_backward_##SUFFIX(int count, const int64_t* order, const int64_t* cols,         \
                                const int64_t* w_offset, const int32_t* const* path_of_col,   \
                                const void* const* coupling, const void* const* x,            \
                                const void* weights, const int64_t* w_row, int64_t w_stride, const int64_t* src,    \
                                const int64_t* dst, int64_t num_edges, int64_t mul,           \
                                const void* const* grad_outs, void* const* grad_xs,           \
                                void* grad_w, void* const* grad_couplings, int threads) {     \
    const Groups g{count, order, cols, w_offset, path_of_col, coupling, x, w_row};            \
    ANISOSCREEN_CHECK_ORDERS(g)                                                               \
    backward<T>(g, static_cast<const T*>(weights), w_stride, src, dst, num_edges, mul,        \
                grad_outs, grad_xs, static_cast<T*>(grad_w), grad_couplings, threads);        \
    return 0;                                                                                 \
  }

ANISOSCREEN_ENTRY(f32, float)
ANISOSCREEN_ENTRY(f64, double)

int edge_tp_abi_version() { return 2; }

}  // extern "C"
