// linear.cpp: dense f32 linear kernels: oneDNN matmul (primitives cached per batch size m) and a
// plain Eigen baseline used by benchmarks and as a cross-check in tests.
#include "linear.h"

#include <Eigen/Core>
#include <dnnl.hpp>

#include <map>
#include <mutex>

namespace bitsmith::core {

namespace {

dnnl::engine &cpuEngine()
{
    static dnnl::engine engine(dnnl::engine::kind::cpu, 0);
    return engine;
}

class OneDnnLinear final : public LinearKernel
{
public:
    OneDnnLinear(MatrixView w, MatrixView b)
        : m_w(w)
        , m_b(b)
    {
        using tag = dnnl::memory::format_tag;
        using dt = dnnl::memory::data_type;
        // The PyTorch [out, in] row-major weight is the [in, out] matrix in 'ba' layout.
        m_weightsMd = dnnl::memory::desc({m_w.cols, m_w.rows}, dt::f32, tag::ba);
        m_weights = dnnl::memory(m_weightsMd, cpuEngine(), const_cast<float *>(m_w.data));
        if (!m_b.empty()) {
            m_biasMd = dnnl::memory::desc({1, m_w.rows}, dt::f32, tag::ab);
            m_bias = dnnl::memory(m_biasMd, cpuEngine(), const_cast<float *>(m_b.data));
        }
        // brgemm wants the weights in a blocked layout; given the plain one it re-blocks them on
        // every call, which halves decoding speed. Reorder once into the layout the primitive
        // asks for (it does not depend on the batch size) and keep that copy.
        const dnnl::memory::desc srcMd({1, m_w.cols}, dt::f32, tag::ab), dstMd({1, m_w.rows}, dt::f32, tag::ab);
        const dnnl::memory::desc anyMd({m_w.cols, m_w.rows}, dt::f32, tag::any);
        auto pd = dnnl::matmul::primitive_desc(dnnl::matmul::desc(srcMd, anyMd, dstMd), cpuEngine());
        if (pd.weights_desc() != m_weightsMd) {
            dnnl::memory blocked(pd.weights_desc(), cpuEngine());
            dnnl::stream s(cpuEngine());
            dnnl::reorder(m_weights, blocked).execute(s, m_weights, blocked);
            s.wait();
            m_weightsMd = pd.weights_desc();
            m_weights = blocked;
        }
    }

    void forward(const float *x, std::int64_t m, float *y) const override
    {
        // One primitive per batch size, with its memory objects and argument map kept, so a
        // call costs a data-handle update and an execute (this matters at m = 1, decoding).
        std::lock_guard lock(m_mutex);
        Prim &p = primitiveFor(m);
        p.src.set_data_handle(const_cast<float *>(x));
        p.dst.set_data_handle(y);
        p.prim.execute(stream(), p.args);
        stream().wait();
    }

    std::int64_t inFeatures() const override { return m_w.cols; }
    std::int64_t outFeatures() const override { return m_w.rows; }
    QString description() const override { return QStringLiteral("onednn f32"); }

private:
    struct Prim
    {
        dnnl::memory::desc srcMd, dstMd;
        dnnl::memory src, dst;
        dnnl::matmul prim;
        std::unordered_map<int, dnnl::memory> args;
    };

    static dnnl::stream &stream()
    {
        thread_local dnnl::stream s(cpuEngine());
        return s;
    }

    Prim &primitiveFor(std::int64_t m) const
    {
        auto it = m_prims.find(m);
        if (it != m_prims.end())
            return it->second;
        using tag = dnnl::memory::format_tag;
        using dt = dnnl::memory::data_type;
        Prim p;
        p.srcMd = dnnl::memory::desc({m, m_w.cols}, dt::f32, tag::ab);
        p.dstMd = dnnl::memory::desc({m, m_w.rows}, dt::f32, tag::ab);
        auto desc = m_b.empty() ? dnnl::matmul::desc(p.srcMd, m_weightsMd, p.dstMd)
                                : dnnl::matmul::desc(p.srcMd, m_weightsMd, m_biasMd, p.dstMd);
        p.prim = dnnl::matmul(dnnl::matmul::primitive_desc(desc, cpuEngine()));
        p.src = dnnl::memory(p.srcMd, cpuEngine(), DNNL_MEMORY_NONE);
        p.dst = dnnl::memory(p.dstMd, cpuEngine(), DNNL_MEMORY_NONE);
        p.args = {{DNNL_ARG_SRC, p.src}, {DNNL_ARG_WEIGHTS, m_weights}, {DNNL_ARG_DST, p.dst}};
        if (!m_b.empty())
            p.args.emplace(DNNL_ARG_BIAS, m_bias);
        return m_prims.emplace(m, std::move(p)).first->second;
    }

    MatrixView m_w, m_b;
    dnnl::memory::desc m_weightsMd, m_biasMd;
    dnnl::memory m_weights, m_bias;
    mutable std::mutex m_mutex;
    mutable std::map<std::int64_t, Prim> m_prims;
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
        Eigen::Map<const RowMat> W(m_w.data, m_w.rows, m_w.cols);
        Eigen::Map<RowMat> Y(y, m, m_w.rows);
        Y.noalias() = X * W.transpose();
        if (!m_b.empty())
            Y.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(m_b.data, m_w.rows);
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
    return std::make_unique<OneDnnLinear>(weight, bias);
}

} // namespace bitsmith::core
