// distill.cpp: the distillation loop, its losses, checkpoints and the writing of students
// (see distill.h).
#include "distill.h"
#include "core/outputfolder.h" // staged folder writes

#include "core/compression.h" // writeCompressedModel, CompressionResult
#include "core/random.h"      // splitmix64
#include "core/recipe.h"      // Recipe (kept from a compressed student)
#include "ops.h"

#include <QDataStream>
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QSaveFile>

#include <chrono>
#include <cmath>
#include <cstring>

namespace bitsmith::core::train {

KdLoss distillationLoss(const float *student, const float *teacher, const std::int32_t *targets, std::int64_t n,
                        std::int64_t vocab, float temperature, float alpha, float *dStudent, float scale)
{
    KdLoss l;
    // CE writes its gradient; KL adds to it.
    l.ce = crossEntropy(student, n, vocab, targets, dStudent, scale * (1.0f - alpha));
    if (alpha > 0.0f && teacher)
        l.kl = klDivergence(teacher, student, n, vocab, temperature, dStudent, scale * alpha * temperature * temperature);
    l.total = static_cast<double>(alpha) * temperature * temperature * l.kl + (1.0 - alpha) * l.ce;
    return l;
}

double hiddenStateLoss(const float *hs, const float *ht, std::int64_t rows, std::int64_t cols, bool cosine, float *dhs,
                       float scale)
{
    double total = 0.0;
    if (!cosine) {
        const double k = 2.0 * scale / static_cast<double>(rows * cols);
        for (std::int64_t i = 0; i < rows * cols; ++i) {
            const double d = static_cast<double>(hs[i]) - ht[i];
            total += d * d;
            if (dhs)
                dhs[i] += static_cast<float>(k * d);
        }
        return total / static_cast<double>(rows * cols);
    }
    for (std::int64_t r = 0; r < rows; ++r) {
        const float *a = hs + r * cols, *b = ht + r * cols;
        double ab = 0, aa = 0, bb = 0;
        for (std::int64_t c = 0; c < cols; ++c) {
            ab += double(a[c]) * b[c];
            aa += double(a[c]) * a[c];
            bb += double(b[c]) * b[c];
        }
        const double na = std::sqrt(std::max(aa, 1e-24)), nb = std::sqrt(std::max(bb, 1e-24));
        const double cs = ab / (na * nb);
        total += 1.0 - cs;
        if (dhs) {
            // d(1 − cos)/da = −(b / (|a||b|) − cos · a / |a|²)
            const double k = scale / static_cast<double>(rows);
            for (std::int64_t c = 0; c < cols; ++c)
                dhs[r * cols + c] += static_cast<float>(-k * (b[c] / (na * nb) - cs * a[c] / (na * na)));
        }
    }
    return total / static_cast<double>(rows);
}

std::vector<float> teacherLogits(const Transformer &teacher, std::span<const std::int32_t> ids, std::int64_t seqs,
                                 std::int64_t t, std::vector<std::vector<float>> *hidden)
{
    const ModelConfig &c = teacher.model().config();
    const std::int64_t h = c.hiddenSize, vocab = c.vocabSize;
    std::vector<float> out(static_cast<std::size_t>(seqs * t * vocab));
    if (hidden)
        hidden->assign(static_cast<std::size_t>(c.numLayers), std::vector<float>(static_cast<std::size_t>(seqs * t * h)));
    std::vector<float> x(static_cast<std::size_t>(t * h)), logits;
    for (std::int64_t s = 0; s < seqs; ++s) {
        KVCache cache = teacher.makeCache(static_cast<int>(t));
        teacher.embed(ids.subspan(static_cast<std::size_t>(s * t), static_cast<std::size_t>(t)), x.data());
        for (int l = 0; l < c.numLayers; ++l) {
            teacher.runBlock(l, x.data(), t, cache);
            if (hidden)
                std::copy(x.begin(), x.end(), (*hidden)[static_cast<std::size_t>(l)].begin() + s * t * h);
        }
        cache.length += static_cast<int>(t);
        teacher.head(x.data(), t, logits);
        std::copy(logits.begin(), logits.end(), out.begin() + s * t * vocab);
    }
    return out;
}

Expected<std::unique_ptr<Distiller>> Distiller::create(std::shared_ptr<const Model> teacher, TrainModel student,
                                                       std::vector<std::int32_t> trainTokens,
                                                       std::vector<std::int32_t> valTokens, DistillOptions o)
{
    auto bad = [](const QString &param, const QString &msg, const QString &hint) {
        return unexpected(fail(ErrorCode::InvalidArgument, msg).forParameter(param).withHint(hint));
    };
    const ModelConfig &sc = student.config();
    if (o.steps < 1)
        return bad(QStringLiteral("steps"), QStringLiteral("the number of steps must be at least 1"), QStringLiteral("e.g. --steps 100"));
    if (!(o.learningRate > 0.0) || !std::isfinite(o.learningRate))
        return bad(QStringLiteral("lr"), QStringLiteral("the learning rate must be a positive number"), QStringLiteral("e.g. --lr 1e-4"));
    if (!(o.temperature > 0.0f) || !std::isfinite(o.temperature))
        return bad(QStringLiteral("temperature"), QStringLiteral("the temperature must be positive"), QStringLiteral("e.g. --temperature 2"));
    if (!(o.alpha >= 0.0f && o.alpha <= 1.0f))
        return bad(QStringLiteral("alpha"), QStringLiteral("alpha must be in [0, 1]"), QStringLiteral("1 = KD only, 0 = CE only"));
    if (o.batch < 1 || o.accumulate < 1)
        return bad(QStringLiteral("batch"), QStringLiteral("batch and accumulation must be at least 1"), QStringLiteral("e.g. --batch 4"));
    if (o.ctx < 2 || o.ctx > sc.maxPositions)
        return bad(QStringLiteral("ctx"), QStringLiteral("the context must be in 2..%1").arg(sc.maxPositions), QStringLiteral("e.g. --ctx 128"));
    if (static_cast<std::int64_t>(trainTokens.size()) < o.ctx + 1)
        return bad(QStringLiteral("text"), QStringLiteral("the training text has %1 tokens, fewer than ctx + 1 = %2").arg(trainTokens.size()).arg(o.ctx + 1),
                   QStringLiteral("use a longer text or a smaller --ctx"));
    if (!valTokens.empty() && static_cast<std::int64_t>(valTokens.size()) < o.ctx)
        return bad(QStringLiteral("val"), QStringLiteral("the validation text is shorter than one window of %1 tokens").arg(o.ctx),
                   QStringLiteral("use a longer text or a smaller --ctx"));
    {
        // The saved activations of one micro-batch (Tape) and the logit buffers: refuse sizes that
        // would not fit rather than fail inside an allocation.
        const double n = static_cast<double>(o.batch) * o.ctx;
        const double qDim = double(sc.numHeads) * sc.headDim, kvDim = double(sc.numKvHeads) * sc.headDim;
        const double perBlock = n * (5.0 * sc.hiddenSize + 2.0 * qDim + 2.0 * kvDim + 3.0 * sc.intermediateSize + 2.0)
                                + double(o.batch) * sc.numHeads * double(o.ctx) * o.ctx;
        const double bytes = 4.0 * (sc.numLayers * perBlock + 4.0 * n * sc.vocabSize);
        if (bytes > 64.0 * 1024 * 1024 * 1024)
            return bad(QStringLiteral("batch"), QStringLiteral("a micro-batch of %1 x %2 tokens needs about %3 GiB of activations")
                                                    .arg(o.batch).arg(o.ctx).arg(bytes / (1024.0 * 1024 * 1024), 0, 'f', 0),
                       QStringLiteral("use a smaller --batch or --ctx, and --accumulate for larger effective batches"));
    }
    const bool needTeacher = o.alpha > 0.0f || o.hiddenWeight > 0.0;
    if (needTeacher && !teacher)
        return bad(QStringLiteral("teacher"), QStringLiteral("distillation needs a teacher"), QStringLiteral("give a teacher model, or --alpha 0"));
    if (teacher) {
        const ModelConfig &tc = teacher->config();
        if (tc.vocabSize != sc.vocabSize)
            return bad(QStringLiteral("student"), QStringLiteral("teacher and student vocabularies differ (%1 vs %2)").arg(tc.vocabSize).arg(sc.vocabSize),
                       QStringLiteral("distill between models sharing one tokenizer"));
        if (o.hiddenWeight > 0.0 && tc.hiddenSize != sc.hiddenSize)
            return bad(QStringLiteral("hidden-weight"), QStringLiteral("hidden-state losses need equal hidden sizes"), QStringLiteral("drop --hidden-weight"));
        if (o.ctx > tc.maxPositions)
            return bad(QStringLiteral("ctx"), QStringLiteral("the context exceeds the teacher's %1 positions").arg(tc.maxPositions), QStringLiteral("use a smaller --ctx"));
    }
    for (int l : o.hiddenLayers)
        if (l < 0 || l >= sc.numLayers)
            return bad(QStringLiteral("hidden-layers"), QStringLiteral("student block %1 does not exist").arg(l), QStringLiteral("blocks are 0..%1").arg(sc.numLayers - 1));
    for (std::int32_t id : trainTokens)
        if (id < 0 || id >= sc.vocabSize)
            return bad(QStringLiteral("text"), QStringLiteral("token id %1 outside the vocabulary").arg(id), QStringLiteral("use the student's tokenizer"));
    if (o.warmupSteps < 0)
        o.warmupSteps = o.steps / 10;
    if (o.evalEvery <= 0)
        o.evalEvery = std::max(1, o.steps / 5);
    if (o.hiddenWeight > 0.0 && o.hiddenLayers.empty())
        for (int l = 0; l < sc.numLayers; ++l)
            o.hiddenLayers.push_back(l);

    std::unique_ptr<Distiller> d(new Distiller);
    d->m_teacherModel = std::move(teacher);
    if (d->m_teacherModel && needTeacher)
        d->m_teacher = std::make_unique<Transformer>(d->m_teacherModel);
    d->m_student = std::move(student);
    d->m_optimizer = AdamW(d->m_student, AdamWSettings{0.9, 0.999, 1e-8, o.weightDecay});
    d->m_train = std::move(trainTokens);
    d->m_val = std::move(valTokens);
    d->m_rng = o.seed;
    d->m_options = std::move(o);
    return d;
}

DistillProgress Distiller::trainStep()
{
    const DistillOptions &o = m_options;
    const std::int64_t t = o.ctx, seqs = o.batch, n = seqs * t;
    const std::int64_t vocab = m_student.config().vocabSize;
    const auto micro = static_cast<float>(o.accumulate);
    DistillProgress p;
    m_student.zeroGrad();
    std::vector<std::int32_t> ids(static_cast<std::size_t>(n)), targets(ids.size());
    std::vector<float> dlogits;
    Tape tape;
    const auto span = static_cast<std::uint64_t>(m_train.size()) - static_cast<std::uint64_t>(t);
    for (int k = 0; k < o.accumulate; ++k) {
        for (std::int64_t s = 0; s < seqs; ++s) {
            const auto start = static_cast<std::int64_t>(splitmix64(m_rng) % span);
            for (std::int64_t i = 0; i < t; ++i) {
                ids[static_cast<std::size_t>(s * t + i)] = m_train[static_cast<std::size_t>(start + i)];
                targets[static_cast<std::size_t>(s * t + i)] = m_train[static_cast<std::size_t>(start + i + 1)];
            }
        }
        std::vector<float> tl;
        std::vector<std::vector<float>> th;
        const bool useHidden = o.hiddenWeight > 0.0;
        if (m_teacher)
            tl = teacherLogits(*m_teacher, ids, seqs, t, useHidden ? &th : nullptr);
        m_student.forward(ids.data(), seqs, t, tape);
        dlogits.resize(tape.logits.size());
        const KdLoss l = distillationLoss(tape.logits.data(), m_teacher ? tl.data() : nullptr, targets.data(), n, vocab,
                                          o.temperature, m_teacher ? o.alpha : 0.0f, dlogits.data(), 1.0f / micro);
        std::vector<std::vector<float>> dBlock;
        double hidden = 0.0;
        if (useHidden) {
            const int ls = m_student.config().numLayers, lt = m_teacherModel->config().numLayers;
            dBlock.resize(static_cast<std::size_t>(ls));
            const auto scale = static_cast<float>(o.hiddenWeight / micro / static_cast<double>(o.hiddenLayers.size()));
            for (int sl : o.hiddenLayers) {
                const int tlIdx = std::clamp(static_cast<int>(std::lround(double(sl + 1) * lt / ls)) - 1, 0, lt - 1);
                auto &d = dBlock[static_cast<std::size_t>(sl)];
                d.assign(static_cast<std::size_t>(n * m_student.config().hiddenSize), 0.0f);
                hidden += hiddenStateLoss(tape.blockOutput(sl).data(), th[static_cast<std::size_t>(tlIdx)].data(), n,
                                          m_student.config().hiddenSize, o.hiddenCosine, d.data(), scale);
            }
            hidden /= static_cast<double>(o.hiddenLayers.size());
        }
        m_student.backward(tape, dlogits, useHidden ? &dBlock : nullptr);
        const double a = m_teacher ? o.alpha : 0.0;
        p.kl += l.kl / micro;
        p.rawCe += l.ce / micro;
        p.kd += a * o.temperature * o.temperature * l.kl / micro;
        p.ce += (1.0 - a) * l.ce / micro;
        p.hidden += o.hiddenWeight * hidden / micro;
    }
    p.loss = p.kd + p.ce + p.hidden;
    m_student.maskGradients();
    p.gradNorm = clipGradients(m_student, o.clipNorm);
    p.learningRate = scheduledLearningRate(o.learningRate, m_step, o.steps, o.warmupSteps, o.minLrRatio);
    m_optimizer.step(m_student, p.learningRate);
    ++m_step;
    p.step = m_step;
    p.steps = o.steps;
    return p;
}

QString progressLine(const DistillProgress &p)
{
    QString s = QStringLiteral("step %1/%2  loss %3 (kd %4 ce %5")
                    .arg(p.step)
                    .arg(p.steps)
                    .arg(p.loss, 0, 'f', 4)
                    .arg(p.kd, 0, 'f', 4)
                    .arg(p.ce, 0, 'f', 4);
    if (p.hidden > 0.0)
        s += QStringLiteral(" hidden %1").arg(p.hidden, 0, 'f', 4);
    s += QLatin1Char(')');
    if (std::isfinite(p.valLoss))
        s += QStringLiteral("  val %1 (ppl %2)").arg(p.valLoss, 0, 'f', 4).arg(std::exp(p.valLoss), 0, 'f', 2);
    const auto eta = static_cast<long long>(std::llround(p.etaSeconds));
    s += QStringLiteral("  lr %1  %2 tok/s  ETA %3m%4s")
             .arg(p.learningRate, 0, 'e', 2)
             .arg(p.tokensPerSecond, 0, 'f', 0)
             .arg(eta / 60)
             .arg(eta % 60, 2, 10, QLatin1Char('0'));
    return s;
}

Expected<void> Distiller::run(Feedback *feedback, const std::function<void(const DistillProgress &)> &onProgress,
                              int maxSteps)
{
    const DistillOptions &o = m_options;
    const int last = maxSteps >= 0 ? std::min(o.steps, m_step + maxSteps) : o.steps;
    const int first = m_step;
    const auto started = std::chrono::steady_clock::now();
    const double tokensPerStep = static_cast<double>(o.batch) * o.ctx * o.accumulate;
    double trainSeconds = 0.0;
    while (m_step < last) {
        if (feedback && feedback->isCancelled()) {
            if (!o.checkpointDir.isEmpty())
                if (auto ok = saveCheckpoint(o.checkpointDir); !ok)
                    return ok;
            return unexpected(fail(ErrorCode::Cancelled, QStringLiteral("distillation cancelled at step %1").arg(m_step)));
        }
        const auto stepStart = std::chrono::steady_clock::now();
        DistillProgress p = trainStep();
        trainSeconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - stepStart).count();
        if (!std::isfinite(p.loss))
            return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("the loss became %1 at step %2").arg(p.loss).arg(p.step))
                                  .forParameter(QStringLiteral("lr"))
                                  .withHint(QStringLiteral("lower --lr or keep --clip on")));
        p.elapsedSeconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        const int done = m_step - first;
        p.tokensPerSecond = trainSeconds > 0 ? tokensPerStep * done / trainSeconds : 0.0; // validation excluded
        p.etaSeconds = p.elapsedSeconds / done * (last - m_step);
        if (!m_val.empty() && (m_step % o.evalEvery == 0 || m_step == o.steps))
            p.valLoss = validationLoss();
        m_history.push_back(p);
        if (feedback) {
            feedback->setProgress(static_cast<double>(m_step) / o.steps);
            feedback->setStatus(QStringLiteral("step %1/%2 loss %3").arg(m_step).arg(o.steps).arg(p.loss, 0, 'f', 4));
        }
        if (feedback && (m_step % std::max(1, o.logEvery) == 0 || std::isfinite(p.valLoss) || m_step == last))
            feedback->log(progressLine(p));
        if (onProgress)
            onProgress(p);
        if (!o.checkpointDir.isEmpty() && o.checkpointEvery > 0 && m_step % o.checkpointEvery == 0)
            if (auto ok = saveCheckpoint(o.checkpointDir); !ok)
                return ok;
    }
    if (!o.checkpointDir.isEmpty())
        if (auto ok = saveCheckpoint(o.checkpointDir); !ok)
            return ok;
    return {};
}

