// tst_sensitivity: the cached per-layer sensitivity equals the naive full forward (3 layers × 2
// settings on 2 windows of 64 tokens of the bundled model), the proxies equal a direct
// computation, candidate parsing, and cancellation.
#include "core/calibration.h"
#include "core/evaluate.h"
#include "core/model.h"
#include "core/quant/quantizer.h"
#include "core/sensitivity.h"
#include "core/random.h"
#include "testutil.h"
#include "tinymodel.h"

#include <QTemporaryDir>

#include <algorithm>
#include <QTest>

#include <cmath>
#include <limits>

using namespace bitsmith::core;
using namespace bitsmith::test;

class TestSensitivity : public QObject
{
    Q_OBJECT

    std::shared_ptr<Model> m_model;
    std::vector<std::int32_t> m_eval, m_calib;
    std::unique_ptr<SensitivityAnalysis> m_analysis;

    std::vector<std::int32_t> tokenize(const QString &file)
    {
        auto text = readTextFile(defaultModelDir() + QLatin1Char('/') + file);
        if (!text)
            return {};
        return m_model->tokenizer()->encode(*text);
    }

private slots:
    void initTestCase()
    {
        auto m = Model::load(defaultModelDir());
        QVERIFY(m);
        m_model = *m;
        m_eval = tokenize(QStringLiteral("eval.txt"));
        m_calib = tokenize(QStringLiteral("calib.txt"));
        QVERIFY(m_eval.size() > 128);
        SensitivityOptions o;
        o.ctx = 64;
        o.windows = 2;
        o.calibSequences = 8;
        o.calibLength = 64;
        auto a = SensitivityAnalysis::create(m_model, m_eval, m_calib, o);
        QVERIFY2(a, qPrintable(a ? QString() : a.error().toString()));
        m_analysis = std::move(*a);
        QCOMPARE(m_analysis->layerCount(), 56);
    }

    void parseCandidates()
    {
        auto s = parseSensitivitySettings(QStringLiteral("rtn:w2g64, rtn:w3,gptq:w4g128,rtn:w8"));
        QVERIFY(s);
        QCOMPARE(s->size(), std::size_t(4));
        QCOMPARE((*s)[1].format.groupSize, 0);
        QCOMPARE((*s)[2].technique, QStringLiteral("gptq"));
        QCOMPARE((*s)[0].label(), QStringLiteral("rtn:w2g64"));
        QCOMPARE((*s)[3].label(), QStringLiteral("rtn:w8"));
        // Pruning candidates: sparsity, N:M, and SparseGPT with joint quantization.
        auto p = parseSensitivitySettings(QStringLiteral("wanda:s50,magnitude:2:4,sparsegpt:2:4+w4g128,sparsegpt:s60"));
        QVERIFY2(p, qPrintable(p ? QString() : p.error().toString()));
        QCOMPARE((*p)[0].sparsity, 0.5);
        QVERIFY(!(*p)[0].quantizes() && (*p)[0].prunes());
        QCOMPARE((*p)[1].pattern.n, 2);
        QCOMPARE((*p)[1].pattern.m, 4);
        QCOMPARE((*p)[1].sparsity, 0.5);
        QVERIFY((*p)[2].quantizes() && (*p)[2].prunes());
        QCOMPARE((*p)[2].format.groupSize, 128);
        for (const SensitivitySetting &x : *p) {
            auto again = parseSensitivitySettings(x.label());
            QVERIFY(again);
            QCOMPARE((*again)[0].label(), x.label());
        }
        QCOMPARE((*p)[2].label(), QStringLiteral("sparsegpt:2:4+w4g128"));
        for (const char *bad : {"rtn:w9", "awq:w4", "rtn:4", "rtn:w4g0", "rtn:w4,rtn:w4", "", "rtn:s50", "wanda:w4",
                                "wanda:s50+w4", "magnitude:4:2", "sparsegpt:w4", "wanda:s0", "wanda:s50+s60"}) {
            auto e = parseSensitivitySettings(QString::fromLatin1(bad));
            QVERIFY2(!e, bad);
            QCOMPARE(e.error().parameter, QStringLiteral("candidates"));
        }
    }

