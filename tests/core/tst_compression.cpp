// tst_compression: the compression engine end to end on the bundled model: recipe -> compressed
// layers equal to the quantizer's own output, the written folder reloads with identical logits on
// the quantized kernels, sizes and bits per weight are counted with scales and zeros, broken
// compressed folders give errors naming the tensor, cancellation, calibration sequences.
#include "core/calibration.h"
#include "core/compression.h"
#include "core/evaluate.h"
#include "core/safetensors.h"
#include "core/outputfolder.h"
#include "core/gguf/ggufmodel.h"
#include "core/export/hfexport.h"
#include "core/model.h"
#include "core/quant/quantizer.h"
#include "core/sdk/technique.h"
#include "core/sdk/techniqueregistry.h"
#include "core/transformer.h"
#include "testutil.h"

#include <QDir>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTemporaryDir>
#include <QTest>

#include <cmath>

using namespace bitsmith::core;
using namespace bitsmith::test;

namespace {

std::vector<float> logitsOf(const Transformer &tf, const std::vector<std::int32_t> &ids)
{
    KVCache cache = tf.makeCache(int(ids.size()));
    std::vector<float> logits;
    if (auto ok = tf.forward(ids, cache, logits); !ok)
        qFatal("%s", qPrintable(ok.error().toString()));
    return logits;
}

} // namespace

class TestCompression : public QObject
{
    Q_OBJECT

    std::shared_ptr<Model> m_model;
    std::unique_ptr<TechniqueRegistry> m_registry;
    const std::vector<std::int32_t> m_ids = {1088, 260, 2342, 424, 3317, 12, 270, 401, 334, 299};

    Recipe rtnRecipe(int bits, int group, bool sym = false)
    {
        Recipe r;
        r.defaultTechnique = QStringLiteral("rtn");
        r.defaultFormat = QuantFormat{bits, group, sym};
        return r;
    }

private slots:
    void initTestCase()
    {
        auto m = Model::load(defaultModelDir());
        QVERIFY(m);
        m_model = *m;
        m_registry = std::make_unique<TechniqueRegistry>(QStringList{QStringLiteral(BITSMITH_PLUGIN_DIR_FOR_TESTS)});
    }

    void engineMatchesQuantizer()
    {
        auto result = compressModel(*m_model, rtnRecipe(4, 128), *m_registry, {});
        QVERIFY2(result, qPrintable(result ? QString() : result.error().toString()));
        QCOMPARE(result->layers.size(), size_t(8 * 7)); // every block linear, not the head
        QCOMPARE(result->model->quantizedLayers().size(), size_t(56));
        for (const QuantizedLayer &q : result->model->quantizedLayers()) {
            auto direct = quantizeRtn(m_model->weight(q.tensor), QuantFormat{4, 128, false});
            QVERIFY(direct);
            QCOMPARE(q.unpacked().codes, direct->codes);
            QCOMPARE(q.unpacked().scales, direct->scales);
            QCOMPARE(q.unpacked().zeros, direct->zeros);
        }
        // 4 bits + (16-bit scale + 4-bit zero) / 128 = 4.15625 bits per weight
        QCOMPARE(result->effectiveBitsPerWeight, 4.15625);
        // the source is untouched
        QVERIFY(m_model->quantizedLayers().empty());
    }

    void writtenFolderReloadsWithIdenticalLogits_data()
    {
        QTest::addColumn<int>("bits");
        QTest::addColumn<int>("group");
        QTest::addColumn<bool>("sym");
        QTest::newRow("q4 g128") << 4 << 128 << false;
        QTest::newRow("q3 g64 sym") << 3 << 64 << true;
        QTest::newRow("q8 per-channel") << 8 << 0 << false;
        QTest::newRow("q2 g32") << 2 << 32 << false;
    }