namespace {
double windowsNll(const std::vector<std::int32_t> &tokens, int ctx, int maxWindows,
                  const std::function<void(const std::int32_t *, std::vector<float> &)> &logitsOf, std::int64_t vocab)
{
    std::int64_t windows = static_cast<std::int64_t>(tokens.size()) / ctx;
    if (maxWindows > 0)
        windows = std::min<std::int64_t>(windows, maxWindows);
    if (windows == 0)
        return std::numeric_limits<double>::quiet_NaN();
    double total = 0.0;
    std::vector<float> logits;
    for (std::int64_t w = 0; w < windows; ++w) {
        const std::int32_t *ids = tokens.data() + w * ctx;
        logitsOf(ids, logits);
        total += crossEntropy(logits.data(), ctx - 1, vocab, ids + 1, nullptr) * (ctx - 1);
    }
    return total / static_cast<double>(windows * (ctx - 1));
}
} // namespace

double Distiller::validationLoss() const
{
    if (m_val.empty())
        return std::numeric_limits<double>::quiet_NaN();
    Tape tape;
    return windowsNll(m_val, m_options.ctx, m_options.valWindows, [&](const std::int32_t *ids, std::vector<float> &logits) {
        m_student.forward(ids, 1, m_options.ctx, tape);
        logits.swap(tape.logits);
    }, m_student.config().vocabSize);
}

