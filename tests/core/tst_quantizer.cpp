// tst_quantizer: the scalar quantizer and round-to-nearest (core/quant/quantizer.h) — cases
// worked out by hand, exact agreement with the PyTorch reference (tools/quant_reference.py,
// tests/data/quant/rtn_*), bits-per-weight accounting, bad input, and SmoothQuant's helpers.
#include "core/quant/quantizer.h"
#include "core/quant/smoothquant.h"
#include "testutil.h"

#include <QJsonDocument>
#include <QJsonObject>
#include <QTest>

#include <cmath>
#include <random>

using namespace bitsmith::core;
using namespace bitsmith::test;

namespace {


// Σ |w' − w|^p over one row segment, the quantity the MSE grid search minimises (p = 2.4).
double normError(const float *w, std::int64_t n, QuantParams p, int maxq, double power)
{
    double e = 0;
    for (std::int64_t k = 0; k < n; ++k)
        e += std::pow(std::fabs(static_cast<double>(dequantizeCode(quantizeCode(w[k], p, maxq), p) - w[k])), power);
    return e;
}

} // namespace

class TestQuantizer : public QObject
{
    Q_OBJECT

private slots:
    void asymmetricByHand()
    {
        // Row [-1, 0, 0.5, 2], 2 bits, asymmetric, per channel:
        //   xmin = min(-1, 0) = -1, xmax = max(2, 0) = 2, scale = (2 - (-1)) / 3 = 1 (exact in fp16)
        //   zero = round(1 / 1) = 1
        //   codes: round(-1) + 1 = 0, round(0) + 1 = 1, round(0.5) + 1 = 0 + 1 = 1 (half to even!),
        //          round(2) + 1 = 3  ->  dequantized [-1, 0, 0, 2]
        const float w[] = {-1.0f, 0.0f, 0.5f, 2.0f};
        auto q = quantizeRtn(MatrixView{w, 1, 4}, QuantFormat{2, 0, false});
        QVERIFY(q);
        QCOMPARE(q->codes, (std::vector<std::uint8_t>{0, 1, 1, 3}));
        QCOMPARE(q->scales, std::vector<float>{1.0f});
        QCOMPARE(q->zeros, std::vector<float>{1.0f});
        QCOMPARE(dequantized(*q), (std::vector<float>{-1.0f, 0.0f, 0.0f, 2.0f}));
        QCOMPARE(q->groupsPerRow(), 1);
    }

    void symmetricByHand()
    {
        // 3 bits symmetric: zero = 2^(3-1) = 4, maxq = 7.
        // Row 0 [3.5, -1.5, 0.5, 2.6]: xmax = max(|-1.5|, 3.5) = 3.5, range [-3.5, 3.5],
        //   scale = 7 / 7 = 1; codes round(3.5) + 4 = 8 -> clamped to 7, round(-1.5) + 4 = -2 + 4 = 2,
        //   round(0.5) + 4 = 4, round(2.6) + 4 = 7  ->  [7, 2, 4, 7], dequantized [3, -2, 0, 3].
        // Row 1 [0.5, 1, 3.5, 2] has no negative weight; the range is still [-3.5, 3.5]
        //   (REFERENCE.md; the GPTQ repository would keep xmin = 0 here): codes [4, 5, 7, 6].
        const float w[] = {3.5f, -1.5f, 0.5f, 2.6f, 0.5f, 1.0f, 3.5f, 2.0f};
        auto q = quantizeRtn(MatrixView{w, 2, 4}, QuantFormat{3, 0, true});
        QVERIFY(q);
        QCOMPARE(q->codes, (std::vector<std::uint8_t>{7, 2, 4, 7, 4, 5, 7, 6}));
        QCOMPARE(q->scales, (std::vector<float>{1.0f, 1.0f}));
        QCOMPARE(q->zeros, (std::vector<float>{4.0f, 4.0f}));
        QCOMPARE(dequantized(*q), (std::vector<float>{3, -2, 0, 3, 0, 1, 3, 2}));
    }

