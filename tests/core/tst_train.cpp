// tst_train.cpp: the training engine (core/train/). Every backward op against central finite
// differences; the whole tiny model's logits, losses and every parameter's gradient (CE and KD)
// against the PyTorch reference state written by tools/train_reference.py; two AdamW steps with
// clipping against torch.optim.AdamW; the schedule against hand-computed values; QAT fake
// quantization, frozen sparse masks, exact checkpoint resume, architecture students and saving.
#include "core/model.h"
#include "core/quant/quantizer.h"
#include "core/safetensors.h"
#include "core/transformer.h"
#include "core/train/distill.h"
#include "core/train/ops.h"
#include "core/train/optimizer.h"
#include "core/train/trainmodel.h"
#include "testutil.h"
#include "tinymodel.h"

#include <QTemporaryDir>
#include <QtTest>

#include <cmath>
#include <functional>
#include <random>

using namespace bitsmith;
using namespace bitsmith::core;
using namespace bitsmith::core::train;

namespace {

// Finite differences in f32 (central, step 1e-2 on O(1) values): truncation error ~1e-4 and
// rounding error ~1e-5 relative; the analytic gradient must agree to this, over all entries.
constexpr double kFdTolerance = 3e-3;
// The PyTorch comparison: ‖g − g_ref‖ / ‖g_ref‖ per tensor (issue 8: ≤ 1e-4 in f32).
constexpr double kTorchTolerance = 1e-4;

std::vector<float> randomVector(std::size_t n, std::uint32_t seed, float scale = 1.0f)
{
    std::mt19937 rng(seed);
    std::normal_distribution<float> d(0.0f, scale);
    std::vector<float> v(n);
    for (float &x : v)
        x = d(rng);
    return v;
}

double relError(const float *a, const float *b, std::size_t n)
{
    double num = 0, den = 0;
    for (std::size_t i = 0; i < n; ++i) {
        num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
        den += double(b[i]) * b[i];
    }
    return std::sqrt(num / std::max(den, 1e-30));
}

// Checks `analytic` = d loss / d input by central differences on every entry of `input`.
double fdError(std::vector<float> &input, const std::function<double()> &loss, const std::vector<float> &analytic)
{
    std::vector<float> numeric(input.size());
    const float h = 1e-2f;
    for (std::size_t i = 0; i < input.size(); ++i) {
        const float keep = input[i];
        input[i] = keep + h;
        const double lp = loss();
        input[i] = keep - h;
        const double lm = loss();
        input[i] = keep;
        numeric[i] = static_cast<float>((lp - lm) / (2.0 * h));
    }
    return relError(analytic.data(), numeric.data(), numeric.size());
}

// Σ r ∘ y in double: a random projection of an op's output, the scalar the checks differentiate.
double project(const std::vector<float> &y, const std::vector<float> &r)
{
    double s = 0;
    for (std::size_t i = 0; i < y.size(); ++i)
        s += double(y[i]) * r[i];
    return s;
}

std::map<QString, std::vector<float>> readState(const QString &path, std::vector<std::int32_t> *ids = nullptr)
{
    std::map<QString, std::vector<float>> out;
    auto f = SafetensorsFile::open(path);
    if (!f)
        return out;
    for (const TensorRecord &r : (*f)->tensors()) {
        if (r.dtype == DType::I32 && ids) {
            ids->resize(static_cast<std::size_t>(r.numel()));
            std::memcpy(ids->data(), r.data, r.nbytes);
        } else if (r.dtype == DType::F32) {
            std::vector<float> v(static_cast<std::size_t>(r.numel()));
            std::memcpy(v.data(), r.data, r.nbytes);
            out[r.name] = std::move(v);
        }
    }
    return out;
}

QString trainData(const QString &name) { return test::testDataDir() + QStringLiteral("/train/") + name; }

// inputs [2, 8] and targets [16] from the reference batch ids [2, 9]
void splitBatch(const std::vector<std::int32_t> &ids, std::vector<std::int32_t> &in, std::vector<std::int32_t> &tg)
{
    in.clear();
    tg.clear();
    for (int s = 0; s < 2; ++s)
        for (int i = 0; i < 8; ++i) {
            in.push_back(ids[static_cast<std::size_t>(s * 9 + i)]);
            tg.push_back(ids[static_cast<std::size_t>(s * 9 + i + 1)]);
        }
}

} // namespace