    void writtenFolderReloadsWithIdenticalLogits()
    {
        QFETCH(int, bits);
        QFETCH(int, group);
        QFETCH(bool, sym);
        auto result = compressModel(*m_model, rtnRecipe(bits, group, sym), *m_registry, {});
        QVERIFY(result);
        QTemporaryDir dir;
        const QString out = dir.filePath(QStringLiteral("compressed"));
        auto ok = writeCompressedModel(*result, *m_model, out);
        QVERIFY2(ok, qPrintable(ok ? QString() : ok.error().toString()));
        QVERIFY(!QFileInfo::exists(out + QStringLiteral(".partial")));
        auto reloaded = Model::load(out);
        QVERIFY2(reloaded, qPrintable(reloaded ? QString() : reloaded.error().toString()));
        QCOMPARE((*reloaded)->quantizedLayers().size(), size_t(56));
        QVERIFY((*reloaded)->tokenizer());
        // identical stored form
        for (const QuantizedLayer &q : result->model->quantizedLayers()) {
            const QuantizedLayer *r = (*reloaded)->quantizedLayer(q.tensor);
            QVERIFY(r);
            QCOMPARE(r->unpacked().codes, q.unpacked().codes);
            QCOMPARE(r->unpacked().scales, q.unpacked().scales);
        }
        QCOMPARE((*reloaded)->totalStoredBytes(), result->model->totalStoredBytes());
        // identical logits on the quantized kernels; the dense f32 path on the dequantized
        // weights agrees to f32 rounding
        const auto inMemory = logitsOf(Transformer(result->model), m_ids);
        const auto fromDisk = logitsOf(Transformer(*reloaded), m_ids);
        QCOMPARE(maxAbsDiff(inMemory, fromDisk), 0.0f);
        const auto dense = logitsOf(Transformer(*reloaded, LinearBackend::OneDnn, false), m_ids);
        QVERIFY2(maxAbsDiff(dense, fromDisk) < 2e-4f, qPrintable(QString::number(maxAbsDiff(dense, fromDisk))));
        // recipe and report beside the weights
        auto recipe = Recipe::fromFile(out + QStringLiteral("/recipe.json"));
        QVERIFY(recipe);
        QCOMPARE(recipe->defaultFormat, (QuantFormat{bits, group, sym}));
        QCOMPARE(recipe->modelWeightsHash, m_model->weightsHash());
        const QJsonObject report = QJsonDocument::fromJson(readAll(out + QStringLiteral("/report.json"))).object();
        QCOMPARE(report[QStringLiteral("effective_bpw")].toDouble(), result->effectiveBitsPerWeight);
        QCOMPARE(report[QStringLiteral("layers")].toArray().size(), 56);
    }

    void rtnMatchesPyTorchReference_data()
    {
        QTest::addColumn<int>("index");
        const QJsonObject ref = QJsonDocument::fromJson(readAll(testDataDir() + QStringLiteral("/reference/rtn_reference.json"))).object();
        const QJsonArray formats = ref[QStringLiteral("formats")].toArray();
        QVERIFY(formats.size() >= 5);
        for (int i = 0; i < formats.size(); ++i) {
            const QJsonObject f = formats[i].toObject();
            QTest::newRow(qPrintable(QStringLiteral("w%1 g%2").arg(f[QStringLiteral("bits")].toInt()).arg(f[QStringLiteral("group")].toInt())))
                << i;
        }
    }