double Distiller::teacherValidationLoss() const
{
    if (m_val.empty() || !m_teacherModel)
        return std::numeric_limits<double>::quiet_NaN();
    std::unique_ptr<Transformer> own;
    if (!m_teacher)
        own = std::make_unique<Transformer>(m_teacherModel);
    const Transformer &t = m_teacher ? *m_teacher : *own;
    return windowsNll(m_val, m_options.ctx, m_options.valWindows, [&](const std::int32_t *ids, std::vector<float> &logits) {
        logits = teacherLogits(t, std::span(ids, static_cast<std::size_t>(m_options.ctx)), 1, m_options.ctx);
    }, m_student.config().vocabSize);
}

// Checkpoint file (little-endian): "BSMCKPT1", u32 version, i64 step, u64 rng, i64 optimizer
// steps, u32 params, then per parameter: u32 name length, UTF-8 name, i64 count, count f32
// values, first and second moments. Every size read is checked against the student before use.
namespace {
constexpr char kMagic[8] = {'B', 'S', 'M', 'C', 'K', 'P', 'T', '1'};
constexpr quint32 kCheckpointVersion = 1;

void writeFloats(QDataStream &s, const std::vector<float> &v)
{
    s.writeRawData(reinterpret_cast<const char *>(v.data()), static_cast<int>(v.size() * sizeof(float)));
}
bool readFloats(QDataStream &s, std::vector<float> &v)
{
    const auto bytes = static_cast<int>(v.size() * sizeof(float));
    return s.readRawData(reinterpret_cast<char *>(v.data()), bytes) == bytes;
}
} // namespace

