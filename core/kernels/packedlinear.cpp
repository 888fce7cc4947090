// packedlinear.cpp: the packed b-bit linear kernel — a code-streaming GEMV for small batches and
// a dequantize-a-tile + oneDNN f32 GEMM path for large ones, each in AVX-512, AVX2 and scalar
// variants chosen at run time (core is compiled for x86-64-v2, so vector code lives in functions
// with a target attribute and is only called after a CPU check).

// GCC 12 warns that _mm512_undefined_*() values are used uninitialised when AVX-512 intrinsics
// are inlined into target("avx512f") functions of a TU built without AVX-512 (GCC PR 105593,
// fixed in GCC 13); the warning points into the intrinsics headers, so it is silenced for them.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "packedlinear.h"

#include <dnnl.hpp>
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#pragma GCC diagnostic pop

#define BITSMITH_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")))
#define BITSMITH_AVX2 __attribute__((target("avx2,fma")))

namespace bitsmith::core {

bool kernelIsaSupported(KernelIsa isa)
{
    switch (isa) {
    case KernelIsa::Scalar:
        return true;
    case KernelIsa::Avx2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case KernelIsa::Avx512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
               && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni")
               && __builtin_cpu_supports("fma");
    }
    return false;
}

KernelIsa selectKernelIsa()
{
    KernelIsa want = KernelIsa::Avx512;
    if (const char *env = std::getenv("BITSMITH_ISA")) {
        if (std::strcmp(env, "scalar") == 0)
            want = KernelIsa::Scalar;
        else if (std::strcmp(env, "avx2") == 0)
            want = KernelIsa::Avx2;
    }
    if (want == KernelIsa::Avx512 && !kernelIsaSupported(KernelIsa::Avx512))
        want = KernelIsa::Avx2;
    if (want == KernelIsa::Avx2 && !kernelIsaSupported(KernelIsa::Avx2))
        want = KernelIsa::Scalar;
    return want;
}

const char *kernelIsaName(KernelIsa isa)
{
    switch (isa) {
    case KernelIsa::Scalar:
        return "scalar";
    case KernelIsa::Avx2:
        return "avx2";
    case KernelIsa::Avx512:
        return "avx512";
    }
    return "?";
}

namespace {

// ---------------------------------------------------------------------------------------------
// Block layouts. The GEMV unpacks codes in blocks of `width` columns; the cheapest unpacking does
// not always yield columns in order (4-bit: the low nibbles of 16 bytes are the even columns),
// so each variant declares which column each output lane holds and x is permuted to match.

struct BlockLayout
{
    int width = 32;                       // columns per block (a multiple of 8 => whole bytes)
    std::array<std::uint8_t, 64> column{}; // lane (vectors concatenated) -> column in the block
};

BlockLayout blockLayout(KernelIsa isa, int bits)
{
    BlockLayout l;
    l.width = bits == 2 ? 64 : 32;
    for (int i = 0; i < l.width; ++i)
        l.column[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(i);
    const int lanes = isa == KernelIsa::Avx512 ? 16 : 8;
    if (isa == KernelIsa::Scalar || (bits != 4 && bits != 2))
        return l;
    // 4-bit / 2-bit: one zero-extended byte per lane, then (byte >> (k*bits)) & mask is vector k:
    // per `lanes` bytes there are 8/bits vectors whose lane i holds column (perLoad*h + i*codesPerByte + k).
    const int codesPerByte = 8 / bits;
    const int perLoad = lanes * codesPerByte; // columns covered by one zero-extending load
    int lane = 0;
    for (int h = 0; h < l.width / perLoad; ++h)
        for (int k = 0; k < codesPerByte; ++k)
            for (int i = 0; i < lanes; ++i)
                l.column[static_cast<std::size_t>(lane++)] = static_cast<std::uint8_t>(perLoad * h + i * codesPerByte + k);
    return l;
}

// A piece of a group run as the GEMV walks it: whole blocks from byteOffset, x from xOffset.
struct Segment
{
    std::int64_t byteOffset = 0; // within a row
    std::int64_t blocks = 0;
    std::int64_t xOffset = 0; // within one row of the x-stream
    std::int32_t group = 0;
};

struct GemvArgs
{
    const std::uint8_t *codes = nullptr;
    std::int64_t rowBytes = 0;
    const Segment *segments = nullptr;
    std::int64_t segmentCount = 0;
    const float *scales = nullptr; // rows x groups
    std::int64_t groups = 0;
    const float *scaledZeros = nullptr; // rows x groupsPadded: scale * zero
    std::int64_t groupsPadded = 0;
    const float *xs = nullptr; // mb rows of the permuted, zero-padded x-stream
    std::int64_t xsStride = 0;
    const float *sumX = nullptr; // mb rows of groupsPadded: per-group sums of x
    const float *bias = nullptr;
    float *y = nullptr;
    std::int64_t ldy = 0;
    // The GEMV walks K in slices (so that the x slice stays in L1 across rows): the first slice
    // writes y (with the zero-point term and bias), later ones add to it.
    bool first = true;
};

struct DequantArgs
{
    const PackedWeights *w = nullptr;
    const std::vector<PackedWeights::GroupRun> *runs = nullptr;
    float *tile = nullptr; // (rowEnd - rowBegin) x cols, row-major, packed column order
};

using GemvFn = void (*)(const GemvArgs &, std::int64_t, std::int64_t);
using DequantFn = void (*)(const DequantArgs &, std::int64_t, std::int64_t);

// ---------------------------------------------------------------------------------------------
// Scalar variant (also the reference for the lane layouts: identity order).

inline unsigned scalarCode(const std::uint8_t *row, std::int64_t j, int bits)
{
    const std::int64_t bit = j * bits;
    const std::uint8_t *p = row + (bit >> 3);
    const unsigned word = p[0] | (static_cast<unsigned>(p[1]) << 8);
    return (word >> (bit & 7)) & ((1u << bits) - 1u);
}

template<int BITS, int MB>
void gemvScalar(const GemvArgs &a, std::int64_t r0, std::int64_t r1)
{
    constexpr int W = BITS == 2 ? 64 : 32; // as blockLayout()
    constexpr std::int64_t blockBytes = W * BITS / 8;
    for (std::int64_t n = r0; n < r1; ++n) {
        const std::uint8_t *row = a.codes + n * a.rowBytes;
        float total[MB] = {};
        for (std::int64_t s = 0; s < a.segmentCount; ++s) {
            const Segment &seg = a.segments[s];
            float acc[MB] = {};
            for (std::int64_t b = 0; b < seg.blocks; ++b) {
                const std::uint8_t *p = row + seg.byteOffset + b * blockBytes;
                const float *xs = a.xs + seg.xOffset + b * W;
                for (int i = 0; i < W; ++i) {
                    const float q = static_cast<float>(scalarCode(p, i, BITS));
                    for (int mb = 0; mb < MB; ++mb)
                        acc[mb] += q * xs[mb * a.xsStride + i];
                }
            }
            const float sc = a.scales[n * a.groups + seg.group];
            for (int mb = 0; mb < MB; ++mb)
                total[mb] += acc[mb] * sc;
        }
        if (!a.first) {
            for (int mb = 0; mb < MB; ++mb)
                a.y[mb * a.ldy + n] += total[mb];
            continue;
        }
        const float *sz = a.scaledZeros + n * a.groupsPadded;
        for (int mb = 0; mb < MB; ++mb) {
            float zeroTerm = 0.0f;
            const float *sx = a.sumX + mb * a.groupsPadded;
            for (std::int64_t g = 0; g < a.groups; ++g)
                zeroTerm += sz[g] * sx[g];
            a.y[mb * a.ldy + n] = total[mb] - zeroTerm + (a.bias ? a.bias[n] : 0.0f);
        }
    }
}

template<int BITS>
void dequantScalar(const DequantArgs &a, std::int64_t r0, std::int64_t r1)
{
    const PackedWeights &w = *a.w;
    const std::int64_t cols = w.cols();
    for (std::int64_t r = r0; r < r1; ++r) {
        const std::uint8_t *row = w.rowData(r);
        float *out = a.tile + (r - r0) * cols;
        for (const auto &run : *a.runs) {
            const float s = w.scale(r, run.group);
            const float z = w.zeroPoint(r, run.group);
            for (std::int64_t j = run.begin; j < run.end; ++j)
                out[j] = s * (static_cast<float>(scalarCode(row, j, BITS)) - z);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// AVX2 variant: 8 lanes.
// The small fixed loops over rows of x / vectors of a block must be unrolled (GCC -O2 does not
// always do it), or the accumulator arrays live on the stack and every FMA waits on a store.

// Shuffle/shift tables for generic b-bit decoding of 8 consecutive codes held in b bytes: lane i
// takes bytes floor(i*b/8) and the next one, then shifts right by (i*b) % 8.
struct GenericTables8
{
    alignas(32) std::uint8_t shuffle[32];
    alignas(32) std::uint32_t shift[8];
};

GenericTables8 genericTables8(int bits)
{
    GenericTables8 t{};
    for (int half = 0; half < 2; ++half)
        for (int i = 0; i < 4; ++i) {
            const int lane = half * 4 + i;
            const int byte = lane * bits / 8;
            std::uint8_t *s = t.shuffle + half * 16 + i * 4;
            s[0] = static_cast<std::uint8_t>(byte);
            s[1] = static_cast<std::uint8_t>(byte + 1);
            s[2] = s[3] = 0x80;
        }
    for (int lane = 0; lane < 8; ++lane)
        t.shift[lane] = static_cast<std::uint32_t>(lane * bits % 8);
    return t;
}

template<int BITS>
const GenericTables8 &tables8()
{
    static const GenericTables8 t = genericTables8(BITS);
    return t;
}

// 8 codes starting at byte p (a whole number of bytes into the row) in column order.
template<int BITS>
BITSMITH_AVX2 inline __m256i decodeGeneric8(const std::uint8_t *p, __m256i shuffle, __m256i shift)
{
    std::uint64_t word;
    std::memcpy(&word, p, 8);
    const __m256i bytes = _mm256_set1_epi64x(static_cast<long long>(word));
    const __m256i v = _mm256_srlv_epi32(_mm256_shuffle_epi8(bytes, shuffle), shift);
    return _mm256_and_si256(v, _mm256_set1_epi32((1 << BITS) - 1));
}

// One block (layout as blockLayout(Avx2, BITS)) into NV = width/8 float vectors.
template<int BITS>
BITSMITH_AVX2 inline void decodeBlockAvx2(const std::uint8_t *p, __m256 *v, __m256i shuffle, __m256i shift)
{
    if constexpr (BITS == 8) {
#pragma GCC unroll 16
        for (int j = 0; j < 4; ++j)
            v[j] = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i *>(p + 8 * j))));
    } else if constexpr (BITS == 4) {
#pragma GCC unroll 16
        for (int h = 0; h < 2; ++h) {
            const __m256i t = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i *>(p + 8 * h)));
            v[2 * h] = _mm256_cvtepi32_ps(_mm256_and_si256(t, _mm256_set1_epi32(15)));
            v[2 * h + 1] = _mm256_cvtepi32_ps(_mm256_srli_epi32(t, 4));
        }
    } else if constexpr (BITS == 2) {
#pragma GCC unroll 16
        for (int h = 0; h < 2; ++h) {
            const __m256i t = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i *>(p + 8 * h)));
            const __m256i m3 = _mm256_set1_epi32(3);
            v[4 * h] = _mm256_cvtepi32_ps(_mm256_and_si256(t, m3));
            v[4 * h + 1] = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(t, 2), m3));
            v[4 * h + 2] = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srli_epi32(t, 4), m3));
            v[4 * h + 3] = _mm256_cvtepi32_ps(_mm256_srli_epi32(t, 6));
        }
    } else {
#pragma GCC unroll 16
        for (int j = 0; j < 4; ++j)
            v[j] = _mm256_cvtepi32_ps(decodeGeneric8<BITS>(p + BITS * j, shuffle, shift));
    }
}