    // A large model keeps only per-channel statistics and gathers a GPTQ candidate's Hessian for
    // its input when asked (forced here with a zero budget): the same codes as with every Hessian
    // kept, and the same proxies.
    void lazyHessiansGiveTheSameResults()
    {
        SensitivityOptions o;
        o.ctx = 64;
        o.windows = 2;
        o.calibSequences = 8;
        o.calibLength = 64;
        qputenv("BITSMITH_HESSIAN_BUDGET_BYTES", "0");
        auto lazy = SensitivityAnalysis::create(m_model, m_eval, m_calib, o);
        qunsetenv("BITSMITH_HESSIAN_BUDGET_BYTES");
        QVERIFY2(lazy, qPrintable(lazy ? QString() : lazy.error().toString()));
        auto settings = parseSensitivitySettings(QStringLiteral("gptq:w3g64,sparsegpt:2:4"));
        QVERIFY(settings);
        for (int layer : {0, 3, 6, 27, 55}) {
            auto a = m_analysis->quantize(layer, (*settings)[0]), b = (*lazy)->quantize(layer, (*settings)[0]);
            QVERIFY(a && b);
            QCOMPARE(b->codes, a->codes);
            QCOMPARE(b->scales, a->scales);
            auto pa = m_analysis->compress(layer, (*settings)[1]), pb = (*lazy)->compress(layer, (*settings)[1]);
            QVERIFY(pa && pb);
            QCOMPARE(pb->weights, pa->weights);
        }
    }

    void cachedEqualsNaive()
    {
        auto settings = parseSensitivitySettings(QStringLiteral("rtn:w2g64,gptq:w3g64"));
        QVERIFY(settings);
        // Every restart path: q, k, v (block from its input), o (mid + ΔW·att), gate, up (MLP half),
        // down (output + ΔW·act), in the first, a middle and the last block.
        for (int layer : {0, 1, 2, 3, 4, 5, 6, 27, 55}) {
            for (const SensitivitySetting &s : *settings) {
                auto q = m_analysis->quantize(layer, s);
                QVERIFY2(q, qPrintable(q ? QString() : q.error().toString()));
                std::vector<float> deq(static_cast<std::size_t>(q->rows * q->cols));
                q->dequantize(deq.data());
                auto fast = m_analysis->measureCached(layer, deq.data());
                auto naive = m_analysis->measureNaive(layer, deq.data());
                QVERIFY(fast && naive);
                QVERIFY2(std::abs(fast->deltaLoss - naive->deltaLoss) < 1e-5,
                         qPrintable(QStringLiteral("%1 %2: %3 vs %4").arg(m_analysis->layerName(layer), s.label())
                                        .arg(fast->deltaLoss).arg(naive->deltaLoss)));
                QVERIFY(std::abs(fast->kl - naive->kl) < 1e-5);
                QVERIFY(fast->kl > 0);
                QVERIFY(std::abs(fast->perplexity - naive->perplexity) < 1e-4 * naive->perplexity);
            }
        }
        // The original weights give back the original loss, on every path (the measured kernel's
        // ΔW is zero and everything else is the base pass's arithmetic). Not always bit for bit:
        // buffers of another alignment can change the summation order of vectorised loops, which
        // moves the loss by ~1e-9; a wrong restart point would move it by far more.
        for (int layer : {0, 3, 4, 6}) {
            const QString tensor = m_analysis->layerName(layer) + QStringLiteral(".weight");
            const MatrixView w = m_model->weight(tensor);
            auto same = m_analysis->measureCached(layer, w.data());
            QVERIFY(same);
            QVERIFY2(std::abs(same->deltaLoss) < 1e-7 && std::abs(same->kl) < 1e-7,
                     qPrintable(QStringLiteral("layer %1: %2 %3").arg(layer).arg(same->deltaLoss).arg(same->kl)));
        }
    }

