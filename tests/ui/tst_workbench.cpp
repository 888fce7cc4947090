// tst_workbench.cpp: the workbench's main flows, offscreen, on the bundled model: open the
// model → run a (small) sensitivity sweep → fill to budget → undo/redo an edit → the curve
// marker moves to where the sensitivity sums put it → save the project, reopen it, identical
// state; cancel a running job; the shared selection; heatmap hover/click; the inspector against
// the quantizer's grid; plot export; themes; autosave and recovery.
#include "core/allocation.h"
#include "core/experiment.h"
#include "core/project.h"
#include "core/quant/quantizer.h"
#include "ui/assignmenttablemodel.h"
#include "ui/assignmentwidget.h"
#include "ui/frontierwidget.h"
#include "ui/inspectorwidget.h"
#include "ui/jobmanager.h"
#include "ui/jobswidget.h"
#include "ui/layerbrowserwidget.h"
#include "ui/layertablemodel.h"
#include "ui/mainwindow.h"
#include "ui/plotutil.h"
#include "ui/projectdocument.h"
#include "ui/sensitivitywidget.h"
#include "ui/sweepdialog.h"
#include "ui/tryitwidget.h"
#include "ui/workbenchtasks.h"
#include "tests/testutil.h"

#include <QApplication>
#include <QFile>
#include <QItemSelectionModel>
#include <QLineEdit>
#include <QPushButton>
#include <QSignalSpy>
#include <QSortFilterProxyModel>
#include <QStandardPaths>
#include <QTableView>
#include <QTemporaryDir>
#include <QTest>
#include <QTreeWidget>
#include <QUndoStack>
#include <qcustomplot.h>

#include <cmath>

using namespace bitsmith;

namespace {

bool waitJob(ui::Job *job, int ms = 120000)
{
    if (!job)
        return false;
    if (job->isRunning()) {
        QSignalSpy spy(job, &ui::Job::finished);
        spy.wait(ms);
    }
    return job->state() == ui::Job::State::Succeeded;
}

// The small sweep the tests share: 3 RTN settings, 1 window of 64 tokens (a few seconds).
ui::SweepSpec testSweep()
{
    ui::SweepSpec s = ui::SweepSpec::quick();
    s.candidates = QStringLiteral("rtn:w2g64,rtn:w4g128,rtn:w8");
    s.options.windows = 1;
    s.options.calibSequences = 4;
    return s;
}

// Bits per weight and predicted KL of the document's settings, recomputed here from the raw
// result matrices (not through the document's own totals).
QPointF expectedMarker(const ui::ProjectDocument &doc)
{
    const core::SensitivityResult &r = *doc.sensitivity();
    double bytes = 0, params = 0, kl = 0;
    for (int i = 0; i < doc.layerCount(); ++i) {
        const core::LayerSetting &s = doc.setting(i);
        std::size_t row = 0;
        while (r.layers[row] != doc.layers()[static_cast<std::size_t>(i)].name)
            ++row;
        std::size_t col = 0;
        while (core::LayerSetting::fromSensitivity(r.settings[col]) != s)
            ++col;
        bytes += r.at(r.bytes, row, col);
        kl += r.at(r.kl, row, col);
        params += static_cast<double>(r.parameters[row]);
    }
    return {8.0 * bytes / params, kl};
}

} // namespace

class TestWorkbench : public QObject
{
    Q_OBJECT

private slots:
    void initTestCase();
    void mainFlow();
    void cancelRunningJob();
    void selectionIsShared();
    void heatmapHoverAndClick();
    void inspectorShowsTheGrid();
    void plotsExport();
    void darkTheme();
    void autosaveAndRecovery();
    void openExperimentFile();
    void sweepDialog();
    void mixtureOfExperts();

private:
    bool openDefault(ui::MainWindow &w);

    QTemporaryDir m_tmp;
    std::optional<core::SensitivityResult> m_result; // the sweep of mainFlow, reused
};

void TestWorkbench::initTestCase()
{
    QStandardPaths::setTestModeEnabled(true);
    QVERIFY(m_tmp.isValid());
}

