// model.cpp: binding checkpoint tensors to the Llama-family layout, with shape checks.
#include "model.h"

#include <QCoreApplication>
#include <QCryptographicHash>
#include <QDir>
#include <QFileInfo>

#include "core/gguf/ggufmodel.h" // loadGgufModel: .gguf files open like folders
#include "core/kernels/packedweights.h"

#include <QJsonDocument>
#include <QJsonObject>

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
    case WeightRole::QNorm: return "attn.q_norm";
    case WeightRole::KNorm: return "attn.k_norm";
    case WeightRole::PostAttnNorm: return "attn.post_norm";
    case WeightRole::PostMlpNorm: return "mlp.post_norm";
    case WeightRole::LmHead: return "lm_head";
    case WeightRole::Router: return "mlp.router";
    }
    return "?";
}

QString routerTensorName(const ModelConfig &config, int block)
{
    return QStringLiteral("model.layers.%1.%2.gate.weight")
        .arg(block)
        .arg(config.architecture == Architecture::Mixtral ? QStringLiteral("block_sparse_moe") : QStringLiteral("mlp"));
}

QString expertTensorName(const ModelConfig &config, int block, int expert, WeightRole role)
{
    if (config.architecture == Architecture::Mixtral) // w1 = gate, w3 = up, w2 = down
        return QStringLiteral("model.layers.%1.block_sparse_moe.experts.%2.%3.weight")
            .arg(block)
            .arg(expert)
            .arg(role == WeightRole::LinearGate ? QStringLiteral("w1") : role == WeightRole::LinearUp ? QStringLiteral("w3") : QStringLiteral("w2"));
    return QStringLiteral("model.layers.%1.mlp.experts.%2.%3.weight")
        .arg(block)
        .arg(expert)
        .arg(role == WeightRole::LinearGate ? QStringLiteral("gate_proj") : role == WeightRole::LinearUp ? QStringLiteral("up_proj") : QStringLiteral("down_proj"));
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

// ---- TensorSlot -----------------------------------------------------------------------------

bool TensorSlot::f32InPlace() const
{
    return raw && type == DType::F32 && reinterpret_cast<std::uintptr_t>(raw) % alignof(float) == 0;
}

const float *TensorSlot::f32() const
{
    if (f32InPlace())
        return static_cast<const float *>(raw);
    if (const float *p = m_ready.load(std::memory_order_acquire))
        return p;
    std::lock_guard lock(m_mutex);
    if (!m_widened) {
        const auto count = static_cast<std::size_t>(rows * cols);
        auto buf = std::make_unique_for_overwrite<float[]>(count ? count : 1);
        rowsToF32(0, rows, buf.get());
        m_widened = std::move(buf);
        m_ready.store(m_widened.get(), std::memory_order_release);
    }
    return m_widened.get();
}

void TensorSlot::releaseF32() const
{
    std::lock_guard lock(m_mutex);
    m_ready.store(nullptr, std::memory_order_release);
    m_widened.reset();
}

std::int64_t TensorSlot::widenedBytes() const
{
    std::lock_guard lock(m_mutex);
    return m_widened ? rows * cols * 4 : 0;
}

void TensorSlot::rowsToF32(std::int64_t r0, std::int64_t r1, float *out) const
{
    if (r1 <= r0)
        return;
    if (raw) {
        const std::size_t offset = static_cast<std::size_t>(r0 * cols) * dtypeSize(type);
        convertToFloat(type, static_cast<const std::byte *>(raw) + offset, static_cast<std::size_t>((r1 - r0) * cols), out);
    } else if (rowFill) {
        rowFill(r0, r1, out);
    } else {
        std::fill_n(out, (r1 - r0) * cols, 0.0f);
    }
}

void MatrixView::rowsToF32(std::int64_t r0, std::int64_t r1, float *out) const
{
    if (slot)
        slot->rowsToF32(r0, r1, out);
    else if (ptr)
        std::copy_n(ptr + r0 * cols, (r1 - r0) * cols, out);
}

std::vector<std::byte> MatrixView::toBytes(DType t) const
{
    const auto n = static_cast<std::size_t>(rows * cols);
    std::vector<std::byte> bytes(n * dtypeSize(t));
    if (slot && slot->raw && slot->type == t) {
        std::memcpy(bytes.data(), slot->raw, bytes.size());
        return bytes;
    }
    const std::int64_t chunk = std::max<std::int64_t>(1, (std::int64_t(1) << 18) / std::max<std::int64_t>(1, cols));
    std::vector<float> buf(static_cast<std::size_t>(std::min(chunk, rows) * cols));
    for (std::int64_t r0 = 0; r0 < rows; r0 += chunk) {
        const std::int64_t r1 = std::min(rows, r0 + chunk);
        rowsToF32(r0, r1, buf.data());
        const auto m = static_cast<std::size_t>((r1 - r0) * cols);
        std::byte *dst = bytes.data() + static_cast<std::size_t>(r0 * cols) * dtypeSize(t);
        if (t == DType::F32) {
            std::memcpy(dst, buf.data(), m * 4);
            continue;
        }
        for (std::size_t i = 0; i < m; ++i) {
            const std::uint16_t h = t == DType::BF16 ? floatToBf16(buf[i]) : floatToHalf(buf[i]);
            std::memcpy(dst + 2 * i, &h, 2);
        }
    }
    return bytes;
}

// ---- statistics -------------------------------------------------------------------------------

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

namespace {

// Exact zeros (+0 and -0) of stored elements, read in place.
std::int64_t countZeros(DType type, const void *data, std::int64_t count)
{
    std::int64_t zeros = 0;
    if (type == DType::BF16 || type == DType::F16) {
        const auto *h = static_cast<const std::uint16_t *>(data);
        for (std::int64_t i = 0; i < count; ++i)
            zeros += (h[i] & 0x7FFF) == 0;
    } else if (type == DType::F32) {
        const auto *f = static_cast<const std::uint32_t *>(data); // byte-wise copy not needed: aligned in practice
        for (std::int64_t i = 0; i < count; ++i) {
            std::uint32_t v;
            std::memcpy(&v, f + i, 4);
            zeros += (v & 0x7FFFFFFFu) == 0;
        }
    } else {
        std::vector<float> tmp(static_cast<std::size_t>(std::min<std::int64_t>(count, 1 << 16)));
        for (std::int64_t i = 0; i < count; i += static_cast<std::int64_t>(tmp.size())) {
            const std::int64_t n = std::min<std::int64_t>(static_cast<std::int64_t>(tmp.size()), count - i);
            convertToFloat(type, static_cast<const std::byte *>(data) + static_cast<std::size_t>(i) * dtypeSize(type),
                           static_cast<std::size_t>(n), tmp.data());
            for (std::int64_t j = 0; j < n; ++j)
                zeros += tmp[static_cast<std::size_t>(j)] == 0.0f;
        }
    }
    return zeros;
}

double slotZeroFraction(const TensorSlot &s, const PackedWeights *packed)
{
    const std::int64_t count = s.rows * s.cols;
    if (count <= 0)
        return 0.0;
    if (packed)
        return packed->zeroFraction();
    if (s.raw)
        return static_cast<double>(countZeros(s.type, s.raw, count)) / static_cast<double>(count);
    // rows on demand: a few rows at a time
    const std::int64_t step = std::max<std::int64_t>(1, (1 << 18) / std::max<std::int64_t>(s.cols, 1));
    std::vector<float> buf(static_cast<std::size_t>(step * s.cols));
    std::int64_t zeros = 0;
    for (std::int64_t r = 0; r < s.rows; r += step) {
        const std::int64_t r1 = std::min(s.rows, r + step);
        s.rowsToF32(r, r1, buf.data());
        for (std::int64_t i = 0; i < (r1 - r) * s.cols; ++i)
            zeros += buf[static_cast<std::size_t>(i)] == 0.0f;
    }
    return static_cast<double>(zeros) / static_cast<double>(count);
}

} // namespace

bool Model::statisticsComputed() const
{
    std::lock_guard lock(m_statsMutex);
    for (const auto &w : m_weights)
        if (w.sparsity < 0)
            return false;
    return true;
}

Expected<void> Model::computeStatistics(Feedback *feedback) const
{
    std::lock_guard lock(m_statsMutex);
    const double total = static_cast<double>(m_weights.size());
    double done = 0;
    for (WeightInfo &w : m_weights) {
        if (feedback) {
            if (feedback->isCancelled())
                return unexpected(fail(ErrorCode::Cancelled, QStringLiteral("statistics cancelled")).inFile(m_folder));
            feedback->setProgress(done++ / total);
        }
        if (w.sparsity >= 0)
            continue;
        if (!isLinearRole(w.role)) {
            w.sparsity = 0.0;
            continue;
        }
        const TensorSlot *s = slot(w.name);
        const QuantizedLayer *q = quantizedLayer(w.name);
        w.sparsity = s ? slotZeroFraction(*s, q ? q->packed.get() : nullptr) : 0.0;
    }
    return {};
}

double Model::linearSparsity() const
{
    if (!statisticsComputed())
        (void)computeStatistics();
    double zeros = 0.0, total = 0.0;
    for (const auto &w : m_weights) {
        if (!isLinearRole(w.role))
            continue;
        zeros += w.sparsity * static_cast<double>(w.parameters);
        total += static_cast<double>(w.parameters);
    }
    return total > 0 ? zeros / total : 0.0;
}

// ---- slots and views --------------------------------------------------------------------------

TensorSlot *Model::newSlot(const QString &name)
{
    m_slots.push_back(std::make_unique<TensorSlot>());
    TensorSlot *s = m_slots.back().get();
    m_slotIndex[name] = s;
    return s;
}

TensorSlot *Model::slotFor(const QString &name)
{
    auto it = m_slotIndex.find(name);
    return it == m_slotIndex.end() ? nullptr : it->second;
}

const TensorSlot *Model::slot(const QString &name) const
{
    auto it = m_slotIndex.find(name);
    return it == m_slotIndex.end() ? nullptr : it->second;
}

void Model::releaseF32(const QString &name) const
{
    if (const TensorSlot *s = slot(name))
        s->releaseF32();
}

void Model::releaseAllF32() const
{
    for (const auto &s : m_slots)
        s->releaseF32();
}

std::int64_t Model::residentBytes() const
{
    std::int64_t n = 0;
    for (const auto &s : m_slots) {
        n += s->widenedBytes();
        if (s->owned)
            n += s->raw ? s->rows * s->cols * static_cast<std::int64_t>(dtypeSize(s->type)) : 0;
    }
    for (const QuantizedLayer &q : m_quantized)
        if (q.packed)
            n += q.packed->residentBytes();
    return n;
}

MatrixView Model::weight(const QString &name) const
{
    for (const auto &[n, v] : m_views)
        if (n == name)
            return v;
    return {};
}

const QuantizedLayer *Model::quantizedLayer(const QString &tensorName) const
{
    for (const QuantizedLayer &q : m_quantized)
        if (q.tensor == tensorName)
            return &q;
    return nullptr;
}

// ---- working copies ---------------------------------------------------------------------------

struct Model::SpillFile
{
    QFile file;
    qint64 size = 0;
    ~SpillFile() { file.close(); }
};

std::shared_ptr<Model> Model::workingCopy() const
{
    std::shared_ptr<Model> m(new Model);
    m->m_folder = m_folder;
    m->m_config = m_config;
    m->m_tokenizer = m_tokenizer;
    m->m_files = m_files;
    m->m_keepAlive = m_keepAlive;
    m->m_spill = m_spill;
    {
        std::lock_guard lock(m_statsMutex);
        m->m_weights = m_weights;
    }
    m->m_quantized = m_quantized;
    m->m_pruned = m_pruned;
    m->m_mutable = true;
    std::map<const TensorSlot *, const TensorSlot *> remap;
    for (const auto &[name, view] : m_views) {
        TensorSlot *copy = m->newSlot(name);
        const TensorSlot *orig = view.slot;
        copy->rows = orig->rows;
        copy->cols = orig->cols;
        copy->type = orig->type;
        copy->raw = orig->raw;
        copy->rowFill = orig->rowFill; // captures of the original read shared, immutable data
        copy->owned = orig->owned;     // shared ownership: an edit replaces, never writes into, it
        remap[orig] = copy;
        MatrixView v = view;
        v.slot = copy;
        m->m_views.emplace_back(name, v);
    }
    auto map = [&](MatrixView v) {
        if (v.slot)
            v.slot = remap.at(v.slot);
        return v;
    };
    m->m_embedding = map(m_embedding);
    m->m_finalNorm = map(m_finalNorm);
    m->m_lmHead = map(m_lmHead);
    for (const BlockWeights &b : m_blocks) {
        BlockWeights c = b;
        for (MatrixView *v : {&c.attnNorm, &c.q, &c.k, &c.v, &c.o, &c.qBias, &c.kBias, &c.vBias, &c.oBias, &c.mlpNorm,
                              &c.gate, &c.up, &c.down, &c.gateBias, &c.upBias, &c.downBias, &c.qNorm, &c.kNorm, &c.postAttnNorm, &c.postMlpNorm, &c.router})
            *v = map(*v);
        for (ExpertWeights &e : c.experts)
            for (MatrixView *v : {&e.gate, &e.up, &e.down})
                *v = map(*v);
        m->m_blocks.push_back(c);
    }
    return m;
}

std::shared_ptr<Model> Model::cloneMutable() const
{
    std::shared_ptr<Model> m = workingCopy();
    for (const auto &[name, view] : m->m_views)
        m->mutableWeight(name);
    return m;
}

float *Model::mutableWeight(const QString &name)
{
    if (!m_mutable)
        return nullptr;
    TensorSlot *s = slotFor(name);
    if (!s)
        return nullptr;
    if (s->owned && s->owned.use_count() == 1 && s->raw == s->owned.get() && s->type == DType::F32)
        return static_cast<float *>(s->owned.get());
    const auto count = static_cast<std::size_t>(s->rows * s->cols);
    std::shared_ptr<float[]> buf(new float[count ? count : 1]);
    s->rowsToF32(0, s->rows, buf.get());
    s->releaseF32();
    s->owned = std::static_pointer_cast<void>(std::shared_ptr<float>(buf, buf.get()));
    s->raw = buf.get();
    s->type = DType::F32;
    s->rowFill = nullptr;
    return buf.get();
}

Expected<void> Model::setSpillFile(const QString &path)
{
    auto spill = std::make_shared<SpillFile>();
    spill->file.setFileName(path);
    if (!spill->file.open(QIODevice::ReadWrite | QIODevice::Truncate))
        return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot create the spill file: %1").arg(spill->file.errorString()))
                              .inFile(path)
                              .withHint(QStringLiteral("check free disk space and permissions")));
    m_spill = std::move(spill);
    return {};
}

