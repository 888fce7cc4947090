// ggufmodel.cpp: Model -> GGUF (llama.cpp's names, metadata, tokenizer, q/k permutation, types
// following the compressed layers) and GGUF -> Model.
#include "ggufmodel.h"

#include "core/gguf/gguffile.h"

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QRegularExpression>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>

namespace bitsmith::core::gguf {

namespace {

// Checkpoint name suffix inside a block <-> llama.cpp's.
struct NamePair
{
    const char *hf;
    const char *gguf;
};
constexpr NamePair kBlockNames[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.o_proj.bias", "attn_output.bias"},
    {"self_attn.q_norm.weight", "attn_q_norm.weight"},
    {"self_attn.k_norm.weight", "attn_k_norm.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
    {"mlp.gate_proj.bias", "ffn_gate.bias"},
    {"mlp.up_proj.bias", "ffn_up.bias"},
    {"mlp.down_proj.bias", "ffn_down.bias"},
};

QString hfTensorName(const QString &g)
{
    if (g == QLatin1String("token_embd.weight"))
        return QStringLiteral("model.embed_tokens.weight");
    if (g == QLatin1String("output_norm.weight"))
        return QStringLiteral("model.norm.weight");
    if (g == QLatin1String("output.weight"))
        return QStringLiteral("lm_head.weight");
    static const QRegularExpression re(QStringLiteral("^blk\\.(\\d+)\\.(.+)$"));
    const auto m = re.match(g);
    if (!m.hasMatch())
        return {};
    for (const NamePair &p : kBlockNames)
        if (m.captured(2) == QLatin1String(p.gguf))
            return QStringLiteral("model.layers.%1.%2").arg(m.captured(1), QLatin1String(p.hf));
    return {};
}

// Row order of llama.cpp's q/k layout: out[newRow] = in[order[newRow]]. Within each head of
// `headDim` rows, Hugging Face keeps the two rotary halves apart ([x0..x_{d/2-1}, y0..]) while
// llama.cpp's rope pairs neighbours ([x0, y0, x1, y1, ...]).
std::vector<std::int64_t> ropeRowOrder(std::int64_t rows, int heads)
{
    std::vector<std::int64_t> order(static_cast<std::size_t>(rows));
    const std::int64_t hd = rows / heads, half = hd / 2;
    for (std::int64_t h = 0; h < heads; ++h)
        for (std::int64_t j = 0; j < half; ++j)
            for (std::int64_t i = 0; i < 2; ++i)
                order[static_cast<std::size_t>(h * hd + 2 * j + i)] = h * hd + i * half + j;
    return order;
}

std::vector<float> permuteRows(const float *data, std::int64_t rows, std::int64_t cols, const std::vector<std::int64_t> &order,
                               bool inverse)
{
    std::vector<float> out(static_cast<std::size_t>(rows * cols));
    for (std::int64_t r = 0; r < rows; ++r) {
        const std::int64_t src = inverse ? r : order[static_cast<std::size_t>(r)];
        const std::int64_t dst = inverse ? order[static_cast<std::size_t>(r)] : r;
        std::copy_n(data + src * cols, cols, out.data() + dst * cols);
    }
    return out;
}

QuantizedTensor permuteRows(const QuantizedTensor &q, const std::vector<std::int64_t> &order, bool inverse)
{
    QuantizedTensor out = q;
    const std::int64_t g = q.groupsPerRow();
    for (std::int64_t r = 0; r < q.rows; ++r) {
        const std::int64_t src = inverse ? r : order[static_cast<std::size_t>(r)];
        const std::int64_t dst = inverse ? order[static_cast<std::size_t>(r)] : r;
        std::copy_n(q.codes.begin() + src * q.cols, q.cols, out.codes.begin() + dst * q.cols);
        std::copy_n(q.scales.begin() + src * g, g, out.scales.begin() + dst * g);
        if (!q.zeros.empty())
            std::copy_n(q.zeros.begin() + src * g, g, out.zeros.begin() + dst * g);
    }
    return out;
}

// The k-quant (or 32-block fallback) closest to `bits` bits per weight.
GgmlType closestType(int bits, std::int64_t cols)
{
    if (cols % 256 == 0) {
        switch (bits) {
        case 2: return GgmlType::Q2_K;
        case 3: return GgmlType::Q3_K;
        case 4: return GgmlType::Q4_K;
        case 5: return GgmlType::Q5_K;
        case 6: return GgmlType::Q6_K;
        default: return GgmlType::Q8_0;
        }
    }
    if (bits <= 4)
        return GgmlType::Q4_1;
    if (bits == 5)
        return GgmlType::Q5_1;
    return GgmlType::Q8_0;
}

std::vector<std::uint8_t> quantizeMatrix(GgmlType t, const float *data, std::int64_t rows, std::int64_t cols)
{
    const std::int64_t rowBytes = ggmlBytes(t, cols);
    std::vector<std::uint8_t> out(static_cast<std::size_t>(rows * rowBytes));
    for (std::int64_t r = 0; r < rows; ++r)
        quantizeRow(t, data + r * cols, out.data() + r * rowBytes, cols);
    return out;
}

QString typeOverrideName(GgmlType t)
{
    // ggml's spelling ("q4_K", "q8_0", "f16"), which llama-quantize parses
    QString s = QString::fromLatin1(ggmlTypeName(t)).toLower();
    if (s.endsWith(QLatin1String("_k")))
        s[s.size() - 1] = QLatin1Char('K');
    return s;
}

// A trivial act-order index (g_idx[c] == c / groupSize) is the same as none.
bool hasRealGroupIndex(const std::vector<std::int32_t> &groupIndex, int groupSize, std::int64_t cols)
{
    if (groupIndex.empty())
        return false;
    if (groupSize <= 0)
        return true;
    for (std::int64_t c = 0; c < cols; ++c)
        if (groupIndex[static_cast<std::size_t>(c)] != c / groupSize)
            return true;
    return false;
}

bool hasRealGroupIndex(const QuantizedTensor &q)
{
    return hasRealGroupIndex(q.groupIndex, q.format.groupSize, q.cols);
}

QByteArray readFile(const QString &path)
{
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly))
        return {};
    return f.readAll();
}

} // namespace