Expected<void> Distiller::saveCheckpoint(const QString &dir) const
{
    if (!QDir().mkpath(dir))
        return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot create the checkpoint folder")).inFile(dir));
    const QString path = QDir(dir).filePath(QStringLiteral("checkpoint.bin"));
    QSaveFile f(path);
    if (!f.open(QIODevice::WriteOnly))
        return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot write the checkpoint")).inFile(path));
    QDataStream s(&f);
    s.setByteOrder(QDataStream::LittleEndian);
    s.writeRawData(kMagic, 8);
    s << kCheckpointVersion << static_cast<qint64>(m_step) << static_cast<quint64>(m_rng)
      << static_cast<qint64>(m_optimizer.steps()) << static_cast<quint32>(m_student.params().size());
    auto &opt = const_cast<AdamW &>(m_optimizer);
    for (std::size_t i = 0; i < m_student.params().size(); ++i) {
        const Parameter &p = m_student.params()[i];
        const QByteArray name = p.name.toUtf8();
        s << static_cast<quint32>(name.size());
        s.writeRawData(name.constData(), static_cast<int>(name.size()));
        s << static_cast<qint64>(p.value.size());
        writeFloats(s, p.value);
        writeFloats(s, opt.firstMoments()[i]);
        writeFloats(s, opt.secondMoments()[i]);
    }
    if (s.status() != QDataStream::Ok || !f.commit())
        return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot write the checkpoint")).inFile(path));
    // A readable summary beside it (not needed to resume).
    QJsonObject info{{QStringLiteral("step"), m_step},
                     {QStringLiteral("steps"), m_options.steps},
                     {QStringLiteral("lr"), m_options.learningRate},
                     {QStringLiteral("batch"), m_options.batch},
                     {QStringLiteral("ctx"), m_options.ctx},
                     {QStringLiteral("accumulate"), m_options.accumulate},
                     {QStringLiteral("temperature"), m_options.temperature},
                     {QStringLiteral("alpha"), m_options.alpha},
                     {QStringLiteral("format_version"), static_cast<int>(kCheckpointVersion)}};
    QSaveFile j(QDir(dir).filePath(QStringLiteral("checkpoint.json")));
    if (!j.open(QIODevice::WriteOnly) || j.write(QJsonDocument(info).toJson()) < 0 || !j.commit())
        return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot write checkpoint.json")).inFile(dir));
    return {};
}

