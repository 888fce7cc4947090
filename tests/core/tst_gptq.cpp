// tst_gptq: GPTQ and its Hessian (core/quant/gptq.h) — the accumulator against a direct
// (2/n)·XᵀX, the quantizer against the PyTorch reference (tools/quant_reference.py,
// tests/data/quant/gptq_*) per format, GPTQ's output error against RTN's, act-order group
// indices, dead columns, cancellation, bad input and a timing on a 768 x 256 layer.
#include "core/quant/gptq.h"
#include "core/quant/quantizer.h"
#include "testutil.h"

#include <QElapsedTimer>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTest>

#include <cmath>
#include <random>

using namespace bitsmith::core;
using namespace bitsmith::test;

namespace {

using RowMajorD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

QJsonObject reference()
{
    return QJsonDocument::fromJson(readAll(quantData(QStringLiteral("reference.json")))).object();
}


// tr(Δ H Δᵀ) = (2/n)·||X·Wᵀ − X·W'ᵀ||², Δ = W − W'.
double outputError(const std::vector<float> &w, const std::vector<float> &wq, std::int64_t rows, const Eigen::MatrixXd &h)
{
    RowMajorD d(rows, h.cols());
    for (std::int64_t i = 0; i < d.size(); ++i)
        d.data()[i] = static_cast<double>(w[static_cast<std::size_t>(i)]) - wq[static_cast<std::size_t>(i)];
    return ((d * h).cwiseProduct(d)).sum();
}

double fractionEqual(const std::vector<std::uint8_t> &a, const std::vector<std::uint8_t> &b)
{
    std::size_t same = 0;
    for (std::size_t i = 0; i < a.size(); ++i)
        same += a[i] == b[i];
    return static_cast<double>(same) / static_cast<double>(a.size());
}

// Correlated activations: z·mix + a shared rank-4 part, with per-channel magnitudes.
std::vector<float> randomActivations(std::int64_t n, std::int64_t cols, unsigned seed)
{
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd;
    std::vector<float> gain(static_cast<std::size_t>(cols));
    for (float &g : gain)
        g = std::exp(0.5f * nd(rng));
    std::vector<float> basis(static_cast<std::size_t>(4 * cols));
    for (float &b : basis)
        b = nd(rng);
    std::vector<float> x(static_cast<std::size_t>(n * cols));
    for (std::int64_t t = 0; t < n; ++t) {
        float f[4];
        for (float &v : f)
            v = nd(rng);
        for (std::int64_t j = 0; j < cols; ++j) {
            float v = nd(rng);
            for (int k = 0; k < 4; ++k)
                v += 0.5f * f[k] * basis[static_cast<std::size_t>(k * cols + j)];
            x[static_cast<std::size_t>(t * cols + j)] = gain[static_cast<std::size_t>(j)] * v;
        }
    }
    return x;
}

std::vector<float> randomWeights(std::int64_t rows, std::int64_t cols, unsigned seed)
{
    std::mt19937 rng(seed);
    std::normal_distribution<float> nd(0.0f, 0.02f);
    std::vector<float> w(static_cast<std::size_t>(rows * cols));
    for (float &v : w)
        v = nd(rng);
    return w;
}

} // namespace

class TestGptq : public QObject
{
    Q_OBJECT

    std::vector<float> m_w;
    Eigen::MatrixXd m_h;
    std::int64_t m_rows = 0;
    std::int64_t m_cols = 0;

private slots:
    void initTestCase()
    {
        std::vector<float> h;
        std::vector<long> shape;
        QVERIFY(readNpyF32(quantData(QStringLiteral("gptq_W.npy")), m_w, shape));
        m_rows = shape[0];
        m_cols = shape[1];
        QVERIFY(readNpyF32(quantData(QStringLiteral("gptq_H.npy")), h, shape));
        QCOMPARE(shape[0], m_cols);
        m_h = Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(h.data(), m_cols, m_cols)
                  .cast<double>();
    }