QString ggufTensorName(const QString &hf)
{
    if (hf == QLatin1String("model.embed_tokens.weight"))
        return QStringLiteral("token_embd.weight");
    if (hf == QLatin1String("model.norm.weight"))
        return QStringLiteral("output_norm.weight");
    if (hf == QLatin1String("lm_head.weight"))
        return QStringLiteral("output.weight");
    static const QRegularExpression re(QStringLiteral("^model\\.layers\\.(\\d+)\\.(.+)$"));
    const auto m = re.match(hf);
    if (!m.hasMatch())
        return {};
    for (const NamePair &p : kBlockNames)
        if (m.captured(2) == QLatin1String(p.hf))
            return QStringLiteral("blk.%1.%2").arg(m.captured(1), QLatin1String(p.gguf));
    return {};
}

QString preTokenizerName(const QByteArray &tokenizerJson, bool *known)
{
    const QJsonObject pre = QJsonDocument::fromJson(tokenizerJson).object().value(QLatin1String("pre_tokenizer")).toObject();
    if (known)
        *known = true;
    // ByteLevel with its own (GPT-2) regex: llama.cpp's "gpt-2".
    if (pre.value(QLatin1String("type")).toString() == QLatin1String("ByteLevel")
        && pre.value(QLatin1String("use_regex")).toBool(true))
        return QStringLiteral("gpt-2");
    // A Split with an explicit regex followed by ByteLevel without one: tell Llama 3 from Qwen2
    // by their digit rule (Llama 3 groups up to three digits, Qwen2 splits every digit).
    const QByteArray compact = QJsonDocument(pre).toJson(QJsonDocument::Compact);
    if (compact.contains("\\\\p{N}{1,3}"))
        return QStringLiteral("llama-bpe");
    if (compact.contains("(?i:'s|'t|'re|'ve|'m|'ll|'d)") && compact.contains("\\\\p{N}"))
        return QStringLiteral("qwen2");
    if (known)
        *known = false;
    return QStringLiteral("default");
}

QJsonObject GgufExportReport::toJson() const
{
    QJsonObject o;
    o.insert(QStringLiteral("path"), path);
    o.insert(QStringLiteral("architecture"), architecture);
    o.insert(QStringLiteral("preTokenizer"), preTokenizer);
    o.insert(QStringLiteral("fileBytes"), static_cast<double>(fileBytes));
    QJsonArray ts;
    std::map<QString, int> typeCounts, howCounts;
    for (const GgufTensorExport &t : tensors) {
        QJsonObject j;
        j.insert(QStringLiteral("name"), t.name);
        j.insert(QStringLiteral("source"), t.source);
        j.insert(QStringLiteral("type"), QString::fromLatin1(ggmlTypeName(t.type)));
        j.insert(QStringLiteral("kind"), t.kind);
        j.insert(QStringLiteral("how"), t.how);
        j.insert(QStringLiteral("bytes"), static_cast<double>(t.bytes));
        if (t.groups > 0) {
            j.insert(QStringLiteral("groups"), static_cast<double>(t.groups));
            j.insert(QStringLiteral("inexactGroups"), static_cast<double>(t.inexactGroups));
            j.insert(QStringLiteral("maxAbsDeviation"), t.maxAbsDeviation);
        }
        ts.append(j);
        ++typeCounts[QString::fromLatin1(ggmlTypeName(t.type))];
        ++howCounts[t.kind];
    }
    o.insert(QStringLiteral("tensors"), ts);
    QJsonObject tc, hc;
    for (const auto &[k, v] : typeCounts)
        tc.insert(k, v);
    for (const auto &[k, v] : howCounts)
        hc.insert(k, v);
    o.insert(QStringLiteral("typeCounts"), tc);
    o.insert(QStringLiteral("howCounts"), hc);
    o.insert(QStringLiteral("tensorTypeOverrides"), QJsonArray::fromStringList(tensorTypeOverrides));
    return o;
}

