// sparselinear.cpp: the 2:4 and CSR sparse linear kernels (formats and algorithms in sparselinear.h).

// GCC 12 false positives inside the AVX-512 intrinsics headers (see packedlinear.cpp).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "sparselinear.h"

#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <type_traits>
#pragma GCC diagnostic pop

#define BITSMITH_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma")))
#define BITSMITH_AVX2 __attribute__((target("avx2,fma")))

namespace bitsmith::core {

// ---- 2:4 format ------------------------------------------------------------------------------
// A chunk of 32 inputs = 8 groups of 4. Its 16 values sit in the order of a 16-lane register seen
// as 4 lanes of 128 bits: lane L, position p holds group L (p = 0, 1) or group L + 4 (p = 2, 3),
// so one in-lane permute of x[0..16) and one of x[16..32) with the same index vector, blended,
// line x up with the values. Slot k = 4L + p stores the input's position in its group at bits 2k.

namespace {

inline int slotGroup(int k) { return (k >> 2) + ((k & 3) >= 2 ? 4 : 0); }

} // namespace

Expected<Sparse24Weights> Sparse24Weights::fromDense(MatrixView w, bool int8)
{
    if (w.cols % kChunk != 0)
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("the 2:4 kernel needs a multiple of 32 inputs, not %1").arg(w.cols))
                              .forParameter(QStringLiteral("cols")));
    Sparse24Weights s;
    s.m_rows = w.rows;
    s.m_cols = w.cols;
    const std::int64_t chunks = w.cols / kChunk;
    s.m_values.assign(static_cast<std::size_t>(w.rows * w.cols / 2), 0.0f);
    s.m_indices.assign(static_cast<std::size_t>(w.rows * chunks), 0u);
    for (std::int64_t r = 0; r < w.rows; ++r) {
        const float *row = w.data() + r * w.cols;
        for (std::int64_t ch = 0; ch < chunks; ++ch) {
            float *vals = s.m_values.data() + (r * chunks + ch) * 16;
            std::uint32_t bits = 0;
            for (int g = 0; g < 8; ++g) {
                const float *grp = row + ch * kChunk + g * 4;
                int pos[2] = {0, 1}; // unused slots point at positions 0/1 with value 0
                int found = 0;
                for (int k = 0; k < 4; ++k) {
                    if (!std::isfinite(grp[k]))
                        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("weights contain NaN or Inf")).forParameter(QStringLiteral("weights")));
                    if (grp[k] != 0.0f) {
                        if (found == 2)
                            return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("row %1 has more than 2 nonzeros in inputs %2..%3: not 2:4")
                                                                                   .arg(r)
                                                                                   .arg(ch * kChunk + g * 4)
                                                                                   .arg(ch * kChunk + g * 4 + 3))
                                                  .forParameter(QStringLiteral("pattern")));
                        pos[found++] = k;
                    }
                }
                if (found == 1 && pos[0] == 1)
                    pos[1] = 0; // keep the two slots on distinct positions (cosmetic)
                // slots of group g: lane g % 4, positions 0,1 (g < 4) or 2,3 (g >= 4)
                const int lane = g & 3, base = g < 4 ? 0 : 2;
                for (int t = 0; t < 2; ++t) {
                    const int k = 4 * lane + base + t;
                    vals[k] = grp[pos[t]];
                    bits |= static_cast<std::uint32_t>(pos[t]) << (2 * k);
                }
            }
            s.m_indices[static_cast<std::size_t>(r * chunks + ch)] = bits;
        }
    }
    if (int8) {
        s.m_int8 = true;
        const std::int64_t perRow = w.cols / 2;
        s.m_values8.resize(s.m_values.size());
        s.m_scales.resize(static_cast<std::size_t>(w.rows));
        for (std::int64_t r = 0; r < w.rows; ++r) {
            const float *v = s.m_values.data() + r * perRow;
            float maxAbs = 0.0f;
            for (std::int64_t i = 0; i < perRow; ++i)
                maxAbs = std::max(maxAbs, std::abs(v[i]));
            const float scale = maxAbs > 0.0f ? maxAbs / 127.0f : 1.0f;
            s.m_scales[static_cast<std::size_t>(r)] = scale;
            for (std::int64_t i = 0; i < perRow; ++i)
                s.m_values8[static_cast<std::size_t>(r * perRow + i)] =
                    static_cast<std::int8_t>(std::clamp(std::nearbyint(v[i] / scale), -127.0f, 127.0f));
        }
        s.m_values.clear();
        s.m_values.shrink_to_fit();
    }
    return s;
}

