// linear.cpp: dense linear kernels over weights in their stored type: a GEMV for decoding and
// widened tiles + oneDNN f32 matmul for batches (see linear.h), and a plain Eigen baseline used by
// the compression engine, benchmarks and as a cross-check in tests.
#include "linear.h"

#include <Eigen/Core>

#include <optional>
#include <tuple>
#include <dnnl.hpp>
#include <immintrin.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <vector>

namespace bitsmith::core {

namespace {

dnnl::engine &cpuEngine()
{
    static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
    return engine;
}

// Eight stored elements as f32 (AVX2 + F16C, the build's baseline).
template <DType T>
inline __m256 load8(const void *base, std::int64_t i)
{
    if constexpr (T == DType::F32) {
        return _mm256_loadu_ps(static_cast<const float *>(base) + i);
    } else if constexpr (T == DType::BF16) {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i *>(static_cast<const std::uint16_t *>(base) + i));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    } else {
        const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i *>(static_cast<const std::uint16_t *>(base) + i));
        return _mm256_cvtph_ps(h);
    }
}

template <DType T>
inline float load1(const void *base, std::int64_t i)
{
    if constexpr (T == DType::F32)
        return static_cast<const float *>(base)[i];
    else if constexpr (T == DType::BF16)
        return bf16ToFloat(static_cast<const std::uint16_t *>(base)[i]);
    else
        return halfToFloat(static_cast<const std::uint16_t *>(base)[i]);
}

inline float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// y[i][n] = sum_k x[i][k] w[n][k] for MB rows of x and output rows [n0, n1); w in stored type T.
template <DType T, int MB>
void gemvRows(const float *x, std::int64_t k, const void *w, std::int64_t n0, std::int64_t n1, float *y, std::int64_t ldy)
{
    const std::int64_t k16 = k & ~std::int64_t(15);
    for (std::int64_t n = n0; n < n1; ++n) {
        const std::int64_t base = n * k;
        __m256 a0[MB], a1[MB];
        for (int i = 0; i < MB; ++i) {
            a0[i] = _mm256_setzero_ps();
            a1[i] = _mm256_setzero_ps();
        }
        std::int64_t c = 0;
        for (; c < k16; c += 16) {
            const __m256 w0 = load8<T>(w, base + c), w1 = load8<T>(w, base + c + 8);
            for (int i = 0; i < MB; ++i) {
                a0[i] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + i * k + c), a0[i]);
                a1[i] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + i * k + c + 8), a1[i]);
            }
        }
        for (int i = 0; i < MB; ++i) {
            float s = hsum(_mm256_add_ps(a0[i], a1[i]));
            for (std::int64_t cc = c; cc < k; ++cc)
                s += load1<T>(w, base + cc) * x[i * k + cc];
            y[i * ldy + n] = s;
        }
    }
}

template <DType T>
void gemv(const float *x, std::int64_t m, std::int64_t k, const void *w, std::int64_t n0, std::int64_t n1, float *y,
          std::int64_t ldy)
{
    std::int64_t i = 0;
    for (; i + 4 <= m; i += 4)
        gemvRows<T, 4>(x + i * k, k, w, n0, n1, y + i * ldy, ldy);
    switch (m - i) {
    case 3: gemvRows<T, 3>(x + i * k, k, w, n0, n1, y + i * ldy, ldy); break;
    case 2: gemvRows<T, 2>(x + i * k, k, w, n0, n1, y + i * ldy, ldy); break;
    case 1: gemvRows<T, 1>(x + i * k, k, w, n0, n1, y + i * ldy, ldy); break;
    default: break;
    }
}

template <DType T>
void widenRows(const void *w, std::int64_t k, std::int64_t r0, std::int64_t r1, float *out)
{
    const std::int64_t count = (r1 - r0) * k;
    const std::int64_t base = r0 * k;
    std::int64_t i = 0;
    for (; i + 8 <= count; i += 8)
        _mm256_storeu_ps(out + i, load8<T>(w, base + i));
    for (; i < count; ++i)
        out[i] = load1<T>(w, base + i);
}

