// tst_pruning.cpp: pruning — masks (exactly N:M; magnitude and Wanda against numpy), SparseGPT
// against tools/prune_reference.py, recipes with sparsity/pattern, the engine with the pruning
// plugins (pruned folders reload with the same logits), structured pruning (removing units that are
// exactly zero keeps the function; the smaller folder loads), and the sparse kernels against dense.
#include "core/calibration.h"
#include "core/compression.h"
#include "core/evaluate.h" // tokenizeTextFile
#include "core/kernels/sparselinear.h"
#include "core/model.h"
#include "core/prune/mask.h"
#include "core/prune/sparsegpt.h"
#include "core/prune/structured.h"
#include "core/quant/quantizer.h" // quantizeRtn
#include "core/recipe.h"
#include "core/safetensors.h"
#include "core/sdk/techniqueregistry.h"
#include "core/transformer.h"
#include "testutil.h"
#include "tinymodel.h"

#include <QJsonDocument>
#include <QJsonObject>
#include <QTemporaryDir>
#include <QTest>

#include <array>
#include <cmath>
#include <random>

using namespace bitsmith::core;
using namespace bitsmith::test;

namespace {

QString pruneData(const QString &name) { return testDataDir() + QStringLiteral("/pruning/") + name; }

std::vector<float> randomMatrix(std::int64_t rows, std::int64_t cols, std::uint32_t seed)
{
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::vector<float> w(static_cast<std::size_t>(rows * cols));
    for (auto &v : w)
        v = normal(rng);
    return w;
}

// y = x · Wᵀ (+ b) in double.
std::vector<double> denseReference(const std::vector<float> &w, std::int64_t n, std::int64_t k, const std::vector<float> &x,
                                   std::int64_t m, const float *bias)
{
    std::vector<double> y(static_cast<std::size_t>(m * n));
    for (std::int64_t i = 0; i < m; ++i)
        for (std::int64_t j = 0; j < n; ++j) {
            double s = bias ? bias[j] : 0.0;
            for (std::int64_t c = 0; c < k; ++c)
                s += static_cast<double>(x[static_cast<std::size_t>(i * k + c)]) * w[static_cast<std::size_t>(j * k + c)];
            y[static_cast<std::size_t>(i * n + j)] = s;
        }
    return y;
}

double nmse(const std::vector<float> &got, const std::vector<double> &want)
{
    double num = 0, den = 0;
    for (std::size_t i = 0; i < want.size(); ++i) {
        num += (got[i] - want[i]) * (got[i] - want[i]);
        den += want[i] * want[i];
    }
    return den > 0 ? num / den : num;
}

std::vector<float> logitsOf(const Transformer &tf, const std::vector<std::int32_t> &ids)
{
    KVCache cache = tf.makeCache(int(ids.size()));
    std::vector<float> logits;
    if (auto ok = tf.forward(ids, cache, logits); !ok)
        qFatal("%s", qPrintable(ok.error().toString()));
    return logits;
}

// Writes the (possibly edited) f32 weights of `m` as a checkpoint folder with the source's config.
bool writeModelCopy(const Model &m, const QString &folder)
{
    QDir().mkpath(folder);
    if (!QFile::copy(m.folder() + QStringLiteral("/config.json"), folder + QStringLiteral("/config.json")))
        return false;
    std::vector<TensorToWrite> tensors;
    for (const WeightInfo &w : m.weights()) {
        const MatrixView v = m.weight(w.name);
        tensors.push_back({w.name, DType::F32, w.shape,
                           std::span<const std::byte>(reinterpret_cast<const std::byte *>(v.data()), static_cast<std::size_t>(v.rows * v.cols * 4))});
    }
    return static_cast<bool>(writeSafetensors(folder + QStringLiteral("/model.safetensors"), tensors));
}

} // namespace

class TestPruning : public QObject
{
    Q_OBJECT

    std::unique_ptr<TechniqueRegistry> m_registry;
    std::vector<float> m_w, m_x, m_h;
    const std::int64_t m_rows = 16, m_cols = 64, m_tokens = 256;

private slots:
    void initTestCase()
    {
        m_registry = std::make_unique<TechniqueRegistry>(QStringList{QStringLiteral(BITSMITH_PLUGIN_DIR_FOR_TESTS)});
        std::vector<long> shape;
        QVERIFY(readNpyF32(pruneData(QStringLiteral("W.npy")), m_w, shape));
        QCOMPARE(shape, (std::vector<long>{16, 64}));
        QVERIFY(readNpyF32(pruneData(QStringLiteral("X.npy")), m_x, shape));
        QVERIFY(readNpyF32(pruneData(QStringLiteral("H.npy")), m_h, shape));
    }

    // ---- masks ----------------------------------------------------------------------------