Expected<Sparse24Weights> Sparse24Weights::fromQuantized(const QuantizedTensor &q)
{
    if (q.format.bits != 8 || !q.format.symmetric || q.format.groupSize > 0 || !q.groupIndex.empty())
        return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("the int8 2:4 kernel takes 8-bit symmetric per-channel weights"))
                              .forParameter(QStringLiteral("format")));
    // Codes relative to the zero point as f32 "weights": the 2:4 packing and checks of fromDense.
    std::vector<float> centred(static_cast<std::size_t>(q.rows * q.cols));
    for (std::int64_t r = 0; r < q.rows; ++r)
        for (std::int64_t c = 0; c < q.cols; ++c)
            centred[static_cast<std::size_t>(r * q.cols + c)] =
                static_cast<float>(q.codes[static_cast<std::size_t>(r * q.cols + c)]) - q.zero(r, 0);
    auto s = fromDense(MatrixView{centred.data(), q.rows, q.cols});
    if (!s)
        return s;
    s->m_int8 = true;
    s->m_values8.resize(s->m_values.size());
    for (std::size_t i = 0; i < s->m_values.size(); ++i)
        s->m_values8[i] = static_cast<std::int8_t>(s->m_values[i]); // in [-128, 127]
    s->m_scales.resize(static_cast<std::size_t>(q.rows));
    for (std::int64_t r = 0; r < q.rows; ++r)
        s->m_scales[static_cast<std::size_t>(r)] = q.scale(r, 0);
    s->m_values.clear();
    s->m_values.shrink_to_fit();
    return s;
}

void Sparse24Weights::toDense(float *out) const
{
    std::fill(out, out + m_rows * m_cols, 0.0f);
    const std::int64_t chunks = m_cols / kChunk;
    for (std::int64_t r = 0; r < m_rows; ++r)
        for (std::int64_t ch = 0; ch < chunks; ++ch) {
            const std::uint32_t bits = m_indices[static_cast<std::size_t>(r * chunks + ch)];
            for (int k = 0; k < 16; ++k) {
                const std::size_t at = static_cast<std::size_t>((r * chunks + ch) * 16 + k);
                const float v = m_int8 ? m_scales[static_cast<std::size_t>(r)] * static_cast<float>(m_values8[at]) : m_values[at];
                if (v != 0.0f)
                    out[r * m_cols + ch * kChunk + slotGroup(k) * 4 + ((bits >> (2 * k)) & 3)] = v;
            }
        }
}

namespace {

// Value access for f32 and int8 2:4 weights (int8: widened to f32; the row scale is applied to
// the finished sum).
template <typename T>
const T *values24(const Sparse24Weights &w);
template <>
const float *values24<float>(const Sparse24Weights &w) { return w.values(); }
template <>
const std::int8_t *values24<std::int8_t>(const Sparse24Weights &w) { return w.values8(); }
template <typename T>
float rowScale24(const Sparse24Weights &w, std::int64_t r)
{
    if constexpr (std::is_same_v<T, float>)
        return 1.0f;
    else
        return w.rowScales()[r];
}
BITSMITH_AVX512 inline __m512 load16(const float *p) { return _mm512_loadu_ps(p); }
BITSMITH_AVX512 inline __m512 load16(const std::int8_t *p)
{
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i *>(p))));
}
BITSMITH_AVX2 inline __m256 load8(const float *p) { return _mm256_loadu_ps(p); }
BITSMITH_AVX2 inline __m256 load8(const std::int8_t *p)
{
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i *>(p))));
}

// y[m][r] for rows [r0, r1) and MB rows of x, over chunks [ch0, ch1) (added to y if accumulate).
template <int MB, typename T>
void gemv24Scalar(const Sparse24Weights &w, const float *x, std::int64_t ldx, float *y, std::int64_t ldy, std::int64_t r0, std::int64_t r1,
                  std::int64_t ch0, std::int64_t ch1, bool accumulate)
{
    const std::int64_t chunks = w.cols() / Sparse24Weights::kChunk;
    for (std::int64_t r = r0; r < r1; ++r) {
        float acc[MB] = {};
        for (std::int64_t ch = ch0; ch < ch1; ++ch) {
            const T *vals = values24<T>(w) + (r * chunks + ch) * 16;
            const std::uint32_t bits = w.indices()[r * chunks + ch];
            for (int k = 0; k < 16; ++k) {
                const std::int64_t c = ch * 32 + slotGroup(k) * 4 + ((bits >> (2 * k)) & 3);
                for (int m = 0; m < MB; ++m)
                    acc[m] += static_cast<float>(vals[k]) * x[m * ldx + c];
            }
        }
        for (int m = 0; m < MB; ++m)
            y[m * ldy + r] = (accumulate ? y[m * ldy + r] : 0.0f) + rowScale24<T>(w, r) * acc[m];
    }
}