BITSMITH_AVX2 inline float hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

template<int BITS, int MB>
BITSMITH_AVX2 void gemvAvx2(const GemvArgs &a, std::int64_t r0, std::int64_t r1)
{
    constexpr int W = BITS == 2 ? 64 : 32;
    constexpr int NV = W / 8;
    constexpr int BB = W * BITS / 8;
    // Independent FMA chains hide the FMA latency, but all accumulators must fit the 16 ymm
    // registers next to the decoded block: vector j accumulates into acc[mb][j % NA].
    constexpr int NA = std::max(1, std::min(NV, 8 / MB));
    const __m256i shuffle = _mm256_load_si256(reinterpret_cast<const __m256i *>(tables8<BITS>().shuffle));
    const __m256i shift = _mm256_load_si256(reinterpret_cast<const __m256i *>(tables8<BITS>().shift));
    for (std::int64_t n = r0; n < r1; ++n) {
        const std::uint8_t *row = a.codes + n * a.rowBytes;
        __m256 total[MB];
#pragma GCC unroll 16
        for (int mb = 0; mb < MB; ++mb)
            total[mb] = _mm256_setzero_ps();
        for (std::int64_t s = 0; s < a.segmentCount; ++s) {
            const Segment &seg = a.segments[s];
            __m256 acc[MB][NA];
#pragma GCC unroll 16
            for (int mb = 0; mb < MB; ++mb)
#pragma GCC unroll 16
                for (int j = 0; j < NA; ++j)
                    acc[mb][j] = _mm256_setzero_ps();
            const std::uint8_t *p = row + seg.byteOffset;
            const float *xs = a.xs + seg.xOffset;
            for (std::int64_t b = 0; b < seg.blocks; ++b, p += BB, xs += W) {
                __m256 v[NV];
                decodeBlockAvx2<BITS>(p, v, shuffle, shift);
#pragma GCC unroll 16
                for (int j = 0; j < NV; ++j)
#pragma GCC unroll 16
                    for (int mb = 0; mb < MB; ++mb)
                        acc[mb][j % NA] = _mm256_fmadd_ps(v[j], _mm256_loadu_ps(xs + mb * a.xsStride + 8 * j), acc[mb][j % NA]);
            }
            const __m256 sc = _mm256_set1_ps(a.scales[n * a.groups + seg.group]);
#pragma GCC unroll 16
            for (int mb = 0; mb < MB; ++mb) {
                __m256 sum = acc[mb][0];
#pragma GCC unroll 16
                for (int j = 1; j < NA; ++j)
                    sum = _mm256_add_ps(sum, acc[mb][j]);
                total[mb] = _mm256_fmadd_ps(sum, sc, total[mb]);
            }
        }
        if (!a.first) {
#pragma GCC unroll 16
            for (int mb = 0; mb < MB; ++mb)
                a.y[mb * a.ldy + n] += hsum256(total[mb]);
            continue;
        }
        const float *sz = a.scaledZeros + n * a.groupsPadded;
#pragma GCC unroll 16
        for (int mb = 0; mb < MB; ++mb) {
            const float *sx = a.sumX + mb * a.groupsPadded;
            __m256 z = _mm256_setzero_ps();
            for (std::int64_t g = 0; g < a.groupsPadded; g += 8)
                z = _mm256_fmadd_ps(_mm256_loadu_ps(sz + g), _mm256_loadu_ps(sx + g), z);
            a.y[mb * a.ldy + n] = hsum256(_mm256_sub_ps(total[mb], z)) + (a.bias ? a.bias[n] : 0.0f);
        }
    }
}