    void hessianMatchesDirect()
    {
        const std::int64_t n = 3000;
        const std::int64_t cols = 48;
        const std::vector<float> x = randomActivations(n, cols, 5);
        HessianAccumulator acc(cols);
        // Uneven batches, one of them longer than the accumulator's 1024-row chunk.
        std::int64_t done = 0;
        for (std::int64_t batch : {1, 17, 1500, 482, 1000}) {
            acc.add(x.data() + done * cols, batch);
            done += batch;
        }
        QCOMPARE(done, n);
        QCOMPARE(acc.count(), n);

        const Eigen::MatrixXd xd =
            Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(x.data(), n, cols).cast<double>();
        const Eigen::MatrixXd direct = (2.0 / n) * xd.transpose() * xd;
        const Eigen::MatrixXd &h = acc.hessian();
        const double relative = (h - direct).cwiseAbs().maxCoeff() / direct.cwiseAbs().maxCoeff();
        qInfo("Hessian: max |H - (2/n)XᵀX| / max |H| = %.3g", relative);
        QVERIFY(relative < 1e-6);
        QCOMPARE((h - h.transpose()).cwiseAbs().maxCoeff(), 0.0);

        for (std::int64_t j = 0; j < cols; ++j) {
            const auto col = xd.col(j);
            QVERIFY(std::fabs(acc.meanAbs()[j] - col.cwiseAbs().mean()) < 1e-12 * (1 + col.cwiseAbs().mean()));
            QVERIFY(std::fabs(acc.meanSquare()[j] - col.squaredNorm() / n) < 1e-12 * (1 + col.squaredNorm() / n));
            QCOMPARE(acc.absMax()[j], col.cwiseAbs().maxCoeff());
        }
    }

    void matchesPyTorchReference_data()
    {
        QTest::addColumn<QString>("name");
        const QJsonObject formats = reference()[QStringLiteral("gptq")].toObject()[QStringLiteral("formats")].toObject();
        QVERIFY(!formats.isEmpty());
        for (const QString &name : formats.keys())
            QTest::newRow(qPrintable(name)) << name;
    }