// Per-thread scratch shared by every dense kernel (one tile at a time per thread).
int tileLog2()
{
    static const int v = [] {
        bool ok = false;
        const int e = qEnvironmentVariableIntValue("BITSMITH_TILE_LOG2", &ok);
        return ok && e >= 14 && e <= 26 ? e : 19;
    }();
    return v;
}

std::vector<float> &threadScratch()
{
    thread_local std::vector<float> buffer;
    return buffer;
}

class StoredLinear final : public LinearKernel
{
public:
    StoredLinear(MatrixView w, MatrixView b)
        : m_w(w)
        , m_rows(w.rows)
        , m_cols(w.cols)
    {
        const TensorSlot *s = w.slot;
        if (s && s->raw && (s->type == DType::BF16 || s->type == DType::F16 || s->type == DType::F32)) {
            m_type = s->type;
            m_raw = s->raw;
            if (m_type == DType::F32 && reinterpret_cast<std::uintptr_t>(m_raw) % alignof(float) != 0)
                m_raw = nullptr; // misaligned f32: rows through rowsToF32
        } else if (!s && w.ptr) {
            m_type = DType::F32;
            m_raw = w.ptr;
        }
        if (!b.empty()) {
            m_bias.resize(static_cast<std::size_t>(m_rows));
            b.rowsToF32(0, 1, m_bias.data());
        }
        // Tiles of about 4 MiB of f32 (256 rows at K = 4096), as the packed kernel uses: oneDNN
        // 2.6 runs them on gemm:jit at close to its speed on the whole matrix.
        m_tileRows = std::clamp<std::int64_t>(((std::int64_t(1) << tileLog2()) / std::max<std::int64_t>(m_cols, 1) + 15) / 16 * 16, 16, 4096);
        m_description = m_raw ? QStringLiteral("dense %1 in place").arg(QString::fromLatin1(dtypeName(m_type)).toLower())
                              : QStringLiteral("dense f32 from rows");
    }

    void forward(const float *x, std::int64_t m, float *y) const override
    {
        if (m <= 0 || m_rows == 0)
            return;
        std::lock_guard lock(m_mutex);
        if (m <= kDenseGemvMaxRows)
            forwardGemv(x, m, y);
        else
            forwardTiles(x, m, y);
        if (!m_bias.empty())
            for (std::int64_t i = 0; i < m; ++i)
                for (std::int64_t n = 0; n < m_rows; ++n)
                    y[i * m_rows + n] += m_bias[static_cast<std::size_t>(n)];
    }

    std::int64_t inFeatures() const override { return m_cols; }
    std::int64_t outFeatures() const override { return m_rows; }
    QString description() const override { return m_description; }
    std::int64_t residentBytes() const override { return static_cast<std::int64_t>(m_bias.size() * sizeof(float)); }

private:
    void forwardGemv(const float *x, std::int64_t m, float *y) const
    {
        constexpr std::int64_t kChunk = 64;
        const std::int64_t chunks = (m_rows + kChunk - 1) / kChunk;
        if (m_raw) {
#pragma omp parallel for schedule(static)
            for (std::int64_t c = 0; c < chunks; ++c) {
                const std::int64_t n0 = c * kChunk, n1 = std::min(m_rows, n0 + kChunk);
                switch (m_type) {
                case DType::BF16: gemv<DType::BF16>(x, m, m_cols, m_raw, n0, n1, y, m_rows); break;
                case DType::F16: gemv<DType::F16>(x, m, m_cols, m_raw, n0, n1, y, m_rows); break;
                default: gemv<DType::F32>(x, m, m_cols, m_raw, n0, n1, y, m_rows); break;
                }
            }
            return;
        }
        // Rows produced on demand (dequantized blocks): a chunk at a time into per-thread scratch.
#pragma omp parallel for schedule(static)
        for (std::int64_t c = 0; c < chunks; ++c) {
            const std::int64_t n0 = c * kChunk, n1 = std::min(m_rows, n0 + kChunk);
            std::vector<float> &buf = threadScratch();
            buf.resize(static_cast<std::size_t>(kChunk * m_cols));
            m_w.rowsToF32(n0, n1, buf.data());
            // the chunk as rows 0..(n1 - n0) of a local matrix, written from column n0 of y
            gemv<DType::F32>(x, m, m_cols, buf.data(), 0, n1 - n0, y + n0, m_rows);
        }
    }

