// The time loops of the LSTM, the GRU and the Elman RNN, each as one XLA:CPU custom call
// (rnnlab.native), forward and backward. One forward loop and one backward loop
// (forward_loop, backward_loop below) run every cell; a cell supplies only its gate math for
// 16 units at a time (LstmStep / LstmGrad, GruStep / GruGrad, ElmanStep / ElmanGrad).
//
// Why: under XLA:CPU each LSTM time step is ~25 small kernels plus two per-step matmuls that
// YNNPACK runs at ~65% of the large-matmul rate (BENCHMARKS.md, "Where the LSTM step's time
// goes"). Here a step is one register-blocked AVX-512 matmul per thread with the gate math
// done on the tile it just computed, and one barrier between the threads per step.
//
// Shapes: T time, B batch, H hidden, G = n_gates * H (LSTM 4H in the order i, f, g, o; GRU 3H
// r, z, n; Elman H). Work split: thread r of n owns hidden units [r*U, (r+1)*U), U = H/n, and
// with them the gate columns {g*H + u}: its gate math needs no other thread's gates. For the
// LSTM, forward step t:
//     pre[B, 4U] = xp_t[:, mine] + h_{t-1} [B, H] @ W_h[:, mine]      (h_{t-1}: all threads')
//     c_t = sig(f) c_{t-1} + sig(i) tanh(g),   h_t = sig(o) tanh(c_t)  (my units)
//     barrier (h_t complete before step t+1 reads it)
// Backward step t (reverse), with dh = dy_t + dh_rec, dc the carried cotangent:
//     do = dh tanh(c_t) o(1-o);  dc += dh o (1 - tanh(c_t)^2)
//     di = dc g i(1-i);  df = dc c_{t-1} f(1-f);  dg = dc i (1-g^2);  dc <- dc f   (my units)
//     barrier (dgates_t complete)
//     dh_rec[B, mine] = dgates_t [B, 4H] @ W_h^T[:, mine]
// The weight gradients are left to XLA: one [H, T*B] x [T*B, G] matmul (rnnlab.fused).
//
// Compiled on first use by rnnlab/native.py (g++ -O3 -mavx512f -mavx512dq ...); the Python
// side checks that the CPU has AVX-512 F and DQ before it uses this, and falls back to the XLA
// scan otherwise.

#include <immintrin.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int NR = 32;  // panel width: two zmm registers of float32
constexpr int MR = 8;   // rows per register tile
#ifndef SPIN
#define SPIN 2000
#endif
#ifndef YIELDS
#define YIELDS 1000
#endif

// ------------------------------------------------------------------------------- thread pool

// A spin-then-sleep barrier for n threads (sense reversal).
class Barrier {
 public:
  void reset(int n) {
    n_ = n;
    count_.store(0);
    flag_.store(0);
  }
  void wait(int &sense) {
    sense ^= 1;
    if (count_.fetch_add(1, std::memory_order_acq_rel) + 1 == n_) {
      count_.store(0, std::memory_order_relaxed);
      flag_.store(sense, std::memory_order_release);
      flag_.notify_all();
      return;
    }
    for (int spin = 0; spin < SPIN; ++spin) {
      if (flag_.load(std::memory_order_acquire) == sense) return;
      _mm_pause();
    }
    for (int spin = 0; spin < YIELDS; ++spin) {  // let a runnable partner have the core
      if (flag_.load(std::memory_order_acquire) == sense) return;
      sched_yield();
    }
    while (flag_.load(std::memory_order_acquire) != sense) flag_.wait(1 - sense);
  }

 private:
  int n_ = 1;
  std::atomic<int> count_{0};
  std::atomic<int> flag_{0};
};

// A team for one call: the calling thread (rank 0) and up to n-1 of XLA's intra-op threads,
// each running f(rank, size, barrier). Helpers that have not started ~200 us after they were
// scheduled (XLA's threads busy elsewhere) are not waited for: the team is whoever came, cut
// to the largest size that `fits`. Running on XLA's own threads, not threads of our own,
// keeps the kernel from competing for the cores with XLA's idle-spinning workers.
using Work = std::function<void(int rank, int size, Barrier &barrier)>;

struct TeamState {
  std::thread::id caller = std::this_thread::get_id();
  std::mutex mutex;
  int joined = 0;
  bool closed = false;
  std::atomic<int> size{0};     // 0 until the team is formed
  std::atomic<int> running{0};  // helpers still working
  Barrier barrier;
  const Work *work = nullptr;
};

template <typename Fits>
void run_team(ffi::ThreadPool &pool, int n, Fits fits, const Work &work) {
  auto state = std::make_shared<TeamState>();
  const int want = static_cast<int>(std::min<int64_t>(n - 1, pool.num_threads()));
  for (int i = 0; i < want; ++i) {
    pool.Schedule([state] {
      // Schedule runs the task inline when XLA has no pool for it: joining would wait forever
      if (std::this_thread::get_id() == state->caller) return;
      int rank;
      {
        std::lock_guard<std::mutex> lock(state->mutex);
        if (state->closed) return;
        rank = ++state->joined;
      }
      int size;
      while ((size = state->size.load(std::memory_order_acquire)) == 0) _mm_pause();
      if (rank >= size) return;
      (*state->work)(rank, size, state->barrier);
      state->running.fetch_sub(1, std::memory_order_acq_rel);
    });
  }
  int joined;
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(state->mutex);
      const bool late = std::chrono::steady_clock::now() - start > std::chrono::microseconds(200);
      if (state->joined == want || late) {
        state->closed = true;
        joined = state->joined;
        break;
      }
    }
    _mm_pause();
  }
  int size = joined + 1;
  while (size > 1 && !fits(size)) --size;
  state->barrier.reset(size);
  state->work = &work;
  state->running.store(size - 1);
  state->size.store(size, std::memory_order_release);
  work(0, size, state->barrier);
  while (state->running.load(std::memory_order_acquire) != 0) _mm_pause();
}

// ---------------------------------------------------------------------------- vector math

// exp(x) for float32 lanes: range reduction by ln 2, degree-6 polynomial, scalef (rel. err.
// ~2e-7 over the clamped range). NaN stays NaN: x86 min/max return their second operand when
// either is NaN, so x goes second (a diverging run must show NaN, as XLA's would).
inline __m512 exp512(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-88.3f), _mm512_min_ps(_mm512_set1_ps(88.3f), x));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.0f / 720);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

inline __m512 sigmoid512(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.0f);
  return _mm512_div_ps(one, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), x))));
}