bool TestWorkbench::openDefault(ui::MainWindow &w)
{
    QSignalSpy spy(&w, &ui::MainWindow::loadFinished);
    w.openModel(QStringLiteral("default"));
    return spy.wait(30000) && spy.first().first().toBool();
}

void TestWorkbench::mainFlow()
{
    ui::MainWindow w;
    w.setErrorDialogsEnabled(false);
    w.show();
    QVERIFY(openDefault(w));
    ui::ProjectDocument *doc = w.document();
    QCOMPARE(doc->layerCount(), 8 * 7); // the linears of 8 blocks (the head stays dense)
    QVERIFY(!doc->sensitivity());
    // The load is listed in the Jobs view, finished.
    QCOMPARE(w.jobs()->jobs().size(), 1);
    QVERIFY(w.jobs()->jobs().first()->name().startsWith(QStringLiteral("Load")));
    QCOMPARE(w.jobs()->jobs().first()->state(), ui::Job::State::Succeeded);

    // Run the sensitivity sweep: a job; the window keeps running meanwhile.
    ui::Job *sweep = w.runSensitivity(testSweep());
    QVERIFY(sweep && sweep->isRunning());
    QVERIFY(waitJob(sweep));
    QVERIFY(doc->sensitivity());
    const core::SensitivityResult &r = *doc->sensitivity();
    QCOMPARE(r.layers.size(), std::size_t(56));
    QCOMPARE(r.settings.size(), std::size_t(3));
    m_result = r;
    // The frontier job follows the results.
    for (ui::Job *j : w.jobs()->jobs())
        QVERIFY(waitJob(j));
    QVERIFY(doc->frontier().size() > 5);

    // Fill to 3.5 bits per weight: within budget, and exactly the allocator's optimum, whose
    // predicted KL is the sum of the chosen cells.
    ui::AssignmentWidget *assign = w.assignmentView();
    assign->setBudgetBitsPerWeight(3.5);
    QVERIFY(assign->fillToBudget());
    QVERIFY(doc->totals().bitsPerWeight <= 3.5 + 1e-9);
    const auto problem = doc->allocationProblem();
    auto best = core::allocateExact(problem, core::bytesForBitsPerWeight(problem, 3.5));
    QVERIFY(best);
    QVERIFY(std::abs(doc->totals().predicted - best->loss) < 1e-12);
    const QPointF filled = expectedMarker(*doc);
    QVERIFY(std::abs(filled.y() - best->loss) < 1e-9);
    QVERIFY(assign->lastChangeText().contains(QStringLiteral("changed")));
    // The marker sits where the sums put it.
    const QPointF m0 = w.frontierView()->currentMarker();
    QVERIFY(std::abs(m0.x() - filled.x()) < 1e-9);
    QVERIFY(std::abs(m0.y() - filled.y()) < 1e-9);
    const QByteArray filledRecipe = doc->recipe().toJson();

    // Edit one layer through the table model (setData pushes an undo command): the most
    // sensitive layer goes to 2 bits. The marker moves left and up.
    const int undoCount = doc->undoStack()->count();
    int layer = doc->layerIndex(QStringLiteral("model.layers.0.mlp.down_proj"));
    QVERIFY(layer >= 0);
    const QModelIndex cell = doc->layerModel()->index(layer, ui::AssignmentTableModel::SettingColumn);
    QVERIFY(doc->layerModel()->setData(cell, QStringLiteral("rtn:w4g128")));
    QVERIFY(doc->layerModel()->setData(cell, QStringLiteral("rtn:w2g64"))); // merges with the previous
    QCOMPARE(doc->undoStack()->count(), undoCount + 1);
    QCOMPARE(doc->setting(layer).label(), QStringLiteral("rtn:w2g64"));
    const QPointF m1 = w.frontierView()->currentMarker();
    const QPointF edited = expectedMarker(*doc);
    QVERIFY(std::abs(m1.x() - edited.x()) < 1e-9 && std::abs(m1.y() - edited.y()) < 1e-9);
    QVERIFY(m1 != m0);
    QCOMPARE(doc->layerModel()->setData(cell, QStringLiteral("nonsense")), false);

    // Undo / redo.
    doc->undoStack()->undo();
    QCOMPARE(doc->recipe().toJson(), filledRecipe);
    QCOMPARE(w.frontierView()->currentMarker(), m0);
    doc->undoStack()->redo();
    QCOMPARE(doc->setting(layer).label(), QStringLiteral("rtn:w2g64"));
    QCOMPARE(w.frontierView()->currentMarker(), m1);

    // Several layers at once: one undo step.
    doc->selectLayers({0, 1, 2}, 0);
    assign->applyToSelected(QStringLiteral("rtn:w8"));
    for (int l : {0, 1, 2})
        QCOMPARE(doc->setting(l).label(), QStringLiteral("rtn:w8"));
    doc->undoStack()->undo();
    QCOMPARE(doc->setting(layer).label(), QStringLiteral("rtn:w2g64"));

    // A saved configuration, and a measured point (compressed and compared for real).
    doc->saveConfiguration(QStringLiteral("edited"));
    QVERIFY(waitJob(w.frontierView()->measureCurrent()));
    QCOMPARE(doc->measuredPoints().size(), std::size_t(1));
    const core::MeasuredPoint &mp = doc->measuredPoints()[0];
    QVERIFY(mp.kl > 0 && mp.perplexity > 1);
    QVERIFY(std::abs(mp.bitsPerWeight - edited.x()) < 1e-9);

    // Click the saved point: its recipe loads (undoable).
    doc->undoStack()->undo(); // back to the filled recipe
    QCOMPARE(doc->recipe().toJson(), filledRecipe);
    w.frontierView()->activatePoint(QStringLiteral("saved"), 0);
    QCOMPARE(doc->setting(layer).label(), QStringLiteral("rtn:w2g64"));

    // Save, reopen in a new window: identical state.
    const QString path = m_tmp.filePath(QStringLiteral("flow.bsproj"));
    QVERIFY(w.saveProjectAs(path));
    QVERIFY(!doc->isModified());
    QVERIFY(w.windowTitle().contains(QStringLiteral("flow.bsproj")));
    QVERIFY(w.recentFiles().contains(QFileInfo(path).absoluteFilePath()));

    ui::MainWindow w2;
    w2.setErrorDialogsEnabled(false);
    QSignalSpy opened(&w2, &ui::MainWindow::projectOpened);
    w2.openProject(path);
    QVERIFY(opened.wait(30000));
    QCOMPARE(opened.first().first().toBool(), true);
    ui::ProjectDocument *doc2 = w2.document();
    QCOMPARE(doc2->recipe().toJson(), doc->recipe().toJson());
    QCOMPARE(doc2->layerCount(), doc->layerCount());
    for (int i = 0; i < doc->layerCount(); ++i)
        QVERIFY(doc2->setting(i) == doc->setting(i));
    QVERIFY(doc2->sensitivity());
    QCOMPARE(doc2->sensitivity()->kl, doc->sensitivity()->kl);
    QCOMPARE(doc2->sensitivity()->deltaLoss, doc->sensitivity()->deltaLoss);
    QCOMPARE(doc2->savedConfigurations().size(), std::size_t(1));
    QCOMPARE(doc2->savedConfigurations()[0].name, QStringLiteral("edited"));
    QCOMPARE(doc2->measuredPoints().size(), std::size_t(1));
    QCOMPARE(doc2->measuredPoints()[0].perplexity, mp.perplexity);
    QCOMPARE(doc2->totals().predicted, doc->totals().predicted);
    QCOMPARE(w2.frontierView()->currentMarker(), w.frontierView()->currentMarker());
    QVERIFY(!doc2->isModified());
    QCOMPARE(doc2->fileName(), path);

    // File → New: the default recipe, no results, no file.
    w2.newProject();
    QVERIFY(!doc2->sensitivity());
    QVERIFY(doc2->savedConfigurations().empty());
    QVERIFY(doc2->fileName().isEmpty());
    QCOMPARE(doc2->setting(layer).label(), QStringLiteral("rtn:w4g128"));
}