    void perTensorByHand()
    {
        // 4 bits asymmetric over the whole 2x3 tensor [[-2, 0, 1], [0.5, 4, -1]]:
        //   xmin = -2, xmax = 4, scale = 6 / 15 = 0.4 -> fp16 0.39990234375 (stored and used)
        //   zero = round(2 / 0.39990234375) = round(5.0012) = 5
        //   codes: -2/s = -5.0012 -> 0; 0 -> 5; 1/s = 2.5006 -> 3 + 5 = 8;
        //          0.5/s = 1.2503 -> 6; 4/s = 10.0024 -> 15; -1/s = -2.5006 -> -3 + 5 = 2
        const float w[] = {-2.0f, 0.0f, 1.0f, 0.5f, 4.0f, -1.0f};
        auto q = quantizeRtn(MatrixView{w, 2, 3}, QuantFormat{4, -1, false});
        QVERIFY(q);
        QCOMPARE(q->codes, (std::vector<std::uint8_t>{0, 5, 8, 6, 15, 2}));
        QCOMPARE(q->scales, (std::vector<float>{0.39990234375f, 0.39990234375f}));
        QCOMPARE(q->zeros, (std::vector<float>{5.0f, 5.0f}));
        // One fp16 scale + one 4-bit zero for the tensor: (6*4 + 16 + 4) / 6 bits per weight.
        QCOMPARE(q->bitsPerWeight(), (6.0 * 4 + 20) / 6.0);
    }

    void groupsWithShortLastGroup()
    {
        // 10 columns in groups of 4: [0..3], [4..7] and a short [8..9]. 2 bits asymmetric.
        //   group 0 [-1, 0, 0.5, 2]: as asymmetricByHand: scale 1, zero 1, codes [0, 1, 1, 3]
        //   group 1 [0, 3, 1, 2]: xmin = 0, xmax = 3, scale 1, zero 0, codes [0, 3, 1, 2]
        //   group 2 [-0.75, -3]: xmin = -3, xmax = 0, scale 1, zero 3,
        //            codes round(-0.75) + 3 = 2, round(-3) + 3 = 0
        const float w[] = {-1, 0, 0.5f, 2, 0, 3, 1, 2, -0.75f, -3};
        auto q = quantizeRtn(MatrixView{w, 1, 10}, QuantFormat{2, 4, false});
        QVERIFY(q);
        QCOMPARE(q->groupsPerRow(), 3);
        QCOMPARE(q->codes, (std::vector<std::uint8_t>{0, 1, 1, 3, 0, 3, 1, 2, 2, 0}));
        QCOMPARE(q->scales, (std::vector<float>{1, 1, 1}));
        QCOMPARE(q->zeros, (std::vector<float>{1, 0, 3}));
        QCOMPARE(dequantized(*q), (std::vector<float>{-1, 0, 0, 2, 0, 3, 1, 2, -1, -3}));
    }

    void allZeroRow()
    {
        // xmin == xmax == 0 -> range [-1, 1]: scale = 2/15 -> fp16 0.13330078125,
        // zero = round(1 / 0.13330078125) = round(7.5018) = 8 (symmetric: 8 by definition);
        // every code is 8 and dequantizes to exactly 0.
        const float w[] = {0, 0, 0, 0};
        for (bool sym : {false, true}) {
            auto q = quantizeRtn(MatrixView{w, 1, 4}, QuantFormat{4, 0, sym});
            QVERIFY(q);
            QCOMPARE(q->codes, (std::vector<std::uint8_t>{8, 8, 8, 8}));
            QCOMPARE(q->scales, std::vector<float>{0.13330078125f});
            QCOMPARE(q->zeros, std::vector<float>{8.0f});
            QCOMPARE(dequantized(*q), (std::vector<float>{0, 0, 0, 0}));
        }
    }

    void clipByHand()
    {
        // Clip 1 on [-1, 0, 0.5, 2] (2 bits): 2 -> 1, range [-1, 1], scale 2/3 -> fp16 0.66650390625,
        // zero = round(1.5004) = 2, codes [-1.5004 -> -2 + 2 = 0, 2, 0.7502 -> 1 + 2 = 3, 1.5004 -> 2 + 2 = 4 -> 3].
        const float w[] = {-1.0f, 0.0f, 0.5f, 2.0f};
        const float clip[] = {1.0f};
        auto q = quantizeRtn(MatrixView{w, 1, 4}, QuantFormat{2, 0, false}, false, clip);
        QVERIFY(q);
        QCOMPARE(q->codes, (std::vector<std::uint8_t>{0, 2, 3, 3}));
        QCOMPARE(q->scales, std::vector<float>{0.66650390625f});
        QCOMPARE(q->zeros, std::vector<float>{2.0f});
    }