    void masksAreExactlyNM_data()
    {
        QTest::addColumn<int>("n");
        QTest::addColumn<int>("m");
        QTest::newRow("2:4") << 2 << 4;
        QTest::newRow("4:8") << 4 << 8;
        QTest::newRow("1:4") << 1 << 4;
    }
    void masksAreExactlyNM()
    {
        QFETCH(int, n);
        QFETCH(int, m);
        const std::int64_t rows = 33, cols = 128;
        auto w = randomMatrix(rows, cols, 3);
        w[5] = w[6]; // ties are still decided
        const auto scores = magnitudeScores(MatrixView{w.data(), rows, cols});
        auto mask = selectMask(scores, rows, cols, 0.0, SparsityPattern{n, m}, MaskScope::Row);
        QVERIFY(mask);
        for (std::int64_t r = 0; r < rows; ++r)
            for (std::int64_t c = 0; c < cols; c += m) {
                int kept = 0;
                float minKept = INFINITY, maxPruned = 0;
                for (int k = 0; k < m; ++k) {
                    const auto i = static_cast<std::size_t>(r * cols + c + k);
                    kept += (*mask)[i];
                    if ((*mask)[i])
                        minKept = std::min(minKept, scores[i]);
                    else
                        maxPruned = std::max(maxPruned, scores[i]);
                }
                QCOMPARE(kept, n);
                QVERIFY(maxPruned <= minKept); // the largest ones are kept
            }
        const auto pruned = applyMask(MatrixView{w.data(), rows, cols}, *mask);
        QVERIFY(satisfiesPattern(MatrixView{pruned.data(), rows, cols}, SparsityPattern{n, m}));
        QVERIFY(!satisfiesPattern(MatrixView{w.data(), rows, cols}, SparsityPattern{n, m}));
    }

    void unstructuredCounts()
    {
        const std::int64_t rows = 10, cols = 37;
        const auto w = randomMatrix(rows, cols, 5);
        const auto s = magnitudeScores(MatrixView{w.data(), rows, cols});
        auto row = selectMask(s, rows, cols, 0.3, {}, MaskScope::Row);
        QVERIFY(row);
        for (std::int64_t r = 0; r < rows; ++r) {
            int pruned = 0;
            for (std::int64_t c = 0; c < cols; ++c)
                pruned += (*row)[static_cast<std::size_t>(r * cols + c)] == 0;
            QCOMPARE(pruned, 11); // floor(0.3 * 37)
        }
        auto layer = selectMask(s, rows, cols, 0.3, {}, MaskScope::Layer);
        QVERIFY(layer);
        QCOMPARE(std::count(layer->begin(), layer->end(), 0), 111); // floor(0.3 * 370)
    }

    void handComputedMask()
    {
        // Row 0: |w| = 4 1 3 2 -> 2:4 keeps 4 and 3; row 1 ties (all 1): lower index pruned first.
        const std::vector<float> w = {4, -1, 3, 2, 1, 1, -1, 1};
        auto mask = selectMask(magnitudeScores(MatrixView{w.data(), 2, 4}), 2, 4, 0.0, SparsityPattern{2, 4}, MaskScope::Row);
        QVERIFY(mask);
        QCOMPARE(*mask, (std::vector<std::uint8_t>{1, 0, 1, 0, 0, 0, 1, 1}));
        // Wanda: input norms 1, 10, 1, 1 make the |w| = 1 weight of column 1 the most important.
        const std::vector<double> meanSq = {1.0 / 4, 100.0 / 4, 1.0 / 4, 1.0 / 4};
        auto wanda = selectMask(wandaScores(MatrixView{w.data(), 2, 4}, meanSq, 4), 2, 4, 0.5, {}, MaskScope::Row);
        QVERIFY(wanda);
        QCOMPARE(*wanda, (std::vector<std::uint8_t>{1, 1, 0, 0, 0, 1, 0, 1}));
    }

    void masksMatchNumpy_data()
    {
        QTest::addColumn<QString>("file");
        QTest::addColumn<bool>("wanda");
        QTest::addColumn<double>("sparsity");
        QTest::addColumn<int>("m");
        QTest::addColumn<bool>("layerScope");
        QTest::newRow("magnitude 50% layer") << "mag_layer50.npy" << false << 0.5 << 0 << true;
        QTest::newRow("magnitude 50% row") << "mag_row50.npy" << false << 0.5 << 0 << false;
        QTest::newRow("magnitude 2:4") << "mag_24.npy" << false << 0.0 << 4 << false;
        QTest::newRow("wanda 50% row") << "wanda_row50.npy" << true << 0.5 << 0 << false;
        QTest::newRow("wanda 2:4") << "wanda_24.npy" << true << 0.0 << 4 << false;
    }
    void masksMatchNumpy()
    {
        QFETCH(QString, file);
        QFETCH(bool, wanda);
        QFETCH(double, sparsity);
        QFETCH(int, m);
        QFETCH(bool, layerScope);
        std::vector<std::uint8_t> want;
        std::vector<long> shape;
        QVERIFY(readNpyU8(pruneData(file), want, shape));
        const MatrixView w{m_w.data(), m_rows, m_cols};
        std::vector<double> meanSq(static_cast<std::size_t>(m_cols), 0.0);
        for (std::int64_t t = 0; t < m_tokens; ++t)
            for (std::int64_t c = 0; c < m_cols; ++c)
                meanSq[static_cast<std::size_t>(c)] += static_cast<double>(m_x[static_cast<std::size_t>(t * m_cols + c)]) * m_x[static_cast<std::size_t>(t * m_cols + c)];
        for (auto &v : meanSq)
            v /= static_cast<double>(m_tokens);
        const auto scores = wanda ? wandaScores(w, meanSq, m_tokens) : magnitudeScores(w);
        auto mask = selectMask(scores, m_rows, m_cols, sparsity, m ? SparsityPattern{m / 2, m} : SparsityPattern{},
                               layerScope ? MaskScope::Layer : MaskScope::Row);
        QVERIFY(mask);
        QCOMPARE(*mask, want);
    }