void TestWorkbench::cancelRunningJob()
{
    ui::MainWindow w;
    w.show();
    QVERIFY(openDefault(w));
    ui::SweepSpec spec = testSweep();
    spec.candidates = QStringLiteral("rtn:w2g64,rtn:w3g64,rtn:w4g128,rtn:w8,rtn:w2g32,rtn:w3g32");
    spec.options.windows = 4;
    ui::Job *job = w.runSensitivity(spec);
    QVERIFY(job);
    // Wait until it is really working, then press its Cancel button in the Jobs view.
    QTRY_VERIFY_WITH_TIMEOUT(job->progress() > 0.0 || !job->status().isEmpty(), 30000);
    QVERIFY(job->isRunning());
    QTreeWidget *tree = w.jobsView()->tree();
    QWidget *cancel = nullptr;
    for (int i = 0; i < tree->topLevelItemCount(); ++i)
        if (tree->topLevelItem(i)->text(0) == job->name())
            cancel = tree->itemWidget(tree->topLevelItem(i), tree->columnCount() - 1); // the Cancel button is last
    QVERIFY(cancel && cancel->isEnabled());
    QTest::mouseClick(cancel, Qt::LeftButton);
    QVERIFY(!waitJob(job, 60000));
    QCOMPARE(job->state(), ui::Job::State::Cancelled);
    // the job's peak memory (the process's anonymous memory while it ran: at least the model's
    // statistics and the sweep's activations) is kept after it ends
    QVERIFY(job->peakMemoryBytes() > (qint64(1) << 20));
    QVERIFY(job->error() && job->error()->code == core::ErrorCode::Cancelled);
    QVERIFY(!cancel->isEnabled());
    QVERIFY(!w.document()->sensitivity()); // nothing published
    QCOMPARE(w.jobs()->runningCount(), 0);
}

