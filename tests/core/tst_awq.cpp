// tst_awq: AWQ's scale and clip searches (core/quant/awq.h) against the PyTorch reference
// (tools/quant_reference.py, tests/data/quant/awq_*), and the point of it all: on activations
// with salient channels the scaled (and clipped) quantization has a lower output error than RTN.
#include "core/quant/awq.h"
#include "core/quant/quantizer.h"
#include "testutil.h"

#include <QElapsedTimer>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTest>

#include <Eigen/Dense>

#include <cmath>
#include <random>

using namespace bitsmith::core;
using namespace bitsmith::test;

namespace {

using RowMajorF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;


// mean((X·Wᵀ − X·W'ᵀ)²) in double.
double outputMse(MatrixView x, MatrixView w, const std::vector<float> &wq)
{
    const Eigen::MatrixXd xd = Eigen::Map<const RowMajorF>(x.data(), x.rows, x.cols).cast<double>();
    const Eigen::MatrixXd d = (Eigen::Map<const RowMajorF>(w.data(), w.rows, w.cols)
                               - Eigen::Map<const RowMajorF>(wq.data(), w.rows, w.cols))
                                  .cast<double>();
    return (xd * d.transpose()).squaredNorm() / static_cast<double>(x.rows * w.rows);
}

// W' = deq(Q(W·s))·diag(1/s): the weight the scaled layer effectively applies to X.
std::vector<float> effectiveWeight(const QuantizedTensor &q, const std::vector<float> &s)
{
    std::vector<float> w = dequantized(q);
    return scaleColumns(MatrixView{w.data(), q.rows, q.cols}, s, true);
}

} // namespace

class TestAwq : public QObject
{
    Q_OBJECT

    std::vector<float> m_x;
    std::vector<std::vector<float>> m_w;
    std::int64_t m_n = 0, m_in = 0, m_out = 0;
    QJsonObject m_ref;
    QuantFormat m_format;

    std::vector<MatrixView> linears() const
    {
        std::vector<MatrixView> v;
        for (const auto &w : m_w)
            v.push_back(MatrixView{w.data(), m_out, m_in});
        return v;
    }

private slots:
    void initTestCase()
    {
        std::vector<long> shape;
        QVERIFY(readNpyF32(quantData(QStringLiteral("awq_X.npy")), m_x, shape));
        m_n = shape[0];
        m_in = shape[1];
        for (int i = 0; i < 3; ++i) {
            std::vector<float> w;
            QVERIFY(readNpyF32(quantData(QStringLiteral("awq_W%1.npy").arg(i)), w, shape));
            QCOMPARE(shape[1], m_in);
            m_out = shape[0];
            m_w.push_back(std::move(w));
        }
        m_ref = QJsonDocument::fromJson(readAll(quantData(QStringLiteral("reference.json")))).object()[QStringLiteral("awq")].toObject();
        m_format = QuantFormat{m_ref[QStringLiteral("bits")].toInt(), m_ref[QStringLiteral("group")].toInt(),
                               m_ref[QStringLiteral("sym")].toBool()};
    }

