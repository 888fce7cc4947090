// tst_distillation.cpp: the Distillation view, offscreen, on the bundled model's compressed
// student (the recipe RTN w4 g64): a tiny run (ctx 32, batch 1) draws one curve point per step
// holding exactly the losses that core's Distiller computes for the same student and options
// (an independent run of the engine here); pause holds the worker between two steps (the step
// count does not advance) and resume finishes the run; cancel (also while paused) ends the job
// as Cancelled and adds nothing; a completed run adds a measured "distilled" point to the
// document the accuracy-vs-size chart draws.
#include "core/compression.h"
#include "core/evaluate.h"
#include "core/layerassignment.h" // assignableLayers
#include "core/sdk/techniqueregistry.h"
#include "core/train/distill.h"
#include "ui/distillationwidget.h"
#include "ui/jobmanager.h"
#include "ui/projectdocument.h"

#include <QElapsedTimer>
#include <QSignalSpy>
#include <QTest>
#include <qcustomplot.h>

#include <cmath>

using namespace bitsmith;

namespace {

bool waitFinished(ui::Job *job, int ms = 180000)
{
    if (!job)
        return false;
    if (job->isRunning()) {
        QSignalSpy spy(job, &ui::Job::finished);
        spy.wait(ms);
    }
    return !job->isRunning();
}

// Processes events until `pred` holds or `ms` pass.
template<class Pred>
bool waitUntil(Pred pred, int ms = 60000)
{
    QElapsedTimer t;
    t.start();
    while (!pred() && t.elapsed() < ms)
        QTest::qWait(10);
    return pred();
}

ui::DistillationWidget::Settings tinySettings(int steps)
{
    ui::DistillationWidget::Settings s;
    s.student = QStringLiteral("recipe");
    s.steps = steps;
    s.learningRate = 3e-4;
    s.temperature = 2.0;
    s.alpha = 0.5; // both parts non-zero
    s.batch = 1;
    s.ctx = 32;
    s.evalEvery = 2;
    s.valWindows = 2;
    return s;
}

} // namespace

class TestDistillation : public QObject
{
    Q_OBJECT

private slots:
    void initTestCase()
    {
        auto m = core::Model::load(QStringLiteral("default"));
        QVERIFY2(m.has_value(), m ? "" : qPrintable(m.error().toString()));
        m_model = std::move(*m);
        m_doc.setModel(m_model, QStringLiteral("default"));
        core::Recipe r = m_doc.recipe();
        r.defaultTechnique = QStringLiteral("rtn");
        r.defaultFormat = core::QuantFormat{4, 64, false};
        m_doc.loadRecipe(r, QStringLiteral("w4 g64"));
        QCOMPARE(m_doc.recipe().defaultFormat.groupSize, 64);
    }