void TestWorkbench::selectionIsShared()
{
    ui::MainWindow w;
    w.show();
    QVERIFY(openDefault(w));
    ui::ProjectDocument *doc = w.document();
    const int layer = doc->layerIndex(QStringLiteral("model.layers.3.mlp.up_proj"));
    QVERIFY(layer >= 0);
    // From the document: the model table and the assignment table follow.
    doc->selectLayer(layer);
    QTableView *table = w.layerBrowser()->tableView();
    auto *proxy = w.layerBrowser()->proxyModel();
    const QModelIndex cur = proxy->mapToSource(table->selectionModel()->currentIndex());
    QCOMPARE(w.layerBrowser()->tableModel()->weightAt(cur.row())->name, QStringLiteral("model.layers.3.mlp.up_proj.weight"));
    QCOMPARE(w.assignmentView()->table()->selectionModel()->currentIndex().row(), layer);
    // From the model table (sorted by size, filtered): the document follows.
    w.layerBrowser()->setFilterText(QStringLiteral("layers.5.self_attn.k"));
    QCOMPARE(proxy->rowCount(), 1);
    table->selectionModel()->setCurrentIndex(proxy->index(0, 0), QItemSelectionModel::ClearAndSelect | QItemSelectionModel::Rows);
    QCOMPARE(doc->currentLayer(), doc->layerIndex(QStringLiteral("model.layers.5.self_attn.k_proj")));
    // The inspector follows the selection.
    QTRY_VERIFY_WITH_TIMEOUT(!w.inspectorView()->isBusy()
                                 && w.inspectorView()->data().layer == QStringLiteral("model.layers.5.self_attn.k_proj"),
                             20000);
    // The Setting column of the model table edits through the document (undoable).
    const int row = w.layerBrowser()->tableModel()->rowOfLayer(doc->currentLayer());
    QVERIFY(w.layerBrowser()->tableModel()->setData(
        w.layerBrowser()->tableModel()->index(row, ui::LayerTableModel::SettingColumn), QStringLiteral("rtn:w3g64")));
    QCOMPARE(doc->setting(doc->currentLayer()).label(), QStringLiteral("rtn:w3g64"));
    QCOMPARE(w.layerBrowser()->tableModel()->index(row, ui::LayerTableModel::SettingColumn).data().toString(),
             QStringLiteral("rtn:w3g64"));
    QVERIFY(doc->undoStack()->canUndo());
    // Non-compressible tensors are not editable.
    QVERIFY(!(w.layerBrowser()->tableModel()->flags(w.layerBrowser()->tableModel()->index(0, ui::LayerTableModel::SettingColumn))
              & Qt::ItemIsEditable));
}

