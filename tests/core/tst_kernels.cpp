// tst_kernels: the quantized linear kernels against references computed in double.
//   * PackedWeights: exact pack/unpack round trip for every bit width, the documented byte layout,
//     and rejection of corrupt stored parts.
//   * Packed kernel: every bit width x grouping x sym/asym x act-order, small and large batches
//     (GEMV and tiled-GEMM paths), every instruction-set variant this CPU has, compared with
//     x * dequantize(W)^T by normalized MSE under a named budget.
//   * Int8 W8A8: close to the f32 result (budget set by activation quantization), *bit-exact*
//     against a hand-written integer reference, and on oneDNN's brgemm implementation.
#include "core/kernels/int8linear.h"
#include "core/kernels/packedlinear.h"
#include "core/kernels/packedweights.h"

#include <QtCore/qfloat16.h>
#include <QtTest>

#include <algorithm>
#include <bit>
#include <cmath>
#include <numeric>
#include <random>

using namespace bitsmith::core;

namespace {

// Error budgets (normalized MSE, sum (y - ref)^2 / sum ref^2).
// The packed kernel is exact up to f32 summation order; the GEMV's zero-point factorisation
// (sum q*x - z * sum x) loses a few more bits for 8-bit codes, still ~1e-12 in practice.
constexpr double kPackedNmseBudget = 1e-10;
// W8A8 vs f32: per-token symmetric int8 rounding of Gaussian x adds noise of variance
// (amax/127)^2/12 per element, i.e. NMSE ~ (amax/sigma)^2 / (12 * 127^2) ~ 5e-5..1e-4 for
// amax = 3..4.5 sigma. Weight rounding is not part of it (the reference uses the 8-bit weights).
constexpr double kInt8NmseBudget = 1.5e-4;

struct Case
{
    std::int64_t rows = 0;
    std::int64_t cols = 0;
    QuantFormat format;
    bool actOrder = false;
    bool irregularGroups = false; // act-order with random group sizes (some groups empty)
    bool bias = false;
};

float fp16(float v)
{
    return static_cast<float>(qfloat16(v));
}

QuantizedTensor randomTensor(const Case &c, std::mt19937 &rng)
{
    QuantizedTensor t;
    t.rows = c.rows;
    t.cols = c.cols;
    t.format = c.format;
    std::uniform_int_distribution<int> code(0, c.format.maxCode());
    t.codes.resize(static_cast<std::size_t>(c.rows * c.cols));
    for (auto &v : t.codes)
        v = static_cast<std::uint8_t>(code(rng));
    const std::int64_t groups = t.groupsPerRow();
    std::uniform_real_distribution<float> scale(0.004f, 0.03f);
    t.scales.resize(static_cast<std::size_t>(c.rows * groups));
    t.zeros.resize(static_cast<std::size_t>(c.rows * groups));
    for (std::int64_t r = 0; r < c.rows; ++r) {
        const float rowScale = fp16(scale(rng));
        for (std::int64_t g = 0; g < groups; ++g) {
            const auto i = static_cast<std::size_t>(r * groups + g);
            // Per-tensor: one value for the whole tensor, stored per row.
            t.scales[i] = c.format.groupSize == -1 ? t.scales[0] == 0.0f ? rowScale : t.scales[0] : fp16(scale(rng));
            t.zeros[i] = c.format.symmetric ? static_cast<float>(1 << (c.format.bits - 1))
                                            : static_cast<float>(code(rng));
        }
    }
    if (c.actOrder) {
        t.groupIndex.resize(static_cast<std::size_t>(c.cols));
        if (c.irregularGroups) {
            std::uniform_int_distribution<int> g(0, static_cast<int>(groups) - 1);
            for (auto &v : t.groupIndex)
                v = g(rng);
        } else {
            // GPTQ act-order: columns are visited in a permuted order and grouped in that order.
            std::vector<std::int32_t> perm(static_cast<std::size_t>(c.cols));
            std::iota(perm.begin(), perm.end(), 0);
            std::shuffle(perm.begin(), perm.end(), rng);
            const std::int64_t gs = c.format.groupSize > 0 ? c.format.groupSize : c.cols;
            for (std::int64_t i = 0; i < c.cols; ++i)
                t.groupIndex[static_cast<std::size_t>(perm[static_cast<std::size_t>(i)])] = static_cast<std::int32_t>(i / gs);
        }
    }
    return t;
}

std::vector<float> gaussian(std::size_t n, std::mt19937 &rng)
{
    std::normal_distribution<float> d(0.0f, 1.0f);
    std::vector<float> v(n);
    for (auto &x : v)
        x = d(rng);
    return v;
}

// y = x * W^T + b in double, W given in f32 (the dequantized tensor).
std::vector<double> reference(const std::vector<float> &x, std::int64_t m, const std::vector<float> &w, std::int64_t n,
                              std::int64_t k, const float *bias)
{
    std::vector<double> y(static_cast<std::size_t>(m * n));
    for (std::int64_t i = 0; i < m; ++i)
        for (std::int64_t j = 0; j < n; ++j) {
            double s = bias ? bias[j] : 0.0;
            const float *xr = x.data() + i * k;
            const float *wr = w.data() + j * k;
            for (std::int64_t c = 0; c < k; ++c)
                s += static_cast<double>(xr[c]) * wr[c];
            y[static_cast<std::size_t>(i * n + j)] = s;
        }
    return y;
}

double nmse(const std::vector<float> &y, const std::vector<double> &ref)
{
    double num = 0, den = 0;
    for (std::size_t i = 0; i < y.size(); ++i) {
        const double d = y[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    return den > 0 ? num / den : num;
}

std::vector<KernelIsa> availableIsas()
{
    std::vector<KernelIsa> isas;
    for (KernelIsa isa : {KernelIsa::Scalar, KernelIsa::Avx2, KernelIsa::Avx512})
        if (kernelIsaSupported(isa))
            isas.push_back(isa);
    return isas;
}

QString caseName(const Case &c)
{
    const QuantFormat &f = c.format;
    const QString g = f.groupSize > 0 ? QStringLiteral("g%1").arg(f.groupSize)
                      : f.groupSize == 0 ? QStringLiteral("perchannel")
                                         : QStringLiteral("pertensor");
    return QStringLiteral("int%1 %2 %3%4 %5x%6")
        .arg(f.bits)
        .arg(g, f.symmetric ? QStringLiteral("sym") : QStringLiteral("asym"),
             c.actOrder ? (c.irregularGroups ? QStringLiteral(" actorder-irregular") : QStringLiteral(" actorder"))
                        : QString())
        .arg(c.rows)
        .arg(c.cols);
}

// The documented stream: bit i of a row is bit (i % 8) of byte (i / 8), packed column j at bits
// [j*b, j*b+b). Built bit by bit, independently of the packer.
std::vector<std::uint8_t> expectedStream(const QuantizedTensor &t, const std::vector<std::int32_t> &order)
{
    const std::int64_t rowBytes = (t.cols * t.format.bits + 7) / 8;
    std::vector<std::uint8_t> out(static_cast<std::size_t>(t.rows * rowBytes), 0);
    for (std::int64_t r = 0; r < t.rows; ++r)
        for (std::int64_t j = 0; j < t.cols; ++j) {
            const std::int64_t col = order.empty() ? j : order[static_cast<std::size_t>(j)];
            const int code = t.codes[static_cast<std::size_t>(r * t.cols + col)];
            for (int b = 0; b < t.format.bits; ++b)
                if (code >> b & 1) {
                    const std::int64_t bit = j * t.format.bits + b;
                    out[static_cast<std::size_t>(r * rowBytes + bit / 8)] |= static_cast<std::uint8_t>(1 << (bit % 8));
                }
        }
    return out;
}

struct IsaOverride
{
    explicit IsaOverride(const char *value) { qputenv("BITSMITH_ISA", value); }
    ~IsaOverride() { qunsetenv("BITSMITH_ISA"); }
};

} // namespace

Q_DECLARE_METATYPE(Case)

class TestKernels : public QObject
{
    Q_OBJECT

private slots:
    void packRoundTrip_data();
    void packRoundTrip();
    void packLayoutExamples();
    void fromPackedRejectsCorruptParts();
    void isaSelection();
    void packedKernel_data();
    void packedKernel();
    void int8Kernel_data();
    void int8Kernel();
    void int8Smoothing();
    void int8RejectsOtherFormats();
};

void TestKernels::packRoundTrip_data()
{
    QTest::addColumn<Case>("c");
    for (int bits = 2; bits <= 8; ++bits)
        for (int group : {32, 128, 0, -1})
            for (bool sym : {false, true})
                for (bool act : {false, true}) {
                    // 37 columns: rows end mid-byte for every odd width.
                    Case c{5, group == 128 ? 300 : 37, QuantFormat{bits, group, sym}, act && group != -1, false, false};
                    QTest::newRow(qPrintable(caseName(c))) << c;
                }
    Case irregular{4, 200, QuantFormat{3, 32, false}, true, true, false};
    QTest::newRow(qPrintable(caseName(irregular))) << irregular;
}

void TestKernels::packRoundTrip()
{
    QFETCH(Case, c);
    std::mt19937 rng(1234);
    const QuantizedTensor t = randomTensor(c, rng);
    auto packed = PackedWeights::pack(t);
    QVERIFY2(packed, qPrintable(packed ? QString() : packed.error().toString()));

    // Exact round trip.
    const QuantizedTensor back = packed->unpack();
    QCOMPARE(back.rows, t.rows);
    QCOMPARE(back.cols, t.cols);
    QVERIFY(back.format == t.format);
    QVERIFY(back.codes == t.codes);
    QVERIFY(back.scales == t.scales);
    QVERIFY(back.zeros == t.zeros);
    QVERIFY(back.groupIndex == t.groupIndex);

    // The byte layout is the documented bit-stream, in stable group order for act-order.
    std::vector<std::int32_t> order;
    if (!t.groupIndex.empty()) {
        order.resize(static_cast<std::size_t>(t.cols));
        std::iota(order.begin(), order.end(), 0);
        std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
            return t.groupIndex[static_cast<std::size_t>(a)] < t.groupIndex[static_cast<std::size_t>(b)];
        });
    }
    const auto bytes = packed->packedCodes();
    const std::vector<std::uint8_t> expected = expectedStream(t, order);
    QCOMPARE(static_cast<std::size_t>(bytes.size()), expected.size());
    QVERIFY(std::equal(bytes.begin(), bytes.end(), expected.begin()));
    QCOMPARE(packed->rowBytes(), (t.cols * t.format.bits + 7) / 8);

