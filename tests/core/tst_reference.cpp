// tst_reference: the runtime against state files written by the PyTorch reference
// (tools/train_reference_lm.py, tools/make_tiny_references.py): logits of tiny Qwen2 (tied,
// biases, f32), Mistral (f16, and sliding window), sharded bf16 Llama, Llama with every rope
// scaling type (llama3, linear, dynamic, yarn, longrope) and Qwen3 (q/k norms, per-layer sliding
// window) checkpoints on a prompt and a 200-token window, and the bundled model's logits,
// greedy continuations, tokenizer ids and perplexity under the protocol.
#include "core/evaluate.h"
#include "core/generate.h"
#include "core/model.h"
#include "core/transformer.h"
#include "testutil.h"

#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QTest>

#include <algorithm>
#include <cmath>
#include <span>

using namespace bitsmith::core;
using namespace bitsmith::test;

namespace {

// The budget: max abs logit difference <= 1e-3 with f32 math.
constexpr float kLogitTolerance = 1e-3f;

QJsonObject readJson(const QString &path)
{
    return QJsonDocument::fromJson(readAll(path)).object();
}

std::vector<std::int32_t> toIds(const QJsonArray &a)
{
    std::vector<std::int32_t> ids;
    for (const auto &v : a)
        ids.push_back(v.toInt());
    return ids;
}

} // namespace

class TestReference : public QObject
{
    Q_OBJECT

    std::shared_ptr<Model> m_default;
    QJsonObject m_ref;

private slots:
    void initTestCase()
    {
        auto m = Model::load(defaultModelDir());
        QVERIFY2(m, qPrintable(m ? QString() : m.error().toString()));
        m_default = *m;
        m_ref = readJson(testDataDir() + QStringLiteral("/reference/default_reference.json"));
        QVERIFY(!m_ref.isEmpty());
    }

    void tinyCheckpoints_data()
    {
        QTest::addColumn<QString>("name");
        QTest::addColumn<int>("backend");
        for (const char *n : {"qwen2-tied-bias", "mistral-f16", "llama-sharded-bf16", "rope-llama3", "rope-linear",
                              "rope-dynamic", "rope-yarn", "rope-longrope", "qwen3", "qwen3-sliding", "mistral-sliding", "gemma2", "gemma3", "phi3", "phi3-partial", "mixtral", "qwen3-moe", "qwen3-moe-nonorm"}) {
            QTest::newRow(qPrintable(QStringLiteral("%1 onednn").arg(QLatin1String(n))))
                << QString::fromLatin1(n) << int(LinearBackend::OneDnn);
            QTest::newRow(qPrintable(QStringLiteral("%1 eigen").arg(QLatin1String(n))))
                << QString::fromLatin1(n) << int(LinearBackend::Eigen);
        }
    }