    void rtnMatchesPyTorchReference()
    {
        // tools/rtn_reference.py quantized the same weights with its own PyTorch RTN of the
        // REFERENCE.md definition and scored the first windows of eval.txt.
        QFETCH(int, index);
        const QJsonObject ref = QJsonDocument::fromJson(readAll(testDataDir() + QStringLiteral("/reference/rtn_reference.json"))).object();
        const QJsonObject f = ref[QStringLiteral("formats")].toArray()[index].toObject();
        const QJsonObject quick = f[QStringLiteral("quick")].toObject();
        auto result = compressModel(*m_model, rtnRecipe(f[QStringLiteral("bits")].toInt(), f[QStringLiteral("group")].toInt()),
                                    *m_registry, {});
        QVERIFY(result);
        auto text = readTextFile(defaultModelDir() + QStringLiteral("/eval.txt"));
        QVERIFY(text);
        const auto ids = m_model->tokenizer()->encode(*text);
        QCOMPARE(qint64(ids.size()), qint64(ref[QStringLiteral("tokens")].toInt()));
        EvalOptions opt;
        opt.ctx = ref[QStringLiteral("ctx")].toInt();
        opt.maxWindows = quick[QStringLiteral("windows")].toInt();
        auto ppl = evaluatePerplexity(Transformer(result->model), ids, opt);
        QVERIFY(ppl);
        const double want = quick[QStringLiteral("ppl")].toDouble();
        qInfo("RTN w%d g%d: perplexity %.4f, PyTorch reference %.4f (%.4f%%)", f[QStringLiteral("bits")].toInt(),
              f[QStringLiteral("group")].toInt(), ppl->perplexity, want, 100.0 * (ppl->perplexity / want - 1.0));
        QVERIFY2(std::fabs(ppl->perplexity / want - 1.0) < 0.005, qPrintable(QString::number(ppl->perplexity)));
    }

    void brokenCompressedFolders()
    {
        auto result = compressModel(*m_model, rtnRecipe(4, 128), *m_registry, {});
        QVERIFY(result);
        QTemporaryDir dir;
        const QString out = dir.filePath(QStringLiteral("c"));
        QVERIFY(writeCompressedModel(*result, *m_model, out));
        // a config naming a layer whose tensors are missing
        QFile cfg(out + QStringLiteral("/config.json"));
        QVERIFY(cfg.open(QIODevice::ReadOnly));
        const QByteArray original = cfg.readAll();
        cfg.close();
        auto writeConfig = [&](const QByteArray &bytes) {
            QFile f(out + QStringLiteral("/config.json"));
            QVERIFY(f.open(QIODevice::WriteOnly | QIODevice::Truncate));
            f.write(bytes);
        };
        QByteArray renamed = original;
        renamed.replace("\"model.layers.0.self_attn.q_proj\"", "\"model.layers.0.self_attn.q_projX\"");
        writeConfig(renamed);
        auto m1 = Model::load(out);
        QVERIFY(!m1);
        QVERIFY2(m1.error().tensor.startsWith(QStringLiteral("model.layers.0.self_attn.q_proj")), qPrintable(m1.error().toString()));
        // a wrong bit width for the stored codes: the packed size no longer matches
        QByteArray wrongBits = original;
        const qsizetype at = wrongBits.indexOf("\"bits\": 4");
        QVERIFY(at > 0);
        wrongBits.replace(at, 9, "\"bits\": 3");
        writeConfig(wrongBits);
        auto m2 = Model::load(out);
        QVERIFY(!m2);
        QVERIFY2(!m2.error().tensor.isEmpty(), qPrintable(m2.error().toString()));
        // an unknown format version
        QByteArray version = original;
        version.replace("\"format_version\": 1", "\"format_version\": 99");
        writeConfig(version);
        auto m3 = Model::load(out);
        QVERIFY(!m3);
        QCOMPARE(m3.error().code, ErrorCode::Unsupported);
    }

    void cancellation()
    {
        CallbackFeedback fb;
        fb.cancel();
        auto result = compressModel(*m_model, rtnRecipe(4, 128), *m_registry, {}, &fb);
        QVERIFY(!result);
        QCOMPARE(result.error().code, ErrorCode::Cancelled);
    }

