// tst_gguf.cpp: the GGUF reader/writer and the ggml block formats against the numpy reference
// (tools/gguf_reference.py -> tests/data/gguf/): dequantization of random blocks, a reference
// file read and re-written byte for byte, quantize -> write -> read -> dequantize round trips with
// an NMSE budget per type, Bitsmith's codes written exactly, and malformed files.
#include "core/gguf/ggmltype.h"
#include "core/gguf/gguffile.h"
#include "core/dtype.h"
#include "core/random.h"
#include "testutil.h"

#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTemporaryDir>
#include <QtTest>

#include <cmath>
#include <cstring>
#include <random>

using namespace bitsmith::core;
using namespace bitsmith::core::gguf;
using namespace bitsmith::test;

namespace {

QString ggufData(const QString &name)
{
    return testDataDir() + QStringLiteral("/gguf/") + name;
}

double nmse(const std::vector<float> &ref, const std::vector<float> &x)
{
    double num = 0, den = 0;
    for (std::size_t i = 0; i < ref.size(); ++i) {
        num += (static_cast<double>(ref[i]) - x[i]) * (static_cast<double>(ref[i]) - x[i]);
        den += static_cast<double>(ref[i]) * ref[i];
    }
    return den > 0 ? num / den : num;
}

// Gaussian weights with a few outliers, like a linear layer.
std::vector<float> randomWeights(std::int64_t n, unsigned seed)
{
    std::mt19937 gen(seed);
    std::normal_distribution<float> dist(0.0f, 0.02f);
    std::vector<float> w(static_cast<std::size_t>(n));
    for (auto &v : w)
        v = dist(gen);
    for (std::int64_t i = 0; i < n; i += 97)
        w[static_cast<std::size_t>(i)] *= 6.0f;
    return w;
}

bool writeBytes(const QString &path, const QByteArray &bytes)
{
    QFile f(path);
    return f.open(QIODevice::WriteOnly) && f.write(bytes) == bytes.size();
}

template<typename T>
void putAt(QByteArray &b, qsizetype pos, T v)
{
    std::memcpy(b.data() + pos, &v, sizeof v);
}

// A small valid file: two metadata keys and two tensors.
QByteArray smallFile()
{
    GgufWriter w;
    w.set(QStringLiteral("general.architecture"), GgufValue::string("llama"));
    w.set(QStringLiteral("test.arr"), GgufValue::intArray(GgufValueType::I32, {1, 2, 3}));
    std::vector<float> x = randomWeights(64, 3);
    std::vector<std::uint8_t> raw(static_cast<std::size_t>(ggmlBytes(GgmlType::Q8_0, 64)));
    quantizeRow(GgmlType::Q8_0, x.data(), raw.data(), 64);
    std::vector<std::uint8_t> f32(x.size() * 4);
    std::memcpy(f32.data(), x.data(), f32.size());
    (void)w.addTensor(QStringLiteral("t.q8"), {32, 2}, GgmlType::Q8_0, raw);
    (void)w.addTensor(QStringLiteral("t.f32"), {64}, GgmlType::F32, f32);
    return w.toBytes();
}

} // namespace

class TestGguf : public QObject
{
    Q_OBJECT

private slots:
    void typeTable()
    {
        QCOMPARE(ggmlTypeSize(GgmlType::Q4_0), 18);
        QCOMPARE(ggmlTypeSize(GgmlType::Q6_K), 210);
        QCOMPARE(ggmlBlockSize(GgmlType::Q3_K), 256);
        QCOMPARE(ggmlBitsPerWeight(GgmlType::Q4_K), 4.5);
        QCOMPARE(ggmlBitsPerWeight(GgmlType::Q8_0), 8.5);
        QCOMPARE(ggmlBytes(GgmlType::Q4_K, 100), std::int64_t(-1));
        QCOMPARE(*ggmlTypeFromName(QStringLiteral("q5_k")), GgmlType::Q5_K);
        QVERIFY(!ggmlTypeFromId(9)); // Q8_1: not read
        QCOMPARE(*ggmlTypeFromId(30), GgmlType::BF16);
    }