    void maskErrorsNameTheParameter()
    {
        const std::vector<float> s(30, 1.0f);
        auto a = selectMask(s, 3, 10, 0.0, SparsityPattern{2, 4}, MaskScope::Row);
        QVERIFY(!a);
        QCOMPARE(a.error().parameter, QStringLiteral("pattern"));
        auto b = selectMask(s, 3, 10, 1.0, {}, MaskScope::Row);
        QVERIFY(!b);
        QCOMPARE(b.error().parameter, QStringLiteral("sparsity"));
        auto c = selectMask(s, 4, 10, 0.5, {}, MaskScope::Row);
        QVERIFY(!c);
        std::vector<float> nan(30, 1.0f);
        nan[7] = NAN;
        QVERIFY(!selectMask(nan, 3, 10, 0.5, {}, MaskScope::Row));
        QVERIFY(!SparsityPattern::parse(QStringLiteral("4:2")));
        QVERIFY(!SparsityPattern::parse(QStringLiteral("2-4")));
        QCOMPARE(SparsityPattern::parse(QStringLiteral("2:4"))->name(), QStringLiteral("2:4"));
        QVERIFY(!SparsityPattern::parse(QStringLiteral("unstructured"))->isNM());
    }

    // ---- SparseGPT ----------------------------------------------------------------------------

    void sparseGptMatchesReference_data()
    {
        QTest::addColumn<QString>("file");
        QTest::addColumn<double>("sparsity");
        QTest::addColumn<int>("m");
        QTest::addColumn<int>("bits");
        QTest::newRow("50% unstructured") << "sgpt_u50.npy" << 0.5 << 0 << 0;
        QTest::newRow("2:4") << "sgpt_24.npy" << 0.0 << 4 << 0;
        QTest::newRow("2:4 + 4-bit g16") << "sgpt_24_q4g16.npy" << 0.0 << 4 << 4;
    }
    void sparseGptMatchesReference()
    {
        QFETCH(QString, file);
        QFETCH(double, sparsity);
        QFETCH(int, m);
        QFETCH(int, bits);
        std::vector<float> want;
        std::vector<long> shape;
        QVERIFY(readNpyF32(pruneData(file), want, shape));
        Eigen::MatrixXd H(m_cols, m_cols);
        for (std::int64_t i = 0; i < m_cols; ++i)
            for (std::int64_t j = 0; j < m_cols; ++j)
                H(i, j) = m_h[static_cast<std::size_t>(i * m_cols + j)];
        SparseGptOptions o;
        o.blockSize = 32;
        if (bits)
            o.quantize = QuantFormat{bits, 16, false};
        const SparsityPattern pattern = m ? SparsityPattern{m / 2, m} : SparsityPattern{};
        auto r = sparseGptPrune(MatrixView{m_w.data(), m_rows, m_cols}, H, sparsity, pattern, o);
        QVERIFY2(r, qPrintable(r ? QString() : r.error().toString()));
        QCOMPARE(r->deadColumns, std::int64_t(1));
        // Same zeros as the reference, values within float rounding of the float64 reference.
        for (std::size_t i = 0; i < want.size(); ++i)
            QVERIFY2((want[i] == 0.0f) == (r->weights[i] == 0.0f), qPrintable(QStringLiteral("zero pattern differs at %1").arg(i)));
        QVERIFY2(maxAbsDiff(r->weights, want) < 2e-5f, qPrintable(QString::number(maxAbsDiff(r->weights, want))));
        const MatrixView pruned{r->weights.data(), m_rows, m_cols};
        if (m)
            QVERIFY(satisfiesPattern(pruned, pattern));
        else
            QVERIFY(std::count(r->weights.begin(), r->weights.end(), 0.0f) >= m_rows * m_cols / 2);
        if (bits) {
            QVERIFY(r->q);
            QCOMPARE(dequantized(*r->q), r->weights); // pruned weights are the zero point: exactly 0
        }
        // SparseGPT's compensation beats plain masking of the same weights on the layer's output.
        Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> X(m_x.data(), m_tokens, m_cols);
        Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> W(m_w.data(), m_rows, m_cols);
        std::vector<float> masked(m_w);
        for (std::size_t i = 0; i < masked.size(); ++i)
            masked[i] = r->weights[i] == 0.0f ? 0.0f : m_w[i];
        Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> Wm(masked.data(), m_rows, m_cols);
        Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>> Ws(r->weights.data(), m_rows, m_cols);
        const double errMasked = (X * (W - Wm).transpose()).squaredNorm(), errSparseGpt = (X * (W - Ws).transpose()).squaredNorm();
        if (!bits)
            QVERIFY2(errSparseGpt < errMasked, qPrintable(QStringLiteral("%1 vs %2").arg(errSparseGpt).arg(errMasked)));
    }