// Codes of one row in column order as floats, then s * (q - z) per group run.
template<int BITS>
BITSMITH_AVX2 void dequantAvx2(const DequantArgs &a, std::int64_t r0, std::int64_t r1)
{
    const PackedWeights &w = *a.w;
    const std::int64_t cols = w.cols();
    const __m256i shuffle = _mm256_load_si256(reinterpret_cast<const __m256i *>(tables8<BITS>().shuffle));
    const __m256i shift = _mm256_load_si256(reinterpret_cast<const __m256i *>(tables8<BITS>().shift));
    for (std::int64_t r = r0; r < r1; ++r) {
        const std::uint8_t *row = w.rowData(r);
        float *out = a.tile + (r - r0) * cols;
        std::int64_t j = 0;
        for (; j + 8 <= cols; j += 8) {
            __m256i q;
            if constexpr (BITS == 8)
                q = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i *>(row + j)));
            else
                q = decodeGeneric8<BITS>(row + j * BITS / 8, shuffle, shift);
            _mm256_storeu_ps(out + j, _mm256_cvtepi32_ps(q));
        }
        for (; j < cols; ++j)
            out[j] = static_cast<float>(scalarCode(row, j, BITS));
        for (const auto &run : *a.runs) {
            const float s = w.scale(r, run.group);
            const float z = w.zeroPoint(r, run.group);
            const __m256 vs = _mm256_set1_ps(s);
            const __m256 vz = _mm256_set1_ps(z);
            std::int64_t c = run.begin;
            for (; c + 8 <= run.end; c += 8)
                _mm256_storeu_ps(out + c, _mm256_mul_ps(vs, _mm256_sub_ps(_mm256_loadu_ps(out + c), vz)));
            for (; c < run.end; ++c)
                out[c] = s * (out[c] - z);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// AVX-512 variant: 16 lanes.

struct GenericTables16
{
    alignas(64) std::uint8_t shuffle[64];
    alignas(64) std::uint32_t shift[16];
};

// 16 consecutive codes held in 2b bytes, broadcast to all four 128-bit lanes: dword lane i takes
// bytes floor(i*b/8), +1 (indices stay < 16 for b <= 8), then shifts right by (i*b) % 8.
GenericTables16 genericTables16(int bits)
{
    GenericTables16 t{};
    for (int lane = 0; lane < 16; ++lane) {
        const int byte = lane * bits / 8;
        std::uint8_t *s = t.shuffle + lane * 4;
        s[0] = static_cast<std::uint8_t>(byte);
        s[1] = static_cast<std::uint8_t>(byte + 1);
        s[2] = s[3] = 0x80;
        t.shift[lane] = static_cast<std::uint32_t>(lane * bits % 8);
    }
    return t;
}

template<int BITS>
const GenericTables16 &tables16()
{
    static const GenericTables16 t = genericTables16(BITS);
    return t;
}

template<int BITS>
BITSMITH_AVX512 inline __m512i decodeGeneric16(const std::uint8_t *p, __m512i shuffle, __m512i shift)
{
    const __m512i bytes = _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i *>(p)));
    const __m512i v = _mm512_srlv_epi32(_mm512_shuffle_epi8(bytes, shuffle), shift);
    return _mm512_and_si512(v, _mm512_set1_epi32((1 << BITS) - 1));
}