    // Runs cover [0, cols) with one group each.
    std::int64_t next = 0;
    for (const auto &run : packed->groupRuns()) {
        QCOMPARE(run.begin, next);
        QVERIFY(run.end > run.begin);
        for (std::int64_t j = run.begin; j < run.end; ++j) {
            const std::int64_t col = order.empty() ? j : order[static_cast<std::size_t>(j)];
            QCOMPARE(static_cast<std::int64_t>(run.group), t.groupOf(col));
        }
        next = run.end;
    }
    QCOMPARE(next, t.cols);

    // Loading the stored parts gives the same tensor.
    auto loaded = PackedWeights::fromPacked(t.rows, t.cols, t.format, bytes, t.scales, t.zeros, t.groupIndex);
    QVERIFY2(loaded, qPrintable(loaded ? QString() : loaded.error().toString()));
    const QuantizedTensor again = loaded->unpack();
    QVERIFY(again.codes == t.codes);
    QVERIFY(again.scales == t.scales && again.zeros == t.zeros && again.groupIndex == t.groupIndex);
}

void TestKernels::packLayoutExamples()
{
    // 4-bit: column 2i in the low nibble of byte i.
    QuantizedTensor t4;
    t4.rows = 1;
    t4.cols = 3;
    t4.format = {4, 0, true};
    t4.codes = {0x1, 0xA, 0x7};
    t4.scales = {1.0f};
    t4.zeros = {8.0f};
    auto p4 = PackedWeights::pack(t4);
    QVERIFY(p4);
    QCOMPARE(static_cast<int>(p4->packedCodes().size()), 2);
    QCOMPARE(static_cast<int>(p4->packedCodes()[0]), 0xA1);
    QCOMPARE(static_cast<int>(p4->packedCodes()[1]), 0x07);

    // 3-bit: eight codes in three bytes, LSB first.
    QuantizedTensor t3;
    t3.rows = 1;
    t3.cols = 8;
    t3.format = {3, 0, true};
    t3.codes = {1, 2, 3, 4, 5, 6, 7, 0};
    t3.scales = {1.0f};
    t3.zeros = {4.0f};
    auto p3 = PackedWeights::pack(t3);
    QVERIFY(p3);
    // bits: 001 010 011 100 101 110 111 000 (c0 first, LSB first) = 0x00FAC688 little-endian.
    const std::uint32_t v = 1u | 2u << 3 | 3u << 6 | 4u << 9 | 5u << 12 | 6u << 15 | 7u << 18 | 0u << 21;
    QCOMPARE(static_cast<int>(p3->packedCodes().size()), 3);
    QCOMPARE(static_cast<int>(p3->packedCodes()[0]), static_cast<int>(v & 0xFF));
    QCOMPARE(static_cast<int>(p3->packedCodes()[1]), static_cast<int>(v >> 8 & 0xFF));
    QCOMPARE(static_cast<int>(p3->packedCodes()[2]), static_cast<int>(v >> 16 & 0xFF));

    // 2-bit: four per byte.
    QuantizedTensor t2 = t3;
    t2.format = {2, 0, false};
    t2.codes = {3, 0, 1, 2, 1};
    t2.cols = 5;
    t2.zeros = {1.0f};
    auto p2 = PackedWeights::pack(t2);
    QVERIFY(p2);
    QCOMPARE(static_cast<int>(p2->packedCodes()[0]), 3 | 0 << 2 | 1 << 4 | 2 << 6);
    QCOMPARE(static_cast<int>(p2->packedCodes()[1]), 1);

    // Symmetric tensors may come without zeros.
    QuantizedTensor noZeros = t3;
    noZeros.zeros.clear();
    auto pz = PackedWeights::pack(noZeros);
    QVERIFY(pz);
    QCOMPARE(pz->zeroPoint(0, 0), 4.0f);
}

