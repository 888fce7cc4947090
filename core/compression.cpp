// compression.cpp: the block-by-block compression engine.
#include "compression.h"
#include "core/outputfolder.h" // staged folder writes

#include "core/calibration.h"
#include "core/memory.h"
#include "core/sdk/techniqueregistry.h"
#include "core/transformer.h"

#include <QDir>
#include <QElapsedTimer>
#include <QFileInfo>
#include <QHash>
#include <QTemporaryFile>

#include <map>
#include <span>

namespace bitsmith::core {

namespace {

// Which input a linear reads.
WeightRole inputOf(WeightRole role)
{
    switch (role) {
    case WeightRole::LinearQ: case WeightRole::LinearK: case WeightRole::LinearV: return WeightRole::LinearQ;
    case WeightRole::LinearO: return WeightRole::LinearO;
    case WeightRole::LinearGate: case WeightRole::LinearUp: return WeightRole::LinearGate;
    case WeightRole::LinearDown: return WeightRole::LinearDown;
    default: return WeightRole::LmHead;
    }
}

// Captures one input of one block into InputStatistics.
class CaptureHook final : public LinearInputHook
{
public:
    CaptureHook(int block, WeightRole role, InputStatistics &stats)
        : m_block(block)
        , m_role(role)
        , m_stats(stats)
    {}
    bool onLinearInput(int block, WeightRole role, const float *x, std::int64_t rows, std::int64_t) override
    {
        if (block == m_block && role == m_role) {
            m_stats.add(x, rows);
            return false; // the rest of the block is not needed for this input
        }
        return true;
    }

private:
    int m_block;
    WeightRole m_role;
    InputStatistics &m_stats;
};

// Captures one input (LinearGate or LinearDown) of every expert of a MoE block in one pass, each
// from the tokens routed to that expert; stops after the last expert wanted.
class ExpertCaptureHook final : public LinearInputHook
{
public:
    ExpertCaptureHook(int block, WeightRole role, std::map<int, InputStatistics *> stats)
        : m_block(block)
        , m_role(role)
        , m_stats(std::move(stats))
    {}
    bool onLinearInput(int, WeightRole, const float *, std::int64_t, std::int64_t) override { return true; }
    bool onExpertInput(int block, int expert, WeightRole role, const float *x, std::int64_t rows, std::int64_t) override
    {
        if (block != m_block || role != m_role)
            return true;
        const auto it = m_stats.find(expert);
        if (it == m_stats.end())
            return true;
        if (rows > 0)
            it->second->add(x, rows);
        return expert != m_stats.rbegin()->first;
    }
    bool wantsAllTokens(int block, int expert) const override { return allTokens && block == m_block && m_stats.count(expert); }
    bool allTokens = false;

private:
    int m_block;
    WeightRole m_role;
    std::map<int, InputStatistics *> m_stats;
};

class Sink final : public ResultSink
{
public:
    Sink(Model &model, CompressionResult &result)
        : m_model(model)
        , m_result(result)
    {}
    void setQuantized(const LayerTarget &layer, QuantizedTensor weights, Execution execution) override
    {
        const QString tensor = layer.name + QStringLiteral(".weight");
        CompressedLayerReport report;
        report.name = layer.name;
        report.technique = layer.settings.technique;
        report.format = quantFormatName(weights.format, execution);
        report.bitsPerWeight = weights.bitsPerWeight();
        report.parameters = weights.rows * weights.cols;
        report.bytes = (weights.storageBits() + 7) / 8;
        // error against the weights as they were before this technique touched them
        const MatrixView before = m_model.weight(tensor);
        double num = 0, den = 0;
        for (std::int64_t r = 0; r < weights.rows; ++r)
            for (std::int64_t c = 0; c < weights.cols; ++c) {
                const double w = before.data()[r * weights.cols + c];
                const double d = w - weights.value(r, c);
                num += d * d;
                den += w * w;
            }
        report.relativeError = den > 0 ? num / den : 0.0;
        if (auto ok = m_model.setQuantized(tensor, std::move(weights), execution); !ok)
            m_error = ok.error();
        report.sparsity = sparsityOf(tensor);
        if (layer.settings.targetSparsity() > 0.0 && report.sparsity > 0.0) // pruned and quantized (SparseGPT)
            report.pattern = layer.settings.pattern.name();
        m_result.layers.push_back(report);
    }
    void setPruned(const LayerTarget &layer, std::span<const float> weights) override
    {
        const QString tensor = layer.name + QStringLiteral(".weight");
        const MatrixView before = m_model.weight(tensor);
        if (before.empty() || static_cast<std::int64_t>(weights.size()) != before.rows * before.cols) {
            m_error = fail(ErrorCode::Internal, QStringLiteral("pruned weights of the wrong size")).forLayer(layer.name);
            return;
        }
        CompressedLayerReport report;
        report.name = layer.name;
        report.technique = layer.settings.technique;
        report.pattern = layer.settings.pattern.name();
        report.parameters = before.rows * before.cols;
        double num = 0, den = 0;
        for (std::size_t i = 0; i < weights.size(); ++i) {
            const double w = before.data()[i];
            const double d = w - weights[i];
            num += d * d;
            den += w * w;
        }
        report.relativeError = den > 0 ? num / den : 0.0;
        if (auto ok = m_model.setPruned(tensor, weights); !ok) {
            m_error = ok.error();
            return;
        }
        if (const WeightInfo *w = info(tensor)) {
            report.bytes = w->storedBytes;
            report.bitsPerWeight = w->bitsPerWeight;
            report.format = w->format + QStringLiteral(" ") + report.pattern;
        }
        report.sparsity = sparsityOf(tensor);
        m_result.layers.push_back(report);
    }
    void markModified(const QString &tensorName) override { m_result.modifiedTensors.insert(tensorName); }
    std::optional<Error> m_error;

private:
    // The weight's entry by name, through an index built once (MoE models have thousands of
    // layers; a scan per layer would be quadratic). The index is checked on use and rebuilt if
    // the model's weight list changed.
    const WeightInfo *info(const QString &tensor) const
    {
        const std::vector<WeightInfo> &ws = m_model.weights();
        for (int attempt = 0; attempt < 2; ++attempt) {
            if (m_index.isEmpty() || attempt == 1) {
                m_index.clear();
                for (std::size_t i = 0; i < ws.size(); ++i)
                    m_index.insert(ws[i].name, i);
            }
            const auto it = m_index.constFind(tensor);
            if (it != m_index.cend() && *it < ws.size() && ws[*it].name == tensor)
                return &ws[*it];
        }
        return nullptr;
    }
    double sparsityOf(const QString &tensor) const
    {
        const WeightInfo *w = info(tensor);
        return w ? w->sparsity : 0.0;
    }