void TestWorkbench::heatmapHoverAndClick()
{
    QVERIFY(m_result); // from mainFlow
    ui::MainWindow w;
    w.resize(1400, 900);
    w.show();
    QVERIFY(openDefault(w));
    w.document()->setSensitivity(*m_result);
    QVERIFY(w.showOnlyView(QStringLiteral("sensitivity")));
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    ui::SensitivityWidget *view = w.sensitivityView();
    QTest::qWait(50); // the heatmap was hidden until results came: let the layout run
    view->heatmap()->replot();
    QVERIFY2(view->heatmap()->axisRect()->rect().height() > 100,
             qPrintable(QStringLiteral("%1 x %2").arg(view->heatmap()->width()).arg(view->heatmap()->height())));
    // The tooltip of a cell names the layer and setting and gives its figures.
    const QString tip = view->cellToolTip(3, 1);
    QVERIFY(tip.contains(m_result->layers[3]) && tip.contains(m_result->settings[1].label()));
    QVERIFY(tip.contains(QString::number(m_result->at(m_result->kl, 3, 1), 'g', 4)));
    // Pixel -> cell mapping through the axes.
    QCustomPlot *plot = view->heatmap();
    const QPoint px(static_cast<int>(plot->xAxis->coordToPixel(2)), static_cast<int>(plot->yAxis->coordToPixel(10)));
    QCOMPARE(view->cellAt(px), QPoint(2, 10));
    // Clicking the cell assigns its setting to its layer and selects the layer.
    QTest::mouseClick(plot, Qt::LeftButton, {}, px);
    const int layer = w.document()->layerIndex(m_result->layers[10]);
    QCOMPARE(w.document()->currentLayer(), layer);
    QCOMPARE(w.document()->setting(layer).label(), m_result->settings[2].label());
    // Metric switch and log scale.
    view->setMetric(ui::SensitivityMetric::DeltaLoss);
    view->setLogScale(false);
    view->setMetric(ui::SensitivityMetric::Perplexity);
    QCOMPARE(view->metric(), ui::SensitivityMetric::Perplexity);
}

void TestWorkbench::inspectorShowsTheGrid()
{
    auto model = core::Model::load(QStringLiteral("default"));
    QVERIFY(model);
    const QString name = QStringLiteral("model.layers.2.mlp.down_proj");
    const core::LayerSetting s{false, QStringLiteral("rtn"), {3, 64, false}};
    const ui::InspectionData d = ui::InspectorWidget::inspect(**model, name, s);
    QVERIFY(d.error.isEmpty());
    QCOMPARE(d.gridLevels.size(), std::size_t(8)); // 2^3 levels
    // The grid of the group holding the largest |w| covers that weight, and grid steps are equal.
    const core::MatrixView w = (*model)->weight(name + QStringLiteral(".weight"));
    float largest = 0;
    for (std::int64_t i = 0; i < w.rows * w.cols; ++i)
        largest = std::max(largest, std::abs(w.data()[i]));
    const double step = d.gridLevels[1] - d.gridLevels[0];
    QVERIFY(step > 0);
    // (the zero point is rounded, so the grid may fall short of the extreme by half a step)
    QVERIFY(std::max(std::abs(d.gridLevels.front()), std::abs(d.gridLevels.back())) >= largest - step / 2 - 1e-6);
    for (std::size_t k = 1; k < d.gridLevels.size(); ++k)
        QVERIFY(std::abs(d.gridLevels[k] - d.gridLevels[k - 1] - step) < 1e-6);
    // Histograms count every weight.
    double total = 0, errTotal = 0;
    for (double c : d.histY)
        total += c;
    for (double c : d.errY)
        errTotal += c;
    QCOMPARE(total, static_cast<double>(w.rows * w.cols));
    QCOMPARE(errTotal, total);
    QCOMPARE(d.rowMin.size(), static_cast<std::size_t>(w.rows));
    QCOMPARE(d.sliceBefore.size(), std::size_t(8));
    for (std::size_t c = 0; c < d.sliceBefore.size(); ++c)
        QCOMPARE(static_cast<float>(d.sliceBefore[c]),
                 w.data()[static_cast<std::int64_t>(d.sliceRow) * w.cols + d.sliceCol + static_cast<int>(c)]);
    // Relative error against an independent sum over the dequantized RTN weights.
    auto q = core::quantizeRtn(w, s.format);
    QVERIFY(q);
    double num = 0, den = 0;
    for (std::int64_t r = 0; r < w.rows; ++r)
        for (std::int64_t c = 0; c < w.cols; ++c) {
            const double e = q->value(r, c) - w.data()[r * w.cols + c];
            num += e * e;
            den += static_cast<double>(w.data()[r * w.cols + c]) * w.data()[r * w.cols + c];
            // half a step, or up to one step at the clamped ends (the zero point is rounded)
            QVERIFY(std::abs(e) <= q->scale(r, q->groupOf(c)) * 1.0001 + 1e-7);
        }
    QVERIFY(std::abs(d.relativeError - num / den) < 1e-9);
    // Dense: no grid.
    QVERIFY(ui::InspectorWidget::inspect(**model, name, core::LayerSetting{}).gridLevels.empty());
}

