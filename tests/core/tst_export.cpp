// tst_export.cpp: exports for deployment on the bundled model: GGUF files read back with identical
// logits (exact Bitsmith codes) or within the stated deviation, llama.cpp's metadata, names and q/k
// layout; Hugging Face dense folders reloaded with identical logits; the GPTQ layout against the
// numpy/PyTorch reference (tools/gptq_reference.py -> tests/data/gptq/); the recipe as YAML.
#include "core/evaluate.h"
#include "core/export/hfexport.h"
#include "core/gguf/gguffile.h"
#include "core/gguf/ggufmodel.h"
#include "core/model.h"
#include "core/quant/quantizer.h"
#include "core/safetensors.h"
#include "core/transformer.h"
#include "testutil.h"
#include "tinymodel.h"

#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTemporaryDir>
#include <QtTest>

#include <cstring>

using namespace bitsmith::core;
using namespace bitsmith::test;

namespace {

std::vector<float> logitsOf(const std::shared_ptr<Model> &m, const std::vector<std::int32_t> &ids)
{
    Transformer tf(m);
    KVCache cache = tf.makeCache(int(ids.size()));
    std::vector<float> logits;
    if (auto ok = tf.forward(ids, cache, logits); !ok)
        qFatal("%s", qPrintable(ok.error().toString()));
    return logits;
}

// Every block linear quantized with RTN in `format` (a compressed model as the engine makes it).
std::shared_ptr<Model> quantizedCopy(const Model &source, std::function<QuantFormat(const WeightInfo &)> formatOf)
{
    std::shared_ptr<Model> m = source.cloneMutable();
    for (const WeightInfo &w : source.weights()) {
        if (!isLinearRole(w.role) || w.role == WeightRole::LmHead)
            continue;
        auto q = quantizeRtn(source.weight(w.name), formatOf(w));
        if (!q || !m->setQuantized(w.name, std::move(*q), Execution::WeightOnly))
            qFatal("quantization failed");
    }
    return m;
}

template<typename T>
bool readNpyT(const QString &path, std::vector<T> &data)
{
    std::vector<long> shape;
    return readNpy(path, data, shape);
}

} // namespace

class TestExport : public QObject
{
    Q_OBJECT

    std::shared_ptr<Model> m_model;
    const std::vector<std::int32_t> m_ids = {1088, 260, 2342, 424, 3317, 12, 270, 401, 334, 299};
    QTemporaryDir m_dir;

private slots:
    void initTestCase()
    {
        auto m = Model::load(defaultModelDir());
        QVERIFY(m);
        m_model = *m;
        QVERIFY(m_dir.isValid());
    }