// MB > 1: the chunk's weights are expanded once into two dense 16-lane vectors (zeros where
// pruned: in-lane broadcasts of each slot's value and position, compared with the lane position),
// which every row of x then uses with two plain FMAs — the permutes are shared by the batch.
template <int MB, typename T>
BITSMITH_AVX512 void gemv24ExpandAvx512(const Sparse24Weights &w, const float *x, std::int64_t ldx, float *y, std::int64_t ldy,
                                        std::int64_t r0, std::int64_t r1,
                  std::int64_t ch0, std::int64_t ch1, bool accumulate)
{
    const std::int64_t chunks = w.cols() / Sparse24Weights::kChunk;
    const __m512i shifts = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i lanePos = _mm512_setr_epi32(0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3);
    const __m512i three = _mm512_set1_epi32(3);
    for (std::int64_t r = r0; r < r1; ++r) {
        const T *vals = values24<T>(w) + r * chunks * 16;
        const std::uint32_t *idx = w.indices() + r * chunks;
        __m512 acc[MB];
        for (int m = 0; m < MB; ++m)
            acc[m] = _mm512_setzero_ps();
        for (std::int64_t ch = ch0; ch < ch1; ++ch) {
            const __m512i pos = _mm512_and_si512(_mm512_srlv_epi32(_mm512_set1_epi32(static_cast<int>(idx[ch])), shifts), three);
            const __m512 v = load16(vals + ch * 16);
            // groups 0..3 (x[0..16)): slots 0 and 1 of each lane; groups 4..7 (x[16..32)): slots 2 and 3
            const __mmask16 a0 = _mm512_cmpeq_epi32_mask(_mm512_shuffle_epi32(pos, _MM_PERM_AAAA), lanePos);
            const __mmask16 a1 = _mm512_cmpeq_epi32_mask(_mm512_shuffle_epi32(pos, _MM_PERM_BBBB), lanePos);
            const __mmask16 b0 = _mm512_cmpeq_epi32_mask(_mm512_shuffle_epi32(pos, _MM_PERM_CCCC), lanePos);
            const __mmask16 b1 = _mm512_cmpeq_epi32_mask(_mm512_shuffle_epi32(pos, _MM_PERM_DDDD), lanePos);
            __m512 d0 = _mm512_maskz_mov_ps(a0, _mm512_permute_ps(v, 0x00));
            d0 = _mm512_mask_mov_ps(d0, a1, _mm512_permute_ps(v, 0x55));
            __m512 d1 = _mm512_maskz_mov_ps(b0, _mm512_permute_ps(v, 0xAA));
            d1 = _mm512_mask_mov_ps(d1, b1, _mm512_permute_ps(v, 0xFF));
            for (int m = 0; m < MB; ++m) {
                const float *xm = x + m * ldx + ch * 32;
                acc[m] = _mm512_fmadd_ps(d0, _mm512_loadu_ps(xm), acc[m]);
                acc[m] = _mm512_fmadd_ps(d1, _mm512_loadu_ps(xm + 16), acc[m]);
            }
        }
        for (int m = 0; m < MB; ++m)
            y[m * ldy + r] = (accumulate ? y[m * ldy + r] : 0.0f) + rowScale24<T>(w, r) * _mm512_reduce_add_ps(acc[m]);
    }
}

template <int MB, typename T>
BITSMITH_AVX512 void gemv24Avx512(const Sparse24Weights &w, const float *x, std::int64_t ldx, float *y, std::int64_t ldy,
                                  std::int64_t r0, std::int64_t r1,
                  std::int64_t ch0, std::int64_t ch1, bool accumulate)
{
    const std::int64_t chunks = w.cols() / Sparse24Weights::kChunk;
    const __m512i shifts = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    for (std::int64_t r = r0; r < r1; ++r) {
        const T *vals = values24<T>(w) + r * chunks * 16;
        const std::uint32_t *idx = w.indices() + r * chunks;
        __m512 acc[MB], acc2[MB];
        for (int m = 0; m < MB; ++m) {
            acc[m] = _mm512_setzero_ps();
            acc2[m] = _mm512_setzero_ps();
        }
        std::int64_t ch = ch0;
        // Two chunks per step into two accumulators: the FMA latency chain would bind otherwise.
        for (; ch + 1 < ch1; ch += 2) {
            const __m512i i0 = _mm512_srlv_epi32(_mm512_set1_epi32(static_cast<int>(idx[ch])), shifts);
            const __m512i i1 = _mm512_srlv_epi32(_mm512_set1_epi32(static_cast<int>(idx[ch + 1])), shifts);
            const __m512 v0 = load16(vals + ch * 16), v1 = load16(vals + ch * 16 + 16);
            for (int m = 0; m < MB; ++m) {
                const float *xm = x + m * ldx + ch * 32;
                const __m512 a = _mm512_mask_blend_ps(0xCCCC, _mm512_permutevar_ps(_mm512_loadu_ps(xm), i0),
                                                      _mm512_permutevar_ps(_mm512_loadu_ps(xm + 16), i0));
                const __m512 b = _mm512_mask_blend_ps(0xCCCC, _mm512_permutevar_ps(_mm512_loadu_ps(xm + 32), i1),
                                                      _mm512_permutevar_ps(_mm512_loadu_ps(xm + 48), i1));
                acc[m] = _mm512_fmadd_ps(v0, a, acc[m]);
                acc2[m] = _mm512_fmadd_ps(v1, b, acc2[m]);
            }
        }
        for (; ch < ch1; ++ch) {
            const __m512i i0 = _mm512_srlv_epi32(_mm512_set1_epi32(static_cast<int>(idx[ch])), shifts);
            const __m512 v0 = load16(vals + ch * 16);
            for (int m = 0; m < MB; ++m) {
                const float *xm = x + m * ldx + ch * 32;
                const __m512 a = _mm512_mask_blend_ps(0xCCCC, _mm512_permutevar_ps(_mm512_loadu_ps(xm), i0),
                                                      _mm512_permutevar_ps(_mm512_loadu_ps(xm + 16), i0));
                acc[m] = _mm512_fmadd_ps(v0, a, acc[m]);
            }
        }
        for (int m = 0; m < MB; ++m)
            y[m * ldy + r] = (accumulate ? y[m * ldy + r] : 0.0f) + rowScale24<T>(w, r) * _mm512_reduce_add_ps(_mm512_add_ps(acc[m], acc2[m]));
    }
}