namespace {

// Appends bytes (and zero padding) to the spill file and maps them back read-only.
Expected<const std::uint8_t *> appendAndMap(QFile &file, qint64 &size, const std::uint8_t *data, std::size_t n,
                                            std::size_t padding)
{
    const qint64 offset = (size + 4095) / 4096 * 4096;
    if (!file.seek(offset))
        return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot seek in the spill file")).inFile(file.fileName()));
    const std::vector<char> zeros(padding, 0);
    if (file.write(reinterpret_cast<const char *>(data), static_cast<qint64>(n)) != static_cast<qint64>(n)
        || file.write(zeros.data(), static_cast<qint64>(padding)) != static_cast<qint64>(padding) || !file.flush())
        return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot write the spill file: %1").arg(file.errorString()))
                              .inFile(file.fileName())
                              .withHint(QStringLiteral("check free disk space")));
    size = offset + static_cast<qint64>(n + padding);
    uchar *p = file.map(offset, static_cast<qint64>(n + padding), QFileDevice::MapPrivateOption);
    if (!p)
        return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot map the spill file: %1").arg(file.errorString())).inFile(file.fileName()));
    return reinterpret_cast<const std::uint8_t *>(p);
}

} // namespace

Expected<std::shared_ptr<const PackedWeights>> Model::spill(PackedWeights packed)
{
    if (!m_spill || packed.codesInPlace())
        return std::make_shared<const PackedWeights>(std::move(packed));
    const auto codes = packed.packedCodes();
    auto mapped = appendAndMap(m_spill->file, m_spill->size, codes.data(), codes.size(), PackedWeights::kTailPadding);
    if (!mapped)
        return unexpected(mapped.error());
    auto inPlace = PackedWeights::fromPackedInPlace(packed.rows(), packed.cols(), packed.format(),
                                                    std::span(*mapped, codes.size()), PackedWeights::kTailPadding, m_spill,
                                                    packed.scales(), packed.zeros(), packed.groupIndex());
    if (!inPlace)
        return unexpected(inPlace.error());
    return std::make_shared<const PackedWeights>(std::move(*inPlace));
}