    void alphaMatchesReference()
    {
        const auto lin = linears();
        QElapsedTimer timer;
        timer.start();
        auto r = awqSearchScales(MatrixView{m_x.data(), m_n, m_in}, lin, m_format);
        const double ms = static_cast<double>(timer.nsecsElapsed()) / 1e6;
        QVERIFY2(r, qPrintable(r ? QString() : r.error().toString()));
        const QJsonArray losses = m_ref[QStringLiteral("losses")].toArray();
        QCOMPARE(r->lossPerAlpha.size(), static_cast<std::size_t>(losses.size()));
        double worst = 0;
        for (qsizetype k = 0; k < losses.size(); ++k)
            worst = std::max(worst, std::fabs(r->lossPerAlpha[k] - losses[k].toDouble()) / losses[k].toDouble());
        qInfo("α = %.2f (reference %.2f), loss %.6f (reference %.6f, RTN %.6f), max relative loss difference "
              "over the grid %.2e, %.1f ms",
              r->alpha, m_ref[QStringLiteral("alpha")].toDouble(), r->loss, m_ref[QStringLiteral("loss")].toDouble(),
              r->lossPerAlpha[0], worst, ms);
        QCOMPARE(r->alpha, m_ref[QStringLiteral("alpha")].toDouble());
        QVERIFY(worst < 1e-4);

        std::vector<float> scales;
        std::vector<long> shape;
        QVERIFY(readNpyF32(quantData(QStringLiteral("awq_scales.npy")), scales, shape));
        QCOMPARE(r->scales, scales); // both: double pow and normalisation, one rounding to float
        // α = 0 is s = 1, plain RTN; the picked α can only be better.
        QVERIFY(r->loss <= r->lossPerAlpha[0]);
    }

    void clipMatchesReference()
    {
        std::vector<float> s, clipRef;
        std::vector<long> shape;
        QVERIFY(readNpyF32(quantData(QStringLiteral("awq_scales.npy")), s, shape));
        QVERIFY(readNpyF32(quantData(QStringLiteral("awq_clip0.npy")), clipRef, shape));
        const std::vector<float> xs = scaleColumns(MatrixView{m_x.data(), m_n, m_in}, s, true);
        const std::vector<float> ws = scaleColumns(MatrixView{m_w[0].data(), m_out, m_in}, s);
        auto clip = awqSearchClip(MatrixView{xs.data(), m_n, m_in}, MatrixView{ws.data(), m_out, m_in}, m_format);
        QVERIFY(clip);
        QCOMPARE(clip->size(), clipRef.size());
        std::size_t same = 0, clipped = 0;
        for (std::size_t i = 0; i < clipRef.size(); ++i) {
            same += (*clip)[i] == clipRef[i];
            const std::int64_t r = static_cast<std::int64_t>(i) / (m_in / m_format.groupSize);
            const std::int64_t g = static_cast<std::int64_t>(i) % (m_in / m_format.groupSize);
            float maxAbs = 0;
            for (std::int64_t k = 0; k < m_format.groupSize; ++k)
                maxAbs = std::max(maxAbs, std::fabs(ws[static_cast<std::size_t>(r * m_in + g * m_format.groupSize + k)]));
            clipped += (*clip)[i] < maxAbs;
        }
        qInfo("clip values: %zu / %zu equal to the reference, %zu groups clipped", same, clipRef.size(), clipped);
        QCOMPARE(same, clipRef.size());
        QVERIFY(clipped > 0);
    }

    void beatsRtnOnSalientChannels()
    {
        // The reference case has 4 input channels with 15x the activation magnitude.
        const MatrixView x{m_x.data(), m_n, m_in};
        const auto lin = linears();
        auto search = awqSearchScales(x, lin, m_format);
        QVERIFY(search);
        double rtnTotal = 0, scaledTotal = 0, clippedTotal = 0;
        for (const MatrixView &w : lin) {
            auto rtn = quantizeRtn(w, m_format);
            QVERIFY(rtn);
            const double rtnMse = outputMse(x, w, dequantized(*rtn));
            auto scaled = awqQuantizeLinear(x, w, search->scales, m_format, false);
            QVERIFY(scaled);
            QVERIFY(scaled->clip.empty());
            const double scaledMse = outputMse(x, w, effectiveWeight(scaled->q, search->scales));
            auto clipped = awqQuantizeLinear(x, w, search->scales, m_format, true);
            QVERIFY(clipped);
            QCOMPARE(clipped->clip.size(), static_cast<std::size_t>(m_out * (m_in / m_format.groupSize)));
            const double clippedMse = outputMse(x, w, effectiveWeight(clipped->q, search->scales));
            qInfo("output MSE: RTN %.6f, AWQ scaled %.6f, scaled + clipped %.6f", rtnMse, scaledMse, clippedMse);
            QVERIFY(scaledMse <= rtnMse);
            QVERIFY(clippedMse <= rtnMse);
            rtnTotal += rtnMse;
            scaledTotal += scaledMse;
            clippedTotal += clippedMse;
        }
        // The scale search's own objective, recomputed independently.
        QVERIFY(std::fabs(scaledTotal - search->loss) <= 1e-6 * search->loss);
        QVERIFY(scaledTotal < 0.5 * rtnTotal);
        QVERIFY(clippedTotal <= scaledTotal * 1.001);
    }