void TestKernels::fromPackedRejectsCorruptParts()
{
    std::mt19937 rng(7);
    const Case c{3, 40, QuantFormat{3, 32, false}, true, false, false};
    const QuantizedTensor t = randomTensor(c, rng);
    auto p = PackedWeights::pack(t);
    QVERIFY(p);
    std::vector<std::uint8_t> bytes(p->packedCodes().begin(), p->packedCodes().end());

    auto shortBytes = std::vector<std::uint8_t>(bytes.begin(), bytes.end() - 1);
    auto r1 = PackedWeights::fromPacked(t.rows, t.cols, t.format, shortBytes, t.scales, t.zeros, t.groupIndex);
    QVERIFY(!r1);
    QCOMPARE(r1.error().code, ErrorCode::Format);

    auto badIndex = t.groupIndex;
    badIndex[5] = 2; // only groups 0 and 1 exist
    QVERIFY(!PackedWeights::fromPacked(t.rows, t.cols, t.format, bytes, t.scales, t.zeros, badIndex));

    auto fewScales = t.scales;
    fewScales.pop_back();
    QVERIFY(!PackedWeights::fromPacked(t.rows, t.cols, t.format, bytes, fewScales, t.zeros, t.groupIndex));

    auto badZeros = t.zeros;
    badZeros[0] = 8.0f; // > 2^3 - 1
    QVERIFY(!PackedWeights::fromPacked(t.rows, t.cols, t.format, bytes, t.scales, badZeros, t.groupIndex));

    // 40 * 3 = 120 bits = 15 bytes exactly: no padding bits; use 41 columns to get some.
    const Case c41{2, 41, QuantFormat{3, 0, true}, false, false, false};
    const QuantizedTensor t41 = randomTensor(c41, rng);
    auto p41 = PackedWeights::pack(t41);
    QVERIFY(p41);
    std::vector<std::uint8_t> dirty(p41->packedCodes().begin(), p41->packedCodes().end());
    dirty[static_cast<std::size_t>(p41->rowBytes() - 1)] |= 0x80;
    auto r2 = PackedWeights::fromPacked(t41.rows, t41.cols, t41.format, dirty, t41.scales, t41.zeros, {});
    QVERIFY(!r2);
    QVERIFY(r2.error().message.contains(QStringLiteral("padding")));

    QuantizedTensor nine = t41;
    nine.format.bits = 9;
    QVERIFY(!PackedWeights::pack(nine));
    QuantizedTensor bigCode = t41;
    bigCode.codes[3] = 8;
    QVERIFY(!PackedWeights::pack(bigCode));
}