    void mseSearchNeverWorse()
    {
        // The grid search includes the min-max range (p = 1), so its p = 2.4 error can only go
        // down; on heavy-tailed rows the squared error drops as well.
        std::mt19937 rng(11);
        std::student_t_distribution<float> heavy(2.0f);
        const std::int64_t rows = 64;
        const std::int64_t cols = 128;
        std::vector<float> w(static_cast<std::size_t>(rows * cols));
        for (float &v : w)
            v = 0.02f * heavy(rng);
        for (int bits : {2, 3, 4, 8}) {
            for (bool sym : {false, true}) {
                const QuantFormat f{bits, 32, sym};
                double squaredPlain = 0;
                double squaredMse = 0;
                for (std::int64_t r = 0; r < rows; ++r) {
                    for (std::int64_t g = 0; g < cols / 32; ++g) {
                        const float *x = w.data() + r * cols + g * 32;
                        const QuantParams plain = findParams(x, 32, f, false);
                        const QuantParams searched = findParams(x, 32, f, true);
                        QVERIFY(normError(x, 32, searched, f.maxCode(), 2.4) <= normError(x, 32, plain, f.maxCode(), 2.4));
                        squaredPlain += normError(x, 32, plain, f.maxCode(), 2.0);
                        squaredMse += normError(x, 32, searched, f.maxCode(), 2.0);
                    }
                }
                QVERIFY2(squaredMse <= squaredPlain, qPrintable(QStringLiteral("%1-bit sym=%2: %3 > %4")
                                                                    .arg(bits).arg(sym).arg(squaredMse).arg(squaredPlain)));
                if (bits <= 4)
                    QVERIFY(squaredMse < squaredPlain);
            }
        }
    }

    void matchesPyTorchReference_data()
    {
        QTest::addColumn<QString>("name");
        const QJsonObject rtn =
            QJsonDocument::fromJson(readAll(quantData(QStringLiteral("reference.json")))).object()[QStringLiteral("rtn")].toObject();
        QVERIFY(!rtn.isEmpty());
        for (const QString &name : rtn.keys())
            QTest::newRow(qPrintable(name)) << name;
    }

    void matchesPyTorchReference()
    {
        QFETCH(QString, name);
        const QJsonObject f = QJsonDocument::fromJson(readAll(quantData(QStringLiteral("reference.json"))))
                                  .object()[QStringLiteral("rtn")]
                                  .toObject()[name]
                                  .toObject();
        std::vector<float> w, scales, zeros;
        std::vector<std::uint8_t> codes;
        std::vector<long> shape, s2;
        QVERIFY(readNpyF32(quantData(QStringLiteral("rtn_W.npy")), w, shape));
        QVERIFY(readNpyU8(quantData(QStringLiteral("rtn_%1_codes.npy").arg(name)), codes, s2));
        QVERIFY(readNpyF32(quantData(QStringLiteral("rtn_%1_scales.npy").arg(name)), scales, s2));
        QVERIFY(readNpyF32(quantData(QStringLiteral("rtn_%1_zeros.npy").arg(name)), zeros, s2));

        const QuantFormat format{f[QStringLiteral("bits")].toInt(), f[QStringLiteral("group")].toInt(),
                                 f[QStringLiteral("sym")].toBool()};
        auto q = quantizeRtn(MatrixView{w.data(), shape[0], shape[1]}, format, f[QStringLiteral("mse")].toBool());
        QVERIFY(q);
        std::int64_t same = 0;
        for (std::size_t i = 0; i < codes.size(); ++i)
            same += q->codes[i] == codes[i];
        qInfo("%s: %lld / %zu codes equal", qPrintable(name), static_cast<long long>(same), codes.size());
        QCOMPARE(q->codes, codes); // exact: same float operations in the same order
        QCOMPARE(q->scales, scales);
        QCOMPARE(q->zeros, zeros);
    }

    void bitsPerWeight()
    {
        // 4-bit, groups of 128, asymmetric: 4 + (16-bit scale + 4-bit zero) / 128 = 4.15625.
        std::vector<float> w(64 * 256, 0.5f);
        auto q = quantizeRtn(MatrixView{w.data(), 64, 256}, QuantFormat{4, 128, false});
        QVERIFY(q);
        QCOMPARE(q->bitsPerWeight(), 4.15625);
        // Symmetric stores no zeros: 4 + 16/128.
        q = quantizeRtn(MatrixView{w.data(), 64, 256}, QuantFormat{4, 128, true});
        QCOMPARE(q->bitsPerWeight(), 4.125);
        // Per channel: one scale + zero per 256-column row.
        q = quantizeRtn(MatrixView{w.data(), 64, 256}, QuantFormat{4, 0, false});
        QCOMPARE(q->bitsPerWeight(), 4.0 + 20.0 / 256.0);
        // 3-bit, g64 on 200 columns: 4 groups per row (the last one 8 columns wide).
        std::vector<float> w2(10 * 200, 0.5f);
        q = quantizeRtn(MatrixView{w2.data(), 10, 200}, QuantFormat{3, 64, false});
        QCOMPARE(q->groupsPerRow(), 4);
        QCOMPARE(q->bitsPerWeight(), 3.0 + 4.0 * (16 + 3) / 200.0);
    }