template<int BITS>
BITSMITH_AVX512 inline void decodeBlockAvx512(const std::uint8_t *p, __m512 *v, __m512i shuffle, __m512i shift)
{
    const auto *p128 = reinterpret_cast<const __m128i *>(p);
    if constexpr (BITS == 8) {
        v[0] = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(p128)));
        v[1] = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(p128 + 1)));
    } else if constexpr (BITS == 4) {
        const __m512i t = _mm512_cvtepu8_epi32(_mm_loadu_si128(p128));
        v[0] = _mm512_cvtepi32_ps(_mm512_and_si512(t, _mm512_set1_epi32(15)));
        v[1] = _mm512_cvtepi32_ps(_mm512_srli_epi32(t, 4));
    } else if constexpr (BITS == 2) {
        const __m512i t = _mm512_cvtepu8_epi32(_mm_loadu_si128(p128));
        const __m512i m3 = _mm512_set1_epi32(3);
        v[0] = _mm512_cvtepi32_ps(_mm512_and_si512(t, m3));
        v[1] = _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32(t, 2), m3));
        v[2] = _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32(t, 4), m3));
        v[3] = _mm512_cvtepi32_ps(_mm512_srli_epi32(t, 6));
    } else {
        v[0] = _mm512_cvtepi32_ps(decodeGeneric16<BITS>(p, shuffle, shift));
        v[1] = _mm512_cvtepi32_ps(decodeGeneric16<BITS>(p + 2 * BITS, shuffle, shift));
    }
}