    void dequantizeMatchesReference_data()
    {
        QTest::addColumn<QString>("type");
        for (GgmlType t : supportedGgmlTypes())
            QTest::newRow(ggmlTypeName(t)) << QString::fromLatin1(ggmlTypeName(t));
    }
    void dequantizeMatchesReference()
    {
        QFETCH(QString, type);
        std::vector<std::uint8_t> blocks;
        std::vector<float> expected;
        std::vector<long> bs, es;
        QVERIFY(readNpyU8(ggufData(QStringLiteral("blocks_%1.npy").arg(type)), blocks, bs));
        QVERIFY(readNpyF32(ggufData(QStringLiteral("deq_%1.npy").arg(type)), expected, es));
        const GgmlType t = *ggmlTypeFromName(type);
        QCOMPARE(es.size(), std::size_t(2));
        const std::int64_t cols = es[1];
        QCOMPARE(static_cast<std::int64_t>(bs[1]), ggmlBytes(t, cols));
        std::vector<float> got(expected.size());
        for (int r = 0; r < 2; ++r)
            dequantizeRow(t, blocks.data() + r * bs[1], got.data() + r * cols, cols);
        float scale = 0;
        for (float v : expected)
            scale = std::max(scale, std::fabs(v));
        QVERIFY(scale > 0);
        // Same float32 formulas in the same order: equal up to the last bit of the largest value.
        QVERIFY2(maxAbsDiff(got, expected) <= scale * 1e-6f, qPrintable(QString::number(maxAbsDiff(got, expected))));
    }

    void readsReferenceFile()
    {
        auto file = GgufFile::open(ggufData(QStringLiteral("reference.gguf")));
        QVERIFY2(file, file ? "" : qPrintable(file.error().toString()));
        const GgufFile &g = **file;
        QCOMPARE(g.version(), 3u);
        QCOMPARE(g.alignment(), std::uint64_t(64));
        QCOMPARE(g.dataOffset() % 64, std::uint64_t(0));
        const QJsonObject ref = QJsonDocument::fromJson(readAll(ggufData(QStringLiteral("reference.json")))).object();
        const QJsonObject meta = ref.value(QLatin1String("metadata")).toObject();
        QCOMPARE(g.metadata().size(), static_cast<std::size_t>(meta.size()));
        for (auto it = meta.begin(); it != meta.end(); ++it) {
            const QString type = it.value().toObject().value(QLatin1String("type")).toString();
            const QJsonValue value = it.value().toObject().value(QLatin1String("value"));
            const GgufValue *v = g.find(it.key());
            QVERIFY2(v, qPrintable(it.key()));
            if (type.startsWith(QLatin1String("arr:"))) {
                QVERIFY(v->isArray);
                const QJsonArray a = value.toArray();
                QCOMPARE(v->count(), static_cast<std::size_t>(a.size()));
                for (qsizetype i = 0; i < a.size(); ++i) {
                    if (type == QLatin1String("arr:str"))
                        QCOMPARE(QString::fromUtf8(v->strings[static_cast<std::size_t>(i)]), a[i].toString());
                    else if (type == QLatin1String("arr:f32"))
                        QCOMPARE(v->floats[static_cast<std::size_t>(i)], a[i].toDouble());
                    else
                        QCOMPARE(v->ints[static_cast<std::size_t>(i)], static_cast<std::int64_t>(a[i].toDouble()));
                }
                continue;
            }
            QVERIFY(!v->isArray);
            QCOMPARE(QString::fromLatin1(ggufValueTypeName(v->type)), type);
            if (type == QLatin1String("str"))
                QCOMPARE(*g.stringValue(it.key()), value.toString());
            else if (type == QLatin1String("f32"))
                QCOMPARE(*g.floatValue(it.key()), static_cast<double>(static_cast<float>(value.toDouble())));
            else if (type == QLatin1String("f64"))
                QCOMPARE(*g.floatValue(it.key()), value.toDouble());
            else if (type == QLatin1String("bool"))
                QCOMPARE(*g.intValue(it.key()), std::int64_t(value.toBool() ? 1 : 0));
            else
                QCOMPARE(*g.intValue(it.key()), value.toInteger());
        }
        const QJsonObject tensors = ref.value(QLatin1String("tensors")).toObject();
        QCOMPARE(g.tensors().size(), static_cast<std::size_t>(tensors.size()));
        for (auto it = tensors.begin(); it != tensors.end(); ++it) {
            const GgufTensorInfo *t = g.findTensor(it.key());
            QVERIFY(t);
            const QJsonObject o = it.value().toObject();
            QCOMPARE(QString::fromLatin1(ggmlTypeName(t->type)), o.value(QLatin1String("type")).toString());
            std::vector<std::int64_t> shape;
            for (const QJsonValue &d : o.value(QLatin1String("shape")).toArray())
                shape.push_back(d.toInteger());
            QVERIFY(t->shape() == shape);
            const std::vector<float> values = g.dequantize(*t);
            if (o.contains(QLatin1String("values"))) {
                const QJsonArray a = o.value(QLatin1String("values")).toArray();
                for (qsizetype i = 0; i < a.size(); ++i)
                    QCOMPARE(values[static_cast<std::size_t>(i)], static_cast<float>(a[i].toDouble()));
            } else {
                std::vector<float> expected;
                std::vector<long> es;
                QVERIFY(readNpyF32(ggufData(QStringLiteral("deq_%1.npy").arg(ggmlTypeName(t->type))), expected, es));
                QVERIFY(maxAbsDiff(values, expected) <= 1e-6f);
            }
        }
    }