    void forwardTiles(const float *x, std::int64_t m, float *y) const
    {
        if (m_raw && forwardBlocked(x, m, y))
            return;
        const bool direct = m_raw && m_type == DType::F32;
        std::vector<float> &tile = threadScratch();
        if (!direct)
            tile.resize(static_cast<std::size_t>(m_tileRows * m_cols));
        for (std::int64_t n0 = 0; n0 < m_rows; n0 += m_tileRows) {
            const std::int64_t t = std::min(m_tileRows, m_rows - n0);
            const float *weights = nullptr;
            if (direct) {
                weights = static_cast<const float *>(m_raw) + n0 * m_cols;
            } else {
                const std::int64_t parts = (t + 15) / 16;
                float *dst = tile.data();
#pragma omp parallel for schedule(static)
                for (std::int64_t p = 0; p < parts; ++p) {
                    const std::int64_t r0 = n0 + p * 16, r1 = std::min(n0 + t, r0 + 16);
                    float *out = dst + (r0 - n0) * m_cols;
                    switch (m_raw ? m_type : DType::I8) {
                    case DType::BF16: widenRows<DType::BF16>(m_raw, m_cols, r0, r1, out); break;
                    case DType::F16: widenRows<DType::F16>(m_raw, m_cols, r0, r1, out); break;
                    default: m_w.rowsToF32(r0, r1, out); break;
                    }
                }
                weights = dst;
            }
            Prim &p = primitiveFor(m, t);
            p.src.set_data_handle(const_cast<float *>(x));
            p.weights.set_data_handle(const_cast<float *>(weights));
            p.dst.set_data_handle(y + n0);
            p.prim.execute(stream(), p.args);
            stream().wait();
        }
    }

    struct Prim
    {
        dnnl::memory src, weights, dst;
        dnnl::matmul prim;
        std::unordered_map<int, dnnl::memory> args;
    };

    // yᵀ = W · xᵀ tile by tile: a tile of W widened by our converter into plain row-major f32 is
    // the matmul's source (read as it is, no packing); xᵀ is the "weights", reordered once per
    // call into the blocked layout oneDNN prefers; the [t, m] result is transposed into y. Works
    // as fast as a matmul over weights reordered at load, without keeping a copy of the matrix.
    struct TransposedPrim
    {
        dnnl::memory src, weights, dst;
        dnnl::matmul prim;
        dnnl::memory::desc weightsDesc;
        std::unordered_map<int, dnnl::memory> args;
    };

