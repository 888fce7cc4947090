// modelconfig.cpp: config.json parsing. Accepts both the transformers 4.x layout (rope_theta at
// the top level) and the 5.x one (rope_parameters: {rope_type, rope_theta}).
#include "modelconfig.h"

#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>

#include <algorithm>
#include <cmath>

namespace bitsmith::core {

QString architectureName(Architecture a)
{
    switch (a) {
    case Architecture::Llama: return QStringLiteral("LlamaForCausalLM");
    case Architecture::Mistral: return QStringLiteral("MistralForCausalLM");
    case Architecture::Qwen2: return QStringLiteral("Qwen2ForCausalLM");
    case Architecture::Qwen3: return QStringLiteral("Qwen3ForCausalLM");
    case Architecture::Gemma2: return QStringLiteral("Gemma2ForCausalLM");
    case Architecture::Gemma3: return QStringLiteral("Gemma3ForCausalLM");
    case Architecture::Phi3: return QStringLiteral("Phi3ForCausalLM");
    case Architecture::Mixtral: return QStringLiteral("MixtralForCausalLM");
    case Architecture::Qwen3Moe: return QStringLiteral("Qwen3MoeForCausalLM");
    }
    return {};
}

namespace {

// Rope parameters as transformers' standardize_rope_params() reads them: rope_parameters (5.x)
// or rope_scaling (4.x), rope_theta from there or the top level, original_max_position_embeddings
// from the top level first (Phi-3 keeps it there), then the dict, then max_position_embeddings.
Expected<void> parseRope(const QJsonObject &o, ModelConfig &c, const QString &path)
{
    QJsonObject params = o.value(QLatin1String("rope_parameters")).toObject();
    QString where = QStringLiteral("rope_parameters");
    if (params.isEmpty()) {
        params = o.value(QLatin1String("rope_scaling")).toObject();
        where = QStringLiteral("rope_scaling");
    }
    auto bad = [&](ErrorCode code, const QString &msg, const QString &hint) {
        return unexpected(fail(code, msg).inFile(path).forParameter(where).withHint(hint));
    };
    if (params.contains(QLatin1String("full_attention")) || params.contains(QLatin1String("sliding_attention")))
        return bad(ErrorCode::Unsupported, QStringLiteral("rope parameters per layer type are not supported yet"),
                   QStringLiteral("one rope_parameters dict for all layers is supported"));
    c.ropeTheta = params.value(QLatin1String("rope_theta")).toDouble(o.value(QLatin1String("rope_theta")).toDouble(10000.0));
    if (!(c.ropeTheta > 1.0))
        return bad(ErrorCode::Format, QStringLiteral("rope_theta must be greater than 1 (got %1)").arg(c.ropeTheta),
                   QStringLiteral("compare config.json with the original checkpoint's"));
    const double partial = params.value(QLatin1String("partial_rotary_factor")).toDouble(o.value(QLatin1String("partial_rotary_factor")).toDouble(1.0));
    c.rotaryDim = static_cast<int>(c.headDim * partial); // int(head_dim * partial_rotary_factor)
    if (partial != 1.0 && (c.architecture != Architecture::Phi3 || !(partial > 0 && partial < 1) || c.rotaryDim % 2 != 0))
        return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("partial_rotary_factor %1 is not supported").arg(partial))
                              .inFile(path)
                              .forParameter(QStringLiteral("partial_rotary_factor"))
                              .withHint(QStringLiteral("partial rotary is supported for Phi-3 (an even number of rotated dims); the Llama family rotates the whole head")));
    const QString type = params.value(QLatin1String("rope_type")).toString(params.value(QLatin1String("type")).toString(QStringLiteral("default")));
    RopeScaling &r = c.ropeScaling;
    r = {};
    if (type == QLatin1String("default"))
        r.type = RopeType::Default;
    else if (type == QLatin1String("linear"))
        r.type = RopeType::Linear;
    else if (type == QLatin1String("dynamic"))
        r.type = RopeType::Dynamic;
    else if (type == QLatin1String("llama3"))
        r.type = RopeType::Llama3;
    else if (type == QLatin1String("yarn"))
        r.type = RopeType::Yarn;
    else if (type == QLatin1String("longrope"))
        r.type = RopeType::LongRope;
    else
        return bad(ErrorCode::Unsupported, QStringLiteral("unsupported rope type '%1'").arg(type),
                   QStringLiteral("supported: default, linear, dynamic, llama3, yarn, longrope"));
    auto number = [&](const char *key, double fallback) { return params.value(QLatin1String(key)).toDouble(fallback); };
    auto requirePositive = [&](const char *key, double &out) -> Expected<void> {
        const QJsonValue v = params.value(QLatin1String(key));
        if (!v.isDouble() || !(v.toDouble() > 0))
            return bad(ErrorCode::Format, QStringLiteral("rope type '%1' needs a positive '%2'").arg(type, QLatin1String(key)),
                       QStringLiteral("add \"%1\" to %2").arg(QLatin1String(key), where));
        out = v.toDouble();
        return {};
    };
    r.factor = 1.0;
    if (r.type == RopeType::Linear || r.type == RopeType::Dynamic || r.type == RopeType::Llama3) {
        if (auto ok = requirePositive("factor", r.factor); !ok)
            return ok;
    } else if (r.type == RopeType::Yarn || r.type == RopeType::LongRope) {
        r.factor = number("factor", 0.0); // absent: max_position_embeddings / original
    }
    if (r.type == RopeType::Llama3) {
        if (auto ok = requirePositive("low_freq_factor", r.lowFreqFactor); !ok)
            return ok;
        if (auto ok = requirePositive("high_freq_factor", r.highFreqFactor); !ok)
            return ok;
        if (r.highFreqFactor == r.lowFreqFactor)
            return bad(ErrorCode::Format, QStringLiteral("llama3 rope needs high_freq_factor != low_freq_factor"),
                       QStringLiteral("Llama 3.1 uses low_freq_factor 1 and high_freq_factor 4"));
    }
    if (r.type == RopeType::Llama3 || r.type == RopeType::Yarn || r.type == RopeType::LongRope) {
        const QJsonValue top = o.value(QLatin1String("original_max_position_embeddings"));
        const QJsonValue inDict = params.value(QLatin1String("original_max_position_embeddings"));
        r.originalMaxPositions = top.isDouble() ? top.toInt() : inDict.isDouble() ? inDict.toInt() : 0;
        if (r.originalMaxPositions < 0)
            return bad(ErrorCode::Format, QStringLiteral("original_max_position_embeddings must be positive"),
                       QStringLiteral("compare config.json with the original checkpoint's"));
    }
    if (r.type == RopeType::Yarn || r.type == RopeType::LongRope) {
        const QJsonValue af = params.value(QLatin1String("attention_factor"));
        if (af.isDouble())
            r.attentionFactor = af.toDouble();
    }
    if (r.type == RopeType::Yarn) {
        // transformers: `get("beta_fast") or 32`, so 0 means the default as well
        r.betaFast = number("beta_fast", 0.0) != 0.0 ? number("beta_fast", 0.0) : 32.0;
        r.betaSlow = number("beta_slow", 0.0) != 0.0 ? number("beta_slow", 0.0) : 1.0;
        r.mscale = number("mscale", 0.0);
        r.mscaleAllDim = number("mscale_all_dim", 0.0);
        r.truncate = params.value(QLatin1String("truncate")).toBool(true);
    }
    if (r.type == RopeType::LongRope) {
        for (auto [key, out] : {std::pair{"short_factor", &r.shortFactor}, {"long_factor", &r.longFactor}}) {
            const QJsonArray a = params.value(QLatin1String(key)).toArray();
            for (const QJsonValue &v : a)
                out->push_back(v.toDouble());
            if (static_cast<int>(out->size()) * 2 != c.rotaryDim)
                return bad(ErrorCode::Format, QStringLiteral("longrope '%1' has %2 values; head_dim %3 needs %4")
                                                  .arg(QLatin1String(key)).arg(out->size()).arg(c.rotaryDim).arg(c.rotaryDim / 2),
                           QStringLiteral("compare config.json with the original checkpoint's"));
        }
    }
    return {};
}

} // namespace