    // ---- recipes ------------------------------------------------------------------------------

    void recipeSparsity()
    {
        auto r = Recipe::fromJson(R"({"schemaVersion": 1, "defaults": {"technique": "wanda", "sparsity": 0.5},
                                      "layers": [{"match": "*.mlp.*", "pattern": "2:4"}, {"name": "x", "sparsity": 0.7}]})",
                                  QStringLiteral("r.json"));
        QVERIFY2(r, qPrintable(r ? QString() : r.error().toString()));
        QCOMPARE(r->defaultSparsity, 0.5);
        QCOMPARE(r->layers[0].pattern->name(), QStringLiteral("2:4"));
        QCOMPARE(*r->layers[1].sparsity, 0.7);
        auto again = Recipe::fromJson(r->toJson(), QStringLiteral("again"));
        QVERIFY(again);
        QCOMPARE(again->defaultSparsity, 0.5);
        QCOMPARE(*again->layers[0].pattern, (SparsityPattern{2, 4}));
        // a schemaVersion 1 recipe without them: nothing to prune, and it is written as before
        auto plain = Recipe::fromJson(R"({"schemaVersion": 1, "defaults": {"technique": "rtn", "bits": 4}})", QStringLiteral("p"));
        QVERIFY(plain);
        QCOMPARE(plain->defaultSparsity, 0.0);
        QVERIFY(!plain->toJson().contains("sparsity"));
        for (const char *bad : {R"({"schemaVersion": 1, "defaults": {"sparsity": 1.5}})", R"({"schemaVersion": 1, "defaults": {"sparsity": "half"}})"}) {
            auto e = Recipe::fromJson(bad, QStringLiteral("bad.json"));
            QVERIFY(!e);
            QCOMPARE(e.error().parameter, QStringLiteral("sparsity"));
        }
        auto e = Recipe::fromJson(R"({"schemaVersion": 1, "layers": [{"match": "*", "pattern": "3:2"}]})", QStringLiteral("bad.json"));
        QVERIFY(!e);
        QCOMPARE(e.error().parameter, QStringLiteral("pattern"));
    }

    void resolveChecksSparsity()
    {
        auto model = Model::load(defaultModelDir());
        QVERIFY(model);
        Recipe r;
        r.defaultTechnique = QStringLiteral("magnitude");
        auto none = resolveRecipe(r, **model, *m_registry); // sparsity 0: nothing to do
        QVERIFY(!none);
        QCOMPARE(none.error().parameter, QStringLiteral("sparsity"));
        r.defaultPattern = SparsityPattern{3, 7}; // 256 inputs are no multiple of 7
        auto bad = resolveRecipe(r, **model, *m_registry);
        QVERIFY(!bad);
        QCOMPARE(bad.error().parameter, QStringLiteral("pattern"));
    }

    // ---- the engine with the plugins, and pruned folders --------------------------------------

    void engineMagnitudeMatchesMaskAndReloads()
    {
        TinySpec spec;
        spec.dtype = DType::BF16;
        spec.hidden = 64;
        spec.inter = 96;
        QTemporaryDir dir;
        QVERIFY(writeTinyModel(dir.filePath(QStringLiteral("src")), spec));
        auto model = Model::load(dir.filePath(QStringLiteral("src")));
        QVERIFY(model);
        Recipe r;
        r.defaultTechnique = QStringLiteral("magnitude");
        r.defaultPattern = SparsityPattern{2, 4};
        auto result = compressModel(**model, r, *m_registry, {});
        QVERIFY2(result, qPrintable(result ? QString() : result.error().toString()));
        QCOMPARE(result->layers.size(), std::size_t(14));
        for (const CompressedLayerReport &l : result->layers) {
            QCOMPARE(l.pattern, QStringLiteral("2:4"));
            QCOMPARE(l.sparsity, 0.5);
            const QString tensor = l.name + QStringLiteral(".weight");
            const MatrixView src = (*model)->weight(tensor), got = result->model->weight(tensor);
            auto mask = selectMask(magnitudeScores(src), src.rows, src.cols, 0, SparsityPattern{2, 4}, MaskScope::Row);
            QVERIFY(mask);
            for (std::int64_t i = 0; i < src.rows * src.cols; ++i)
                QCOMPARE(got.data()[i], (*mask)[static_cast<std::size_t>(i)] ? src.data()[i] : 0.0f);
        }
        const QString out = dir.filePath(QStringLiteral("pruned"));
        QVERIFY(writeCompressedModel(*result, **model, out));
        const QJsonObject report = QJsonDocument::fromJson(readAll(out + QStringLiteral("/report.json"))).object();
        // nothing quantized: a plain Hugging Face checkpoint (no bitsmith quantization_config)
        QVERIFY(!QJsonDocument::fromJson(readAll(out + QStringLiteral("/config.json"))).object().contains(QStringLiteral("quantization_config")));
        QVERIFY(report.value(QStringLiteral("sparsity")).toDouble() > 0.3);
        auto reloaded = Model::load(out);
        QVERIFY2(reloaded, qPrintable(reloaded ? QString() : reloaded.error().toString()));
        for (const WeightInfo &w : (*reloaded)->weights()) {
            if (w.role == WeightRole::LmHead || !isLinearRole(w.role))
                continue;
            QCOMPARE(w.sparsity, 0.5);
            QCOMPARE(w.storedType, DType::BF16); // pruned layers keep the source's dtype
            QVERIFY(satisfiesPattern((*reloaded)->weight(w.name), SparsityPattern{2, 4}));
        }
        QVERIFY((*reloaded)->linearSparsity() > 0.3);
        // Same logits: in memory (Eigen, dense) vs reloaded (oneDNN + the 2:4 kernel at m = 1).
        const std::vector<std::int32_t> ids = {1, 5, 9, 33, 2, 70, 11};
        const auto a = logitsOf(Transformer(result->model, LinearBackend::Eigen), ids);
        Transformer sparse(*reloaded);
        const auto b = logitsOf(sparse, ids);
        QVERIFY2(maxAbsDiff(a, b) < 1e-4f, qPrintable(QString::number(maxAbsDiff(a, b))));
        // token by token (m = 1 runs on the sparse kernels)
        KVCache cache = sparse.makeCache(int(ids.size()));
        std::vector<float> step;
        for (std::size_t i = 0; i < ids.size(); ++i) {
            QVERIFY(sparse.forward(std::span(ids).subspan(i, 1), cache, step));
        }
        const std::vector<float> last(a.end() - spec.vocab, a.end());
        QVERIFY2(maxAbsDiff(step, last) < 1e-4f, qPrintable(QString::number(maxAbsDiff(step, last))));
    }

    void enginePluginsOnBundledModel_data()
    {
        QTest::addColumn<QString>("technique");
        QTest::addColumn<double>("sparsity");
        QTest::addColumn<int>("m");
        QTest::addColumn<bool>("quantize");
        QTest::newRow("wanda 50%") << "wanda" << 0.5 << 0 << false;
        QTest::newRow("wanda 2:4") << "wanda" << 0.0 << 4 << false;
        QTest::newRow("sparsegpt 2:4") << "sparsegpt" << 0.0 << 4 << false;
        QTest::newRow("sparsegpt 2:4 + 4-bit") << "sparsegpt" << 0.0 << 4 << true;
    }
    void enginePluginsOnBundledModel()
    {
        QFETCH(QString, technique);
        QFETCH(double, sparsity);
        QFETCH(int, m);
        QFETCH(bool, quantize);
        auto model = Model::load(defaultModelDir());
        QVERIFY(model);
        Recipe r;
        r.defaultTechnique = technique;
        r.defaultSparsity = sparsity;
        r.defaultPattern = m ? SparsityPattern{2, m} : SparsityPattern{};
        if (quantize)
            r.defaultParameters.insert(QStringLiteral("quantize"), true);
        r.layers.push_back(RecipeEntry{});
        r.layers.back().match = QStringLiteral("model.layers.[1-7].*"); // only block 0: fast
        r.layers.back().skip = true;
        auto ids = tokenizeTextFile(**model, defaultModelDir() + QStringLiteral("/calib.txt"));
        QVERIFY(ids);
        auto seqs = makeCalibrationSequences(*ids, 4, 64, 0);
        QVERIFY(seqs);
        auto result = compressModel(**model, r, *m_registry, *seqs);
        QVERIFY2(result, qPrintable(result ? QString() : result.error().toString()));
        QCOMPARE(result->layers.size(), std::size_t(7));
        for (const CompressedLayerReport &l : result->layers) {
            const MatrixView w = result->model->weight(l.name + QStringLiteral(".weight"));
            if (m)
                QVERIFY(satisfiesPattern(w, SparsityPattern{2, m}));
            QVERIFY2(l.sparsity >= 0.5 && l.sparsity < 0.6, qPrintable(QString::number(l.sparsity)));
            QVERIFY(l.relativeError > 0.0 && l.relativeError < 1.0);
            QCOMPARE(result->model->quantizedLayer(l.name + QStringLiteral(".weight")) != nullptr, quantize);
        }
    }

    // ---- structured pruning -------------------------------------------------------------------

    void structuredKeepsFunctionOfZeroUnits_data()
    {
        QTest::addColumn<int>("heads");
        QTest::addColumn<int>("kvHeads");
        QTest::addColumn<double>("headFraction");
        QTest::addColumn<bool>("byGroups");
        QTest::newRow("a query head per KV group") << 4 << 2 << 0.5 << false;
        QTest::newRow("a whole KV group") << 6 << 3 << 0.33 << true;
    }
    void structuredKeepsFunctionOfZeroUnits()
    {
        QFETCH(int, heads);
        QFETCH(int, kvHeads);
        QFETCH(double, headFraction);
        QFETCH(bool, byGroups);
        TinySpec spec;
        spec.heads = heads;
        spec.kvHeads = kvHeads;
        spec.hidden = 8 * heads;
        spec.inter = 64;
        QTemporaryDir dir;
        QVERIFY(writeTinyModel(dir.filePath(QStringLiteral("src")), spec));
        auto loaded = Model::load(dir.filePath(QStringLiteral("src")));
        QVERIFY(loaded);
        // Units that contribute exactly nothing: o_proj columns of some heads, down_proj columns
        // of 16 neurons. Removing exactly them must not change the logits.
        auto edited = (*loaded)->cloneMutable();
        const int hd = 8, perGroup = heads / kvHeads;
        std::vector<int> zeroHeads = byGroups ? std::vector<int>{perGroup, perGroup + 1} : std::vector<int>{1, 2};
        std::mt19937 rng(3);
        for (int b = 0; b < spec.layers; ++b) {
            const QString p = QStringLiteral("model.layers.%1.").arg(b);
            float *o = edited->mutableWeight(p + QStringLiteral("self_attn.o_proj.weight"));
            for (int h : zeroHeads)
                for (int r = 0; r < spec.hidden; ++r)
                    for (int j = h * hd; j < (h + 1) * hd; ++j)
                        o[r * heads * hd + j] = 0.0f;
            float *down = edited->mutableWeight(p + QStringLiteral("mlp.down_proj.weight"));
            std::vector<int> neurons(64);
            std::iota(neurons.begin(), neurons.end(), 0);
            std::shuffle(neurons.begin(), neurons.end(), rng);
            for (int k = 0; k < 16; ++k)
                for (int r = 0; r < spec.hidden; ++r)
                    down[r * 64 + neurons[static_cast<std::size_t>(k)]] = 0.0f;
        }
        const QString zeroed = dir.filePath(QStringLiteral("zeroed"));
        QVERIFY(writeModelCopy(*edited, zeroed));
        auto source = Model::load(zeroed);
        QVERIFY(source);
        std::vector<std::vector<std::int32_t>> calib = {{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, {50, 40, 30, 20, 10}};
        auto imp = structuredImportance(*source, calib);
        QVERIFY2(imp, qPrintable(imp ? QString() : imp.error().toString()));
        auto plan = planStructuredPruning(**source, *imp, headFraction, 0.25);
        QVERIFY(plan);
        QCOMPARE(plan->neuronFraction, 0.25);
        QCOMPARE(plan->kvHeads, byGroups ? kvHeads - 1 : kvHeads);
        for (const auto &kept : plan->keptHeads)
            for (int h : zeroHeads)
                QVERIFY(std::find(kept.begin(), kept.end(), h) == kept.end());
        const QString out = dir.filePath(QStringLiteral("small"));
        auto report = writeStructuredModel(**source, *plan, out);
        QVERIFY2(report, qPrintable(report ? QString() : report.error().toString()));
        auto small = Model::load(out);
        QVERIFY2(small, qPrintable(small ? QString() : small.error().toString()));
        QCOMPARE((*small)->config().intermediateSize, 48);
        QCOMPARE((*small)->config().numHeads, heads - 2);
        QCOMPARE((*small)->config().headDim, hd); // explicit in config.json now
        QVERIFY((*small)->totalParameters() < (*source)->totalParameters());
        const std::vector<std::int32_t> ids = {3, 14, 15, 92, 65, 35};
        const auto a = logitsOf(Transformer(*source), ids);
        const auto b = logitsOf(Transformer(*small), ids);
        QVERIFY2(maxAbsDiff(a, b) < 1e-4f, qPrintable(QString::number(maxAbsDiff(a, b))));
        // and removing units that do matter changes it (the test can fail)
        auto plan2 = planStructuredPruning(**source, *imp, 0.0, 0.5);
        QVERIFY(plan2);
        QVERIFY(writeStructuredModel(**source, *plan2, out));
        auto smaller = Model::load(out);
        QVERIFY(smaller);
        QVERIFY(maxAbsDiff(a, logitsOf(Transformer(*smaller), ids)) > 1e-3f);
    }

    void structuredExportMatchesPyTorch()
    {
        // The bundled model with one query head per KV group and 25 % of the MLP neurons removed,
        // as `compress --method structured --heads 0.5 --mlp 0.25 --calib-sequences 4
        // --calib-length 128` makes it; tools/structured_reference.py ran that folder through an
        // independent PyTorch Llama forward pass.
        auto model = Model::load(defaultModelDir());
        QVERIFY(model);
        auto ids = tokenizeTextFile(**model, defaultModelDir() + QStringLiteral("/calib.txt"));
        QVERIFY(ids);
        auto seqs = makeCalibrationSequences(*ids, 4, 128, 0);
        QVERIFY(seqs);
        auto imp = structuredImportance(*model, *seqs);
        QVERIFY(imp);
        auto plan = planStructuredPruning(**model, *imp, 0.5, 0.25);
        QVERIFY(plan);
        QTemporaryDir dir;
        QVERIFY(writeStructuredModel(**model, *plan, dir.path()));
        auto small = Model::load(dir.path());
        QVERIFY2(small, qPrintable(small ? QString() : small.error().toString()));
        std::vector<float> want;
        std::vector<long> shape;
        QVERIFY(readNpyF32(pruneData(QStringLiteral("structured_logits.npy")), want, shape));
        QCOMPARE(shape, (std::vector<long>{3, 4096}));
        const std::vector<std::int32_t> tokens = {1088, 260, 2342, 424, 3317, 12, 270, 401};
        const auto logits = logitsOf(Transformer(*small), tokens);
        float worst = 0;
        for (int i = 0; i < 3; ++i) {
            const int pos = std::array{0, 3, 7}[static_cast<std::size_t>(i)];
            for (int v = 0; v < 4096; ++v)
                worst = std::max(worst, std::abs(logits[static_cast<std::size_t>(pos * 4096 + v)] - want[static_cast<std::size_t>(i * 4096 + v)]));
        }
        QVERIFY2(worst < 1e-3f, qPrintable(QString::number(worst)));
    }

    void structuredRejectsBadFractions()
    {
        auto model = Model::load(defaultModelDir());
        QVERIFY(model);
        StructuredImportance imp;
        auto a = planStructuredPruning(**model, imp, 1.0, 0.0);
        QVERIFY(!a);
        QCOMPARE(a.error().parameter, QStringLiteral("heads"));
        auto b = planStructuredPruning(**model, imp, 0.0, -0.1);
        QVERIFY(!b);
        QCOMPARE(b.error().parameter, QStringLiteral("mlp"));
    }

    // ---- sparse kernels -------------------------------------------------------------------------

    void sparseKernelsMatchDense_data()
    {
        QTest::addColumn<int>("isa");
        QTest::addColumn<bool>("csr");
        QTest::addColumn<bool>("int8");
        for (KernelIsa isa : {KernelIsa::Scalar, KernelIsa::Avx2, KernelIsa::Avx512}) {
            if (!kernelIsaSupported(isa))
                continue;
            QTest::addRow("2:4 %s", kernelIsaName(isa)) << int(isa) << false << false;
            QTest::addRow("2:4 int8 %s", kernelIsaName(isa)) << int(isa) << false << true;
            QTest::addRow("csr %s", kernelIsaName(isa)) << int(isa) << true << false;
        }
    }
    void sparseKernelsMatchDense()
    {
        QFETCH(int, isa);
        QFETCH(bool, csr);
        QFETCH(bool, int8);
        const std::int64_t n = 40, k = csr ? 100 : 96;
        auto w = randomMatrix(n, k, 11);
        const MatrixView view{w.data(), n, k};
        if (csr) {
            auto mask = selectMask(magnitudeScores(view), n, k, 0.8, {}, MaskScope::Layer);
            QVERIFY(mask);
            w = applyMask(view, *mask);
        } else {
            auto mask = selectMask(magnitudeScores(view), n, k, 0, SparsityPattern{2, 4}, MaskScope::Row);
            QVERIFY(mask);
            w = applyMask(view, *mask);
            w[3] = 0.0f; // a group with a single nonzero
            w[1] = 0.0f;
            w[2] = 0.0f;
        }
        const MatrixView pruned{w.data(), n, k};
        const auto bias = randomMatrix(1, n, 12);
        SparseKernelOptions o;
        o.isa = KernelIsa(isa);
        std::unique_ptr<LinearKernel> kernel;
        std::vector<float> back(w.size());
        if (csr) {
            auto s = CsrWeights::fromDense(pruned);
            QVERIFY(s);
            s->toDense(back.data());
            kernel = makeCsrLinear(std::make_shared<const CsrWeights>(std::move(*s)), bias.data(), o);
        } else {
            auto s = Sparse24Weights::fromDense(pruned, int8);
            QVERIFY(s);
            // f32: 0.53 of dense f32 (values + 2-bit positions); int8: 0.625 of dense int8 + row scales
            QVERIFY(static_cast<double>(s->bytes()) < (int8 ? 0.67 : 0.5625) * static_cast<double>(w.size() * (int8 ? 1 : 4)));
            s->toDense(back.data());
            kernel = makeSparse24Linear(std::make_shared<const Sparse24Weights>(std::move(*s)), bias.data(), o);
        }
        if (int8) {
            // int8 values: the zeros stay, the rest within per-row int8 rounding; the kernel then
            // computes exactly with those values
            double num = 0, den = 0;
            for (std::size_t i = 0; i < w.size(); ++i) {
                QCOMPARE(back[i] == 0.0f, w[i] == 0.0f);
                num += (back[i] - w[i]) * (back[i] - w[i]);
                den += w[i] * w[i];
            }
            QVERIFY2(num / den < 1e-4, qPrintable(QString::number(num / den)));
            QVERIFY(num > 0);
            w = back;
        }
        QCOMPARE(back, w); // the format round-trips exactly
        for (std::int64_t m : {1, 2, 3, 4, 5, 8, 11, 16, 21, 40, 600}) {
            const auto x = randomMatrix(m, k, 100 + static_cast<std::uint32_t>(m));
            std::vector<float> y(static_cast<std::size_t>(m * n), NAN);
            kernel->forward(x.data(), m, y.data());
            const double e = nmse(y, denseReference(w, n, k, x, m, bias.data()));
            QVERIFY2(e < 1e-12, qPrintable(QStringLiteral("m = %1: NMSE %2").arg(m).arg(e)));
        }
    }

    void sparse24LongRows()
    {
        // K beyond one 4096-input slice: partial sums over slices
        const std::int64_t n = 9, k = 4096 + 3 * 32;
        auto w = randomMatrix(n, k, 31);
        auto mask = selectMask(magnitudeScores(MatrixView{w.data(), n, k}), n, k, 0, SparsityPattern{2, 4}, MaskScope::Row);
        QVERIFY(mask);
        w = applyMask(MatrixView{w.data(), n, k}, *mask);
        for (bool int8 : {false, true}) {
            auto s = Sparse24Weights::fromDense(MatrixView{w.data(), n, k}, int8);
            QVERIFY(s);
            std::vector<float> back(w.size());
            s->toDense(back.data());
            auto kernel = makeSparse24Linear(std::make_shared<const Sparse24Weights>(std::move(*s)), nullptr);
            for (std::int64_t m : {1, 3, 9}) {
                const auto x = randomMatrix(m, k, 40 + static_cast<std::uint32_t>(m));
                std::vector<float> y(static_cast<std::size_t>(m * n));
                kernel->forward(x.data(), m, y.data());
                const double e = nmse(y, denseReference(back, n, k, x, m, nullptr));
                QVERIFY2(e < 1e-11, qPrintable(QStringLiteral("m = %1: NMSE %2").arg(m).arg(e)));
            }
        }
    }

    void sparseFormatsRejectBadInput()
    {
        std::vector<float> w(2 * 64, 1.0f); // dense: not 2:4
        auto a = Sparse24Weights::fromDense(MatrixView{w.data(), 2, 64});
        QVERIFY(!a);
        QCOMPARE(a.error().parameter, QStringLiteral("pattern"));
        std::vector<float> odd(2 * 40, 0.0f);
        QVERIFY(!Sparse24Weights::fromDense(MatrixView{odd.data(), 2, 40}));
        std::vector<float> big(70000, 0.0f);
        QVERIFY(!CsrWeights::fromDense(MatrixView{big.data(), 1, 70000}));
    }

    void runtimeChoosesSparseKernels()
    {
        auto w = randomMatrix(64, 128, 21);
        const MatrixView view{w.data(), 64, 128};
        QVERIFY(!makeSparseLinearIfPays(view, {})); // dense: no
        auto mask = selectMask(magnitudeScores(view), 64, 128, 0, SparsityPattern{2, 4}, MaskScope::Row);
        auto p24 = applyMask(view, *mask);
        auto k24 = makeSparseLinearIfPays(MatrixView{p24.data(), 64, 128}, {});
        QVERIFY(k24);
        QVERIFY(k24->description().startsWith(QStringLiteral("sparse 2:4")));
        auto mask90 = selectMask(magnitudeScores(view), 64, 128, 0.9, {}, MaskScope::Layer);
        auto p90 = applyMask(view, *mask90);
        auto kcsr = makeSparseLinearIfPays(MatrixView{p90.data(), 64, 128}, {});
        QVERIFY(kcsr);
        QVERIFY(kcsr->description().startsWith(QStringLiteral("sparse csr")));
        // below and above the row threshold (where the dense fallback runs): same results
        for (std::int64_t m : {1, 32, 100}) {
            const auto x = randomMatrix(m, 128, 5);
            std::vector<float> y(static_cast<std::size_t>(m * 64));
            kcsr->forward(x.data(), m, y.data());
            QVERIFY(nmse(y, denseReference(p90, 64, 128, x, m, nullptr)) < 1e-12);
            k24->forward(x.data(), m, y.data());
            QVERIFY(nmse(y, denseReference(p24, 64, 128, x, m, nullptr)) < 1e-12);
        }
        // 2:4 + 8-bit symmetric per-channel (pruned zeros are the zero point): the int8 2:4 kernel,
        // exactly the dequantized layer
        auto q8 = quantizeRtn(MatrixView{p24.data(), 64, 128}, QuantFormat{8, 0, true});
        QVERIFY(q8);
        std::vector<float> deq(p24.size());
        q8->dequantize(deq.data());
        QVERIFY(satisfiesPattern(MatrixView{deq.data(), 64, 128}, SparsityPattern{2, 4}));
        auto k8 = makeSparseQuantizedLinearIfPays(*q8, MatrixView{deq.data(), 64, 128}, {});
        QVERIFY(k8);
        QVERIFY(k8->description().startsWith(QStringLiteral("sparse 2:4 int8")));
        for (std::int64_t m : {1, 2, 7}) {
            const auto x = randomMatrix(m, 128, 9);
            std::vector<float> y(static_cast<std::size_t>(m * 64));
            k8->forward(x.data(), m, y.data());
            QVERIFY(nmse(y, denseReference(deq, 64, 128, x, m, nullptr)) < 1e-12);
        }
        auto q4 = quantizeRtn(MatrixView{p24.data(), 64, 128}, QuantFormat{4, 128, false});
        QVERIFY(!makeSparseQuantizedLinearIfPays(*q4, MatrixView{deq.data(), 64, 128}, {})); // not int8
        qputenv("BITSMITH_SPARSE", "0");
        QVERIFY(!makeSparseLinearIfPays(MatrixView{p24.data(), 64, 128}, {}));
        qunsetenv("BITSMITH_SPARSE");
    }
};

QTEST_GUILESS_MAIN(TestPruning)
#include "tst_pruning.moc"