    bool forwardBlocked(const float *x, std::int64_t m, float *y) const
    {
        using tag = dnnl::memory::format_tag;
        using dt = dnnl::memory::data_type;
        thread_local std::vector<float> xBlocked, yTile;
        dnnl::memory::desc reorderedFor; // the layout xBlocked holds now
        for (std::int64_t n0 = 0; n0 < m_rows; n0 += m_tileRows) {
            const std::int64_t t = std::min(m_tileRows, m_rows - n0);
            TransposedPrim *p = transposedFor(m, t);
            if (!p)
                return n0 == 0 ? false : (forwardTilesFrom(x, m, y, n0), true);
            if (!(reorderedFor == p->weightsDesc)) {
                const dnnl::memory::desc xMd({m_cols, m}, dt::f32, tag::ba);
                xBlocked.resize((p->weightsDesc.get_size() + sizeof(float) - 1) / sizeof(float));
                dnnl::memory xm(xMd, cpuEngine(), const_cast<float *>(x));
                dnnl::memory xb(p->weightsDesc, cpuEngine(), xBlocked.data());
                reorderPrimitive(xMd, p->weightsDesc).execute(stream(), xm, xb);
                reorderedFor = p->weightsDesc;
            }
            std::vector<float> &tile = threadScratch();
            tile.resize(static_cast<std::size_t>(m_tileRows * m_cols));
            const std::int64_t parts = (t + 15) / 16;
#pragma omp parallel for schedule(static)
            for (std::int64_t q = 0; q < parts; ++q) {
                const std::int64_t r0 = n0 + q * 16, r1 = std::min(n0 + t, r0 + 16);
                float *out = tile.data() + (r0 - n0) * m_cols;
                switch (m_type) {
                case DType::BF16: widenRows<DType::BF16>(m_raw, m_cols, r0, r1, out); break;
                case DType::F16: widenRows<DType::F16>(m_raw, m_cols, r0, r1, out); break;
                default: std::copy_n(static_cast<const float *>(m_raw) + r0 * m_cols, (r1 - r0) * m_cols, out); break;
                }
            }
            yTile.resize(static_cast<std::size_t>(t * m));
            p->src.set_data_handle(tile.data());
            p->weights.set_data_handle(xBlocked.data());
            p->dst.set_data_handle(yTile.data());
            p->prim.execute(stream(), p->args);
            stream().wait();
            // yTile [t, m] -> y[:, n0 : n0 + t], in blocks that stay in L1
            constexpr std::int64_t B = 16;
            for (std::int64_t r = 0; r < t; r += B)
                for (std::int64_t i = 0; i < m; i += B) {
                    const std::int64_t re = std::min(t, r + B), ie = std::min(m, i + B);
                    for (std::int64_t ii = i; ii < ie; ++ii) {
                        float *dst = y + ii * m_rows + n0;
                        for (std::int64_t rr = r; rr < re; ++rr)
                            dst[rr] = yTile[static_cast<std::size_t>(rr * m + ii)];
                    }
                }
        }
        return true;
    }

    dnnl::reorder &reorderPrimitive(const dnnl::memory::desc &from, const dnnl::memory::desc &to) const
    {
        for (auto &[f, t, r] : m_reorders)
            if (f == from && t == to)
                return r;
        m_reorders.emplace_back(from, to, dnnl::reorder(dnnl::reorder::primitive_desc(cpuEngine(), from, cpuEngine(), to)));
        return std::get<2>(m_reorders.back());
    }

