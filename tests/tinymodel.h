// tinymodel.h: writes small random Llama-family checkpoints for tests (config.json + safetensors),
// with knobs to break them on purpose.
#pragma once

#include "core/dtype.h"
#include "core/safetensors.h"

#include <QDir>
#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QString>

#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <vector>

namespace bitsmith::test {

struct TinySpec
{
    QString architecture = QStringLiteral("LlamaForCausalLM");
    int vocab = 97, hidden = 32, inter = 64, layers = 2, heads = 4, kvHeads = 2, maxPos = 64;
    double ropeTheta = 10000.0;
    bool tied = false;
    bool qkvBias = false;
    int slidingWindow = 0;
    int headDim = 0;            // 0: hidden / heads
    QJsonObject ropeScaling;    // written as rope_scaling when not empty
    core::DType dtype = core::DType::F32;
    float scale = 0.2f;
    std::uint32_t seed = 1;
    // Hooks to corrupt the checkpoint: rename/drop (return empty name) or reshape tensors.
    std::function<void(QString &name, std::vector<std::int64_t> &shape)> mutate;
    std::vector<QString> extraTensors;
};

inline std::map<QString, std::vector<std::int64_t>> tinyTensorShapes(const TinySpec &s)
{
    const int hd = s.headDim > 0 ? s.headDim : s.hidden / s.heads;
    const bool qkNorm = s.architecture == QLatin1String("Qwen3ForCausalLM");
    std::map<QString, std::vector<std::int64_t>> t;
    t[QStringLiteral("model.embed_tokens.weight")] = {s.vocab, s.hidden};
    for (int i = 0; i < s.layers; ++i) {
        const QString p = QStringLiteral("model.layers.%1.").arg(i);
        t[p + QStringLiteral("input_layernorm.weight")] = {s.hidden};
        t[p + QStringLiteral("post_attention_layernorm.weight")] = {s.hidden};
        t[p + QStringLiteral("self_attn.q_proj.weight")] = {s.heads * hd, s.hidden};
        t[p + QStringLiteral("self_attn.k_proj.weight")] = {s.kvHeads * hd, s.hidden};
        t[p + QStringLiteral("self_attn.v_proj.weight")] = {s.kvHeads * hd, s.hidden};
        t[p + QStringLiteral("self_attn.o_proj.weight")] = {s.hidden, s.heads * hd};
        if (s.qkvBias) {
            t[p + QStringLiteral("self_attn.q_proj.bias")] = {s.heads * hd};
            t[p + QStringLiteral("self_attn.k_proj.bias")] = {s.kvHeads * hd};
            t[p + QStringLiteral("self_attn.v_proj.bias")] = {s.kvHeads * hd};
        }
        if (qkNorm) {
            t[p + QStringLiteral("self_attn.q_norm.weight")] = {hd};
            t[p + QStringLiteral("self_attn.k_norm.weight")] = {hd};
        }
        t[p + QStringLiteral("mlp.gate_proj.weight")] = {s.inter, s.hidden};
        t[p + QStringLiteral("mlp.up_proj.weight")] = {s.inter, s.hidden};
        t[p + QStringLiteral("mlp.down_proj.weight")] = {s.hidden, s.inter};
    }
    t[QStringLiteral("model.norm.weight")] = {s.hidden};
    if (!s.tied)
        t[QStringLiteral("lm_head.weight")] = {s.vocab, s.hidden};
    return t;
}

// Writes the checkpoint into `folder` (created if needed). Returns false on I/O failure.
inline bool writeTinyModel(const QString &folder, const TinySpec &s)
{
    QDir().mkpath(folder);
    QJsonObject cfg{{QStringLiteral("architectures"), QJsonArray{s.architecture}},
                    {QStringLiteral("vocab_size"), s.vocab},
                    {QStringLiteral("hidden_size"), s.hidden},
                    {QStringLiteral("intermediate_size"), s.inter},
                    {QStringLiteral("num_hidden_layers"), s.layers},
                    {QStringLiteral("num_attention_heads"), s.heads},
                    {QStringLiteral("num_key_value_heads"), s.kvHeads},
                    {QStringLiteral("max_position_embeddings"), s.maxPos},
                    {QStringLiteral("rope_theta"), s.ropeTheta},
                    {QStringLiteral("rms_norm_eps"), 1e-5},
                    {QStringLiteral("tie_word_embeddings"), s.tied},
                    {QStringLiteral("hidden_act"), QStringLiteral("silu")}};
    if (s.headDim > 0)
        cfg[QStringLiteral("head_dim")] = s.headDim;
    if (!s.ropeScaling.isEmpty())
        cfg[QStringLiteral("rope_scaling")] = s.ropeScaling;
    if (s.slidingWindow > 0) {
        cfg[QStringLiteral("sliding_window")] = s.slidingWindow;
        cfg[QStringLiteral("use_sliding_window")] = true;
    }
    QFile f(QDir(folder).filePath(QStringLiteral("config.json")));
    if (!f.open(QIODevice::WriteOnly))
        return false;
    f.write(QJsonDocument(cfg).toJson());
    f.close();

    std::mt19937 rng(s.seed);
    std::normal_distribution<float> normal(0.0f, s.scale);
    std::vector<std::vector<std::byte>> storage;
    std::vector<core::TensorToWrite> tensors;
    auto shapes = tinyTensorShapes(s);
    for (const QString &extra : s.extraTensors)
        shapes[extra] = {4};
    for (const auto &[origName, origShape] : shapes) {
        QString name = origName;
        std::vector<std::int64_t> shape = origShape;
        std::int64_t n = 1;
        for (auto d : shape)
            n *= d;
        std::vector<float> values(static_cast<size_t>(n));
        const bool isNorm = name.endsWith(QStringLiteral("norm.weight"));
        for (auto &v : values)
            v = isNorm ? 1.0f + normal(rng) : normal(rng);
        if (s.mutate)
            s.mutate(name, shape);
        if (name.isEmpty())
            continue;
        n = 1;
        for (auto d : shape)
            n *= d;
        values.resize(static_cast<size_t>(n), 0.5f);
        std::vector<std::byte> bytes(static_cast<size_t>(n) * core::dtypeSize(s.dtype));
        for (std::int64_t i = 0; i < n; ++i) {
            if (s.dtype == core::DType::F32) {
                std::memcpy(bytes.data() + 4 * i, &values[static_cast<size_t>(i)], 4);
            } else {
                const std::uint16_t h = s.dtype == core::DType::BF16 ? core::floatToBf16(values[static_cast<size_t>(i)])
                                                                     : core::floatToHalf(values[static_cast<size_t>(i)]);
                std::memcpy(bytes.data() + 2 * i, &h, 2);
            }
        }
        storage.push_back(std::move(bytes));
        tensors.push_back({name, s.dtype, shape, std::span<const std::byte>(storage.back()), 0, {}});
    }
    return static_cast<bool>(core::writeSafetensors(QDir(folder).filePath(QStringLiteral("model.safetensors")), tensors));
}

} // namespace bitsmith::test
