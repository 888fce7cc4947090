// tst_scale: what lets real-sized models run in bounded memory (issue 13), on small inputs:
// dense kernels that read bf16/f16 weights in place agree with an f64 reference on the widened
// values; compressed folders are used packed straight from the mapped file; compression keeps
// no f32 copy of the model; writers stream (safetensors shards with an index, GGUF tensor by
// tensor) and write exactly what the in-memory writers write; statistics are computed lazily;
// memory checks refuse what does not fit with a message that says how much.
#include "core/compression.h"
#include "core/export/hfexport.h"
#include "core/gguf/gguffile.h"
#include "core/gguf/ggufmodel.h"
#include "core/kernels/packedweights.h"
#include "core/linear.h"
#include "core/memory.h"
#include "core/model.h"
#include "core/safetensors.h"
#include "core/sdk/techniqueregistry.h"
#include "core/transformer.h"
#include "testutil.h"
#include "tinymodel.h"

#include <QDir>
#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTemporaryDir>
#include <QTest>

#include <cmath>
#include <cstring>
#include <random>

using namespace bitsmith::core;
using namespace bitsmith::test;

namespace {

std::vector<float> logitsOf(const std::shared_ptr<Model> &m, const std::vector<std::int32_t> &ids)
{
    Transformer tf(m);
    KVCache cache = tf.makeCache(static_cast<int>(ids.size()));
    std::vector<float> logits;
    if (auto ok = tf.forward(ids, cache, logits); !ok)
        qFatal("%s", qPrintable(ok.error().toString()));
    return logits;
}

Recipe rtnRecipe(int bits, int group)
{
    Recipe r;
    r.defaultTechnique = QStringLiteral("rtn");
    r.defaultFormat = QuantFormat{bits, group, false};
    return r;
}

} // namespace

class TestScale : public QObject
{
    Q_OBJECT

    const std::vector<std::int32_t> m_ids = {1088, 260, 2342, 424, 3317, 12, 270, 401, 334, 299, 17, 5};

private slots:
    // The OneDnn dense kernel over a bf16 / f16 weight read in place: every batch size (GEMV for
    // a few rows, widened tiles + oneDNN above kDenseGemvMaxRows, tails of every block size) equals x·Wᵀ + b computed in
    // double on the exactly widened weights, to f32 rounding.
    void storedKernelsMatchReference_data()
    {
        QTest::addColumn<int>("dtype");
        QTest::addColumn<int>("m");
        for (int t : {int(DType::BF16), int(DType::F16)})
            for (int m : {1, 2, 3, 4, 5, 8, 9, 14, 15, 33, 300})
                QTest::newRow(qPrintable(QStringLiteral("%1 m=%2").arg(t == int(DType::BF16) ? "bf16" : "f16").arg(m))) << t << m;
    }
    void storedKernelsMatchReference()
    {
        QFETCH(int, dtype);
        QFETCH(int, m);
        const auto type = static_cast<DType>(dtype);
        const std::int64_t rows = 300, cols = 520; // not multiples of the kernels' blocks
        std::mt19937 rng(7);
        std::normal_distribution<float> nd(0.0f, 0.05f);
        std::vector<std::uint16_t> stored(static_cast<std::size_t>(rows * cols));
        std::vector<float> widened(stored.size());
        for (std::size_t i = 0; i < stored.size(); ++i) {
            const float v = nd(rng);
            stored[i] = type == DType::BF16 ? floatToBf16(v) : floatToHalf(v);
            widened[i] = type == DType::BF16 ? bf16ToFloat(stored[i]) : halfToFloat(stored[i]);
        }
        std::vector<float> bias(static_cast<std::size_t>(rows));
        for (float &b : bias)
            b = nd(rng);
        TensorSlot slot;
        slot.rows = rows;
        slot.cols = cols;
        slot.type = type;
        slot.raw = stored.data();
        const MatrixView w{nullptr, rows, cols, &slot};
        const MatrixView b{bias.data(), 1, rows, nullptr};
        auto kernel = makeDenseLinear(w, b, LinearBackend::OneDnn);
        std::vector<float> x(static_cast<std::size_t>(m * cols)), y(static_cast<std::size_t>(m * rows));
        for (float &v : x)
            v = nd(rng) * 20.0f;
        kernel->forward(x.data(), m, y.data());
        double worst = 0;
        for (int i = 0; i < m; ++i)
            for (std::int64_t r = 0; r < rows; ++r) {
                double ref = bias[static_cast<std::size_t>(r)], mag = std::fabs(ref);
                for (std::int64_t c = 0; c < cols; ++c) {
                    const double p = double(x[static_cast<std::size_t>(i * cols + c)]) * widened[static_cast<std::size_t>(r * cols + c)];
                    ref += p;
                    mag += std::fabs(p);
                }
                worst = std::max(worst, std::fabs(y[static_cast<std::size_t>(i * rows + r)] - ref) / mag);
            }
        QVERIFY2(worst < 1e-5, qPrintable(QString::number(worst)));
        // the kernel keeps no copy of the weight (only the f32 bias), and the slot was never widened
        QVERIFY(kernel->residentBytes() <= rows * 4);
        QCOMPARE(slot.widenedBytes(), std::int64_t(0));
    }