    // Every registered technique compresses every supported architecture feature (Qwen3's q/k
    // norms and head_dim, per-layer sliding windows, scaled rope, Gemma's (1 + w) and sandwich
    // norms, into which AWQ / SmoothQuant fold their scales) through the registry, with
    // calibration where the technique wants it; the result runs and stays close to the original.
    void everyTechniqueOnEveryArchitecture_data()
    {
        QTest::addColumn<QString>("model");
        QTest::addColumn<QString>("technique");
        for (const char *m : {"qwen3", "qwen3-sliding", "rope-llama3", "rope-yarn", "rope-longrope", "mistral-sliding", "gemma2", "gemma3",
                              "phi3", "phi3-partial", "mixtral", "qwen3-moe"})
            for (const QString &t : m_registry->ids())
                QTest::newRow(qPrintable(QStringLiteral("%1 %2").arg(QLatin1String(m), t))) << QString::fromLatin1(m) << t;
    }
    void everyTechniqueOnEveryArchitecture()
    {
        QFETCH(QString, model);
        QFETCH(QString, technique);
        auto m = Model::load(testDataDir() + QStringLiteral("/tiny/") + model);
        QVERIFY2(m, m ? "" : qPrintable(m.error().toString()));
        auto tech = m_registry->create(technique);
        QVERIFY(tech);
        Recipe r;
        r.defaultTechnique = technique;
        r.defaultFormat = technique == QLatin1String("smoothquant") ? QuantFormat{8, 0, true}
                        : technique == QLatin1String("pow2")        ? QuantFormat{4, 32, true}
                                                                    : QuantFormat{4, 32, false};
        if ((*tech)->category() == TechniqueCategory::Pruning)
            r.defaultSparsity = 0.25; // these random-weight models have no redundancy to spare
        std::vector<std::vector<std::int32_t>> calibration(4);
        for (std::size_t s = 0; s < calibration.size(); ++s)
            for (int i = 0; i < 96; ++i) // longer than the sliding window (16) and the rope's original context (64)
                calibration[s].push_back(std::int32_t((i * 31 + int(s) * 7 + 3) % 300));
        auto result = compressModel(**m, r, *m_registry, calibration);
        QVERIFY2(result, result ? "" : qPrintable(result.error().toString()));
        const std::vector<std::int32_t> ids(calibration[0].begin(), calibration[0].begin() + 80);
        const std::vector<float> before = logitsOf(Transformer(*m), ids), after = logitsOf(Transformer(result->model), ids);
        double change = 0, spread = 0, mean = 0;
        for (float v : before)
            mean += v / double(before.size());
        for (std::size_t i = 0; i < before.size(); ++i) {
            QVERIFY(std::isfinite(after[i]));
            change += std::abs(double(after[i]) - before[i]);
            spread += std::abs(double(before[i]) - mean);
        }
        qInfo("%s %s: mean |logit change| %.3f of mean |logit - mean| %.3f", qPrintable(model), qPrintable(technique),
              change / double(before.size()), spread / double(before.size()));
        QVERIFY(change > 0);          // the layers did change
        QVERIFY(change < spread);     // and the model still resembles itself
    }

    // Folding per-channel scales into a norm keeps the product norm * W exact, also for
    // Gemma's norms that apply (1 + w): w' = (1 + w) / s - 1.
    void foldKeepsNormTimesWeight_data()
    {
        QTest::addColumn<float>("offset");
        QTest::newRow("llama norm") << 0.0f;
        QTest::newRow("gemma (1 + w) norm") << 1.0f;
    }
    void foldKeepsNormTimesWeight()
    {
        QFETCH(float, offset);
        struct Sink final : ResultSink
        {
            void setQuantized(const LayerTarget &, QuantizedTensor, Execution) override {}
            void markModified(const QString &n) override { modified = n; }
            QString modified;
        } sink;
        std::vector<float> norm = {0.5f, -0.25f, 1.5f, 0.1f}, w(3 * 4);
        for (std::size_t i = 0; i < w.size(); ++i)
            w[i] = 0.1f * float(i) - 0.3f;
        const std::vector<float> norm0 = norm, w0 = w, s = {2.0f, 0.5f, 4.0f, 1.25f};
        LayerGroup g;
        g.producer.kind = InputProducer::Kind::Norm;
        g.producer.name = QStringLiteral("model.layers.0.input_layernorm.weight");
        g.producer.data = norm.data();
        g.producer.rows = 1;
        g.producer.cols = 4;
        g.producer.offset = offset;
        LayerTarget t;
        t.weight = w.data();
        t.rows = 3;
        t.cols = 4;
        g.layers.push_back(t);
        QVERIFY(canFoldInputScales(g, 1));
        foldInputScales(g, s, sink);
        QCOMPARE(sink.modified, g.producer.name);
        for (int r = 0; r < 3; ++r)
            for (int j = 0; j < 4; ++j)
                QVERIFY(std::abs((offset + norm[j]) * w[r * 4 + j] - (offset + norm0[j]) * w0[r * 4 + j]) < 1e-6f);
    }