BITSMITH_AVX2 inline float hsum256(__m256 v)
{
    const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

template <int MB, typename T>
BITSMITH_AVX2 void gemv24Avx2(const Sparse24Weights &w, const float *x, std::int64_t ldx, float *y, std::int64_t ldy,
                              std::int64_t r0, std::int64_t r1,
                  std::int64_t ch0, std::int64_t ch1, bool accumulate)
{
    const std::int64_t chunks = w.cols() / Sparse24Weights::kChunk;
    const __m256i shLo = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
    const __m256i shHi = _mm256_setr_epi32(16, 18, 20, 22, 24, 26, 28, 30);
    for (std::int64_t r = r0; r < r1; ++r) {
        const T *vals = values24<T>(w) + r * chunks * 16;
        const std::uint32_t *idx = w.indices() + r * chunks;
        __m256 acc[MB], acc2[MB];
        for (int m = 0; m < MB; ++m) {
            acc[m] = _mm256_setzero_ps();
            acc2[m] = _mm256_setzero_ps();
        }
        for (std::int64_t ch = ch0; ch < ch1; ++ch) {
            const __m256i b = _mm256_set1_epi32(static_cast<int>(idx[ch]));
            const __m256i iLo = _mm256_srlv_epi32(b, shLo), iHi = _mm256_srlv_epi32(b, shHi);
            const __m256 vLo = load8(vals + ch * 16), vHi = load8(vals + ch * 16 + 8);
            for (int m = 0; m < MB; ++m) {
                const float *xm = x + m * ldx + ch * 32;
                // values 0..7: groups 0,1 (x[0..8)) and 4,5 (x[16..24)); values 8..15: groups 2,3 and 6,7
                const __m256 lo = _mm256_blend_ps(_mm256_permutevar_ps(_mm256_loadu_ps(xm), iLo),
                                                  _mm256_permutevar_ps(_mm256_loadu_ps(xm + 16), iLo), 0xCC);
                const __m256 hi = _mm256_blend_ps(_mm256_permutevar_ps(_mm256_loadu_ps(xm + 8), iHi),
                                                  _mm256_permutevar_ps(_mm256_loadu_ps(xm + 24), iHi), 0xCC);
                acc[m] = _mm256_fmadd_ps(vLo, lo, acc[m]);
                acc2[m] = _mm256_fmadd_ps(vHi, hi, acc2[m]);
            }
        }
        for (int m = 0; m < MB; ++m)
            y[m * ldy + r] = (accumulate ? y[m * ldy + r] : 0.0f) + rowScale24<T>(w, r) * hsum256(_mm256_add_ps(acc[m], acc2[m]));
    }
}

using Gemv24Fn = void (*)(const Sparse24Weights &, const float *, std::int64_t, float *, std::int64_t, std::int64_t, std::int64_t,
                          std::int64_t, std::int64_t, bool);

template <int MB, typename T>
Gemv24Fn gemv24For(KernelIsa isa)
{
    switch (isa) {
    case KernelIsa::Avx512: return MB == 1 ? &gemv24Avx512<MB, T> : &gemv24ExpandAvx512<MB, T>;
    case KernelIsa::Avx2: return &gemv24Avx2<MB, T>;
    case KernelIsa::Scalar: break;
    }
    return &gemv24Scalar<MB, T>;
}

template <typename T>
void gemv24Table(KernelIsa isa, Gemv24Fn (&fn)[4])
{
    fn[0] = gemv24For<1, T>(isa);
    fn[1] = gemv24For<2, T>(isa);
    fn[2] = gemv24For<4, T>(isa);
    fn[3] = gemv24For<8, T>(isa);
}

// ---- CSR ---------------------------------------------------------------------------------------

void csrGemvScalar(const CsrWeights &w, const float *x, float *y, std::int64_t r0, std::int64_t r1)
{
    const auto &rp = w.rowOffsets();
    const auto &ci = w.columns();
    const auto &v = w.values();
    for (std::int64_t r = r0; r < r1; ++r) {
        float acc = 0.0f;
        for (std::uint32_t k = rp[static_cast<std::size_t>(r)]; k < rp[static_cast<std::size_t>(r + 1)]; ++k)
            acc += v[k] * x[ci[k]];
        y[r] = acc;
    }
}

BITSMITH_AVX512 void csrGemvAvx512(const CsrWeights &w, const float *x, float *y, std::int64_t r0, std::int64_t r1)
{
    const auto &rp = w.rowOffsets();
    const std::uint16_t *ci = w.columns().data();
    const float *v = w.values().data();
    for (std::int64_t r = r0; r < r1; ++r) {
        std::uint32_t k = rp[static_cast<std::size_t>(r)];
        const std::uint32_t end = rp[static_cast<std::size_t>(r + 1)];
        __m512 acc = _mm512_setzero_ps(), acc2 = _mm512_setzero_ps();
        for (; k + 32 <= end; k += 32) {
            const __m512i c0 = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(ci + k)));
            const __m512i c1 = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(ci + k + 16)));
            acc = _mm512_fmadd_ps(_mm512_loadu_ps(v + k), _mm512_i32gather_ps(c0, x, 4), acc);
            acc2 = _mm512_fmadd_ps(_mm512_loadu_ps(v + k + 16), _mm512_i32gather_ps(c1, x, 4), acc2);
        }
        for (; k + 16 <= end; k += 16) {
            const __m512i c0 = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i *>(ci + k)));
            acc = _mm512_fmadd_ps(_mm512_loadu_ps(v + k), _mm512_i32gather_ps(c0, x, 4), acc);
        }
        if (k < end) {
            const __mmask16 mask = static_cast<__mmask16>((1u << (end - k)) - 1u);
            const __m512i c0 = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(mask, ci + k));
            const __m512 xs = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), mask, c0, x, 4);
            acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, v + k), xs, acc);
        }
        y[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc, acc2));
    }
}