// tanh(x) = sign(x) (1 - e) / (1 + e), e = exp(-2|x|); for |x| < 0.04 the odd Taylor series
// x - x^3/3 + 2x^5/15, which avoids the cancellation in 1 - e.
inline __m512 tanh512(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.0f);
  __m512 ax = _mm512_abs_ps(x);
  __m512 e = exp512(_mm512_mul_ps(ax, _mm512_set1_ps(-2.0f)));
  __m512 t = _mm512_div_ps(_mm512_sub_ps(one, e), _mm512_add_ps(one, e));
  t = _mm512_castsi512_ps(_mm512_or_si512(  // copy the sign of x
      _mm512_castps_si512(t),
      _mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32(0x80000000))));
  __m512 x2 = _mm512_mul_ps(x, x);
  __m512 s = _mm512_fmadd_ps(x2, _mm512_set1_ps(2.0f / 15), _mm512_set1_ps(-1.0f / 3));
  s = _mm512_fmadd_ps(_mm512_mul_ps(s, x2), x, x);
  __mmask16 small = _mm512_cmp_ps_mask(ax, _mm512_set1_ps(0.04f), _CMP_LT_OQ);
  return _mm512_mask_blend_ps(small, t, s);
}

// ------------------------------------------------------------------------------ the matmul

// C[m, 0:NR] = init[m][0:NR] + sum_k A[m*lda + k] * P[k*NR + 0:NR], m < M (M <= MR).
// P: a K x NR panel, row-major. init[m] may alias C's row.
template <int M>
inline void tile(int K, const float *A, int64_t lda, int64_t ldk, const float *P,
                 const float *const *init, float *const *C) {
  __m512 c0[M], c1[M];
  for (int m = 0; m < M; ++m) {
    c0[m] = _mm512_loadu_ps(init[m]);
    c1[m] = _mm512_loadu_ps(init[m] + 16);
  }
  for (int k = 0; k < K; ++k) {
    const __m512 b0 = _mm512_load_ps(P + k * NR);
    const __m512 b1 = _mm512_load_ps(P + k * NR + 16);
    for (int m = 0; m < M; ++m) {
      const __m512 a = _mm512_set1_ps(A[m * lda + k * ldk]);
      c0[m] = _mm512_fmadd_ps(a, b0, c0[m]);
      c1[m] = _mm512_fmadd_ps(a, b1, c1[m]);
    }
  }
  for (int m = 0; m < M; ++m) {
    _mm512_storeu_ps(C[m], c0[m]);
    _mm512_storeu_ps(C[m] + 16, c1[m]);
  }
}

// Rows [m0, m0+M) of one panel: dispatch the tile height.
inline void tile_rows(int M, int K, const float *A, int64_t lda, int64_t ldk, const float *P,
                      const float *const *init, float *const *C) {
  switch (M) {
    case 8: return tile<8>(K, A, lda, ldk, P, init, C);
    case 7: return tile<7>(K, A, lda, ldk, P, init, C);
    case 6: return tile<6>(K, A, lda, ldk, P, init, C);
    case 5: return tile<5>(K, A, lda, ldk, P, init, C);
    case 4: return tile<4>(K, A, lda, ldk, P, init, C);
    case 3: return tile<3>(K, A, lda, ldk, P, init, C);
    case 2: return tile<2>(K, A, lda, ldk, P, init, C);
    default: return tile<1>(K, A, lda, ldk, P, init, C);
  }
}

struct AlignedBuffer {
  float *p = nullptr;
  explicit AlignedBuffer(size_t n) { p = static_cast<float *>(std::aligned_alloc(64, ((n * 4 + 63) / 64) * 64 + 64)); }
  ~AlignedBuffer() { std::free(p); }
};

// My gate columns of W [H, n_gates*H] (units [u0, u0+U) of each gate), packed in panels of NR
// columns, K-major: panel p covers gate p / (U/NR), units u0 + (p % (U/NR))*NR + [0, NR).
void pack_columns(const float *W, int64_t H, int n_gates, int64_t U, int64_t u0, float *out) {
  const int64_t G = n_gates * H, blocks = U / NR;
  for (int64_t p = 0; p < n_gates * blocks; ++p) {
    const int64_t col = (p / blocks) * H + u0 + (p % blocks) * NR;
    for (int64_t k = 0; k < H; ++k) std::memcpy(out + (p * H + k) * NR, W + k * G + col, NR * 4);
  }
}

// W^T [n_gates*H, H] restricted to my units [u0, u0+U), in panels of NR units:
// panel p [k, j] = W[u0 + p*NR + j, k].
void pack_transposed(const float *W, int64_t H, int n_gates, int64_t U, int64_t u0, float *out) {
  const int64_t G = n_gates * H;
  for (int64_t p = 0; p < U / NR; ++p)
    for (int64_t j = 0; j < NR; ++j) {
      const float *src = W + (u0 + p * NR + j) * G;
      for (int64_t k = 0; k < G; ++k) out[(p * G + k) * NR + j] = src[k];
    }
}

// out(b, p)[0:NR] = init(b, p)[0:NR] + A[b, :K] @ panel p, for rows b < B and panels p < P.
// pack_a: first copy A's rows, MR at a time, k-interleaved (Ap[m0*K + k*M + m]), so a tile's
// broadcasts read one stream. It pays where A is short and re-read by many panels: the
// forward's h_{t-1} [B, H] (LSTM-512 forward 22.8 -> 16.4 ms), not the backward's [B, 4H]
// (16.2 -> 19.0 ms; python benchmarks/native_loops.py, BENCHMARKS.md).
template <typename Init, typename Out>
void matmul_panels(int64_t B, int64_t K, const float *A, int64_t lda, const float *packed,
                   int64_t P, bool pack_a, Init init_of, Out out_of) {
  const float *init[MR];
  float *out[MR];
  thread_local std::vector<float> Ap;
  if (pack_a) {
    Ap.resize(B * K);
    for (int64_t m0 = 0; m0 < B; m0 += MR) {
      const int64_t M = std::min<int64_t>(MR, B - m0);
      for (int64_t m = 0; m < M; ++m)
        for (int64_t k = 0; k < K; ++k) Ap[m0 * K + k * M + m] = A[(m0 + m) * lda + k];
    }
  }
  for (int64_t p = 0; p < P; ++p)
    for (int64_t m0 = 0; m0 < B; m0 += MR) {
      const int M = static_cast<int>(std::min<int64_t>(MR, B - m0));
      for (int m = 0; m < M; ++m) {
        init[m] = init_of(m0 + m, p);
        out[m] = out_of(m0 + m, p);
      }
      const float *panel = packed + p * K * NR;
      if (pack_a)
        tile_rows(M, static_cast<int>(K), Ap.data() + m0 * K, 1, M, panel, init, out);
      else
        tile_rows(M, static_cast<int>(K), A + m0 * lda, lda, 1, panel, init, out);
    }
}