    void syntheticSalientCase()
    {
        // Independent of the stored data: w4 g64 on 512 tokens x 256 channels, 6 salient
        // channels at 20x; the gate/up-like pair shares X.
        std::mt19937 rng(8);
        std::normal_distribution<float> nd;
        const std::int64_t n = 512, in = 256, out = 64;
        std::vector<float> x(static_cast<std::size_t>(n * in));
        for (std::int64_t t = 0; t < n; ++t)
            for (std::int64_t j = 0; j < in; ++j)
                x[static_cast<std::size_t>(t * in + j)] = nd(rng) * (j % 43 == 5 ? 20.0f : 1.0f);
        std::vector<float> a(static_cast<std::size_t>(out * in)), b(a.size());
        for (float &v : a)
            v = 0.05f * nd(rng);
        for (float &v : b)
            v = 0.05f * nd(rng);
        const MatrixView lin[] = {{a.data(), out, in}, {b.data(), out, in}};
        auto r = awqSearchScales(MatrixView{x.data(), n, in}, lin, QuantFormat{4, 64, false});
        QVERIFY(r);
        qInfo("synthetic: α = %.2f, loss %.3g vs RTN %.3g", r->alpha, r->loss, r->lossPerAlpha[0]);
        QVERIFY(r->alpha > 0.0);
        QVERIFY(r->loss < 0.8 * r->lossPerAlpha[0]);
    }

    void badInputAndCancel()
    {
        const MatrixView x{m_x.data(), m_n, m_in};
        const MatrixView w{m_w[0].data(), m_out, m_in};
        const MatrixView narrow{m_w[0].data(), m_out, m_in / 2};
        QCOMPARE(awqSearchScales(x, std::span<const MatrixView>(&narrow, 1), m_format).error().code, ErrorCode::Mismatch);
        QCOMPARE(awqSearchScales(x, std::span<const MatrixView>(), m_format).error().parameter, QStringLiteral("linears"));
        QCOMPARE(awqSearchScales(x, std::span<const MatrixView>(&w, 1), QuantFormat{1, 32, false}).error().parameter,
                 QStringLiteral("bits"));
        QCOMPARE(awqSearchClip(x, w, QuantFormat{4, -1, false}).error().code, ErrorCode::Unsupported);

        std::vector<float> bad = m_x;
        bad[17] = std::nanf("");
        QCOMPARE(awqSearchScales(MatrixView{bad.data(), m_n, m_in}, std::span<const MatrixView>(&w, 1), m_format)
                     .error()
                     .parameter,
                 QStringLiteral("activations"));

        std::vector<float> s(static_cast<std::size_t>(m_in), 1.0f);
        s[3] = 0.0f;
        QCOMPARE(awqQuantizeLinear(x, w, s, m_format, false).error().parameter, QStringLiteral("scales"));

        CallbackFeedback feedback;
        feedback.cancel();
        QCOMPARE(awqSearchScales(x, std::span<const MatrixView>(&w, 1), m_format, {}, &feedback).error().code,
                 ErrorCode::Cancelled);
        QCOMPARE(awqSearchClip(x, w, m_format, {}, &feedback).error().code, ErrorCode::Cancelled);
    }
};

QTEST_GUILESS_MAIN(TestAwq)
#include "tst_awq.moc"