    void matchesPyTorchReference()
    {
        QFETCH(QString, name);
        const QJsonObject f = reference()[QStringLiteral("gptq")].toObject()[QStringLiteral("formats")].toObject()[name].toObject();
        const QuantFormat format{f[QStringLiteral("bits")].toInt(), f[QStringLiteral("group")].toInt(),
                                 f[QStringLiteral("sym")].toBool()};
        GptqOptions options;
        options.actOrder = f[QStringLiteral("actorder")].toBool();
        options.staticGroups = f[QStringLiteral("static")].toBool();

        QElapsedTimer timer;
        timer.start();
        auto r = gptqQuantize(MatrixView{m_w.data(), m_rows, m_cols}, m_h, format, options);
        const double ms = static_cast<double>(timer.nsecsElapsed()) / 1e6;
        QVERIFY2(r, qPrintable(r ? QString() : r.error().toString()));
        QCOMPARE(r->deadColumns, 4);
        QCOMPARE(r->q.rows, m_rows);
        QCOMPARE(r->q.cols, m_cols);

        const std::vector<float> wq = dequantized(r->q);
        for (const char *precision : {"mixed", "fp32"}) {
            const QString prec = QLatin1String(precision);
            std::vector<std::uint8_t> codes;
            std::vector<float> scales, zeros;
            std::vector<long> shape;
            QVERIFY(readNpyU8(quantData(QStringLiteral("gptq_%1_%2_codes.npy").arg(name, prec)), codes, shape));
            QVERIFY(readNpyF32(quantData(QStringLiteral("gptq_%1_%2_scales.npy").arg(name, prec)), scales, shape));
            QVERIFY(readNpyF32(quantData(QStringLiteral("gptq_%1_%2_zeros.npy").arg(name, prec)), zeros, shape));
            QCOMPARE(codes.size(), r->q.codes.size());
            QCOMPARE(scales.size(), r->q.scales.size());

            // The reference's dequantized weights, with its own g_idx where it has one.
            QuantizedTensor ref = r->q;
            ref.codes = codes;
            ref.scales = scales;
            ref.zeros = zeros;
            const std::vector<float> wref = dequantized(ref);

            const double codeAgreement = fractionEqual(r->q.codes, codes);
            std::size_t scalesEqual = 0;
            for (std::size_t i = 0; i < scales.size(); ++i)
                scalesEqual += scales[i] == r->q.scales[i] && zeros[i] == r->q.zeros[i];
            double diff = 0, norm = 0;
            for (std::size_t i = 0; i < wq.size(); ++i) {
                diff += (wq[i] - wref[i]) * (wq[i] - wref[i]);
                norm += wref[i] * wref[i];
            }
            const double refLoss = f[prec].toObject()[QStringLiteral("loss")].toDouble();
            qInfo("%s vs %s: codes %.5f equal, scales+zeros %zu/%zu equal, ||W'-W'ref||/||W'ref|| %.2e, "
                  "loss %.6f vs %.6f (%.0f ms)",
                  qPrintable(name), precision, codeAgreement, scalesEqual, scales.size(), std::sqrt(diff / norm),
                  r->loss, refLoss, ms);
            // Float summation order (Eigen vs MKL GEMM) can flip a few roundings.
            QVERIFY(codeAgreement >= 0.99);
            QVERIFY(std::sqrt(diff / norm) < 0.02);
            QVERIFY(std::fabs(r->loss - refLoss) <= 0.01 * refLoss);
        }

        // Act-order group index: the reference's g_idx.
        const QJsonArray gidx = f[QStringLiteral("gidx")].toArray();
        if (gidx.isEmpty()) {
            QVERIFY(r->q.groupIndex.empty());
        } else {
            QCOMPARE(r->q.groupIndex.size(), static_cast<std::size_t>(m_cols));
            for (std::int64_t c = 0; c < m_cols; ++c)
                QCOMPARE(r->q.groupIndex[static_cast<std::size_t>(c)], gidx[c].toInt());
        }
        const QJsonArray perm = f[QStringLiteral("perm")].toArray();
        QCOMPARE(r->permutation.size(), static_cast<std::size_t>(perm.size()));
        for (qsizetype j = 0; j < perm.size(); ++j)
            QCOMPARE(r->permutation[static_cast<std::size_t>(j)], perm[j].toInt());

        // GPTQ's reason to exist: a much smaller output error than round-to-nearest.
        auto rtn = quantizeRtn(MatrixView{m_w.data(), m_rows, m_cols}, format);
        QVERIFY(rtn);
        const double rtnError = outputError(m_w, dequantized(*rtn), m_rows, m_h);
        const double gptqError = outputError(m_w, wq, m_rows, m_h);
        qInfo("%s: output error tr(ΔHΔᵀ) RTN %.4f, GPTQ %.4f (%.1f%% of RTN's)", qPrintable(name), rtnError, gptqError,
              100.0 * gptqError / rtnError);
        QVERIFY(gptqError <= 0.9 * rtnError);
    }