    // Phi-3's fused qkv_proj / gate_up_proj are q/k/v and gate/up to the user (read in place as
    // row ranges of the fused tensors); a compressed folder holds the parts, and reloads with the
    // same logits; a Hugging Face export fuses them again (qkv_proj, gate_up_proj), as
    // transformers loads them, with the same logits.
    void phi3FusedProjections()
    {
        auto m = Model::load(testDataDir() + QStringLiteral("/tiny/phi3"));
        QVERIFY2(m, m ? "" : qPrintable(m.error().toString()));
        int parts = 0;
        for (const WeightInfo &w : (*m)->weights())
            if (!w.fusedName.isEmpty())
                ++parts;
        QCOMPARE(parts, 2 * 5); // q, k, v, gate, up in each of the 2 blocks
        const MatrixView k = (*m)->weight(QStringLiteral("model.layers.1.self_attn.k_proj.weight"));
        QCOMPARE(k.rows, 32); // 2 kv heads x 16
        QCOMPARE(k.slot->widenedBytes(), std::int64_t(0)); // in place
        const std::vector<std::int32_t> ids = {1, 17, 42, 299, 0, 123, 7, 256, 88, 150, 3, 211};
        const std::vector<float> base = logitsOf(Transformer(*m), ids);

        QTemporaryDir dir;
        auto result = compressModel(**m, rtnRecipe(4, 16), *m_registry, {});
        QVERIFY2(result, result ? "" : qPrintable(result.error().toString()));
        const QString folder = dir.filePath(QStringLiteral("phi3-rtn"));
        auto ok = writeCompressedModel(*result, **m, folder);
        QVERIFY2(ok, ok ? "" : qPrintable(ok.error().toString()));
        auto back = Model::load(folder);
        QVERIFY2(back, back ? "" : qPrintable(back.error().toString()));
        QVERIFY((*back)->quantizedLayer(QStringLiteral("model.layers.0.self_attn.v_proj.weight")));
        QCOMPARE(maxAbsDiff(logitsOf(Transformer(result->model), ids), logitsOf(Transformer(*back), ids)), 0.0f);

        const QString hf = dir.filePath(QStringLiteral("phi3-hf"));
        auto exported = exportHfDense(**m, hf);
        QVERIFY2(exported, exported ? "" : qPrintable(exported.error().toString()));
        auto st = SafetensorsCollection::openFolder(hf);
        QVERIFY(st);
        QVERIFY((*st)->find(QStringLiteral("model.layers.0.self_attn.qkv_proj.weight")));
        QVERIFY((*st)->find(QStringLiteral("model.layers.1.mlp.gate_up_proj.weight")));
        QVERIFY(!(*st)->find(QStringLiteral("model.layers.0.self_attn.q_proj.weight")));
        auto reloaded = Model::load(hf);
        QVERIFY2(reloaded, reloaded ? "" : qPrintable(reloaded.error().toString()));
        QCOMPARE(maxAbsDiff(base, logitsOf(Transformer(*reloaded), ids)), 0.0f);
        // GGUF is refused with a hint rather than written wrong
        auto gguf = gguf::exportGguf(**m, dir.filePath(QStringLiteral("p.gguf")));
        QVERIFY(!gguf);
        QCOMPARE(gguf.error().code, ErrorCode::Unsupported);
    }