void Model::finishEditing(const QString &name)
{
    TensorSlot *s = slotFor(name);
    if (!s || !m_mutable)
        return;
    s->releaseF32();
    if (const QuantizedLayer *q = quantizedLayer(name)) {
        std::shared_ptr<const PackedWeights> packed = q->packed;
        s->owned.reset();
        s->raw = nullptr;
        s->rowFill = [packed](std::int64_t r0, std::int64_t r1, float *out) { packed->dequantizeRows(r0, r1, out); };
        return;
    }
    if (!m_pruned.count(name) || !s->owned || s->type != DType::F32)
        return; // unchanged (still in place) or modified (stays f32)
    DType stored = DType::F32;
    for (const WeightInfo &w : m_weights)
        if (w.name == name)
            stored = w.storedType;
    if (stored != DType::BF16 && stored != DType::F16)
        return;
    // Back to the stored dtype (setPruned already rounded the values to it, so this is exact).
    const auto count = static_cast<std::size_t>(s->rows * s->cols);
    const float *src = static_cast<const float *>(s->raw);
    std::vector<std::uint16_t> halfs(count);
    for (std::size_t i = 0; i < count; ++i)
        halfs[i] = stored == DType::BF16 ? floatToBf16(src[i]) : floatToHalf(src[i]);
    if (m_spill) {
        auto mapped = appendAndMap(m_spill->file, m_spill->size, reinterpret_cast<const std::uint8_t *>(halfs.data()),
                                   count * 2, 0);
        if (mapped) {
            s->owned = m_spill;
            s->raw = *mapped;
            s->type = stored;
            return;
        }
    }
    auto buf = std::make_shared<std::vector<std::uint16_t>>(std::move(halfs));
    s->raw = buf->data();
    s->owned = buf;
    s->type = stored;
}