    void actOrderGroupIndex()
    {
        // On fresh data: g_idx[c] is the group of c's position in the descending-diag(H) order,
        // every group but the last holds exactly g columns, and scales/zeros are per such group.
        const std::int64_t rows = 32, cols = 200, g = 32;
        const std::vector<float> x = randomActivations(600, cols, 21);
        HessianAccumulator acc(cols);
        acc.add(x.data(), 600);
        const std::vector<float> w = randomWeights(rows, cols, 22);
        GptqOptions options;
        options.actOrder = true;
        auto r = gptqQuantize(MatrixView{w.data(), rows, cols}, acc.hessian(), QuantFormat{4, g, false}, options);
        QVERIFY(r);
        QCOMPARE(r->q.groupIndex.size(), static_cast<std::size_t>(cols));
        QCOMPARE(r->q.groupsPerRow(), (cols + g - 1) / g);
        std::vector<int> perGroup(static_cast<std::size_t>(r->q.groupsPerRow()), 0);
        for (std::int64_t j = 0; j < cols; ++j) {
            const std::int32_t c = r->permutation[static_cast<std::size_t>(j)];
            QCOMPARE(r->q.groupIndex[static_cast<std::size_t>(c)], static_cast<std::int32_t>(j / g));
            ++perGroup[static_cast<std::size_t>(j / g)];
            if (j > 0)
                QVERIFY(acc.hessian()(c, c) <= acc.hessian()(r->permutation[j - 1], r->permutation[j - 1]));
        }
        for (std::size_t k = 0; k + 1 < perGroup.size(); ++k)
            QCOMPARE(perGroup[k], static_cast<int>(g));
        QCOMPARE(perGroup.back(), static_cast<int>(cols - (perGroup.size() - 1) * g));
        // Static groups keep the natural grouping: no g_idx.
        options.staticGroups = true;
        r = gptqQuantize(MatrixView{w.data(), rows, cols}, acc.hessian(), QuantFormat{4, g, false}, options);
        QVERIFY(r);
        QVERIFY(r->q.groupIndex.empty());
    }

    void blockSizeDoesNotMatter()
    {
        // The lazy batch update is an exact reformulation: per channel (no group boundaries to
        // shift), block sizes 1, 37 and 128 give the same codes up to float rounding.
        auto base = gptqQuantize(MatrixView{m_w.data(), m_rows, m_cols}, m_h, QuantFormat{3, 0, false});
        QVERIFY(base);
        for (int block : {1, 37, 256}) {
            GptqOptions options;
            options.blockSize = block;
            auto r = gptqQuantize(MatrixView{m_w.data(), m_rows, m_cols}, m_h, QuantFormat{3, 0, false}, options);
            QVERIFY(r);
            const double agreement = fractionEqual(base->q.codes, r->q.codes);
            qInfo("block %d vs 128: codes %.5f equal", block, agreement);
            QVERIFY(agreement >= 0.99);
        }
    }

    void deadColumns()
    {
        // Input column 2 is always zero: its weights (a huge 50 included) are zeroed, so its codes
        // dequantize to exactly 0 and the per-channel ranges ignore them.
        const std::int64_t rows = 16, cols = 24;
        std::vector<float> x = randomActivations(200, cols, 31);
        for (std::int64_t t = 0; t < 200; ++t)
            x[static_cast<std::size_t>(t * cols + 2)] = 0.0f;
        HessianAccumulator acc(cols);
        acc.add(x.data(), 200);
        QCOMPARE(acc.hessian()(2, 2), 0.0);
        std::vector<float> w = randomWeights(rows, cols, 32);
        w[2] = 50.0f;
        for (bool actOrder : {false, true}) {
            GptqOptions options;
            options.actOrder = actOrder;
            auto r = gptqQuantize(MatrixView{w.data(), rows, cols}, acc.hessian(), QuantFormat{4, 0, false}, options);
            QVERIFY(r);
            QCOMPARE(r->deadColumns, 1);
            for (std::int64_t row = 0; row < rows; ++row)
                QCOMPARE(r->q.value(row, 2), 0.0f);
            std::vector<float> zeroed = w;
            for (std::int64_t row = 0; row < rows; ++row)
                zeroed[static_cast<std::size_t>(row * cols + 2)] = 0.0f;
            const QuantParams p = findParams(zeroed.data(), cols, QuantFormat{4, 0, false}, false);
            QCOMPARE(r->q.scale(0, 0), p.scale);
        }
    }

    void cancelAndProgress()
    {
        CallbackFeedback feedback;
        double last = 0;
        feedback.progressFn = [&](double f) { last = f; };
        auto r = gptqQuantize(MatrixView{m_w.data(), m_rows, m_cols}, m_h, QuantFormat{4, 64, false}, {}, &feedback);
        QVERIFY(r);
        QCOMPARE(last, 1.0);

        CallbackFeedback cancelling;
        int reports = 0;
        cancelling.progressFn = [&](double) {
            ++reports;
            cancelling.cancel(); // the user presses cancel during the first block
        };
        r = gptqQuantize(MatrixView{m_w.data(), m_rows, m_cols}, m_h, QuantFormat{4, 64, false}, {}, &cancelling);
        QVERIFY(!r);
        QCOMPARE(r.error().code, ErrorCode::Cancelled);
        QCOMPARE(reports, 1);
    }