    // A compressed folder runs on its packed codes read from the mapped file: no unpacked or f32
    // copy is made at load or by running it, and its logits are those of the compressed model.
    void compressedFolderUsedInPlace()
    {
        auto source = Model::load(defaultModelDir());
        QVERIFY(source);
        TechniqueRegistry registry;
        auto result = compressModel(**source, rtnRecipe(4, 128), registry, {});
        QVERIFY2(result, result ? "" : qPrintable(result.error().toString()));
        QTemporaryDir dir;
        const QString out = dir.filePath(QStringLiteral("rtn"));
        QVERIFY(writeCompressedModel(*result, **source, out));
        auto back = Model::load(out);
        QVERIFY(back);
        QVERIFY(!(*back)->quantizedLayers().empty());
        for (const QuantizedLayer &q : (*back)->quantizedLayers())
            QVERIFY2(q.packed->codesInPlace(), qPrintable(q.tensor));
        const auto a = logitsOf(result->model, m_ids), b = logitsOf(*back, m_ids);
        QCOMPARE(maxAbsDiff(a, b), 0.0f);
        // resident: scales and zeros (and the small f32 norms widened by the runtime), far from
        // the 4 bytes per parameter an unpacked copy would cost
        const std::int64_t resident = (*back)->residentBytes();
        QVERIFY2(resident < (*back)->totalParameters() / 2, qPrintable(QString::number(resident)));
        // the writer recorded each layer's sparsity: a header-only open knows it without reading codes
        qputenv("BITSMITH_EAGER_STATS_BYTES", "0");
        auto headersOnly = Model::load(out);
        qunsetenv("BITSMITH_EAGER_STATS_BYTES");
        QVERIFY(headersOnly);
        for (const WeightInfo &w : (*headersOnly)->weights())
            if ((*headersOnly)->quantizedLayer(w.name)) {
                QVERIFY2(w.sparsity >= 0, qPrintable(w.name));
                for (const WeightInfo &e : (*back)->weights())
                    if (e.name == w.name)
                        QCOMPARE(w.sparsity, e.sparsity);
            }
    }

