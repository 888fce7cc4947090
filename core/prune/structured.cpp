// structured.cpp: importance scores, the pruning plan and the rewriting of a smaller model folder.
#include "structured.h"
#include "core/outputfolder.h" // staged folder writes

#include "core/safetensors.h"
#include "core/transformer.h"

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QSaveFile>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

namespace bitsmith::core {

namespace {

// Per block: Σ a² over o's input columns and Σ |a| over down's input columns.
class ImportanceHook final : public LinearInputHook
{
public:
    explicit ImportanceHook(const ModelConfig &c)
        : m_oSq(static_cast<std::size_t>(c.numLayers), std::vector<double>(static_cast<std::size_t>(c.numHeads * c.headDim), 0.0))
        , m_downAbs(static_cast<std::size_t>(c.numLayers), std::vector<double>(static_cast<std::size_t>(c.intermediateSize), 0.0))
    {}
    bool onLinearInput(int block, WeightRole role, const float *x, std::int64_t rows, std::int64_t cols) override
    {
        if (block < 0 || block >= static_cast<int>(m_oSq.size()))
            return true;
        if (role == WeightRole::LinearO) {
            auto &acc = m_oSq[static_cast<std::size_t>(block)];
            for (std::int64_t r = 0; r < rows; ++r)
                for (std::int64_t c = 0; c < cols && c < static_cast<std::int64_t>(acc.size()); ++c)
                    acc[static_cast<std::size_t>(c)] += static_cast<double>(x[r * cols + c]) * x[r * cols + c];
        } else if (role == WeightRole::LinearDown) {
            auto &acc = m_downAbs[static_cast<std::size_t>(block)];
            for (std::int64_t r = 0; r < rows; ++r)
                for (std::int64_t c = 0; c < cols && c < static_cast<std::int64_t>(acc.size()); ++c)
                    acc[static_cast<std::size_t>(c)] += std::abs(static_cast<double>(x[r * cols + c]));
        }
        return true;
    }
    std::vector<std::vector<double>> m_oSq, m_downAbs;
};

Expected<void> writeFileAtomic(const QString &path, const QByteArray &bytes)
{
    QSaveFile f(path);
    if (!f.open(QIODevice::WriteOnly) || f.write(bytes) != bytes.size() || !f.commit())
        return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot write: %1").arg(f.errorString()))
                              .inFile(path)
                              .withHint(QStringLiteral("check free disk space and permissions")));
    return {};
}

// The k lowest of `scores` (stable: lower index first on ties) — returned as the kept indices.
std::vector<int> keepHighest(const std::vector<double> &scores, int remove)
{
    std::vector<int> order(scores.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return scores[static_cast<std::size_t>(a)] < scores[static_cast<std::size_t>(b)]; });
    std::vector<int> kept(order.begin() + remove, order.end());
    std::sort(kept.begin(), kept.end());
    return kept;
}

QJsonArray toJson(const std::vector<int> &v)
{
    QJsonArray a;
    for (int x : v)
        a.append(x);
    return a;
}

} // namespace

