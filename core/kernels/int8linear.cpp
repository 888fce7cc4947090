// int8linear.cpp: W8A8 on oneDNN int8 matmul — weights reordered once into the layout the brgemm
// primitive asks for, activations quantized per row at each call (AVX-512 or scalar, identical
// results), one primitive per batch size.

// GCC 12 warns that _mm512_undefined_*() values are used uninitialised when AVX-512 intrinsics
// are inlined into target("avx512f") functions of a TU built without AVX-512 (GCC PR 105593,
// fixed in GCC 13); the warning points into the intrinsics headers, so it is silenced for them.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include "int8linear.h"

#include "packedlinear.h" // KernelIsa, selectKernelIsa()

#include <dnnl.hpp>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <unordered_map>
#pragma GCC diagnostic pop

namespace bitsmith::core {

namespace {

dnnl::engine &cpuEngine()
{
    static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
    return engine;
}

dnnl::stream &stream()
{
    thread_local dnnl::stream s(cpuEngine());
    return s;
}

// One row: x' = x * invSmooth (if any), amax, then q = clamp(rne(x' * 127/amax)). Returns a.
float quantizeRowScalar(const float *x, const float *invSmooth, std::int64_t k, std::int8_t *q, float *tmp)
{
    const float *src = x;
    if (invSmooth) {
        for (std::int64_t j = 0; j < k; ++j)
            tmp[j] = x[j] * invSmooth[j];
        src = tmp;
    }
    float amax = 0.0f;
    for (std::int64_t j = 0; j < k; ++j)
        amax = std::max(amax, std::fabs(src[j]));
    if (!(amax > 0.0f)) {
        std::fill(q, q + k, std::int8_t{0});
        return 0.0f;
    }
    const float inv = 127.0f / amax;
    for (std::int64_t j = 0; j < k; ++j) {
        const float r = std::nearbyint(src[j] * inv); // round half to even, as cvtps2dq does
        q[j] = static_cast<std::int8_t>(std::clamp(r, -127.0f, 127.0f));
    }
    return amax / 127.0f;
}

// Clamp before the conversion (x * inv can exceed 127 by an ulp, never 127.5), then cvtps2dq
// rounds half to even under the default MXCSR mode, like std::nearbyint in the scalar version.
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline __m128i quantize16(__m512 v, __m512 inv)
{
    v = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(v, inv), _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f));
    return _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(v));
}

__attribute__((target("avx512f,avx512bw,avx512vl")))
float quantizeRowAvx512(const float *x, const float *invSmooth, std::int64_t k, std::int8_t *q, float *tmp)
{
    const float *src = x;
    const std::int64_t tail = k % 16;
    const auto tailMask = static_cast<__mmask16>((1u << tail) - 1u);
    const std::int64_t body = k - tail;
    if (invSmooth) {
        for (std::int64_t j = 0; j < body; j += 16)
            _mm512_storeu_ps(tmp + j, _mm512_mul_ps(_mm512_loadu_ps(x + j), _mm512_loadu_ps(invSmooth + j)));
        if (tail)
            _mm512_mask_storeu_ps(tmp + body, tailMask,
                                  _mm512_mul_ps(_mm512_maskz_loadu_ps(tailMask, x + body),
                                                _mm512_maskz_loadu_ps(tailMask, invSmooth + body)));
        src = tmp;
    }
    __m512 vmax = _mm512_setzero_ps();
    for (std::int64_t j = 0; j < body; j += 16)
        vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_loadu_ps(src + j)));
    if (tail)
        vmax = _mm512_max_ps(vmax, _mm512_abs_ps(_mm512_maskz_loadu_ps(tailMask, src + body)));
    const float amax = _mm512_reduce_max_ps(vmax);
    if (!(amax > 0.0f)) {
        std::fill(q, q + k, std::int8_t{0});
        return 0.0f;
    }
    const __m512 inv = _mm512_set1_ps(127.0f / amax);
    for (std::int64_t j = 0; j < body; j += 16)
        _mm_storeu_si128(reinterpret_cast<__m128i *>(q + j), quantize16(_mm512_loadu_ps(src + j), inv));
    if (tail)
        _mm_mask_storeu_epi8(q + body, tailMask, quantize16(_mm512_maskz_loadu_ps(tailMask, src + body), inv));
    return amax / 127.0f;
}

} // namespace

struct Int8Linear::Impl
{
    std::int64_t rows = 0, cols = 0;
    const float *bias = nullptr;
    std::vector<float> weightScales;
    std::vector<float> invSmooth;
    bool avx512 = false;