Expected<void> Model::setQuantized(const QString &tensorName, QuantizedTensor weights, Execution execution)
{
    TensorSlot *s = slotFor(tensorName);
    if (!m_mutable || !s || s->rows != weights.rows || s->cols != weights.cols)
        return unexpected(fail(ErrorCode::Internal, QStringLiteral("cannot record a quantized form for this tensor"))
                              .forTensor(tensorName));
    auto packed = PackedWeights::pack(weights);
    if (!packed)
        return unexpected(std::move(packed.error()).forTensor(tensorName));
    auto stored = spill(std::move(*packed));
    if (!stored)
        return unexpected(std::move(stored.error()).forTensor(tensorName));
    {
        std::lock_guard lock(m_statsMutex);
        for (WeightInfo &w : m_weights) {
            if (w.name != tensorName)
                continue;
            w.sparsity = (*stored)->zeroFraction();
            w.storedBytes = (weights.storageBits() + 7) / 8;
            w.bitsPerWeight = weights.bitsPerWeight();
            w.format = quantFormatName(weights.format, execution);
        }
    }
    // The working f32 values become the dequantized ones (later blocks calibrate on them) until
    // finishEditing() drops them.
    if (float *data = mutableWeight(tensorName))
        weights.dequantize(data);
    for (QuantizedLayer &q : m_quantized) {
        if (q.tensor == tensorName) {
            q.packed = std::move(*stored);
            q.execution = execution;
            return {};
        }
    }
    m_quantized.push_back({tensorName, std::move(*stored), execution});
    return {};
}

Expected<void> Model::setPruned(const QString &tensorName, std::span<const float> weights)
{
    float *data = mutableWeight(tensorName);
    const MatrixView view = weight(tensorName);
    if (!data || static_cast<std::int64_t>(weights.size()) != view.rows * view.cols)
        return unexpected(fail(ErrorCode::Internal, QStringLiteral("cannot record a pruned form for this tensor"))
                              .forTensor(tensorName));
    std::lock_guard lock(m_statsMutex);
    for (WeightInfo &w : m_weights) {
        if (w.name != tensorName)
            continue;
        for (std::size_t i = 0; i < weights.size(); ++i) {
            const float v = weights[i];
            if (w.storedType == DType::BF16)
                data[i] = bf16ToFloat(floatToBf16(v));
            else if (w.storedType == DType::F16) {
                const std::uint16_t h = floatToHalf(v);
                convertToFloat(DType::F16, &h, 1, &data[i]);
            }
            else
                data[i] = v;
        }
        w.sparsity = static_cast<double>(countZeros(DType::F32, data, view.rows * view.cols))
                   / static_cast<double>(std::max<std::int64_t>(1, view.rows * view.cols));
    }
    m_pruned.insert(tensorName);
    return {};
}

QString Model::weightsHash() const
{
    if (!m_hash.isEmpty())
        return m_hash;
    QCryptographicHash hash(QCryptographicHash::Sha256);
    for (const TensorRecord *rec : m_files->tensors()) {
        hash.addData(rec->name.toUtf8());
        hash.addData(QByteArrayView(reinterpret_cast<const char *>(rec->data), static_cast<qsizetype>(rec->nbytes)));
    }
    if (m_files->tensors().empty()) // a model from tensors given by value (GGUF): their stored bytes
        for (const auto &[name, bytes] : m_hashSources) {
            hash.addData(name.toUtf8());
            hash.addData(QByteArrayView(reinterpret_cast<const char *>(bytes.data()), static_cast<qsizetype>(bytes.size())));
        }
    m_hash = QStringLiteral("sha256:") + QString::fromLatin1(hash.result().toHex());
    return m_hash;
}