void TestWorkbench::plotsExport()
{
    QVERIFY(m_result);
    ui::MainWindow w;
    w.show();
    QVERIFY(openDefault(w));
    w.document()->setSensitivity(*m_result);
    QCustomPlot *plot = w.sensitivityView()->heatmap();
    plot->replot();
    const struct { const char *suffix; QByteArray magic; } formats[] = {{"png", "\x89PNG"}, {"pdf", "%PDF"}, {"svg", "<?xml"}};
    for (const auto &f : formats) {
        const QString path = m_tmp.filePath(QStringLiteral("heat.%1").arg(QLatin1String(f.suffix)));
        QVERIFY2(ui::exportPlot(plot, path), f.suffix);
        QFile file(path);
        QVERIFY(file.open(QIODevice::ReadOnly));
        const QByteArray bytes = file.readAll();
        QVERIFY2(bytes.startsWith(f.magic), f.suffix);
        QVERIFY(bytes.size() > 1000);
        QVERIFY(!QFile::exists(path + QStringLiteral(".part")));
    }
    QVERIFY(!ui::exportPlot(plot, m_tmp.filePath(QStringLiteral("heat.bmpx"))));
    QVERIFY(!ui::exportPlot(plot, m_tmp.filePath(QStringLiteral("no/dir/heat.png"))));
}

void TestWorkbench::darkTheme()
{
    ui::MainWindow w;
    w.setDarkTheme(true);
    QVERIFY(w.isDarkTheme());
    QVERIFY(QApplication::palette().color(QPalette::Base).lightness() < 80);
    const QCustomPlot *plot = w.frontierView()->plot();
    QCOMPARE(plot->xAxis->tickLabelColor(), QApplication::palette().color(QPalette::Text));
    // The colour scale beside the heatmap has its own axis: themed too.
    QCPColorScale *scale = nullptr;
    for (QCPLayoutElement *e : w.sensitivityView()->heatmap()->plotLayout()->elements(true))
        if (auto *s = qobject_cast<QCPColorScale *>(e))
            scale = s;
    QVERIFY(scale);
    QCOMPARE(scale->axis()->tickLabelColor(), QApplication::palette().color(QPalette::Text));
    w.setDarkTheme(false);
    QVERIFY(QApplication::palette().color(QPalette::Base).lightness() > 180);
    QCOMPARE(plot->xAxis->tickLabelColor(), QApplication::palette().color(QPalette::Text));
}