    // Mixture-of-experts: every expert's gate/up/down is a layer of its own (named as the
    // checkpoint names it), a glob addresses all experts, the router stays dense, and an expert
    // that the router starved of calibration tokens gets a warning naming it.
    void moeExpertsAreLayers()
    {
        auto m = Model::load(testDataDir() + QStringLiteral("/tiny/mixtral"));
        QVERIFY2(m, m ? "" : qPrintable(m.error().toString()));
        const auto layers = linearLayers(**m);
        int experts = 0;
        bool router = false;
        for (const ResolvedLayer &l : layers) {
            if (l.expert >= 0) {
                ++experts;
                QVERIFY(l.name.contains(QStringLiteral(".block_sparse_moe.experts.%1.").arg(l.expert)));
            }
            router = router || l.name.endsWith(QStringLiteral("block_sparse_moe.gate"));
        }
        QCOMPARE(experts, 2 * 4 * 3); // 2 blocks x 4 experts x (w1, w3, w2)
        QVERIFY(!router);              // the router is not a compressible layer
        Recipe r = rtnRecipe(4, 32);
        RecipeEntry e;
        e.match = QStringLiteral("model.layers.*.block_sparse_moe.experts.*.w2");
        e.bits = 8;
        r.layers.push_back(e);
        auto result = compressModel(**m, r, *m_registry, {});
        QVERIFY2(result, result ? "" : qPrintable(result.error().toString()));
        for (int b = 0; b < 2; ++b)
            for (int x = 0; x < 4; ++x) {
                const QString base = QStringLiteral("model.layers.%1.block_sparse_moe.experts.%2.").arg(b).arg(x);
                const QuantizedLayer *w1 = result->model->quantizedLayer(base + QStringLiteral("w1.weight"));
                const QuantizedLayer *w2 = result->model->quantizedLayer(base + QStringLiteral("w2.weight"));
                QVERIFY(w1 && w2);
                QCOMPARE(w1->format().bits, 4);
                QCOMPARE(w2->format().bits, 8);
            }

        // the compressed folder reloads with the same logits; a Hugging Face export reloads too
        QTemporaryDir out;
        const std::vector<std::int32_t> prompt = {1, 17, 42, 299, 0, 123, 7, 256, 88, 150};
        const QString folder = out.filePath(QStringLiteral("mixtral-rtn"));
        auto written = writeCompressedModel(*result, **m, folder);
        QVERIFY2(written, written ? "" : qPrintable(written.error().toString()));
        auto back = Model::load(folder);
        QVERIFY2(back, back ? "" : qPrintable(back.error().toString()));
        QVERIFY((*back)->quantizedLayer(QStringLiteral("model.layers.1.block_sparse_moe.experts.2.w3.weight")));
        QCOMPARE(maxAbsDiff(logitsOf(Transformer(result->model), prompt), logitsOf(Transformer(*back), prompt)), 0.0f);
        const QString hf = out.filePath(QStringLiteral("mixtral-hf"));
        auto exported = exportHfDense(**m, hf);
        QVERIFY2(exported, exported ? "" : qPrintable(exported.error().toString()));
        auto reloaded = Model::load(hf);
        QVERIFY2(reloaded, reloaded ? "" : qPrintable(reloaded.error().toString()));
        QCOMPARE(maxAbsDiff(logitsOf(Transformer(*m), prompt), logitsOf(Transformer(*reloaded), prompt)), 0.0f);

        // Qwen3-MoE with 6 calibration tokens: every expert of a MoE block gets fewer than 32
        auto q = Model::load(testDataDir() + QStringLiteral("/tiny/qwen3-moe"));
        QVERIFY2(q, q ? "" : qPrintable(q.error().toString()));
        Recipe g;
        g.defaultTechnique = QStringLiteral("gptq");
        g.defaultFormat = QuantFormat{4, 16, false};
        auto gq = compressModel(**q, g, *m_registry, {{5, 9, 200, 13, 77, 150}});
        QVERIFY2(gq, gq ? "" : qPrintable(gq.error().toString()));
        QVERIFY(!gq->warnings.empty());
        QVERIFY(gq->warnings.front().contains(QStringLiteral("expert")));
        QVERIFY(gq->model->quantizedLayer(QStringLiteral("model.layers.0.mlp.experts.3.down_proj.weight")));
        QVERIFY(gq->model->quantizedLayer(QStringLiteral("model.layers.1.mlp.down_proj.weight"))); // the dense layer (mlp_only_layers)
        const std::vector<std::int32_t> ids = {1, 17, 42, 299, 0, 123, 7, 256};
        for (float v : logitsOf(Transformer(gq->model), ids))
            QVERIFY(std::isfinite(v));
        // with enough varied tokens no expert is starved
        std::vector<std::vector<std::int32_t>> calib(4);
        for (std::size_t s = 0; s < calib.size(); ++s)
            for (int i = 0; i < 96; ++i)
                calib[s].push_back(std::int32_t((i * 31 + int(s) * 7 + 3) % 300));
        auto ok = compressModel(**q, g, *m_registry, calib);
        QVERIFY2(ok, ok ? "" : qPrintable(ok.error().toString()));
        QVERIFY2(ok->warnings.empty(), ok->warnings.empty() ? "" : qPrintable(ok->warnings.front()));
        // GGUF export of MoE is refused with a hint rather than written without experts
        QTemporaryDir dir;
        auto gguf = gguf::exportGguf(**q, dir.filePath(QStringLiteral("m.gguf")));
        QVERIFY(!gguf);
        QCOMPARE(gguf.error().code, ErrorCode::Unsupported);
    }