QString quantFormatName(const QuantFormat &f, Execution execution)
{
    if (execution == Execution::W8A8)
        return QStringLiteral("w8a8");
    QString s = QStringLiteral("q%1").arg(f.bits);
    if (f.groupSize > 0)
        s += QStringLiteral(" g%1").arg(f.groupSize);
    else if (f.groupSize == 0)
        s += QStringLiteral(" per-channel");
    else
        s += QStringLiteral(" per-tensor");
    if (f.symmetric)
        s += QStringLiteral(" sym");
    return s;
}

static QString shapeString(const std::vector<std::int64_t> &shape)
{
    QStringList parts;
    for (auto d : shape)
        parts << QString::number(d);
    return QLatin1Char('[') + parts.join(QStringLiteral(", ")) + QLatin1Char(']');
}

Expected<void> Model::readQuantizationConfig()
{
    const QString path = QDir(m_folder).filePath(QStringLiteral("config.json"));
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly))
        return {};
    const QJsonObject qc = QJsonDocument::fromJson(f.readAll()).object().value(QLatin1String("quantization_config")).toObject();
    if (qc.isEmpty())
        return {};
    const QString method = qc.value(QLatin1String("quant_method")).toString();
    if (method != QLatin1String("bitsmith"))
        return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("quantization method '%1' is not supported").arg(method))
                              .inFile(path)
                              .forParameter(QStringLiteral("quantization_config"))
                              .withHint(QStringLiteral("Bitsmith loads dense checkpoints and its own compressed folders")));
    const int version = qc.value(QLatin1String("format_version")).toInt(0);
    if (version != PackedWeights::kPackedLayoutVersion)
        return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("compressed format version %1 (this Bitsmith reads %2)")
                                                           .arg(version)
                                                           .arg(PackedWeights::kPackedLayoutVersion))
                              .inFile(path)
                              .withHint(QStringLiteral("recompress the model with this Bitsmith")));
    const QJsonObject layers = qc.value(QLatin1String("layers")).toObject();
    for (auto it = layers.begin(); it != layers.end(); ++it) {
        const QJsonObject l = it.value().toObject();
        StoredQuantization sq;
        sq.format.bits = l.value(QLatin1String("bits")).toInt(0);
        sq.format.groupSize = l.value(QLatin1String("group_size")).toInt(-2);
        sq.format.symmetric = l.value(QLatin1String("sym")).toBool(false);
        sq.actOrder = l.value(QLatin1String("act_order")).toBool(false);
        sq.execution = l.value(QLatin1String("execution")).toString() == QLatin1String("w8a8") ? Execution::W8A8 : Execution::WeightOnly;
        sq.sparsity = l.contains(QLatin1String("sparsity")) ? l.value(QLatin1String("sparsity")).toDouble(-1.0) : -1.0;
        if (sq.format.bits < 2 || sq.format.bits > 8 || sq.format.groupSize < -1)
            return unexpected(fail(ErrorCode::Format, QStringLiteral("invalid quantization entry (bits %1, group_size %2)")
                                                          .arg(sq.format.bits)
                                                          .arg(sq.format.groupSize))
                                  .inFile(path)
                                  .forLayer(it.key()));
        m_storedQuantization.emplace(it.key() + QStringLiteral(".weight"), sq);
    }
    return {};
}

Expected<MatrixView> Model::bindQuantized(const QString &name, WeightRole role, int block,
                                          const std::vector<std::int64_t> &shape)
{
    const StoredQuantization &sq = m_storedQuantization.at(name);
    const QString base = name.chopped(7);
    auto need = [&](const QString &suffix, DType dtype) -> Expected<const TensorRecord *> {
        const TensorRecord *rec = m_files->find(base + suffix);
        if (!rec)
            return unexpected(fail(ErrorCode::Mismatch, QStringLiteral("missing tensor of a quantized layer"))
                                  .inFile(m_folder)
                                  .forTensor(base + suffix)
                                  .withHint(QStringLiteral("the compressed folder is incomplete; compress the model again")));
        if (rec->dtype != dtype)
            return unexpected(fail(ErrorCode::Format, QStringLiteral("tensor has dtype %1, expected %2")
                                                          .arg(QLatin1String(dtypeName(rec->dtype)), QLatin1String(dtypeName(dtype))))
                                  .inFile(rec->file)
                                  .forTensor(rec->name));
        m_auxiliaryTensors.insert(rec->name);
        return rec;
    };
    auto codes = need(QStringLiteral(".qweight"), DType::U8);
    if (!codes)
        return unexpected(codes.error());
    auto scales = need(QStringLiteral(".scales"), DType::F16);
    if (!scales)
        return unexpected(scales.error());
    const std::int64_t rows = shape[0], cols = shape[1];
    const std::size_t nScales = (*scales)->nbytes / 2;
    std::vector<float> scaleValues(nScales);
    convertToFloat(DType::F16, (*scales)->data, nScales, scaleValues.data());
    std::vector<float> zeroValues;
    if (!sq.format.symmetric) {
        auto zeros = need(QStringLiteral(".qzeros"), DType::U8);
        if (!zeros)
            return unexpected(zeros.error());
        for (std::size_t i = 0; i < (*zeros)->nbytes; ++i)
            zeroValues.push_back(static_cast<float>(static_cast<std::uint8_t>((*zeros)->data[i])));
    }
    std::vector<std::int32_t> groupIndex;
    if (sq.actOrder) {
        auto gi = need(QStringLiteral(".g_idx"), DType::I32);
        if (!gi)
            return unexpected(gi.error());
        groupIndex.resize((*gi)->nbytes / 4);
        std::memcpy(groupIndex.data(), (*gi)->data, (*gi)->nbytes);
    }
    auto packed = PackedWeights::fromPackedInPlace(
        rows, cols, sq.format, std::span(reinterpret_cast<const std::uint8_t *>((*codes)->data), (*codes)->nbytes),
        (*codes)->readableAfter, m_files, std::move(scaleValues), std::move(zeroValues), std::move(groupIndex));
    if (!packed)
        return unexpected(std::move(packed.error()).inFile((*codes)->file).forTensor(base + QStringLiteral(".qweight")));
    auto shared = std::make_shared<const PackedWeights>(std::move(*packed));
    TensorSlot *s = newSlot(name);
    s->rows = rows;
    s->cols = cols;
    s->rowFill = [shared](std::int64_t r0, std::int64_t r1, float *out) { shared->dequantizeRows(r0, r1, out); };
    MatrixView view{nullptr, rows, cols, s};
    WeightInfo info;
    info.name = name;
    info.role = role;
    info.block = block;
    info.shape = shape;
    info.storedType = DType::U8;
    info.parameters = rows * cols;
    const QuantizedTensor shapeOnly{rows, cols, sq.format, {}, {}, {}, shared->groupIndex()};
    info.storedBytes = (shapeOnly.storageBits() + 7) / 8;
    info.bitsPerWeight = shapeOnly.bitsPerWeight();
    info.format = quantFormatName(sq.format, sq.execution);
    info.sparsity = sq.sparsity;
    m_weights.push_back(std::move(info));
    m_views.emplace_back(name, view);
    m_quantized.push_back({name, std::move(shared), sq.execution});
    return view;
}