BITSMITH_AVX2 void csrGemvAvx2(const CsrWeights &w, const float *x, float *y, std::int64_t r0, std::int64_t r1)
{
    const auto &rp = w.rowOffsets();
    const std::uint16_t *ci = w.columns().data();
    const float *v = w.values().data();
    for (std::int64_t r = r0; r < r1; ++r) {
        std::uint32_t k = rp[static_cast<std::size_t>(r)];
        const std::uint32_t end = rp[static_cast<std::size_t>(r + 1)];
        __m256 acc = _mm256_setzero_ps();
        for (; k + 8 <= end; k += 8) {
            const __m256i c0 = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i *>(ci + k)));
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(v + k), _mm256_i32gather_ps(x, c0, 4), acc);
        }
        float tail = 0.0f;
        for (; k < end; ++k)
            tail += v[k] * x[ci[k]];
        y[r] = hsum256(acc) + tail;
    }
}

// Batched CSR on x transposed to [cols, mb]: each nonzero adds v · xt[c, :] to the row's mb sums.
template <int MB>
BITSMITH_AVX512 void csrBatchAvx512(const CsrWeights &w, const float *xt, float *y, std::int64_t ldy, std::int64_t r0, std::int64_t r1)
{
    static_assert(MB % 16 == 0);
    const auto &rp = w.rowOffsets();
    const std::uint16_t *ci = w.columns().data();
    const float *v = w.values().data();
    for (std::int64_t r = r0; r < r1; ++r) {
        __m512 acc[MB / 16];
        for (auto &a : acc)
            a = _mm512_setzero_ps();
        for (std::uint32_t k = rp[static_cast<std::size_t>(r)]; k < rp[static_cast<std::size_t>(r + 1)]; ++k) {
            const __m512 vk = _mm512_set1_ps(v[k]);
            const float *row = xt + static_cast<std::int64_t>(ci[k]) * MB;
            for (int t = 0; t < MB / 16; ++t)
                acc[t] = _mm512_fmadd_ps(vk, _mm512_loadu_ps(row + 16 * t), acc[t]);
        }
        alignas(64) float out[MB];
        for (int t = 0; t < MB / 16; ++t)
            _mm512_store_ps(out + 16 * t, acc[t]);
        for (int m = 0; m < MB; ++m)
            y[m * ldy + r] = out[m];
    }
}