class TestTrain : public QObject
{
    Q_OBJECT

private slots:
    void linearBackwardMatchesFiniteDifferences()
    {
        const std::int64_t n = 5, in = 7, out = 6;
        auto x = randomVector(n * in, 1), w = randomVector(out * in, 2, 0.5f), b = randomVector(out, 3), r = randomVector(n * out, 4);
        std::vector<float> y(n * out);
        auto loss = [&] {
            linearForward(x.data(), n, in, w.data(), b.data(), out, y.data());
            return project(y, r);
        };
        std::vector<float> dx(x.size()), dw(w.size(), 0.0f), db(b.size(), 0.0f);
        linearBackward(x.data(), n, in, w.data(), out, r.data(), dx.data(), dw.data(), db.data());
        QVERIFY(fdError(x, loss, dx) < kFdTolerance);
        QVERIFY(fdError(w, loss, dw) < kFdTolerance);
        QVERIFY(fdError(b, loss, db) < kFdTolerance);
    }

    void rmsNormBackwardMatchesFiniteDifferences()
    {
        const std::int64_t n = 4, c = 9;
        auto x = randomVector(n * c, 5), w = randomVector(c, 6), r = randomVector(n * c, 7);
        for (float &v : w)
            v += 1.0f;
        std::vector<float> y(n * c), inv(n);
        auto loss = [&] {
            rmsNormForward(x.data(), w.data(), n, c, 1e-5f, y.data(), inv.data());
            return project(y, r);
        };
        loss();
        std::vector<float> dx(x.size()), dw(w.size(), 0.0f);
        rmsNormBackward(x.data(), w.data(), inv.data(), n, c, r.data(), dx.data(), dw.data());
        QVERIFY(fdError(x, loss, dx) < kFdTolerance);
        QVERIFY(fdError(w, loss, dw) < kFdTolerance);
    }

    void ropeBackwardMatchesFiniteDifferences()
    {
        const std::int64_t seqs = 2, t = 5;
        const int heads = 3, hd = 8;
        const auto freq = ropeInvFreq(hd, 10000.0);
        auto x = randomVector(seqs * t * heads * hd, 8), r = randomVector(x.size(), 9);
        auto loss = [&] {
            std::vector<float> y = x;
            ropeApply(y.data(), seqs, t, heads, hd, freq, false);
            return project(y, r);
        };
        std::vector<float> dx = r;
        ropeApply(dx.data(), seqs, t, heads, hd, freq, true);
        QVERIFY(fdError(x, loss, dx) < kFdTolerance);
    }

    void attentionBackwardMatchesFiniteDifferences()
    {
        const std::int64_t seqs = 2, t = 5;
        const int nH = 4, nKv = 2, hd = 4;
        auto q = randomVector(seqs * t * nH * hd, 10), k = randomVector(seqs * t * nKv * hd, 11);
        auto v = randomVector(k.size(), 12), r = randomVector(q.size(), 13);
        std::vector<float> out(q.size()), probs(seqs * nH * t * t);
        auto loss = [&] {
            attentionForward(q.data(), k.data(), v.data(), seqs, t, nH, nKv, hd, out.data(), probs.data());
            return project(out, r);
        };
        loss();
        std::vector<float> dq(q.size()), dk(k.size()), dv(v.size());
        attentionBackward(q.data(), k.data(), v.data(), probs.data(), seqs, t, nH, nKv, hd, r.data(), dq.data(), dk.data(), dv.data());
        QVERIFY(fdError(q, loss, dq) < kFdTolerance);
        QVERIFY(fdError(k, loss, dk) < kFdTolerance);
        QVERIFY(fdError(v, loss, dv) < kFdTolerance);
    }

