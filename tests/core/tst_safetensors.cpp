// tst_safetensors: the safetensors reader on good, corrupt and truncated files, sharded folders,
// and the exactness of the f16/bf16 conversions.
#include "core/dtype.h"
#include "core/safetensors.h"

#include <QJsonDocument>
#include <QJsonObject>
#include <QTemporaryDir>
#include <QTest>

#include <cmath>
#include <cstring>

using namespace bitsmith::core;

namespace {

QByteArray rawFile(const QByteArray &header, const QByteArray &data)
{
    QByteArray out;
    const quint64 n = static_cast<quint64>(header.size());
    for (int i = 0; i < 8; ++i)
        out.append(static_cast<char>((n >> (8 * i)) & 0xFF));
    return out + header + data;
}

void writeFile(const QString &path, const QByteArray &bytes)
{
    QFile f(path);
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write(bytes);
}

std::span<const std::byte> asBytes(const std::vector<float> &v)
{
    return std::as_bytes(std::span<const float>(v));
}

} // namespace

class TestSafetensors : public QObject
{
    Q_OBJECT

private slots:
    void roundTripAndZeroCopy()
    {
        QTemporaryDir dir;
        const QString path = dir.filePath(QStringLiteral("model.safetensors"));
        const std::vector<float> a = {1.0f, -2.5f, 3.25f, 0.0f, 1e-3f, 7.0f};
        const std::vector<std::uint16_t> b = {floatToBf16(1.0f), floatToBf16(-0.5f), floatToBf16(3.0f)};
        const std::vector<std::uint16_t> h = {floatToHalf(0.25f), floatToHalf(-1024.0f)};
        auto ok = writeSafetensors(path,
                                   {{QStringLiteral("a"), DType::F32, {2, 3}, asBytes(a)},
                                    {QStringLiteral("b"), DType::BF16, {3}, std::as_bytes(std::span(b))},
                                    {QStringLiteral("h"), DType::F16, {1, 2}, std::as_bytes(std::span(h))}},
                                   {{QStringLiteral("format"), QStringLiteral("pt")}});
        QVERIFY2(ok, qPrintable(ok ? QString() : ok.error().toString()));
        auto file = SafetensorsFile::open(path);
        QVERIFY2(file, qPrintable(file ? QString() : file.error().toString()));
        QCOMPARE((*file)->tensors().size(), size_t(3));
        QCOMPARE((*file)->metadata().value(QStringLiteral("format")), QStringLiteral("pt"));
        const TensorRecord *ra = (*file)->find(QStringLiteral("a"));
        QVERIFY(ra);
        QCOMPARE(ra->dtype, DType::F32);
        QCOMPARE(ra->shape, (std::vector<std::int64_t>{2, 3}));
        QCOMPARE(ra->nbytes, a.size() * 4);
        // f32 data is 8-byte aligned (header padded) and read in place
        QCOMPARE(reinterpret_cast<std::uintptr_t>(ra->data) % 8, std::uintptr_t(0));
        QVERIFY(std::memcmp(ra->data, a.data(), ra->nbytes) == 0);
        std::vector<float> conv(3);
        const TensorRecord *rb = (*file)->find(QStringLiteral("b"));
        convertToFloat(rb->dtype, rb->data, 3, conv.data());
        QCOMPARE(conv, (std::vector<float>{1.0f, -0.5f, 3.0f}));
        const TensorRecord *rh = (*file)->find(QStringLiteral("h"));
        convertToFloat(rh->dtype, rh->data, 2, conv.data());
        QCOMPARE(conv[0], 0.25f);
        QCOMPARE(conv[1], -1024.0f);
        QVERIFY(!(*file)->find(QStringLiteral("missing")));
    }