    std::vector<std::int8_t> weightsS8; // [N][K] plain, only until the first reorder
    dnnl::memory::desc plainWeightsMd;
    // Reordered weights per layout oneDNN asked for. brgemm asks for one layout for every batch
    // size (checked for M = 1..4096), so the plain copy is dropped after the first reorder and a
    // second layout, should one ever come, is made from the first through a plain round trip.
    std::vector<std::pair<dnnl::memory::desc, dnnl::memory>> reordered;
    dnnl::memory biasMem;

    struct Prim
    {
        dnnl::matmul prim;
        QString implementation;
        dnnl::memory src, dst, actScales;
        std::unordered_map<int, dnnl::memory> args;
    };
    std::mutex mutex;
    std::map<std::int64_t, Prim> prims;
    std::vector<std::int8_t> q;
    std::vector<float> actScales;
    std::vector<float> tmp;

    const dnnl::memory &weightsFor(const dnnl::memory::desc &md)
    {
        for (const auto &[d, mem] : reordered)
            if (d == md)
                return mem;
        if (weightsS8.empty()) {
            weightsS8.resize(static_cast<std::size_t>(rows * cols));
            dnnl::memory plain(plainWeightsMd, cpuEngine(), weightsS8.data());
            dnnl::reorder(reordered.front().second, plain).execute(stream(), reordered.front().second, plain);
        }
        dnnl::memory plain(plainWeightsMd, cpuEngine(), weightsS8.data());
        dnnl::memory dst(md, cpuEngine());
        dnnl::reorder(plain, dst).execute(stream(), plain, dst);
        stream().wait();
        std::vector<std::int8_t>().swap(weightsS8); // release the memory, not just the size
        reordered.emplace_back(md, dst);
        return reordered.back().second;
    }

    Prim &primitiveFor(std::int64_t m)
    {
        auto it = prims.find(m);
        if (it != prims.end())
            return it->second;
        using tag = dnnl::memory::format_tag;
        using dt = dnnl::memory::data_type;
        const dnnl::memory::desc srcMd({1, m, cols}, dt::s8, tag::abc);
        const dnnl::memory::desc weightsAny({1, cols, rows}, dt::s8, tag::any);
        const dnnl::memory::desc dstMd({1, m, rows}, dt::f32, tag::abc);
        const dnnl::memory::desc actScaleMd({1, m, 1}, dt::f32, tag::abc);
        const dnnl::memory::desc biasMd({1, 1, rows}, dt::f32, tag::abc);

        dnnl::primitive_attr attr;
        attr.set_output_scales(1 << 2, weightScales); // constant, per N: keeps the brgemm kernel
        dnnl::post_ops po;
        po.append_binary(dnnl::algorithm::binary_mul, actScaleMd);
        if (bias)
            po.append_binary(dnnl::algorithm::binary_add, biasMd);
        attr.set_post_ops(po);
        dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(srcMd, weightsAny, dstMd), attr, cpuEngine());

        Prim p;
        p.prim = dnnl::matmul(pd);
        p.implementation = QString::fromLatin1(pd.impl_info_str());
        p.src = dnnl::memory(srcMd, cpuEngine(), DNNL_MEMORY_NONE);
        p.dst = dnnl::memory(dstMd, cpuEngine(), DNNL_MEMORY_NONE);
        p.actScales = dnnl::memory(actScaleMd, cpuEngine(), DNNL_MEMORY_NONE);
        p.args = {{DNNL_ARG_SRC, p.src},
                  {DNNL_ARG_WEIGHTS, weightsFor(pd.weights_desc())},
                  {DNNL_ARG_DST, p.dst},
                  {DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1, p.actScales}};
        if (bias) {
            if (!biasMem)
                biasMem = dnnl::memory(biasMd, cpuEngine(), const_cast<float *>(bias));
            p.args.emplace(DNNL_ARG_ATTR_MULTIPLE_POST_OP(1) | DNNL_ARG_SRC_1, biasMem);
        }
        return prims.emplace(m, std::move(p)).first->second;
    }

    void quantize(const float *x, std::int64_t m, std::int8_t *out, float *scales)
    {
        tmp.resize(static_cast<std::size_t>(invSmooth.empty() ? 0 : m * cols));
        const float *inv = invSmooth.empty() ? nullptr : invSmooth.data();
#pragma omp parallel for schedule(static)
        for (std::int64_t i = 0; i < m; ++i) {
            float *t = inv ? tmp.data() + i * cols : nullptr;
            scales[i] = avx512 ? quantizeRowAvx512(x + i * cols, inv, cols, out + i * cols, t)
                               : quantizeRowScalar(x + i * cols, inv, cols, out + i * cols, t);
        }
    }
};

Int8Linear::Int8Linear(std::unique_ptr<Impl> impl)
    : m_impl(std::move(impl))
{}

Int8Linear::~Int8Linear() = default;