    void swigluBackwardMatchesFiniteDifferences()
    {
        auto g = randomVector(40, 14, 2.0f), u = randomVector(40, 15), r = randomVector(40, 16);
        std::vector<float> a(40);
        auto loss = [&] {
            swigluForward(g.data(), u.data(), 40, a.data());
            return project(a, r);
        };
        std::vector<float> dg(40), du(40);
        swigluBackward(g.data(), u.data(), 40, r.data(), dg.data(), du.data());
        QVERIFY(fdError(g, loss, dg) < kFdTolerance);
        QVERIFY(fdError(u, loss, du) < kFdTolerance);
    }

    void lossGradientsMatchFiniteDifferences()
    {
        const std::int64_t n = 3, vocab = 11;
        auto s = randomVector(n * vocab, 17, 2.0f), t = randomVector(n * vocab, 18, 2.0f);
        const std::vector<std::int32_t> targets{3, 0, 10};
        std::vector<float> d(s.size());
        crossEntropy(s.data(), n, vocab, targets.data(), d.data());
        QVERIFY(fdError(s, [&] { return crossEntropy(s.data(), n, vocab, targets.data(), nullptr); }, d) < kFdTolerance);
        std::fill(d.begin(), d.end(), 0.0f);
        klDivergence(t.data(), s.data(), n, vocab, 2.0f, d.data());
        QVERIFY(fdError(s, [&] { return klDivergence(t.data(), s.data(), n, vocab, 2.0f, nullptr); }, d) < kFdTolerance);
        // KL of a distribution with itself is 0; cross-entropy of uniform logits is log(vocab)
        QVERIFY(std::abs(klDivergence(t.data(), t.data(), n, vocab, 3.0f, nullptr)) < 1e-9);
        std::vector<float> flat(n * vocab, 0.5f);
        QVERIFY(std::abs(crossEntropy(flat.data(), n, vocab, targets.data(), nullptr) - std::log(11.0)) < 1e-9);
    }

    void embeddingBackwardAddsRows()
    {
        const std::vector<std::int32_t> ids{2, 0, 2};
        const std::vector<float> dx{1, 2, 3, 4, 5, 6};
        std::vector<float> d(6, 0.0f);
        embeddingBackward(2, ids.data(), 3, dx.data(), d.data());
        QCOMPARE(d, (std::vector<float>{3, 4, 0, 0, 6, 8}));
    }

    void gradientsMatchPyTorch_data()
    {
        QTest::addColumn<QString>("name");
        QTest::newRow("llama untied GQA") << QStringLiteral("student-llama");
        QTest::newRow("qwen2 tied biases") << QStringLiteral("student-qwen2");
    }

    void gradientsMatchPyTorch()
    {
        QFETCH(QString, name);
        std::vector<std::int32_t> ids, in, tg;
        auto state = readState(trainData(QStringLiteral("state-%1.safetensors").arg(name)), &ids);
        QVERIFY(!state.empty());
        splitBatch(ids, in, tg);
        auto model = Model::load(trainData(name));
        QVERIFY2(model, model ? "" : qPrintable(model.error().message));
        auto tm = TrainModel::fromModel(**model);
        QVERIFY(tm);
        Tape tape;
        tm->forward(in.data(), 2, 8, tape);
        const std::int64_t vocab = tm->config().vocabSize;
        QVERIFY(relError(tape.logits.data(), state["logits"].data(), tape.logits.size()) < kTorchTolerance);
        // the training forward computes what the runtime computes
        Transformer rt(*model, LinearBackend::Eigen);
        for (int s = 0; s < 2; ++s) {
            KVCache cache = rt.makeCache(8);
            std::vector<float> logits;
            QVERIFY(rt.forward(std::span(in).subspan(s * 8, 8), cache, logits));
            QVERIFY(relError(logits.data(), tape.logits.data() + s * 8 * vocab, logits.size()) < 1e-5);
        }
        std::vector<float> d(tape.logits.size());
        const double ce = crossEntropy(tape.logits.data(), 16, vocab, tg.data(), d.data());
        QVERIFY(std::abs(ce - state["loss_ce"][0]) < 1e-5 * std::abs(ce));
        tm->backward(tape, d);
        int compared = 0;
        for (const Parameter &p : tm->params()) {
            const auto &ref = state[QStringLiteral("grad_ce.") + p.name];
            QCOMPARE(ref.size(), p.grad.size());
            const double err = relError(p.grad.data(), ref.data(), ref.size());
            QVERIFY2(err < kTorchTolerance, qPrintable(QStringLiteral("%1: %2").arg(p.name).arg(err)));
            ++compared;
        }
        QCOMPARE(compared, static_cast<int>(std::count_if(state.begin(), state.end(), [](auto &kv) { return kv.first.startsWith(QStringLiteral("grad_ce.")); })));
    }