// Units [u0, u0+U) of h [B, .] (row stride ldh) into columns [col0, col0+B) of hprev_t
// [H, T*B]: the weight gradient's lhs, h_{t-1}^T for all t, written as the loop goes.
inline void put_columns(float *HT, int64_t TB, int64_t col0, const float *h, int64_t ldh,
                        int64_t B, int64_t u0, int64_t U) {
  for (int64_t u = u0; u < u0 + U; ++u)
    for (int64_t b = 0; b < B; ++b) HT[u * TB + col0 + b] = h[b * ldh + u];
}

// d_table[ids_t[b], gate columns of my units] += d[b, same columns], rows b < B of width G:
// the projected table's gradient, each thread over its own columns (ids clipped as read).
inline void add_rows(float *DT, const int32_t *ids_t, int64_t V, const float *d, int64_t B,
                     int n_gates, int64_t H, int64_t u0, int64_t U) {
  const int64_t G = n_gates * H;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t row = std::min<int64_t>(std::max<int32_t>(ids_t[b], 0), V - 1);
    for (int g = 0; g < n_gates; ++g) {
      float *dst = DT + row * G + g * H + u0;
      const float *src = d + b * G + g * H + u0;
      for (int64_t v = 0; v < U; v += 16)
        _mm512_storeu_ps(dst + v, _mm512_add_ps(_mm512_loadu_ps(dst + v), _mm512_loadu_ps(src + v)));
    }
  }
}

// Zero my gate columns of all V rows of d_table.
inline void zero_rows(float *DT, int64_t V, int n_gates, int64_t H, int64_t u0, int64_t U) {
  for (int64_t row = 0; row < V; ++row)
    for (int g = 0; g < n_gates; ++g) std::memset(DT + row * n_gates * H + g * H + u0, 0, U * 4);
}

// -------------------------------------------------------------------------- the time loops

// The forward time loop of every cell. Thread r of the team owns hidden units [u0, u0+U) and
// their n_gates gate columns of W_h (packed once per call). Step t:
//     pre [B, n_gates*U] = cell.init(xp row) + h_{t-1} [B, H] @ W_h[:, mine]   (all of h_{t-1})
//     h_t [B, mine] = cell.unit(...), 16 units at a time (the cell stores its own residuals)
//     h_{t-1}^T's columns (when saved); barrier (h_t complete before step t+1 reads it)
// ys [B, T, H] holds h_t batch-major, so h_{t-1}'s rows are T*H apart. `make(u0, U)` builds a
// thread's cell: init(x_row, gate, unit) -> the matmul's initial row (the projected input, or
// a bias), unit(t, b, v, pre_row, x_row, hprev_row) -> the 16 lanes of h_t from unit u0 + v
// (pre_row holds gate g's units at g*U).
template <typename Make>
ffi::Error forward_loop(const char *name, ffi::ThreadPool &pool, int64_t threads, int64_t T,
                        int64_t B, int64_t H, int n_gates, const float *X, const int32_t *I,
                        int64_t V, const float *W, const float *H0, float *YS, float *HT,
                        Make make) {
  if (H % NR != 0) return ffi::Error::InvalidArgument(std::string(name) + ": H % 32 != 0");
  const int64_t G = n_gates * H;
  const auto fits = [H](int size) { return H % (NR * size) == 0; };
  run_team(pool, static_cast<int>(threads), fits, [&](int r, int size, Barrier &barrier) {
    const int64_t U = H / size, cols = n_gates * U, blocks = U / NR, u0 = r * U;
    if (HT) put_columns(HT, T * B, 0, H0, H, B, u0, U);
    AlignedBuffer packed(static_cast<size_t>(H) * cols);
    pack_columns(W, H, n_gates, U, u0, packed.p);
    AlignedBuffer pre(static_cast<size_t>(B) * cols);
    std::vector<const float *> xrow(B);
    auto cell = make(u0, U);
    int sense = 0;
    for (int64_t t = 0; t < T; ++t) {
      const float *hprev = t == 0 ? H0 : YS + (t - 1) * H;  // [B, H], rows H or T*H apart
      const int64_t ldh = t == 0 ? H : T * H;
      for (int64_t b = 0; b < B; ++b) {
        int64_t row = t * B + b;
        if (I) row = std::min<int64_t>(std::max<int32_t>(I[row], 0), V - 1);
        xrow[b] = X + row * G;
      }
      matmul_panels(
          B, H, hprev, ldh, packed.p, n_gates * blocks, true,
          [&](int64_t b, int64_t p) { return cell.init(xrow[b], p / blocks, u0 + (p % blocks) * NR); },
          [&](int64_t b, int64_t p) { return pre.p + b * cols + p * NR; });
      float *hnext = YS + t * H;  // row b at hnext + b*T*H
      for (int64_t b = 0; b < B; ++b)
        for (int64_t v = 0; v < U; v += 16)
          _mm512_storeu_ps(hnext + b * T * H + u0 + v,
                           cell.unit(t, b, v, pre.p + b * cols, xrow[b], hprev + b * ldh));
      if (HT && t + 1 < T) put_columns(HT, T * B, (t + 1) * B, hnext, T * H, B, u0, U);
      barrier.wait(sense);
    }
  });
  return ffi::Error::Success();
}

// The backward time loop of every cell, in reverse. Thread r owns units [u0, u0+U) and the
// columns of W_h^T [G, H] for them. Step t, 16 units at a time:
//     d_h = dy_t + dh_rec;  direct = cell.unit(t, b, v, d_h, rows_t row b)
//       (the cell writes its gate cotangents into rows_t [B, G], what multiplies W_h^T, and
//        returns the part of dL/dh_{t-1} that skips W_h: the GRU's d_h z, zero for the others)
//     cell.step_done(t, rows_t);  barrier (rows_t complete: every thread reads all of it)
//     dh_rec [B, mine] = direct + rows_t @ W_h^T[:, mine]
// then dh0 = dh_rec and cell.finish(). dys [B, T, H] is batch-major, as the forward's ys.
template <typename Make>
ffi::Error backward_loop(const char *name, ffi::ThreadPool &pool, int64_t threads, int64_t T,
                         int64_t B, int64_t H, int n_gates, const float *W, const float *DY,
                         const float *DHT, float *ROWS, float *DH0, Make make) {
  if (H % NR != 0) return ffi::Error::InvalidArgument(std::string(name) + ": H % 32 != 0");
  const int64_t G = n_gates * H;
  const auto fits = [H](int size) { return H % (NR * size) == 0; };
  run_team(pool, static_cast<int>(threads), fits, [&](int r, int size, Barrier &barrier) {
    const int64_t U = H / size, u0 = r * U;
    AlignedBuffer packed(static_cast<size_t>(G) * U);
    pack_transposed(W, H, n_gates, U, u0, packed.p);
    auto cell = make(u0, U);
    std::vector<float> dh(B * U), direct(B * U);  // dh_rec starts as dL/dh_T
    for (int64_t b = 0; b < B; ++b)
      for (int64_t v = 0; v < U; ++v) dh[b * U + v] = DHT[b * H + u0 + v];
    int sense = 0;
    for (int64_t t = T - 1; t >= 0; --t) {
      float *rows = ROWS + t * B * G;
      for (int64_t b = 0; b < B; ++b)
        for (int64_t v = 0; v < U; v += 16) {
          const __m512 d_h = _mm512_add_ps(_mm512_loadu_ps(DY + b * T * H + t * H + u0 + v),
                                           _mm512_loadu_ps(&dh[b * U + v]));
          _mm512_storeu_ps(&direct[b * U + v], cell.unit(t, b, v, d_h, rows + b * G));
        }
      cell.step_done(t, rows);
      barrier.wait(sense);
      matmul_panels(
          B, G, rows, G, packed.p, U / NR, false,
          [&](int64_t b, int64_t p) { return &direct[b * U + p * NR]; },
          [&](int64_t b, int64_t p) { return &dh[b * U + p * NR]; });
    }
    for (int64_t b = 0; b < B; ++b)
      for (int64_t v = 0; v < U; ++v) DH0[b * H + u0 + v] = dh[b * U + v];
    cell.finish();
  });
  return ffi::Error::Success();
}