void TestKernels::isaSelection()
{
    std::mt19937 rng(3);
    const Case c{16, 64, QuantFormat{4, 32, false}, false, false, false};
    auto w = std::make_shared<const PackedWeights>(*PackedWeights::pack(randomTensor(c, rng)));
    {
        IsaOverride o("scalar");
        QCOMPARE(selectKernelIsa(), KernelIsa::Scalar);
        QVERIFY(makePackedLinear(w, nullptr)->description().endsWith(QStringLiteral("(scalar)")));
    }
    if (kernelIsaSupported(KernelIsa::Avx2)) {
        IsaOverride o("avx2");
        QCOMPARE(selectKernelIsa(), KernelIsa::Avx2);
        QVERIFY(makePackedLinear(w, nullptr)->description().endsWith(QStringLiteral("(avx2)")));
    }
    if (kernelIsaSupported(KernelIsa::Avx512)) {
        IsaOverride o("avx512");
        QCOMPARE(selectKernelIsa(), KernelIsa::Avx512);
    }
    // An explicit variant wins over the environment.
    IsaOverride o("scalar");
    const KernelIsa best = availableIsas().back();
    QVERIFY(makePackedLinear(w, nullptr, best)->description().endsWith(QStringLiteral("(%1)").arg(QLatin1String(kernelIsaName(best)))));
}