    void distillationGradientsMatchPyTorch()
    {
        std::vector<std::int32_t> ids, in, tg;
        auto state = readState(trainData(QStringLiteral("state-student-llama.safetensors")), &ids);
        splitBatch(ids, in, tg);
        auto student = Model::load(trainData(QStringLiteral("student-llama")));
        auto teacher = Model::load(trainData(QStringLiteral("teacher")));
        QVERIFY(student && teacher);
        // teacher logits from the core runtime (no grad), as the distiller computes them
        std::vector<float> tlogits = teacherLogits(Transformer(*teacher, LinearBackend::Eigen), in, 2, 8);
        QVERIFY(relError(tlogits.data(), state["teacher_logits"].data(), tlogits.size()) < kTorchTolerance);
        auto tm = TrainModel::fromModel(**student);
        Tape tape;
        tm->forward(in.data(), 2, 8, tape);
        std::vector<float> d(tape.logits.size());
        const KdLoss loss = distillationLoss(tape.logits.data(), tlogits.data(), tg.data(), 16, tm->config().vocabSize, 2.0f, 0.5f, d.data());
        QVERIFY(std::abs(loss.total - state["loss_kd"][0]) < 1e-5 * loss.total);
        QVERIFY(std::abs(loss.kl - state["kl"][0]) < 1e-4 * loss.kl);
        tm->backward(tape, d);
        for (const Parameter &p : tm->params()) {
            const double err = relError(p.grad.data(), state[QStringLiteral("grad_kd.") + p.name].data(), p.grad.size());
            QVERIFY2(err < kTorchTolerance, qPrintable(QStringLiteral("%1: %2").arg(p.name).arg(err)));
        }
    }

    void adamWithClippingMatchesPyTorch()
    {
        std::vector<std::int32_t> ids, in, tg;
        auto state = readState(trainData(QStringLiteral("state-student-llama.safetensors")), &ids);
        splitBatch(ids, in, tg);
        auto student = Model::load(trainData(QStringLiteral("student-llama")));
        auto tm = TrainModel::fromModel(**student);
        const TrainModel start = *tm;
        AdamW opt(*tm, AdamWSettings{0.9, 0.999, 1e-8, 0.1});
        for (int step = 0; step < 2; ++step) {
            tm->zeroGrad();
            Tape tape;
            tm->forward(in.data(), 2, 8, tape);
            std::vector<float> d(tape.logits.size());
            crossEntropy(tape.logits.data(), 16, tm->config().vocabSize, tg.data(), d.data());
            tm->backward(tape, d);
            const double norm = clipGradients(*tm, 1.0);
            QVERIFY(norm > 1.0); // the clip is exercised
            opt.step(*tm, 1e-2);
        }
        for (std::size_t i = 0; i < tm->params().size(); ++i) {
            const Parameter &p = tm->params()[i];
            const auto &ref = state[QStringLiteral("adam.") + p.name];
            // error relative to the size of the update (not of the weights)
            double num = 0, den = 0;
            for (std::size_t j = 0; j < ref.size(); ++j) {
                num += std::pow(double(p.value[j]) - ref[j], 2);
                den += std::pow(double(ref[j]) - start.params()[i].value[j], 2);
            }
            QVERIFY2(std::sqrt(num / den) < 1e-3, qPrintable(p.name));
        }
    }