    // compressModel works on a working copy that shares the source's mapped weights: when it is
    // done, no tensor is held in f32 (the quantized ones are packed), and the source is untouched.
    void compressionKeepsNoF32Copy()
    {
        auto source = Model::load(defaultModelDir());
        QVERIFY(source);
        const auto before = logitsOf(*source, m_ids);
        TechniqueRegistry registry;
        auto result = compressModel(**source, rtnRecipe(4, 64), registry, {});
        QVERIFY(result);
        const Model &work = *result->model;
        std::int64_t packedBytes = 0;
        for (const QuantizedLayer &q : work.quantizedLayers())
            packedBytes += q.packed->residentBytes();
        for (const WeightInfo &w : work.weights())
            if (work.quantizedLayer(w.name))
                QCOMPARE(work.slot(w.name)->widenedBytes(), std::int64_t(0));
        QVERIFY2(work.residentBytes() <= packedBytes + (std::int64_t(1) << 20),
                 qPrintable(QStringLiteral("%1 > %2").arg(work.residentBytes()).arg(packedBytes)));
        QCOMPARE(maxAbsDiff(before, logitsOf(*source, m_ids)), 0.0f);
        QVERIFY(estimateCompressionMemory(**source, rtnRecipe(4, 64), registry, {}).value() > 0);
    }