    void corruptFiles_data()
    {
        QTest::addColumn<QByteArray>("bytes");
        QTest::addColumn<int>("code");
        QTest::addColumn<QString>("mustMention");
        const QByteArray data16(16, '\0');
        QTest::newRow("too small") << QByteArray("abc") << int(ErrorCode::Format) << QStringLiteral("too small");
        QTest::newRow("header longer than file")
            << rawFile(QByteArray("{}"), {}).replace(0, 1, "\xff") << int(ErrorCode::Format) << QStringLiteral("exceeds");
        QTest::newRow("not json") << rawFile("{\"a\": [", data16) << int(ErrorCode::Format) << QStringLiteral("JSON");
        QTest::newRow("truncated data")
            << rawFile(R"({"w":{"dtype":"F32","shape":[2,4],"data_offsets":[0,32]}})", data16) << int(ErrorCode::Format)
            << QStringLiteral("truncated");
        QTest::newRow("shape disagrees with bytes")
            << rawFile(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}})", data16) << int(ErrorCode::Format)
            << QStringLiteral("does not match");
        QTest::newRow("unknown dtype")
            << rawFile(R"({"w":{"dtype":"F8_E4M3","shape":[16],"data_offsets":[0,16]}})", data16)
            << int(ErrorCode::Unsupported) << QStringLiteral("F8_E4M3");
        QTest::newRow("overlapping ranges")
            << rawFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                       data16)
            << int(ErrorCode::Format) << QStringLiteral("overlap");
        QTest::newRow("missing offsets") << rawFile(R"({"w":{"dtype":"F32","shape":[4]}})", data16)
                                         << int(ErrorCode::Format) << QStringLiteral("data_offsets");
        QTest::newRow("negative dim") << rawFile(R"({"w":{"dtype":"F32","shape":[-4],"data_offsets":[0,16]}})", data16)
                                      << int(ErrorCode::Format) << QStringLiteral("shape");
    }

    void corruptFiles()
    {
        QFETCH(QByteArray, bytes);
        QFETCH(int, code);
        QFETCH(QString, mustMention);
        QTemporaryDir dir;
        const QString path = dir.filePath(QStringLiteral("bad.safetensors"));
        writeFile(path, bytes);
        auto file = SafetensorsFile::open(path);
        QVERIFY(!file);
        QCOMPARE(int(file.error().code), code);
        QVERIFY2(file.error().toString().contains(mustMention, Qt::CaseInsensitive), qPrintable(file.error().toString()));
        QCOMPARE(file.error().file, path); // the error names the file
    }

    void truncatedRealFile()
    {
        // A valid file cut short at every length must be rejected, never crash.
        QTemporaryDir dir;
        const QString path = dir.filePath(QStringLiteral("ok.safetensors"));
        const std::vector<float> a(64, 1.5f);
        QVERIFY(writeSafetensors(path, {{QStringLiteral("w"), DType::F32, {8, 8}, asBytes(a)}}));
        QFile f(path);
        QVERIFY(f.open(QIODevice::ReadOnly));
        const QByteArray full = f.readAll();
        const QString cut = dir.filePath(QStringLiteral("cut.safetensors"));
        for (qsizetype len = 0; len < full.size(); len += 7) {
            writeFile(cut, full.left(len));
            auto file = SafetensorsFile::open(cut);
            QVERIFY2(!file, qPrintable(QStringLiteral("accepted a file cut at %1 bytes").arg(len)));
        }
    }

    void missingFile()
    {
        auto file = SafetensorsFile::open(QStringLiteral("/nonexistent/model.safetensors"));
        QVERIFY(!file);
        QCOMPARE(file.error().code, ErrorCode::Io);
        QVERIFY(!file.error().hint.isEmpty());
    }

    void shardedFolder()
    {
        QTemporaryDir dir;
        const std::vector<float> a = {1, 2, 3, 4}, b = {5, 6};
        QVERIFY(writeSafetensors(dir.filePath(QStringLiteral("model-00001-of-00002.safetensors")),
                                 {{QStringLiteral("a"), DType::F32, {4}, asBytes(a)}}));
        QVERIFY(writeSafetensors(dir.filePath(QStringLiteral("model-00002-of-00002.safetensors")),
                                 {{QStringLiteral("b"), DType::F32, {2}, asBytes(b)}}));
        const QJsonObject index{{QStringLiteral("metadata"), QJsonObject{{QStringLiteral("total_size"), 24}}},
                                {QStringLiteral("weight_map"),
                                 QJsonObject{{QStringLiteral("a"), QStringLiteral("model-00001-of-00002.safetensors")},
                                             {QStringLiteral("b"), QStringLiteral("model-00002-of-00002.safetensors")}}}};
        writeFile(dir.filePath(QStringLiteral("model.safetensors.index.json")), QJsonDocument(index).toJson());
        auto coll = SafetensorsCollection::openFolder(dir.path());
        QVERIFY2(coll, qPrintable(coll ? QString() : coll.error().toString()));
        QCOMPARE((*coll)->files().size(), size_t(2));
        QVERIFY((*coll)->find(QStringLiteral("a")));
        QCOMPARE(reinterpret_cast<const float *>((*coll)->find(QStringLiteral("b"))->data)[1], 6.0f);
        QCOMPARE((*coll)->tensors().size(), size_t(2));

        // The index names a tensor its shard lacks.
        QJsonObject broken = index;
        QJsonObject map = broken[QStringLiteral("weight_map")].toObject();
        map[QStringLiteral("c")] = QStringLiteral("model-00002-of-00002.safetensors");
        broken[QStringLiteral("weight_map")] = map;
        writeFile(dir.filePath(QStringLiteral("model.safetensors.index.json")), QJsonDocument(broken).toJson());
        auto bad = SafetensorsCollection::openFolder(dir.path());
        QVERIFY(!bad);
        QCOMPARE(bad.error().tensor, QStringLiteral("c"));

        // A missing shard file.
        map[QStringLiteral("c")] = QStringLiteral("model-00003-of-00002.safetensors");
        broken[QStringLiteral("weight_map")] = map;
        writeFile(dir.filePath(QStringLiteral("model.safetensors.index.json")), QJsonDocument(broken).toJson());
        auto missing = SafetensorsCollection::openFolder(dir.path());
        QVERIFY(!missing);
        QVERIFY(missing.error().file.endsWith(QStringLiteral("model-00003-of-00002.safetensors")));
    }

    void emptyFolder()
    {
        QTemporaryDir dir;
        auto coll = SafetensorsCollection::openFolder(dir.path());
        QVERIFY(!coll);
        QVERIFY(coll.error().message.contains(QStringLiteral("model.safetensors")));
    }

    void halfConversionIsExact()
    {
        // Every finite half widens exactly and narrows back to itself.
        for (std::uint32_t h = 0; h < 0x10000; ++h) {
            const auto bits = static_cast<std::uint16_t>(h);
            const float f = halfToFloat(bits);
            if (std::isnan(f))
                continue;
            QCOMPARE(floatToHalf(f), bits);
        }
        QCOMPARE(halfToFloat(0x0001), std::ldexp(1.0f, -24)); // smallest subnormal
        QCOMPARE(halfToFloat(0x3C00), 1.0f);
        QCOMPARE(halfToFloat(0x7BFF), 65504.0f);
        QVERIFY(std::isinf(halfToFloat(0x7C00)));
        QCOMPARE(floatToHalf(1.0f + std::ldexp(1.0f, -11)), std::uint16_t(0x3C00)); // tie to even
        QCOMPARE(floatToHalf(1e6f), std::uint16_t(0x7C00));                        // overflow to inf
    }

    void bf16ConversionIsExact()
    {
        for (std::uint32_t h = 0; h < 0x10000; h += 3) {
            const auto bits = static_cast<std::uint16_t>(h);
            const float f = bf16ToFloat(bits);
            if (std::isnan(f))
                continue;
            QCOMPARE(floatToBf16(f), bits);
        }
        QCOMPARE(floatToBf16(1.0f), std::uint16_t(0x3F80));
        // 1 + 2^-8 is halfway between two bf16 values: ties to even (down to 1.0)
        QCOMPARE(floatToBf16(1.0f + std::ldexp(1.0f, -8)), std::uint16_t(0x3F80));
        QCOMPARE(floatToBf16(1.0f + 3 * std::ldexp(1.0f, -8)), std::uint16_t(0x3F82));
    }
};

QTEST_GUILESS_MAIN(TestSafetensors)
#include "tst_safetensors.moc"