void TestWorkbench::autosaveAndRecovery()
{
    QFile::remove(ui::MainWindow::autosavePath());
    {
        ui::MainWindow w;
        w.setAutosaveInterval(50);
        QVERIFY(openDefault(w));
        QVERIFY(!w.hasRecoverableAutosave()); // nothing modified yet
        w.document()->setLayerSetting(4, core::LayerSetting{false, QStringLiteral("rtn"), {2, 64, false}});
        QTRY_VERIFY_WITH_TIMEOUT(w.hasRecoverableAutosave(), 5000);
        // The window is destroyed without closeEvent: as after a crash, the autosave stays.
    }
    QVERIFY(QFile::exists(ui::MainWindow::autosavePath()));
    ui::MainWindow w;
    w.setErrorDialogsEnabled(false);
    QVERIFY(w.hasRecoverableAutosave());
    QSignalSpy opened(&w, &ui::MainWindow::projectOpened);
    w.recoverAutosave();
    QVERIFY(opened.wait(30000));
    QCOMPARE(w.document()->setting(4).label(), QStringLiteral("rtn:w2g64"));
    // A clean exit removes the recovery copy.
    w.close();
    QVERIFY(!QFile::exists(ui::MainWindow::autosavePath()));
}

void TestWorkbench::openExperimentFile()
{
    QVERIFY(m_result);
    ui::MainWindow w;
    w.setErrorDialogsEnabled(false);
    QVERIFY(openDefault(w));
    // A corrupt file: an error, no crash, nothing changed.
    const QString bad = m_tmp.filePath(QStringLiteral("bad.h5"));
    QFile f(bad);
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write("garbage");
    f.close();
    QSignalSpy opened(&w, &ui::MainWindow::projectOpened);
    w.openProject(bad);
    QCOMPARE(opened.size(), 1);
    QCOMPARE(opened.first().first().toBool(), false);
    QVERIFY(w.lastError().has_value());
    QVERIFY(!w.document()->sensitivity());
    // A real experiment for this model: its results become the project's, at once.
    const QString good = m_tmp.filePath(QStringLiteral("good.h5"));
    QVERIFY(core::saveSensitivityExperiment(*m_result, good));
    w.openProject(good);
    QCOMPARE(opened.size(), 2);
    QCOMPARE(opened.last().first().toBool(), true);
    QVERIFY(w.document()->sensitivity());
    QCOMPARE(w.document()->sensitivity()->kl, m_result->kl);
}

void TestWorkbench::sweepDialog()
{
    ui::SweepDialog dialog(ui::SweepSpec::quick());
    dialog.open();
    auto *candidates = dialog.findChild<QLineEdit *>(QStringLiteral("sweepCandidates"));
    QVERIFY(candidates);
    QSignalSpy accepted(&dialog, &QDialog::accepted);
    candidates->setText(QStringLiteral("rtn:w9g64")); // 9 bits: rejected, the dialog stays open
    dialog.accept();
    QCOMPARE(accepted.size(), 0);
    QVERIFY(dialog.isVisible());
    QVERIFY(candidates->toolTip().contains(QStringLiteral("HINT")));
    candidates->setText(QStringLiteral("gptq:w3g64, rtn:w8"));
    dialog.accept();
    QCOMPARE(accepted.size(), 1);
    const ui::SweepSpec spec = dialog.spec();
    QCOMPARE(spec.candidates, QStringLiteral("gptq:w3g64, rtn:w8"));
    QCOMPARE(spec.options.windows, ui::SweepSpec::quick().options.windows);
    QCOMPARE(core::parseSensitivitySettings(spec.candidates)->size(), std::size_t(2));
}

// A Mixtral checkpoint opens in the workbench with every expert's projections as rows of their own.
void TestWorkbench::mixtureOfExperts()
{
    ui::MainWindow w;
    w.setErrorDialogsEnabled(false);
    QSignalSpy spy(&w, &ui::MainWindow::loadFinished);
    w.openModel(test::testDataDir() + QStringLiteral("/tiny/mixtral"));
    QVERIFY(spy.wait(30000) && spy.first().first().toBool());
    const ui::ProjectDocument *doc = w.document();
    QCOMPARE(doc->layerCount(), 2 * (4 + 4 * 3)); // q/k/v/o and 4 experts x (w1, w3, w2) per block
    int experts = 0;
    for (const core::AssignableLayer &l : doc->layers())
        experts += l.name.contains(QStringLiteral(".block_sparse_moe.experts.")) ? 1 : 0;
    QCOMPARE(experts, 2 * 4 * 3);
}

QTEST_MAIN(TestWorkbench)
#include "tst_workbench.moc"
