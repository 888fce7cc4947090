// model.cpp: binding checkpoint tensors to the Llama-family layout, with shape checks.
#include "model.h"

#include <QCoreApplication>
#include <QDir>
#include <QFileInfo>

#include <cstring>
#include <set>

namespace bitsmith::core {

const char *weightRoleName(WeightRole r)
{
    switch (r) {
    case WeightRole::Embedding: return "embedding";
    case WeightRole::AttnNorm: return "attn.norm";
    case WeightRole::LinearQ: return "attn.q";
    case WeightRole::LinearK: return "attn.k";
    case WeightRole::LinearV: return "attn.v";
    case WeightRole::LinearO: return "attn.o";
    case WeightRole::BiasQ: return "attn.q.bias";
    case WeightRole::BiasK: return "attn.k.bias";
    case WeightRole::BiasV: return "attn.v.bias";
    case WeightRole::BiasO: return "attn.o.bias";
    case WeightRole::MlpNorm: return "mlp.norm";
    case WeightRole::LinearGate: return "mlp.gate";
    case WeightRole::LinearUp: return "mlp.up";
    case WeightRole::LinearDown: return "mlp.down";
    case WeightRole::BiasGate: return "mlp.gate.bias";
    case WeightRole::BiasUp: return "mlp.up.bias";
    case WeightRole::BiasDown: return "mlp.down.bias";
    case WeightRole::FinalNorm: return "final.norm";
    case WeightRole::LmHead: return "lm_head";
    }
    return "?";
}

bool isLinearRole(WeightRole r)
{
    switch (r) {
    case WeightRole::LinearQ: case WeightRole::LinearK: case WeightRole::LinearV: case WeightRole::LinearO:
    case WeightRole::LinearGate: case WeightRole::LinearUp: case WeightRole::LinearDown: case WeightRole::LmHead:
        return true;
    default:
        return false;
    }
}

QString Model::defaultModelFolder()
{
    // Installed layout: <prefix>/bin/bitsmith-cli and <prefix>/share/bitsmith/models/default.
    // Build tree: the source tree's resources/ (compiled in).
    QStringList candidates;
    if (const QByteArray env = qgetenv("BITSMITH_DEFAULT_MODEL"); !env.isEmpty())
        candidates << QString::fromLocal8Bit(env);
    if (QCoreApplication::instance()) {
        const QString appDir = QCoreApplication::applicationDirPath();
        candidates << appDir + QStringLiteral("/../share/bitsmith/models/default");
    }
    candidates << QStringLiteral(BITSMITH_RESOURCES_DIR "/models/default");
    for (const QString &c : candidates)
        if (QFileInfo::exists(c + QStringLiteral("/config.json")))
            return QDir(c).absolutePath();
    return QStringLiteral(BITSMITH_RESOURCES_DIR "/models/default");
}

QString Model::resolveFolder(const QString &folderOrName)
{
    if (folderOrName.isEmpty() || folderOrName == QLatin1String("default"))
        return defaultModelFolder();
    return folderOrName;
}

std::int64_t Model::totalParameters() const
{
    std::int64_t n = 0;
    for (const auto &w : m_weights)
        n += w.parameters;
    return n;
}

std::int64_t Model::totalStoredBytes() const
{
    std::int64_t n = 0;
    for (const auto &w : m_weights)
        n += w.storedBytes;
    return n;
}

MatrixView Model::weight(const QString &name) const
{
    for (const auto &[n, v] : m_views)
        if (n == name)
            return v;
    return {};
}

static QString shapeString(const std::vector<std::int64_t> &shape)
{
    QStringList parts;
    for (auto d : shape)
        parts << QString::number(d);
    return QLatin1Char('[') + parts.join(QStringLiteral(", ")) + QLatin1Char(']');
}

Expected<MatrixView> Model::bind(const QString &name, WeightRole role, int block, std::vector<std::int64_t> shape,
                                 bool optional)
{
    const TensorRecord *rec = m_files->find(name);
    if (!rec) {
        if (optional)
            return MatrixView{};
        return unexpected(fail(ErrorCode::Mismatch, QStringLiteral("missing tensor required by %1").arg(m_config.architectureName))
                              .inFile(m_folder)
                              .forTensor(name)
                              .withHint(QStringLiteral("the checkpoint does not match its config.json")));
    }
    if (rec->shape != shape)
        return unexpected(fail(ErrorCode::Mismatch, QStringLiteral("tensor has shape %1 but the config implies %2")
                                                        .arg(shapeString(rec->shape), shapeString(shape)))
                              .inFile(rec->file)
                              .forTensor(name)
                              .withHint(QStringLiteral("the checkpoint does not match its config.json")));
    if (!isFloatingPoint(rec->dtype))
        return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("weight has non-floating dtype %1").arg(QLatin1String(dtypeName(rec->dtype))))
                              .inFile(rec->file)
                              .forTensor(name));
    MatrixView view;
    view.rows = shape.size() == 2 ? shape[0] : 1;
    view.cols = shape.back();
    const auto count = static_cast<std::size_t>(rec->numel());
    if (rec->dtype == DType::F32 && reinterpret_cast<std::uintptr_t>(rec->data) % alignof(float) == 0) {
        view.data = reinterpret_cast<const float *>(rec->data); // zero-copy
    } else {
        auto buf = std::make_unique_for_overwrite<float[]>(count);
        convertToFloat(rec->dtype, rec->data, count, buf.get());
        view.data = buf.get();
        m_owned.push_back(std::move(buf));
    }
    WeightInfo info;
    info.name = name;
    info.role = role;
    info.block = block;
    info.shape = rec->shape;
    info.storedType = rec->dtype;
    info.parameters = rec->numel();
    info.storedBytes = static_cast<std::int64_t>(rec->nbytes);
    m_weights.push_back(std::move(info));
    m_views.emplace_back(name, view);
    return view;
}