    void tinyCheckpoints()
    {
        QFETCH(QString, name);
        QFETCH(int, backend);
        const QString dir = testDataDir() + QStringLiteral("/tiny/") + name;
        const QJsonObject ref = readJson(dir + QStringLiteral("/ref.json"));
        auto m = Model::load(dir);
        QVERIFY2(m, qPrintable(m ? QString() : m.error().toString()));
        QCOMPARE((*m)->config().architectureName, ref[QStringLiteral("model_class")].toString());
        std::vector<float> expected;
        std::vector<long> shape;
        QVERIFY(readNpyF32(dir + QStringLiteral("/logits.npy"), expected, shape));
        const auto ids = toIds(ref[QStringLiteral("input_ids")].toArray());
        QCOMPARE(shape, (std::vector<long>{long(ids.size()), (*m)->config().vocabSize}));
        Transformer tf(*m, static_cast<LinearBackend>(backend));
        KVCache cache = tf.makeCache(int(ids.size()));
        std::vector<float> logits;
        QVERIFY(tf.forward(ids, cache, logits));
        const float diff = maxAbsDiff(logits, expected);
        qInfo("%s: max abs logit difference %.3g", qPrintable(name), double(diff));
        QVERIFY2(diff <= kLogitTolerance, qPrintable(QString::number(diff)));

        // A 200-token window, where rope scaling and sliding windows change the logits (ref.json
        // records by how much: without the feature the logits differ by several units).
        if (!ref.contains(QStringLiteral("window_ids")))
            return;
        const auto window = toIds(ref[QStringLiteral("window_ids")].toArray());
        QVERIFY(readNpyF32(dir + QStringLiteral("/window_logits.npy"), expected, shape));
        const double without = ref[QStringLiteral("window_max_abs_diff_without_feature")].toDouble(0);
        if (without > 0)
            QVERIFY(without > 100 * kLogitTolerance); // the case does test its feature
        KVCache wc = tf.makeCache(int(window.size()));
        QVERIFY(tf.forward(window, wc, logits));
        const float wdiff = maxAbsDiff(logits, expected);
        const std::int64_t vocab = (*m)->config().vocabSize;
        // perplexity of the window's next tokens under both logit sets
        auto meanNll = [&](const std::vector<float> &l) {
            double nll = 0;
            for (std::size_t i = 0; i + 1 < window.size(); ++i) {
                const float *row = l.data() + i * vocab;
                const float mx = *std::max_element(row, row + vocab);
                double z = 0;
                for (std::int64_t v = 0; v < vocab; ++v)
                    z += std::exp(double(row[v]) - mx);
                nll += std::log(z) + mx - row[window[i + 1]];
            }
            return nll / double(window.size() - 1);
        };
        const double ppl = std::exp(meanNll(logits)), refPpl = std::exp(meanNll(expected));
        qInfo("%s: window max abs logit difference %.3g, perplexity %.4f vs %.4f", qPrintable(name), double(wdiff), ppl, refPpl);
        QVERIFY2(wdiff <= kLogitTolerance, qPrintable(QString::number(wdiff)));
        QVERIFY(std::abs(ppl / refPpl - 1) < 0.005);

        // The same window in two calls through the KV cache gives the same second half (sliding
        // windows and positions carry across calls). Not for rope types that transformers
        // recomputes per call from its length (dynamic, longrope).
        if (ropeDependsOnLength((*m)->config().ropeScaling.type))
            return;
        KVCache split = tf.makeCache(int(window.size()));
        const std::size_t half = window.size() / 2;
        std::vector<float> first, second;
        QVERIFY(tf.forward(std::span(window).first(half), split, first));
        QVERIFY(tf.forward(std::span(window).subspan(half), split, second));
        const std::vector<float> tail(expected.begin() + std::ptrdiff_t(half * vocab), expected.end());
        QVERIFY2(maxAbsDiff(second, tail) <= kLogitTolerance, qPrintable(QString::number(maxAbsDiff(second, tail))));
    }

    void bundledModelLogits_data()
    {
        QTest::addColumn<int>("index");
        const QJsonArray prompts = m_ref[QStringLiteral("prompts")].toArray();
        for (int i = 0; i < prompts.size(); ++i)
            QTest::newRow(qPrintable(prompts[i].toObject()[QStringLiteral("text")].toString())) << i;
    }

    void bundledModelLogits()
    {
        QFETCH(int, index);
        const QJsonObject p = m_ref[QStringLiteral("prompts")].toArray()[index].toObject();
        const auto ids = toIds(p[QStringLiteral("ids")].toArray());
        // the tokenizer gives the reference's ids
        QCOMPARE(m_default->tokenizer()->encode(p[QStringLiteral("text")].toString().toStdString()), ids);
        std::vector<float> expected;
        std::vector<long> shape;
        QVERIFY(readNpyF32(testDataDir() + QStringLiteral("/reference/") + p[QStringLiteral("logits_file")].toString(),
                           expected, shape));
        Transformer tf(m_default);
        KVCache cache = tf.makeCache(int(ids.size()));
        std::vector<float> logits;
        QVERIFY(tf.forward(ids, cache, logits));
        QCOMPARE(logits.size(), expected.size());
        const float diff = maxAbsDiff(logits, expected);
        qInfo("prompt %d: max abs logit difference %.3g", index, double(diff));
        QVERIFY2(diff <= kLogitTolerance, qPrintable(QString::number(diff)));

        // greedy continuation with the KV cache equals the reference's
        const auto greedy = toIds(p[QStringLiteral("greedy_ids")].toArray());
        GenerateOptions o;
        o.temperature = 0;
        o.maxTokens = int(greedy.size());
        o.stopAtEos = false;
        auto out = generate(tf, ids, o);
        QVERIFY(out);
        QCOMPARE(*out, greedy);
        QCOMPARE(QString::fromStdString(m_default->tokenizer()->decode(*out)), p[QStringLiteral("greedy_text")].toString());
    }