    // The writer reproduces the reference file byte for byte from the same content.
    void writerMatchesReferenceBytes()
    {
        const QJsonObject ref = QJsonDocument::fromJson(readAll(ggufData(QStringLiteral("reference.json")))).object();
        auto file = GgufFile::open(ggufData(QStringLiteral("reference.gguf")));
        QVERIFY(file);
        GgufWriter w;
        for (const auto &[k, v] : (*file)->metadata()) // same keys, values and order
            w.set(k, v);
        for (const GgufTensorInfo &t : (*file)->tensors()) {
            auto bytes = (*file)->tensorBytes(t);
            QVERIFY(w.addTensor(t.name, t.dims, t.type, {bytes.begin(), bytes.end()}));
        }
        QCOMPARE(w.toBytes(), readAll(ggufData(QStringLiteral("reference.gguf"))));
        QVERIFY(!ref.isEmpty());
    }

    void roundTrip_data()
    {
        QTest::addColumn<QString>("type");
        QTest::addColumn<double>("budget");
        // NMSE budgets on Gaussian weights with 6-sigma outliers every 97 values, which set most
        // block ranges (measured: Q8_0 5.9e-5, Q6_K 5.6e-4, Q5_0 4.0e-3, Q5_1 2.0e-3, Q5_K 1.9e-3,
        // Q4_0 1.4e-2, Q4_1 8.2e-3, Q4_K 7.5e-3, Q3_K 3.1e-2, Q2_K 8.3e-2).
        QTest::newRow("F32") << "F32" << 0.0;
        QTest::newRow("F16") << "F16" << 1e-6;
        QTest::newRow("BF16") << "BF16" << 2e-5;
        QTest::newRow("Q8_0") << "Q8_0" << 1e-4;
        QTest::newRow("Q6_K") << "Q6_K" << 1e-3;
        QTest::newRow("Q5_0") << "Q5_0" << 6e-3;
        QTest::newRow("Q5_1") << "Q5_1" << 3e-3;
        QTest::newRow("Q5_K") << "Q5_K" << 3e-3;
        QTest::newRow("Q4_0") << "Q4_0" << 2e-2;
        QTest::newRow("Q4_1") << "Q4_1" << 1.2e-2;
        QTest::newRow("Q4_K") << "Q4_K" << 1.2e-2;
        QTest::newRow("Q3_K") << "Q3_K" << 5e-2;
        QTest::newRow("Q2_K") << "Q2_K" << 1.2e-1;
    }
    void roundTrip()
    {
        QFETCH(QString, type);
        QFETCH(double, budget);
        const GgmlType t = *ggmlTypeFromName(type);
        const std::int64_t rows = 8, cols = 512;
        const std::vector<float> w = randomWeights(rows * cols, 11);
        std::vector<std::uint8_t> raw(static_cast<std::size_t>(ggmlBytes(t, rows * cols)));
        for (std::int64_t r = 0; r < rows; ++r)
            quantizeRow(t, w.data() + r * cols, raw.data() + r * ggmlBytes(t, cols), cols);
        GgufWriter writer;
        writer.set(QStringLiteral("general.architecture"), GgufValue::string("llama"));
        QVERIFY(writer.addTensor(QStringLiteral("w"), {cols, rows}, t, raw));
        QTemporaryDir dir;
        const QString path = dir.filePath(QStringLiteral("w.gguf"));
        QVERIFY(writer.write(path));
        auto file = GgufFile::open(path);
        QVERIFY2(file, file ? "" : qPrintable(file.error().toString()));
        const GgufTensorInfo *info = (*file)->findTensor(QStringLiteral("w"));
        QVERIFY(info);
        QCOMPARE(info->type, t);
        QVERIFY((info->shape() == std::vector<std::int64_t>{rows, cols}));
        const std::vector<float> back = (*file)->dequantize(*info);
        const double e = nmse(w, back);
        qInfo("%s NMSE %.3g (budget %.3g)", qPrintable(type), e, budget);
        QVERIFY2(e <= budget, qPrintable(QStringLiteral("NMSE %1 > %2").arg(e).arg(budget)));
        if (t != GgmlType::F32)
            QVERIFY(e > 0); // a lossy type that came back exact would mean nothing was quantized
        // Quantizing the dequantized values again is stable for the block types with fp16 scales
        // (the same grid is found), which checks the quantizer against the dequantizer.
        if (t == GgmlType::Q8_0 || t == GgmlType::Q4_1 || t == GgmlType::F16) {
            std::vector<std::uint8_t> again(raw.size());
            for (std::int64_t r = 0; r < rows; ++r)
                quantizeRow(t, back.data() + r * cols, again.data() + r * ggmlBytes(t, cols), cols);
            std::vector<float> back2(back.size());
            dequantizeRow(t, again.data(), back2.data(), rows * cols);
            QVERIFY(nmse(back, back2) < 1e-6);
        }
    }