void TestKernels::packedKernel_data()
{
    QTest::addColumn<Case>("c");
    // Odd sizes: K = 320 is not a multiple of 128 (the last g128 group is short), N = 200 is not
    // a multiple of the 16-row chunks or the GEMM tile.
    for (int bits : {2, 3, 4, 5, 6, 8})
        for (int group : {32, 64, 128, 0})
            for (bool sym : {false, true})
                for (bool act : {false, true}) {
                    Case c{200, 320, QuantFormat{bits, group, sym}, act, false, (bits + group) % 2 == 0};
                    QTest::newRow(qPrintable(caseName(c))) << c;
                }
    for (int bits : {3, 4, 7}) {
        Case irregular{200, 320, QuantFormat{bits, 32, false}, true, true, true};
        QTest::newRow(qPrintable(caseName(irregular))) << irregular;
        Case perTensor{200, 320, QuantFormat{bits, -1, true}, false, false, true};
        QTest::newRow(qPrintable(caseName(perTensor))) << perTensor;
    }
    // A column count that is not a multiple of 8 (rows end mid-byte) and few rows.
    Case ragged{37, 201, QuantFormat{3, 32, false}, false, false, true};
    QTest::newRow(qPrintable(caseName(ragged))) << ragged;
    Case ragged4{7, 333, QuantFormat{4, 64, true}, true, false, false};
    QTest::newRow(qPrintable(caseName(ragged4))) << ragged4;
    // Wide rows: K is walked in several slices and long per-channel runs are cut into pieces.
    Case wide{96, 2500, QuantFormat{4, 0, false}, false, false, true};
    QTest::newRow(qPrintable(caseName(wide))) << wide;
    Case wideAct{97, 2500, QuantFormat{5, 128, false}, true, false, false};
    QTest::newRow(qPrintable(caseName(wideAct))) << wideAct;
    Case wide2{33, 3000, QuantFormat{2, 64, true}, false, false, true};
    QTest::newRow(qPrintable(caseName(wide2))) << wide2;
    // LLM-ish shapes.
    Case llm{1024, 1024, QuantFormat{4, 128, false}, false, false, true};
    QTest::newRow(qPrintable(caseName(llm))) << llm;
    Case llmAct{1024, 1024, QuantFormat{3, 64, true}, true, false, false};
    QTest::newRow(qPrintable(caseName(llmAct))) << llmAct;
}