template <int MB>
BITSMITH_AVX2 void csrBatchAvx2(const CsrWeights &w, const float *xt, float *y, std::int64_t ldy, std::int64_t r0, std::int64_t r1)
{
    static_assert(MB % 8 == 0);
    const auto &rp = w.rowOffsets();
    const std::uint16_t *ci = w.columns().data();
    const float *v = w.values().data();
    for (std::int64_t r = r0; r < r1; ++r) {
        __m256 acc[MB / 8];
        for (auto &a : acc)
            a = _mm256_setzero_ps();
        for (std::uint32_t k = rp[static_cast<std::size_t>(r)]; k < rp[static_cast<std::size_t>(r + 1)]; ++k) {
            const __m256 vk = _mm256_set1_ps(v[k]);
            const float *row = xt + static_cast<std::int64_t>(ci[k]) * MB;
            for (int t = 0; t < MB / 8; ++t)
                acc[t] = _mm256_fmadd_ps(vk, _mm256_loadu_ps(row + 8 * t), acc[t]);
        }
        alignas(32) float out[MB];
        for (int t = 0; t < MB / 8; ++t)
            _mm256_store_ps(out + 8 * t, acc[t]);
        for (int m = 0; m < MB; ++m)
            y[m * ldy + r] = out[m];
    }
}

template <int MB>
void csrBatchScalar(const CsrWeights &w, const float *xt, float *y, std::int64_t ldy, std::int64_t r0, std::int64_t r1)
{
    const auto &rp = w.rowOffsets();
    for (std::int64_t r = r0; r < r1; ++r) {
        float acc[MB] = {};
        for (std::uint32_t k = rp[static_cast<std::size_t>(r)]; k < rp[static_cast<std::size_t>(r + 1)]; ++k) {
            const float vk = w.values()[k];
            const float *row = xt + static_cast<std::int64_t>(w.columns()[k]) * MB;
            for (int m = 0; m < MB; ++m)
                acc[m] += vk * row[m];
        }
        for (int m = 0; m < MB; ++m)
            y[m * ldy + r] = acc[m];
    }
}

// Rows of W per parallel task: big enough that OpenMP overhead vanishes.
constexpr std::int64_t kRowsPerTask = 64;

void addBias(float *y, std::int64_t m, std::int64_t n, const float *bias)
{
    if (!bias)
        return;
    for (std::int64_t i = 0; i < m; ++i)
        for (std::int64_t j = 0; j < n; ++j)
            y[i * n + j] += bias[j];
}

class Sparse24Linear final : public LinearKernel
{
public:
    Sparse24Linear(std::shared_ptr<const Sparse24Weights> w, const float *bias, const SparseKernelOptions &o)
        : m_w(std::move(w))
        , m_bias(bias)
        , m_isa(o.isa.value_or(selectKernelIsa()))
        , m_denseAbove(o.denseAboveRows)
    {
        if (m_w->isInt8())
            gemv24Table<std::int8_t>(m_isa, m_fn);
        else
            gemv24Table<float>(m_isa, m_fn);
        if (m_denseAbove >= 0 && !o.denseWeight.empty())
            m_dense = makeDenseLinear(o.denseWeight, bias ? MatrixView{bias, 1, m_w->rows()} : MatrixView{});
    }
    void forward(const float *x, std::int64_t m, float *y) const override
    {
        if (m_dense && m > m_denseAbove) {
            m_dense->forward(x, m, y);
            return;
        }
        const std::int64_t n = m_w->rows(), k = m_w->cols();
        // Tiles of 8, 4, 2, 1 rows of x; the row blocks of W are the outer loop so that a block
        // (16 rows: 128 KiB at K = 4096) stays in L2 while every tile uses it.
        if (m > 512) { // at most 64 tiles per pass
            forward(x, 512, y);
            forward(x + 512 * k, m - 512, y + 512 * n);
            return;
        }
        std::int64_t tiles[64 + 3][2]; // (first row, which): 8 << 0..3 rows
        int count = 0;
        std::int64_t i = 0;
        for (; i + 8 <= m; i += 8)
            tiles[count][0] = i, tiles[count++][1] = 3;
        for (int which = 2; which >= 0; --which)
            if (i + (std::int64_t{1} << which) <= m)
                tiles[count][0] = i, tiles[count++][1] = which, i += std::int64_t{1} << which;
        forwardRows(x, y, tiles, count);
        addBias(y, m, n, m_bias);
    }
    void forwardRows(const float *x, float *y, const std::int64_t (*tiles)[2], int count) const
    {
        const std::int64_t n = m_w->rows(), k = m_w->cols();
        constexpr std::int64_t kBlock = 16;
        const std::int64_t blocks = (n + kBlock - 1) / kBlock;
        std::int64_t rowsOfX = 0;
        for (int t = 0; t < count; ++t)
            rowsOfX += std::int64_t{1} << tiles[t][1];
        // Whole rows at once: slicing K (so that x stays in L1 at K = 11008) was measured slower
        // (1.35x instead of 1.8x over f32 at 4096 x 11008, M = 1): it breaks the weights' stream.
        const std::int64_t chunks = k / Sparse24Weights::kChunk;
        const std::int64_t kSliceChunks = chunks;
#pragma omp parallel for schedule(static) if (blocks > 1 && n * k * rowsOfX > (1 << 18))
        for (std::int64_t b = 0; b < blocks; ++b)
            for (std::int64_t c0 = 0; c0 < chunks; c0 += kSliceChunks)
                for (int t = 0; t < count; ++t) {
                    const std::int64_t first = tiles[t][0];
                    m_fn[tiles[t][1]](*m_w, x + first * k, k, y + first * n, n, b * kBlock, std::min(n, (b + 1) * kBlock), c0,
                                      std::min(chunks, c0 + kSliceChunks), c0 > 0);
                }
    }
    std::int64_t inFeatures() const override { return m_w->cols(); }
    std::int64_t outFeatures() const override { return m_w->rows(); }
    QString description() const override
    {
        return QStringLiteral("sparse 2:4 %1 (%2)").arg(QLatin1String(m_w->isInt8() ? "int8" : "f32"), QLatin1String(kernelIsaName(m_isa)));
    }

private:
    std::shared_ptr<const Sparse24Weights> m_w;
    const float *m_bias;
    KernelIsa m_isa;
    std::int64_t m_denseAbove;
    Gemv24Fn m_fn[4];
    std::unique_ptr<LinearKernel> m_dense;
};