    // The cached restart paths equal a full forward on every architecture feature: Qwen3's q/k
    // norms, per-layer sliding windows and scaled rope (windows longer than both), and Gemma's
    // sandwich norms (o and down are followed by a norm there: no linear shortcut holds).
    void cachedEqualsNaiveOnEveryArchitecture_data()
    {
        QTest::addColumn<QString>("name");
        for (const char *n : {"qwen3", "qwen3-sliding", "rope-llama3", "rope-yarn", "mistral-sliding", "gemma2", "gemma3", "mixtral", "qwen3-moe"})
            QTest::newRow(n) << QString::fromLatin1(n);
    }
    void cachedEqualsNaiveOnEveryArchitecture()
    {
        QFETCH(QString, name);
        auto m = Model::load(testDataDir() + QStringLiteral("/tiny/") + name);
        QVERIFY2(m, m ? "" : qPrintable(m.error().toString()));
        std::vector<std::int32_t> eval, calib;
        for (int i = 0; i < 2 * 96 + 1; ++i) {
            eval.push_back(std::int32_t((i * 37 + 5) % 300));
            calib.push_back(std::int32_t((i * 53 + 11) % 300));
        }
        SensitivityOptions o;
        o.ctx = 96; // past the sliding windows (16) and the rope's original context (64)
        o.windows = 2;
        o.calibSequences = 2;
        o.calibLength = 96;
        o.hutchinsonProbes = 0;
        auto a = SensitivityAnalysis::create(*m, eval, calib, o);
        QVERIFY2(a, qPrintable(a ? QString() : a.error().toString()));
        auto settings = parseSensitivitySettings(QStringLiteral("rtn:w3g16"));
        QVERIFY(settings);
        for (int layer = 0; layer < (*a)->layerCount(); ++layer) {
            auto q = (*a)->quantize(layer, settings->front());
            QVERIFY(q);
            std::vector<float> deq(static_cast<std::size_t>(q->rows * q->cols));
            q->dequantize(deq.data());
            auto fast = (*a)->measureCached(layer, deq.data());
            auto naive = (*a)->measureNaive(layer, deq.data());
            QVERIFY(fast && naive);
            QVERIFY2(std::abs(fast->deltaLoss - naive->deltaLoss) < 1e-5 && std::abs(fast->kl - naive->kl) < 1e-5,
                     qPrintable(QStringLiteral("%1: %2 vs %3").arg((*a)->layerName(layer)).arg(fast->deltaLoss).arg(naive->deltaLoss)));
        }
    }

    // Pruning candidates: the weights are exactly what the masks give (checked by hand: zeros per
    // 4 columns, the kept values unchanged), and the bytes follow the stated accounting.
    void pruningCandidates()
    {
        auto settings = parseSensitivitySettings(QStringLiteral("magnitude:2:4,wanda:s50,sparsegpt:2:4+w4g128"));
        QVERIFY(settings);
        const int layer = 4; // block 0 gate_proj, 768 x 256, bf16
        const QString tensor = m_analysis->layerName(layer) + QStringLiteral(".weight");
        const MatrixView w = m_model->weight(tensor);
        const auto n = static_cast<std::size_t>(w.rows * w.cols);
        auto mag = m_analysis->compress(layer, (*settings)[0]);
        QVERIFY(mag);
        for (std::int64_t r = 0; r < w.rows; ++r)
            for (std::int64_t c = 0; c < w.cols; c += 4) {
                // The two largest |w| of each 4 survive unchanged, the others are zero.
                std::vector<std::pair<float, int>> g;
                for (int k = 0; k < 4; ++k)
                    g.push_back({std::abs(w.data()[r * w.cols + c + k]), k});
                std::stable_sort(g.begin(), g.end(), [](auto a, auto b) { return a.first > b.first; });
                for (int k = 0; k < 4; ++k) {
                    const float got = mag->weights[static_cast<std::size_t>(r * w.cols + c + g[k].second)];
                    if (k < 2 && g[1].first != g[2].first)
                        QCOMPARE(got, w.data()[r * w.cols + c + g[k].second]);
                    else if (k >= 2 && g[1].first != g[2].first)
                        QCOMPARE(got, 0.0f);
                }
            }
        // bf16 values of the kept half + 2 bits of position each (= the 1-bit bitmap here).
        QCOMPARE(mag->bytes, (n / 2 * 16.0 + n / 2 * 2.0) / 8.0);
        auto wanda = m_analysis->compress(layer, (*settings)[1]);
        QVERIFY(wanda);
        std::size_t zeros = 0;
        for (float v : wanda->weights)
            zeros += v == 0.0f;
        QCOMPARE(zeros, n / 2);
        QCOMPARE(wanda->bytes, (n / 2 * 16.0 + n) / 8.0);
        auto sgpt = m_analysis->compress(layer, (*settings)[2]);
        QVERIFY(sgpt);
        // 4-bit codes of the kept half, the g128 scales and zeros of the whole layer, 2-bit positions.
        const double groups = static_cast<double>(w.rows) * (static_cast<double>(w.cols) / 128);
        QCOMPARE(sgpt->bytes, (n / 2 * 4.0 + groups * (16 + 4) + n / 2 * 2.0) / 8.0);
        // Measured like any other setting; 2:4 hurts more than nothing.
        auto m = m_analysis->measureCached(layer, mag->weights.data());
        QVERIFY(m && m->kl > 0);
        // The recipe entry carries the pattern and SparseGPT's joint quantization.
        const RecipeEntry e = recipeEntryFor(QStringLiteral("x"), (*settings)[2]);
        QVERIFY(e.pattern && e.pattern->n == 2 && e.pattern->m == 4);
        QCOMPARE(*e.bits, 4);
        QCOMPARE(e.parameters.value(QStringLiteral("quantize")).toBool(), true);
        QVERIFY(!recipeEntryFor(QStringLiteral("x"), (*settings)[1]).bits);
    }

