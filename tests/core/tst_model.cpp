// tst_model: loading Llama-family folders (and the errors for broken ones), and runtime
// invariants that need no reference file: backends agree, the KV cache gives the same logits as
// a full pass, the sliding window limits what a position sees.
#include "core/evaluate.h"
#include "core/generate.h"
#include "core/model.h"
#include "core/transformer.h"
#include "testutil.h"
#include "tinymodel.h"

#include <QTemporaryDir>
#include <QTest>

#include <cmath>

using namespace bitsmith::core;
using namespace bitsmith::test;

namespace {

std::vector<float> runAll(const Transformer &tf, const std::vector<std::int32_t> &ids)
{
    KVCache cache = tf.makeCache(static_cast<int>(ids.size()));
    std::vector<float> logits;
    auto ok = tf.forward(ids, cache, logits);
    if (!ok)
        qFatal("%s", qPrintable(ok.error().toString()));
    return logits;
}

} // namespace

class TestModel : public QObject
{
    Q_OBJECT

private slots:
    void loadsAndCountsParameters_data()
    {
        QTest::addColumn<QString>("arch");
        QTest::addColumn<bool>("tied");
        QTest::addColumn<int>("dtype");
        QTest::newRow("llama f32") << QStringLiteral("LlamaForCausalLM") << false << int(DType::F32);
        QTest::newRow("qwen2 tied bf16") << QStringLiteral("Qwen2ForCausalLM") << true << int(DType::BF16);
        QTest::newRow("mistral f16") << QStringLiteral("MistralForCausalLM") << false << int(DType::F16);
    }

    void loadsAndCountsParameters()
    {
        QFETCH(QString, arch);
        QFETCH(bool, tied);
        QFETCH(int, dtype);
        QTemporaryDir dir;
        TinySpec s;
        s.architecture = arch;
        s.tied = tied;
        s.qkvBias = arch.startsWith(QStringLiteral("Qwen2"));
        s.dtype = static_cast<DType>(dtype);
        QVERIFY(writeTinyModel(dir.path(), s));
        auto m = Model::load(dir.path());
        QVERIFY2(m, qPrintable(m ? QString() : m.error().toString()));
        QCOMPARE((*m)->totalParameters(), (*m)->config().parameterCount());
        QCOMPARE(qint64((*m)->weights().size()), qint64(tinyTensorShapes(s).size()));
        QCOMPARE((*m)->totalStoredBytes(), (*m)->totalParameters() * qint64(dtypeSize(s.dtype)));
        QVERIFY(!(*m)->tokenizer()); // no tokenizer.json: allowed
        if (tied)
            QCOMPARE((*m)->lmHead().data(), (*m)->embedding().data());
    }

    void brokenCheckpoints_data()
    {
        QTest::addColumn<QString>("what");
        QTest::addColumn<QString>("tensor");
        QTest::addColumn<QString>("mention");
        QTest::newRow("missing tensor") << QStringLiteral("drop") << QStringLiteral("model.layers.1.mlp.up_proj.weight")
                                        << QStringLiteral("missing");
        QTest::newRow("wrong shape") << QStringLiteral("reshape") << QStringLiteral("model.layers.0.self_attn.k_proj.weight")
                                     << QStringLiteral("[16, 33]");
        QTest::newRow("unexpected tensor") << QStringLiteral("extra") << QStringLiteral("model.layers.5.foo.weight")
                                           << QStringLiteral("unexpected");
        QTest::newRow("untied without head") << QStringLiteral("drop") << QStringLiteral("lm_head.weight")
                                             << QStringLiteral("tie_word_embeddings");
    }

    void brokenCheckpoints()
    {
        QFETCH(QString, what);
        QFETCH(QString, tensor);
        QFETCH(QString, mention);
        QTemporaryDir dir;
        TinySpec s;
        if (what == QLatin1String("extra"))
            s.extraTensors = {tensor};
        else
            s.mutate = [&](QString &name, std::vector<std::int64_t> &shape) {
                if (name != tensor)
                    return;
                if (what == QLatin1String("drop"))
                    name.clear();
                else
                    shape = {16, 33};
            };
        QVERIFY(writeTinyModel(dir.path(), s));
        auto m = Model::load(dir.path());
        QVERIFY(!m);
        QCOMPARE(m.error().tensor, tensor);
        QVERIFY2(m.error().toString().contains(mention) || m.error().hint.contains(mention),
                 qPrintable(m.error().toString() + QLatin1Char(' ') + m.error().hint));
        QVERIFY(!m.error().hint.isEmpty());
    }