Expected<GgufExportReport> exportGguf(const Model &model, const QString &path, const GgufExportOptions &options, Feedback *feedback)
{
    const ModelConfig &c = model.config();
    // qwen2 / qwen3 run rope in the NeoX layout (q/k rows as stored); llama permutes them
    const bool qwen = c.architecture == Architecture::Qwen2 || c.architecture == Architecture::Qwen3;
    const QString arch = c.architecture == Architecture::Qwen3 ? QStringLiteral("qwen3")
                       : qwen                                  ? QStringLiteral("qwen2")
                                                               : QStringLiteral("llama");
    if (c.architecture == Architecture::Gemma2 || c.architecture == Architecture::Gemma3 || c.architecture == Architecture::Phi3 || c.isMoe())
        return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("GGUF export of %1 is not supported yet").arg(c.architectureName))
                              .inFile(model.folder())
                              .withHint(QStringLiteral("export a Hugging Face folder (--format hf) and convert it with llama.cpp's convert_hf_to_gguf.py")));
    // Rope scaling as llama.cpp reads it: linear as metadata; llama3 (and frequency factors
    // brought in from a GGUF) as the rope_freqs tensor that convert_hf_to_gguf.py writes, the
    // divisor of each frequency. The other types are not written yet.
    const RopeScaling &rs = c.ropeScaling;
    std::vector<float> ropeFactors;
    if (rs.type == RopeType::Llama3 || (rs.type == RopeType::LongRope && rs.shortFactor == rs.longFactor && rs.attentionFactor == 1.0)) {
        const std::vector<float> plain = ropeInverseFrequencies({}, c.ropeTheta, c.ropeDim(), c.maxPositions, 1);
        const std::vector<float> scaled = ropeInverseFrequencies(rs, c.ropeTheta, c.ropeDim(), c.maxPositions, 1);
        for (std::size_t i = 0; i < plain.size(); ++i)
            ropeFactors.push_back(static_cast<float>(static_cast<double>(plain[i]) / scaled[i]));
    } else if (rs.type != RopeType::Default && rs.type != RopeType::Linear) {
        return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("GGUF export of rope type '%1' is not supported yet").arg(QLatin1String(ropeTypeName(rs.type))))
                              .inFile(model.folder())
                              .forParameter(QStringLiteral("rope_scaling"))
                              .withHint(QStringLiteral("default, linear and llama3 rope are written; export a Hugging Face folder instead")));
    }
    GgufExportReport report;
    report.path = path;
    report.architecture = arch;

    // ---- tokenizer ----
    const QByteArray tokJson = tokenizerJsonFor(model);
    if (tokJson.isEmpty())
        return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("the model has no tokenizer.json"))
                              .inFile(model.folder())
                              .withHint(QStringLiteral("llama.cpp needs the vocabulary; put the tokenizer.json beside the weights")));
    const QJsonObject tokRoot = QJsonDocument::fromJson(tokJson).object();
    const QJsonObject tokModel = tokRoot.value(QLatin1String("model")).toObject();
    if (tokModel.value(QLatin1String("type")).toString() != QLatin1String("BPE")
        || tokModel.value(QLatin1String("byte_fallback")).toBool(false))
        return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("only byte-level BPE tokenizers are exported to GGUF"))
                              .inFile(model.folder())
                              .withHint(QStringLiteral("SentencePiece vocabularies (tokenizer.ggml.model = llama) are not written yet")));
    bool knownPre = true;
    report.preTokenizer = preTokenizerName(tokJson, &knownPre);
    const QJsonObject vocab = tokModel.value(QLatin1String("vocab")).toObject();
    std::int64_t nTokens = c.vocabSize;
    for (auto it = vocab.begin(); it != vocab.end(); ++it)
        nTokens = std::max<std::int64_t>(nTokens, it.value().toInteger() + 1);
    const QJsonArray added = tokRoot.value(QLatin1String("added_tokens")).toArray();
    for (const QJsonValue &a : added)
        nTokens = std::max<std::int64_t>(nTokens, a.toObject().value(QLatin1String("id")).toInteger() + 1);
    if (nTokens != c.vocabSize)
        return unexpected(fail(ErrorCode::Mismatch, QStringLiteral("the tokenizer has %1 ids but the model's vocabulary is %2")
                                                        .arg(nTokens)
                                                        .arg(c.vocabSize))
                              .inFile(model.folder()));
    std::vector<QByteArray> tokens(static_cast<std::size_t>(nTokens));
    std::vector<std::int64_t> tokenTypes(static_cast<std::size_t>(nTokens), 5); // UNUSED until seen
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
        const auto id = static_cast<std::size_t>(it.value().toInteger());
        tokens[id] = it.key().toUtf8();
        tokenTypes[id] = 1; // NORMAL
    }
    for (const QJsonValue &v : added) {
        const QJsonObject a = v.toObject();
        const auto id = static_cast<std::size_t>(a.value(QLatin1String("id")).toInteger());
        tokens[id] = a.value(QLatin1String("content")).toString().toUtf8();
        tokenTypes[id] = a.value(QLatin1String("special")).toBool() ? 3 : 4; // CONTROL : USER_DEFINED
    }
    for (std::size_t i = 0; i < tokens.size(); ++i)
        if (tokens[i].isEmpty())
            tokens[i] = QStringLiteral("[PAD%1]").arg(i).toUtf8();
    std::vector<QByteArray> merges;
    for (const QJsonValue &m : tokModel.value(QLatin1String("merges")).toArray()) {
        if (m.isArray())
            merges.push_back(m.toArray().at(0).toString().toUtf8() + ' ' + m.toArray().at(1).toString().toUtf8());
        else
            merges.push_back(m.toString().toUtf8());
    }

    // ---- metadata ----
    GgufWriter w;
    auto key = [&](const char *k) { return arch + QLatin1Char('.') + QLatin1String(k); };
    w.set(QStringLiteral("general.architecture"), GgufValue::string(arch.toUtf8()));
    w.set(QStringLiteral("general.name"), GgufValue::string(QFileInfo(model.folder()).fileName().toUtf8()));
    w.set(QStringLiteral("general.quantization_version"), GgufValue::u32(2));
    w.set(key("context_length"), GgufValue::u32(static_cast<std::uint32_t>(c.maxPositions)));
    w.set(key("embedding_length"), GgufValue::u32(static_cast<std::uint32_t>(c.hiddenSize)));
    w.set(key("block_count"), GgufValue::u32(static_cast<std::uint32_t>(c.numLayers)));
    w.set(key("feed_forward_length"), GgufValue::u32(static_cast<std::uint32_t>(c.intermediateSize)));
    w.set(key("attention.head_count"), GgufValue::u32(static_cast<std::uint32_t>(c.numHeads)));
    w.set(key("attention.head_count_kv"), GgufValue::u32(static_cast<std::uint32_t>(c.numKvHeads)));
    w.set(key("attention.key_length"), GgufValue::u32(static_cast<std::uint32_t>(c.headDim)));
    w.set(key("attention.value_length"), GgufValue::u32(static_cast<std::uint32_t>(c.headDim)));
    w.set(key("rope.dimension_count"), GgufValue::u32(static_cast<std::uint32_t>(c.ropeDim())));
    w.set(key("rope.freq_base"), GgufValue::f32(static_cast<float>(c.ropeTheta)));
    if (rs.type == RopeType::Linear) {
        w.set(key("rope.scaling.type"), GgufValue::string("linear"));
        w.set(key("rope.scaling.factor"), GgufValue::f32(static_cast<float>(rs.factor)));
    }
    w.set(key("attention.layer_norm_rms_epsilon"), GgufValue::f32(static_cast<float>(c.rmsNormEps)));
    w.set(key("vocab_size"), GgufValue::u32(static_cast<std::uint32_t>(c.vocabSize)));
    w.set(QStringLiteral("tokenizer.ggml.model"), GgufValue::string("gpt2"));
    w.set(QStringLiteral("tokenizer.ggml.pre"), GgufValue::string(report.preTokenizer.toUtf8()));
    w.set(QStringLiteral("tokenizer.ggml.tokens"), GgufValue::stringArray(std::move(tokens)));
    w.set(QStringLiteral("tokenizer.ggml.token_type"), GgufValue::intArray(GgufValueType::I32, std::move(tokenTypes)));
    w.set(QStringLiteral("tokenizer.ggml.merges"), GgufValue::stringArray(std::move(merges)));
    if (c.bosTokenId >= 0)
        w.set(QStringLiteral("tokenizer.ggml.bos_token_id"), GgufValue::u32(static_cast<std::uint32_t>(c.bosTokenId)));
    if (c.eosTokenId >= 0)
        w.set(QStringLiteral("tokenizer.ggml.eos_token_id"), GgufValue::u32(static_cast<std::uint32_t>(c.eosTokenId)));
    // Bitsmith's tokenizer adds no special tokens (the perplexity protocol scores plain text).
    w.set(QStringLiteral("tokenizer.ggml.add_bos_token"), GgufValue::boolean(false));
    w.set(QStringLiteral("tokenizer.ggml.add_eos_token"), GgufValue::boolean(false));
    w.set(QStringLiteral("tokenizer.huggingface.json"), GgufValue::string(tokJson));

    // ---- tensors ----
    const auto &weights = model.weights();
    for (std::size_t wi = 0; wi < weights.size(); ++wi) {
        const WeightInfo &info = weights[wi];
        if (feedback) {
            if (feedback->isCancelled())
                return unexpected(fail(ErrorCode::Cancelled, QStringLiteral("export cancelled")));
        }
        if (c.tieWordEmbeddings && info.role == WeightRole::LmHead)
            continue;
        GgufTensorExport te;
        te.source = info.name;
        te.name = ggufTensorName(info.name);
        if (te.name.isEmpty())
            return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("no llama.cpp name for this tensor")).forTensor(info.name));
        const MatrixView view = model.weight(info.name);
        const std::int64_t rows = view.rows, cols = view.cols;
        const bool matrix = info.shape.size() == 2;
        // llama.cpp's llama architecture wants q/k (and their biases) in its rope layout.
        std::vector<std::int64_t> order;
        if (!qwen && (info.role == WeightRole::LinearQ || info.role == WeightRole::LinearK || info.role == WeightRole::BiasQ
                      || info.role == WeightRole::BiasK)) {
            const bool isQ = info.role == WeightRole::LinearQ || info.role == WeightRole::BiasQ;
            const std::int64_t n = matrix ? rows : cols;
            order = ropeRowOrder(n, isQ ? c.numHeads : c.numKvHeads);
        }
        std::vector<std::int64_t> dims = matrix ? std::vector<std::int64_t>{cols, rows} : std::vector<std::int64_t>{cols};
        // The tensor's type is decided here; its bytes are made when the writer reaches it (one
        // tensor at a time, dense ones a chunk of rows at a time).
        const std::size_t index = report.tensors.size();
        GgufWriter::Producer produce;
        // Rows [r0, r1) of the values in llama.cpp's row order, quantized to t.
        auto denseRows = [&model, name = info.name, order, matrix, rows, cols](GgmlType t) -> GgufWriter::Producer {
            return [&model, name, order, matrix, rows, cols, t]() -> Expected<std::vector<std::uint8_t>> {
                const MatrixView v = model.weight(name);
                if (!matrix) {
                    std::vector<float> values(static_cast<std::size_t>(cols));
                    v.rowsToF32(0, 1, values.data());
                    if (!order.empty())
                        values = permuteRows(values.data(), cols, 1, order, false);
                    return quantizeMatrix(t, values.data(), 1, cols);
                }
                const std::int64_t rowBytes = ggmlBytes(t, cols);
                std::vector<std::uint8_t> out(static_cast<std::size_t>(rows * rowBytes));
                const std::int64_t chunk = std::max<std::int64_t>(1, (std::int64_t(1) << 18) / cols);
                std::vector<float> buf(static_cast<std::size_t>(std::min(chunk, rows) * cols));
                for (std::int64_t r0 = 0; r0 < rows; r0 += chunk) {
                    const std::int64_t r1 = std::min(rows, r0 + chunk);
                    if (order.empty()) {
                        v.rowsToF32(r0, r1, buf.data());
                    } else {
                        for (std::int64_t r = r0; r < r1; ++r) {
                            const std::int64_t src = order[static_cast<std::size_t>(r)];
                            v.rowsToF32(src, src + 1, buf.data() + (r - r0) * cols);
                        }
                    }
                    for (std::int64_t r = r0; r < r1; ++r)
                        quantizeRow(t, buf.data() + (r - r0) * cols, out.data() + r * rowBytes, cols);
                }
                return out;
            };
        };
        if (!matrix) {
            te.type = GgmlType::F32;
            te.kind = QStringLiteral("f32");
            te.how = QStringLiteral("F32 (norms and biases stay f32)");
            produce = denseRows(GgmlType::F32);
        } else if (const QuantizedLayer *ql = model.quantizedLayer(info.name)) {
            const QuantFormat &qf = ql->format();
            const QString fmt = quantFormatName(qf, ql->execution);
            const auto exact = exactBlockType(qf);
            // The codes as llama.cpp's block type wants them (rows in its order, no trivial g_idx).
            auto codes = [packed = ql->packed, order]() {
                QuantizedTensor q = packed->unpack();
                if (!hasRealGroupIndex(q))
                    q.groupIndex.clear();
                if (!order.empty())
                    q = permuteRows(q, order, false);
                return q;
            };
            bool useExact = false;
            if (exact && !hasRealGroupIndex(ql->packed->groupIndex(), qf.groupSize, cols) && cols % 32 == 0
                && ql->execution == Execution::WeightOnly) {
                useExact = true;
                if (options.strictExact) { // decided by encoding once (the bytes are made again when written)
                    EncodeStats st;
                    auto enc = encodeQuantized(codes(), *exact, &st);
                    if (!enc)
                        return unexpected(std::move(enc.error()).forTensor(info.name));
                    useExact = st.inexactGroups == 0;
                }
            }
            if (useExact) {
                te.type = *exact;
                te.kind = QStringLiteral("exact");
                te.how = QStringLiteral("exact Bitsmith codes and scales (%1)").arg(fmt);
                produce = [codes, type = *exact, index, fmt, &report]() -> Expected<std::vector<std::uint8_t>> {
                    EncodeStats st;
                    auto enc = encodeQuantized(codes(), type, &st);
                    if (!enc)
                        return enc;
                    GgufTensorExport &t = report.tensors[index];
                    t.groups = st.groups;
                    t.inexactGroups = st.inexactGroups;
                    t.maxAbsDeviation = st.maxAbsDeviation;
                    if (st.inexactGroups > 0) {
                        t.kind = QStringLiteral("rounded-min");
                        t.how = QStringLiteral("Bitsmith codes kept, min rounded to fp16 in %1 of %2 groups (%3)")
                                    .arg(st.inexactGroups)
                                    .arg(st.groups)
                                    .arg(fmt);
                    }
                    return enc;
                };
            } else {
                te.type = closestType(qf.bits, cols);
                te.kind = QStringLiteral("requantized");
                te.how = QStringLiteral("requantized (%1 -> %2)").arg(fmt, QLatin1String(ggmlTypeName(te.type)));
                produce = denseRows(te.type);
            }
        } else {
            GgmlType t = GgmlType::F32;
            if (options.denseType)
                t = *options.denseType;
            else if (info.storedType == DType::BF16)
                t = GgmlType::BF16;
            else if (info.storedType == DType::F16)
                t = GgmlType::F16;
            if (cols % ggmlBlockSize(t) != 0)
                t = GgmlType::F16;
            te.type = t;
            te.kind = QStringLiteral("dense");
            te.how = options.denseType ? QStringLiteral("dense, quantized to %1").arg(QLatin1String(ggmlTypeName(t)))
                                       : QStringLiteral("dense");
            produce = denseRows(t);
        }
        te.bytes = ggmlBytes(te.type, rows * cols);
        if (auto added = w.addTensor(te.name, dims, te.type, std::move(produce)); !added)
            return unexpected(added.error());
        report.tensors.push_back(te);
    }

    if (!ropeFactors.empty()) {
        GgufTensorExport te;
        te.source = QStringLiteral("rope parameters (%1)").arg(QLatin1String(ropeTypeName(rs.type)));
        te.name = QStringLiteral("rope_freqs.weight");
        te.type = GgmlType::F32;
        te.kind = QStringLiteral("f32");
        te.how = QStringLiteral("rope frequency factors, as convert_hf_to_gguf.py writes them");
        te.bytes = static_cast<std::int64_t>(ropeFactors.size() * sizeof(float));
        auto produce = [ropeFactors]() -> Expected<std::vector<std::uint8_t>> {
            std::vector<std::uint8_t> out(ropeFactors.size() * sizeof(float));
            std::memcpy(out.data(), ropeFactors.data(), out.size());
            return out;
        };
        if (auto added = w.addTensor(te.name, {static_cast<std::int64_t>(ropeFactors.size())}, te.type, std::move(produce)); !added)
            return unexpected(added.error());
        report.tensors.push_back(te);
    }

    // ---- llama-quantize overrides: one line per role when every block agrees ----
    std::map<QString, std::map<QString, QString>> byRole; // role suffix -> tensor -> type
    for (const GgufTensorExport &t : report.tensors) {
        if (t.type == GgmlType::F32)
            continue;
        const QString role = t.name.startsWith(QLatin1String("blk.")) ? t.name.section(QLatin1Char('.'), 2) : t.name;
        byRole[role][t.name] = typeOverrideName(t.type);
    }
    for (const auto &[role, tensors] : byRole) {
        std::set<QString> types;
        for (const auto &[n, ty] : tensors)
            types.insert(ty);
        auto escape = [](QString s) { return s.replace(QLatin1Char('.'), QLatin1String("\\.")); };
        if (types.size() == 1)
            report.tensorTypeOverrides << escape(role) + QLatin1Char('=') + *types.begin();
        else
            for (const auto &[n, ty] : tensors)
                report.tensorTypeOverrides << QLatin1Char('^') + escape(n) + QLatin1Char('$') + QLatin1Char('=') + ty;
    }

    if (feedback)
        feedback->setStatus(QStringLiteral("writing %1").arg(QFileInfo(path).fileName()));
    if (auto ok = w.write(path, feedback); !ok)
        return unexpected(ok.error());
    report.fileBytes = QFileInfo(path).size();
    if (feedback)
        feedback->setProgress(1.0);
    if (!knownPre && feedback)
        feedback->log(QStringLiteral("warning: pre-tokenizer not recognised; wrote tokenizer.ggml.pre = default"));
    return report;
}