// What a token-input backward adds: d_table [V, n_gates*H], each thread over its own columns.
struct TableGrad {
  float *DT;  // nullptr: no token inputs
  const int32_t *I;
  int64_t V;
  void zero(int n_gates, int64_t H, int64_t u0, int64_t U) const {
    if (DT) zero_rows(DT, V, n_gates, H, u0, U);
  }
  void add(int64_t t, int64_t B, const float *rows, int n_gates, int64_t H, int64_t u0,
           int64_t U) const {
    if (DT) add_rows(DT, I + t * B, V, rows, B, n_gates, H, u0, U);
  }
};

// -------------------------------------------------------------------------------------- LSTM

struct LstmStep {  // one thread's forward gate math
  int64_t T, B, H, u0, U;
  const float *C0, *EC, *EH;  // EC, EH: the perturbation, or nullptr
  float *CS, *ACT;            // ACT: nullptr unless saved
  const float *init(const float *x, int64_t g, int64_t u) const { return x + g * H + u; }
  __m512 unit(int64_t t, int64_t b, int64_t v, const float *pr, const float *, const float *) const {
    const __m512 i = sigmoid512(_mm512_loadu_ps(pr + v));
    const __m512 f = sigmoid512(_mm512_loadu_ps(pr + U + v));
    const __m512 g = tanh512(_mm512_loadu_ps(pr + 2 * U + v));
    const __m512 o = sigmoid512(_mm512_loadu_ps(pr + 3 * U + v));
    const int64_t at = b * H + u0 + v, now = t * B * H + at;
    const float *cprev = t == 0 ? C0 + at : CS + now - B * H;
    const __m512 c = _mm512_fmadd_ps(f, _mm512_loadu_ps(cprev), _mm512_mul_ps(i, g));
    __m512 h = _mm512_mul_ps(o, tanh512(c)), c_out = c;
    if (EH) {
      c_out = _mm512_add_ps(c, _mm512_loadu_ps(EC + now));
      h = _mm512_add_ps(h, _mm512_loadu_ps(EH + now));
    }
    _mm512_storeu_ps(CS + now, c_out);
    if (ACT) {
      float *a = ACT + (t * B + b) * 4 * H + u0 + v;
      _mm512_storeu_ps(a, i);
      _mm512_storeu_ps(a + H, f);
      _mm512_storeu_ps(a + 2 * H, g);
      _mm512_storeu_ps(a + 3 * H, o);
    }
    return h;
  }
};

// Inputs: xp [T, B, 4H] (or table [V, 4H] with ids [T, B]), w [H, 4H], c0, h0 [B, H],
// eps_c, eps_h [T, B, H] (or [0]: the probes' perturbation, added to the carry after each
// step: c_t <- c_t + eps_c[t], h_t <- h_t + eps_h[t]; y_t is the perturbed h_t).
// Outputs: ys [B, T, H] (h_t, batch-major: the layer's output layout); cs [T, B, H];
// acts [T, B, 4H] (activated i, f, g, o) and hprev_t [H, T*B] (h_{t-1}^T) when saved, else
// size 0.
ffi::Error LstmForwardImpl(ffi::Buffer<ffi::F32> xp, ffi::Buffer<ffi::S32> ids,
                           ffi::Buffer<ffi::F32> w, ffi::Buffer<ffi::F32> c0,
                           ffi::Buffer<ffi::F32> h0, ffi::Buffer<ffi::F32> eps_c,
                           ffi::Buffer<ffi::F32> eps_h, ffi::ResultBuffer<ffi::F32> ys,
                           ffi::ResultBuffer<ffi::F32> cs, ffi::ResultBuffer<ffi::F32> acts,
                           ffi::ResultBuffer<ffi::F32> hprev_t, ffi::ThreadPool pool,
                           int64_t threads) {
  const auto dims = cs->dimensions();
  const int64_t T = dims[0], B = dims[1], H = dims[2];
  const bool save = acts->element_count() > 0, perturbed = eps_h.element_count() > 0;
  const bool use_ids = ids.element_count() > 0;
  LstmStep step{T, B, H, 0, 0, c0.typed_data(),
                perturbed ? eps_c.typed_data() : nullptr, perturbed ? eps_h.typed_data() : nullptr,
                cs->typed_data(), save ? acts->typed_data() : nullptr};
  return forward_loop("lstm_forward", pool, threads, T, B, H, 4, xp.typed_data(),
                      use_ids ? ids.typed_data() : nullptr, use_ids ? xp.dimensions()[0] : 0,
                      w.typed_data(), h0.typed_data(), ys->typed_data(),
                      save ? hprev_t->typed_data() : nullptr, [&](int64_t u0, int64_t U) {
                        LstmStep s = step;
                        s.u0 = u0, s.U = U;
                        return s;
                      });
}