    void missingFolder()
    {
        auto m = Model::load(QStringLiteral("/nonexistent/model"));
        QVERIFY(!m);
        QCOMPARE(m.error().code, ErrorCode::Io);
        QVERIFY(m.error().hint.contains(QStringLiteral("default")));
    }

    void cancelledLoad()
    {
        QTemporaryDir dir;
        QVERIFY(writeTinyModel(dir.path(), TinySpec{}));
        CallbackFeedback fb;
        fb.cancel();
        auto m = Model::load(dir.path(), &fb);
        QVERIFY(!m);
        QCOMPARE(m.error().code, ErrorCode::Cancelled);
    }

    void backendsAgree()
    {
        QTemporaryDir dir;
        TinySpec s;
        s.qkvBias = true;
        s.architecture = QStringLiteral("Qwen2ForCausalLM");
        QVERIFY(writeTinyModel(dir.path(), s));
        auto m = Model::load(dir.path());
        QVERIFY(m);
        const std::vector<std::int32_t> ids = {1, 5, 9, 22, 96, 0, 3, 3, 7};
        const auto a = runAll(Transformer(*m, LinearBackend::OneDnn), ids);
        const auto b = runAll(Transformer(*m, LinearBackend::Eigen), ids);
        QCOMPARE(a.size(), ids.size() * 97);
        QVERIFY2(maxAbsDiff(a, b) < 1e-4f, qPrintable(QString::number(maxAbsDiff(a, b))));
    }

    void kvCacheMatchesFullPass()
    {
        QTemporaryDir dir;
        QVERIFY(writeTinyModel(dir.path(), TinySpec{}));
        auto m = Model::load(dir.path());
        QVERIFY(m);
        Transformer tf(*m);
        const std::vector<std::int32_t> ids = {4, 8, 15, 16, 23, 42, 7, 1, 2, 3};
        const auto full = runAll(tf, ids);
        KVCache cache = tf.makeCache(static_cast<int>(ids.size()));
        std::vector<float> logits;
        // a prefix of 4, then one token at a time
        QVERIFY(tf.forward(std::span(ids).first(4), cache, logits));
        for (size_t i = 4; i < ids.size(); ++i) {
            QVERIFY(tf.forward(std::span(ids).subspan(i, 1), cache, logits));
            QCOMPARE(logits.size(), size_t(97));
            for (int v = 0; v < 97; ++v)
                QVERIFY(std::fabs(logits[size_t(v)] - full[i * 97 + size_t(v)]) < 1e-4f);
        }
        QCOMPARE(cache.length, int(ids.size()));
    }

    void slidingWindowLimitsContext()
    {
        // Two layers with a window of 3: position p sees tokens back to p - 2*(3-1), so token 0
        // cannot influence positions >= 5, but does influence position 4.
        QTemporaryDir dir;
        TinySpec s;
        s.architecture = QStringLiteral("MistralForCausalLM");
        s.slidingWindow = 3;
        QVERIFY(writeTinyModel(dir.path(), s));
        auto m = Model::load(dir.path());
        QVERIFY(m);
        QCOMPARE((*m)->config().slidingWindow, 3);
        Transformer tf(*m);
        std::vector<std::int32_t> a = {10, 11, 12, 13, 14, 15, 16, 17}, b = a;
        b[0] = 50;
        const auto la = runAll(tf, a), lb = runAll(tf, b);
        auto rowDiff = [&](size_t row) {
            float d = 0;
            for (size_t v = 0; v < 97; ++v)
                d = std::max(d, std::fabs(la[row * 97 + v] - lb[row * 97 + v]));
            return d;
        };
        QVERIFY(rowDiff(4) > 1e-4f);
        for (size_t row = 5; row < a.size(); ++row)
            QCOMPARE(rowDiff(row), 0.0f);
    }