    void curveFollowsEngine()
    {
        ui::DistillationWidget w(&m_doc, &m_jobs);
        const auto s = tinySettings(4);
        w.setSettings(s);
        const std::size_t measuredBefore = m_doc.measuredPoints().size();
        QSignalSpy steps(&w, &ui::DistillationWidget::stepReceived);
        QSignalSpy ended(&w, &ui::DistillationWidget::runEnded);
        ui::Job *job = w.start();
        QVERIFY(job);
        QVERIFY(m_jobs.jobs().contains(job)); // listed in the Jobs view
        QVERIFY(waitFinished(job));
        QVERIFY2(job->state() == ui::Job::State::Succeeded, job->error() ? qPrintable(job->error()->toString()) : "");
        QVERIFY(waitUntil([&] { return ended.count() == 1; }));
        QCOMPARE(ended.first().first().toString(), QStringLiteral("finished"));
        QCOMPARE(steps.count(), 4);
        QCOMPARE(w.curvePointCount(), 4);
        QCOMPARE(w.validationPointCount(), 2); // steps 2 and 4

        // The same run through the engine directly: same student (RTN w4 g64), same options.
        core::TechniqueRegistry registry;
        auto compressed = core::compressModel(*m_model, m_doc.recipe(), registry, {});
        QVERIFY(compressed.has_value());
        auto tm = core::train::TrainModel::fromModel(*compressed->model);
        QVERIFY(tm.has_value());
        auto trainIds = core::tokenizeTextFile(*m_model, m_model->folder() + QStringLiteral("/calib.txt"));
        auto evalIds = core::tokenizeTextFile(*m_model, m_model->folder() + QStringLiteral("/eval.txt"));
        QVERIFY(trainIds && evalIds);
        core::train::DistillOptions o;
        o.steps = s.steps;
        o.learningRate = s.learningRate;
        o.temperature = static_cast<float>(s.temperature);
        o.alpha = static_cast<float>(s.alpha);
        o.batch = s.batch;
        o.ctx = s.ctx;
        o.evalEvery = s.evalEvery;
        o.valWindows = s.valWindows;
        auto d = core::train::Distiller::create(m_model, std::move(*tm), std::move(*trainIds), std::move(*evalIds), o);
        QVERIFY(d.has_value());
        QVERIFY((*d)->run(nullptr).has_value());
        const auto &ref = (*d)->history();
        QCOMPARE(ref.size(), std::size_t(4));
        const auto &got = w.received();
        QCOMPARE(got.size(), std::size_t(4));
        QCPGraph *loss = w.plot()->graph(0), *kd = w.plot()->graph(1), *ce = w.plot()->graph(2);
        for (std::size_t i = 0; i < 4; ++i) {
            QCOMPARE(got[i].step, static_cast<int>(i) + 1);
            const auto close = [](double a, double b) { return std::abs(a - b) <= 1e-4 * std::max(1.0, std::abs(b)); };
            QVERIFY2(close(got[i].loss, ref[i].loss), qPrintable(QStringLiteral("step %1: %2 vs %3").arg(i + 1).arg(got[i].loss).arg(ref[i].loss)));
            QVERIFY(close(got[i].kd, ref[i].kd));
            QVERIFY(close(got[i].ce, ref[i].ce));
            QVERIFY(got[i].kd > 0 && got[i].ce > 0);
            // The curves hold what the view received.
            const int k = static_cast<int>(i);
            QCOMPARE(loss->data()->at(k)->key, double(i + 1));
            QCOMPARE(loss->data()->at(k)->value, got[i].loss);
            QCOMPARE(kd->data()->at(k)->value, got[i].kd);
            QCOMPARE(ce->data()->at(k)->value, got[i].ce);
        }
        QVERIFY(std::isfinite(got[3].valLoss));
        QVERIFY(std::abs(got[3].valLoss - ref[3].valLoss) < 1e-4);

        // A completed run adds one measured point to the frontier data.
        QCOMPARE(m_doc.measuredPoints().size(), measuredBefore + 1);
        const core::MeasuredPoint &p = m_doc.measuredPoints().back();
        QCOMPARE(p.kind, QStringLiteral("distilled"));
        QCOMPARE(p.bitsPerWeight, m_doc.totals().bitsPerWeight);
        QVERIFY(p.bitsPerWeight > 4.0 && p.bitsPerWeight < 5.0); // w4 g64 with its scales and zeros
        QVERIFY(std::isfinite(p.perplexity) && p.perplexity > 1.0 && p.perplexity < 200.0);
        QVERIFY(p.kl > 0.0 && p.kl < 1.0);
        QVERIFY(w.resultText().contains(QStringLiteral("steps done")));
    }