Expected<MatrixView> Model::bindInMemory(const QString &name, WeightRole role, int block, std::vector<std::int64_t> shape,
                                         bool optional)
{
    auto it = m_inMemory.find(name);
    if (it == m_inMemory.end()) {
        if (optional)
            return MatrixView{};
        return unexpected(fail(ErrorCode::Mismatch, QStringLiteral("missing tensor required by %1").arg(m_config.architectureName))
                              .inFile(m_folder)
                              .forTensor(name));
    }
    InMemoryTensor &t = it->second;
    std::int64_t count = 1;
    for (auto d : shape)
        count *= d;
    if (t.shape != shape || (!t.fill && static_cast<std::int64_t>(t.values.size()) != count))
        return unexpected(fail(ErrorCode::Mismatch, QStringLiteral("tensor has shape %1 but the config implies %2")
                                                        .arg(shapeString(t.shape), shapeString(shape)))
                              .inFile(m_folder)
                              .forTensor(name));
    TensorSlot *s = newSlot(name);
    s->rows = shape.size() == 2 ? shape[0] : 1;
    s->cols = shape.back();
    std::shared_ptr<const PackedWeights> packed;
    if (t.quantized) { // kept packed; an embedding is only looked up (rows), never a quantized layer
        auto p = PackedWeights::pack(*t.quantized);
        if (!p)
            return unexpected(std::move(p.error()).inFile(m_folder).forTensor(name));
        packed = std::make_shared<const PackedWeights>(std::move(*p));
    }
    if (packed) {
        s->rowFill = [packed](std::int64_t r0, std::int64_t r1, float *out) { packed->dequantizeRows(r0, r1, out); };
    } else if (t.fill) {
        s->rowFill = std::move(t.fill);
    } else {
        auto values = std::make_shared<std::vector<float>>(std::move(t.values));
        s->raw = values->data();
        s->type = DType::F32;
        s->owned = values;
    }
    MatrixView view{nullptr, s->rows, s->cols, s};
    WeightInfo info;
    info.name = name;
    info.role = role;
    info.block = block;
    info.shape = shape;
    info.storedType = t.storedType;
    info.parameters = count;
    info.storedBytes = t.storedBytes;
    info.format = t.format;
    info.bitsPerWeight = count > 0 ? 8.0 * static_cast<double>(t.storedBytes) / static_cast<double>(count) : 0.0;
    info.sparsity = isLinearRole(role) ? -1.0 : 0.0;
    m_weights.push_back(std::move(info));
    m_views.emplace_back(name, view);
    if (!t.storedData.empty())
        m_hashSources.emplace_back(name, t.storedData);
    if (packed && isLinearRole(role))
        m_quantized.push_back({name, std::move(packed), Execution::WeightOnly});
    t.quantized.reset();
    return view;
}

Expected<MatrixView> Model::bind(const QString &name, WeightRole role, int block, std::vector<std::int64_t> shape,
                                 bool optional)
{
    if (m_storedQuantization.count(name))
        return bindQuantized(name, role, block, shape);
    if (!m_inMemory.empty())
        return bindInMemory(name, role, block, std::move(shape), optional);
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
    TensorSlot *s = newSlot(name);
    s->rows = shape.size() == 2 ? shape[0] : 1;
    s->cols = shape.back();
    s->raw = rec->data; // in place, in the stored type
    s->type = rec->dtype;
    MatrixView view{nullptr, s->rows, s->cols, s};
    WeightInfo info;
    info.name = name;
    info.role = role;
    info.block = block;
    info.shape = rec->shape;
    info.storedType = rec->dtype;
    info.parameters = rec->numel();
    info.storedBytes = static_cast<std::int64_t>(rec->nbytes);
    info.format = QString::fromLatin1(dtypeName(rec->dtype));
    info.bitsPerWeight = 8.0 * static_cast<double>(dtypeSize(rec->dtype));
    info.sparsity = isLinearRole(role) ? -1.0 : 0.0; // computed from the data: see computeStatistics()
    m_weights.push_back(std::move(info));
    m_views.emplace_back(name, view);
    return view;
}