    // Bitsmith's codes, scales and zeros written as Q4_0/Q5_0/Q8_0/Q4_1/Q5_1 blocks dequantize to
    // exactly Bitsmith's values, and decode back to the same codes.
    void exactCodes_data()
    {
        QTest::addColumn<int>("bits");
        QTest::addColumn<bool>("symmetric");
        QTest::addColumn<QString>("type");
        QTest::newRow("w4 sym") << 4 << true << "Q4_0";
        QTest::newRow("w5 sym") << 5 << true << "Q5_0";
        QTest::newRow("w8 sym") << 8 << true << "Q8_0";
        QTest::newRow("w4 asym") << 4 << false << "Q4_1";
        QTest::newRow("w5 asym") << 5 << false << "Q5_1";
    }
    void exactCodes()
    {
        QFETCH(int, bits);
        QFETCH(bool, symmetric);
        QFETCH(QString, type);
        const GgmlType t = *ggmlTypeFromName(type);
        QuantizedTensor q;
        q.rows = 4;
        q.cols = 96;
        q.format = {bits, 32, symmetric};
        QCOMPARE(*exactBlockType(q.format), t);
        std::mt19937 gen(5);
        for (std::int64_t i = 0; i < q.rows * q.cols; ++i)
            q.codes.push_back(static_cast<std::uint8_t>(gen() % (1u << bits)));
        for (std::int64_t g = 0; g < q.rows * 3; ++g) {
            // scales of few mantissa bits, so that scale*zero is an fp16 value as well
            q.scales.push_back(static_cast<float>(1 + gen() % 64) / 4096.0f);
            if (!symmetric)
                q.zeros.push_back(static_cast<float>(gen() % (1u << bits)));
        }
        EncodeStats stats;
        auto raw = encodeQuantized(q, t, &stats);
        QVERIFY2(raw, raw ? "" : qPrintable(raw.error().toString()));
        QCOMPARE(stats.groups, std::int64_t(12));
        QCOMPARE(stats.inexactGroups, std::int64_t(0));
        std::vector<float> got(static_cast<std::size_t>(q.rows * q.cols));
        dequantizeRow(t, raw->data(), got.data(), q.rows * q.cols);
        QCOMPARE(maxAbsDiff(got, dequantized(q)), 0.0f);
        auto back = decodeToQuantized(t, raw->data(), q.rows, q.cols);
        QVERIFY(back);
        QVERIFY(back->codes == q.codes);
        QVERIFY(back->scales == q.scales);
        if (!symmetric)
            QVERIFY(back->zeros == q.zeros);
        QCOMPARE(maxAbsDiff(dequantized(*back), dequantized(q)), 0.0f);

        // Scales with all 11 fp16 mantissa bits: for the _1 types m = -scale*zero is then mostly
        // not an fp16 value; codes are kept and m rounded, within half an fp16 step of m.
        for (auto &s : q.scales)
            s = halfToFloat(floatToHalf(0.01f + static_cast<float>(gen() % 1000) * 1.37e-5f));
        raw = encodeQuantized(q, t, &stats);
        QVERIFY(raw);
        dequantizeRow(t, raw->data(), got.data(), q.rows * q.cols);
        if (symmetric) {
            QCOMPARE(stats.inexactGroups, std::int64_t(0));
            QCOMPARE(maxAbsDiff(got, dequantized(q)), 0.0f);
        } else {
            QVERIFY(stats.inexactGroups > 0);
            QVERIFY(stats.maxAbsDeviation > 0 && stats.maxAbsDeviation < 0.0005);
            QVERIFY(maxAbsDiff(got, dequantized(q)) <= stats.maxAbsDeviation * 1.01 + 1e-7);
        }
    }