    void forwardRejectsBadInput()
    {
        QTemporaryDir dir;
        QVERIFY(writeTinyModel(dir.path(), TinySpec{}));
        auto m = Model::load(dir.path());
        QVERIFY(m);
        Transformer tf(*m);
        KVCache cache = tf.makeCache(8);
        std::vector<float> logits;
        const std::vector<std::int32_t> bad = {1, 97};
        auto r = tf.forward(bad, cache, logits);
        QVERIFY(!r);
        QVERIFY(r.error().message.contains(QStringLiteral("97")));
        const std::vector<std::int32_t> tooMany(9, 1);
        QVERIFY(!tf.forward(tooMany, cache, logits));
        KVCache big = tf.makeCache(100);
        const std::vector<std::int32_t> overContext(65, 1); // maxPos is 64
        auto r2 = tf.forward(overContext, big, logits);
        QVERIFY(!r2);
        QCOMPARE(r2.error().parameter, QStringLiteral("ctx"));
    }

    void perplexityProtocolByHand()
    {
        // The windowing is checked against a direct computation: 2 windows of 5 over 12 tokens
        // (2 left over), scoring tokens 1..4 of each window.
        QTemporaryDir dir;
        QVERIFY(writeTinyModel(dir.path(), TinySpec{}));
        auto m = Model::load(dir.path());
        QVERIFY(m);
        Transformer tf(*m);
        const std::vector<std::int32_t> ids = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8};
        EvalOptions opt;
        opt.ctx = 5;
        auto r = evaluatePerplexity(tf, ids, opt);
        QVERIFY(r);
        QCOMPARE(r->windows, std::int64_t(2));
        QCOMPARE(r->scoredTokens, std::int64_t(8));
        double nll = 0;
        for (int w = 0; w < 2; ++w) {
            std::vector<std::int32_t> win(ids.begin() + 5 * w, ids.begin() + 5 * w + 5);
            const auto logits = runAll(tf, win);
            for (int i = 0; i < 4; ++i) {
                double mx = -1e30, sum = 0;
                for (int v = 0; v < 97; ++v)
                    mx = std::max(mx, double(logits[size_t(i * 97 + v)]));
                for (int v = 0; v < 97; ++v)
                    sum += std::exp(double(logits[size_t(i * 97 + v)]) - mx);
                nll -= double(logits[size_t(i * 97 + win[size_t(i + 1)])]) - mx - std::log(sum);
            }
        }
        QVERIFY(std::fabs(r->meanNll - nll / 8) < 1e-9);
        QVERIFY(std::fabs(r->perplexity - std::exp(nll / 8)) < 1e-9);
        // A model compared with itself: KL 0, full agreement.
        auto c = compareModels(tf, tf, ids, opt);
        QVERIFY(c);
        QVERIFY(std::fabs(c->meanKl) < 1e-12);
        QCOMPARE(c->top1Agreement, 1.0);
        // Too short a text is an error naming ctx.
        opt.ctx = 13;
        auto shortText = evaluatePerplexity(tf, ids, opt);
        QVERIFY(!shortText);
        QCOMPARE(shortText.error().parameter, QStringLiteral("ctx"));
    }

    void greedyGenerationIsArgmax()
    {
        QTemporaryDir dir;
        QVERIFY(writeTinyModel(dir.path(), TinySpec{}));
        auto m = Model::load(dir.path());
        QVERIFY(m);
        Transformer tf(*m);
        GenerateOptions o;
        o.temperature = 0;
        o.maxTokens = 6;
        o.stopAtEos = false;
        std::vector<std::int32_t> seq = {5, 6, 7};
        auto out = generate(tf, seq, o);
        QVERIFY(out);
        QCOMPARE(out->size(), size_t(6));
        // each generated token is the argmax of a full pass over everything before it
        for (std::int32_t next : *out) {
            const auto logits = runAll(tf, seq);
            const float *last = logits.data() + (seq.size() - 1) * 97;
            QCOMPARE(std::int32_t(std::max_element(last, last + 97) - last), next);
            seq.push_back(next);
        }
        // sampling is reproducible for a seed
        o.temperature = 1.0;
        o.seed = 42;
        auto s1 = generate(tf, std::vector<std::int32_t>{5, 6, 7}, o);
        auto s2 = generate(tf, std::vector<std::int32_t>{5, 6, 7}, o);
        QVERIFY(s1 && s2);
        QCOMPARE(*s1, *s2);
    }
};

QTEST_GUILESS_MAIN(TestModel)
#include "tst_model.moc"