    void bundledTokenizer()
    {
        const QJsonObject tok = m_ref[QStringLiteral("tokenizer")].toObject();
        const QJsonObject head = tok[QStringLiteral("eval_txt_head")].toObject();
        QCOMPARE(m_default->tokenizer()->encode(head[QStringLiteral("text")].toString().toStdString()),
                 toIds(head[QStringLiteral("ids")].toArray()));
        for (const auto &v : tok[QStringLiteral("tricky")].toArray()) {
            const QJsonObject t = v.toObject();
            const std::string text = t[QStringLiteral("text")].toString().toStdString();
            QCOMPARE(m_default->tokenizer()->encode(text), toIds(t[QStringLiteral("ids")].toArray()));
        }
    }

    void bundledPerplexity_data()
    {
        QTest::addColumn<QString>("key");
        QTest::addColumn<int>("maxWindows");
        QTest::newRow("eval.txt ctx 128, 8 windows") << QStringLiteral("eval_txt_quick") << 8;
        QTest::newRow("eval.txt ctx 256, all windows") << QStringLiteral("eval_txt") << 0;
    }

    void bundledPerplexity()
    {
        QFETCH(QString, key);
        QFETCH(int, maxWindows);
        const QJsonObject r = m_ref[QStringLiteral("perplexity")].toObject()[key].toObject();
        auto text = readTextFile(defaultModelDir() + QStringLiteral("/eval.txt"));
        QVERIFY(text);
        const auto ids = m_default->tokenizer()->encode(*text);
        QCOMPARE(qint64(ids.size()), qint64(r[QStringLiteral("tokens")].toDouble()));
        Transformer tf(m_default);
        EvalOptions opt;
        opt.ctx = r[QStringLiteral("ctx")].toInt();
        opt.maxWindows = maxWindows;
        auto res = evaluatePerplexity(tf, ids, opt);
        QVERIFY2(res, qPrintable(res ? QString() : res.error().toString()));
        QCOMPARE(res->windows, qint64(r[QStringLiteral("windows")].toInt()));
        QCOMPARE(res->scoredTokens, qint64(r[QStringLiteral("scored_tokens")].toInt()));
        const double refNll = r[QStringLiteral("mean_nll")].toDouble();
        qInfo("%s: perplexity %.5f (reference %.5f), %.0f tokens/s", qPrintable(key), res->perplexity,
              r[QStringLiteral("ppl")].toDouble(), res->tokensPerSecond);
        // f32 accumulation order differs from PyTorch: a relative 1e-5 on the mean NLL
        QVERIFY2(std::fabs(res->meanNll - refNll) < 1e-5 * refNll,
                 qPrintable(QStringLiteral("%1 vs %2").arg(res->meanNll, 0, 'g', 10).arg(refNll, 0, 'g', 10)));
    }

    void wikitextPerplexity()
    {
        // WikiText-2 test from ../shared/data (never copied into the repository); the first 16
        // windows of 256 tokens against the reference's per-window NLL.
        const QString path = sharedDataDir() + QStringLiteral("/wikitext-2-raw/wiki.test.raw");
        auto text = readTextFile(path);
        if (!text)
            QSKIP("../shared/data/wikitext-2-raw is not present next to this checkout");
        const QJsonObject r = m_ref[QStringLiteral("perplexity")].toObject()[QStringLiteral("wikitext2_test")].toObject();
        const auto ids = m_default->tokenizer()->encode(*text);
        QCOMPARE(qint64(ids.size()), qint64(r[QStringLiteral("tokens")].toDouble()));
        const QJsonArray windows = r[QStringLiteral("window_mean_nll")].toArray();
        Transformer tf(m_default);
        EvalOptions opt;
        opt.ctx = r[QStringLiteral("ctx")].toInt();
        opt.maxWindows = int(windows.size());
        auto res = evaluatePerplexity(tf, ids, opt);
        QVERIFY(res);
        double refSum = 0;
        for (const auto &w : windows)
            refSum += w.toDouble();
        const double refMean = refSum / windows.size();
        QVERIFY2(std::fabs(res->meanNll - refMean) < 1e-5 * refMean,
                 qPrintable(QStringLiteral("%1 vs %2").arg(res->meanNll).arg(refMean)));
    }
};

QTEST_GUILESS_MAIN(TestReference)
#include "tst_reference.moc"