    void spearman()
    {
        // Hand-computed: ranks (1,2,3,4,5) vs (2,1,4,3,5): 1 - 6·Σd²/(n(n²-1)) = 1 - 6·4/120 = 0.8.
        QCOMPARE(spearmanCorrelation({1, 2, 3, 4, 5}, {20, 10, 40, 30, 50}), 0.8);
        // Monotone transforms do not change ranks; reversed order gives -1.
        QCOMPARE(spearmanCorrelation({1, 2, 3, 4}, {1, 4, 9, 16}), 1.0);
        QCOMPARE(spearmanCorrelation({1, 2, 3, 4}, {4, 3, 2, 1}), -1.0);
        // Ties take the average rank: x ranks (1.5,1.5,3,4), y ranks (1,2,3,4) → Pearson of ranks.
        const double r = spearmanCorrelation({1, 1, 2, 3}, {1, 2, 3, 4});
        QVERIFY(std::abs(r - 0.9486832980505138) < 1e-12);
        // NaN pairs are skipped; fewer than 3 pairs is NaN.
        const double nan = std::numeric_limits<double>::quiet_NaN();
        QCOMPARE(spearmanCorrelation({1, nan, 2, 3}, {1, 5, 2, 3}), 1.0);
        QVERIFY(std::isnan(spearmanCorrelation({1, 2}, {1, 2})));
    }

    // The Hutchinson estimate against the exact trace of the loss Hessian w.r.t. one small layer,
    // from second differences along every coordinate, on a tiny model.
    void hutchinsonTrace()
    {
        QTemporaryDir dir;
        QVERIFY(dir.isValid());
        TinySpec spec;
        spec.hidden = 16;
        spec.inter = 24;
        spec.heads = 2;
        spec.kvHeads = 1;
        spec.vocab = 50;
        spec.scale = 0.4f;
        QVERIFY(writeTinyModel(dir.path(), spec));
        auto m = Model::load(dir.path());
        QVERIFY2(m, qPrintable(m ? QString() : m.error().toString()));
        std::vector<std::int32_t> tokens;
        std::uint64_t state = 7;
        for (int i = 0; i < 64; ++i)
            tokens.push_back(static_cast<std::int32_t>(splitmix64(state) % 50));
        SensitivityOptions o;
        o.ctx = 32;
        o.windows = 2;
        auto a = SensitivityAnalysis::create(*m, tokens, {}, o);
        QVERIFY2(a, qPrintable(a ? QString() : a.error().toString()));
        for (int layer : {3, 13}) { // block 0 o_proj (16x16), block 1 down_proj (16x24)
            const QString tensor = (*a)->layerName(layer) + QStringLiteral(".weight");
            const MatrixView w = (*m)->weight(tensor);
            const std::size_t n = static_cast<std::size_t>(w.rows * w.cols);
            std::vector<float> p(w.data(), w.data() + n);
            // One coordinate at a time, a step well above f32 noise; the total perturbation stays small.
            const double h = 0.02;
            double exact = 0;
            for (std::size_t i = 0; i < n; ++i) {
                p[i] = static_cast<float>(w.data()[i] + h);
                auto up = (*a)->measureCached(layer, p.data());
                p[i] = static_cast<float>(w.data()[i] - h);
                auto down = (*a)->measureCached(layer, p.data());
                p[i] = w.data()[i];
                QVERIFY(up && down);
                // ε is rounded to f32 in the weights: use the step actually taken.
                const double step = static_cast<double>(static_cast<float>(w.data()[i] + h)) - w.data()[i];
                exact += (up->deltaLoss + down->deltaLoss) / (step * step);
            }
            auto estimate = (*a)->hessianTrace(layer, 1000);
            QVERIFY(estimate);
            QVERIFY(exact > 0);
            QVERIFY2(std::abs(*estimate - exact) < 0.1 * std::abs(exact),
                     qPrintable(QStringLiteral("layer %1: Hutchinson %2, exact %3").arg(layer).arg(*estimate).arg(exact)));
        }
    }