void TestKernels::packedKernel()
{
    QFETCH(Case, c);
    std::mt19937 rng(static_cast<unsigned>(c.format.bits * 1000 + c.format.groupSize + 17 * c.actOrder + 3 * c.format.symmetric));
    const QuantizedTensor t = randomTensor(c, rng);
    auto packed = PackedWeights::pack(t);
    QVERIFY(packed);
    auto weights = std::make_shared<const PackedWeights>(std::move(*packed));
    std::vector<float> wdeq(static_cast<std::size_t>(c.rows * c.cols));
    t.dequantize(wdeq.data());
    std::vector<float> bias;
    if (c.bias)
        bias = gaussian(static_cast<std::size_t>(c.rows), rng);
    const float *b = c.bias ? bias.data() : nullptr;

    // M = 1, 3, 6, 16: GEMV (6 and 16 take several passes of rows of x); 70: tiled GEMM.
    static_assert(kPackedGemvMaxRows >= 16 && kPackedGemvMaxRows < 70);
    double worst = 0;
    for (std::int64_t m : {1, 3, 6, 16, 70}) {
        const std::vector<float> x = gaussian(static_cast<std::size_t>(m * c.cols), rng);
        const std::vector<double> ref = reference(x, m, wdeq, c.rows, c.cols, b);
        for (KernelIsa isa : availableIsas()) {
            auto kernel = makePackedLinear(weights, b, isa);
            QCOMPARE(kernel->inFeatures(), c.cols);
            QCOMPARE(kernel->outFeatures(), c.rows);
            std::vector<float> y(static_cast<std::size_t>(m * c.rows), std::nanf(""));
            kernel->forward(x.data(), m, y.data());
            const double e = nmse(y, ref);
            worst = std::max(worst, e);
            QVERIFY2(e <= kPackedNmseBudget, qPrintable(QStringLiteral("%1, M=%2: NMSE %3 > budget %4")
                                                            .arg(kernel->description())
                                                            .arg(m)
                                                            .arg(e)
                                                            .arg(kPackedNmseBudget)));
            // A second call reuses cached state (primitives, scratch) and must agree exactly.
            std::vector<float> y2(y.size());
            kernel->forward(x.data(), m, y2.data());
            QVERIFY(y2 == y);
        }
    }
    qInfo("%s: worst NMSE %.2e", qPrintable(caseName(c)), worst);
}

