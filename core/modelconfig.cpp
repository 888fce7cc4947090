// modelconfig.cpp: config.json parsing. Accepts both the transformers 4.x layout (rope_theta at
// the top level) and the 5.x one (rope_parameters: {rope_type, rope_theta}).
#include "modelconfig.h"

#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>

namespace bitsmith::core {

QString architectureName(Architecture a)
{
    switch (a) {
    case Architecture::Llama: return QStringLiteral("LlamaForCausalLM");
    case Architecture::Mistral: return QStringLiteral("MistralForCausalLM");
    case Architecture::Qwen2: return QStringLiteral("Qwen2ForCausalLM");
    }
    return {};
}

Expected<ModelConfig> ModelConfig::fromFile(const QString &path)
{
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly))
        return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot open config: %1").arg(f.errorString()))
                              .inFile(path)
                              .withHint(QStringLiteral("a model folder needs a Hugging Face config.json")));
    return fromJson(f.readAll(), path);
}

Expected<ModelConfig> ModelConfig::fromJson(const QByteArray &json, const QString &path)
{
    QJsonParseError perr;
    const QJsonDocument doc = QJsonDocument::fromJson(json, &perr);
    if (perr.error != QJsonParseError::NoError || !doc.isObject())
        return unexpected(fail(ErrorCode::Format, QStringLiteral("config is not valid JSON (%1 at offset %2)")
                                                      .arg(perr.errorString())
                                                      .arg(perr.offset))
                              .inFile(path)
                              .withHint(QStringLiteral("fix or re-download config.json; it must be a JSON object")));
    const QJsonObject o = doc.object();
    ModelConfig c;
    const QJsonArray archs = o.value(QLatin1String("architectures")).toArray();
    c.architectureName = archs.isEmpty() ? QString() : archs.first().toString();
    c.modelType = o.value(QLatin1String("model_type")).toString();
    if (c.architectureName == QLatin1String("LlamaForCausalLM") || (c.architectureName.isEmpty() && c.modelType == QLatin1String("llama")))
        c.architecture = Architecture::Llama;
    else if (c.architectureName == QLatin1String("MistralForCausalLM") || (c.architectureName.isEmpty() && c.modelType == QLatin1String("mistral")))
        c.architecture = Architecture::Mistral;
    else if (c.architectureName == QLatin1String("Qwen2ForCausalLM") || (c.architectureName.isEmpty() && c.modelType == QLatin1String("qwen2")))
        c.architecture = Architecture::Qwen2;
    else
        return unexpected(fail(ErrorCode::Unsupported,
                               QStringLiteral("unsupported architecture '%1'")
                                   .arg(c.architectureName.isEmpty() ? c.modelType : c.architectureName))
                              .inFile(path)
                              .forParameter(QStringLiteral("architectures"))
                              .withHint(QStringLiteral("supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM")));
    if (c.architectureName.isEmpty())
        c.architectureName = bitsmith::core::architectureName(c.architecture);

    auto requireInt = [&](const char *key, int &out) -> Expected<void> {
        const QJsonValue v = o.value(QLatin1String(key));
        if (!v.isDouble() || v.toDouble() <= 0 || v.toDouble() != static_cast<double>(v.toInt()))
            return unexpected(fail(ErrorCode::Format, QStringLiteral("missing or invalid '%1' (a positive integer is required)")
                                                          .arg(QLatin1String(key)))
                                  .inFile(path)
                                  .forParameter(QLatin1String(key))
                                  .withHint(QStringLiteral("config.json must define the model's sizes")));
        out = v.toInt();
        return {};
    };
    for (auto [key, field] : {std::pair{"vocab_size", &c.vocabSize}, {"hidden_size", &c.hiddenSize},
                              {"intermediate_size", &c.intermediateSize}, {"num_hidden_layers", &c.numLayers},
                              {"num_attention_heads", &c.numHeads}}) {
        if (auto r = requireInt(key, *field); !r)
            return unexpected(r.error());
    }
    c.numKvHeads = o.value(QLatin1String("num_key_value_heads")).toInt(c.numHeads);
    c.headDim = o.value(QLatin1String("head_dim")).isDouble() ? o.value(QLatin1String("head_dim")).toInt()
                                                              : c.hiddenSize / c.numHeads;
    c.maxPositions = o.value(QLatin1String("max_position_embeddings")).toInt(2048);
    c.rmsNormEps = o.value(QLatin1String("rms_norm_eps")).toDouble(1e-6);
    c.tieWordEmbeddings = o.value(QLatin1String("tie_word_embeddings")).toBool(false);
    c.torchDtype = o.value(QLatin1String("torch_dtype")).toString(o.value(QLatin1String("dtype")).toString());

    // Rope: top-level rope_theta (4.x) or rope_parameters (5.x); scaling variants are not supported.
    QJsonValue scaling = o.value(QLatin1String("rope_scaling"));
    const QJsonObject ropeParams = o.value(QLatin1String("rope_parameters")).toObject();
    c.ropeTheta = o.value(QLatin1String("rope_theta")).toDouble(ropeParams.value(QLatin1String("rope_theta")).toDouble(10000.0));
    QString ropeType;
    if (scaling.isObject())
        ropeType = scaling.toObject().value(QLatin1String("rope_type")).toString(scaling.toObject().value(QLatin1String("type")).toString());
    else if (!ropeParams.isEmpty())
        ropeType = ropeParams.value(QLatin1String("rope_type")).toString(QStringLiteral("default"));
    if (!ropeType.isEmpty() && ropeType != QLatin1String("default"))
        return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("unsupported rope scaling '%1'").arg(ropeType))
                              .inFile(path)
                              .forParameter(QStringLiteral("rope_scaling"))
                              .withHint(QStringLiteral("only the default rotary embedding is implemented")));

    const QString act = o.value(QLatin1String("hidden_act")).toString(QStringLiteral("silu"));
    if (act != QLatin1String("silu"))
        return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("unsupported activation '%1'").arg(act))
                              .inFile(path)
                              .forParameter(QStringLiteral("hidden_act"))
                              .withHint(QStringLiteral("the Llama family uses silu (SwiGLU)")));
    if (c.architecture == Architecture::Qwen2) {
        c.attentionBias = true; // Qwen2 always has q/k/v biases and no o_proj bias
    } else if (c.architecture == Architecture::Llama) {
        c.attentionBias = o.value(QLatin1String("attention_bias")).toBool(false);
        c.outputBias = c.attentionBias;
        c.mlpBias = o.value(QLatin1String("mlp_bias")).toBool(false);
    }
    const QJsonValue sw = o.value(QLatin1String("sliding_window"));
    const bool useSw = c.architecture == Architecture::Mistral
                       || o.value(QLatin1String("use_sliding_window")).toBool(false);
    if (useSw && sw.isDouble() && sw.toInt() > 0)
        c.slidingWindow = sw.toInt();

    auto firstId = [](const QJsonValue &v) {
        if (v.isArray())
            return v.toArray().isEmpty() ? -1 : v.toArray().first().toInt(-1);
        return v.isDouble() ? v.toInt() : -1;
    };
    c.bosTokenId = firstId(o.value(QLatin1String("bos_token_id")));
    c.eosTokenId = firstId(o.value(QLatin1String("eos_token_id")));

    auto invalid = [&](const QString &msg, const char *key) {
        return unexpected(fail(ErrorCode::Format, msg)
                              .inFile(path)
                              .forParameter(QLatin1String(key))
                              .withHint(QStringLiteral("config.json is inconsistent; compare it with the original checkpoint's")));
    };
    if (c.numKvHeads <= 0 || c.numHeads % c.numKvHeads != 0)
        return invalid(QStringLiteral("num_attention_heads (%1) must be a multiple of num_key_value_heads (%2)")
                           .arg(c.numHeads)
                           .arg(c.numKvHeads),
                       "num_key_value_heads");
    if (c.headDim <= 0 || c.headDim % 2 != 0)
        return invalid(QStringLiteral("head_dim %1 must be positive and even").arg(c.headDim), "head_dim");
    if (c.maxPositions <= 0)
        return invalid(QStringLiteral("max_position_embeddings must be positive"), "max_position_embeddings");
    if (!(c.rmsNormEps > 0))
        return invalid(QStringLiteral("rms_norm_eps must be positive"), "rms_norm_eps");
    return c;
}

qint64 ModelConfig::parameterCount() const
{
    const qint64 h = hiddenSize, i = intermediateSize, v = vocabSize;
    const qint64 q = static_cast<qint64>(numHeads) * headDim, kv = static_cast<qint64>(numKvHeads) * headDim;
    qint64 block = h * q + 2 * h * kv + q * h + 3 * h * i + 2 * h;
    if (attentionBias)
        block += q + 2 * kv;
    if (outputBias)
        block += h;
    if (mlpBias)
        block += 2 * i + h;
    return v * h * (tieWordEmbeddings ? 1 : 2) + numLayers * block + h;
}

} // namespace bitsmith::core