    // An architecture student (half the blocks): its point sits at the size of the kept linears
    // stored like the teacher's (bf16), over the teacher's compressible parameters (8 bits/weight).
    void halfDepthStudentPoint()
    {
        ui::DistillationWidget w(&m_doc, &m_jobs);
        auto s = tinySettings(2);
        s.student = QStringLiteral("layers:every-other");
        w.setSettings(s);
        QCOMPARE(w.settings().student, s.student);
        const std::size_t measuredBefore = m_doc.measuredPoints().size();
        ui::Job *job = w.start();
        QVERIFY(waitFinished(job));
        QVERIFY2(job->state() == ui::Job::State::Succeeded, job->error() ? qPrintable(job->error()->toString()) : "");
        QCOMPARE(w.received().size(), std::size_t(2));
        QCOMPARE(m_doc.measuredPoints().size(), measuredBefore + 1);
        double blocks = 0;
        for (const core::AssignableLayer &l : core::assignableLayers(*m_model))
            if (!l.isHead)
                blocks += static_cast<double>(l.parameters());
        QCOMPARE(m_doc.totals().parameters, blocks); // the chart's x axis: the blocks' linears
        QCOMPARE(m_model->config().numLayers, 8);
        // 4 of 8 equal blocks kept, stored as the teacher's bf16: half of 16 bits per weight.
        const double expected = 16.0 * (blocks / 2.0) / blocks;
        const core::MeasuredPoint &p = m_doc.measuredPoints().back();
        QVERIFY2(std::abs(p.bitsPerWeight - expected) < 1e-9, qPrintable(QStringLiteral("%1 vs %2").arg(p.bitsPerWeight).arg(expected)));
        QCOMPARE(p.label, QStringLiteral("distilled layers:every-other"));
        QVERIFY(std::isfinite(p.perplexity) && p.kl > 0.0);
    }

    void pauseHoldsAndResumeFinishes()
    {
        ui::DistillationWidget w(&m_doc, &m_jobs);
        w.setSettings(tinySettings(5));
        ui::Job *job = w.start();
        QVERIFY(job);
        QVERIFY(waitUntil([&] { return !w.received().empty(); }));
        w.pause();
        QVERIFY(w.isPaused());
        QVERIFY(waitUntil([&] { return w.isWorkerWaiting(); }));
        QTest::qWait(100); // the event of the last step before the pause arrives
        const std::size_t held = w.received().size();
        QVERIFY(held < 5);
        QTest::qWait(1500);
        QCOMPARE(w.received().size(), held); // no step while paused
        QVERIFY(job->isRunning());
        QVERIFY(w.isWorkerWaiting());
        QVERIFY(job->status().contains(QStringLiteral("paused")));
        w.resume();
        QVERIFY(!w.isPaused());
        QVERIFY(waitFinished(job));
        QCOMPARE(job->state(), ui::Job::State::Succeeded);
        QCOMPARE(w.received().size(), std::size_t(5));
        for (std::size_t i = 0; i < 5; ++i)
            QCOMPARE(w.received()[i].step, static_cast<int>(i) + 1);
    }

    void cancelWhilePausedEnds()
    {
        ui::DistillationWidget w(&m_doc, &m_jobs);
        w.setSettings(tinySettings(200));
        const std::size_t measuredBefore = m_doc.measuredPoints().size();
        QSignalSpy ended(&w, &ui::DistillationWidget::runEnded);
        ui::Job *job = w.start();
        QVERIFY(job);
        QVERIFY(waitUntil([&] { return !w.received().empty(); }));
        w.pause();
        QVERIFY(waitUntil([&] { return w.isWorkerWaiting(); }));
        w.cancel();
        QVERIFY(waitFinished(job, 30000));
        QCOMPARE(job->state(), ui::Job::State::Cancelled);
        QVERIFY(waitUntil([&] { return ended.count() == 1; }));
        QCOMPARE(ended.first().first().toString(), QStringLiteral("cancelled"));
        QVERIFY(w.received().size() < 200);
        QVERIFY(w.resultText().contains(QStringLiteral("Cancelled")));
        QVERIFY(!w.isPaused());
        QCOMPARE(m_doc.measuredPoints().size(), measuredBefore); // nothing added

        // Cancel of a running (not paused) job, from the Jobs view's side.
        QSignalSpy ended2(&w, &ui::DistillationWidget::runEnded);
        ui::Job *job2 = w.start();
        QVERIFY(job2);
        QVERIFY(waitUntil([&] { return !w.received().empty(); }));
        job2->cancel();
        QVERIFY(waitFinished(job2, 30000));
        QCOMPARE(job2->state(), ui::Job::State::Cancelled);
        QVERIFY(waitUntil([&] { return ended2.count() == 1; }));
        QCOMPARE(ended2.first().first().toString(), QStringLiteral("cancelled"));
    }

private:
    std::shared_ptr<const core::Model> m_model;
    ui::ProjectDocument m_doc;
    ui::JobManager m_jobs;
};

QTEST_MAIN(TestDistillation)
#include "tst_distillation.moc"