int ModelConfig::contextLimit() const
{
    if (ropeScaling.type == RopeType::Dynamic) // rescales the base for any length, as transformers does
        return 1 << 30;
    return maxPositions;
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
    else if (c.architectureName == QLatin1String("Qwen3ForCausalLM") || (c.architectureName.isEmpty() && c.modelType == QLatin1String("qwen3")))
        c.architecture = Architecture::Qwen3;
    else if (c.architectureName == QLatin1String("Phi3ForCausalLM") || (c.architectureName.isEmpty() && c.modelType == QLatin1String("phi3")))
        c.architecture = Architecture::Phi3;
    else if (c.architectureName == QLatin1String("Gemma2ForCausalLM") || (c.architectureName.isEmpty() && c.modelType == QLatin1String("gemma2")))
        c.architecture = Architecture::Gemma2;
    else if (c.architectureName == QLatin1String("Gemma3ForCausalLM")
             || (c.architectureName.isEmpty() && c.modelType == QLatin1String("gemma3_text")))
        c.architecture = Architecture::Gemma3;
    else if (c.architectureName == QLatin1String("MixtralForCausalLM") || (c.architectureName.isEmpty() && c.modelType == QLatin1String("mixtral")))
        c.architecture = Architecture::Mixtral;
    else if (c.architectureName == QLatin1String("Qwen3MoeForCausalLM") || (c.architectureName.isEmpty() && c.modelType == QLatin1String("qwen3_moe")))
        c.architecture = Architecture::Qwen3Moe;
    else
        return unexpected(fail(ErrorCode::Unsupported,
                               QStringLiteral("unsupported architecture '%1'")
                                   .arg(c.architectureName.isEmpty() ? c.modelType : c.architectureName))
                              .inFile(path)
                              .forParameter(QStringLiteral("architectures"))
                              .withHint(QStringLiteral("supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, "
                                                         "Gemma2ForCausalLM, Gemma3ForCausalLM (text), Phi3ForCausalLM, MixtralForCausalLM, Qwen3MoeForCausalLM")));
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
    const bool gemma = c.architecture == Architecture::Gemma2 || c.architecture == Architecture::Gemma3;
    c.tieWordEmbeddings = o.value(QLatin1String("tie_word_embeddings")).toBool(gemma); // Gemma ties by default
    c.torchDtype = o.value(QLatin1String("torch_dtype")).toString(o.value(QLatin1String("dtype")).toString());

    if (c.architecture == Architecture::Gemma3) {
        // full layers: rope_parameters["full_attention"] (5.x) or rope_theta + rope_scaling (4.x,
        // default theta 1e6); sliding layers: rope_parameters["sliding_attention"] or
        // rope_local_base_freq (default 10000)
        const QJsonObject nested = o.value(QLatin1String("rope_parameters")).toObject();
        QJsonObject full = o;
        QJsonObject local = o;
        full.remove(QStringLiteral("rope_parameters"));
        local.remove(QStringLiteral("rope_parameters"));
        local.remove(QStringLiteral("rope_scaling"));
        if (nested.contains(QLatin1String("full_attention")) || nested.contains(QLatin1String("sliding_attention"))) {
            full.insert(QStringLiteral("rope_parameters"), nested.value(QLatin1String("full_attention")).toObject());
            local.insert(QStringLiteral("rope_parameters"), nested.value(QLatin1String("sliding_attention")).toObject());
        } else if (!nested.isEmpty()) {
            full.insert(QStringLiteral("rope_parameters"), nested); // one dict: the full layers'
        }
        if (!full.contains(QLatin1String("rope_theta")))
            full.insert(QStringLiteral("rope_theta"), 1000000.0);
        local.insert(QStringLiteral("rope_theta"), o.value(QLatin1String("rope_local_base_freq")).toDouble(10000.0));
        ModelConfig slidingPart = c;
        if (auto rope = parseRope(local, slidingPart, path); !rope)
            return unexpected(rope.error());
        c.slidingRopeTheta = slidingPart.ropeTheta;
        c.slidingRopeScaling = slidingPart.ropeScaling;
        if (auto rope = parseRope(full, c, path); !rope)
            return unexpected(rope.error());
    } else if (auto rope = parseRope(o, c, path); !rope) {
        return unexpected(rope.error());
    }

    // Gemma names it hidden_activation (hidden_act is the legacy key there)
    const QString actKey = gemma && o.contains(QLatin1String("hidden_activation")) ? QStringLiteral("hidden_activation")
                                                                                   : QStringLiteral("hidden_act");
    const QString act = o.value(actKey).toString(gemma ? QStringLiteral("gelu_pytorch_tanh") : QStringLiteral("silu"));
    if (act == QLatin1String("silu"))
        c.activation = Activation::Silu;
    else if (act == QLatin1String("gelu_pytorch_tanh") || (gemma && act == QLatin1String("gelu")))
        c.activation = Activation::GeluTanh; // transformers runs Gemma's "gelu" as the tanh approximation too
    else
        return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("unsupported activation '%1'").arg(act))
                              .inFile(path)
                              .forParameter(actKey)
                              .withHint(QStringLiteral("supported: silu (SwiGLU), gelu_pytorch_tanh (GeGLU)")));
    if (gemma) {
        c.normOffset = 1.0f;
        c.sandwichNorms = true;
        c.embedScale = true;
        c.qkNorm = c.architecture == Architecture::Gemma3;
        c.attentionBias = o.value(QLatin1String("attention_bias")).toBool(false);
        c.outputBias = c.attentionBias;
        c.queryPreAttnScalar = o.value(QLatin1String("query_pre_attn_scalar")).toDouble(256.0);
        c.attnSoftcap = o.value(QLatin1String("attn_logit_softcapping")).toDouble(c.architecture == Architecture::Gemma2 ? 50.0 : 0.0);
        c.finalSoftcap = o.value(QLatin1String("final_logit_softcapping")).toDouble(c.architecture == Architecture::Gemma2 ? 30.0 : 0.0);
        if (o.value(QLatin1String("use_bidirectional_attention")).toBool(false))
            return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("bidirectional attention is not supported"))
                                  .inFile(path)
                                  .forParameter(QStringLiteral("use_bidirectional_attention"))
                                  .withHint(QStringLiteral("Bitsmith runs causal decoders")));
    } else if (c.architecture == Architecture::Qwen2) {
        c.attentionBias = true; // Qwen2 always has q/k/v biases and no o_proj bias
    } else if (c.architecture == Architecture::Qwen3 || c.architecture == Architecture::Qwen3Moe) {
        c.qkNorm = true; // q_norm / k_norm over each head
        c.attentionBias = o.value(QLatin1String("attention_bias")).toBool(false);
        c.outputBias = c.attentionBias; // Qwen3's attention_bias covers o_proj too
    } else if (c.architecture == Architecture::Llama) {
        c.attentionBias = o.value(QLatin1String("attention_bias")).toBool(false);
        c.outputBias = c.attentionBias;
        c.mlpBias = o.value(QLatin1String("mlp_bias")).toBool(false);
    }
    const QJsonValue sw = o.value(QLatin1String("sliding_window"));
    const bool useSw = c.architecture == Architecture::Mistral || c.architecture == Architecture::Mixtral || c.architecture == Architecture::Phi3 || gemma
                       || o.value(QLatin1String("use_sliding_window")).toBool(false);
    if (useSw && sw.isDouble() && sw.toInt() > 0)
        c.slidingWindow = sw.toInt();
    // Which layers slide: layer_types (transformers 4.5x+/5.x) where given, else Qwen's rule
    // (layers from max_window_layers on), else all of them.
    const QJsonArray layerTypes = o.value(QLatin1String("layer_types")).toArray();
    if (!layerTypes.isEmpty()) {
        if (layerTypes.size() != c.numLayers)
            return unexpected(fail(ErrorCode::Format, QStringLiteral("layer_types has %1 entries for %2 layers").arg(layerTypes.size()).arg(c.numLayers))
                                  .inFile(path)
                                  .forParameter(QStringLiteral("layer_types"))
                                  .withHint(QStringLiteral("config.json is inconsistent; compare it with the original checkpoint's")));
        for (const QJsonValue &t : layerTypes) {
            const QString type = t.toString();
            if (type != QLatin1String("full_attention") && type != QLatin1String("sliding_attention"))
                return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("unsupported layer type '%1'").arg(type))
                                      .inFile(path)
                                      .forParameter(QStringLiteral("layer_types"))
                                      .withHint(QStringLiteral("supported: full_attention, sliding_attention")));
            c.slidingLayers.push_back(type == QLatin1String("sliding_attention"));
        }
        // transformers gives sliding layers their window only when the config has one
        if (c.slidingWindow <= 0 && sw.isDouble() && sw.toInt() > 0 && c.architecture != Architecture::Qwen2
            && c.architecture != Architecture::Qwen3 && c.architecture != Architecture::Qwen3Moe)
            c.slidingWindow = sw.toInt();
    } else if (gemma) {
        // Gemma 2 alternates (even layers slide); Gemma 3 slides except every sliding_window_pattern-th
        const int pattern = c.architecture == Architecture::Gemma2 ? 2 : o.value(QLatin1String("sliding_window_pattern")).toInt(6);
        for (int l = 0; l < c.numLayers; ++l)
            c.slidingLayers.push_back((l + 1) % std::max(pattern, 1) != 0);
    } else if (c.slidingWindow > 0 && (c.architecture == Architecture::Qwen2 || c.architecture == Architecture::Qwen3
                                         || c.architecture == Architecture::Qwen3Moe)) {
        const int first = o.value(QLatin1String("max_window_layers")).toInt(c.numLayers);
        for (int l = 0; l < c.numLayers; ++l)
            c.slidingLayers.push_back(l >= first);
    }
    if (gemma && c.slidingWindow <= 0)
        c.slidingWindow = 4096; // transformers' default for both

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
    if (c.architecture == Architecture::Mixtral || c.architecture == Architecture::Qwen3Moe) {
        const bool mixtral = c.architecture == Architecture::Mixtral;
        // Mixtral writes num_local_experts; Qwen3-MoE wrote num_experts until transformers 5, which
        // writes num_local_experts for both.
        const char *expertsKey = (mixtral || !o.contains(QStringLiteral("num_experts"))) ? "num_local_experts" : "num_experts";
        if (auto r = requireInt(expertsKey, c.numExperts); !r)
            return unexpected(r.error());
        if (auto r = requireInt("num_experts_per_tok", c.expertsPerToken); !r)
            return unexpected(r.error());
        if (c.expertsPerToken > c.numExperts)
            return invalid(QStringLiteral("num_experts_per_tok (%1) exceeds %2 (%3)").arg(c.expertsPerToken).arg(QLatin1String(expertsKey)).arg(c.numExperts),
                           "num_experts_per_tok");
        if (mixtral) {
            c.moeIntermediateSize = c.intermediateSize;
            c.normTopkProb = true; // Mixtral always renormalizes the top-k weights
            c.moeLayers.assign(static_cast<std::size_t>(c.numLayers), true);
        } else {
            if (auto r = requireInt("moe_intermediate_size", c.moeIntermediateSize); !r)
                return unexpected(r.error());
            c.normTopkProb = o.value(QLatin1String("norm_topk_prob")).toBool(false);
            const int step = o.value(QLatin1String("decoder_sparse_step")).toInt(1);
            if (step <= 0)
                return invalid(QStringLiteral("decoder_sparse_step must be positive"), "decoder_sparse_step");
            std::vector<bool> mlpOnly(static_cast<std::size_t>(c.numLayers));
            for (const QJsonValue &v : o.value(QLatin1String("mlp_only_layers")).toArray())
                if (v.toInt(-1) >= 0 && v.toInt() < c.numLayers)
                    mlpOnly[static_cast<std::size_t>(v.toInt())] = true;
            for (int l = 0; l < c.numLayers; ++l) // transformers' Qwen3MoeDecoderLayer rule
                c.moeLayers.push_back(!mlpOnly[static_cast<std::size_t>(l)] && (l + 1) % step == 0);
        }
        if (o.value(QLatin1String("router_jitter_noise")).toDouble(0.0) != 0.0) {
            // jitter applies in training only; nothing to do at inference
        }
    }
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
    qint64 block = h * q + 2 * h * kv + q * h + 2 * h;
    if (attentionBias)
        block += q + 2 * kv;
    if (outputBias)
        block += h;
    if (qkNorm)
        block += 2 * headDim;
    if (sandwichNorms)
        block += 2 * h;
    qint64 total = v * h * (tieWordEmbeddings ? 1 : 2) + numLayers * block + h;
    for (int l = 0; l < numLayers; ++l) {
        if (isMoeLayer(l)) {
            total += static_cast<qint64>(numExperts) * 3 * h * moeIntermediateSize + numExperts * h; // experts + router
        } else {
            total += 3 * h * i;
            if (mlpBias)
                total += 2 * i + h;
        }
    }
    return total;
}

} // namespace bitsmith::core