namespace {

// 8-bit symmetric per-channel weights: codes around 128 (zero 128), fp16 scale per row.
QuantizedTensor randomInt8(std::int64_t rows, std::int64_t cols, std::mt19937 &rng)
{
    QuantizedTensor t;
    t.rows = rows;
    t.cols = cols;
    t.format = {8, 0, true};
    std::normal_distribution<float> d(0.0f, 40.0f);
    t.codes.resize(static_cast<std::size_t>(rows * cols));
    for (auto &v : t.codes)
        v = static_cast<std::uint8_t>(std::clamp(128 + static_cast<int>(std::lround(d(rng))), 0, 255));
    std::uniform_real_distribution<float> s(0.001f, 0.01f);
    for (std::int64_t r = 0; r < rows; ++r) {
        t.scales.push_back(fp16(s(rng)));
        t.zeros.push_back(128.0f);
    }
    return t;
}

// The documented W8A8 computation, written out: quantize each row of x, accumulate in int64,
// scale in the same f32 order as the kernel.
std::vector<float> int8Reference(const QuantizedTensor &w, const std::vector<float> &x, std::int64_t m,
                                 const float *bias, const std::vector<float> &smoothing)
{
    const std::int64_t k = w.cols;
    std::vector<float> y(static_cast<std::size_t>(m * w.rows));
    std::vector<float> xs(static_cast<std::size_t>(k));
    std::vector<int> q(static_cast<std::size_t>(k));
    for (std::int64_t i = 0; i < m; ++i) {
        float amax = 0;
        for (std::int64_t c = 0; c < k; ++c) {
            float v = x[static_cast<std::size_t>(i * k + c)];
            if (!smoothing.empty())
                v = v * (1.0f / smoothing[static_cast<std::size_t>(c)]);
            xs[static_cast<std::size_t>(c)] = v;
            amax = std::max(amax, std::fabs(v));
        }
        const float a = amax / 127.0f;
        const float inv = 127.0f / amax;
        for (std::int64_t c = 0; c < k; ++c)
            q[static_cast<std::size_t>(c)] =
                amax > 0 ? static_cast<int>(std::clamp(std::nearbyint(xs[static_cast<std::size_t>(c)] * inv), -127.0f, 127.0f)) : 0;
        for (std::int64_t n = 0; n < w.rows; ++n) {
            std::int64_t acc = 0;
            for (std::int64_t c = 0; c < k; ++c)
                acc += static_cast<std::int64_t>(q[static_cast<std::size_t>(c)])
                       * (static_cast<int>(w.codes[static_cast<std::size_t>(n * k + c)]) - 128);
            float r = static_cast<float>(acc);
            r = r * w.scales[static_cast<std::size_t>(n)];
            r = r * a;
            if (bias)
                r = r + bias[n];
            y[static_cast<std::size_t>(i * w.rows + n)] = r;
        }
    }
    return y;
}

int countBitMismatches(const std::vector<float> &a, const std::vector<float> &b)
{
    int bad = 0;
    for (std::size_t i = 0; i < a.size(); ++i)
        bad += std::bit_cast<std::uint32_t>(a[i]) != std::bit_cast<std::uint32_t>(b[i]);
    return bad;
}

} // namespace

void TestKernels::int8Kernel_data()
{
    QTest::addColumn<qint64>("rows");
    QTest::addColumn<qint64>("cols");
    QTest::addColumn<bool>("withBias");
    QTest::newRow("200x320 bias") << qint64(200) << qint64(320) << true;
    QTest::newRow("200x320") << qint64(200) << qint64(320) << false;
    QTest::newRow("77x333 bias") << qint64(77) << qint64(333) << true;
    QTest::newRow("1024x1024 bias") << qint64(1024) << qint64(1024) << true;
}