    void badInput()
    {
        const MatrixView w{m_w.data(), m_rows, m_cols};
        auto r = gptqQuantize(w, Eigen::MatrixXd::Identity(10, 10), QuantFormat{});
        QVERIFY(!r);
        QCOMPARE(r.error().code, ErrorCode::Mismatch);

        Eigen::MatrixXd h = m_h;
        h(3, 7) = std::nan("");
        r = gptqQuantize(w, h, QuantFormat{});
        QCOMPARE(r.error().parameter, QStringLiteral("hessian"));

        r = gptqQuantize(w, m_h, QuantFormat{9, 128, false});
        QCOMPARE(r.error().parameter, QStringLiteral("bits"));
        r = gptqQuantize(w, m_h, QuantFormat{4, -5, false});
        QCOMPARE(r.error().parameter, QStringLiteral("group"));

        GptqOptions options;
        options.blockSize = 0;
        r = gptqQuantize(w, m_h, QuantFormat{}, options);
        QCOMPARE(r.error().parameter, QStringLiteral("blockSize"));
        options = {};
        options.dampPercent = -0.1;
        r = gptqQuantize(w, m_h, QuantFormat{}, options);
        QCOMPARE(r.error().parameter, QStringLiteral("dampPercent"));

        // Not positive definite even after damping: the hint says to damp more.
        r = gptqQuantize(w, -Eigen::MatrixXd::Identity(m_cols, m_cols), QuantFormat{});
        QVERIFY(!r);
        QCOMPARE(r.error().code, ErrorCode::InvalidArgument);
        QCOMPARE(r.error().parameter, QStringLiteral("dampPercent"));
        QVERIFY(!r.error().hint.isEmpty());

        std::vector<float> bad = m_w;
        bad[5] = std::numeric_limits<float>::infinity();
        r = gptqQuantize(MatrixView{bad.data(), m_rows, m_cols}, m_h, QuantFormat{});
        QCOMPARE(r.error().parameter, QStringLiteral("weights"));
    }

    void timing()
    {
        // A 768 x 256 layer (e.g. a small model's q/k/v stacked) and 128 calibration sequences of
        // 64 tokens: the Hessian pass and GPTQ itself, one core.
        const std::int64_t rows = 768, cols = 256, n = 128 * 64;
        const std::vector<float> x = randomActivations(n, cols, 41);
        const std::vector<float> w = randomWeights(rows, cols, 42);
        QElapsedTimer timer;
        timer.start();
        HessianAccumulator acc(cols);
        for (std::int64_t s = 0; s < 128; ++s)
            acc.add(x.data() + s * 64 * cols, 64);
        const double hessianMs = static_cast<double>(timer.nsecsElapsed()) / 1e6;
        for (const auto &[format, actOrder] : {std::pair{QuantFormat{4, 128, false}, false},
                                               std::pair{QuantFormat{4, 128, false}, true},
                                               std::pair{QuantFormat{3, 0, false}, false}}) {
            GptqOptions options;
            options.actOrder = actOrder;
            timer.restart();
            auto r = gptqQuantize(MatrixView{w.data(), rows, cols}, acc.hessian(), format, options);
            const double gptqMs = static_cast<double>(timer.nsecsElapsed()) / 1e6;
            QVERIFY(r);
            qInfo("768x256, %d-bit g%d%s: Hessian of %lld rows %.1f ms, GPTQ %.1f ms", format.bits, format.groupSize,
                  actOrder ? " act-order" : "", static_cast<long long>(n), hessianMs, gptqMs);
            QVERIFY(gptqMs < 1000.0);
        }
    }
};

QTEST_GUILESS_MAIN(TestGptq)
#include "tst_gptq.moc"