Expected<StructuredImportance> structuredImportance(std::shared_ptr<const Model> model,
                                                    const std::vector<std::vector<std::int32_t>> &calibration,
                                                    Feedback *feedback)
{
    const ModelConfig &c = model->config();
    if (calibration.empty())
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("structured pruning needs calibration data"))
                              .forParameter(QStringLiteral("calib"))
                              .withHint(QStringLiteral("give a calibration text with --calib FILE")));
    if (!model->quantizedLayers().empty())
        return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("structured pruning needs a dense model"))
                              .inFile(model->folder())
                              .withHint(QStringLiteral("prune the original model, then compress the result")));
    if (c.isMoe())
        return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("structured pruning of mixture-of-experts models (%1) is not supported yet").arg(c.architectureName))
                              .inFile(model->folder())
                              .withHint(QStringLiteral("prune the experts unstructured (magnitude, wanda, sparsegpt) through a recipe")));
    Transformer tf(model);
    ImportanceHook hook(c);
    StructuredImportance imp;
    std::vector<float> logits;
    for (std::size_t i = 0; i < calibration.size(); ++i) {
        if (feedback) {
            feedback->setProgress(static_cast<double>(i) / static_cast<double>(calibration.size()));
            if (feedback->isCancelled())
                return unexpected(fail(ErrorCode::Cancelled, QStringLiteral("structured pruning cancelled")));
        }
        KVCache cache = tf.makeCache(static_cast<int>(calibration[i].size()));
        if (auto ok = tf.forward(calibration[i], cache, logits, true, &hook); !ok)
            return unexpected(std::move(ok.error()).forParameter(QStringLiteral("calib")));
        imp.tokens += static_cast<std::int64_t>(calibration[i].size());
    }
    const auto n = static_cast<double>(std::max<std::int64_t>(imp.tokens, 1));
    const int hd = c.headDim;
    for (int b = 0; b < c.numLayers; ++b) {
        const BlockWeights &w = model->blocks()[static_cast<std::size_t>(b)];
        std::vector<double> heads(static_cast<std::size_t>(c.numHeads), 0.0);
        for (int h = 0; h < c.numHeads; ++h) {
            double act = 0.0, weight = 0.0;
            for (int j = h * hd; j < (h + 1) * hd; ++j) {
                act += hook.m_oSq[static_cast<std::size_t>(b)][static_cast<std::size_t>(j)] / n;
                for (std::int64_t r = 0; r < w.o.rows; ++r)
                    weight += static_cast<double>(w.o.data()[r * w.o.cols + j]) * w.o.data()[r * w.o.cols + j];
            }
            heads[static_cast<std::size_t>(h)] = std::sqrt(act) * std::sqrt(weight);
        }
        std::vector<double> neurons(static_cast<std::size_t>(c.intermediateSize), 0.0);
        for (int j = 0; j < c.intermediateSize; ++j) {
            double weight = 0.0;
            for (std::int64_t r = 0; r < w.down.rows; ++r)
                weight += static_cast<double>(w.down.data()[r * w.down.cols + j]) * w.down.data()[r * w.down.cols + j];
            neurons[static_cast<std::size_t>(j)] = hook.m_downAbs[static_cast<std::size_t>(b)][static_cast<std::size_t>(j)] / n * std::sqrt(weight);
        }
        imp.heads.push_back(std::move(heads));
        imp.neurons.push_back(std::move(neurons));
    }
    if (feedback)
        feedback->setProgress(1.0);
    return imp;
}

Expected<StructuredPlan> planStructuredPruning(const Model &model, const StructuredImportance &imp, double headFraction,
                                               double mlpFraction)
{
    const ModelConfig &c = model.config();
    if (!(headFraction >= 0.0 && headFraction < 1.0))
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("the fraction of heads to remove must be from 0 to below 1"))
                              .forParameter(QStringLiteral("heads"))
                              .withHint(QStringLiteral("e.g. --heads 0.25")));
    if (!(mlpFraction >= 0.0 && mlpFraction < 1.0))
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("the fraction of MLP neurons to remove must be from 0 to below 1"))
                              .forParameter(QStringLiteral("mlp"))
                              .withHint(QStringLiteral("e.g. --mlp 0.25")));
    if (static_cast<int>(imp.heads.size()) != c.numLayers || static_cast<int>(imp.neurons.size()) != c.numLayers)
        return unexpected(fail(ErrorCode::Mismatch, QStringLiteral("importance scores do not match the model")));
    const int groups = c.numKvHeads, perGroup = c.numHeads / c.numKvHeads;
    // Query heads per group, or whole groups: whichever lands closer to the request.
    const int removePerGroup = std::min(perGroup - 1, static_cast<int>(std::lround(headFraction * perGroup)));
    const int removeGroups = std::min(groups - 1, static_cast<int>(std::lround(headFraction * groups)));
    const double fracA = static_cast<double>(removePerGroup) / perGroup, fracB = static_cast<double>(removeGroups) / groups;
    const bool byGroups = std::abs(fracB - headFraction) < std::abs(fracA - headFraction);
    const int removeNeurons = std::min(c.intermediateSize - 1, static_cast<int>(std::lround(mlpFraction * c.intermediateSize)));

    StructuredPlan plan;
    plan.headsPerKvGroup = byGroups ? perGroup : perGroup - removePerGroup;
    plan.kvHeads = byGroups ? groups - removeGroups : groups;
    plan.headFraction = byGroups ? fracB : fracA;
    plan.neuronFraction = static_cast<double>(removeNeurons) / c.intermediateSize;
    for (int b = 0; b < c.numLayers; ++b) {
        const auto &hs = imp.heads[static_cast<std::size_t>(b)];
        std::vector<int> kept, keptKv;
        if (byGroups) {
            std::vector<double> groupScore(static_cast<std::size_t>(groups), 0.0);
            for (int h = 0; h < c.numHeads; ++h)
                groupScore[static_cast<std::size_t>(h / perGroup)] += hs[static_cast<std::size_t>(h)];
            keptKv = keepHighest(groupScore, removeGroups);
            for (int g : keptKv)
                for (int k = 0; k < perGroup; ++k)
                    kept.push_back(g * perGroup + k);
        } else {
            for (int g = 0; g < groups; ++g) {
                keptKv.push_back(g);
                const std::vector<double> local(hs.begin() + g * perGroup, hs.begin() + (g + 1) * perGroup);
                for (int k : keepHighest(local, removePerGroup))
                    kept.push_back(g * perGroup + k);
            }
        }
        plan.keptHeads.push_back(std::move(kept));
        plan.keptKvHeads.push_back(std::move(keptKv));
        plan.keptNeurons.push_back(keepHighest(imp.neurons[static_cast<std::size_t>(b)], removeNeurons));
    }
    return plan;
}