struct LstmGrad {  // one thread's backward gate math; carries dL/dc of its units
  int64_t T, B, H, u0, U;
  const float *ACT, *CS, *C0, *EC, *DCS;  // EC, DCS: or nullptr
  float *DEC, *DEH, *DC0;                 // DEC, DEH: nullptr unless perturbed
  TableGrad table;
  std::vector<float> dc;  // [B, U]
  __m512 unit(int64_t t, int64_t b, int64_t v, __m512 d_h, float *row) {
    const __m512 one = _mm512_set1_ps(1.0f);
    const int64_t at = b * H + u0 + v, now = t * B * H + at;
    const float *a = ACT + (t * B + b) * 4 * H + u0 + v;
    const __m512 i = _mm512_loadu_ps(a), f = _mm512_loadu_ps(a + H);
    const __m512 g = _mm512_loadu_ps(a + 2 * H), o = _mm512_loadu_ps(a + 3 * H);
    __m512 c_t = _mm512_loadu_ps(CS + now);
    __m512 d_c = _mm512_loadu_ps(&dc[b * U + v]);
    if (DCS) d_c = _mm512_add_ps(d_c, _mm512_loadu_ps(DCS + now));
    if (EC) {  // h_t read the unperturbed c_t; the carry's cotangents are d_eps
      c_t = _mm512_sub_ps(c_t, _mm512_loadu_ps(EC + now));
      _mm512_storeu_ps(DEC + now, d_c);
      _mm512_storeu_ps(DEH + now, d_h);
    }
    const __m512 tc = tanh512(c_t);
    d_c = _mm512_fmadd_ps(_mm512_mul_ps(d_h, o), _mm512_fnmadd_ps(tc, tc, one), d_c);
    const float *cprev = t == 0 ? C0 + at : CS + now - B * H;
    _mm512_storeu_ps(&dc[b * U + v], _mm512_mul_ps(d_c, f));
    float *r = row + u0 + v;
    _mm512_storeu_ps(r, _mm512_mul_ps(_mm512_mul_ps(d_c, g), _mm512_mul_ps(i, _mm512_sub_ps(one, i))));
    _mm512_storeu_ps(r + H, _mm512_mul_ps(_mm512_mul_ps(d_c, _mm512_loadu_ps(cprev)),
                                          _mm512_mul_ps(f, _mm512_sub_ps(one, f))));
    _mm512_storeu_ps(r + 2 * H, _mm512_mul_ps(_mm512_mul_ps(d_c, i), _mm512_fnmadd_ps(g, g, one)));
    _mm512_storeu_ps(r + 3 * H, _mm512_mul_ps(_mm512_mul_ps(d_h, tc),
                                              _mm512_mul_ps(o, _mm512_sub_ps(one, o))));
    return _mm512_setzero_ps();  // h_{t-1} reaches h_t only through W_h
  }
  void step_done(int64_t t, const float *rows) const { table.add(t, B, rows, 4, H, u0, U); }
  void finish() const {
    for (int64_t b = 0; b < B; ++b)
      for (int64_t v = 0; v < U; ++v) DC0[b * H + u0 + v] = dc[b * U + v];
  }
};

// Backward of LstmForward, with dh = dy_t + dh_rec and dc the carried cotangent:
//     do = dh tanh(c_t) o(1-o);  dc += dh o (1 - tanh(c_t)^2)
//     di = dc g i(1-i);  df = dc c_{t-1} f(1-f);  dg = dc i (1-g^2);  dc <- dc f
// Inputs: w [H, 4H], acts [T, B, 4H], cs [T, B, H], c0 [B, H], dys [B, T, H] (cotangent of
// the outputs h_t, batch-major), dcT, dhT [B, H] (of the final carry), ids [T, B] (or [0]),
// eps_c [T, B, H] (or [0]: the forward's perturbation; cs holds the perturbed c_t),
// dcs [T, B, H] (or [0]: a cotangent of every c_t from outside the loop: a masked layer's
// final carry reads c at each sequence's last step).
// Outputs: dgates [T, B, 4H] (cotangent of the pre-activations), dc0, dh0 [B, H], dtable
// [V, 4H] (with ids: the projected table's gradient, sum of dgates rows by id; else [0]),
// deps_c, deps_h [T, B, H] (with eps: dL/d(c_t, h_t) of the perturbed carry; else [0]).
ffi::Error LstmBackwardImpl(ffi::Buffer<ffi::F32> w, ffi::Buffer<ffi::F32> acts,
                            ffi::Buffer<ffi::F32> cs, ffi::Buffer<ffi::F32> c0,
                            ffi::Buffer<ffi::F32> dys, ffi::Buffer<ffi::F32> dcT,
                            ffi::Buffer<ffi::F32> dhT, ffi::Buffer<ffi::S32> ids,
                            ffi::Buffer<ffi::F32> eps_c, ffi::Buffer<ffi::F32> dcs,
                            ffi::ResultBuffer<ffi::F32> dgates,
                            ffi::ResultBuffer<ffi::F32> dc0, ffi::ResultBuffer<ffi::F32> dh0,
                            ffi::ResultBuffer<ffi::F32> dtable, ffi::ResultBuffer<ffi::F32> deps_c,
                            ffi::ResultBuffer<ffi::F32> deps_h, ffi::ThreadPool pool,
                            int64_t threads) {
  const auto dims = cs.dimensions();
  const int64_t T = dims[0], B = dims[1], H = dims[2];
  const bool perturbed = eps_c.element_count() > 0, use_ids = ids.element_count() > 0;
  const float *DCT = dcT.typed_data();
  LstmGrad grad{T, B, H, 0, 0, acts.typed_data(), cs.typed_data(), c0.typed_data(),
                perturbed ? eps_c.typed_data() : nullptr,
                dcs.element_count() > 0 ? dcs.typed_data() : nullptr,
                perturbed ? deps_c->typed_data() : nullptr,
                perturbed ? deps_h->typed_data() : nullptr, dc0->typed_data(),
                TableGrad{use_ids ? dtable->typed_data() : nullptr,
                          use_ids ? ids.typed_data() : nullptr,
                          use_ids ? dtable->dimensions()[0] : 0},
                {}};
  return backward_loop("lstm_backward", pool, threads, T, B, H, 4, w.typed_data(),
                       dys.typed_data(), dhT.typed_data(), dgates->typed_data(),
                       dh0->typed_data(), [&](int64_t u0, int64_t U) {
                         LstmGrad g = grad;
                         g.u0 = u0, g.U = U;
                         g.dc.resize(B * U);  // starts as dL/dc_T
                         for (int64_t b = 0; b < B; ++b)
                           for (int64_t v = 0; v < U; ++v) g.dc[b * U + v] = DCT[b * H + u0 + v];
                         g.table.zero(4, H, u0, U);
                         return g;
                       });
}

// --------------------------------------------------------------------------------------- GRU