    void calibrationSequences()
    {
        std::vector<std::int32_t> tokens(10000);
        for (size_t i = 0; i < tokens.size(); ++i)
            tokens[i] = std::int32_t(i);
        auto a = makeCalibrationSequences(tokens, 8, 100, 7);
        auto b = makeCalibrationSequences(tokens, 8, 100, 7);
        auto c = makeCalibrationSequences(tokens, 8, 100, 8);
        QVERIFY(a && b && c);
        QCOMPARE(*a, *b);
        QVERIFY(*a != *c);
        QCOMPARE(a->size(), size_t(8));
        for (const auto &s : *a) {
            QCOMPARE(s.size(), size_t(100));
            for (size_t i = 1; i < s.size(); ++i)
                QCOMPARE(s[i], s[i - 1] + 1); // contiguous windows of the text
        }
        // not enough text for 200 windows of 100: the 100 non-overlapping ones that fit
        auto fit = makeCalibrationSequences(tokens, 200, 100, 0);
        QVERIFY(fit);
        QCOMPARE(fit->size(), size_t(100));
        QCOMPARE(fit->back().front(), 9900);
        auto tiny = makeCalibrationSequences(std::vector<std::int32_t>{1}, 8, 100, 0);
        QVERIFY(!tiny);
    }

    void inputStatistics()
    {
        // H = (2/n) Σ x xᵀ against a direct computation
        const std::vector<float> x = {1, 2, 0, -1, 3, 1, 0.5f, 0, -2};
        InputStatistics s(3, true, 2, 0);
        s.add(x.data(), 2);
        s.add(x.data() + 6, 1);
        QCOMPARE(s.tokens(), std::int64_t(3));
        for (int i = 0; i < 3; ++i)
            for (int j = 0; j < 3; ++j) {
                double direct = 0;
                for (int r = 0; r < 3; ++r)
                    direct += double(x[size_t(r * 3 + i)]) * x[size_t(r * 3 + j)];
                QVERIFY(std::fabs(s.hessian()(i, j) - 2.0 * direct / 3.0) < 1e-9);
            }
        QCOMPARE(s.maxAbs()[2], 2.0);
        QVERIFY(std::fabs(s.meanAbs()[0] - 2.5 / 3) < 1e-12);
        QCOMPARE(s.sampleRows(), std::int64_t(2)); // reservoir of 2 rows
    }
};

QTEST_GUILESS_MAIN(TestCompression)
#include "tst_compression.moc"