    void ggufNamesAndMetadata()
    {
        const QString path = m_dir.filePath(QStringLiteral("dense.gguf"));
        auto report = gguf::exportGguf(*m_model, path);
        QVERIFY2(report, report ? "" : qPrintable(report.error().toString()));
        auto file = gguf::GgufFile::open(path);
        QVERIFY(file);
        const gguf::GgufFile &g = **file;
        const ModelConfig &c = m_model->config();
        QCOMPARE(*g.stringValue(QStringLiteral("general.architecture")), QStringLiteral("llama"));
        QCOMPARE(*g.intValue(QStringLiteral("llama.block_count")), std::int64_t(c.numLayers));
        QCOMPARE(*g.intValue(QStringLiteral("llama.embedding_length")), std::int64_t(c.hiddenSize));
        QCOMPARE(*g.intValue(QStringLiteral("llama.feed_forward_length")), std::int64_t(c.intermediateSize));
        QCOMPARE(*g.intValue(QStringLiteral("llama.attention.head_count")), std::int64_t(4));
        QCOMPARE(*g.intValue(QStringLiteral("llama.attention.head_count_kv")), std::int64_t(2));
        QCOMPARE(*g.intValue(QStringLiteral("llama.rope.dimension_count")), std::int64_t(64));
        QCOMPARE(*g.intValue(QStringLiteral("llama.context_length")), std::int64_t(512));
        QCOMPARE(*g.floatValue(QStringLiteral("llama.rope.freq_base")), 10000.0);
        QCOMPARE(*g.floatValue(QStringLiteral("llama.attention.layer_norm_rms_epsilon")), double(1e-5f));
        QCOMPARE(*g.stringValue(QStringLiteral("tokenizer.ggml.model")), QStringLiteral("gpt2"));
        // tokenizer.json's pre-tokenizer is ByteLevel with the GPT-2 regex
        QCOMPARE(*g.stringValue(QStringLiteral("tokenizer.ggml.pre")), QStringLiteral("gpt-2"));
        const gguf::GgufValue *tokens = g.find(QStringLiteral("tokenizer.ggml.tokens"));
        QVERIFY(tokens && tokens->strings.size() == 4096);
        QCOMPARE(tokens->strings[0], QByteArray("<|endoftext|>"));
        QCOMPARE(g.find(QStringLiteral("tokenizer.ggml.token_type"))->ints[0], std::int64_t(3)); // control
        QCOMPARE(tokens->strings[1088], QByteArray::fromStdString(m_model->tokenizer()->idToToken(1088)));
        const gguf::GgufValue *merges = g.find(QStringLiteral("tokenizer.ggml.merges"));
        QVERIFY(merges && merges->strings.size() == 3839);
        QCOMPARE(merges->strings[0], QByteArray("t h"));
        QCOMPARE(*g.intValue(QStringLiteral("tokenizer.ggml.add_bos_token")), std::int64_t(0));
        // 3 + 9 per block tensors, GGUF dims fastest first
        QCOMPARE(g.tensors().size(), std::size_t(3 + 9 * 8));
        const gguf::GgufTensorInfo *q = g.findTensor(QStringLiteral("blk.0.attn_q.weight"));
        QVERIFY(q);
        QCOMPARE(q->type, gguf::GgmlType::BF16);
        QVERIFY((q->dims == std::vector<std::int64_t>{256, 256}));
        QVERIFY(g.findTensor(QStringLiteral("blk.7.ffn_down.weight")));
        QVERIFY(g.findTensor(QStringLiteral("output.weight")));
        QVERIFY(g.findTensor(QStringLiteral("token_embd.weight")));
        QCOMPARE(g.findTensor(QStringLiteral("output_norm.weight"))->type, gguf::GgmlType::F32);
        // q/k rows in llama.cpp's rope layout: within a head of 64 rows, row 2j+i of the file is
        // row i*32+j of the checkpoint (rotate-half -> interleaved pairs), as llama.cpp's
        // converter permutes them
        const std::vector<float> fileQ = g.dequantize(*q);
        const MatrixView hfQ = m_model->weight(QStringLiteral("model.layers.0.self_attn.q_proj.weight"));
        for (int h = 0; h < 4; ++h)
            for (int j = 0; j < 32; ++j)
                for (int i = 0; i < 2; ++i)
                    for (int col : {0, 17, 255})
                        QCOMPARE(fileQ[static_cast<std::size_t>((h * 64 + 2 * j + i) * 256 + col)],
                                 hfQ.data()[(h * 64 + i * 32 + j) * 256 + col]);
        const gguf::GgufTensorInfo *v = g.findTensor(QStringLiteral("blk.0.attn_v.weight"));
        const std::vector<float> fileV = g.dequantize(*v);
        const MatrixView hfV = m_model->weight(QStringLiteral("model.layers.0.self_attn.v_proj.weight"));
        QCOMPARE(fileV[300], hfV.data()[300]); // v is not permuted
    }