    void badInput()
    {
        std::vector<float> w(8, 0.25f);
        const MatrixView view{w.data(), 2, 4};
        for (int bits : {0, 1, 9, 16}) {
            auto q = quantizeRtn(view, QuantFormat{bits, 0, false});
            QVERIFY(!q);
            QCOMPARE(q.error().code, ErrorCode::InvalidArgument);
            QCOMPARE(q.error().parameter, QStringLiteral("bits"));
        }
        auto q = quantizeRtn(view, QuantFormat{4, -2, false});
        QVERIFY(!q);
        QCOMPARE(q.error().code, ErrorCode::InvalidArgument);
        QCOMPARE(q.error().parameter, QStringLiteral("group"));

        for (float bad : {std::nanf(""), std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()}) {
            w[6] = bad;
            q = quantizeRtn(view, QuantFormat{4, 0, false});
            QVERIFY(!q);
            QCOMPARE(q.error().code, ErrorCode::InvalidArgument);
            QVERIFY2(q.error().message.contains(QStringLiteral("row 1, column 2")), qPrintable(q.error().message));
        }
        w[6] = 0.25f;
        const float clip[] = {1.0f, -1.0f};
        q = quantizeRtn(view, QuantFormat{4, 0, false}, false, clip);
        QVERIFY(!q);
        QCOMPARE(q.error().parameter, QStringLiteral("clip"));
        // A group wider than the matrix is one (short) group, not an error.
        q = quantizeRtn(view, QuantFormat{4, 128, false});
        QVERIFY(q);
        QCOMPARE(q->groupsPerRow(), 1);
    }

    void smoothQuantByHand()
    {
        // X max |x| per channel [16, 1, 0], two linears; per channel max |w| over both:
        // [2, 0.5, 1]. α = 0.5: s = [sqrt(16)/sqrt(2), sqrt(1)/sqrt(0.5), 0 -> floor 1e-5]
        //                         = [2.828427, 1.414214, 1e-5].
        const float a[] = {1.0f, 0.5f, 1.0f, -0.5f, 0.25f, 0.0f};
        const float b[] = {-2.0f, 0.1f, 0.5f};
        const MatrixView linears[] = {{a, 2, 3}, {b, 1, 3}};
        const float act[] = {16.0f, 1.0f, 0.0f};
        auto s = smoothQuantScales(act, linears, 0.5);
        QVERIFY(s);
        QCOMPARE(s->size(), std::size_t{3});
        QVERIFY(std::fabs((*s)[0] - 2.8284271f) < 1e-6f);
        QVERIFY(std::fabs((*s)[1] - 1.4142135f) < 1e-6f);
        QCOMPARE((*s)[2], 1e-5f);
        // α = 1 moves everything into the weights: s = max|x| (floored).
        s = smoothQuantScales(act, linears, 1.0);
        QCOMPARE((*s)[0], 16.0f);

        QCOMPARE(smoothQuantScales(act, linears, 1.5).error().parameter, QStringLiteral("alpha"));
        const float shortAct[] = {1.0f, 2.0f};
        QCOMPARE(smoothQuantScales(shortAct, linears, 0.5).error().code, ErrorCode::Mismatch);

        const float x[] = {1.0f, -3.0f, 2.0f, 0.5f, 4.0f, -0.25f};
        QCOMPARE(columnAbsMax(MatrixView{x, 2, 3}), (std::vector<float>{1.0f, 4.0f, 2.0f}));
    }

    void int8PerChannel()
    {
        // Symmetric 8-bit: zero 128, scale 2·max|w|/255 in fp16; code − 128 is the int8 value.
        // The error is at most half a step, except at +max|w| (127.5 steps from zero, clamped to
        // 127) where fp16 rounding of the scale can add 127.5 · 2^-11 of a step: <= 0.563 steps.
        std::mt19937 rng(3);
        std::normal_distribution<float> nd(0.0f, 0.1f);
        std::vector<float> w(16 * 64);
        for (float &v : w)
            v = nd(rng);
        auto q = quantizeInt8PerChannel(MatrixView{w.data(), 16, 64});
        QVERIFY(q);
        QCOMPARE(q->format, (QuantFormat{8, 0, true}));
        for (std::int64_t r = 0; r < 16; ++r) {
            QCOMPARE(q->zero(r, 0), 128.0f);
            for (std::int64_t c = 0; c < 64; ++c)
                QVERIFY(std::fabs(q->value(r, c) - w[static_cast<std::size_t>(r * 64 + c)]) <= 0.563f * q->scale(r, 0));
        }
    }
};

QTEST_GUILESS_MAIN(TestQuantizer)
#include "tst_quantizer.moc"