    void exactCodesRejectsOtherFormats()
    {
        QuantizedTensor q;
        q.rows = 1;
        q.cols = 32;
        q.format = {4, 128, false};
        q.codes.assign(32, 1);
        q.scales = {0.5f};
        q.zeros = {1.0f};
        QVERIFY(!exactBlockType(q.format));
        QVERIFY(!encodeQuantized(q, GgmlType::Q4_1));
        q.format.groupSize = 32;
        q.groupIndex.assign(32, 0);
        QVERIFY(!encodeQuantized(q, GgmlType::Q4_1)); // act-order
        // llama.cpp's own Q4_0 (negative d) is not turned into Bitsmith codes.
        std::vector<float> x = randomWeights(32, 1);
        x[0] = 1.0f; // largest magnitude positive -> d = max / -8 < 0
        std::vector<std::uint8_t> raw(18);
        quantizeRow(GgmlType::Q4_0, x.data(), raw.data(), 32);
        QVERIFY(!decodeToQuantized(GgmlType::Q4_0, raw.data(), 1, 32));
    }

    void malformed_data()
    {
        QTest::addColumn<QByteArray>("bytes");
        QTest::addColumn<int>("code");
        QTest::addColumn<QString>("message");
        const QByteArray good = smallFile();
        const auto fmt = static_cast<int>(ErrorCode::Format);
        const auto unsup = static_cast<int>(ErrorCode::Unsupported);
        // offsets in smallFile(): header 24 bytes; key 0 "general.architecture" (8 + 20), type
        // (4), value (8 + 5); key 1 "test.arr" at 69: (8 + 8), type 9, elem type, count
        const qsizetype key1 = 24 + 8 + 20 + 4 + 8 + 5;
        const qsizetype arrCount = key1 + 16 + 4 + 4;
        const qsizetype tensor0 = arrCount + 8 + 3 * 4;
        {
            QByteArray b = good;
            b[0] = 'X';
            QTest::newRow("bad magic") << b << fmt << "bad magic";
        }
        {
            QByteArray b = good;
            putAt<std::uint32_t>(b, 4, 1);
            QTest::newRow("version 1") << b << unsup << "version 1";
            putAt<std::uint32_t>(b, 4, 4);
            QTest::newRow("version 4") << b << unsup << "version 4";
        }
        QTest::newRow("empty") << QByteArray() << fmt << "too small";
        QTest::newRow("header only") << good.left(24) << fmt << "absurd";
        {
            QByteArray b = good;
            putAt<std::uint64_t>(b, 16, std::uint64_t(1) << 60);
            QTest::newRow("absurd kv count") << b << fmt << "absurd metadata count";
            b = good;
            putAt<std::uint64_t>(b, 8, std::uint64_t(1) << 60);
            QTest::newRow("absurd tensor count") << b << fmt << "absurd tensor count";
            b = good;
            putAt<std::uint64_t>(b, 24, std::uint64_t(1) << 62);
            QTest::newRow("absurd string length") << b << fmt << "truncated metadata";
            b = good;
            putAt<std::uint64_t>(b, arrCount, std::uint64_t(1) << 61);
            QTest::newRow("absurd array count") << b << fmt << "exceeds the file";
            b = good;
            putAt<std::uint32_t>(b, arrCount - 4, 9);
            QTest::newRow("nested array") << b << unsup << "nested arrays";
            b = good;
            putAt<std::uint32_t>(b, key1 + 16, 77);
            QTest::newRow("unknown value type") << b << fmt << "unknown value type";
        }
        {
            // tensor 0: name (8 + 4), n_dims, dims (2 x 8), type, offset
            QByteArray b = good;
            putAt<std::uint32_t>(b, tensor0 + 12, 5);
            QTest::newRow("5 dims") << b << fmt << "dimensions";
            b = good;
            putAt<std::uint64_t>(b, tensor0 + 16, std::uint64_t(1) << 50);
            QTest::newRow("absurd dim") << b << fmt << "absurd tensor dimension";
            b = good;
            putAt<std::uint64_t>(b, tensor0 + 16, 0);
            QTest::newRow("zero dim") << b << fmt << "absurd tensor dimension";
            b = good;
            putAt<std::uint32_t>(b, tensor0 + 32, 99);
            QTest::newRow("unknown ggml type") << b << unsup << "ggml type 99";
            b = good;
            putAt<std::uint64_t>(b, tensor0 + 36, 8);
            QTest::newRow("misaligned offset") << b << fmt << "not aligned";
            b = good;
            putAt<std::uint64_t>(b, tensor0 + 36, std::uint64_t(1) << 40);
            QTest::newRow("offset outside") << b << fmt << "outside the data section";
            b = good;
            putAt<std::uint64_t>(b, tensor0 + 16, 48); // not a multiple of the block size 32
            QTest::newRow("partial block") << b << fmt << "block size";
            b = good;
            putAt<std::uint64_t>(b, tensor0 + 16, 64);
            putAt<std::uint64_t>(b, tensor0 + 24, 1000);
            QTest::newRow("data past the end") << b << fmt << "outside the data section";
        }
        QTest::newRow("truncated data") << good.left(good.size() - 40) << fmt << "outside the data section";
    }
    void malformed()
    {
        QFETCH(QByteArray, bytes);
        QFETCH(int, code);
        QFETCH(QString, message);
        QTemporaryDir dir;
        const QString path = dir.filePath(QStringLiteral("bad.gguf"));
        QVERIFY(writeBytes(path, bytes));
        auto file = GgufFile::open(path);
        QVERIFY(!file);
        QCOMPARE(static_cast<int>(file.error().code), code);
        QVERIFY2(file.error().toString().contains(message), qPrintable(file.error().toString()));
        QCOMPARE(file.error().file, path);
    }