    mutable QHash<QString, std::size_t> m_index;

    Model &m_model;
    CompressionResult &m_result;
};

// The calibration hidden states: one span per sequence, in memory or in a mapped temporary file
// (removed when the store goes).
struct ActivationStore
{
    std::vector<std::span<float>> sequences;
    std::vector<float> memory;
    std::unique_ptr<QTemporaryFile> file;

    Expected<void> init(const std::vector<std::int64_t> &lengths, bool spill, const QString &dir)
    {
        std::int64_t total = 0;
        for (auto n : lengths)
            total += n;
        float *base = nullptr;
        if (spill && total > 0) {
            file = std::make_unique<QTemporaryFile>(QDir(dir).filePath(QStringLiteral("bitsmith-activations-XXXXXX")));
            if (!file->open() || !file->resize(total * 4))
                return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot create the activation file: %1").arg(file->errorString()))
                                      .inFile(file->fileName())
                                      .withHint(QStringLiteral("check free disk space, or allow more memory (--max-memory)")));
            uchar *map = file->map(0, total * 4);
            if (!map)
                return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot map the activation file: %1").arg(file->errorString()))
                                      .inFile(file->fileName()));
            base = reinterpret_cast<float *>(map);
        } else {
            memory.assign(static_cast<std::size_t>(total), 0.0f);
            base = memory.data();
        }
        for (auto n : lengths) {
            sequences.emplace_back(base, static_cast<std::size_t>(n));
            base += n;
        }
        return {};
    }
};

struct Plan
{
    std::vector<ResolvedLayer> layers;
    std::map<QString, std::unique_ptr<Technique>> techniques; // fresh instances for this run
};

Expected<Plan> makePlan(const Recipe &recipe, const Model &model, const TechniqueRegistry &registry)
{
    auto layers = resolveRecipe(recipe, model, registry);
    if (!layers)
        return unexpected(layers.error());
    Plan plan;
    plan.layers = std::move(*layers);
    for (const ResolvedLayer &l : plan.layers) {
        if (plan.techniques.count(l.settings.technique))
            continue;
        auto t = registry.create(l.settings.technique);
        if (!t)
            return unexpected(t.error());
        plan.techniques.emplace(l.settings.technique, std::move(*t));
    }
    return plan;
}

// Bytes of the packed results of the recipe's layers (what a spill file takes out of memory).
std::int64_t packedResultBytes(const Model &source, const Recipe &recipe, const TechniqueRegistry &registry)
{
    auto plan = makePlan(recipe, source, registry);
    if (!plan)
        return 0;
    std::int64_t packed = 0;
    for (const ResolvedLayer &l : plan->layers)
        packed += l.rows * l.cols * std::max(1, l.settings.format.bits) / 8 + l.rows * l.cols / 16;
    return packed;
}

} // namespace