QByteArray tokenizerJsonFor(const Model &model)
{
    const QString src = model.folder();
    if (QFileInfo(src).isFile() && src.endsWith(QLatin1String(".gguf"), Qt::CaseInsensitive)) {
        auto g = GgufFile::open(src);
        if (!g)
            return {};
        const GgufValue *v = (*g)->find(QStringLiteral("tokenizer.huggingface.json"));
        return v && !v->isArray && v->strings.size() == 1 ? v->strings[0] : QByteArray();
    }
    return readFile(QDir(src).filePath(QStringLiteral("tokenizer.json")));
}

// A tokenizer.json for a gpt2-model GGUF vocabulary without one (llama.cpp's converter output).
static QByteArray synthesizeTokenizerJson(const GgufFile &g, const QString &pre)
{
    const GgufValue *tokens = g.find(QStringLiteral("tokenizer.ggml.tokens"));
    const GgufValue *merges = g.find(QStringLiteral("tokenizer.ggml.merges"));
    const GgufValue *types = g.find(QStringLiteral("tokenizer.ggml.token_type"));
    if (!tokens || !tokens->isArray || tokens->type != GgufValueType::String || !merges || merges->type != GgufValueType::String)
        return {};
    QJsonObject vocab;
    QJsonArray added;
    for (std::size_t i = 0; i < tokens->strings.size(); ++i) {
        const QString t = QString::fromUtf8(tokens->strings[i]);
        const std::int64_t type = types && i < types->ints.size() ? types->ints[i] : 1;
        if (type == 3 || type == 4) {
            QJsonObject a;
            a.insert(QStringLiteral("id"), static_cast<qint64>(i));
            a.insert(QStringLiteral("content"), t);
            a.insert(QStringLiteral("special"), type == 3);
            added.append(a);
        }
        vocab.insert(t, static_cast<qint64>(i));
    }
    QJsonArray m;
    for (const QByteArray &s : merges->strings)
        m.append(QString::fromUtf8(s));
    if (pre != QLatin1String("gpt-2"))
        return {}; // other pre-tokenizers need their split regex, which only tokenizer.json carries
    QJsonObject byteLevel{{QStringLiteral("type"), QStringLiteral("ByteLevel")},
                          {QStringLiteral("add_prefix_space"), false},
                          {QStringLiteral("trim_offsets"), true},
                          {QStringLiteral("use_regex"), true}};
    QJsonObject model{{QStringLiteral("type"), QStringLiteral("BPE")},
                      {QStringLiteral("vocab"), vocab},
                      {QStringLiteral("merges"), m}};
    QJsonObject root{{QStringLiteral("version"), QStringLiteral("1.0")},
                     {QStringLiteral("added_tokens"), added},
                     {QStringLiteral("pre_tokenizer"), byteLevel},
                     {QStringLiteral("decoder"), byteLevel},
                     {QStringLiteral("model"), model}};
    return QJsonDocument(root).toJson(QJsonDocument::Compact);
}