// The GRU (rnnlab.cells.gru, convention "pytorch"; gate order r, z, n), G = 3H:
//     [hr, hz, hn] = h_{t-1} W_h;  r = sig(xr + hr);  z = sig(xz + hz);  m = hn + b_hn
//     n = tanh(xn + r m);  h_t = n + z (h_{t-1} - n)
struct GruStep {
  int64_t T, B, H, u0, U;
  const float *BN, *EH;  // EH: or nullptr
  float *ACT;            // nullptr unless saved
  // r and z start from the projected input, the n block from b_hn: m = hn + b_hn
  const float *init(const float *x, int64_t g, int64_t u) const {
    return g < 2 ? x + g * H + u : BN + u;
  }
  __m512 unit(int64_t t, int64_t b, int64_t v, const float *pr, const float *x,
              const float *hprev) const {
    const __m512 r = sigmoid512(_mm512_loadu_ps(pr + v));
    const __m512 z = sigmoid512(_mm512_loadu_ps(pr + U + v));
    const __m512 m = _mm512_loadu_ps(pr + 2 * U + v);
    const __m512 n = tanh512(_mm512_fmadd_ps(r, m, _mm512_loadu_ps(x + 2 * H + u0 + v)));
    const __m512 hp = _mm512_loadu_ps(hprev + u0 + v);
    __m512 h = _mm512_fmadd_ps(z, _mm512_sub_ps(hp, n), n);
    if (EH) h = _mm512_add_ps(h, _mm512_loadu_ps(EH + (t * B + b) * H + u0 + v));
    if (ACT) {
      float *a = ACT + (t * B + b) * 4 * H + u0 + v;
      _mm512_storeu_ps(a, r);
      _mm512_storeu_ps(a + H, z);
      _mm512_storeu_ps(a + 2 * H, n);
      _mm512_storeu_ps(a + 3 * H, m);
    }
    return h;
  }
};

// Inputs: xp [T, B, 3H] (or table [V, 3H] with ids), w [H, 3H], b_hn [H], h0 [B, H],
// eps [T, B, H] (or [0]: h_t <- h_t + eps[t] after each step; y_t is the perturbed h_t).
// Outputs: ys [B, T, H] (h_t, batch-major); acts [T, B, 4H] = (r, z, n, m) per step and
// hprev_t [H, T*B] (h_{t-1}^T) when saved, else size 0.
ffi::Error GruForwardImpl(ffi::Buffer<ffi::F32> xp, ffi::Buffer<ffi::S32> ids,
                          ffi::Buffer<ffi::F32> w, ffi::Buffer<ffi::F32> b_hn,
                          ffi::Buffer<ffi::F32> h0, ffi::Buffer<ffi::F32> eps,
                          ffi::ResultBuffer<ffi::F32> ys, ffi::ResultBuffer<ffi::F32> acts,
                          ffi::ResultBuffer<ffi::F32> hprev_t, ffi::ThreadPool pool,
                          int64_t threads) {
  const auto dims = ys->dimensions();
  const int64_t B = dims[0], T = dims[1], H = dims[2];
  const bool save = acts->element_count() > 0, use_ids = ids.element_count() > 0;
  GruStep step{T, B, H, 0, 0, b_hn.typed_data(),
               eps.element_count() > 0 ? eps.typed_data() : nullptr,
               save ? acts->typed_data() : nullptr};
  return forward_loop("gru_forward", pool, threads, T, B, H, 3, xp.typed_data(),
                      use_ids ? ids.typed_data() : nullptr, use_ids ? xp.dimensions()[0] : 0,
                      w.typed_data(), h0.typed_data(), ys->typed_data(),
                      save ? hprev_t->typed_data() : nullptr, [&](int64_t u0, int64_t U) {
                        GruStep s = step;
                        s.u0 = u0, s.U = U;
                        return s;
                      });
}

// Backward of the GRU, with dh = dy_t + dh_rec:
//     dn = dh (1 - z);  dz = dh (h_{t-1} - n);  dp = dn (1 - n^2)   (p = xn + r m)
//     d_r = dp m r (1 - r);  d_z = dz z (1 - z);  dm = dp r
//     dxp_t = [d_r, d_z, dp];  dhr_t = [d_r, d_z, dm];  dh_rec <- dh z + dhr_t W_h^T
struct GruGrad {
  int64_t T, B, H, u0, U;
  const float *ACT, *YS, *H0;
  float *DX, *DEH;  // d_xp (nullptr with token ids: only its sums by id are needed), d_eps
  TableGrad table;
  __m512 unit(int64_t t, int64_t b, int64_t v, __m512 d_h, float *row) const {
    const __m512 one = _mm512_set1_ps(1.0f);
    const int64_t G = 3 * H, u = u0 + v;
    const float *a = ACT + (t * B + b) * 4 * H + u;
    const __m512 r = _mm512_loadu_ps(a), z = _mm512_loadu_ps(a + H);
    const __m512 n = _mm512_loadu_ps(a + 2 * H), m = _mm512_loadu_ps(a + 3 * H);
    const float *hp = t == 0 ? H0 + b * H : YS + b * T * H + (t - 1) * H;
    if (DEH) _mm512_storeu_ps(DEH + (t * B + b) * H + u, d_h);
    const __m512 dz = _mm512_mul_ps(d_h, _mm512_sub_ps(_mm512_loadu_ps(hp + u), n));
    const __m512 dp =
        _mm512_mul_ps(_mm512_mul_ps(d_h, _mm512_sub_ps(one, z)), _mm512_fnmadd_ps(n, n, one));
    const __m512 d_r = _mm512_mul_ps(_mm512_mul_ps(dp, m), _mm512_mul_ps(r, _mm512_sub_ps(one, r)));
    const __m512 d_z = _mm512_mul_ps(dz, _mm512_mul_ps(z, _mm512_sub_ps(one, z)));
    if (DX) {
      float *dx = DX + (t * B + b) * G + u;
      _mm512_storeu_ps(dx, d_r);
      _mm512_storeu_ps(dx + H, d_z);
      _mm512_storeu_ps(dx + 2 * H, dp);
    }
    if (table.DT) {  // d_xp's row, summed into the token's row of the table's gradient
      const int64_t id = std::min<int64_t>(std::max<int32_t>(table.I[t * B + b], 0), table.V - 1);
      float *q = table.DT + id * G + u;
      _mm512_storeu_ps(q, _mm512_add_ps(_mm512_loadu_ps(q), d_r));
      _mm512_storeu_ps(q + H, _mm512_add_ps(_mm512_loadu_ps(q + H), d_z));
      _mm512_storeu_ps(q + 2 * H, _mm512_add_ps(_mm512_loadu_ps(q + 2 * H), dp));
    }
    _mm512_storeu_ps(row + u, d_r);
    _mm512_storeu_ps(row + u + H, d_z);
    _mm512_storeu_ps(row + u + 2 * H, _mm512_mul_ps(dp, r));
    return _mm512_mul_ps(d_h, z);  // h_t = n + z (h_{t-1} - n): the path that skips W_h
  }
  void step_done(int64_t, const float *) const {}
  void finish() const {}
};