Expected<bool> recipeNeedsCalibration(const Recipe &recipe, const Model &model, const TechniqueRegistry &registry)
{
    auto plan = makePlan(recipe, model, registry);
    if (!plan)
        return unexpected(plan.error());
    for (const auto &[id, t] : plan->techniques)
        if (t->needsCalibration())
            return true;
    return false;
}

Expected<std::int64_t> estimateCompressionMemory(const Model &source, const Recipe &recipe, const TechniqueRegistry &registry,
                                                 const std::vector<std::vector<std::int32_t>> &calibration)
{
    auto plan = makePlan(recipe, source, registry);
    if (!plan)
        return unexpected(plan.error());
    const ModelConfig &cfg = source.config();
    bool needCalibration = false;
    for (const auto &[id, t] : plan->techniques)
        needCalibration = needCalibration || t->needsCalibration();
    // One block's targeted weights in f32 (+ a technique's copy of the largest one), the packed
    // results of all layers, and with calibration: the hidden states, one block's activations,
    // and the statistics of the widest input (two double matrices plus the technique's own).
    std::map<int, std::int64_t> blockParams;
    std::int64_t largest = 0, packed = 0, widest = 0;
    for (const ResolvedLayer &l : plan->layers) {
        blockParams[l.block] += l.rows * l.cols;
        largest = std::max(largest, l.rows * l.cols);
        widest = std::max(widest, l.cols);
    }
    packed = packedResultBytes(source, recipe, registry);
    std::int64_t block = 0;
    for (const auto &[b, n] : blockParams)
        block = std::max(block, n);
    std::int64_t need = 4 * (block + largest) + packed + (std::int64_t(64) << 20);
    if (needCalibration) {
        std::int64_t tokens = 0, longest = 0;
        for (const auto &seq : calibration) {
            tokens += static_cast<std::int64_t>(seq.size());
            longest = std::max<std::int64_t>(longest, static_cast<std::int64_t>(seq.size()));
        }
        need += tokens * cfg.hiddenSize * 4 * 2;
        need += longest * (cfg.intermediateSize * 3 + cfg.hiddenSize * 6) * 4 + longest * longest * cfg.numHeads * 4;
        need += 3 * widest * widest * 8;
    }
    return need;
}

