// screenshot.cpp: the demo state and offscreen rendering behind --screenshot.
#include "screenshot.h"

#include "assignmentwidget.h"
#include "distillationwidget.h"
#include "frontierwidget.h"
#include "inspectorwidget.h"
#include "jobmanager.h"
#include "mainwindow.h"
#include "projectdocument.h"
#include "tryitwidget.h"
#include "workbenchtasks.h"

#include <QCoreApplication>
#include <QElapsedTimer>
#include <QEventLoop>
#include <QPixmap>
#include <QTimer>
#include <QUndoStack>

namespace bitsmith::ui {

namespace {

void settle(int ms = 50)
{
    QElapsedTimer t;
    t.start();
    do {
        QCoreApplication::processEvents(QEventLoop::AllEvents, 20);
    } while (t.elapsed() < ms);
}

core::Error jobError(Job *job)
{
    if (job && job->error())
        return *job->error();
    return core::fail(core::ErrorCode::Internal, QStringLiteral("a job did not finish"));
}

} // namespace

bool waitForJob(Job *job, int timeoutMs)
{
    if (!job)
        return false;
    if (job->isRunning()) {
        QEventLoop loop;
        QObject::connect(job, &Job::finished, &loop, &QEventLoop::quit);
        QTimer::singleShot(timeoutMs, &loop, &QEventLoop::quit);
        loop.exec();
    }
    return job->state() == Job::State::Succeeded;
}

core::Expected<void> prepareScreenshot(MainWindow &window, const QString &view)
{
    ProjectDocument *doc = window.document();
    if (!doc->model())
        return core::unexpected(core::fail(core::ErrorCode::InvalidArgument, QStringLiteral("no model loaded")));
    if (!doc->sensitivity()) {
        Job *sweep = window.runQuickSensitivity();
        if (!waitForJob(sweep))
            return core::unexpected(jobError(sweep));
    }
    const bool fromProject = !doc->fileName().isEmpty();
    if (!fromProject && doc->undoStack()->count() == 0) {
        window.assignmentView()->setBudgetBitsPerWeight(4.0);
        window.assignmentView()->fillToBudget();
        doc->saveConfiguration(QStringLiteral("4-bit budget"));
        window.assignmentView()->setBudgetBitsPerWeight(3.25);
        window.assignmentView()->fillToBudget();
    }
    const int layer = doc->layerIndex(QStringLiteral("model.layers.1.mlp.down_proj"));
    doc->selectLayer(layer >= 0 ? layer : 0);
    // The frontier job started with the sensitivity results.
    for (Job *j : window.jobs()->jobs())
        waitForJob(j);
    const bool all = view.isEmpty();
    if ((all || view == QLatin1String("frontier") || view == QLatin1String("jobs")) && doc->measuredPoints().empty()) {
        Job *uniform = window.frontierView()->measureUniform();
        if (!waitForJob(uniform))
            return core::unexpected(jobError(uniform));
        Job *current = window.frontierView()->measureCurrent();
        if (!waitForJob(current))
            return core::unexpected(jobError(current));
    }
    if (all || view == QLatin1String("tryit") || view == QLatin1String("jobs")) {
        Job *gen = window.tryItView()->run();
        if (!waitForJob(gen))
            return core::unexpected(jobError(gen));
    }
    if (view == QLatin1String("distill")) {
        // A short real run on the current recipe's compressed model (a few seconds): the curves,
        // the validation points and the result line are the engine's.
        DistillationWidget *d = window.distillationView();
        DistillationWidget::Settings s;
        s.student = QStringLiteral("recipe");
        s.steps = 16;
        s.learningRate = 3e-4;
        s.batch = 2;
        s.ctx = 64;
        s.evalEvery = 4;
        s.valWindows = 8;
        d->setSettings(s);
        Job *run = d->start();
        if (!waitForJob(run, 300000))
            return core::unexpected(jobError(run));
    }
    if (view == QLatin1String("jobs")) {
        // One job still running, so the view shows progress, elapsed and remaining time.
        SweepSpec spec = SweepSpec::quick();
        spec.candidates = QStringLiteral("rtn:w2g64,rtn:w3g64,rtn:w4g128,rtn:w8,gptq:w4g128,gptq:w3g64");
        Job *running = window.runSensitivity(spec);
        QElapsedTimer t;
        t.start();
        while (running->isRunning() && (running->progress() < 0.15 || t.elapsed() < 1500) && t.elapsed() < 20000)
            settle(100);
    }
    QElapsedTimer t;
    t.start();
    while (window.inspectorView()->isBusy() && t.elapsed() < 30000)
        settle(20);
    return {};
}

QImage renderScreenshot(MainWindow &window, const QString &view, QSize size)
{
    if (!view.isEmpty())
        window.showOnlyView(view);
    window.show();
    settle(50);
    window.resize(size); // the docks shown before may have grown the window
    settle(150);
    return window.grab().toImage();
}

} // namespace bitsmith::ui