    void hiddenStateLossGradientsMatchFiniteDifferences()
    {
        auto hs = randomVector(4 * 6, 30), ht = randomVector(4 * 6, 31);
        for (bool cosine : {false, true}) {
            std::vector<float> d(hs.size(), 0.0f);
            hiddenStateLoss(hs.data(), ht.data(), 4, 6, cosine, d.data());
            QVERIFY(fdError(hs, [&] { return hiddenStateLoss(hs.data(), ht.data(), 4, 6, cosine, nullptr); }, d) < kFdTolerance);
            QVERIFY(std::abs(hiddenStateLoss(ht.data(), ht.data(), 4, 6, cosine, nullptr)) < 1e-9);
        }
    }

    void resumeIsExact()
    {
        auto teacher = Model::load(trainData(QStringLiteral("teacher")));
        auto studentModel = Model::load(trainData(QStringLiteral("student-llama")));
        QVERIFY(teacher && studentModel);
        std::vector<std::int32_t> text(400), val(64);
        std::mt19937 rng(5);
        for (auto &id : text)
            id = static_cast<std::int32_t>(rng() % 64);
        for (auto &id : val)
            id = static_cast<std::int32_t>(rng() % 64);
        QTemporaryDir tmp;
        DistillOptions o;
        o.steps = 6;
        o.learningRate = 1e-2;
        o.warmupSteps = 2;
        o.batch = 2;
        o.ctx = 8;
        o.accumulate = 2;
        o.hiddenWeight = 0.1; // exercises the hidden-state path too
        o.seed = 3;
        auto make = [&](const QString &ckpt) {
            DistillOptions oo = o;
            oo.checkpointDir = ckpt;
            return Distiller::create(*teacher, *TrainModel::fromModel(**studentModel), text, val, oo);
        };
        auto straight = make({});
        QVERIFY(straight);
        const double before = (*straight)->validationLoss();
        QVERIFY((*straight)->run(nullptr));
        QCOMPARE((*straight)->step(), 6);
        QVERIFY((*straight)->validationLoss() < before); // it learns
        auto first = make(tmp.path());
        QVERIFY((*first)->run(nullptr, {}, 3));
        QCOMPARE((*first)->step(), 3);
        auto resumed = make(tmp.path());
        QVERIFY((*resumed)->loadCheckpoint(tmp.path()));
        QCOMPARE((*resumed)->step(), 3);
        QVERIFY((*resumed)->run(nullptr));
        QCOMPARE((*resumed)->step(), 6);
        const auto &a = (*straight)->student().params(), &b = (*resumed)->student().params();
        for (std::size_t i = 0; i < a.size(); ++i)
            QVERIFY2(std::memcmp(a[i].value.data(), b[i].value.data(), a[i].value.size() * 4) == 0, qPrintable(a[i].name));
        // the losses of steps 4..6 agree too
        QCOMPARE((*straight)->history().back().loss, (*resumed)->history().back().loss);
        // a corrupt checkpoint is refused and leaves the distiller untouched
        QFile f(tmp.filePath(QStringLiteral("checkpoint.bin")));
        QVERIFY(f.open(QIODevice::ReadWrite));
        f.resize(f.size() / 2);
        f.close();
        auto other = make({});
        auto bad = (*other)->loadCheckpoint(tmp.path());
        QVERIFY(!bad);
        QCOMPARE(bad.error().code, ErrorCode::Format);
        QCOMPARE((*other)->step(), 0);
    }