// Inputs: w [H, 3H], acts [T, B, 4H], ys [B, T, H], h0 [B, H], dys [B, T, H], dhT [B, H],
// ids [T, B] (or [0]).
// Outputs: dxp [T, B, 3H] (size 0 with ids: only its sums by id are needed), dhr [T, B, 3H],
// dh0 [B, H], dtable [V, 3H] (with ids: dxp rows summed by id; else [0]),
// deps [T, B, H] (dL/dh_t of the perturbed carry, when the forward was perturbed; else [0]).
ffi::Error GruBackwardImpl(ffi::Buffer<ffi::F32> w, ffi::Buffer<ffi::F32> acts,
                           ffi::Buffer<ffi::F32> ys, ffi::Buffer<ffi::F32> h0,
                           ffi::Buffer<ffi::F32> dys, ffi::Buffer<ffi::F32> dhT,
                           ffi::Buffer<ffi::S32> ids, ffi::ResultBuffer<ffi::F32> dxp,
                           ffi::ResultBuffer<ffi::F32> dhr, ffi::ResultBuffer<ffi::F32> dh0,
                           ffi::ResultBuffer<ffi::F32> dtable, ffi::ResultBuffer<ffi::F32> deps,
                           ffi::ThreadPool pool, int64_t threads) {
  const auto dims = ys.dimensions();
  const int64_t B = dims[0], T = dims[1], H = dims[2];
  const bool use_ids = ids.element_count() > 0;
  GruGrad grad{T, B, H, 0, 0, acts.typed_data(), ys.typed_data(), h0.typed_data(),
               dxp->element_count() > 0 ? dxp->typed_data() : nullptr,
               deps->element_count() > 0 ? deps->typed_data() : nullptr,
               TableGrad{use_ids ? dtable->typed_data() : nullptr,
                         use_ids ? ids.typed_data() : nullptr,
                         use_ids ? dtable->dimensions()[0] : 0}};
  return backward_loop("gru_backward", pool, threads, T, B, H, 3, w.typed_data(),
                       dys.typed_data(), dhT.typed_data(), dhr->typed_data(), dh0->typed_data(),
                       [&](int64_t u0, int64_t U) {
                         GruGrad g = grad;
                         g.u0 = u0, g.U = U;
                         g.table.zero(3, H, u0, U);
                         return g;
                       });
}

// ------------------------------------------------------------------------------------- Elman

// The Elman RNN (rnnlab.cells.elman): h_t = phi(xp_t + h_{t-1} W_h), phi = tanh or relu, G = H.
// phi'(pre) comes from phi(pre) in the backward (1 - h^2, or h > 0): ys, or hraw when
// perturbed (ys - eps would round a tiny relu output to 0).
struct ElmanStep {
  int64_t T, B, H, u0, U;
  bool relu;
  const float *EH;  // or nullptr
  float *HR;        // hraw, or nullptr
  const float *init(const float *x, int64_t, int64_t u) const { return x + u; }
  __m512 unit(int64_t t, int64_t b, int64_t v, const float *pr, const float *, const float *) const {
    const __m512 x = _mm512_loadu_ps(pr + v);
    __m512 h = relu ? _mm512_max_ps(_mm512_setzero_ps(), x) : tanh512(x);  // relu(NaN) = NaN
    const int64_t now = (t * B + b) * H + u0 + v;
    if (HR) _mm512_storeu_ps(HR + now, h);
    if (EH) h = _mm512_add_ps(h, _mm512_loadu_ps(EH + now));
    return h;
  }
};

// Inputs: xp [T, B, H] (or table [V, H] with ids), w [H, H], h0 [B, H], eps [T, B, H] (or [0]).
// Outputs: ys [B, T, H] (h_t, batch-major, perturbed), hprev_t [H, T*B] when saved (else [0]),
// hraw [T, B, H] (phi(pre_t) before the perturbation, when saved and perturbed; else [0]).
ffi::Error ElmanForwardImpl(ffi::Buffer<ffi::F32> xp, ffi::Buffer<ffi::S32> ids,
                            ffi::Buffer<ffi::F32> w, ffi::Buffer<ffi::F32> h0,
                            ffi::Buffer<ffi::F32> eps, ffi::ResultBuffer<ffi::F32> ys,
                            ffi::ResultBuffer<ffi::F32> hprev_t, ffi::ResultBuffer<ffi::F32> hraw,
                            ffi::ThreadPool pool, int64_t threads, int64_t relu) {
  const auto dims = ys->dimensions();
  const int64_t B = dims[0], T = dims[1], H = dims[2];
  const bool save = hprev_t->element_count() > 0, use_ids = ids.element_count() > 0;
  ElmanStep step{T, B, H, 0, 0, relu != 0, eps.element_count() > 0 ? eps.typed_data() : nullptr,
                 hraw->element_count() > 0 ? hraw->typed_data() : nullptr};
  return forward_loop("elman_forward", pool, threads, T, B, H, 1, xp.typed_data(),
                      use_ids ? ids.typed_data() : nullptr, use_ids ? xp.dimensions()[0] : 0,
                      w.typed_data(), h0.typed_data(), ys->typed_data(),
                      save ? hprev_t->typed_data() : nullptr, [&](int64_t u0, int64_t U) {
                        ElmanStep s = step;
                        s.u0 = u0, s.U = U;
                        return s;
                      });
}

// Backward of the Elman RNN: d_pre = dh phi'(pre_t);  dh_rec <- d_pre W_h^T.
struct ElmanGrad {
  int64_t T, B, H, u0, U;
  bool relu;
  const float *YS, *HR;  // HR: the unperturbed outputs, or nullptr when not perturbed
  float *DEH;            // nullptr unless perturbed
  TableGrad table;
  __m512 unit(int64_t t, int64_t b, int64_t v, __m512 d_h, float *row) const {
    const __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
    const int64_t now = (t * B + b) * H + u0 + v;
    const __m512 h = HR ? _mm512_loadu_ps(HR + now)  // phi(pre_t), unperturbed
                        : _mm512_loadu_ps(YS + b * T * H + t * H + u0 + v);
    if (DEH) _mm512_storeu_ps(DEH + now, d_h);
    const __m512 slope = relu ? _mm512_mask_blend_ps(_mm512_cmp_ps_mask(h, zero, _CMP_GT_OQ), zero, one)
                              : _mm512_fnmadd_ps(h, h, one);
    _mm512_storeu_ps(row + u0 + v, _mm512_mul_ps(d_h, slope));
    return zero;  // h_{t-1} reaches h_t only through W_h
  }
  void step_done(int64_t t, const float *rows) const { table.add(t, B, rows, 1, H, u0, U); }
  void finish() const {}
};