void TestKernels::int8Kernel()
{
    QFETCH(qint64, rows);
    QFETCH(qint64, cols);
    QFETCH(bool, withBias);
    std::mt19937 rng(static_cast<unsigned>(rows + cols));
    const QuantizedTensor w = randomInt8(rows, cols, rng);
    std::vector<float> wdeq(static_cast<std::size_t>(rows * cols));
    w.dequantize(wdeq.data());
    const std::vector<float> bias = gaussian(static_cast<std::size_t>(rows), rng);
    const float *b = withBias ? bias.data() : nullptr;

    for (const char *isa : {"scalar", "avx512"}) {
        IsaOverride o(isa); // the activation quantizer has both variants; results must not differ
        auto kernel = Int8Linear::create(w, b);
        QVERIFY2(kernel, qPrintable(kernel ? QString() : kernel.error().toString()));
        double worst = 0;
        for (std::int64_t m : {1, 3, 16, 70}) {
            const QString impl = (*kernel)->implementation(m);
            QVERIFY2(impl.startsWith(QStringLiteral("brg")) && impl.contains(QStringLiteral("vnni")),
                     qPrintable(QStringLiteral("M=%1 runs on %2, not brgemm/VNNI").arg(m).arg(impl)));
            std::vector<float> x = gaussian(static_cast<std::size_t>(m * cols), rng);
            if (m == 3)
                std::fill(x.begin() + cols, x.begin() + 2 * cols, 0.0f); // an all-zero token
            std::vector<float> y(static_cast<std::size_t>(m * rows));
            (*kernel)->forward(x.data(), m, y.data());

            const std::vector<float> exact = int8Reference(w, x, m, b, {});
            const int mismatches = countBitMismatches(y, exact);
            QVERIFY2(mismatches == 0, qPrintable(QStringLiteral("%1 ISA=%2 M=%3: %4 of %5 outputs differ from the integer "
                                                                "reference")
                                                     .arg(impl, QLatin1String(isa))
                                                     .arg(m)
                                                     .arg(mismatches)
                                                     .arg(y.size())));

            const double e = nmse(y, reference(x, m, wdeq, rows, cols, b));
            worst = std::max(worst, e);
            QVERIFY2(e <= kInt8NmseBudget, qPrintable(QStringLiteral("M=%1: NMSE vs f32 %2 > budget %3").arg(m).arg(e).arg(kInt8NmseBudget)));
        }
        qInfo("int8 %lldx%lld (%s quantizer, %s): worst NMSE vs f32 %.2e", static_cast<long long>(rows),
              static_cast<long long>(cols), isa, qPrintable((*kernel)->implementation(16)), worst);
    }
}

void TestKernels::int8Smoothing()
{
    std::mt19937 rng(99);
    const std::int64_t rows = 64, cols = 160;
    const QuantizedTensor w = randomInt8(rows, cols, rng);
    std::vector<float> smoothing(static_cast<std::size_t>(cols));
    std::uniform_real_distribution<float> s(0.25f, 4.0f);
    for (auto &v : smoothing)
        v = s(rng);
    auto kernel = Int8Linear::create(w, nullptr, smoothing);
    QVERIFY(kernel);
    const std::int64_t m = 5;
    std::vector<float> x = gaussian(static_cast<std::size_t>(m * cols), rng);
    for (std::int64_t c = 0; c < cols; c += 7)
        x[static_cast<std::size_t>(c)] *= 30.0f; // outlier channels, what smoothing is for
    std::vector<float> y(static_cast<std::size_t>(m * rows));
    (*kernel)->forward(x.data(), m, y.data());
    QCOMPARE(countBitMismatches(y, int8Reference(w, x, m, nullptr, smoothing)), 0);

    auto wrong = Int8Linear::create(w, nullptr, std::vector<float>(static_cast<std::size_t>(cols - 1), 1.0f));
    QVERIFY(!wrong);
    QCOMPARE(wrong.error().code, ErrorCode::Mismatch);
}

void TestKernels::int8RejectsOtherFormats()
{
    std::mt19937 rng(5);
    QuantizedTensor w = randomInt8(8, 64, rng);
    QuantizedTensor asym = w;
    asym.zeros[2] = 120.0f;
    QVERIFY(!makeInt8Linear(asym, nullptr));
    const QuantizedTensor four = randomTensor(Case{8, 64, QuantFormat{4, 32, false}, false, false, false}, rng);
    auto r = makeInt8Linear(four, nullptr);
    QVERIFY(!r);
    QCOMPARE(r.error().code, ErrorCode::Unsupported);
    QVERIFY(!r.error().hint.isEmpty());
    QVERIFY(makeInt8Linear(w, nullptr));
}

QTEST_GUILESS_MAIN(TestKernels)
#include "tst_kernels.moc"