Expected<CompressionResult> compressModel(const Model &source, const Recipe &recipe, const TechniqueRegistry &registry,
                                          const std::vector<std::vector<std::int32_t>> &calibration, Feedback *feedback,
                                          const CompressionOptions &options)
{
    QElapsedTimer timer;
    timer.start();
    auto plan = makePlan(recipe, source, registry);
    if (!plan)
        return unexpected(plan.error());
    bool needCalibration = false;
    for (const auto &[id, t] : plan->techniques)
        needCalibration = needCalibration || t->needsCalibration();
    if (needCalibration && calibration.empty())
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("the recipe's techniques need calibration data"))
                              .forParameter(QStringLiteral("calib"))
                              .withHint(QStringLiteral("give a calibration text with --calib FILE (or \"calibration\": "
                                                       "{\"text\": ...} in the recipe)")));

    CompressionResult result;
    result.recipe = recipe;
    // A working copy over the source's mapped weights: a block's tensors get f32 buffers while it
    // is compressed, and are then kept packed (or in their stored dtype, when pruned) and the f32
    // released, so the job holds one block in f32 at a time.
    result.model = source.workingCopy();
    Model &work = *result.model;
    const ModelConfig &cfg = work.config();
    if (!options.spillFile.isEmpty())
        if (auto ok = work.setSpillFile(options.spillFile); !ok)
            return unexpected(ok.error());
    // The calibration activations (one hidden state per token) stay in memory within the budget
    // (a quarter of --max-memory, or of what is available), else in a temporary file.
    std::int64_t activationBytes = 0;
    if (needCalibration)
        for (const auto &seq : calibration)
            activationBytes += static_cast<std::int64_t>(seq.size()) * cfg.hiddenSize * 4;
    const std::int64_t budget = options.maxMemory > 0 ? options.maxMemory : memoryStatus().available;
    const bool spillActivations = activationBytes > budget / 4;
    if (auto need = estimateCompressionMemory(source, recipe, registry, calibration); !need) {
        return unexpected(need.error());
    } else {
        const std::int64_t inMemory = *need - (spillActivations ? activationBytes : 0)
                                      - (options.spillFile.isEmpty() ? 0 : packedResultBytes(source, recipe, registry));
        if (auto ok = checkMemory(inMemory, QStringLiteral("compression"),
                                  QStringLiteral("use fewer or shorter calibration sequences (--calib-sequences, --calib-length), "
                                                 "or a machine with more memory"),
                                  options.maxMemory);
            !ok)
            return unexpected(ok.error());
    }
    // Eigen kernels read the working copy's weights on every call (through their slots), so they
    // see every edit the techniques make.
    Transformer tf(result.model, LinearBackend::Eigen);
    Sink sink(work, result);
    CallbackFeedback silent;
    Feedback &fb = feedback ? *feedback : silent;

    // Hidden states of every calibration sequence at the input of the current block.
    ActivationStore store;
    if (needCalibration) {
        std::vector<std::int64_t> lengths;
        for (const auto &seq : calibration)
            lengths.push_back(static_cast<std::int64_t>(seq.size()) * cfg.hiddenSize);
        const QString dir = options.tempFolder.isEmpty() ? QDir::tempPath() : options.tempFolder;
        if (auto ok = store.init(lengths, spillActivations, dir); !ok)
            return unexpected(ok.error());
        if (spillActivations)
            fb.log(QStringLiteral("calibration activations (%1) kept in a temporary file in %2").arg(formatBytes(activationBytes), dir));
    }
    std::vector<std::span<float>> &hidden = store.sequences;
    if (needCalibration) {
        std::size_t index = 0;
        for (const auto &seq : calibration) {
            if (seq.empty() || static_cast<int>(seq.size()) > cfg.maxPositions)
                return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("calibration sequences must have 1..%1 tokens").arg(cfg.maxPositions))
                                      .forParameter(QStringLiteral("calibration")));
            for (auto id : seq)
                if (id < 0 || id >= cfg.vocabSize)
                    return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("calibration token %1 outside the vocabulary").arg(id)));
            tf.embed(seq, hidden[index++].data());
            result.calibrationTokens += static_cast<std::int64_t>(seq.size());
        }
        result.calibrationSequences = static_cast<std::int64_t>(calibration.size());
    }
    auto runBlockOn = [&](int block, std::span<float> x, LinearInputHook *hook) {
        const auto t = static_cast<std::int64_t>(x.size()) / cfg.hiddenSize;
        KVCache cache = tf.makeCache(static_cast<int>(t));
        tf.runBlock(block, x.data(), t, cache, hook);
    };

    const WeightRole inputs[] = {WeightRole::LinearQ, WeightRole::LinearO, WeightRole::LinearGate, WeightRole::LinearDown};
    const double steps = cfg.numLayers * 4.0 + 1.0;
    int step = 0;
    for (int block = 0; block < cfg.numLayers; ++block) {
        const QString prefix = QStringLiteral("model.layers.%1.").arg(block);
        for (WeightRole input : inputs) {
            fb.setProgress(step++ / steps);
            if (fb.isCancelled())
                return unexpected(fail(ErrorCode::Cancelled, QStringLiteral("compression cancelled")));
            // The layers reading this input; on MoE layers one group per expert (each expert sees
            // only the tokens routed to it).
            std::map<int, LayerGroup> groups; // by expert, -1 for dense layers
            for (const ResolvedLayer &l : plan->layers) {
                if (l.block != block || inputOf(l.role) != input)
                    continue;
                LayerTarget t;
                t.name = l.name;
                t.role = l.role;
                t.block = l.block;
                t.weight = work.mutableWeight(l.tensor);
                t.rows = l.rows;
                t.cols = l.cols;
                t.bias = work.weight(l.name + QStringLiteral(".bias")).data();
                t.settings = l.settings;
                LayerGroup &group = groups[l.expert];
                group.block = block;
                group.input = input;
                group.layers.push_back(t);
            }
            if (groups.empty())
                continue;
            // Where scales on this input can be folded.
            auto producer = [&](InputProducer::Kind kind, const QString &name) {
                InputProducer p;
                p.kind = kind;
                p.name = name;
                const MatrixView v = work.weight(name);
                p.data = work.mutableWeight(name);
                p.rows = v.rows;
                p.cols = v.cols;
                p.compressed = work.quantizedLayer(name) != nullptr;
                if (kind == InputProducer::Kind::Norm)
                    p.offset = cfg.normOffset;
                return p;
            };
            for (auto &[expert, group] : groups) {
                if (expert >= 0) {
                    // an expert's gate/up input comes from the norm the router and every expert
                    // share: nothing to fold into; its down's input is its own up's output
                    if (input == WeightRole::LinearDown)
                        group.producer = producer(InputProducer::Kind::Linear, expertTensorName(cfg, block, expert, WeightRole::LinearUp));
                } else if (input == WeightRole::LinearQ) {
                    group.producer = producer(InputProducer::Kind::Norm, prefix + QStringLiteral("input_layernorm.weight"));
                } else if (input == WeightRole::LinearGate) {
                    group.producer = producer(InputProducer::Kind::Norm, prefix + (cfg.sandwichNorms ? QStringLiteral("pre_feedforward_layernorm.weight")
                                                                                                     : QStringLiteral("post_attention_layernorm.weight")));
                } else if (input == WeightRole::LinearDown) {
                    group.producer = producer(InputProducer::Kind::Linear, prefix + QStringLiteral("mlp.up_proj.weight"));
                } else if (cfg.numKvHeads == cfg.numHeads && !cfg.attentionBias) { // o's input channels are v's rows only without GQA
                    group.producer = producer(InputProducer::Kind::Linear, prefix + QStringLiteral("self_attn.v_proj.weight"));
                }
            }

            std::map<int, std::unique_ptr<InputStatistics>> stats;
            auto newStats = [&](int expert) {
                return std::make_unique<InputStatistics>(groups.at(expert).layers.front().cols, true, 4096, recipe.calibration.seed);
            };
            for (auto &[expert, group] : groups) {
                bool needs = false;
                for (const LayerTarget &t : group.layers)
                    needs = needs || plan->techniques.at(t.settings.technique)->needsCalibration();
                if (needs)
                    stats[expert] = newStats(expert);
            }
            if (!stats.empty()) {
                fb.setStatus(QStringLiteral("block %1: calibrating %2").arg(block).arg(QLatin1String(weightRoleName(input))));
                auto runHook = [&](LinearInputHook *hook) {
                    std::vector<float> x;
                    for (const auto &h : hidden) {
                        x.assign(h.begin(), h.end()); // the block runs in place; keep the input
                        runBlockOn(block, x, hook);
                    }
                };
                if (stats.count(-1)) {
                    CaptureHook hook(block, input, *stats.at(-1));
                    runHook(&hook);
                } else {
                    std::map<int, InputStatistics *> wanted;
                    for (auto &[expert, st] : stats)
                        wanted[expert] = st.get();
                    ExpertCaptureHook hook(block, input, std::move(wanted));
                    runHook(&hook);
                    // Experts the router starved of calibration tokens: their statistics come from
                    // every calibration token instead (as if all were routed to them), with a warning.
                    std::int64_t routed = 0;
                    for (auto &[expert, st] : stats)
                        routed += st->tokens();
                    const double mean = static_cast<double>(routed) / static_cast<double>(stats.size());
                    std::map<int, InputStatistics *> starved;
                    for (auto &[expert, st] : stats)
                        if (st->tokens() < 32 || static_cast<double>(st->tokens()) < 0.1 * mean) {
                            const QString w = QStringLiteral("block %1, expert %2 (%3): only %4 of %5 calibration tokens were routed to it "
                                                             "(mean %6 per expert); its statistics are taken from all calibration tokens instead. "
                                                             "Use more or more varied calibration text")
                                                  .arg(block)
                                                  .arg(expert)
                                                  .arg(QLatin1String(weightRoleName(input)))
                                                  .arg(st->tokens())
                                                  .arg(result.calibrationTokens)
                                                  .arg(mean, 0, 'f', 0);
                            result.warnings.push_back(w);
                            fb.log(QStringLiteral("warning: ") + w);
                            st = newStats(expert);
                            starved[expert] = st.get();
                        }
                    if (!starved.empty()) {
                        ExpertCaptureHook all(block, input, std::move(starved));
                        all.allTokens = true;
                        runHook(&all);
                    }
                }
                for (auto &[expert, st] : stats)
                    groups.at(expert).calibration = st.get();
            }
            fb.setStatus(QStringLiteral("block %1: compressing %2").arg(block).arg(QLatin1String(weightRoleName(input))));
            for (auto &[expert, group] : groups) {
                std::vector<QString> used;
                for (const LayerTarget &t : group.layers)
                    if (std::find(used.begin(), used.end(), t.settings.technique) == used.end())
                        used.push_back(t.settings.technique);
                for (const QString &id : used) {
                    TechniqueContext ctx{cfg, group, sink, fb};
                    if (auto ok = plan->techniques.at(id)->apply(ctx); !ok)
                        return unexpected(std::move(ok.error()).forLayer(ok.error().layer.isEmpty() ? group.layers.front().name : ok.error().layer));
                    if (sink.m_error)
                        return unexpected(*sink.m_error);
                }
            }
        }
        // move the calibration activations through the compressed block
        if (needCalibration)
            for (auto &h : hidden)
                runBlockOn(block, h, nullptr);
        // the block is done: keep its results packed / in their stored dtype, drop its f32
        for (const WeightInfo &w : work.weights())
            if (w.block == block) {
                work.finishEditing(w.name);
                work.releaseF32(w.name);
            }
    }

    // The head, when targeted: its input is the final norm's output.
    std::vector<LayerTarget> headTargets;
    for (const ResolvedLayer &l : plan->layers) {
        if (l.role != WeightRole::LmHead)
            continue;
        if (cfg.tieWordEmbeddings)
            return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("the head is tied to the embedding and cannot be quantized alone"))
                                  .forLayer(l.name)
                                  .withHint(QStringLiteral("leave lm_head out of the recipe for tied models")));
        LayerTarget t;
        t.name = l.name;
        t.role = l.role;
        t.weight = work.mutableWeight(l.tensor);
        t.rows = l.rows;
        t.cols = l.cols;
        t.settings = l.settings;
        headTargets.push_back(t);
    }
    if (!headTargets.empty()) {
        LayerGroup group;
        group.input = WeightRole::LmHead;
        group.layers = headTargets;
        std::unique_ptr<InputStatistics> stats;
        if (plan->techniques.at(group.layers.front().settings.technique)->needsCalibration()) {
            stats = std::make_unique<InputStatistics>(cfg.hiddenSize, true, 4096, recipe.calibration.seed);
            for (const auto &h : hidden) {
                const auto t = static_cast<std::int64_t>(h.size()) / cfg.hiddenSize;
                std::vector<float> xn(h.size());
                std::vector<float> weight(work.finalNorm().data(), work.finalNorm().data() + cfg.hiddenSize);
                for (float &v : weight)
                    v += cfg.normOffset; // Gemma's (1 + w)
                rmsNorm(h.data(), weight.data(), t, cfg.hiddenSize, static_cast<float>(cfg.rmsNormEps), xn.data());
                stats->add(xn.data(), t);
            }
            group.calibration = stats.get();
        }
        group.producer.kind = InputProducer::Kind::Norm;
        group.producer.name = QStringLiteral("model.norm.weight");
        group.producer.data = work.mutableWeight(group.producer.name);
        group.producer.cols = cfg.hiddenSize;
        group.producer.rows = 1;
        group.producer.offset = cfg.normOffset;
        TechniqueContext ctx{cfg, group, sink, fb};
        if (auto ok = plan->techniques.at(group.layers.front().settings.technique)->apply(ctx); !ok)
            return unexpected(ok.error());
        if (sink.m_error)
            return unexpected(*sink.m_error);
    }

    // Every targeted layer must have been compressed by its technique.
    for (const ResolvedLayer &l : plan->layers)
        if (!work.quantizedLayer(l.tensor) && !work.isPruned(l.tensor))
            return unexpected(fail(ErrorCode::Internal, QStringLiteral("technique '%1' did not compress this layer").arg(l.settings.technique))
                                  .forLayer(l.name)
                                  .withHint(QStringLiteral("the plugin's apply() must report every layer it is given")));
    fb.setProgress(1.0);
    result.seconds = static_cast<double>(timer.nsecsElapsed()) / 1e9;
    std::int64_t qParams = 0, qBytes = 0;
    for (const CompressedLayerReport &r : result.layers) {
        qParams += r.parameters;
        qBytes += r.bytes;
    }
    result.originalBytes = source.totalStoredBytes();
    result.compressedBytes = work.totalStoredBytes();
    result.effectiveBitsPerWeight = qParams ? 8.0 * static_cast<double>(qBytes) / static_cast<double>(qParams) : 0.0;
    result.modelBitsPerWeight = 8.0 * static_cast<double>(result.compressedBytes) / static_cast<double>(work.totalParameters());
    result.linearSparsity = work.linearSparsity();
    return result;
}

} // namespace bitsmith::core