Expected<MatrixView> Model::bindPart(const QString &fused, const std::vector<std::int64_t> &fusedShape, const QString &name,
                                     WeightRole role, int block, std::int64_t rowOffset, std::int64_t rows)
{
    const TensorRecord *rec = m_files->find(fused);
    if (!rec)
        return unexpected(fail(ErrorCode::Mismatch, QStringLiteral("missing tensor required by %1").arg(m_config.architectureName))
                              .inFile(m_folder)
                              .forTensor(fused)
                              .withHint(QStringLiteral("the checkpoint does not match its config.json")));
    if (rec->shape != fusedShape)
        return unexpected(fail(ErrorCode::Mismatch, QStringLiteral("tensor has shape %1 but the config implies %2")
                                                        .arg(shapeString(rec->shape), shapeString(fusedShape)))
                              .inFile(rec->file)
                              .forTensor(fused)
                              .withHint(QStringLiteral("the checkpoint does not match its config.json")));
    if (!isFloatingPoint(rec->dtype))
        return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("weight has non-floating dtype %1").arg(QLatin1String(dtypeName(rec->dtype))))
                              .inFile(rec->file)
                              .forTensor(fused));
    const std::int64_t cols = fusedShape[1];
    const std::size_t esize = dtypeSize(rec->dtype);
    m_auxiliaryTensors.insert(fused); // read through its parts
    TensorSlot *s = newSlot(name);
    s->rows = rows;
    s->cols = cols;
    s->raw = rec->data + static_cast<std::size_t>(rowOffset * cols) * esize; // in place
    s->type = rec->dtype;
    MatrixView view{nullptr, rows, cols, s};
    WeightInfo info;
    info.name = name;
    info.role = role;
    info.block = block;
    info.shape = {rows, cols};
    info.storedType = rec->dtype;
    info.parameters = rows * cols;
    info.storedBytes = static_cast<std::int64_t>(static_cast<std::size_t>(rows * cols) * esize);
    info.format = QString::fromLatin1(dtypeName(rec->dtype));
    info.bitsPerWeight = 8.0 * static_cast<double>(esize);
    info.sparsity = -1.0;
    info.fusedName = fused;
    info.fusedRowOffset = rowOffset;
    m_weights.push_back(std::move(info));
    m_views.emplace_back(name, view);
    return view;
}

Expected<std::shared_ptr<Model>> Model::load(const QString &folderOrName, Feedback *feedback)
{
    const QString folder = resolveFolder(folderOrName);
    if (QFileInfo(folder).isFile() && folder.endsWith(QLatin1String(".gguf"), Qt::CaseInsensitive))
        return gguf::loadGgufModel(folder, feedback);
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

    auto files = SafetensorsCollection::openFolder(folder);
    if (!files)
        return unexpected(files.error());
    m->m_files = *files;
    if (auto q = m->readQuantizationConfig(); !q)
        return unexpected(q.error());

    const QString tokPath = QDir(folder).filePath(QStringLiteral("tokenizer.json"));
    if (QFileInfo::exists(tokPath)) {
        if (feedback)
            feedback->setStatus(QStringLiteral("reading tokenizer.json"));
        auto tok = Tokenizer::fromFile(tokPath);
        if (!tok)
            return unexpected(tok.error());
        m->m_tokenizer = *tok;
    }

    if (auto bound = m->bindAll(feedback); !bound)
        return unexpected(bound.error());
    if (m->totalStoredBytes() <= eagerStatisticsBytes())
        if (auto ok = m->computeStatistics(); !ok)
            return unexpected(ok.error());
    return m;
}

std::int64_t Model::eagerStatisticsBytes()
{
    bool ok = false;
    const qint64 v = qEnvironmentVariableIntValue("BITSMITH_EAGER_STATS_BYTES", &ok);
    return ok && v >= 0 ? v : kEagerStatisticsBytes;
}

Expected<std::shared_ptr<Model>> Model::fromTensors(const QString &source, const ModelConfig &config,
                                                    std::shared_ptr<const Tokenizer> tokenizer,
                                                    std::vector<InMemoryTensor> tensors, Feedback *feedback,
                                                    std::shared_ptr<const void> keepAlive)
{
    std::shared_ptr<Model> m(new Model);
    m->m_folder = source;
    m->m_config = config;
    m->m_tokenizer = std::move(tokenizer);
    m->m_files = std::make_shared<SafetensorsCollection>();
    for (InMemoryTensor &t : tensors) {
        const QString name = t.name;
        if (!m->m_inMemory.emplace(name, std::move(t)).second)
            return unexpected(fail(ErrorCode::Format, QStringLiteral("duplicate tensor")).inFile(source).forTensor(name));
    }
    m->m_keepAlive = std::move(keepAlive);
    if (auto bound = m->bindAll(feedback); !bound)
        return unexpected(bound.error());
    m->m_inMemory.clear(); // the values now live in the slots
    if (m->totalStoredBytes() <= eagerStatisticsBytes())
        if (auto ok = m->computeStatistics(); !ok)
            return unexpected(ok.error());
    return m;
}