    // Every truncation and many random corruptions of a valid file: an error or a consistent
    // file, never a crash (run under ASan in the sanitizer build).
    void truncationsAndCorruptions()
    {
        const QByteArray good = smallFile();
        QTemporaryDir dir;
        const QString path = dir.filePath(QStringLiteral("f.gguf"));
        QVERIFY(writeBytes(path, good));
        QVERIFY(GgufFile::open(path));
        for (qsizetype n = 0; n < good.size(); n += 3) {
            QVERIFY(writeBytes(path, good.left(n)));
            auto file = GgufFile::open(path);
            // the last tensor's data ends before the final alignment padding
            if (file)
                QVERIFY(n >= good.size() - 32);
        }
        std::mt19937 gen(7);
        int opened = 0;
        for (int i = 0; i < 400; ++i) {
            QByteArray b = good;
            for (int k = 0; k < 3; ++k)
                b[static_cast<qsizetype>(gen() % static_cast<unsigned>(b.size()))] = static_cast<char>(gen());
            QVERIFY(writeBytes(path, b));
            auto file = GgufFile::open(path);
            if (!file)
                continue;
            ++opened;
            for (const GgufTensorInfo &t : (*file)->tensors()) {
                QVERIFY(t.offset + static_cast<std::uint64_t>(t.bytes) + (*file)->dataOffset() <= (*file)->fileSize());
                (void)(*file)->dequantize(t);
            }
        }
        QVERIFY(opened > 0);
    }
};

QTEST_GUILESS_MAIN(TestGguf)
#include "tst_gguf.moc"