// ---- the compressed folder ----------------------------------------------------------------

#include "core/kernels/packedweights.h"

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QSaveFile>

namespace bitsmith::core {

namespace {

Expected<void> writeFileAtomic(const QString &path, const QByteArray &bytes)
{
    QSaveFile f(path);
    if (!f.open(QIODevice::WriteOnly) || f.write(bytes) != bytes.size() || !f.commit())
        return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot write: %1").arg(f.errorString()))
                              .inFile(path)
                              .withHint(QStringLiteral("check free disk space and permissions")));
    return {};
}

QJsonObject reportJson(const CompressionResult &r, const Model &source)
{
    QJsonArray layers;
    for (const CompressedLayerReport &l : r.layers)
        layers.append(QJsonObject{{QStringLiteral("name"), l.name},
                                  {QStringLiteral("technique"), l.technique},
                                  {QStringLiteral("format"), l.format},
                                  {QStringLiteral("bits_per_weight"), l.bitsPerWeight},
                                  {QStringLiteral("parameters"), static_cast<double>(l.parameters)},
                                  {QStringLiteral("bytes"), static_cast<double>(l.bytes)},
                                  {QStringLiteral("relative_error"), l.relativeError},
                                  {QStringLiteral("sparsity"), l.sparsity},
                                  {QStringLiteral("pattern"), l.pattern}});
    return QJsonObject{{QStringLiteral("source"), source.folder()},
                       {QStringLiteral("source_weights_hash"), source.weightsHash()},
                       {QStringLiteral("original_bytes"), static_cast<double>(r.originalBytes)},
                       {QStringLiteral("compressed_bytes"), static_cast<double>(r.compressedBytes)},
                       {QStringLiteral("compression_ratio"),
                        r.compressedBytes ? static_cast<double>(r.originalBytes) / static_cast<double>(r.compressedBytes) : 0.0},
                       {QStringLiteral("effective_bpw"), r.effectiveBitsPerWeight},
                       {QStringLiteral("model_bpw"), r.modelBitsPerWeight},
                       {QStringLiteral("seconds"), r.seconds},
                       {QStringLiteral("sparsity"), r.linearSparsity},
                       {QStringLiteral("calibration_sequences"), static_cast<double>(r.calibrationSequences)},
                       {QStringLiteral("calibration_tokens"), static_cast<double>(r.calibrationTokens)},
                       {QStringLiteral("layers"), layers}};
}

} // namespace