Expected<void> Distiller::loadCheckpoint(const QString &dir)
{
    const QString path = QDir(dir).filePath(QStringLiteral("checkpoint.bin"));
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly))
        return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot open the checkpoint")).inFile(path)
                              .withHint(QStringLiteral("--resume takes the folder given to --checkpoint")));
    auto bad = [&](const QString &msg) { return unexpected(fail(ErrorCode::Format, msg).inFile(path)); };
    QDataStream s(&f);
    s.setByteOrder(QDataStream::LittleEndian);
    char magic[8];
    if (s.readRawData(magic, 8) != 8 || std::memcmp(magic, kMagic, 8) != 0)
        return bad(QStringLiteral("not a Bitsmith training checkpoint"));
    quint32 version = 0, count = 0;
    qint64 step = 0, optSteps = 0;
    quint64 rng = 0;
    s >> version;
    if (version != kCheckpointVersion)
        return bad(QStringLiteral("checkpoint format %1, this build reads %2").arg(version).arg(kCheckpointVersion));
    s >> step >> rng >> optSteps >> count;
    if (s.status() != QDataStream::Ok || count != m_student.params().size() || step < 0 || step > m_options.steps)
        return bad(QStringLiteral("the checkpoint does not fit this student (%1 parameters, step %2)").arg(count).arg(step));
    // Read into copies first so a bad file leaves the distiller untouched.
    TrainModel student = m_student;
    AdamW opt = m_optimizer;
    for (std::size_t i = 0; i < count; ++i) {
        Parameter &p = student.params()[i];
        quint32 nameBytes = 0;
        s >> nameBytes;
        if (s.status() != QDataStream::Ok || nameBytes > 4096) // names are short; never allocate what a corrupt file claims
            return bad(QStringLiteral("the checkpoint is corrupt"));
        QByteArray nameUtf8(static_cast<qsizetype>(nameBytes), Qt::Uninitialized);
        if (s.readRawData(nameUtf8.data(), static_cast<int>(nameBytes)) != static_cast<int>(nameBytes))
            return bad(QStringLiteral("the checkpoint is truncated"));
        const QString name = QString::fromUtf8(nameUtf8);
        qint64 n = 0;
        s >> n;
        if (s.status() != QDataStream::Ok || name != p.name || n != static_cast<qint64>(p.value.size()))
            return bad(QStringLiteral("parameter %1 of the checkpoint does not match the student's %2").arg(name, p.name));
        if (!readFloats(s, p.value) || !readFloats(s, opt.firstMoments()[i]) || !readFloats(s, opt.secondMoments()[i]))
            return bad(QStringLiteral("the checkpoint is truncated"));
    }
    opt.setSteps(optSteps);
    student.refreshEffective();
    m_student = std::move(student);
    m_optimizer = std::move(opt);
    m_step = static_cast<int>(step);
    m_rng = rng;
    return {};
}