class CsrLinear final : public LinearKernel
{
public:
    CsrLinear(std::shared_ptr<const CsrWeights> w, const float *bias, const SparseKernelOptions &o)
        : m_w(std::move(w))
        , m_bias(bias)
        , m_isa(o.isa.value_or(selectKernelIsa()))
        , m_denseAbove(o.denseAboveRows)
    {
        if (m_denseAbove >= 0 && !o.denseWeight.empty())
            m_dense = makeDenseLinear(o.denseWeight, bias ? MatrixView{bias, 1, m_w->rows()} : MatrixView{});
    }
    void forward(const float *x, std::int64_t m, float *y) const override
    {
        if (m_dense && m > m_denseAbove) {
            m_dense->forward(x, m, y);
            return;
        }
        const std::int64_t n = m_w->rows(), k = m_w->cols();
        const std::int64_t tasks = (n + kRowsPerTask - 1) / kRowsPerTask;
        std::int64_t i = 0;
        // Batches of 16 rows of x: transposed once, then one broadcast FMA per nonzero.
        constexpr int kMb = 16;
        if (m >= 4) {
            std::vector<float> xt(static_cast<std::size_t>(k * kMb));
            for (; i + kMb <= m || (i < m && m - i >= 4); i += kMb) {
                const std::int64_t mb = std::min<std::int64_t>(kMb, m - i);
                std::fill(xt.begin(), xt.end(), 0.0f);
                for (std::int64_t a = 0; a < mb; ++a)
                    for (std::int64_t c = 0; c < k; ++c)
                        xt[static_cast<std::size_t>(c * kMb + a)] = x[(i + a) * k + c];
                std::vector<float> out(static_cast<std::size_t>(kMb * n));
#pragma omp parallel for schedule(static) if (tasks > 1 && n * k > (1 << 16))
                for (std::int64_t t = 0; t < tasks; ++t) {
                    const std::int64_t r0 = t * kRowsPerTask, r1 = std::min(n, (t + 1) * kRowsPerTask);
                    if (m_isa == KernelIsa::Avx512)
                        csrBatchAvx512<kMb>(*m_w, xt.data(), out.data(), n, r0, r1);
                    else if (m_isa == KernelIsa::Avx2)
                        csrBatchAvx2<kMb>(*m_w, xt.data(), out.data(), n, r0, r1);
                    else
                        csrBatchScalar<kMb>(*m_w, xt.data(), out.data(), n, r0, r1);
                }
                std::copy_n(out.data(), mb * n, y + i * n);
            }
        }
        for (; i < m; ++i) {
#pragma omp parallel for schedule(static) if (tasks > 1 && n * k > (1 << 18))
            for (std::int64_t t = 0; t < tasks; ++t) {
                const std::int64_t r0 = t * kRowsPerTask, r1 = std::min(n, (t + 1) * kRowsPerTask);
                if (m_isa == KernelIsa::Avx512)
                    csrGemvAvx512(*m_w, x + i * k, y + i * n, r0, r1);
                else if (m_isa == KernelIsa::Avx2)
                    csrGemvAvx2(*m_w, x + i * k, y + i * n, r0, r1);
                else
                    csrGemvScalar(*m_w, x + i * k, y + i * n, r0, r1);
            }
        }
        addBias(y, m, n, m_bias);
    }
    std::int64_t inFeatures() const override { return m_w->cols(); }
    std::int64_t outFeatures() const override { return m_w->rows(); }
    QString description() const override { return QStringLiteral("sparse csr f32 (%1)").arg(QLatin1String(kernelIsaName(m_isa))); }

private:
    std::shared_ptr<const CsrWeights> m_w;
    const float *m_bias;
    KernelIsa m_isa;
    std::int64_t m_denseAbove;
    std::unique_ptr<LinearKernel> m_dense;
};

} // namespace