Expected<std::unique_ptr<Int8Linear>> Int8Linear::create(const QuantizedTensor &w, const float *bias,
                                                         std::span<const float> smoothing)
{
    auto bad = [](QString msg) {
        return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("int8 linear: ") + msg)
                              .withHint(QStringLiteral("W8A8 needs 8-bit symmetric per-channel weights (zero 128, one "
                                                       "scale per row); use the packed kernel for other formats")));
    };
    if (w.format.bits != 8)
        return bad(QStringLiteral("weights have %1 bits").arg(w.format.bits));
    if (w.format.groupSize > 0 && w.groupsPerRow() != 1)
        return bad(QStringLiteral("weights have %1 groups per row").arg(w.groupsPerRow()));
    if (w.rows <= 0 || w.cols <= 0 || w.codes.size() != static_cast<std::size_t>(w.rows * w.cols)
        || w.scales.size() != static_cast<std::size_t>(w.rows))
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("int8 linear: inconsistent tensor sizes")));
    for (float z : w.zeros)
        if (z != 128.0f)
            return bad(QStringLiteral("zero point %1 (asymmetric weights)").arg(z));
    if (w.zeros.empty() && !w.format.symmetric)
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("int8 linear: asymmetric tensor without zeros")));
    if (!smoothing.empty() && static_cast<std::int64_t>(smoothing.size()) != w.cols)
        return unexpected(fail(ErrorCode::Mismatch, QStringLiteral("int8 linear: %1 smoothing factors for %2 inputs")
                                                        .arg(smoothing.size())
                                                        .arg(w.cols))
                              .forParameter(QStringLiteral("smoothing")));
    for (float s : smoothing)
        if (!(s > 0.0f) || !std::isfinite(s))
            return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("int8 linear: smoothing factor %1 is not "
                                                                              "positive and finite")
                                                                   .arg(s))
                                  .forParameter(QStringLiteral("smoothing")));

    auto impl = std::make_unique<Impl>();
    impl->rows = w.rows;
    impl->cols = w.cols;
    impl->bias = bias;
    impl->weightScales = w.scales;
    impl->avx512 = selectKernelIsa() == KernelIsa::Avx512;
    for (float s : smoothing)
        impl->invSmooth.push_back(1.0f / s);
    impl->weightsS8.resize(w.codes.size());
    for (std::size_t i = 0; i < w.codes.size(); ++i)
        impl->weightsS8[i] = static_cast<std::int8_t>(static_cast<int>(w.codes[i]) - 128);
    // [N][K] row-major is the [1, K, N] weights tensor with strides (K*N, 1, K).
    impl->plainWeightsMd = dnnl::memory::desc({1, w.cols, w.rows}, dnnl::memory::data_type::s8,
                                              dnnl::memory::dims{w.cols * w.rows, 1, w.cols});
    try {
        // Create the decode-sized primitive now: it reorders the weights, so the plain copy can go.
        (void)impl->primitiveFor(1);
    } catch (const dnnl::error &e) {
        return unexpected(fail(ErrorCode::Internal, QStringLiteral("int8 linear: oneDNN: %1").arg(QLatin1String(e.what()))));
    }
    return std::unique_ptr<Int8Linear>(new Int8Linear(std::move(impl)));
}

void Int8Linear::forward(const float *x, std::int64_t m, float *y) const
{
    if (m <= 0)
        return;
    Impl &d = *m_impl;
    std::lock_guard lock(d.mutex);
    d.q.resize(static_cast<std::size_t>(m * d.cols));
    d.actScales.resize(static_cast<std::size_t>(m));
    d.quantize(x, m, d.q.data(), d.actScales.data());
    Impl::Prim &p = d.primitiveFor(m);
    p.src.set_data_handle(d.q.data());
    p.dst.set_data_handle(y);
    p.actScales.set_data_handle(d.actScales.data());
    p.prim.execute(stream(), p.args);
    stream().wait();
}

std::int64_t Int8Linear::inFeatures() const
{
    return m_impl->cols;
}

std::int64_t Int8Linear::outFeatures() const
{
    return m_impl->rows;
}

QString Int8Linear::description() const
{
    return QStringLiteral("onednn int8 w8a8");
}

QString Int8Linear::implementation(std::int64_t m) const
{
    std::lock_guard lock(m_impl->mutex);
    return m_impl->primitiveFor(m).implementation;
}

void Int8Linear::quantizeActivations(const float *x, std::int64_t m, std::int8_t *q, float *scales) const
{
    std::lock_guard lock(m_impl->mutex);
    m_impl->quantize(x, m, q, scales);
}

Expected<std::unique_ptr<LinearKernel>> makeInt8Linear(const QuantizedTensor &w8, const float *bias,
                                                       std::span<const float> smoothing)
{
    auto k = Int8Linear::create(w8, bias, smoothing);
    if (!k)
        return unexpected(std::move(k.error()));
    return std::unique_ptr<LinearKernel>(std::move(*k));
}

} // namespace bitsmith::core