Expected<std::shared_ptr<Model>> Model::load(const QString &folderOrName, Feedback *feedback)
{
    const QString folder = resolveFolder(folderOrName);
    if (!QFileInfo(folder).isDir())
        return unexpected(fail(ErrorCode::Io, QStringLiteral("model folder not found"))
                              .inFile(folder)
                              .withHint(QStringLiteral("give a Hugging Face model folder (config.json, model.safetensors, "
                                                       "tokenizer.json) or 'default' for the bundled model")));
    std::shared_ptr<Model> m(new Model);
    m->m_folder = QDir(folder).absolutePath();
    if (feedback)
        feedback->setStatus(QStringLiteral("reading config.json"));
    auto cfg = ModelConfig::fromFile(QDir(folder).filePath(QStringLiteral("config.json")));
    if (!cfg)
        return unexpected(cfg.error());
    m->m_config = *cfg;
    const ModelConfig &c = m->m_config;

    auto files = SafetensorsCollection::openFolder(folder);
    if (!files)
        return unexpected(files.error());
    m->m_files = *files;

    const QString tokPath = QDir(folder).filePath(QStringLiteral("tokenizer.json"));
    if (QFileInfo::exists(tokPath)) {
        if (feedback)
            feedback->setStatus(QStringLiteral("reading tokenizer.json"));
        auto tok = Tokenizer::fromFile(tokPath);
        if (!tok)
            return unexpected(tok.error());
        m->m_tokenizer = *tok;
    }

    const std::int64_t h = c.hiddenSize, inter = c.intermediateSize, v = c.vocabSize;
    const std::int64_t qDim = static_cast<std::int64_t>(c.numHeads) * c.headDim;
    const std::int64_t kvDim = static_cast<std::int64_t>(c.numKvHeads) * c.headDim;
    if (feedback)
        feedback->setStatus(QStringLiteral("binding weights"));
    auto emb = m->bind(QStringLiteral("model.embed_tokens.weight"), WeightRole::Embedding, -1, {v, h}, false);
    if (!emb)
        return unexpected(emb.error());
    m->m_embedding = *emb;
    m->m_blocks.resize(static_cast<std::size_t>(c.numLayers));
    for (int i = 0; i < c.numLayers; ++i) {
        if (feedback) {
            if (feedback->isCancelled())
                return unexpected(fail(ErrorCode::Cancelled, QStringLiteral("loading cancelled")).inFile(folder));
            feedback->setProgress(static_cast<double>(i) / c.numLayers);
        }
        const QString p = QStringLiteral("model.layers.%1.").arg(i);
        BlockWeights &b = m->m_blocks[static_cast<std::size_t>(i)];
        struct Spec
        {
            MatrixView *out;
            const char *suffix;
            WeightRole role;
            std::vector<std::int64_t> shape;
            bool present;
        } specs[] = {
            {&b.attnNorm, "input_layernorm.weight", WeightRole::AttnNorm, {h}, true},
            {&b.q, "self_attn.q_proj.weight", WeightRole::LinearQ, {qDim, h}, true},
            {&b.k, "self_attn.k_proj.weight", WeightRole::LinearK, {kvDim, h}, true},
            {&b.v, "self_attn.v_proj.weight", WeightRole::LinearV, {kvDim, h}, true},
            {&b.o, "self_attn.o_proj.weight", WeightRole::LinearO, {h, qDim}, true},
            {&b.qBias, "self_attn.q_proj.bias", WeightRole::BiasQ, {qDim}, c.attentionBias},
            {&b.kBias, "self_attn.k_proj.bias", WeightRole::BiasK, {kvDim}, c.attentionBias},
            {&b.vBias, "self_attn.v_proj.bias", WeightRole::BiasV, {kvDim}, c.attentionBias},
            {&b.oBias, "self_attn.o_proj.bias", WeightRole::BiasO, {h}, c.outputBias},
            {&b.mlpNorm, "post_attention_layernorm.weight", WeightRole::MlpNorm, {h}, true},
            {&b.gate, "mlp.gate_proj.weight", WeightRole::LinearGate, {inter, h}, true},
            {&b.up, "mlp.up_proj.weight", WeightRole::LinearUp, {inter, h}, true},
            {&b.down, "mlp.down_proj.weight", WeightRole::LinearDown, {h, inter}, true},
            {&b.gateBias, "mlp.gate_proj.bias", WeightRole::BiasGate, {inter}, c.mlpBias},
            {&b.upBias, "mlp.up_proj.bias", WeightRole::BiasUp, {inter}, c.mlpBias},
            {&b.downBias, "mlp.down_proj.bias", WeightRole::BiasDown, {h}, c.mlpBias},
        };
        for (auto &s : specs) {
            if (!s.present)
                continue;
            auto view = m->bind(p + QLatin1String(s.suffix), s.role, i, s.shape, false);
            if (!view)
                return unexpected(std::move(view.error()).forLayer(QStringLiteral("block %1").arg(i)));
            *s.out = *view;
        }
    }
    auto norm = m->bind(QStringLiteral("model.norm.weight"), WeightRole::FinalNorm, -1, {h}, false);
    if (!norm)
        return unexpected(norm.error());
    m->m_finalNorm = *norm;
    if (c.tieWordEmbeddings) {
        m->m_lmHead = m->m_embedding;
    } else {
        auto head = m->bind(QStringLiteral("lm_head.weight"), WeightRole::LmHead, -1, {v, h}, true);
        if (!head)
            return unexpected(head.error());
        if (head->empty()) // some exports omit lm_head when it equals the embedding
            return unexpected(fail(ErrorCode::Mismatch, QStringLiteral("lm_head.weight is missing and tie_word_embeddings is false"))
                                  .inFile(m->m_folder)
                                  .forTensor(QStringLiteral("lm_head.weight"))
                                  .withHint(QStringLiteral("set \"tie_word_embeddings\": true in config.json if the head shares the embedding")));
        m->m_lmHead = *head;
    }
    // Tensors the layout does not know are reported, not silently ignored (rotary caches are fine).
    std::set<QString> known;
    for (const auto &w : m->m_weights)
        known.insert(w.name);
    for (const TensorRecord *rec : m->m_files->tensors()) {
        if (known.count(rec->name) || rec->name.endsWith(QLatin1String("rotary_emb.inv_freq")))
            continue;
        if (c.tieWordEmbeddings && rec->name == QLatin1String("lm_head.weight"))
            continue;
        return unexpected(fail(ErrorCode::Mismatch, QStringLiteral("unexpected tensor for %1").arg(c.architectureName))
                              .inFile(rec->file)
                              .forTensor(rec->name)
                              .withHint(QStringLiteral("the checkpoint does not match its config.json (wrong architecture or layer count?)")));
    }
    if (feedback)
        feedback->setProgress(1.0);
    return m;
}

} // namespace bitsmith::core