namespace {
Expected<void> copyTokenizerFiles(const QString &from, const QString &to)
{
    for (const char *name : {"tokenizer.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json"}) {
        const QString src = QDir(from).filePath(QLatin1String(name));
        if (QFileInfo::exists(src) && !QFile::copy(src, QDir(to).filePath(QLatin1String(name))))
            return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot copy %1").arg(QLatin1String(name))).inFile(src));
    }
    return {};
}

} // namespace

Expected<void> saveDenseStudent(const TrainModel &student, const QString &configSourceFolder, const QString &outDir)
{
    auto staged = beginOutputFolder(outDir);
    if (!staged)
        return unexpected(staged.error());
    const QString tmpDir = staged->tmpDir;
    auto sourceConfig = readConfigJson(configSourceFolder);
    if (!sourceConfig)
        return unexpected(sourceConfig.error());
    QJsonObject cfg = *sourceConfig;
    cfg.remove(QStringLiteral("quantization_config"));
    cfg.insert(QStringLiteral("num_hidden_layers"), student.config().numLayers);
    cfg.insert(QStringLiteral("intermediate_size"), student.config().intermediateSize);
    cfg.insert(QStringLiteral("torch_dtype"), QStringLiteral("float32"));
    if (cfg.contains(QStringLiteral("dtype")))
        cfg.insert(QStringLiteral("dtype"), QStringLiteral("float32"));
    QSaveFile c(QDir(tmpDir).filePath(QStringLiteral("config.json")));
    if (!c.open(QIODevice::WriteOnly) || c.write(QJsonDocument(cfg).toJson()) < 0 || !c.commit())
        return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot write config.json")).inFile(tmpDir));
    std::vector<TensorToWrite> tensors;
    for (const Parameter &p : student.params()) {
        const bool vector = p.name.endsWith(QLatin1String("norm.weight")) || p.name.endsWith(QLatin1String(".bias"));
        const std::vector<std::int64_t> shape = vector ? std::vector<std::int64_t>{p.cols} : std::vector<std::int64_t>{p.rows, p.cols};
        const auto *bytes = reinterpret_cast<const std::byte *>(p.value.data());
        tensors.push_back({p.name, DType::F32, shape, std::span<const std::byte>(bytes, p.value.size() * sizeof(float))});
    }
    if (auto ok = writeSafetensors(QDir(tmpDir).filePath(QStringLiteral("model.safetensors")), tensors,
                                   {{QStringLiteral("format"), QStringLiteral("pt")}});
        !ok)
        return ok;
    if (auto ok = copyTokenizerFiles(configSourceFolder, tmpDir); !ok)
        return ok;
    return finishOutputFolder(*staged);
}