    void sweepAndProxies()
    {
        auto settings = parseSensitivitySettings(QStringLiteral("rtn:w3g64,rtn:w8"));
        QVERIFY(settings);
        auto r = m_analysis->run(*settings);
        QVERIFY2(r, qPrintable(r ? QString() : r.error().toString()));
        QCOMPARE(r->layers.size(), std::size_t(56));
        QCOMPARE(r->deltaLoss.size(), std::size_t(112));
        // 8 bits hurt less than 3 bits, on the whole model.
        double sum3 = 0, sum8 = 0;
        for (std::size_t l = 0; l < r->layers.size(); ++l) {
            sum3 += r->at(r->kl, l, 0);
            sum8 += r->at(r->kl, l, 1);
        }
        QVERIFY(sum8 < sum3);

        // Proxies of one layer against a direct computation from the calibration statistics.
        const int layer = 5;
        const QString tensor = r->layers[layer] + QStringLiteral(".weight");
        const MatrixView w = m_model->weight(tensor);
        auto q = quantizeRtn(w, (*settings)[0].format);
        QVERIFY(q);
        std::vector<float> deq(static_cast<std::size_t>(w.rows * w.cols));
        q->dequantize(deq.data());
        // The layer's input: collect the statistics the same way (same calibration sequences).
        auto seqs = makeCalibrationSequences(m_calib, 8, 64, 0);
        QVERIFY(seqs);
        struct Hook : LinearInputHook
        {
            int block;
            WeightRole role;
            std::unique_ptr<InputStatistics> stats;
            bool onLinearInput(int b, WeightRole r, const float *x, std::int64_t rows, std::int64_t cols) override
            {
                if (b == block && r == role) {
                    if (!stats)
                        stats = std::make_unique<InputStatistics>(cols, true, 0);
                    stats->add(x, rows);
                }
                return true;
            }
        } hook;
        hook.block = 0;
        hook.role = WeightRole::LinearGate; // layer 5 = model.layers.0.mlp.up_proj (input shared with gate)
        QVERIFY(r->layers[layer].endsWith(QStringLiteral("mlp.up_proj")));
        Transformer tf(m_model, LinearBackend::Eigen);
        for (const auto &seq : *seqs) {
            KVCache c = tf.makeCache(static_cast<int>(seq.size()));
            std::vector<float> out;
            QVERIFY(tf.forward(seq, c, out, true, &hook));
        }
        QVERIFY(hook.stats);
        double nw = 0, nd = 0, he = 0, ae = 0;
        for (std::int64_t i = 0; i < w.rows; ++i)
            for (std::int64_t j = 0; j < w.cols; ++j) {
                const double d = deq[static_cast<std::size_t>(i * w.cols + j)] - w.data()[i * w.cols + j];
                nw += double(w.data()[i * w.cols + j]) * w.data()[i * w.cols + j];
                nd += d * d;
                he += hook.stats->hessian()(j, j) * d * d;
                ae += hook.stats->meanSquare()[static_cast<std::size_t>(j)] * d * d;
            }
        QVERIFY(std::abs(r->at(r->relativeError, layer, 0) - nd / nw) < 1e-9 * (nd / nw));
        QVERIFY(std::abs(r->at(r->hessianError, layer, 0) - he) < 1e-6 * he);
        QVERIFY(std::abs(r->at(r->activationError, layer, 0) - ae) < 1e-6 * ae);
        QCOMPARE(r->at(r->bytes, layer, 0), double(q->storageBits()) / 8.0);
    }

    void cancellation()
    {
        auto settings = parseSensitivitySettings(QStringLiteral("rtn:w4"));
        QVERIFY(settings);
        CallbackFeedback fb;
        int calls = 0;
        fb.statusFn = [&](const QString &) {
            if (++calls == 3)
                fb.cancel();
        };
        auto r = m_analysis->run(*settings, &fb);
        QVERIFY(!r);
        QCOMPARE(r.error().code, ErrorCode::Cancelled);
    }
};

QTEST_GUILESS_MAIN(TestSensitivity)
#include "tst_sensitivity.moc"
