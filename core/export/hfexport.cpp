// hfexport.cpp: dense and GPTQ Hugging Face folders, and the recipe as llm-compressor YAML.
#include "hfexport.h"

#include "core/dtype.h"
#include "core/gguf/ggufmodel.h" // tokenizerJsonFor
#include "core/safetensors.h"

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QRegularExpression>
#include <QSaveFile>

#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <tuple>

namespace bitsmith::core {

namespace {

Expected<void> writeAtomic(const QString &path, const QByteArray &bytes)
{
    QSaveFile f(path);
    if (!f.open(QIODevice::WriteOnly) || f.write(bytes) != bytes.size() || !f.commit())
        return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot write: %1").arg(f.errorString())).inFile(path));
    return {};
}

QJsonObject synthesizedConfig(const ModelConfig &c)
{
    QJsonObject o;
    o.insert(QStringLiteral("architectures"), QJsonArray{c.architectureName});
    o.insert(QStringLiteral("model_type"), c.modelType);
    o.insert(QStringLiteral("vocab_size"), c.vocabSize);
    o.insert(QStringLiteral("hidden_size"), c.hiddenSize);
    o.insert(QStringLiteral("intermediate_size"), c.intermediateSize);
    o.insert(QStringLiteral("num_hidden_layers"), c.numLayers);
    o.insert(QStringLiteral("num_attention_heads"), c.numHeads);
    o.insert(QStringLiteral("num_key_value_heads"), c.numKvHeads);
    o.insert(QStringLiteral("head_dim"), c.headDim);
    o.insert(QStringLiteral("max_position_embeddings"), c.maxPositions);
    o.insert(QStringLiteral("rope_theta"), c.ropeTheta);
    o.insert(QStringLiteral("rms_norm_eps"), c.rmsNormEps);
    o.insert(QStringLiteral("tie_word_embeddings"), c.tieWordEmbeddings);
    o.insert(QStringLiteral("hidden_act"), QStringLiteral("silu"));
    if (c.architecture != Architecture::Qwen2)
        o.insert(QStringLiteral("attention_bias"), c.attentionBias);
    o.insert(QStringLiteral("mlp_bias"), c.mlpBias);
    if (c.bosTokenId >= 0)
        o.insert(QStringLiteral("bos_token_id"), c.bosTokenId);
    if (c.eosTokenId >= 0)
        o.insert(QStringLiteral("eos_token_id"), c.eosTokenId);
    return o;
}

// The source's config.json when it has one (without Bitsmith's quantization_config), else one
// written from the parsed config (GGUF sources).
QJsonObject baseConfig(const Model &model)
{
    if (QFileInfo(model.folder()).isDir()) {
        QFile f(QDir(model.folder()).filePath(QStringLiteral("config.json")));
        if (f.open(QIODevice::ReadOnly)) {
            QJsonObject o = QJsonDocument::fromJson(f.readAll()).object();
            o.remove(QStringLiteral("quantization_config"));
            if (!o.isEmpty())
                return o;
        }
    }
    return synthesizedConfig(model.config());
}

// Tokenizer and generation files beside the weights.
Expected<void> copyTokenizer(const Model &model, const QDir &out)
{
    const QByteArray tok = gguf::tokenizerJsonFor(model);
    if (!tok.isEmpty())
        if (auto ok = writeAtomic(out.filePath(QStringLiteral("tokenizer.json")), tok); !ok)
            return ok;
    if (QFileInfo(model.folder()).isDir())
        for (const char *name : {"tokenizer_config.json", "generation_config.json", "special_tokens_map.json"}) {
            QFile f(QDir(model.folder()).filePath(QLatin1String(name)));
            if (f.open(QIODevice::ReadOnly))
                if (auto ok = writeAtomic(out.filePath(QLatin1String(name)), f.readAll()); !ok)
                    return ok;
        }
    return {};
}

// Float bytes of a weight in its stored dtype (F32 for quantized layers and GGUF sources).
// The dtype a dense tensor is written in: its stored float dtype; F32 for quantized layers (their
// dequantized values exactly) and other stored types, or F16 for those when `halfForOthers`.
DType denseType(const Model &model, const WeightInfo &w, bool halfForOthers)
{
    DType t = w.storedType;
    if (model.quantizedLayer(w.name) || (t != DType::BF16 && t != DType::F16))
        t = halfForOthers && w.storedType != DType::F32 ? DType::F16 : DType::F32;
    return t;
}

// A dense tensor to write, produced when the writer reaches it: the stored bytes as they are when
// the model holds them in dtype t, else converted a chunk of rows at a time (never the whole
// tensor in f32).
TensorToWrite denseTensor(const Model &model, const WeightInfo &w, DType t)
{
    const MatrixView v = model.weight(w.name);
    const std::int64_t rows = v.rows, cols = v.cols;
    TensorToWrite out{w.name, t, w.shape, {}, static_cast<std::size_t>(rows * cols) * dtypeSize(t), {}};
    out.produce = [&model, name = w.name, t]() -> Expected<std::vector<std::byte>> { return model.weight(name).toBytes(t); };
    return out;
}

template<typename T>
std::vector<std::byte> asBytes(const std::vector<T> &v)
{
    std::vector<std::byte> b(v.size() * sizeof(T));
    std::memcpy(b.data(), v.data(), b.size());
    return b;
}

QString dtypeTorchName(DType t)
{
    return t == DType::BF16 ? QStringLiteral("bfloat16") : t == DType::F16 ? QStringLiteral("float16") : QStringLiteral("float32");
}

// Sets `bits` bits of value v at bit position pos of a little-endian stream of int32 words.
void putBits(std::uint32_t *words, std::int64_t pos, std::uint32_t v, int bits, std::int64_t stride)
{
    const std::int64_t word = pos >> 5;
    const int off = static_cast<int>(pos & 31);
    words[word * stride] |= v << off;
    if (off + bits > 32)
        words[(word + 1) * stride] |= v >> (32 - off);
}

QString escapeRegex(const QString &name)
{
    return QRegularExpression::escape(name);
}

} // namespace

std::vector<std::int32_t> packGptqWeight(const QuantizedTensor &q)
{
    const int bits = q.format.bits;
    const std::int64_t outF = q.rows, words = q.cols * bits / 32;
    std::vector<std::uint32_t> packed(static_cast<std::size_t>(words * outF), 0u);
    for (std::int64_t n = 0; n < outF; ++n)
        for (std::int64_t c = 0; c < q.cols; ++c)
            putBits(packed.data() + n, c * bits, q.codes[static_cast<std::size_t>(n * q.cols + c)], bits, outF);
    std::vector<std::int32_t> out(packed.size());
    std::memcpy(out.data(), packed.data(), packed.size() * 4);
    return out;
}

std::vector<std::int32_t> packGptqZeros(const QuantizedTensor &q, int zeroOffset)
{
    const int bits = q.format.bits;
    const std::int64_t groups = q.groupsPerRow(), words = q.rows * bits / 32;
    std::vector<std::uint32_t> packed(static_cast<std::size_t>(groups * words), 0u);
    const std::uint32_t mask = (1u << bits) - 1u;
    for (std::int64_t g = 0; g < groups; ++g)
        for (std::int64_t n = 0; n < q.rows; ++n) {
            const auto z = static_cast<std::uint32_t>(static_cast<int>(q.zero(n, g)) - zeroOffset) & mask;
            putBits(packed.data() + g * words, n * bits, z, bits, 1);
        }
    std::vector<std::int32_t> out(packed.size());
    std::memcpy(out.data(), packed.data(), packed.size() * 4);
    return out;
}

Expected<QJsonObject> exportHfDense(const Model &model, const QString &outDir, Feedback *feedback, std::int64_t maxShardBytes)
{
    if (!QDir().mkpath(outDir))
        return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot create the output folder")).inFile(outDir));
    const QDir out(outDir);
    std::vector<TensorToWrite> tensors;
    std::map<QString, int> dtypes;
    std::int64_t bytes = 0;
    const auto &weights = model.weights();
    for (std::size_t i = 0; i < weights.size(); ++i) {
        const WeightInfo &w = weights[i];
        if (!w.fusedName.isEmpty()) {
            // Parts of a fused tensor (Phi-3's qkv_proj, gate_up_proj) are written fused again, in
            // one dtype (f32 when the parts disagree, e.g. one of them quantized)
            std::vector<std::size_t> parts;
            for (std::size_t j = i; j < weights.size() && weights[j].fusedName == w.fusedName; ++j)
                parts.push_back(j);
            DType t = denseType(model, w, false);
            std::int64_t rows = 0;
            for (std::size_t j : parts) {
                if (denseType(model, weights[j], false) != t)
                    t = DType::F32;
                rows += weights[j].shape[0];
            }
            std::vector<QString> names;
            for (std::size_t j : parts)
                names.push_back(weights[j].name);
            const std::int64_t cols = w.shape[1];
            TensorToWrite fused{w.fusedName, t, {rows, cols}, {}, static_cast<std::size_t>(rows * cols) * dtypeSize(t), {}};
            fused.produce = [&model, names, t]() -> Expected<std::vector<std::byte>> {
                std::vector<std::byte> out;
                for (const QString &n : names) {
                    auto b = model.weight(n).toBytes(t);
                    out.insert(out.end(), b.begin(), b.end());
                }
                return out;
            };
            tensors.push_back(std::move(fused));
            bytes += static_cast<std::int64_t>(tensors.back().size());
            ++dtypes[QString::fromLatin1(dtypeName(t))];
            i = parts.back();
            continue;
        }
        const DType t = denseType(model, w, false);
        tensors.push_back(denseTensor(model, w, t));
        bytes += static_cast<std::int64_t>(tensors.back().size());
        ++dtypes[QString::fromLatin1(dtypeName(t))];
    }
    QJsonObject cfg = baseConfig(model);
    const DType main = dtypes.size() == 1 ? *dtypeFromName(dtypes.begin()->first) : DType::F32;
    cfg.insert(QStringLiteral("torch_dtype"), dtypeTorchName(main));
    cfg.insert(QStringLiteral("dtype"), dtypeTorchName(main));
    if (auto ok = writeAtomic(out.filePath(QStringLiteral("config.json")), QJsonDocument(cfg).toJson()); !ok)
        return unexpected(ok.error());
    const auto files = writeSafetensorsSharded(outDir, tensors, maxShardBytes, {{QStringLiteral("format"), QStringLiteral("pt")}}, feedback);
    if (!files)
        return unexpected(files.error());
    if (auto ok = copyTokenizer(model, out); !ok)
        return unexpected(ok.error());
    QJsonObject dt;
    for (const auto &[k, v] : dtypes)
        dt.insert(k, v);
    return QJsonObject{{QStringLiteral("format"), QStringLiteral("hf")},
                       {QStringLiteral("out"), outDir},
                       {QStringLiteral("tensors"), static_cast<int>(tensors.size())},
                       {QStringLiteral("weightBytes"), static_cast<double>(bytes)},
                       {QStringLiteral("files"), QJsonArray::fromStringList(*files)},
                       {QStringLiteral("dtypes"), dt}};
}

Expected<QJsonObject> exportHfGptq(const Model &model, const QString &outDir, Feedback *feedback, std::int64_t maxShardBytes)
{
    for (const WeightInfo &w : model.weights())
        if (!w.fusedName.isEmpty() && model.quantizedLayer(w.name))
            return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("GPTQ export of fused projections (%1) is not supported yet").arg(w.fusedName))
                                  .forTensor(w.name)
                                  .withHint(QStringLiteral("export --format hf (dense) or keep Bitsmith's compressed folder")));
    if (model.quantizedLayers().empty())
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("the model has no quantized layers"))
                              .inFile(model.folder())
                              .withHint(QStringLiteral("compress it first (bitsmith-cli compress), or use --format hf")));
    // Check every layer first, and pick the zero-point convention.
    bool anyZeroZero = false;
    using Key = std::tuple<int, int, bool, bool>; // bits, group_size, sym, desc_act
    std::map<Key, int> formatCounts;
    auto keyOf = [](const QuantizedLayer &q) {
        const QuantFormat &f = q.format();
        return Key{f.bits, f.groupSize > 0 ? f.groupSize : -1, f.symmetric, q.actOrder()};
    };
    for (const QuantizedLayer &q : model.quantizedLayers()) {
        const PackedWeights &t = *q.packed;
        const int b = t.format().bits;
        if (q.execution != Execution::WeightOnly || (b != 2 && b != 3 && b != 4 && b != 8))
            return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("GPTQ checkpoints hold 2, 3, 4 or 8-bit weight-only layers (this one: %1)")
                                                               .arg(quantFormatName(t.format(), q.execution)))
                                  .forTensor(q.tensor)
                                  .withHint(QStringLiteral("export it with --format gguf or --format hf instead")));
        if ((t.cols() * b) % 32 != 0 || (t.rows() * b) % 32 != 0)
            return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("%1 x %2 cannot be packed in int32 words of %3-bit codes")
                                                               .arg(t.rows())
                                                               .arg(t.cols())
                                                               .arg(b))
                                  .forTensor(q.tensor));
        if (!t.format().symmetric)
            for (float z : t.zeros())
                anyZeroZero = anyZeroZero || z == 0.0f;
        ++formatCounts[keyOf(q)];
    }
    const int zeroOffset = anyZeroZero ? 0 : 1;
    const QString checkpointFormat = anyZeroZero ? QStringLiteral("gptq_v2") : QStringLiteral("gptq");
    Key base = formatCounts.begin()->first;
    for (const auto &[k, n] : formatCounts)
        if (n > formatCounts[base])
            base = k;

    if (!QDir().mkpath(outDir))
        return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot create the output folder")).inFile(outDir));
    const QDir out(outDir);
    std::vector<TensorToWrite> tensors;
    QJsonObject dynamic;
    bool lmHeadQuantized = false;
    for (const WeightInfo &w : model.weights()) {
        if (feedback && feedback->isCancelled())
            return unexpected(fail(ErrorCode::Cancelled, QStringLiteral("export cancelled")));
        const QuantizedLayer *q = model.quantizedLayer(w.name);
        const QString module = w.name.chopped(7);
        if (!q) { // GGUF sources: fp16 as GPTQ checkpoints use
            tensors.push_back(denseTensor(model, w, denseType(model, w, true)));
            if (isLinearRole(w.role) && w.role != WeightRole::LmHead)
                dynamic.insert(QStringLiteral("-:^%1$").arg(escapeRegex(module)), QJsonObject{});
            continue;
        }
        // Each part is made from the packed layer when the writer reaches it.
        const std::shared_ptr<const PackedWeights> p = q->packed;
        const std::int64_t groups = p->groupsPerRow(), b = p->bits(), rows = p->rows(), cols = p->cols();
        auto part = [&](const QString &suffix, DType dtype, std::vector<std::int64_t> shape, std::size_t nbytes,
                        std::function<std::vector<std::byte>(const QuantizedTensor &)> make) {
            TensorToWrite t{module + suffix, dtype, std::move(shape), {}, nbytes, {}};
            t.produce = [p, make = std::move(make)]() -> Expected<std::vector<std::byte>> { return make(p->unpack()); };
            tensors.push_back(std::move(t));
        };
        part(QStringLiteral(".qweight"), DType::I32, {cols * b / 32, rows}, static_cast<std::size_t>(cols * b / 32 * rows * 4),
             [](const QuantizedTensor &t) { return asBytes(packGptqWeight(t)); });
        part(QStringLiteral(".qzeros"), DType::I32, {groups, rows * b / 32}, static_cast<std::size_t>(groups * rows * b / 32 * 4),
             [zeroOffset](const QuantizedTensor &t) { return asBytes(packGptqZeros(t, zeroOffset)); });
        part(QStringLiteral(".scales"), DType::F16, {groups, rows}, static_cast<std::size_t>(groups * rows * 2),
             [](const QuantizedTensor &t) {
                 const std::int64_t groups = t.groupsPerRow();
                 std::vector<std::uint16_t> scales(static_cast<std::size_t>(groups * t.rows));
                 for (std::int64_t g = 0; g < groups; ++g)
                     for (std::int64_t n = 0; n < t.rows; ++n)
                         scales[static_cast<std::size_t>(g * t.rows + n)] = floatToHalf(t.scale(n, g));
                 return asBytes(scales);
             });
        part(QStringLiteral(".g_idx"), DType::I32, {cols}, static_cast<std::size_t>(cols * 4), [](const QuantizedTensor &t) {
            std::vector<std::int32_t> gidx(static_cast<std::size_t>(t.cols));
            for (std::int64_t c = 0; c < t.cols; ++c)
                gidx[static_cast<std::size_t>(c)] = static_cast<std::int32_t>(t.groupOf(c));
            return asBytes(gidx);
        });
        if (w.role == WeightRole::LmHead)
            lmHeadQuantized = true;
        const Key k = keyOf(*q);
        if (k != base)
            dynamic.insert(QStringLiteral("+:^%1$").arg(escapeRegex(module)),
                           QJsonObject{{QStringLiteral("bits"), std::get<0>(k)},
                                       {QStringLiteral("group_size"), std::get<1>(k)},
                                       {QStringLiteral("sym"), std::get<2>(k)},
                                       {QStringLiteral("desc_act"), std::get<3>(k)}});
    }
    QJsonObject qc{{QStringLiteral("quant_method"), QStringLiteral("gptq")},
                   {QStringLiteral("bits"), std::get<0>(base)},
                   {QStringLiteral("group_size"), std::get<1>(base)},
                   {QStringLiteral("sym"), std::get<2>(base)},
                   {QStringLiteral("desc_act"), std::get<3>(base)},
                   {QStringLiteral("static_groups"), false},
                   {QStringLiteral("true_sequential"), true},
                   {QStringLiteral("checkpoint_format"), checkpointFormat},
                   {QStringLiteral("lm_head"), lmHeadQuantized},
                   {QStringLiteral("quantizer"), QStringLiteral("bitsmith")}};
    if (!dynamic.isEmpty())
        qc.insert(QStringLiteral("dynamic"), dynamic);
    QJsonObject cfg = baseConfig(model);
    cfg.insert(QStringLiteral("quantization_config"), qc);
    cfg.insert(QStringLiteral("torch_dtype"), QStringLiteral("float16"));
    if (auto ok = writeAtomic(out.filePath(QStringLiteral("config.json")), QJsonDocument(cfg).toJson()); !ok)
        return unexpected(ok.error());
    if (auto ok = writeSafetensorsSharded(outDir, tensors, maxShardBytes, {{QStringLiteral("format"), QStringLiteral("pt")}}, feedback); !ok)
        return unexpected(ok.error());
    if (auto ok = copyTokenizer(model, out); !ok)
        return unexpected(ok.error());
    return QJsonObject{{QStringLiteral("format"), QStringLiteral("hf-gptq")},
                       {QStringLiteral("out"), outDir},
                       {QStringLiteral("checkpoint_format"), checkpointFormat},
                       {QStringLiteral("quantized_layers"), static_cast<int>(model.quantizedLayers().size())},
                       {QStringLiteral("dynamic_entries"), dynamic.size()}};
}