    // Tensors produced one at a time, written as shards of a size limit with an index that
    // SafetensorsCollection (and transformers) read; a later single-file write into the same
    // folder removes the stale shards and index.
    void shardedWriterWithIndex()
    {
        QTemporaryDir dir;
        std::vector<TensorToWrite> tensors;
        std::vector<std::vector<std::byte>> expected;
        for (int i = 0; i < 5; ++i) {
            std::vector<std::byte> bytes(static_cast<std::size_t>(1000 + 8 * i));
            for (std::size_t j = 0; j < bytes.size(); ++j)
                bytes[j] = static_cast<std::byte>((j * 31 + static_cast<std::size_t>(i)) & 0xff);
            expected.push_back(bytes);
            TensorToWrite t{QStringLiteral("t%1").arg(i), DType::U8, {static_cast<std::int64_t>(bytes.size())}, {}, bytes.size(), {}};
            t.produce = [bytes]() -> Expected<std::vector<std::byte>> { return bytes; };
            tensors.push_back(std::move(t));
        }
        auto names = writeSafetensorsSharded(dir.path(), tensors, 2100);
        QVERIFY2(names, names ? "" : qPrintable(names.error().toString()));
        QCOMPARE(names->size(), 4); // [t0 t1] [t2 t3] [t4] + index
        QVERIFY(names->contains(QStringLiteral("model-00001-of-00003.safetensors")));
        const QJsonObject index = QJsonDocument::fromJson(readAll(dir.filePath(QStringLiteral("model.safetensors.index.json")))).object();
        QCOMPARE(index.value(QLatin1String("weight_map")).toObject().value(QLatin1String("t4")).toString(),
                 QStringLiteral("model-00003-of-00003.safetensors"));
        std::int64_t total = 0;
        for (const auto &e : expected)
            total += static_cast<std::int64_t>(e.size());
        QCOMPARE(index.value(QLatin1String("metadata")).toObject().value(QLatin1String("total_size")).toInteger(), total);
        auto all = SafetensorsCollection::openFolder(dir.path());
        QVERIFY2(all, all ? "" : qPrintable(all.error().toString()));
        for (int i = 0; i < 5; ++i) {
            const TensorRecord *r = (*all)->find(QStringLiteral("t%1").arg(i));
            QVERIFY(r);
            QCOMPARE(r->nbytes, expected[static_cast<std::size_t>(i)].size());
            QVERIFY(std::memcmp(r->data, expected[static_cast<std::size_t>(i)].data(), r->nbytes) == 0);
        }
        all->reset();
        // a producer returning the wrong size is an error, and nothing is left half-written
        std::vector<TensorToWrite> bad{tensors[0]};
        bad[0].nbytes = 999;
        QVERIFY(!writeSafetensors(dir.filePath(QStringLiteral("bad.safetensors")), bad));
        QVERIFY(!QFileInfo::exists(dir.filePath(QStringLiteral("bad.safetensors"))));
        // one file now: the shards and the index of the earlier write go
        auto single = writeSafetensorsSharded(dir.path(), tensors, 0);
        QVERIFY(single);
        QCOMPARE(*single, QStringList{QStringLiteral("model.safetensors")});
        QVERIFY(!QFileInfo::exists(dir.filePath(QStringLiteral("model.safetensors.index.json"))));
        QVERIFY(!QFileInfo::exists(dir.filePath(QStringLiteral("model-00001-of-00003.safetensors"))));
        QCOMPARE(parseByteSize(QStringLiteral("5GB")).value(), std::int64_t(5'000'000'000));
        QCOMPARE(parseByteSize(QStringLiteral("2GiB")).value(), std::int64_t(2) << 30);
        QCOMPARE(parseByteSize(QStringLiteral("1500")).value(), std::int64_t(1500));
        QVERIFY(!parseByteSize(QStringLiteral("lots")));
    }

    // A dense HF export in shards loads back (through the index) to the same logits.
    void hfExportSharded()
    {
        auto source = Model::load(defaultModelDir());
        QVERIFY(source);
        QTemporaryDir dir;
        const QString out = dir.filePath(QStringLiteral("hf"));
        auto r = exportHfDense(**source, out, nullptr, 4'000'000);
        QVERIFY2(r, r ? "" : qPrintable(r.error().toString()));
        QVERIFY(r->value(QLatin1String("files")).toArray().size() > 2);
        QVERIFY(QFileInfo::exists(out + QStringLiteral("/model.safetensors.index.json")));
        auto back = Model::load(out);
        QVERIFY2(back, back ? "" : qPrintable(back.error().toString()));
        QCOMPARE(maxAbsDiff(logitsOf(*source, m_ids), logitsOf(*back, m_ids)), 0.0f);
        // bf16 stays bf16, byte for byte
        for (const TensorRecord *rec : (*source)->files().tensors()) {
            const TensorRecord *o = (*back)->files().find(rec->name);
            QVERIFY(o);
            QCOMPARE(o->dtype, rec->dtype);
            QVERIFY(std::memcmp(o->data, rec->data, rec->nbytes) == 0);
        }
    }

    // GgufWriter with producers writes the same bytes as with data given up front, streaming to
    // the file; a producer of the wrong size fails the write and leaves no file.
    void ggufWriterStreams()
    {
        QTemporaryDir dir;
        std::vector<std::uint8_t> a(32 * 4 * 3), b(34 * 2);
        for (std::size_t i = 0; i < a.size(); ++i)
            a[i] = static_cast<std::uint8_t>(i * 7);
        for (std::size_t i = 0; i < b.size(); ++i)
            b[i] = static_cast<std::uint8_t>(i * 13 + 1);
        gguf::GgufWriter direct, streamed;
        for (gguf::GgufWriter *w : {&direct, &streamed})
            w->set(QStringLiteral("general.architecture"), gguf::GgufValue::string("llama"));
        QVERIFY(direct.addTensor(QStringLiteral("a"), {32, 3}, gguf::GgmlType::F32, a));
        QVERIFY(direct.addTensor(QStringLiteral("b"), {64}, gguf::GgmlType::Q8_0, b));
        QVERIFY(streamed.addTensor(QStringLiteral("a"), {32, 3}, gguf::GgmlType::F32,
                                   gguf::GgufWriter::Producer([a]() -> Expected<std::vector<std::uint8_t>> { return a; })));
        QVERIFY(streamed.addTensor(QStringLiteral("b"), {64}, gguf::GgmlType::Q8_0,
                                   gguf::GgufWriter::Producer([b]() -> Expected<std::vector<std::uint8_t>> { return b; })));
        const QString path = dir.filePath(QStringLiteral("s.gguf"));
        QVERIFY(streamed.write(path));
        const QByteArray file = readAll(path);
        QCOMPARE(file, direct.toBytes());
        QCOMPARE(streamed.toBytes(), direct.toBytes());
        auto g = gguf::GgufFile::open(path);
        QVERIFY2(g, g ? "" : qPrintable(g.error().toString()));
        QVERIFY((*g)->findTensor(QStringLiteral("b")));
        gguf::GgufWriter wrong;
        QVERIFY(wrong.addTensor(QStringLiteral("a"), {32, 3}, gguf::GgmlType::F32,
                                gguf::GgufWriter::Producer([]() -> Expected<std::vector<std::uint8_t>> { return std::vector<std::uint8_t>(5); })));
        const QString bad = dir.filePath(QStringLiteral("bad.gguf"));
        auto r = wrong.write(bad);
        QVERIFY(!r);
        QVERIFY(r.error().message.contains(QLatin1String("bytes")));
        QVERIFY(!QFileInfo::exists(bad));
    }

    // Above the eager threshold a model opens from its headers: sparsity is unknown (-1) until
    // computeStatistics() reads the weights, which then gives what an eager load gives.
    void statisticsAreLazyForLargeModels()
    {
        QTemporaryDir dir;
        TinySpec s;
        s.dtype = DType::BF16;
        QVERIFY(writeTinyModel(dir.path(), s));
        auto eager = Model::load(dir.path());
        QVERIFY(eager);
        QVERIFY((*eager)->statisticsComputed());
        qputenv("BITSMITH_EAGER_STATS_BYTES", "0");
        auto lazy = Model::load(dir.path());
        qunsetenv("BITSMITH_EAGER_STATS_BYTES");
        QVERIFY(lazy);
        QVERIFY(!(*lazy)->statisticsComputed());
        bool someUnknown = false;
        for (const WeightInfo &w : (*lazy)->weights())
            someUnknown = someUnknown || w.sparsity < 0;
        QVERIFY(someUnknown);
        QVERIFY((*lazy)->computeStatistics());
        QVERIFY((*lazy)->statisticsComputed());
        for (std::size_t i = 0; i < (*lazy)->weights().size(); ++i)
            QCOMPARE((*lazy)->weights()[i].sparsity, (*eager)->weights()[i].sparsity);
        // nothing was widened to f32 by opening or by the statistics
        QCOMPARE((*lazy)->residentBytes(), std::int64_t(0));
    }

    // What a job needs beyond what there is: an OutOfMemory error that says both figures.
    void memoryChecks()
    {
        const MemoryStatus s = memoryStatus();
        QVERIFY(s.available > 0 && s.total >= s.available);
        auto ok = checkMemory(1 << 20, QStringLiteral("a test job"), QStringLiteral("hint"));
        QVERIFY(ok);
        auto tooMuch = checkMemory(s.available + (std::int64_t(64) << 30), QStringLiteral("a test job"), QStringLiteral("use less"));
        QVERIFY(!tooMuch);
        QCOMPARE(tooMuch.error().code, ErrorCode::OutOfMemory);
        QVERIFY(tooMuch.error().message.contains(QLatin1String("a test job needs about")));
        QVERIFY(tooMuch.error().message.contains(QLatin1String("available")));
        QCOMPARE(tooMuch.error().hint, QStringLiteral("use less"));
        auto limited = checkMemory(std::int64_t(3) << 30, QStringLiteral("job"), QString(), std::int64_t(1) << 30);
        QVERIFY(!limited);
        QCOMPARE(limited.error().parameter, QStringLiteral("max-memory"));
        QVERIFY(limited.error().message.contains(QLatin1String("3.00 GiB")));
        // the monitor sees 64 MiB being touched
        MemoryMonitor monitor;
        const std::int64_t base = residentAnonymousBytes();
        {
            std::vector<char> big(std::size_t(64) << 20, 1);
            QTest::qWait(80);
            QVERIFY(big[12345] == 1);
        }
        QVERIFY2(monitor.peakAnonymousBytes() >= base + (std::int64_t(60) << 20),
                 qPrintable(QStringLiteral("%1 vs %2").arg(monitor.peakAnonymousBytes()).arg(base)));
        QVERIFY(peakResidentBytes() >= monitor.peakAnonymousBytes() / 2);
        QCOMPARE(formatBytes(std::int64_t(1536) << 20), QStringLiteral("1.50 GiB"));
    }
};

QTEST_GUILESS_MAIN(TestScale)
#include "tst_scale.moc"