Expected<void> Model::bindAll(Feedback *feedback)
{
    Model *m = this;
    const ModelConfig &c = m_config;
    const QString &folder = m_folder;
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
        const bool moe = c.isMoeLayer(i);
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
            {&b.qNorm, "self_attn.q_norm.weight", WeightRole::QNorm, {c.headDim}, c.qkNorm},
            {&b.kNorm, "self_attn.k_norm.weight", WeightRole::KNorm, {c.headDim}, c.qkNorm},
            // Gemma's sandwich: post_attention_layernorm normalizes the attention output and
            // pre_feedforward_layernorm is the MLP's input norm
            {&b.postAttnNorm, "post_attention_layernorm.weight", WeightRole::PostAttnNorm, {h}, c.sandwichNorms},
            {&b.mlpNorm, c.sandwichNorms ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight", WeightRole::MlpNorm, {h}, true},
            {&b.postMlpNorm, "post_feedforward_layernorm.weight", WeightRole::PostMlpNorm, {h}, c.sandwichNorms},
            {&b.gate, "mlp.gate_proj.weight", WeightRole::LinearGate, {inter, h}, !moe},
            {&b.up, "mlp.up_proj.weight", WeightRole::LinearUp, {inter, h}, !moe},
            {&b.down, "mlp.down_proj.weight", WeightRole::LinearDown, {h, inter}, !moe},
            {&b.gateBias, "mlp.gate_proj.bias", WeightRole::BiasGate, {inter}, c.mlpBias},
            {&b.upBias, "mlp.up_proj.bias", WeightRole::BiasUp, {inter}, c.mlpBias},
            {&b.downBias, "mlp.down_proj.bias", WeightRole::BiasDown, {h}, c.mlpBias},
        };
        // Phi-3 fuses q/k/v and gate/up: bound as parts of the fused tensors (a compressed folder
        // of a Phi-3 model holds the parts under their own names, bound like any tensor)
        const bool fusedQkv = c.architecture == Architecture::Phi3 && m_files && !m_inMemory.size()
                              && m_files->find(p + QStringLiteral("self_attn.qkv_proj.weight"));
        const bool fusedGateUp = c.architecture == Architecture::Phi3 && m_files && !m_inMemory.size()
                                 && m_files->find(p + QStringLiteral("mlp.gate_up_proj.weight"));
        for (auto &s : specs) {
            if (!s.present)
                continue;
            const QString suffix = QLatin1String(s.suffix);
            Expected<MatrixView> part = MatrixView{};
            bool isPart = false;
            if (fusedQkv && (s.role == WeightRole::LinearQ || s.role == WeightRole::LinearK || s.role == WeightRole::LinearV)) {
                const std::int64_t offset = s.role == WeightRole::LinearQ ? 0 : s.role == WeightRole::LinearK ? qDim : qDim + kvDim;
                part = m->bindPart(p + QStringLiteral("self_attn.qkv_proj.weight"), {qDim + 2 * kvDim, h}, p + suffix, s.role, i,
                                   offset, s.shape[0]);
                isPart = true;
            } else if (fusedGateUp && (s.role == WeightRole::LinearGate || s.role == WeightRole::LinearUp)) {
                part = m->bindPart(p + QStringLiteral("mlp.gate_up_proj.weight"), {2 * inter, h}, p + suffix, s.role, i,
                                   s.role == WeightRole::LinearGate ? 0 : inter, inter);
                isPart = true;
            }
            if (isPart) {
                if (!part)
                    return unexpected(std::move(part.error()).forLayer(QStringLiteral("block %1").arg(i)));
                *s.out = *part;
                continue;
            }
            auto view = m->bind(p + suffix, s.role, i, s.shape, false);
            if (!view)
                return unexpected(std::move(view.error()).forLayer(QStringLiteral("block %1").arg(i)));
            *s.out = *view;
        }
        if (moe) { // the router and the experts
            auto router = m->bind(routerTensorName(c, i), WeightRole::Router, i, {c.numExperts, h}, false);
            if (!router)
                return unexpected(std::move(router.error()).forLayer(QStringLiteral("block %1").arg(i)));
            b.router = *router;
            const std::int64_t mi = c.moeIntermediateSize;
            b.experts.resize(static_cast<std::size_t>(c.numExperts));
            for (int e = 0; e < c.numExperts; ++e) {
                ExpertWeights &ew = b.experts[static_cast<std::size_t>(e)];
                for (auto [out, role, shape] : {std::tuple{&ew.gate, WeightRole::LinearGate, std::vector<std::int64_t>{mi, h}},
                                                std::tuple{&ew.up, WeightRole::LinearUp, std::vector<std::int64_t>{mi, h}},
                                                std::tuple{&ew.down, WeightRole::LinearDown, std::vector<std::int64_t>{h, mi}}}) {
                    const QString name = expertTensorName(c, i, e, role);
                    auto view = m->bind(name, role, i, shape, false);
                    if (!view)
                        return unexpected(std::move(view.error()).forLayer(QStringLiteral("block %1, expert %2").arg(i).arg(e)));
                    *out = *view;
                    if (!m->m_weights.empty() && m->m_weights.back().name == name)
                        m->m_weights.back().expert = e;
                }
            }
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
    std::vector<std::pair<QString, QString>> present; // name, file
    for (const TensorRecord *rec : m->m_files->tensors())
        present.emplace_back(rec->name, rec->file);
    for (const auto &[name, t] : m->m_inMemory)
        present.emplace_back(name, m->m_folder);
    for (const auto &[name, file] : present) {
        if (known.count(name) || m->m_auxiliaryTensors.count(name) || name.endsWith(QLatin1String("rotary_emb.inv_freq")))
            continue;
        if (c.tieWordEmbeddings && name == QLatin1String("lm_head.weight"))
            continue;
        return unexpected(fail(ErrorCode::Mismatch, QStringLiteral("unexpected tensor for %1").arg(c.architectureName))
                              .inFile(file)
                              .forTensor(name)
                              .withHint(QStringLiteral("the checkpoint does not match its config.json (wrong architecture or layer count?)")));
    }
    if (feedback)
        feedback->setProgress(1.0);
    return {};
}

} // namespace bitsmith::core