QByteArray recipeToYaml(const Recipe &r)
{
    auto modifierOf = [](const QString &technique) {
        if (technique == QLatin1String("gptq"))
            return QStringLiteral("GPTQModifier");
        if (technique == QLatin1String("awq"))
            return QStringLiteral("AWQModifier");
        if (technique == QLatin1String("smoothquant"))
            return QStringLiteral("SmoothQuantModifier");
        return QStringLiteral("QuantizationModifier"); // rtn and others: plain round-to-nearest
    };
    auto strategy = [](int g) {
        return g > 0 ? QStringLiteral("group") : g == 0 ? QStringLiteral("channel") : QStringLiteral("tensor");
    };
    auto target = [](const RecipeEntry &e) {
        if (!e.regex.isEmpty())
            return QStringLiteral("re:^%1$").arg(e.regex);
        if (!e.match.isEmpty())
            return QStringLiteral("re:^%1$").arg(QRegularExpression::wildcardToRegularExpression(e.match, QRegularExpression::UnanchoredWildcardConversion));
        return QStringLiteral("re:^%1$").arg(QRegularExpression::escape(e.name));
    };
    auto quote = [](const QString &s) { return QStringLiteral("'%1'").arg(QString(s).replace(QLatin1Char('\''), QLatin1String("''"))); };
    struct Group
    {
        QStringList targets;
        QuantFormat format;
        QVariantMap parameters;
    };
    std::map<QString, std::vector<Group>> modifiers; // modifier -> groups, in recipe order
    QStringList ignore{QStringLiteral("lm_head")};
    modifiers[modifierOf(r.defaultTechnique)].push_back({{QStringLiteral("Linear")}, r.defaultFormat, r.defaultParameters});
    for (const RecipeEntry &e : r.layers) {
        if (e.skip) {
            ignore << target(e);
            continue;
        }
        Group g{{target(e)}, r.defaultFormat, r.defaultParameters};
        if (e.bits)
            g.format.bits = *e.bits;
        if (e.groupSize)
            g.format.groupSize = *e.groupSize;
        if (e.symmetric)
            g.format.symmetric = *e.symmetric;
        for (auto it = e.parameters.begin(); it != e.parameters.end(); ++it)
            g.parameters.insert(it.key(), it.value());
        if (e.name == QLatin1String("lm_head") || e.match == QLatin1String("lm_head"))
            ignore.removeAll(QStringLiteral("lm_head"));
        modifiers[modifierOf(e.technique.value_or(r.defaultTechnique))].push_back(g);
    }
    QByteArray y;
    y += "# Exported by Bitsmith from a recipe (schemaVersion " + QByteArray::number(r.schemaVersion) + ") in the shape of\n"
         "# llm-compressor recipes. Bitsmith applies layer entries in order, later ones overriding\n"
         "# earlier ones; llm-compressor prefers the most specific target (names and regexes over\n"
         "# 'Linear'), which gives the same result for this recipe's entries.\n";
    if (!r.modelArchitecture.isEmpty())
        y += "# model: " + r.modelArchitecture.toUtf8() + " " + r.modelWeightsHash.toUtf8() + "\n";
    y += "quant_stage:\n  quant_modifiers:\n";
    for (const auto &[modifier, groups] : modifiers) {
        y += "    " + modifier.toUtf8() + ":\n";
        y += "      ignore: [";
        QStringList quoted;
        for (const QString &i : ignore)
            quoted << quote(i);
        y += quoted.join(QStringLiteral(", ")).toUtf8() + "]\n";
        if (modifier == QLatin1String("GPTQModifier") || modifier == QLatin1String("AWQModifier")) {
            const QVariantMap &p = groups.front().parameters;
            if (p.contains(QStringLiteral("dampening")))
                y += "      dampening_frac: " + QByteArray::number(p.value(QStringLiteral("dampening")).toDouble()) + "\n";
        }
        y += "      config_groups:\n";
        for (std::size_t i = 0; i < groups.size(); ++i) {
            const Group &g = groups[i];
            y += "        group_" + QByteArray::number(static_cast<int>(i)) + ":\n";
            QStringList t;
            for (const QString &s : g.targets)
                t << quote(s);
            y += "          targets: [" + t.join(QStringLiteral(", ")).toUtf8() + "]\n";
            y += "          weights:\n";
            y += "            num_bits: " + QByteArray::number(g.format.bits) + "\n";
            y += "            type: int\n";
            y += "            symmetric: " + QByteArray(g.format.symmetric ? "true" : "false") + "\n";
            y += "            strategy: " + strategy(g.format.groupSize).toUtf8() + "\n";
            if (g.format.groupSize > 0)
                y += "            group_size: " + QByteArray::number(g.format.groupSize) + "\n";
            if (g.parameters.value(QStringLiteral("actOrder")).toBool())
                y += "            actorder: group\n";
            if (modifier == QLatin1String("SmoothQuantModifier"))
                y += "          input_activations:\n            num_bits: 8\n            type: int\n            symmetric: true\n"
                     "            strategy: token\n            dynamic: true\n";
        }
    }
    return y;
}

} // namespace bitsmith::core