// Rows n .. n+R-1 of the output for MB rows of x. R = 2 output rows share every x load, which
// halves the loads per FMA (Zen 4 / Skylake-X load one zmm per cycle, the FMA rate); R*MB*NV
// accumulators plus R*MB totals must stay within the 32 zmm registers.
template<int BITS, int MB, int R>
BITSMITH_AVX512 inline void gemvRowsAvx512(const GemvArgs &a, std::int64_t n, __m512i shuffle, __m512i shift)
{
    constexpr int W = BITS == 2 ? 64 : 32;
    constexpr int NV = W / 16;
    constexpr int BB = W * BITS / 8;
    // Accumulators per (output row, row of x): one when there are enough independent FMA chains
    // anyway (fewer registers, and a cheaper per-group epilogue), else one per vector of a block.
    constexpr int NA = R * MB >= 4 ? 1 : NV;
    const std::uint8_t *rows[R];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
        rows[r] = a.codes + (n + r) * a.rowBytes;
    __m512 total[R][MB];
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
        for (int mb = 0; mb < MB; ++mb)
            total[r][mb] = _mm512_setzero_ps();
    for (std::int64_t s = 0; s < a.segmentCount; ++s) {
        const Segment &seg = a.segments[s];
        __m512 acc[R][MB][NA];
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
            for (int mb = 0; mb < MB; ++mb)
#pragma GCC unroll 16
                for (int j = 0; j < NA; ++j)
                    acc[r][mb][j] = _mm512_setzero_ps();
        std::int64_t offset = seg.byteOffset;
        const float *xs = a.xs + seg.xOffset;
        for (std::int64_t b = 0; b < seg.blocks; ++b, offset += BB, xs += W) {
            __m512 v[R][NV];
#pragma GCC unroll 16
            for (int r = 0; r < R; ++r)
                decodeBlockAvx512<BITS>(rows[r] + offset, v[r], shuffle, shift);
#pragma GCC unroll 16
            for (int j = 0; j < NV; ++j)
#pragma GCC unroll 16
                for (int mb = 0; mb < MB; ++mb) {
                    const __m512 xv = _mm512_loadu_ps(xs + mb * a.xsStride + 16 * j);
#pragma GCC unroll 16
                    for (int r = 0; r < R; ++r)
                        acc[r][mb][j % NA] = _mm512_fmadd_ps(v[r][j], xv, acc[r][mb][j % NA]);
                }
        }
#pragma GCC unroll 16
        for (int r = 0; r < R; ++r) {
            const __m512 sc = _mm512_set1_ps(a.scales[(n + r) * a.groups + seg.group]);
#pragma GCC unroll 16
            for (int mb = 0; mb < MB; ++mb) {
                __m512 sum = acc[r][mb][0];
#pragma GCC unroll 16
                for (int j = 1; j < NA; ++j)
                    sum = _mm512_add_ps(sum, acc[r][mb][j]);
                total[r][mb] = _mm512_fmadd_ps(sum, sc, total[r][mb]);
            }
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
        if (!a.first) {
#pragma GCC unroll 16
            for (int mb = 0; mb < MB; ++mb)
                a.y[mb * a.ldy + n + r] += _mm512_reduce_add_ps(total[r][mb]);
            continue;
        }
        const float *sz = a.scaledZeros + (n + r) * a.groupsPadded;
#pragma GCC unroll 16
        for (int mb = 0; mb < MB; ++mb) {
            const float *sx = a.sumX + mb * a.groupsPadded;
            __m512 z = _mm512_setzero_ps();
            for (std::int64_t g = 0; g < a.groupsPadded; g += 16)
                z = _mm512_fmadd_ps(_mm512_loadu_ps(sz + g), _mm512_loadu_ps(sx + g), z);
            a.y[mb * a.ldy + n + r] = _mm512_reduce_add_ps(_mm512_sub_ps(total[r][mb], z)) + (a.bias ? a.bias[n + r] : 0.0f);
        }
    }
}

template<int BITS, int MB>
BITSMITH_AVX512 void gemvAvx512(const GemvArgs &a, std::int64_t r0, std::int64_t r1)
{
    constexpr int NV = BITS == 2 ? 4 : 2;
    constexpr int R = 2 * MB * NV + 2 * MB <= 24 ? 2 : 1;
    const __m512i shuffle = _mm512_load_si512(tables16<BITS>().shuffle);
    const __m512i shift = _mm512_load_si512(tables16<BITS>().shift);
    std::int64_t n = r0;
    for (; n + R <= r1; n += R)
        gemvRowsAvx512<BITS, MB, R>(a, n, shuffle, shift);
    for (; n < r1; ++n)
        gemvRowsAvx512<BITS, MB, 1>(a, n, shuffle, shift);
}

template<int BITS>
BITSMITH_AVX512 void dequantAvx512(const DequantArgs &a, std::int64_t r0, std::int64_t r1)
{
    const PackedWeights &w = *a.w;
    const std::int64_t cols = w.cols();
    const __m512i shuffle = _mm512_load_si512(tables16<BITS>().shuffle);
    const __m512i shift = _mm512_load_si512(tables16<BITS>().shift);
    const std::int64_t tail = cols % 16;
    const __mmask16 tailMask = static_cast<__mmask16>((1u << tail) - 1u);
    for (std::int64_t r = r0; r < r1; ++r) {
        const std::uint8_t *row = w.rowData(r);
        float *out = a.tile + (r - r0) * cols;
        std::int64_t j = 0;
        // Reads at most 16 bytes past a row's 2b-byte slice; the tail padding covers the last row.
        for (; j < cols; j += 16) {
            __m512i q;
            if constexpr (BITS == 8)
                q = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i *>(row + j)));
            else
                q = decodeGeneric16<BITS>(row + j * BITS / 8, shuffle, shift);
            if (j + 16 <= cols)
                _mm512_storeu_ps(out + j, _mm512_cvtepi32_ps(q));
            else
                _mm512_mask_storeu_ps(out + j, tailMask, _mm512_cvtepi32_ps(q));
        }
        for (const auto &run : *a.runs) {
            const __m512 vs = _mm512_set1_ps(w.scale(r, run.group));
            const __m512 vz = _mm512_set1_ps(w.zeroPoint(r, run.group));
            std::int64_t c = run.begin;
            for (; c + 16 <= run.end; c += 16)
                _mm512_storeu_ps(out + c, _mm512_mul_ps(vs, _mm512_sub_ps(_mm512_loadu_ps(out + c), vz)));
            if (c < run.end) {
                const auto m = static_cast<__mmask16>((1u << (run.end - c)) - 1u);
                _mm512_mask_storeu_ps(out + c, m, _mm512_mul_ps(vs, _mm512_sub_ps(_mm512_maskz_loadu_ps(m, out + c), vz)));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Dispatch tables: one function per (variant, bits, rows of x per pass).

constexpr int kMaxPassRows = 4; // rows of x per GEMV pass (accumulators must stay in registers)
constexpr std::int64_t kPieceColumns = 1024; // longest stretch of one group the GEMV walks at once
// x floats of one K slice across the rows of a pass: 16 KiB, half of L1d, so that the slice stays
// in L1 while every output row streams its codes past it.
constexpr std::int64_t kSliceFloats = 4096;
constexpr std::int64_t kGemvChunkRows = 64;

template<int BITS>
GemvFn gemvFor(KernelIsa isa, int mb)
{
#define BITSMITH_PICK(fn)                                                                                             \
    switch (mb) {                                                                                                      \
    case 1:                                                                                                            \
        return &fn<BITS, 1>;                                                                                           \
    case 2:                                                                                                            \
        return &fn<BITS, 2>;                                                                                           \
    case 3:                                                                                                            \
        return &fn<BITS, 3>;                                                                                           \
    default:                                                                                                           \
        return &fn<BITS, 4>;                                                                                           \
    }
    switch (isa) {
    case KernelIsa::Avx512:
        BITSMITH_PICK(gemvAvx512)
    case KernelIsa::Avx2:
        BITSMITH_PICK(gemvAvx2)
    case KernelIsa::Scalar:
        BITSMITH_PICK(gemvScalar)
    }
#undef BITSMITH_PICK
    return nullptr;
}

template<int BITS>
DequantFn dequantFor(KernelIsa isa)
{
    switch (isa) {
    case KernelIsa::Avx512:
        return &dequantAvx512<BITS>;
    case KernelIsa::Avx2:
        return &dequantAvx2<BITS>;
    case KernelIsa::Scalar:
        return &dequantScalar<BITS>;
    }
    return nullptr;
}

template<typename Fn, typename Pick>
Fn forBits(int bits, Pick pick)
{
    switch (bits) {
    case 2:
        return pick.template operator()<2>();
    case 3:
        return pick.template operator()<3>();
    case 4:
        return pick.template operator()<4>();
    case 5:
        return pick.template operator()<5>();
    case 6:
        return pick.template operator()<6>();
    case 7:
        return pick.template operator()<7>();
    default:
        return pick.template operator()<8>();
    }
}

// ---------------------------------------------------------------------------------------------

dnnl::engine &cpuEngine()
{
    static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
    return engine;
}

std::int64_t roundUp(std::int64_t v, std::int64_t to)
{
    return (v + to - 1) / to * to;
}

class PackedLinear final : public LinearKernel
{
public:
    PackedLinear(std::shared_ptr<const PackedWeights> w, const float *bias, KernelIsa isa)
        : m_w(std::move(w))
        , m_bias(bias)
        , m_isa(isa)
    {
        const PackedWeights &w_ = *m_w;
        const int bits = w_.bits();
        const std::int64_t groups = w_.groupsPerRow();
        m_groupsPadded = roundUp(std::max<std::int64_t>(groups, 1), 16);

        // s * z per (row, group), zero-padded, for the sum_g s*z*sum(x_g) term of the GEMV.
        m_scaledZeros.assign(static_cast<std::size_t>(w_.rows() * m_groupsPadded), 0.0f);
        for (std::int64_t r = 0; r < w_.rows(); ++r)
            for (std::int64_t g = 0; g < groups; ++g)
                m_scaledZeros[static_cast<std::size_t>(r * m_groupsPadded + g)] = w_.scale(r, g) * w_.zeroPoint(r, g);

        // Original column -> group, for the per-call group sums of x.
        m_columnGroup.resize(static_cast<std::size_t>(w_.cols()));
        for (std::int64_t c = 0; c < w_.cols(); ++c)
            m_columnGroup[static_cast<std::size_t>(c)] =
                w_.actOrder() ? w_.groupIndex()[static_cast<std::size_t>(c)]
                              : static_cast<std::int32_t>(w_.format().groupSize > 0 ? c / w_.format().groupSize : 0);

        // Segments and the x-stream gather: every run covers whole blocks; lanes outside the run
        // (or past the last column) read x = 0, so the overhanging codes contribute nothing.
        const BlockLayout layout = blockLayout(m_isa, bits);
        const std::int64_t width = layout.width;
        m_blockWidth = width;
        const std::vector<std::int32_t> &order = w_.columnOrder();
        // Long runs (per-channel) are cut into pieces of at most kPieceColumns so that K can be
        // sliced; a piece costs a few instructions (scale, reduction), negligible at that length.
        const std::int64_t maxBlocks = std::max<std::int64_t>(1, kPieceColumns / width);
        for (const auto &run : w_.groupRuns()) {
            const std::int64_t firstBlock = run.begin / width;
            const std::int64_t lastBlock = (run.end - 1) / width;
            for (std::int64_t first = firstBlock; first <= lastBlock; first += maxBlocks) {
                const std::int64_t last = std::min(lastBlock, first + maxBlocks - 1);
                Segment seg;
                seg.byteOffset = first * width * bits / 8;
                seg.blocks = last - first + 1;
                seg.xOffset = static_cast<std::int64_t>(m_gather.size());
                seg.group = run.group;
                for (std::int64_t b = first; b <= last; ++b)
                    for (std::int64_t lane = 0; lane < width; ++lane) {
                        const std::int64_t col = b * width + layout.column[static_cast<std::size_t>(lane)];
                        const bool inside = col >= run.begin && col < run.end;
                        m_gather.push_back(!inside ? -1 : order.empty() ? static_cast<std::int32_t>(col)
                                                                        : order[static_cast<std::size_t>(col)]);
                    }
                m_segments.push_back(seg);
            }
        }
        m_xsStride = roundUp(static_cast<std::int64_t>(m_gather.size()), 16);

        m_gemv[0] = nullptr;
        for (int mb = 1; mb <= kMaxPassRows; ++mb)
            m_gemv[mb] = forBits<GemvFn>(bits, [&]<int B>() { return gemvFor<B>(m_isa, mb); });
        m_dequant = forBits<DequantFn>(bits, [&]<int B>() { return dequantFor<B>(m_isa); });

        // Tile rows for the GEMM path: about 4 MiB of f32 weights (256 rows at K = 4096). oneDNN
        // 2.6 runs these shapes on gemm:jit, which is slow on narrow tiles (32 rows: ~2x slower
        // at M = 128); between 128 and 512 rows the time hardly changes, dequantizing is ~5%.
        m_tileRows = std::clamp<std::int64_t>(roundUp((1 << 20) / std::max<std::int64_t>(w_.cols(), 1), 16), 64, 512);

        const QuantFormat &f = w_.format();
        const QString grouping = f.groupSize > 0 ? QStringLiteral("g%1").arg(f.groupSize)
                                 : f.groupSize == 0 ? QStringLiteral("per-channel")
                                                    : QStringLiteral("per-tensor");
        m_description = QStringLiteral("packed int%1 %2%3%4 (%5)")
                            .arg(bits)
                            .arg(grouping)
                            .arg(f.symmetric ? QStringLiteral(" sym") : QString())
                            .arg(w_.actOrder() ? QStringLiteral(" act-order") : QString())
                            .arg(QLatin1String(kernelIsaName(m_isa)));
    }

    void forward(const float *x, std::int64_t m, float *y) const override
    {
        if (m <= 0 || m_w->rows() == 0)
            return;
        std::lock_guard lock(m_mutex);
        if (m <= kPackedGemvMaxRows)
            forwardGemv(x, m, y);
        else
            forwardGemm(x, m, y);
    }

    std::int64_t inFeatures() const override { return m_w->cols(); }
    std::int64_t outFeatures() const override { return m_w->rows(); }
    QString description() const override { return m_description; }

private:
    void forwardGemv(const float *x, std::int64_t m, float *y) const
    {
        Scratch &sc = scratch();
        const PackedWeights &w = *m_w;
        const std::int64_t cols = w.cols();
        const std::int64_t groups = w.groupsPerRow();
        sc.xs.assign(static_cast<std::size_t>(m * m_xsStride), 0.0f);
        sc.sumX.assign(static_cast<std::size_t>(m * m_groupsPadded), 0.0f);
        std::vector<double> sums(static_cast<std::size_t>(groups));
        for (std::int64_t i = 0; i < m; ++i) {
            const float *xr = x + i * cols;
            float *xs = sc.xs.data() + i * m_xsStride;
            for (std::size_t p = 0; p < m_gather.size(); ++p)
                xs[p] = m_gather[p] < 0 ? 0.0f : xr[m_gather[p]];
            // Group sums in double: they multiply s*z, which is large next to s*(q-z).
            std::fill(sums.begin(), sums.end(), 0.0);
            for (std::int64_t c = 0; c < cols; ++c)
                sums[static_cast<std::size_t>(m_columnGroup[static_cast<std::size_t>(c)])] += xr[c];
            for (std::int64_t g = 0; g < groups; ++g)
                sc.sumX[static_cast<std::size_t>(i * m_groupsPadded + g)] = static_cast<float>(sums[static_cast<std::size_t>(g)]);
        }
        const std::int64_t rows = w.rows();
        GemvArgs base;
        base.codes = w.rowData(0);
        base.rowBytes = w.rowBytes();
        base.scales = w.scales().data();
        base.groups = groups;
        base.scaledZeros = m_scaledZeros.data();
        base.groupsPadded = m_groupsPadded;
        base.xsStride = m_xsStride;
        base.bias = m_bias;
        base.ldy = rows;

        // Passes of up to kMaxPassRows rows of x, each walking K in slices: consecutive segments
        // whose x (for the pass's rows) fits kSliceFloats.
        m_passes.clear();
        const std::int64_t segments = static_cast<std::int64_t>(m_segments.size());
        for (std::int64_t i0 = 0; i0 < m; i0 += kMaxPassRows) {
            const auto mb = static_cast<int>(std::min<std::int64_t>(kMaxPassRows, m - i0));
            for (std::int64_t s0 = 0; s0 < segments;) {
                std::int64_t s1 = s0 + 1;
                std::int64_t floats = m_segments[static_cast<std::size_t>(s0)].blocks * m_blockWidth * mb;
                while (s1 < segments) {
                    floats += m_segments[static_cast<std::size_t>(s1)].blocks * m_blockWidth * mb;
                    if (floats > kSliceFloats)
                        break;
                    ++s1;
                }
                m_passes.push_back({i0, mb, s0, s1});
                s0 = s1;
            }
        }
        // Chunks of kGemvChunkRows output rows; a chunk runs every pass and slice, so its codes
        // (64 rows x K bits) stay in L2 between passes and are read from memory once per call,
        // and the x slice stays in L1 across the chunk's rows. Chunks of different threads never
        // share a cache line of y.
        const std::int64_t chunks = (rows + kGemvChunkRows - 1) / kGemvChunkRows;
#pragma omp parallel for schedule(static)
        for (std::int64_t c = 0; c < chunks; ++c) {
            const std::int64_t r0 = c * kGemvChunkRows;
            const std::int64_t r1 = std::min(rows, r0 + kGemvChunkRows);
            for (const Pass &p : m_passes) {
                GemvArgs a = base;
                a.segments = m_segments.data() + p.segmentBegin;
                a.segmentCount = p.segmentEnd - p.segmentBegin;
                a.first = p.segmentBegin == 0;
                a.xs = sc.xs.data() + p.row * m_xsStride;
                a.sumX = sc.sumX.data() + p.row * m_groupsPadded;
                a.y = y + p.row * rows;
                m_gemv[p.rows](a, r0, r1);
            }
        }
    }

    void forwardGemm(const float *x, std::int64_t m, float *y) const
    {
        Scratch &sc = scratch();
        const PackedWeights &w = *m_w;
        const std::int64_t cols = w.cols();
        const std::int64_t rows = w.rows();
        // Act-order: permute x once into packed column order; the tiles are then plain.
        const float *src = x;
        if (!w.columnOrder().empty()) {
            sc.xs.resize(static_cast<std::size_t>(m * cols));
            const std::vector<std::int32_t> &order = w.columnOrder();
            for (std::int64_t i = 0; i < m; ++i)
                for (std::int64_t j = 0; j < cols; ++j)
                    sc.xs[static_cast<std::size_t>(i * cols + j)] = x[i * cols + order[static_cast<std::size_t>(j)]];
            src = sc.xs.data();
        }
        sc.tile.resize(static_cast<std::size_t>(m_tileRows * cols));
        DequantArgs da;
        da.w = &w;
        da.runs = &w.groupRuns();
        da.tile = sc.tile.data();
        for (std::int64_t n0 = 0; n0 < rows; n0 += m_tileRows) {
            const std::int64_t t = std::min(m_tileRows, rows - n0);
            const std::int64_t chunks = (t + 3) / 4;
#pragma omp parallel for schedule(static)
            for (std::int64_t c = 0; c < chunks; ++c) {
                DequantArgs part = da;
                part.tile = da.tile + c * 4 * cols;
                m_dequant(part, n0 + c * 4, n0 + std::min(t, (c + 1) * 4));
            }
            Prim &p = primitiveFor(m, t);
            p.src.set_data_handle(const_cast<float *>(src));
            p.weights.set_data_handle(sc.tile.data());
            p.dst.set_data_handle(y + n0);
            if (m_bias)
                p.bias.set_data_handle(const_cast<float *>(m_bias + n0));
            p.prim.execute(stream(), p.args);
            stream().wait();
        }
    }

    struct Prim
    {
        dnnl::memory src, weights, bias, dst;
        dnnl::matmul prim;
        std::unordered_map<int, dnnl::memory> args;
    };

    static dnnl::stream &stream()
    {
        thread_local dnnl::stream s(cpuEngine());
        return s;
    }

    // [m, K] x tile^T -> y[:, n0 : n0+t] (leading dimension N), one primitive per (m, t).
    Prim &primitiveFor(std::int64_t m, std::int64_t t) const
    {
        const auto key = std::make_pair(m, t);
        auto it = m_prims.find(key);
        if (it != m_prims.end())
            return it->second;
        using tag = dnnl::memory::format_tag;
        using dt = dnnl::memory::data_type;
        const std::int64_t k = m_w->cols();
        const std::int64_t n = m_w->rows();
        const dnnl::memory::desc srcMd({m, k}, dt::f32, tag::ab);
        const dnnl::memory::desc weightsMd({k, t}, dt::f32, tag::ba);
        const dnnl::memory::desc dstMd({m, t}, dt::f32, dnnl::memory::dims{n, 1});
        const dnnl::memory::desc biasMd({1, t}, dt::f32, tag::ab);
        auto desc = m_bias ? dnnl::matmul::desc(srcMd, weightsMd, biasMd, dstMd)
                           : dnnl::matmul::desc(srcMd, weightsMd, dstMd);
        Prim p;
        p.prim = dnnl::matmul(dnnl::matmul::primitive_desc(desc, cpuEngine()));
        p.src = dnnl::memory(srcMd, cpuEngine(), DNNL_MEMORY_NONE);
        p.weights = dnnl::memory(weightsMd, cpuEngine(), DNNL_MEMORY_NONE);
        p.dst = dnnl::memory(dstMd, cpuEngine(), DNNL_MEMORY_NONE);
        p.args = {{DNNL_ARG_SRC, p.src}, {DNNL_ARG_WEIGHTS, p.weights}, {DNNL_ARG_DST, p.dst}};
        if (m_bias) {
            p.bias = dnnl::memory(biasMd, cpuEngine(), DNNL_MEMORY_NONE);
            p.args.emplace(DNNL_ARG_BIAS, p.bias);
        }
        return m_prims.emplace(key, std::move(p)).first->second;
    }

    std::shared_ptr<const PackedWeights> m_w;
    const float *m_bias = nullptr;
    KernelIsa m_isa;
    QString m_description;
    std::int64_t m_groupsPadded = 16;
    std::vector<float> m_scaledZeros;
    std::vector<std::int32_t> m_columnGroup;
    std::vector<Segment> m_segments;
    std::vector<std::int32_t> m_gather; // x-stream position -> original column, -1 for zero
    std::int64_t m_xsStride = 0;
    std::int64_t m_blockWidth = 32;
    GemvFn m_gemv[kMaxPassRows + 1] = {};
    DequantFn m_dequant = nullptr;
    std::int64_t m_tileRows = 64;

    // Per-call scratch and primitive cache, guarded by m_mutex (forward() is const and may be
    // called from several threads; like the dense kernel, calls on one kernel serialise).
    mutable std::mutex m_mutex;
    // Scratch shared by every kernel of a thread (one layer runs at a time): a model of hundreds
    // of layers must not keep a tile buffer per layer.
    struct Scratch
    {
        std::vector<float> xs, sumX, tile;
    };
    static Scratch &scratch()
    {
        thread_local Scratch s;
        return s;
    }
    struct Pass
    {
        std::int64_t row = 0; // first row of x
        int rows = 1;         // rows of x (<= kMaxPassRows)
        std::int64_t segmentBegin = 0, segmentEnd = 0; // the K slice
    };
    mutable std::vector<Pass> m_passes;
    mutable std::map<std::pair<std::int64_t, std::int64_t>, Prim> m_prims;
};

} // namespace

std::unique_ptr<LinearKernel> makePackedLinear(std::shared_ptr<const PackedWeights> weights, const float *bias,
                                               std::optional<KernelIsa> isa)
{
    if (!weights)
        return nullptr;
    KernelIsa chosen = isa.value_or(selectKernelIsa());
    if (!kernelIsaSupported(chosen))
        chosen = selectKernelIsa();
    return std::make_unique<PackedLinear>(std::move(weights), bias, chosen);
}

} // namespace bitsmith::core