Expected<CsrWeights> CsrWeights::fromDense(MatrixView w)
{
    if (w.cols > 65536)
        return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("the CSR kernel takes at most 65536 inputs, not %1").arg(w.cols))
                              .forParameter(QStringLiteral("cols")));
    CsrWeights s;
    s.m_rows = w.rows;
    s.m_cols = w.cols;
    s.m_rowPtr.reserve(static_cast<std::size_t>(w.rows + 1));
    s.m_rowPtr.push_back(0);
    for (std::int64_t r = 0; r < w.rows; ++r) {
        for (std::int64_t c = 0; c < w.cols; ++c) {
            const float v = w.data()[r * w.cols + c];
            if (!std::isfinite(v))
                return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("weights contain NaN or Inf")).forParameter(QStringLiteral("weights")));
            if (v != 0.0f) {
                s.m_values.push_back(v);
                s.m_cols16.push_back(static_cast<std::uint16_t>(c));
            }
        }
        if (s.m_values.size() > 0xffffffffull)
            return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("too many nonzeros for the CSR kernel")));
        s.m_rowPtr.push_back(static_cast<std::uint32_t>(s.m_values.size()));
    }
    return s;
}

void CsrWeights::toDense(float *out) const
{
    std::fill(out, out + m_rows * m_cols, 0.0f);
    for (std::int64_t r = 0; r < m_rows; ++r)
        for (std::uint32_t k = m_rowPtr[static_cast<std::size_t>(r)]; k < m_rowPtr[static_cast<std::size_t>(r + 1)]; ++k)
            out[r * m_cols + m_cols16[k]] = m_values[k];
}

std::unique_ptr<LinearKernel> makeSparse24Linear(std::shared_ptr<const Sparse24Weights> w, const float *bias,
                                                 const SparseKernelOptions &options)
{
    return std::make_unique<Sparse24Linear>(std::move(w), bias, options);
}

std::unique_ptr<LinearKernel> makeCsrLinear(std::shared_ptr<const CsrWeights> w, const float *bias, const SparseKernelOptions &options)
{
    return std::make_unique<CsrLinear>(std::move(w), bias, options);
}

std::unique_ptr<LinearKernel> makeSparseLinearIfPays(MatrixView w, MatrixView bias)
{
    if (const char *env = std::getenv("BITSMITH_SPARSE"); env && std::strcmp(env, "0") == 0)
        return nullptr;
    if (w.empty() || w.rows < 1)
        return nullptr;
    std::int64_t zeros = 0;
    const std::int64_t n = w.rows * w.cols;
    for (std::int64_t i = 0; i < n; ++i)
        zeros += w.data()[i] == 0.0f;
    if (zeros * 4 < n) // below 25% zeros nothing sparse pays
        return nullptr;
    SparseKernelOptions o;
    o.denseAboveRows = kSparseDenseAboveRows;
    o.denseWeight = w;
    if (zeros * 2 >= n && w.cols % Sparse24Weights::kChunk == 0) {
        if (auto s = Sparse24Weights::fromDense(w); s)
            return makeSparse24Linear(std::make_shared<const Sparse24Weights>(std::move(*s)), bias.data(), o);
    }
    if (static_cast<double>(zeros) >= kCsrMinSparsity * static_cast<double>(n)) {
        if (static_cast<double>(zeros) >= kCsrAlwaysSparsity * static_cast<double>(n))
            o.denseAboveRows = kCsrDenseAboveRowsVerySparse;
        if (auto s = CsrWeights::fromDense(w); s)
            return makeCsrLinear(std::make_shared<const CsrWeights>(std::move(*s)), bias.data(), o);
    }
    return nullptr;
}

} // namespace bitsmith::core

namespace bitsmith::core {

std::unique_ptr<LinearKernel> makeSparseQuantizedLinearIfPays(const QuantizedTensor &q, MatrixView dequantized, MatrixView bias)
{
    if (const char *env = std::getenv("BITSMITH_SPARSE"); env && std::strcmp(env, "0") == 0)
        return nullptr;
    if (q.format.bits != 8 || !q.format.symmetric || q.format.groupSize > 0 || !q.groupIndex.empty()
        || q.cols % Sparse24Weights::kChunk != 0)
        return nullptr;
    auto s = Sparse24Weights::fromQuantized(q);
    if (!s)
        return nullptr;
    SparseKernelOptions o;
    o.denseAboveRows = kSparseDenseAboveRows;
    o.denseWeight = dequantized;
    return makeSparse24Linear(std::make_shared<const Sparse24Weights>(std::move(*s)), bias.data(), o);
}

} // namespace bitsmith::core