Expected<std::shared_ptr<Model>> loadGgufModel(const QString &path, Feedback *feedback)
{
    if (feedback)
        feedback->setStatus(QStringLiteral("reading GGUF header"));
    auto opened = GgufFile::open(path);
    if (!opened)
        return unexpected(opened.error());
    const GgufFile &g = **opened;
    const QString arch = g.stringValue(QStringLiteral("general.architecture")).value_or(QString());
    if (arch != QLatin1String("llama") && arch != QLatin1String("qwen2") && arch != QLatin1String("qwen3"))
        return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("GGUF architecture '%1' is not supported").arg(arch))
                              .inFile(path)
                              .forParameter(QStringLiteral("general.architecture"))
                              .withHint(QStringLiteral("Bitsmith runs llama (Llama, Mistral), qwen2 and qwen3 models")));
    const bool qwen3 = arch == QLatin1String("qwen3");
    const bool qwen = arch == QLatin1String("qwen2") || qwen3;
    auto num = [&](const char *k) { return g.intValue(arch + QLatin1Char('.') + QLatin1String(k)); };
    auto real = [&](const char *k) { return g.floatValue(arch + QLatin1Char('.') + QLatin1String(k)); };
    const GgufTensorInfo *embd = g.findTensor(QStringLiteral("token_embd.weight"));
    if (!embd || embd->dims.size() != 2)
        return unexpected(fail(ErrorCode::Mismatch, QStringLiteral("token_embd.weight is missing or not a matrix")).inFile(path));
    // The sizes come from the metadata; the tensors are then checked against them like a checkpoint.
    QJsonObject cfg;
    cfg.insert(QStringLiteral("architectures"), QJsonArray{qwen3 ? QStringLiteral("Qwen3ForCausalLM")
                                                           : qwen ? QStringLiteral("Qwen2ForCausalLM")
                                                                  : QStringLiteral("LlamaForCausalLM")});
    cfg.insert(QStringLiteral("model_type"), arch);
    const std::int64_t hidden = num("embedding_length").value_or(0), heads = num("attention.head_count").value_or(0);
    cfg.insert(QStringLiteral("hidden_size"), static_cast<qint64>(hidden));
    cfg.insert(QStringLiteral("intermediate_size"), static_cast<qint64>(num("feed_forward_length").value_or(0)));
    cfg.insert(QStringLiteral("num_hidden_layers"), static_cast<qint64>(num("block_count").value_or(0)));
    cfg.insert(QStringLiteral("num_attention_heads"), static_cast<qint64>(heads));
    cfg.insert(QStringLiteral("num_key_value_heads"), static_cast<qint64>(num("attention.head_count_kv").value_or(heads)));
    cfg.insert(QStringLiteral("head_dim"), static_cast<qint64>(num("attention.key_length").value_or(heads > 0 ? hidden / heads : 0)));
    cfg.insert(QStringLiteral("max_position_embeddings"), static_cast<qint64>(num("context_length").value_or(2048)));
    cfg.insert(QStringLiteral("rope_theta"), real("rope.freq_base").value_or(10000.0));
    // Rope scaling: linear from the metadata; a rope_freqs tensor (Llama 3.1 and later) divides
    // each frequency, which is longrope with equal short and long factors and no attention factor.
    const QString scalingType = g.stringValue(arch + QStringLiteral(".rope.scaling.type")).value_or(QStringLiteral("none"));
    if (const GgufTensorInfo *freqs = g.findTensor(QStringLiteral("rope_freqs.weight"))) {
        const std::vector<float> f = g.dequantize(*freqs);
        QJsonArray factors;
        for (float v : f)
            factors.append(static_cast<double>(v));
        cfg.insert(QStringLiteral("rope_scaling"), QJsonObject{{QStringLiteral("rope_type"), QStringLiteral("longrope")},
                                                               {QStringLiteral("short_factor"), factors},
                                                               {QStringLiteral("long_factor"), factors},
                                                               {QStringLiteral("attention_factor"), 1.0},
                                                               {QStringLiteral("original_max_position_embeddings"),
                                                                static_cast<qint64>(num("context_length").value_or(2048))}});
    } else if (scalingType == QLatin1String("linear")) {
        cfg.insert(QStringLiteral("rope_scaling"), QJsonObject{{QStringLiteral("rope_type"), QStringLiteral("linear")},
                                                               {QStringLiteral("factor"), real("rope.scaling.factor").value_or(1.0)}});
    } else if (scalingType != QLatin1String("none")) {
        return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("GGUF rope scaling '%1' is not supported yet").arg(scalingType))
                              .inFile(path)
                              .forParameter(arch + QStringLiteral(".rope.scaling.type"))
                              .withHint(QStringLiteral("none, linear and rope_freqs (Llama 3.1) are read")));
    }
    cfg.insert(QStringLiteral("rms_norm_eps"), real("attention.layer_norm_rms_epsilon").value_or(1e-6));
    cfg.insert(QStringLiteral("vocab_size"), static_cast<qint64>(embd->dims[1]));
    cfg.insert(QStringLiteral("tie_word_embeddings"), g.findTensor(QStringLiteral("output.weight")) == nullptr);
    if (!qwen) {
        const bool bias = g.findTensor(QStringLiteral("blk.0.attn_q.bias")) != nullptr;
        cfg.insert(QStringLiteral("attention_bias"), bias);
    }
    if (auto bos = g.intValue(QStringLiteral("tokenizer.ggml.bos_token_id")))
        cfg.insert(QStringLiteral("bos_token_id"), static_cast<qint64>(*bos));
    if (auto eos = g.intValue(QStringLiteral("tokenizer.ggml.eos_token_id")))
        cfg.insert(QStringLiteral("eos_token_id"), static_cast<qint64>(*eos));
    auto config = ModelConfig::fromJson(QJsonDocument(cfg).toJson(), path);
    if (!config)
        return unexpected(config.error());

    std::shared_ptr<const Tokenizer> tokenizer;
    QByteArray tokJson;
    if (const GgufValue *hf = g.find(QStringLiteral("tokenizer.huggingface.json")); hf && hf->strings.size() == 1)
        tokJson = hf->strings[0];
    else if (g.stringValue(QStringLiteral("tokenizer.ggml.model")) == QStringLiteral("gpt2"))
        tokJson = synthesizeTokenizerJson(g, g.stringValue(QStringLiteral("tokenizer.ggml.pre")).value_or(QString()));
    if (!tokJson.isEmpty()) {
        auto tok = Tokenizer::fromJson(tokJson, path);
        if (!tok)
            return unexpected(tok.error());
        tokenizer = *tok;
    }

    std::vector<InMemoryTensor> tensors;
    for (std::size_t i = 0; i < g.tensors().size(); ++i) {
        const GgufTensorInfo &t = g.tensors()[i];
        if (feedback) {
            if (feedback->isCancelled())
                return unexpected(fail(ErrorCode::Cancelled, QStringLiteral("loading cancelled")).inFile(path));
            feedback->setProgress(0.5 * static_cast<double>(i) / static_cast<double>(g.tensors().size()));
        }
        if (t.name == QLatin1String("rope_freqs.weight"))
            continue; // read into the rope parameters above
        InMemoryTensor m;
        m.name = hfTensorName(t.name);
        if (m.name.isEmpty())
            return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("unknown tensor for architecture %1").arg(arch))
                                  .inFile(path)
                                  .forTensor(t.name));
        m.shape = t.shape();
        m.storedBytes = t.bytes;
        m.format = QString::fromLatin1(ggmlTypeName(t.type));
        m.storedType = t.type == GgmlType::F32 ? DType::F32 : t.type == GgmlType::F16 ? DType::F16
                     : t.type == GgmlType::BF16 ? DType::BF16 : DType::U8;
        const std::int64_t rows = m.shape.size() == 2 ? m.shape[0] : 1, cols = m.shape.back();
        std::vector<std::int64_t> order;
        const bool isQ = t.name.endsWith(QLatin1String("attn_q.weight")) || t.name.endsWith(QLatin1String("attn_q.bias"));
        const bool isK = t.name.endsWith(QLatin1String("attn_k.weight")) || t.name.endsWith(QLatin1String("attn_k.bias"));
        if (!qwen && (isQ || isK)) {
            const std::int64_t n = m.shape.size() == 2 ? rows : cols;
            const int h = isQ ? config->numHeads : config->numKvHeads;
            if (h <= 0 || n % (2 * h) != 0)
                return unexpected(fail(ErrorCode::Mismatch, QStringLiteral("q/k rows do not split into heads")).inFile(path).forTensor(t.name));
            order = ropeRowOrder(n, h);
        }
        const auto bytes = g.tensorBytes(t);
        m.storedData = std::span<const std::byte>(reinterpret_cast<const std::byte *>(bytes.data()), bytes.size());
        if (m.shape.size() == 2)
            if (auto q = decodeToQuantized(t.type, bytes.data(), rows, cols)) {
                // exact as b-bit codes: runs on the packed kernel; f32 rows come from it on demand
                m.quantized = order.empty() ? std::move(*q) : permuteRows(*q, order, true);
                m.fill = [](std::int64_t, std::int64_t, float *) {}; // replaced by the packed form when bound
                tensors.push_back(std::move(m));
                continue;
            }
        // Rows dequantized from the mapped file on demand (HF row d is stored row inverse[d]).
        const GgmlType type = t.type;
        const std::uint8_t *data = bytes.data();
        if (m.shape.size() == 2) {
            std::vector<std::int64_t> inverse;
            if (!order.empty()) {
                inverse.resize(order.size());
                for (std::size_t r = 0; r < order.size(); ++r)
                    inverse[static_cast<std::size_t>(order[r])] = static_cast<std::int64_t>(r);
            }
            const std::int64_t rowBytes = ggmlBytes(type, cols);
            m.fill = [type, data, cols, rowBytes, inverse = std::move(inverse)](std::int64_t r0, std::int64_t r1, float *out) {
                for (std::int64_t d = r0; d < r1; ++d) {
                    const std::int64_t src = inverse.empty() ? d : inverse[static_cast<std::size_t>(d)];
                    dequantizeRow(type, data + src * rowBytes, out + (d - r0) * cols, cols);
                }
            };
        } else {
            m.values = g.dequantize(t);
            if (!order.empty())
                m.values = permuteRows(m.values.data(), cols, 1, order, true);
        }
        tensors.push_back(std::move(m));
    }
    if (feedback)
        feedback->setStatus(QStringLiteral("binding weights"));
    return Model::fromTensors(path, *config, tokenizer, std::move(tensors), feedback, *opened);
}

} // namespace bitsmith::core::gguf