Expected<QJsonObject> writeStructuredModel(const Model &model, const StructuredPlan &plan, const QString &outDir)
{
    const ModelConfig &c = model.config();
    if (!model.quantizedLayers().empty())
        return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("structured pruning needs a dense model")).inFile(model.folder()));
    if (c.isMoe())
        return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("structured pruning of mixture-of-experts models is not supported yet")).inFile(model.folder()));
    if (static_cast<int>(plan.keptHeads.size()) != c.numLayers)
        return unexpected(fail(ErrorCode::Mismatch, QStringLiteral("the pruning plan does not match the model")));
    const QDir srcDir(model.folder());
    auto staged = beginOutputFolder(outDir);
    if (!staged)
        return unexpected(staged.error());
    const QDir out(staged->tmpDir);

    auto sourceConfig = readConfigJson(model.folder());
    if (!sourceConfig)
        return unexpected(sourceConfig.error());
    QJsonObject cfg = *sourceConfig;
    const int newHeads = plan.kvHeads * plan.headsPerKvGroup;
    const int newInter = static_cast<int>(plan.keptNeurons.front().size());
    cfg.insert(QStringLiteral("num_attention_heads"), newHeads);
    cfg.insert(QStringLiteral("num_key_value_heads"), plan.kvHeads);
    cfg.insert(QStringLiteral("head_dim"), c.headDim); // no longer hidden / heads
    cfg.insert(QStringLiteral("intermediate_size"), newInter);
    if (auto ok = writeFileAtomic(out.filePath(QStringLiteral("config.json")), QJsonDocument(cfg).toJson()); !ok)
        return unexpected(ok.error());

    // Row and column selections of each tensor, in units of whole rows / columns.
    auto expand = [](const std::vector<int> &units, int width) {
        std::vector<std::int64_t> idx;
        for (int u : units)
            for (int k = 0; k < width; ++k)
                idx.push_back(static_cast<std::int64_t>(u) * width + k);
        return idx;
    };
    std::vector<std::vector<std::byte>> storage;
    storage.reserve(model.files().tensors().size()); // spans into it must stay valid
    std::vector<TensorToWrite> tensors;
    std::int64_t paramsBefore = 0, paramsAfter = 0;
    for (const TensorRecord *rec : model.files().tensors()) {
        paramsBefore += rec->numel();
        const std::size_t es = dtypeSize(rec->dtype);
        std::vector<std::int64_t> rowSel, colSel; // empty = all
        const QString &name = rec->name;
        if (name.startsWith(QLatin1String("model.layers."))) {
            const int b = name.section(QLatin1Char('.'), 2, 2).toInt();
            if (b >= 0 && b < c.numLayers) {
                const auto ub = static_cast<std::size_t>(b);
                if (name.contains(QLatin1String("self_attn.q_proj.")))
                    rowSel = expand(plan.keptHeads[ub], c.headDim);
                else if (name.contains(QLatin1String("self_attn.k_proj.")) || name.contains(QLatin1String("self_attn.v_proj.")))
                    rowSel = expand(plan.keptKvHeads[ub], c.headDim);
                else if (name.endsWith(QLatin1String("self_attn.o_proj.weight")))
                    colSel = expand(plan.keptHeads[ub], c.headDim);
                else if (name.contains(QLatin1String("mlp.gate_proj.")) || name.contains(QLatin1String("mlp.up_proj.")))
                    rowSel = expand(plan.keptNeurons[ub], 1);
                else if (name.endsWith(QLatin1String("mlp.down_proj.weight")))
                    colSel = expand(plan.keptNeurons[ub], 1);
            }
        }
        if (rowSel.empty() && colSel.empty()) {
            tensors.push_back({rec->name, rec->dtype, rec->shape, std::span<const std::byte>(rec->data, rec->nbytes)});
            paramsAfter += rec->numel();
            continue;
        }
        const std::int64_t rows = rec->shape[0], cols = rec->shape.size() == 2 ? rec->shape[1] : 1;
        if (rowSel.empty())
            for (std::int64_t r = 0; r < rows; ++r)
                rowSel.push_back(r);
        if (colSel.empty())
            for (std::int64_t k = 0; k < cols; ++k)
                colSel.push_back(k);
        for (std::int64_t r : rowSel)
            if (r >= rows)
                return unexpected(fail(ErrorCode::Mismatch, QStringLiteral("tensor shape does not match the config")).forTensor(rec->name));
        for (std::int64_t k : colSel)
            if (k >= cols)
                return unexpected(fail(ErrorCode::Mismatch, QStringLiteral("tensor shape does not match the config")).forTensor(rec->name));
        std::vector<std::byte> bytes(rowSel.size() * colSel.size() * es);
        std::byte *dst = bytes.data();
        for (std::int64_t r : rowSel)
            for (std::int64_t k : colSel) {
                std::memcpy(dst, rec->data + static_cast<std::size_t>(r * cols + k) * es, es);
                dst += es;
            }
        std::vector<std::int64_t> shape = rec->shape;
        shape[0] = static_cast<std::int64_t>(rowSel.size());
        if (shape.size() == 2)
            shape[1] = static_cast<std::int64_t>(colSel.size());
        paramsAfter += static_cast<std::int64_t>(rowSel.size() * colSel.size());
        storage.push_back(std::move(bytes));
        tensors.push_back({rec->name, rec->dtype, shape, std::span<const std::byte>(storage.back())});
    }
    if (auto ok = writeSafetensors(out.filePath(QStringLiteral("model.safetensors")), tensors, {{QStringLiteral("format"), QStringLiteral("pt")}}); !ok)
        return unexpected(ok.error());
    for (const char *name : {"tokenizer.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json"}) {
        const QString src = srcDir.filePath(QLatin1String(name));
        if (QFileInfo::exists(src) && !QFile::copy(src, out.filePath(QLatin1String(name))))
            return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot copy %1").arg(QLatin1String(name))).inFile(src));
    }
    QJsonArray blocks;
    for (int b = 0; b < c.numLayers; ++b) {
        const auto ub = static_cast<std::size_t>(b);
        blocks.append(QJsonObject{{QStringLiteral("kept_heads"), toJson(plan.keptHeads[ub])},
                                  {QStringLiteral("kept_kv_heads"), toJson(plan.keptKvHeads[ub])},
                                  {QStringLiteral("kept_neurons"), static_cast<int>(plan.keptNeurons[ub].size())}});
    }
    QJsonObject report{{QStringLiteral("source"), model.folder()},
                       {QStringLiteral("method"), QStringLiteral("structured")},
                       {QStringLiteral("heads_removed_fraction"), plan.headFraction},
                       {QStringLiteral("mlp_removed_fraction"), plan.neuronFraction},
                       {QStringLiteral("num_attention_heads"), newHeads},
                       {QStringLiteral("num_key_value_heads"), plan.kvHeads},
                       {QStringLiteral("intermediate_size"), newInter},
                       {QStringLiteral("parameters_before"), static_cast<double>(paramsBefore)},
                       {QStringLiteral("parameters_after"), static_cast<double>(paramsAfter)},
                       {QStringLiteral("blocks"), blocks}};
    if (auto ok = writeFileAtomic(out.filePath(QStringLiteral("report.json")), QJsonDocument(report).toJson(QJsonDocument::Indented)); !ok)
        return unexpected(ok.error());
    if (auto ok = finishOutputFolder(*staged); !ok)
        return unexpected(ok.error());
    return report;
}

} // namespace bitsmith::core