    void quantizedStudentTrainsOnFrozenGridAndSavesCompressed()
    {
        auto dense = Model::load(trainData(QStringLiteral("student-llama")));
        auto teacher = Model::load(trainData(QStringLiteral("teacher")));
        QVERIFY(dense && teacher);
        std::shared_ptr<Model> q = (*dense)->cloneMutable();
        const QuantFormat fmt{3, 16, false};
        int quantized = 0;
        for (const WeightInfo &w : (*dense)->weights()) {
            if (!isLinearRole(w.role))
                continue;
            auto qt = quantizeRtn((*dense)->weight(w.name), fmt);
            QVERIFY(qt);
            QVERIFY(q->setQuantized(w.name, std::move(*qt), Execution::WeightOnly));
            ++quantized;
        }
        auto tm = TrainModel::fromModel(*q);
        QVERIFY(tm);
        int qat = 0;
        for (const Parameter &p : tm->params()) {
            if (!p.grid)
                continue;
            ++qat;
            // at step 0 the fake-quantized weights are exactly the compressed model's
            const MatrixView v = q->weight(p.name);
            QVERIFY(std::equal(p.effective.begin(), p.effective.end(), v.data()));
            QVERIFY(tm->quantizedResult(p).codes == q->quantizedLayer(p.name)->unpacked().codes);
        }
        QCOMPARE(qat, quantized);
        std::vector<std::int32_t> text(300);
        std::mt19937 rng(9);
        for (auto &id : text)
            id = static_cast<std::int32_t>(rng() % 64);
        DistillOptions o;
        o.steps = 5;
        o.learningRate = 2e-2;
        o.batch = 2;
        o.ctx = 8;
        auto d = Distiller::create(*teacher, std::move(*tm), text, {}, o);
        QVERIFY(d);
        QVERIFY((*d)->run(nullptr));
        QTemporaryDir tmp;
        const QString out = tmp.filePath(QStringLiteral("student"));
        auto saved = saveStudent((*d)->student(), *q, **dense, out);
        QVERIFY2(saved, saved ? "" : qPrintable(saved.error().message));
        auto back = Model::load(out);
        QVERIFY2(back, back ? "" : qPrintable(back.error().message));
        QCOMPARE(static_cast<int>((*back)->quantizedLayers().size()), quantized);
        int changedCodes = 0;
        for (const Parameter &p : (*d)->student().params()) {
            const MatrixView v = (*back)->weight(p.name);
            if (p.grid) {
                const QuantizedLayer *l = (*back)->quantizedLayer(p.name);
                QVERIFY(l && l->unpacked().format == fmt);
                QVERIFY(l->unpacked().scales == p.grid->scales); // the grid stayed frozen
                QVERIFY(std::equal(p.effective.begin(), p.effective.end(), v.data()));
                changedCodes += l->unpacked().codes != q->quantizedLayer(p.name)->unpacked().codes;
            } else {
                QVERIFY(std::equal(p.value.begin(), p.value.end(), v.data())); // dense tensors saved in f32
            }
        }
        QVERIFY(changedCodes > 0); // training moved weights across quantization steps
    }

    void zerosOfSparseStudentsStayZero()
    {
        auto dense = Model::load(trainData(QStringLiteral("student-llama")));
        std::shared_ptr<Model> m = (*dense)->cloneMutable();
        const QString name = QStringLiteral("model.layers.0.mlp.up_proj.weight");
        float *w = m->mutableWeight(name);
        for (int i = 0; i < 64 * 32; i += 2)
            w[i] = 0.0f;
        auto tm = TrainModel::fromModel(*m);
        QVERIFY(tm && !tm->find(name)->mask.empty());
        std::vector<std::int32_t> text(300);
        std::mt19937 rng(11);
        for (auto &id : text)
            id = static_cast<std::int32_t>(rng() % 64);
        DistillOptions o;
        o.steps = 3;
        o.learningRate = 1e-2;
        o.weightDecay = 0.1;
        o.alpha = 0.0f; // CE alone: no teacher needed
        o.batch = 2;
        o.ctx = 8;
        auto d = Distiller::create(nullptr, std::move(*tm), text, {}, o);
        QVERIFY(d);
        QVERIFY((*d)->run(nullptr));
        const Parameter *p = (*d)->student().find(name);
        int moved = 0;
        for (int i = 0; i < 64 * 32; ++i) {
            if (i % 2 == 0)
                QCOMPARE(p->value[static_cast<std::size_t>(i)], 0.0f);
            else
                moved += p->value[static_cast<std::size_t>(i)] != w[i];
        }
        QVERIFY(moved > 1000);
    }