    TransposedPrim *transposedFor(std::int64_t m, std::int64_t t) const
    {
        const auto key = std::make_pair(m, t);
        if (auto it = m_transposed.find(key); it != m_transposed.end())
            return it->second ? &*it->second : nullptr;
        using tag = dnnl::memory::format_tag;
        using dt = dnnl::memory::data_type;
        std::optional<TransposedPrim> made;
        try {
            const dnnl::memory::desc srcMd({t, m_cols}, dt::f32, tag::ab);
            const dnnl::memory::desc anyMd({m_cols, m}, dt::f32, tag::any);
            const dnnl::memory::desc dstMd({t, m}, dt::f32, tag::ab);
            const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(srcMd, anyMd, dstMd), cpuEngine());
            TransposedPrim p;
            p.prim = dnnl::matmul(pd);
            p.weightsDesc = pd.weights_desc();
            p.src = dnnl::memory(srcMd, cpuEngine(), DNNL_MEMORY_NONE);
            p.weights = dnnl::memory(p.weightsDesc, cpuEngine(), DNNL_MEMORY_NONE);
            p.dst = dnnl::memory(dstMd, cpuEngine(), DNNL_MEMORY_NONE);
            p.args = {{DNNL_ARG_SRC, p.src}, {DNNL_ARG_WEIGHTS, p.weights}, {DNNL_ARG_DST, p.dst}};
            made = std::move(p);
        } catch (const dnnl::error &) {
            // no such primitive here: the widen-then-multiply path serves
        }
        auto &slot = m_transposed[key];
        slot = std::move(made);
        return slot ? &*slot : nullptr;
    }

    // The tiles from row n0 on through the widen-then-multiply path.
    void forwardTilesFrom(const float *x, std::int64_t m, float *y, std::int64_t n0) const
    {
        for (; n0 < m_rows; n0 += m_tileRows) {
            const std::int64_t t = std::min(m_tileRows, m_rows - n0);
            std::vector<float> &tile = threadScratch();
            tile.resize(static_cast<std::size_t>(t * m_cols));
            switch (m_type) {
            case DType::BF16: widenRows<DType::BF16>(m_raw, m_cols, n0, n0 + t, tile.data()); break;
            case DType::F16: widenRows<DType::F16>(m_raw, m_cols, n0, n0 + t, tile.data()); break;
            default: std::copy_n(static_cast<const float *>(m_raw) + n0 * m_cols, t * m_cols, tile.data()); break;
            }
            Prim &p = primitiveFor(m, t);
            p.src.set_data_handle(const_cast<float *>(x));
            p.weights.set_data_handle(tile.data());
            p.dst.set_data_handle(y + n0);
            p.prim.execute(stream(), p.args);
            stream().wait();
        }
    }


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
        const dnnl::memory::desc srcMd({m, m_cols}, dt::f32, tag::ab);
        const dnnl::memory::desc weightsMd({m_cols, t}, dt::f32, tag::ba);
        const dnnl::memory::desc dstMd({m, t}, dt::f32, dnnl::memory::dims{m_rows, 1});
        Prim p;
        p.prim = dnnl::matmul(dnnl::matmul::primitive_desc(dnnl::matmul::desc(srcMd, weightsMd, dstMd), cpuEngine()));
        p.src = dnnl::memory(srcMd, cpuEngine(), DNNL_MEMORY_NONE);
        p.weights = dnnl::memory(weightsMd, cpuEngine(), DNNL_MEMORY_NONE);
        p.dst = dnnl::memory(dstMd, cpuEngine(), DNNL_MEMORY_NONE);
        p.args = {{DNNL_ARG_SRC, p.src}, {DNNL_ARG_WEIGHTS, p.weights}, {DNNL_ARG_DST, p.dst}};
        return m_prims.emplace(key, std::move(p)).first->second;
    }

    MatrixView m_w;
    std::int64_t m_rows = 0, m_cols = 0;
    DType m_type = DType::F32;
    const void *m_raw = nullptr; // stored elements read in place, or null: rows via m_w.rowsToF32
    std::vector<float> m_bias;
    std::int64_t m_tileRows = 64;
    QString m_description;
    mutable std::mutex m_mutex;
    mutable std::map<std::pair<std::int64_t, std::int64_t>, Prim> m_prims;
    mutable std::map<std::pair<std::int64_t, std::int64_t>, std::optional<TransposedPrim>> m_transposed;
    mutable std::vector<std::tuple<dnnl::memory::desc, dnnl::memory::desc, dnnl::reorder>> m_reorders;
};

class EigenLinear final : public LinearKernel
{
public:
    EigenLinear(MatrixView w, MatrixView b)
        : m_w(w)
        , m_b(b)
    {}

    void forward(const float *x, std::int64_t m, float *y) const override
    {
        using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
        Eigen::Map<const RowMat> X(x, m, m_w.cols);
        Eigen::Map<const RowMat> W(m_w.data(), m_w.rows, m_w.cols);
        Eigen::Map<RowMat> Y(y, m, m_w.rows);
        Y.noalias() = X * W.transpose();
        if (!m_b.empty())
            Y.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(m_b.data(), m_w.rows);
    }

    std::int64_t inFeatures() const override { return m_w.cols; }
    std::int64_t outFeatures() const override { return m_w.rows; }
    QString description() const override { return QStringLiteral("eigen f32"); }

private:
    MatrixView m_w, m_b;
};

} // namespace

std::unique_ptr<LinearKernel> makeDenseLinear(MatrixView weight, MatrixView bias, LinearBackend backend)
{
    if (backend == LinearBackend::Eigen)
        return std::make_unique<EigenLinear>(weight, bias);
    return std::make_unique<StoredLinear>(weight, bias);
}

} // namespace bitsmith::core