QJsonObject compressionReportJson(const CompressionResult &result, const Model &source)
{
    return reportJson(result, source);
}

Expected<void> writeCompressedModel(const CompressionResult &result, const Model &source, const QString &outDir,
                                    Feedback *feedback)
{
    const Model &m = *result.model;
    const QDir srcDir(source.folder());
    auto staged = beginOutputFolder(outDir);
    if (!staged)
        return unexpected(staged.error());
    const QDir out(staged->tmpDir);

    // config.json: the source's, plus quantization_config describing every quantized layer.
    auto sourceConfig = readConfigJson(source.folder());
    if (!sourceConfig)
        return unexpected(sourceConfig.error());
    QJsonObject cfg = *sourceConfig;
    QJsonObject layers;
    std::map<QString, double> sparsity; // as computed while compressing: the loader need not read the codes
    for (const WeightInfo &w : m.weights())
        sparsity[w.name] = w.sparsity;
    for (const QuantizedLayer &q : m.quantizedLayers()) {
        const QString base = q.tensor.chopped(7); // without ".weight"
        QJsonObject layer{{QStringLiteral("bits"), q.format().bits},
                          {QStringLiteral("group_size"), q.format().groupSize},
                          {QStringLiteral("sym"), q.format().symmetric},
                          {QStringLiteral("act_order"), q.actOrder()},
                          {QStringLiteral("execution"), q.execution == Execution::W8A8 ? QStringLiteral("w8a8") : QStringLiteral("weight-only")}};
        if (const double sp = sparsity[q.tensor]; sp >= 0)
            layer.insert(QStringLiteral("sparsity"), sp);
        layers.insert(base, layer);
    }
    // Only when something is quantized: a pruned-only folder stays a plain Hugging Face checkpoint.
    if (!m.quantizedLayers().empty())
        cfg.insert(QStringLiteral("quantization_config"),
                   QJsonObject{{QStringLiteral("quant_method"), QStringLiteral("bitsmith")},
                               {QStringLiteral("format_version"), PackedWeights::kPackedLayoutVersion},
                               {QStringLiteral("layers"), layers}});
    if (auto ok = writeFileAtomic(out.filePath(QStringLiteral("config.json")), QJsonDocument(cfg).toJson()); !ok)
        return ok;

    // model.safetensors: tensors in the source's order, each produced when the writer reaches it
    // (packed codes straight from the packed layer, edited tensors from their current values).
    std::vector<TensorToWrite> tensors;
    auto produced = [&tensors](QString name, DType type, std::vector<std::int64_t> shape, std::size_t nbytes,
                               std::function<std::vector<std::byte>()> make) {
        TensorToWrite t{std::move(name), type, std::move(shape), {}, nbytes, {}};
        t.produce = [make = std::move(make)]() -> Expected<std::vector<std::byte>> { return make(); };
        tensors.push_back(std::move(t));
    };
    // The source's tensors, with a fused one (Phi-3's qkv_proj, gate_up_proj) as its parts: each
    // part is a layer of its own, compressed or not, and the folder holds the parts by name.
    struct Entry
    {
        QString name;
        DType dtype;
        std::vector<std::int64_t> shape;
        std::span<const std::byte> data;
        std::int64_t numel() const { return shape.size() == 2 ? shape[0] * shape[1] : shape.empty() ? 1 : shape[0]; }
    };
    std::vector<Entry> entries;
    for (const TensorRecord *rec : source.files().tensors()) {
        bool fused = false;
        for (const WeightInfo &w : source.weights())
            if (w.fusedName == rec->name) {
                fused = true;
                const std::size_t rowBytes = static_cast<std::size_t>(w.shape[1]) * dtypeSize(rec->dtype);
                entries.push_back({w.name, rec->dtype, w.shape,
                                   std::span<const std::byte>(rec->data + static_cast<std::size_t>(w.fusedRowOffset) * rowBytes,
                                                              static_cast<std::size_t>(w.shape[0]) * rowBytes)});
            }
        if (!fused)
            entries.push_back({rec->name, rec->dtype, rec->shape, std::span<const std::byte>(rec->data, rec->nbytes)});
    }
    for (const Entry &entry : entries) {
        const Entry *rec = &entry;
        const QuantizedLayer *q = m.quantizedLayer(rec->name);
        if (q) {
            const std::shared_ptr<const PackedWeights> packed = q->packed;
            const QString base = rec->name.chopped(7);
            const std::int64_t rows = packed->rows(), groups = packed->groupsPerRow();
            const auto codes = packed->packedCodes();
            tensors.push_back({base + QStringLiteral(".qweight"), DType::U8, {rows, packed->rowBytes()},
                               std::as_bytes(std::span<const std::uint8_t>(codes.data(), codes.size())), 0, {}});
            produced(base + QStringLiteral(".scales"), DType::F16, {rows, groups}, packed->scales().size() * 2, [packed] {
                std::vector<std::byte> scales(packed->scales().size() * 2);
                for (std::size_t i = 0; i < packed->scales().size(); ++i) {
                    const std::uint16_t h = floatToHalf(packed->scales()[i]);
                    std::memcpy(scales.data() + 2 * i, &h, 2);
                }
                return scales;
            });
            if (!packed->format().symmetric)
                produced(base + QStringLiteral(".qzeros"), DType::U8, {rows, groups}, packed->zeros().size(), [packed] {
                    std::vector<std::byte> zeros(packed->zeros().size());
                    for (std::size_t i = 0; i < zeros.size(); ++i)
                        zeros[i] = static_cast<std::byte>(static_cast<std::uint8_t>(packed->zeros()[i]));
                    return zeros;
                });
            if (packed->actOrder()) {
                const auto &gi = packed->groupIndex();
                tensors.push_back({base + QStringLiteral(".g_idx"), DType::I32, {static_cast<std::int64_t>(gi.size())},
                                   std::as_bytes(std::span<const std::int32_t>(gi.data(), gi.size())), 0, {}});
            }
            continue;
        }
        const bool modified = result.modifiedTensors.count(rec->name) > 0;
        if (modified || m.isPruned(rec->name)) {
            // Pruned: in the stored dtype (Model::setPruned rounded the values to it, so this is
            // exact; other float types as f32). Modified (smoothing): f32.
            const DType type = !modified && (rec->dtype == DType::BF16 || rec->dtype == DType::F16) ? rec->dtype : DType::F32;
            const std::int64_t n = std::max<std::int64_t>(1, rec->numel());
            produced(rec->name, type, rec->shape, static_cast<std::size_t>(n) * dtypeSize(type),
                     [&m, name = rec->name, type] { return m.weight(name).toBytes(type); });
            continue;
        }
        tensors.push_back({rec->name, rec->dtype, rec->shape, rec->data, 0, {}});
    }
    if (auto ok = writeSafetensorsSharded(staged->tmpDir, tensors, kDefaultShardBytes,
                                          {{QStringLiteral("format"), QStringLiteral("pt")},
                                           {QStringLiteral("bitsmith"), QStringLiteral("compressed")}},
                                          feedback);
        !ok)
        return unexpected(ok.error());

    for (const char *name : {"tokenizer.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json"}) {
        const QString src = srcDir.filePath(QLatin1String(name));
        if (QFileInfo::exists(src) && !QFile::copy(src, out.filePath(QLatin1String(name))))
            return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot copy %1").arg(QLatin1String(name))).inFile(src));
    }
    Recipe recipe = result.recipe;
    recipe.modelArchitecture = source.config().architectureName;
    recipe.modelWeightsHash = source.weightsHash();
    if (auto ok = recipe.save(out.filePath(QStringLiteral("recipe.json"))); !ok)
        return ok;
    if (auto ok = writeFileAtomic(out.filePath(QStringLiteral("report.json")),
                                  QJsonDocument(reportJson(result, source)).toJson(QJsonDocument::Indented));
        !ok)
        return ok;

    // Swap into place: an existing output folder is replaced only once the new one is complete.
    return finishOutputFolder(*staged);
}

} // namespace bitsmith::core