Expected<void> checkStudentSavable(const TrainModel &student, const Model &denseSource)
{
    bool quantized = false;
    for (const Parameter &p : student.params())
        quantized = quantized || p.grid.has_value();
    if (!quantized)
        return {};
    for (const Parameter &p : student.params()) {
        const TensorRecord *rec = denseSource.files().find(p.name);
        if (!rec || rec->numel() != p.size())
            return unexpected(fail(ErrorCode::Mismatch, QStringLiteral("the teacher has no tensor of this name and size, so the quantized student cannot be written against it"))
                                  .forTensor(p.name)
                                  .withHint(QStringLiteral("distill a compressed model with the model it was compressed from as the teacher")));
    }
    return {};
}

Expected<void> saveStudent(const TrainModel &student, const Model &studentModel, const Model &denseSource,
                           const QString &outDir)
{
    bool quantized = false;
    for (const Parameter &p : student.params())
        quantized = quantized || p.grid.has_value();
    if (!quantized)
        return saveDenseStudent(student, studentModel.folder(), outDir);
    // A compressed student: every parameter must be a tensor of the dense source of equal size.
    CompressionResult result;
    result.model = studentModel.cloneMutable();
    if (auto ok = checkStudentSavable(student, denseSource); !ok)
        return ok;
    for (const Parameter &p : student.params()) {
        if (p.grid) {
            QuantizedTensor q = student.quantizedResult(p);
            CompressedLayerReport r;
            r.name = p.name.chopped(7);
            r.technique = QStringLiteral("distill");
            r.format = quantFormatName(q.format, p.execution);
            r.bitsPerWeight = q.bitsPerWeight();
            r.parameters = p.size();
            r.bytes = (q.storageBits() + 7) / 8;
            std::vector<float> deq(static_cast<std::size_t>(p.size()));
            q.dequantize(deq.data());
            double num = 0, den = 0;
            for (std::size_t i = 0; i < deq.size(); ++i) {
                num += std::pow(double(deq[i]) - p.value[i], 2);
                den += double(p.value[i]) * p.value[i];
            }
            r.relativeError = den > 0 ? num / den : 0.0;
            result.layers.push_back(r);
            result.compressedBytes += r.bytes;
            if (auto ok = result.model->setQuantized(p.name, std::move(q), p.execution); !ok)
                return unexpected(std::move(ok.error()).forTensor(p.name));
        } else {
            float *dst = result.model->mutableWeight(p.name);
            if (!dst)
                return unexpected(fail(ErrorCode::Internal, QStringLiteral("no writable weight")).forTensor(p.name));
            std::copy(p.value.begin(), p.value.end(), dst);
            result.modifiedTensors.insert(p.name);
        }
    }
    const QString recipePath = QDir(studentModel.folder()).filePath(QStringLiteral("recipe.json"));
    if (QFileInfo::exists(recipePath)) {
        if (auto r = Recipe::fromFile(recipePath); r)
            result.recipe = *r;
    }
    result.originalBytes = denseSource.totalStoredBytes();
    std::int64_t qParams = 0;
    for (const auto &l : result.layers)
        qParams += l.parameters;
    result.effectiveBitsPerWeight = qParams ? 8.0 * static_cast<double>(result.compressedBytes) / static_cast<double>(qParams) : 0.0;
    return writeCompressedModel(result, denseSource, outDir);
}

} // namespace bitsmith::core::train