    // The dense export reads back with identical weights and logits (BF16 kept as BF16).
    void ggufDenseRoundTrip()
    {
        const QString path = m_dir.filePath(QStringLiteral("dense2.gguf"));
        QVERIFY(gguf::exportGguf(*m_model, path));
        auto back = Model::load(path);
        QVERIFY2(back, back ? "" : qPrintable(back.error().toString()));
        QVERIFY((*back)->tokenizer());
        QCOMPARE((*back)->tokenizer()->encode("In the beginning"), m_model->tokenizer()->encode("In the beginning"));
        for (const WeightInfo &w : m_model->weights()) {
            const MatrixView a = m_model->weight(w.name), b = (*back)->weight(w.name);
            QVERIFY2(!b.empty(), qPrintable(w.name));
            QVERIFY(std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.rows * a.cols) * 4) == 0);
        }
        QCOMPARE(maxAbsDiff(logitsOf(m_model, m_ids), logitsOf(*back, m_ids)), 0.0f);
        QCOMPARE((*back)->weights()[1].format, QStringLiteral("F32"));
        QCOMPARE((*back)->weights()[2].format, QStringLiteral("BF16"));
    }

    // Exactly representable formats: Bitsmith's codes go into Q4_0 / Q8_0 / Q5_0 and come back as
    // the same quantized layers, with identical logits on the quantized kernels.
    void ggufExactCodesIdenticalLogits_data()
    {
        QTest::addColumn<int>("bits");
        QTest::addColumn<QString>("type");
        QTest::newRow("w4 g32 sym -> Q4_0") << 4 << "Q4_0";
        QTest::newRow("w8 g32 sym -> Q8_0") << 8 << "Q8_0";
        QTest::newRow("w5 g32 sym -> Q5_0") << 5 << "Q5_0";
    }
    void ggufExactCodesIdenticalLogits()
    {
        QFETCH(int, bits);
        QFETCH(QString, type);
        auto compressed = quantizedCopy(*m_model, [&](const WeightInfo &) { return QuantFormat{bits, 32, true}; });
        const QString path = m_dir.filePath(QStringLiteral("exact%1.gguf").arg(bits));
        auto report = gguf::exportGguf(*compressed, path);
        QVERIFY(report);
        int exact = 0;
        for (const auto &t : report->tensors)
            if (t.kind == QLatin1String("exact")) {
                ++exact;
                QCOMPARE(QString::fromLatin1(gguf::ggmlTypeName(t.type)), type);
                QCOMPARE(t.inexactGroups, std::int64_t(0));
            }
        QCOMPARE(exact, 56);
        auto back = Model::load(path);
        QVERIFY2(back, back ? "" : qPrintable(back.error().toString()));
        QCOMPARE((*back)->quantizedLayers().size(), std::size_t(56));
        for (const QuantizedLayer &q : compressed->quantizedLayers()) {
            const QuantizedLayer *r = (*back)->quantizedLayer(q.tensor);
            QVERIFY(r);
            QVERIFY(r->unpacked().codes == q.unpacked().codes); // q/k un-permuted too
            QVERIFY(r->unpacked().scales == q.unpacked().scales);
        }
        QCOMPARE(maxAbsDiff(logitsOf(compressed, m_ids), logitsOf(*back, m_ids)), 0.0f);
        QCOMPARE((*back)->weights()[2].format, type);
    }

    // Asymmetric g32: codes kept, the min -scale*zero rounded to fp16 where it is not an fp16
    // value; the file's values stay within the reported deviation and the logits close.
    void ggufAsymmetricRoundedMin()
    {
        auto compressed = quantizedCopy(*m_model, [](const WeightInfo &) { return QuantFormat{4, 32, false}; });
        const QString path = m_dir.filePath(QStringLiteral("asym.gguf"));
        auto report = gguf::exportGguf(*compressed, path);
        QVERIFY(report);
        auto file = gguf::GgufFile::open(path);
        QVERIFY(file);
        std::int64_t inexact = 0;
        for (const auto &t : report->tensors) {
            if (t.groups == 0)
                continue;
            QCOMPARE(t.type, gguf::GgmlType::Q4_1);
            inexact += t.inexactGroups;
            if (t.name.contains(QLatin1String("attn_q")) || t.name.contains(QLatin1String("attn_k")))
                continue; // permuted rows
            const std::vector<float> values = (*file)->dequantize(*(*file)->findTensor(t.name));
            const MatrixView bitsmith = compressed->weight(t.source);
            float dev = 0;
            for (std::size_t i = 0; i < values.size(); ++i)
                dev = std::max(dev, std::fabs(values[i] - bitsmith.data()[i]));
            QVERIFY2(dev <= t.maxAbsDeviation * 1.001 + 1e-7, qPrintable(QStringLiteral("%1 %2 > %3").arg(t.name).arg(dev).arg(t.maxAbsDeviation)));
        }
        QVERIFY(inexact > 0);
        auto back = Model::load(path);
        QVERIFY(back);
        const auto a = logitsOf(compressed, m_ids), b = logitsOf(*back, m_ids);
        QVERIFY2(maxAbsDiff(a, b) < 2e-2f, qPrintable(QString::number(maxAbsDiff(a, b))));
        // --strict-exact: requantized with the closest k-quant instead
        gguf::GgufExportOptions strict;
        strict.strictExact = true;
        auto requant = gguf::exportGguf(*compressed, m_dir.filePath(QStringLiteral("strict.gguf")), strict);
        QVERIFY(requant);
        for (const auto &t : requant->tensors)
            if (t.source.contains(QLatin1String("proj")))
                QCOMPARE(t.type, gguf::GgmlType::Q4_K);
    }

    // Formats no block type holds are requantized with the closest k-quant and reported; the
    // llama-quantize overrides list per-tensor types where blocks differ.
    void ggufMixedRequantized()
    {
        auto compressed = quantizedCopy(*m_model, [](const WeightInfo &w) {
            if (w.role == WeightRole::LinearDown)
                return QuantFormat{8, 0, false};
            if (w.block == 0)
                return QuantFormat{3, 64, false};
            return QuantFormat{4, 32, true};
        });
        const QString path = m_dir.filePath(QStringLiteral("mixed.gguf"));
        gguf::GgufExportOptions opt;
        opt.denseType = gguf::GgmlType::Q8_0;
        auto report = gguf::exportGguf(*compressed, path, opt);
        QVERIFY(report);
        std::map<QString, gguf::GgmlType> types;
        for (const auto &t : report->tensors)
            types[t.name] = t.type;
        QCOMPARE(types[QStringLiteral("blk.0.attn_q.weight")], gguf::GgmlType::Q3_K);
        QCOMPARE(types[QStringLiteral("blk.1.attn_q.weight")], gguf::GgmlType::Q4_0);
        QCOMPARE(types[QStringLiteral("blk.3.ffn_down.weight")], gguf::GgmlType::Q8_0);
        QCOMPARE(types[QStringLiteral("token_embd.weight")], gguf::GgmlType::Q8_0);
        QCOMPARE(types[QStringLiteral("blk.3.attn_norm.weight")], gguf::GgmlType::F32);
        const QStringList o = report->tensorTypeOverrides;
        QVERIFY(o.contains(QStringLiteral("ffn_down\\.weight=q8_0")));
        QVERIFY(o.contains(QStringLiteral("^blk\\.0\\.attn_q\\.weight$=q3_K")));
        QVERIFY(o.contains(QStringLiteral("^blk\\.1\\.attn_q\\.weight$=q4_0")));
        const QJsonObject json = report->toJson();
        QCOMPARE(json.value(QLatin1String("howCounts")).toObject().value(QLatin1String("requantized")).toInt(), 8 + 6);
        auto back = Model::load(path);
        QVERIFY(back);
        // requantizing block 0's asymmetric 3-bit values to the symmetric Q3_K grid (and the
        // embedding to Q8_0) moves the logits (measured: mean change 0.14 for a spread of 2.0);
        // a wrong layout or permutation would move them by the whole spread
        const auto a = logitsOf(compressed, m_ids), b = logitsOf(*back, m_ids);
        double diff = 0, spread = 0, mean = 0;
        for (float x : a)
            mean += x / static_cast<double>(a.size());
        for (std::size_t i = 0; i < a.size(); ++i) {
            diff += std::fabs(a[i] - b[i]) / static_cast<double>(a.size());
            spread += std::fabs(a[i] - mean) / static_cast<double>(a.size());
        }
        qInfo("mean |logit change| %.4f, mean |logit - mean| %.4f", diff, spread);
        QVERIFY2(diff < 0.1 * spread, qPrintable(QStringLiteral("%1 vs %2").arg(diff).arg(spread)));
    }

    // Qwen2 (q/k/v biases, tied embeddings, NEOX rope: no permutation) and a Llama with attention
    // biases (biases permuted like their rows): the file has llama.cpp's layout and reads back
    // with identical logits.
    void ggufOtherFamilies_data()
    {
        QTest::addColumn<QString>("architecture");
        QTest::addColumn<bool>("tied");
        QTest::addColumn<bool>("bias");
        QTest::newRow("qwen2 tied") << "Qwen2ForCausalLM" << true << true;
        QTest::newRow("llama bias") << "LlamaForCausalLM" << false << true;
        QTest::newRow("mistral") << "MistralForCausalLM" << false << false;
        QTest::newRow("qwen3 tied") << "Qwen3ForCausalLM" << true << false;
        QTest::newRow("llama3 rope") << "LlamaForCausalLM+llama3" << false << false;
        QTest::newRow("linear rope") << "LlamaForCausalLM+linear" << false << false;
    }
    void ggufOtherFamilies()
    {
        QFETCH(QString, architecture);
        QFETCH(bool, tied);
        QFETCH(bool, bias);
        TinySpec spec;
        const QString rope = architecture.section(QLatin1Char('+'), 1);
        architecture = architecture.section(QLatin1Char('+'), 0, 0);
        spec.architecture = architecture;
        if (rope == QLatin1String("llama3"))
            spec.ropeScaling = QJsonObject{{QStringLiteral("rope_type"), QStringLiteral("llama3")}, {QStringLiteral("factor"), 8.0},
                                           {QStringLiteral("low_freq_factor"), 1.0}, {QStringLiteral("high_freq_factor"), 4.0},
                                           {QStringLiteral("original_max_position_embeddings"), 64}};
        else if (rope == QLatin1String("linear"))
            spec.ropeScaling = QJsonObject{{QStringLiteral("rope_type"), QStringLiteral("linear")}, {QStringLiteral("factor"), 4.0}};
        if (architecture == QLatin1String("Qwen3ForCausalLM"))
            spec.headDim = 32; // != hidden / heads, as in Qwen3
        spec.vocab = 4096; // the bundled tokenizer's
        spec.hidden = 64;
        spec.heads = 4;
        spec.kvHeads = 2;
        spec.tied = tied;
        spec.qkvBias = bias && architecture.startsWith(QLatin1String("Qwen2"));
        const QString folder = m_dir.filePath(QStringLiteral("tiny-") + architecture + rope);
        QVERIFY(writeTinyModel(folder, spec));
        QVERIFY(QFile::copy(defaultModelDir() + QStringLiteral("/tokenizer.json"), folder + QStringLiteral("/tokenizer.json")));
        if (bias && !spec.qkvBias) { // Llama's attention_bias: q/k/v/o biases
            QJsonObject cfg = QJsonDocument::fromJson(readAll(folder + QStringLiteral("/config.json"))).object();
            cfg.insert(QStringLiteral("attention_bias"), true);
            QFile f(folder + QStringLiteral("/config.json"));
            QVERIFY(f.open(QIODevice::WriteOnly));
            f.write(QJsonDocument(cfg).toJson());
            f.close();
            auto st = SafetensorsFile::open(folder + QStringLiteral("/model.safetensors"));
            QVERIFY(st);
            std::vector<TensorToWrite> tensors;
            std::vector<std::vector<float>> biases;
            biases.reserve(16);
            for (const TensorRecord &t : (*st)->tensors())
                tensors.push_back({t.name, t.dtype, t.shape, {t.data, t.nbytes}});
            for (int l = 0; l < spec.layers; ++l)
                for (auto [proj, n] : {std::pair{"q_proj", 64}, {"k_proj", 32}, {"v_proj", 32}, {"o_proj", 64}}) {
                    biases.emplace_back(static_cast<std::size_t>(n));
                    for (int i = 0; i < n; ++i)
                        biases.back()[static_cast<std::size_t>(i)] = 0.01f * static_cast<float>((i * 7 + l) % 13) - 0.05f;
                    tensors.push_back({QStringLiteral("model.layers.%1.self_attn.%2.bias").arg(l).arg(QLatin1String(proj)), DType::F32,
                                       {n}, std::as_bytes(std::span(biases.back()))});
                }
            QVERIFY(writeSafetensors(folder + QStringLiteral("/model2.safetensors"), tensors));
            st->reset();
            QVERIFY(QFile::remove(folder + QStringLiteral("/model.safetensors")));
            QVERIFY(QFile::rename(folder + QStringLiteral("/model2.safetensors"), folder + QStringLiteral("/model.safetensors")));
        }
        auto model = Model::load(folder);
        QVERIFY2(model, model ? "" : qPrintable(model.error().toString()));
        const QString path = folder + QStringLiteral(".gguf");
        auto report = gguf::exportGguf(**model, path);
        QVERIFY2(report, report ? "" : qPrintable(report.error().toString()));
        auto file = gguf::GgufFile::open(path);
        QVERIFY(file);
        const bool qwen = architecture.startsWith(QLatin1String("Qwen"));
        const QString ggufArch = architecture.startsWith(QLatin1String("Qwen3")) ? QStringLiteral("qwen3")
                               : qwen                                          ? QStringLiteral("qwen2")
                                                                               : QStringLiteral("llama");
        QCOMPARE(*(*file)->stringValue(QStringLiteral("general.architecture")), ggufArch);
        if (ggufArch == QLatin1String("qwen3")) {
            QVERIFY((*file)->findTensor(QStringLiteral("blk.1.attn_k_norm.weight")));
            QCOMPARE(*(*file)->intValue(QStringLiteral("qwen3.attention.key_length")), std::int64_t(32));
        }
        // llama3 rope: the frequency divisors convert_hf_to_gguf.py writes (1 for the highest
        // frequency, the factor for the lowest); linear: metadata
        const gguf::GgufTensorInfo *freqs = (*file)->findTensor(QStringLiteral("rope_freqs.weight"));
        QCOMPARE(freqs != nullptr, rope == QLatin1String("llama3"));
        if (freqs) {
            const std::vector<float> f = (*file)->dequantize(*freqs);
            QCOMPARE(f.size(), std::size_t(8));
            QCOMPARE(f.front(), 1.0f);
            QVERIFY(std::abs(f.back() - 8.0f) < 1e-5f);
        }
        if (rope == QLatin1String("linear")) {
            QCOMPARE(*(*file)->stringValue(QStringLiteral("llama.rope.scaling.type")), QStringLiteral("linear"));
            QCOMPARE(*(*file)->floatValue(QStringLiteral("llama.rope.scaling.factor")), 4.0);
        }
        QCOMPARE((*file)->findTensor(QStringLiteral("output.weight")) == nullptr, tied);
        QCOMPARE((*file)->findTensor(QStringLiteral("blk.1.attn_k.bias")) != nullptr, bias);
        if (bias) {
            // q bias: qwen2 as stored; llama permuted like the q rows (head_dim 16: row 2j+i <- i*8+j)
            const std::vector<float> fileBias = (*file)->dequantize(*(*file)->findTensor(QStringLiteral("blk.0.attn_q.bias")));
            const MatrixView hf = (*model)->weight(QStringLiteral("model.layers.0.self_attn.q_proj.bias"));
            for (int j = 0; j < 8; ++j)
                QCOMPARE(fileBias[static_cast<std::size_t>(qwen ? 2 * j + 1 : 2 * j + 1)], hf.data()[qwen ? 2 * j + 1 : 8 + j]);
        }
        auto back = Model::load(path);
        QVERIFY2(back, back ? "" : qPrintable(back.error().toString()));
        const Architecture a = (*model)->config().architecture;
        QCOMPARE((*back)->config().architecture, a == Architecture::Mistral ? Architecture::Llama : a);
        QCOMPARE((*back)->config().tieWordEmbeddings, tied);
        // rope_freqs comes back as frequency divisors (longrope with equal factors), linear as linear
        QCOMPARE((*back)->config().ropeScaling.type, rope == QLatin1String("llama3") ? RopeType::LongRope
                                                     : rope == QLatin1String("linear") ? RopeType::Linear
                                                                                       : RopeType::Default);
        std::vector<std::int32_t> ids = {5, 77, 1000, 3, 4000, 12};
        for (int i = 0; i < 40; ++i) // a longer sequence, where rope scaling matters more
            ids.push_back((i * 37 + 11) % 4096);
        // rope factors go through f32 in the file: the same logits to f32 rounding
        QVERIFY(maxAbsDiff(logitsOf(*model, ids), logitsOf(*back, ids)) <= (rope == QLatin1String("llama3") ? 1e-4f : 0.0f));
    }

    void hfDenseReloadsWithIdenticalLogits()
    {
        const QString out = m_dir.filePath(QStringLiteral("hf"));
        auto r = exportHfDense(*m_model, out);
        QVERIFY2(r, r ? "" : qPrintable(r.error().toString()));
        auto back = Model::load(out);
        QVERIFY2(back, back ? "" : qPrintable(back.error().toString()));
        QVERIFY((*back)->tokenizer());
        QCOMPARE((*back)->weights()[0].storedType, DType::BF16);
        QCOMPARE(maxAbsDiff(logitsOf(m_model, m_ids), logitsOf(*back, m_ids)), 0.0f);
        QCOMPARE((*back)->config().architectureName, QStringLiteral("LlamaForCausalLM"));

        // a compressed model, dequantized: the quantized layers become F32 with exactly the
        // dequantized values; a GGUF source gets a config.json written from its metadata
        auto compressed = quantizedCopy(*m_model, [](const WeightInfo &) { return QuantFormat{4, 128, false}; });
        const QString out2 = m_dir.filePath(QStringLiteral("hf2"));
        QVERIFY(exportHfDense(*compressed, out2));
        auto back2 = Model::load(out2);
        QVERIFY(back2);
        QVERIFY((*back2)->quantizedLayers().empty());
        for (const QuantizedLayer &q : compressed->quantizedLayers()) {
            const MatrixView a = compressed->weight(q.tensor), b = (*back2)->weight(q.tensor);
            QVERIFY(std::memcmp(a.data(), b.data(), static_cast<std::size_t>(a.rows * a.cols) * 4) == 0);
        }
        const QString ggufPath = m_dir.filePath(QStringLiteral("forhf.gguf"));
        QVERIFY(gguf::exportGguf(*m_model, ggufPath));
        auto fromGguf = Model::load(ggufPath);
        QVERIFY(fromGguf);
        const QString out3 = m_dir.filePath(QStringLiteral("hf3"));
        QVERIFY(exportHfDense(**fromGguf, out3));
        auto back3 = Model::load(out3);
        QVERIFY2(back3, back3 ? "" : qPrintable(back3.error().toString()));
        QCOMPARE(maxAbsDiff(logitsOf(m_model, m_ids), logitsOf(*back3, m_ids)), 0.0f);
    }

    void gptqPackingMatchesReference_data()
    {
        QTest::addColumn<QString>("name");
        const QJsonObject cases = QJsonDocument::fromJson(readAll(testDataDir() + QStringLiteral("/gptq/cases.json"))).object();
        QVERIFY(!cases.isEmpty());
        for (auto it = cases.begin(); it != cases.end(); ++it)
            QTest::newRow(qPrintable(it.key())) << it.key();
    }
    void gptqPackingMatchesReference()
    {
        QFETCH(QString, name);
        const QString dir = testDataDir() + QStringLiteral("/gptq/");
        const QJsonObject c = QJsonDocument::fromJson(readAll(dir + QStringLiteral("cases.json"))).object().value(name).toObject();
        QuantizedTensor q;
        q.rows = c.value(QLatin1String("rows")).toInt();
        q.cols = c.value(QLatin1String("cols")).toInt();
        q.format = {c.value(QLatin1String("bits")).toInt(), c.value(QLatin1String("group")).toInt(), c.value(QLatin1String("sym")).toBool()};
        QVERIFY(readNpyT(dir + name + QStringLiteral("_codes.npy"), q.codes));
        QVERIFY(readNpyT(dir + name + QStringLiteral("_scales.npy"), q.scales));
        QVERIFY(readNpyT(dir + name + QStringLiteral("_zeros.npy"), q.zeros));
        if (c.value(QLatin1String("act_order")).toBool())
            QVERIFY(readNpyT(dir + name + QStringLiteral("_gidx.npy"), q.groupIndex));
        std::vector<std::int32_t> qweight, qzeros;
        std::vector<float> w;
        QVERIFY(readNpyT(dir + name + QStringLiteral("_qweight.npy"), qweight));
        QVERIFY(readNpyT(dir + name + QStringLiteral("_qzeros.npy"), qzeros));
        QVERIFY(readNpyT(dir + name + QStringLiteral("_w.npy"), w));
        QVERIFY(packGptqWeight(q) == qweight);
        QVERIFY(packGptqZeros(q, c.value(QLatin1String("zero_offset")).toInt()) == qzeros);
        // the PyTorch unpacking of the packed tensors gives Bitsmith's dequantized values
        QCOMPARE(maxAbsDiff(dequantized(q), w), 0.0f);
    }

    void gptqCheckpoint()
    {
        auto compressed = quantizedCopy(*m_model, [](const WeightInfo &w) {
            return w.role == WeightRole::LinearDown ? QuantFormat{8, 128, false} : QuantFormat{4, 128, false};
        });
        const QString out = m_dir.filePath(QStringLiteral("gptq"));
        auto r = exportHfGptq(*compressed, out);
        QVERIFY2(r, r ? "" : qPrintable(r.error().toString()));
        const QJsonObject cfg = QJsonDocument::fromJson(readAll(out + QStringLiteral("/config.json"))).object();
        const QJsonObject qc = cfg.value(QLatin1String("quantization_config")).toObject();
        QCOMPARE(qc.value(QLatin1String("quant_method")).toString(), QStringLiteral("gptq"));
        QCOMPARE(qc.value(QLatin1String("bits")).toInt(), 4);
        QCOMPARE(qc.value(QLatin1String("group_size")).toInt(), 128);
        QCOMPARE(qc.value(QLatin1String("desc_act")).toBool(), false);
        QCOMPARE(qc.value(QLatin1String("sym")).toBool(), false);
        const bool anyZero = std::any_of(compressed->quantizedLayers().begin(), compressed->quantizedLayers().end(),
                                         [](const QuantizedLayer &l) { return std::count(l.packed->zeros().begin(), l.packed->zeros().end(), 0.0f) > 0; });
        QCOMPARE(qc.value(QLatin1String("checkpoint_format")).toString(), anyZero ? QStringLiteral("gptq_v2") : QStringLiteral("gptq"));
        const QJsonObject dyn = qc.value(QLatin1String("dynamic")).toObject();
        QCOMPARE(dyn.size(), 8); // the down projections at 8 bits
        QCOMPARE(dyn.value(QLatin1String("+:^model\\.layers\\.3\\.mlp\\.down_proj$")).toObject().value(QLatin1String("bits")).toInt(), 8);
        auto file = SafetensorsFile::open(out + QStringLiteral("/model.safetensors"));
        QVERIFY(file);
        const QuantizedLayer *q = compressed->quantizedLayer(QStringLiteral("model.layers.2.self_attn.v_proj.weight"));
        const TensorRecord *qw = (*file)->find(QStringLiteral("model.layers.2.self_attn.v_proj.qweight"));
        QVERIFY(qw);
        QVERIFY((qw->shape == std::vector<std::int64_t>{256 * 4 / 32, 128}));
        const auto expected = packGptqWeight(q->unpacked());
        QVERIFY(std::memcmp(qw->data, expected.data(), expected.size() * 4) == 0);
        const TensorRecord *sc = (*file)->find(QStringLiteral("model.layers.2.self_attn.v_proj.scales"));
        QVERIFY((sc->shape == std::vector<std::int64_t>{2, 128}));
        QVERIFY((*file)->find(QStringLiteral("model.layers.2.self_attn.v_proj.g_idx")));
        QVERIFY((*file)->find(QStringLiteral("model.embed_tokens.weight")));
        QVERIFY(!(*file)->find(QStringLiteral("model.layers.2.self_attn.v_proj.weight")));
        // a dense model has nothing to pack
        QVERIFY(!exportHfGptq(*m_model, m_dir.filePath(QStringLiteral("nogptq"))));
    }

    // eval --score-from (to compare with llama-perplexity, which scores the second half of each
    // window): the NLL of the scored positions, summed by hand from the logits.
    void scoreFromMatchesManualSum()
    {
        std::vector<std::int32_t> ids;
        for (int i = 0; i < 64; ++i)
            ids.push_back((i * 37 + 11) % 4096);
        EvalOptions opt;
        opt.ctx = 32;
        opt.scoreFrom = 16;
        Transformer tf(m_model);
        auto half = evaluatePerplexity(tf, ids, opt);
        QVERIFY(half);
        QCOMPARE(half->scoredTokens, std::int64_t(2 * 15));
        double nll = 0;
        for (int w = 0; w < 2; ++w) {
            const std::vector<std::int32_t> window(ids.begin() + w * 32, ids.begin() + (w + 1) * 32);
            const std::vector<float> logits = logitsOf(m_model, window);
            for (int i = 16; i < 31; ++i) {
                const float *row = logits.data() + static_cast<std::size_t>(i) * 4096;
                double mx = row[0], sum = 0;
                for (int v = 0; v < 4096; ++v)
                    mx = std::max(mx, static_cast<double>(row[v]));
                for (int v = 0; v < 4096; ++v)
                    sum += std::exp(row[v] - mx);
                nll -= row[window[static_cast<std::size_t>(i + 1)]] - mx - std::log(sum);
            }
        }
        QVERIFY(std::fabs(half->meanNll - nll / 30) < 1e-5);
        opt.scoreFrom = 0;
        auto all = evaluatePerplexity(tf, ids, opt);
        QVERIFY(all);
        QCOMPARE(all->scoredTokens, std::int64_t(2 * 31));
        opt.scoreFrom = 31;
        QVERIFY(!evaluatePerplexity(tf, ids, opt));
    }

    void recipeYaml()
    {
        Recipe r;
        r.defaultTechnique = QStringLiteral("gptq");
        r.defaultFormat = {4, 128, false};
        r.defaultParameters.insert(QStringLiteral("actOrder"), true);
        RecipeEntry down;
        down.match = QStringLiteral("model.layers.*.mlp.down_proj");
        down.bits = 8;
        down.groupSize = 0;
        RecipeEntry q;
        q.name = QStringLiteral("model.layers.0.self_attn.q_proj");
        q.technique = QStringLiteral("rtn");
        q.bits = 6;
        q.symmetric = true;
        RecipeEntry skip;
        skip.regex = QStringLiteral("model\\.layers\\.7\\..*");
        skip.skip = true;
        r.layers = {down, q, skip};
        const QString y = QString::fromUtf8(recipeToYaml(r));
        const QString expectedGptq = QStringLiteral(
            "    GPTQModifier:\n"
            "      ignore: ['lm_head', 're:^model\\.layers\\.7\\..*$']\n"
            "      config_groups:\n"
            "        group_0:\n"
            "          targets: ['Linear']\n"
            "          weights:\n"
            "            num_bits: 4\n"
            "            type: int\n"
            "            symmetric: false\n"
            "            strategy: group\n"
            "            group_size: 128\n"
            "            actorder: group\n"
            "        group_1:\n"
            "          targets: ['re:^model\\.layers\\.[^/]*\\.mlp\\.down_proj$']\n"
            "          weights:\n"
            "            num_bits: 8\n"
            "            type: int\n"
            "            symmetric: false\n"
            "            strategy: channel\n"
            "            actorder: group\n");
        QVERIFY2(y.contains(expectedGptq), qPrintable(y));
        QVERIFY(y.contains(QStringLiteral("    QuantizationModifier:\n")));
        QVERIFY(y.contains(QStringLiteral("          targets: ['re:^model\\.layers\\.0\\.self_attn\\.q_proj$']\n"
                                          "          weights:\n"
                                          "            num_bits: 6\n"
                                          "            type: int\n"
                                          "            symmetric: true\n")));
    }
};

QTEST_GUILESS_MAIN(TestExport)
#include "tst_export.moc"