// Inputs: w [H, H], ys [B, T, H], dys [B, T, H], dhT [B, H], ids [T, B] (or [0]),
// hraw [T, B, H] (or [0]: the forward was not perturbed, and ys holds phi(pre_t)).
// Outputs: dpre [T, B, H] (the cotangent of xp_t and of h_{t-1} W_h), dh0 [B, H],
// dtable [V, H] (with ids; else [0]), deps [T, B, H] (with eps; else [0]).
ffi::Error ElmanBackwardImpl(ffi::Buffer<ffi::F32> w, ffi::Buffer<ffi::F32> ys,
                             ffi::Buffer<ffi::F32> dys, ffi::Buffer<ffi::F32> dhT,
                             ffi::Buffer<ffi::S32> ids, ffi::Buffer<ffi::F32> hraw,
                             ffi::ResultBuffer<ffi::F32> dpre, ffi::ResultBuffer<ffi::F32> dh0,
                             ffi::ResultBuffer<ffi::F32> dtable, ffi::ResultBuffer<ffi::F32> deps,
                             ffi::ThreadPool pool, int64_t threads, int64_t relu) {
  const auto dims = ys.dimensions();
  const int64_t B = dims[0], T = dims[1], H = dims[2];
  const bool perturbed = hraw.element_count() > 0, use_ids = ids.element_count() > 0;
  ElmanGrad grad{T, B, H, 0, 0, relu != 0, ys.typed_data(),
                 perturbed ? hraw.typed_data() : nullptr,
                 perturbed ? deps->typed_data() : nullptr,
                 TableGrad{use_ids ? dtable->typed_data() : nullptr,
                           use_ids ? ids.typed_data() : nullptr,
                           use_ids ? dtable->dimensions()[0] : 0}};
  return backward_loop("elman_backward", pool, threads, T, B, H, 1, w.typed_data(),
                       dys.typed_data(), dhT.typed_data(), dpre->typed_data(), dh0->typed_data(),
                       [&](int64_t u0, int64_t U) {
                         ElmanGrad g = grad;
                         g.u0 = u0, g.U = U;
                         g.table.zero(1, H, u0, U);
                         return g;
                       });
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(LstmForward, LstmForwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // xp [T, B, 4H] or table [V, 4H]
                                  .Arg<ffi::Buffer<ffi::S32>>()  // ids [T, B] or [0]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // w [H, 4H]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // c0 [B, H]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // h0 [B, H]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // eps_c [T, B, H] or [0]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // eps_h [T, B, H] or [0]
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ys [B, T, H]
                                  .Ret<ffi::Buffer<ffi::F32>>()  // cs [T, B, H]
                                  .Ret<ffi::Buffer<ffi::F32>>()  // acts [T, B, 4H] or [0]
                                  .Ret<ffi::Buffer<ffi::F32>>()  // hprev_t [H, T*B] or [0]
                                  .Ctx<ffi::ThreadPool>()
                                  .Attr<int64_t>("threads"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(LstmBackward, LstmBackwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // w [H, 4H]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // acts [T, B, 4H]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // cs [T, B, H]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // c0 [B, H]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // dys [B, T, H]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // dcT [B, H]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // dhT [B, H]
                                  .Arg<ffi::Buffer<ffi::S32>>()  // ids [T, B] or [0]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // eps_c [T, B, H] or [0]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // dcs [T, B, H] or [0]
                                  .Ret<ffi::Buffer<ffi::F32>>()  // dgates [T, B, 4H]
                                  .Ret<ffi::Buffer<ffi::F32>>()  // dc0 [B, H]
                                  .Ret<ffi::Buffer<ffi::F32>>()  // dh0 [B, H]
                                  .Ret<ffi::Buffer<ffi::F32>>()  // dtable [V, 4H] or [0]
                                  .Ret<ffi::Buffer<ffi::F32>>()  // deps_c [T, B, H] or [0]
                                  .Ret<ffi::Buffer<ffi::F32>>()  // deps_h [T, B, H] or [0]
                                  .Ctx<ffi::ThreadPool>()
                                  .Attr<int64_t>("threads"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(GruForward, GruForwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // xp [T, B, 3H] or table [V, 3H]
                                  .Arg<ffi::Buffer<ffi::S32>>()  // ids [T, B] or [0]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // w [H, 3H]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // b_hn [H]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // h0 [B, H]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // eps [T, B, H] or [0]
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ys [B, T, H]
                                  .Ret<ffi::Buffer<ffi::F32>>()  // acts [T, B, 4H] or [0]
                                  .Ret<ffi::Buffer<ffi::F32>>()  // hprev_t [H, T*B] or [0]
                                  .Ctx<ffi::ThreadPool>()
                                  .Attr<int64_t>("threads"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(GruBackward, GruBackwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // w [H, 3H]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // acts [T, B, 4H]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // ys [B, T, H]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // h0 [B, H]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // dys [B, T, H]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // dhT [B, H]
                                  .Arg<ffi::Buffer<ffi::S32>>()  // ids [T, B] or [0]
                                  .Ret<ffi::Buffer<ffi::F32>>()  // dxp [T, B, 3H]
                                  .Ret<ffi::Buffer<ffi::F32>>()  // dhr [T, B, 3H]
                                  .Ret<ffi::Buffer<ffi::F32>>()  // dh0 [B, H]
                                  .Ret<ffi::Buffer<ffi::F32>>()  // dtable [V, 3H] or [0]
                                  .Ret<ffi::Buffer<ffi::F32>>()  // deps [T, B, H] or [0]
                                  .Ctx<ffi::ThreadPool>()
                                  .Attr<int64_t>("threads"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(ElmanForward, ElmanForwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // xp [T, B, H] or table [V, H]
                                  .Arg<ffi::Buffer<ffi::S32>>()  // ids [T, B] or [0]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // w [H, H]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // h0 [B, H]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // eps [T, B, H] or [0]
                                  .Ret<ffi::Buffer<ffi::F32>>()  // ys [B, T, H]
                                  .Ret<ffi::Buffer<ffi::F32>>()  // hprev_t [H, T*B] or [0]
                                  .Ret<ffi::Buffer<ffi::F32>>()  // hraw [T, B, H] or [0]
                                  .Ctx<ffi::ThreadPool>()
                                  .Attr<int64_t>("threads")
                                  .Attr<int64_t>("relu"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(ElmanBackward, ElmanBackwardImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()  // w [H, H]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // ys [B, T, H]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // dys [B, T, H]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // dhT [B, H]
                                  .Arg<ffi::Buffer<ffi::S32>>()  // ids [T, B] or [0]
                                  .Arg<ffi::Buffer<ffi::F32>>()  // hraw [T, B, H] or [0]
                                  .Ret<ffi::Buffer<ffi::F32>>()  // dpre [T, B, H]
                                  .Ret<ffi::Buffer<ffi::F32>>()  // dh0 [B, H]
                                  .Ret<ffi::Buffer<ffi::F32>>()  // dtable [V, H] or [0]
                                  .Ret<ffi::Buffer<ffi::F32>>()  // deps [T, B, H] or [0]
                                  .Ctx<ffi::ThreadPool>()
                                  .Attr<int64_t>("threads")
                                  .Attr<int64_t>("relu"));