    void architectureStudentsStartFromTheTeacher()
    {
        auto teacher = Model::load(trainData(QStringLiteral("student-llama")));
        auto s = TrainModel::architectureStudent(**teacher, QStringLiteral("layers:every-other,mlp:0.5"));
        QVERIFY2(s, s ? "" : qPrintable(s.error().message));
        QCOMPARE(s->config().numLayers, 1);
        QCOMPARE(s->config().intermediateSize, 32);
        const MatrixView q0 = (*teacher)->weight(QStringLiteral("model.layers.0.self_attn.q_proj.weight"));
        const Parameter *q = s->find(QStringLiteral("model.layers.0.self_attn.q_proj.weight"));
        QVERIFY(std::equal(q->value.begin(), q->value.end(), q0.data()));
        // each kept gate row is a row of the teacher's gate, and down keeps the matching columns
        const MatrixView g0 = (*teacher)->weight(QStringLiteral("model.layers.0.mlp.gate_proj.weight"));
        const MatrixView d0 = (*teacher)->weight(QStringLiteral("model.layers.0.mlp.down_proj.weight"));
        const Parameter *g = s->find(QStringLiteral("model.layers.0.mlp.gate_proj.weight"));
        const Parameter *dn = s->find(QStringLiteral("model.layers.0.mlp.down_proj.weight"));
        QCOMPARE(g->rows, 32);
        QCOMPARE(dn->cols, 32);
        for (std::int64_t j = 0; j < 32; ++j) {
            std::int64_t src = -1;
            for (std::int64_t r = 0; r < 64 && src < 0; ++r)
                if (std::equal(g->value.begin() + j * 32, g->value.begin() + (j + 1) * 32, g0.data() + r * 32))
                    src = r;
            QVERIFY(src >= 0);
            QCOMPARE(dn->value[0 * 32 + j], d0.data()[0 * 64 + src]);
        }
        QVERIFY(!TrainModel::architectureStudent(**teacher, QStringLiteral("layers:half")));
        // saved as a plain folder that the runtime runs exactly like the training forward
        QTemporaryDir tmp;
        QVERIFY(saveDenseStudent(*s, (*teacher)->folder(), tmp.filePath(QStringLiteral("small"))));
        auto back = Model::load(tmp.filePath(QStringLiteral("small")));
        QVERIFY2(back, back ? "" : qPrintable(back.error().message));
        QCOMPARE((*back)->config().numLayers, 1);
        const std::vector<std::int32_t> ids{1, 5, 9, 33, 2, 7};
        Tape tape;
        s->forward(ids.data(), 1, 6, tape);
        Transformer rt(*back, LinearBackend::Eigen);
        KVCache cache = rt.makeCache(6);
        std::vector<float> logits;
        QVERIFY(rt.forward(ids, cache, logits));
        QVERIFY(relError(logits.data(), tape.logits.data(), logits.size()) < 1e-5);
        // from scratch: same shapes, fresh weights
        auto scratch = TrainModel::architectureStudent(**teacher, QStringLiteral("layers:every-other,init:random"));
        QVERIFY(scratch && scratch->config().numLayers == 1);
        QVERIFY(scratch->find(QStringLiteral("model.layers.0.self_attn.q_proj.weight"))->value != q->value);
    }

    void scheduleWarmsUpThenDecays()
    {
        QCOMPARE(scheduledLearningRate(1.0, 0, 10, 2, 0.1), 0.5);
        QCOMPARE(scheduledLearningRate(1.0, 1, 10, 2, 0.1), 1.0);
        QCOMPARE(scheduledLearningRate(1.0, 2, 10, 2, 0.1), 1.0);
        QVERIFY(std::abs(scheduledLearningRate(1.0, 9, 10, 2, 0.1) - 0.1) < 1e-12); // the last step: the floor
        // no warm-up, 9 steps: step 4 is halfway along the cosine: 0.1 + 0.5 · 0.9 = 0.55
        QVERIFY(std::abs(scheduledLearningRate(1.0, 4, 9, 0, 0.1) - 0.55) < 1e-12);
    }
};

QTEST_GUILESS_MAIN(TestTrain)
#include "tst_train.moc"
