// tst_responsiveness.cpp: the workbench on a generated model of 560 compressible layers (80
// tiny blocks): how long the UI thread is busy for each user-visible step — opening, showing
// sensitivity results in every view, repainting each view, a cell edit, fill to budget,
// undo/redo, changing the selection. The goal is < 100 ms per frame (README); the assertions
// use a generous bound (1.5 s) so that a loaded CI machine does not flake, and every figure is
// printed. The sensitivity values here are generated (the timing does not depend on them; the
// real sweep is exercised by tst_workbench).
#include "core/layerassignment.h"
#include "tinymodel.h"
#include "ui/assignmenttablemodel.h"
#include "ui/assignmentwidget.h"
#include "ui/frontierwidget.h"
#include "ui/jobmanager.h"
#include "ui/layerbrowserwidget.h"
#include "ui/mainwindow.h"
#include "ui/projectdocument.h"

#include <QDockWidget>
#include <QElapsedTimer>
#include <QSignalSpy>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QTest>
#include <QUndoStack>

#include <random>

using namespace bitsmith;

namespace {

constexpr qint64 kBoundMs = 1500;

// Runs `f`, then lets the event loop deliver what it queued (replots, layout), and returns the
// milliseconds the UI thread spent.
template<typename F>
qint64 timeUi(const char *what, F &&f)
{
    QElapsedTimer t;
    t.start();
    f();
    QCoreApplication::processEvents();
    const qint64 ms = t.elapsed();
    qInfo("%-44s %5lld ms", what, static_cast<long long>(ms));
    return ms;
}

} // namespace

class TestResponsiveness : public QObject
{
    Q_OBJECT

private slots:
    void largeModel();
    void bundledModelOpensQuickly();
};

void TestResponsiveness::largeModel()
{
    QStandardPaths::setTestModeEnabled(true);
    QTemporaryDir tmp;
    test::TinySpec spec;
    spec.layers = 80;
    spec.hidden = 32;
    spec.inter = 64;
    QVERIFY(test::writeTinyModel(tmp.filePath(QStringLiteral("big")), spec));

    ui::MainWindow w;
    w.setErrorDialogsEnabled(false);
    w.setAutosaveInterval(0);
    w.resize(1400, 900);
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    QSignalSpy loaded(&w, &ui::MainWindow::loadFinished);
    QElapsedTimer open;
    open.start();
    w.openModel(tmp.filePath(QStringLiteral("big")));
    QVERIFY(loaded.wait(60000));
    QVERIFY(loaded.first().first().toBool());
    qInfo("%-44s %5lld ms", "open (load on a worker + model reset)", static_cast<long long>(open.elapsed()));
    ui::ProjectDocument *doc = w.document();
    QCOMPARE(doc->layerCount(), 80 * 7);

    // Generated results for every layer × 4 settings.
    core::SensitivityResult r;
    r.settings = *core::parseSensitivitySettings(QStringLiteral("rtn:w2g32,rtn:w3g32,rtn:w4g32,rtn:w8"));
    std::mt19937 rng(7);
    std::uniform_real_distribution<double> u(0.5, 2.0);
    for (const core::AssignableLayer &l : doc->layers()) {
        r.layers.push_back(l.name);
        r.parameters.push_back(l.parameters());
        for (const core::SensitivitySetting &s : r.settings) {
            const double kl = u(rng) * std::pow(4.0, -s.format.bits);
            r.bytes.push_back(core::layerBytes(l, core::LayerSetting::fromSensitivity(s), 0));
            r.kl.push_back(kl);
            r.deltaLoss.push_back(kl * 0.9);
            r.perplexity.push_back(30 * std::exp(kl));
            r.relativeError.push_back(kl * 3);
            r.hessianError.push_back(kl * 5);
            r.activationError.push_back(kl * 2.5);
        }
    }
    r.ctx = 32;
    r.windows = 1;

    std::vector<qint64> frames;
    frames.push_back(timeUi("results into every view", [&] { doc->setSensitivity(r); }));
    for (ui::Job *j : w.jobs()->jobs()) { // the frontier runs on a worker
        QSignalSpy done(j, &ui::Job::finished);
        if (j->isRunning())
            QVERIFY(done.wait(60000));
    }
    QVERIFY(!doc->frontier().empty());
    frames.push_back(timeUi("frontier published", [] {}));
    for (const QString &view : ui::MainWindow::viewNames()) {
        QWidget *widget = w.viewWidget(view);
        QVERIFY(widget);
        if (auto *dock = qobject_cast<QDockWidget *>(widget->parentWidget()))
            dock->raise();
        const QByteArray label = QStringLiteral("show and repaint view '%1'").arg(view).toUtf8();
        frames.push_back(timeUi(label.constData(), [&] { widget->grab(); }));
    }
    frames.push_back(timeUi("edit one layer (table setData)", [&] {
        doc->layerModel()->setData(doc->layerModel()->index(100, 2), QStringLiteral("rtn:w2g32"));
    }));
    w.assignmentView()->setBudgetBitsPerWeight(3.5);
    bool filled = false;
    frames.push_back(timeUi("fill to budget (exact DP, 560 layers)", [&] { filled = w.assignmentView()->fillToBudget(); }));
    QVERIFY(filled);
    QVERIFY(doc->totals().bitsPerWeight <= 3.5 + 1e-9);
    frames.push_back(timeUi("undo", [&] { doc->undoStack()->undo(); }));
    frames.push_back(timeUi("redo", [&] { doc->undoStack()->redo(); }));
    frames.push_back(timeUi("select a layer (all views follow)", [&] { doc->selectLayer(400); }));
    frames.push_back(timeUi("filter the model table", [&] { w.layerBrowser()->setFilterText(QStringLiteral("mlp.down")); }));
    frames.push_back(timeUi("repaint the whole window", [&] { w.grab(); }));
    const qint64 worst = *std::max_element(frames.begin(), frames.end());
    qInfo("worst UI-thread step: %lld ms (goal 100 ms)", static_cast<long long>(worst));
    QVERIFY2(worst < kBoundMs, qPrintable(QString::number(worst)));
}

void TestResponsiveness::bundledModelOpensQuickly()
{
    QElapsedTimer t;
    t.start();
    ui::MainWindow w;
    w.setAutosaveInterval(0);
    w.show();
    QSignalSpy loaded(&w, &ui::MainWindow::loadFinished);
    w.openModel(QStringLiteral("default"));
    QVERIFY(loaded.wait(30000));
    w.grab();
    const qint64 ms = t.elapsed();
    qInfo("bundled model: window + load + first paint %lld ms (goal < 2000 ms)", static_cast<long long>(ms));
    QVERIFY2(ms < 10000, qPrintable(QString::number(ms)));
}

QTEST_MAIN(TestResponsiveness)
#include "tst_responsiveness.moc"
