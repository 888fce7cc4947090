// mainwindow.cpp: menus, docks, status bar, projects and the asynchronous model loading of the
// main window.
#include "mainwindow.h"

#include "assignmentwidget.h"
#include "distillationwidget.h"
#include "formatting.h"
#include "frontierwidget.h"
#include "inspectorwidget.h"
#include "jobmanager.h"
#include "jobswidget.h"
#include "layerbrowserwidget.h"
#include "modelloadjob.h"
#include "modelsummarywidget.h"
#include "plotutil.h"
#include "projectdocument.h"
#include "sensitivitywidget.h"
#include "sweepdialog.h"
#include "tryitwidget.h"
#include "workbenchtasks.h"

#include "core/experiment.h" // loadSensitivityExperiment

#include <QAction>
#include <QActionGroup>
#include <QApplication>
#include <QCloseEvent>
#include <QDir>
#include <QDockWidget>
#include <QDragEnterEvent>
#include <QDropEvent>
#include <QFile>
#include <QFileDialog>
#include <QFileInfo>
#include <QLabel>
#include <QMenuBar>
#include <QMessageBox>
#include <QMimeData>
#include <QProgressBar>
#include <QScrollArea>
#include <QStatusBar>
#include <QPointer>
#include <QSettings>
#include <QStandardPaths>
#include <QStyle>
#include <QStyleFactory>
#include <QTimer>
#include <QToolButton>
#include <QUndoStack>
#include <qcustomplot.h>

namespace bitsmith::ui {

namespace {

// A dropped or chosen folder is a model folder if it has a config.json; anything else would
// only produce a confusing error.
QString modelFolderFromMime(const QMimeData *mime)
{
    if (!mime || !mime->hasUrls() || mime->urls().size() != 1)
        return {};
    const QUrl url = mime->urls().first();
    if (!url.isLocalFile())
        return {};
    QFileInfo info(url.toLocalFile());
    if (info.isFile() && info.fileName() == QLatin1String("config.json"))
        info = QFileInfo(info.absolutePath());
    return info.isDir() ? info.absoluteFilePath() : QString();
}

} // namespace

MainWindow::MainWindow(QWidget *parent)
    : QMainWindow(parent)
    , m_layers(new LayerBrowserWidget(this))
    , m_summary(new ModelSummaryWidget)
    , m_summaryDock(new QDockWidget(tr("Summary"), this))
    , m_doc(new ProjectDocument(this))
    , m_jobs(new JobManager(this))
{
    setObjectName(QStringLiteral("mainWindow"));
    setCentralWidget(m_layers);
    setDockNestingEnabled(true);
    setAcceptDrops(true);

    // The summary scrolls rather than squeezing its chart when the dock is short.
    auto *scroll = new QScrollArea;
    scroll->setWidget(m_summary);
    scroll->setWidgetResizable(true);
    scroll->setFrameShape(QFrame::NoFrame);
    m_summary->setObjectName(QStringLiteral("modelSummary"));
    m_summaryDock->setObjectName(QStringLiteral("summaryDock"));
    m_summaryDock->setWidget(scroll);

    m_layers->setDocument(m_doc);
    createActions();
    createStatusBar();
    addToolDock(Qt::LeftDockWidgetArea, m_summaryDock);
    resizeDocks({m_summaryDock}, {350}, Qt::Horizontal);
    createViews();

    m_autosave = new QTimer(this);
    connect(m_autosave, &QTimer::timeout, this, &MainWindow::autosaveNow);
    setAutosaveInterval(60000);
    connect(m_doc, &ProjectDocument::modifiedChanged, this, &MainWindow::updateTitle);
    connect(m_doc, &ProjectDocument::fileNameChanged, this, &MainWindow::updateTitle);

    resize(1280, 800);
    setModel(nullptr);
}

MainWindow::~MainWindow()
{
    // Workers first (each Job's destructor cancels and waits), while the document they may post
    // results to still exists; a running model load is a child: its destructor does the same.
    m_jobs->cancelAll();
    delete m_jobs;
    m_jobs = nullptr;
}

void MainWindow::createActions()
{
    QMenu *file = menuBar()->addMenu(tr("&File"));
    QAction *newProject = file->addAction(tr("&New Project"), this, &MainWindow::newProject);
    newProject->setShortcut(QKeySequence::New);
    newProject->setStatusTip(tr("Start a new project on the current model (default recipe, no results)"));
    QAction *openProject = file->addAction(tr("&Open Project or Experiment…"), this, &MainWindow::openProjectDialog);
    openProject->setShortcut(QKeySequence::Open);
    openProject->setStatusTip(tr("Open a Bitsmith project (.bsproj) or a sensitivity experiment (.h5)"));
    QAction *open = file->addAction(tr("Open &Model Folder…"), this, &MainWindow::openFolderDialog);
    open->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_O));
    open->setStatusTip(tr("Open a Hugging Face model folder (config.json + safetensors)"));
    QAction *openDefault = file->addAction(tr("Open &Default Model"), this,
                                           [this] { openModel(QStringLiteral("default")); });
    openDefault->setStatusTip(tr("Open the model bundled with Bitsmith"));
    m_recentMenu = file->addMenu(tr("Open &Recent"));
    m_recentMenu->setObjectName(QStringLiteral("recentMenu"));
    updateRecentMenu();
    file->addSeparator();
    QAction *save = file->addAction(tr("&Save Project"), this, [this] {
        if (!saveProject())
            saveAsDialog();
    });
    save->setShortcut(QKeySequence::Save);
    QAction *saveAs = file->addAction(tr("Save Project &As…"), this, &MainWindow::saveAsDialog);
    saveAs->setShortcut(QKeySequence::SaveAs);
    file->addSeparator();
    QAction *quit = file->addAction(tr("&Quit"), this, &QWidget::close);
    quit->setShortcut(QKeySequence::Quit);
    quit->setMenuRole(QAction::QuitRole);

    QMenu *edit = menuBar()->addMenu(tr("&Edit"));
    QAction *undo = m_doc->undoStack()->createUndoAction(this, tr("&Undo"));
    undo->setShortcut(QKeySequence::Undo);
    QAction *redo = m_doc->undoStack()->createRedoAction(this, tr("&Redo"));
    redo->setShortcuts({QKeySequence::Redo, QKeySequence(Qt::CTRL | Qt::Key_Y)});
    edit->addAction(undo);
    edit->addAction(redo);

    QMenu *analysis = menuBar()->addMenu(tr("&Analysis"));
    QAction *sweep = analysis->addAction(tr("Run &Sensitivity (quick)"), this, &MainWindow::runQuickSensitivity);
    sweep->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_R));
    sweep->setStatusTip(tr("Per layer × {RTN 2, 3, 4, 8 bits}: Δloss, KL, perplexity and proxies on 2 windows of the "
                           "evaluation text"));
    QAction *sweepDialog = analysis->addAction(tr("Run Sensitivity &With Settings…"), this, [this] {
        auto *dialog = new SweepDialog(SweepSpec::quick(), this);
        dialog->setAttribute(Qt::WA_DeleteOnClose);
        connect(dialog, &QDialog::accepted, this, [this, dialog] { runSensitivity(dialog->spec()); });
        dialog->open();
    });
    sweepDialog->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_R));
    analysis->addAction(tr("&Fill to Budget"), QKeySequence(Qt::CTRL | Qt::Key_B), this,
                        [this] { m_assignment->fillToBudget(); });
    analysis->addAction(tr("&Measure Current Recipe"), QKeySequence(Qt::CTRL | Qt::Key_M), this,
                        [this] { m_frontier->measureCurrent(); });
    analysis->addAction(tr("Measure &Uniform Baselines"), this, [this] { m_frontier->measureUniform(); });
    analysis->addAction(tr("Save &Configuration"), QKeySequence(Qt::CTRL | Qt::Key_K), this,
                        [this] { m_doc->saveConfiguration(tr("config %1").arg(m_doc->savedConfigurations().size() + 1)); });
    analysis->addAction(tr("&Generate (Try It)"), QKeySequence(Qt::CTRL | Qt::Key_G), this, [this] { m_tryIt->run(); });
    analysis->addSeparator();
    QMenu *cost = analysis->addMenu(tr("Allocation &Cost"));
    auto *costGroup = new QActionGroup(this);
    for (SensitivityMetric m : {SensitivityMetric::Kl, SensitivityMetric::DeltaLoss}) {
        QAction *a = cost->addAction(metricName(m), this, [this, m] { m_doc->setCostMetric(m); });
        a->setCheckable(true);
        a->setChecked(m == m_doc->costMetric());
        a->setToolTip(metricDescription(m));
        costGroup->addAction(a);
    }
    cost->setToolTipsVisible(true);
    analysis->addAction(tr("Cancel All Jobs"), QKeySequence(Qt::CTRL | Qt::Key_Period), m_jobs, &JobManager::cancelAll);

    m_viewMenu = menuBar()->addMenu(tr("&View"));
    m_viewMenu->setObjectName(QStringLiteral("viewMenu"));
    QMenu *theme = m_viewMenu->addMenu(tr("&Theme"));
    auto *themeGroup = new QActionGroup(this);
    QAction *light = theme->addAction(tr("&Light"), this, [this] { setDarkTheme(false); });
    QAction *dark = theme->addAction(tr("&Dark"), this, [this] { setDarkTheme(true); });
    for (QAction *a : {light, dark}) {
        a->setCheckable(true);
        themeGroup->addAction(a);
    }
    light->setChecked(true);
    dark->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_D));
    m_viewMenu->addSeparator();

    QMenu *help = menuBar()->addMenu(tr("&Help"));
    QAction *about = help->addAction(tr("&About Bitsmith"), this, &MainWindow::showAbout);
    about->setMenuRole(QAction::AboutRole);
    QAction *aboutQt = help->addAction(tr("About &Qt"), qApp, &QApplication::aboutQt);
    aboutQt->setMenuRole(QAction::AboutQtRole);
}

void MainWindow::createStatusBar()
{
    m_modelLabel = new QLabel(this);
    m_modelLabel->setObjectName(QStringLiteral("statusModel"));
    m_parametersLabel = new QLabel(this);
    m_parametersLabel->setObjectName(QStringLiteral("statusParameters"));
    m_progress = new QProgressBar(this);
    m_progress->setObjectName(QStringLiteral("loadProgress"));
    m_progress->setMaximumWidth(220);
    m_progress->setTextVisible(true);
    m_cancelButton = new QToolButton(this);
    m_cancelButton->setObjectName(QStringLiteral("cancelButton"));
    m_cancelButton->setText(tr("Cancel"));
    m_cancelButton->setToolTip(tr("Stop loading (the model shown so far stays)"));
    m_cancelButton->setToolButtonStyle(Qt::ToolButtonTextOnly);
    connect(m_cancelButton, &QToolButton::clicked, this, &MainWindow::cancelLoading);

    statusBar()->addPermanentWidget(m_modelLabel);
    statusBar()->addPermanentWidget(m_parametersLabel);
    statusBar()->addPermanentWidget(m_progress);
    statusBar()->addPermanentWidget(m_cancelButton);
    setLoading(false);
}

void MainWindow::addToolDock(Qt::DockWidgetArea area, QDockWidget *dock)
{
    dock->setParent(this);
    dock->setFeatures(QDockWidget::DockWidgetClosable | QDockWidget::DockWidgetMovable
                      | QDockWidget::DockWidgetFloatable);
    addDockWidget(area, dock);
    QAction *toggle = dock->toggleViewAction();
    m_viewMenu->addAction(toggle);
}

void MainWindow::createViews()
{
    m_sensitivity = new SensitivityWidget(m_doc);
    m_assignment = new AssignmentWidget(m_doc);
    m_frontier = new FrontierWidget(m_doc, m_jobs);
    m_inspector = new InspectorWidget(m_doc);
    m_tryIt = new TryItWidget(m_doc, m_jobs);
    m_distill = new DistillationWidget(m_doc, m_jobs);
    m_jobsView = new JobsWidget(m_jobs);
    struct View { QWidget *widget; QString title; const char *name; Qt::DockWidgetArea area; };
    const View views[] = {
        {m_sensitivity, tr("Sensitivity"), "sensitivity", Qt::RightDockWidgetArea},
        {m_frontier, tr("Accuracy vs Size"), "frontier", Qt::RightDockWidgetArea},
        {m_assignment, tr("Bit-width Assignment"), "assignment", Qt::BottomDockWidgetArea},
        {m_inspector, tr("Layer Inspector"), "inspector", Qt::BottomDockWidgetArea},
        {m_tryIt, tr("Try It"), "tryit", Qt::BottomDockWidgetArea},
        {m_distill, tr("Distillation"), "distill", Qt::BottomDockWidgetArea},
        {m_jobsView, tr("Jobs"), "jobs", Qt::BottomDockWidgetArea},
    };
    QDockWidget *firstRight = nullptr, *firstBottom = nullptr;
    int key = 2;
    for (const View &v : views) {
        auto *dock = new QDockWidget(v.title, this);
        dock->setObjectName(QLatin1String(v.name) + QStringLiteral("Dock"));
        v.widget->setObjectName(QLatin1String(v.name) + QStringLiteral("View"));
        dock->setWidget(v.widget);
        addToolDock(v.area, dock);
        dock->toggleViewAction()->setShortcut(QKeySequence(Qt::ALT | static_cast<Qt::Key>(Qt::Key_0 + key++)));
        QDockWidget *&first = v.area == Qt::RightDockWidgetArea ? firstRight : firstBottom;
        if (first)
            tabifyDockWidget(first, dock);
        else
            first = dock;
        m_viewDocks << dock;
    }
    m_summaryDock->toggleViewAction()->setShortcut(QKeySequence(Qt::ALT | Qt::Key_1));
    // The summary joins the right-hand tabs: the layer table needs the width more.
    tabifyDockWidget(firstRight, m_summaryDock);
    firstRight->raise();
    firstBottom->raise();
    resizeDocks({firstRight}, {620}, Qt::Horizontal);
    resizeDocks({firstBottom}, {270}, Qt::Vertical);
    // A job's failure is reported in the Jobs view and the status bar, never as a blocking dialog.
    connect(m_jobs, &JobManager::jobFinished, this, [this](Job *job, bool ok) {
        if (ok)
            statusBar()->showMessage(tr("%1: done in %2 s").arg(job->name()).arg(job->elapsedMs() / 1000.0, 0, 'f', 1), 8000);
        else if (job->error())
            statusBar()->showMessage(tr("%1: %2").arg(job->name(), job->error()->message), 15000);
    });
}

QStringList MainWindow::viewNames()
{
    return {QStringLiteral("model"), QStringLiteral("sensitivity"), QStringLiteral("assignment"), QStringLiteral("frontier"),
            QStringLiteral("inspector"), QStringLiteral("tryit"), QStringLiteral("distill"), QStringLiteral("jobs")};
}

QWidget *MainWindow::viewWidget(const QString &name) const
{
    if (name == QLatin1String("model"))
        return m_layers;
    for (QDockWidget *d : m_viewDocks)
        if (d->objectName() == name + QStringLiteral("Dock"))
            return d->widget();
    return nullptr;
}

bool MainWindow::showOnlyView(const QString &name)
{
    if (!viewWidget(name))
        return false;
    for (QDockWidget *d : m_viewDocks)
        d->setVisible(d->objectName() == name + QStringLiteral("Dock"));
    m_summaryDock->setVisible(name == QLatin1String("model"));
    m_layers->setVisible(name == QLatin1String("model"));
    if (name == QLatin1String("model"))
        resizeDocks({m_summaryDock}, {290}, Qt::Horizontal);
    return true;
}

void MainWindow::setDarkTheme(bool dark)
{
    m_dark = dark;
    QPalette pal;
    if (dark) {
        pal = QPalette(QColor(53, 53, 53));
        pal.setColor(QPalette::Window, QColor(45, 45, 48));
        pal.setColor(QPalette::WindowText, QColor(220, 220, 220));
        pal.setColor(QPalette::Base, QColor(30, 30, 32));
        pal.setColor(QPalette::AlternateBase, QColor(40, 40, 44));
        pal.setColor(QPalette::Text, QColor(220, 220, 220));
        pal.setColor(QPalette::Button, QColor(53, 53, 56));
        pal.setColor(QPalette::ButtonText, QColor(220, 220, 220));
        pal.setColor(QPalette::Highlight, QColor(42, 130, 218));
        pal.setColor(QPalette::HighlightedText, Qt::white);
        pal.setColor(QPalette::ToolTipBase, QColor(60, 60, 64));
        pal.setColor(QPalette::ToolTipText, QColor(230, 230, 230));
        pal.setColor(QPalette::PlaceholderText, QColor(140, 140, 140));
        for (QPalette::ColorRole role : {QPalette::WindowText, QPalette::Text, QPalette::ButtonText})
            pal.setColor(QPalette::Disabled, role, QColor(120, 120, 120));
    } else {
        pal = QApplication::style()->standardPalette();
    }
    QApplication::setPalette(pal);
    for (QCustomPlot *plot : findChildren<QCustomPlot *>()) {
        applyPlotPalette(plot);
        plot->replot(QCustomPlot::rpQueuedReplot);
    }
}

void MainWindow::openModel(const QString &folderOrName)
{
    if (m_job) {
        // The old worker stops at its next check; it then deletes itself, unheard.
        m_job->disconnect(this);
        m_job->cancel();
        connect(m_job, &ModelLoadJob::finished, m_job, &QObject::deleteLater);
        m_job = nullptr;
    }
    const QString folder = core::Model::resolveFolder(folderOrName);
    if (QFileInfo(folder).isDir())
        m_lastOpenDir = QFileInfo(folder).absolutePath();

    m_loadingReference = folderOrName.isEmpty() ? QStringLiteral("default") : folderOrName;
    m_job = new ModelLoadJob(folderOrName, this);
    connect(m_job, &ModelLoadJob::progressChanged, this, &MainWindow::onJobProgress);
    connect(m_job, &ModelLoadJob::statusChanged, this, &MainWindow::onJobStatus);
    connect(m_job, &ModelLoadJob::finished, this, &MainWindow::onJobFinished);
    // Listed in the Jobs view too; Cancel there cancels this load.
    QPointer<ModelLoadJob> load = m_job;
    Job *listed = m_jobs->track(tr("Load %1").arg(QFileInfo(folder).fileName()), [load] {
        if (load)
            load->cancel();
    });
    connect(m_job, &ModelLoadJob::progressChanged, listed, &Job::reportProgress);
    connect(m_job, &ModelLoadJob::statusChanged, listed, &Job::reportStatus);
    connect(m_job, &ModelLoadJob::finished, listed, [listed, load] {
        listed->reportFinished(load && !load->succeeded() ? std::optional<core::Error>(load->error())
                                                          : std::optional<core::Error>());
    });
    setLoading(true);
    statusBar()->showMessage(tr("Loading %1…").arg(QDir::toNativeSeparators(folder)));
    m_loadTimer.start();
    m_job->start();
}

void MainWindow::cancelLoading()
{
    if (m_job) {
        m_job->cancel();
        m_cancelButton->setEnabled(false); // pressed once is enough; the worker is stopping
        statusBar()->showMessage(tr("Cancelling…"));
    }
}

bool MainWindow::isLoading() const
{
    return m_job != nullptr;
}

void MainWindow::onJobProgress(double fraction)
{
    if (m_progress->maximum() == 0) // leave the "busy" animation once real progress arrives
        m_progress->setRange(0, 1000);
    m_progress->setValue(static_cast<int>(fraction * 1000.0));
}

void MainWindow::onJobStatus(const QString &text)
{
    if (m_cancelButton->isEnabled())
        statusBar()->showMessage(text);
}

void MainWindow::onJobFinished()
{
    ModelLoadJob *job = m_job;
    m_job = nullptr;
    job->deleteLater();
    setLoading(false);

    if (job->succeeded()) {
        m_lastError.reset();
        setModel(job->model());
        applyPendingProject();
        statusBar()->showMessage(tr("Loaded %1 tensors in %2 s")
                                     .arg(m_model->weights().size())
                                     .arg(static_cast<double>(m_loadTimer.elapsed()) / 1000.0, 0,
                                          'f', 2),
                                 10000);
        emit loadFinished(true);
        return;
    }
    m_lastError = job->error();
    if (m_pendingProject || m_pendingExperiment) {
        m_pendingProject.reset();
        m_pendingExperiment.reset();
        emit projectOpened(false);
    }
    if (m_lastError->code == core::ErrorCode::Cancelled) {
        statusBar()->showMessage(tr("Loading cancelled"), 10000);
    } else {
        statusBar()->showMessage(tr("Loading failed: %1").arg(m_lastError->message), 10000);
        if (m_errorDialogsEnabled)
            showLoadError(*m_lastError);
    }
    emit loadFinished(false);
}

void MainWindow::showLoadError(const core::Error &error)
{
    // open(), not exec(): a nested event loop here would re-enter job callbacks, and a test
    // (or a script driving the window) must never hang on a dialog nobody will click.
    auto *box = new QMessageBox(QMessageBox::Critical, tr("Cannot open model"), error.toString(),
                                QMessageBox::Ok, this);
    box->setObjectName(QStringLiteral("loadErrorBox"));
    box->setInformativeText(error.hintLine());
    box->setAttribute(Qt::WA_DeleteOnClose);
    box->open();
}

void MainWindow::setModel(std::shared_ptr<const core::Model> model)
{
    m_model = std::move(model);
    // The document first: the layer table maps its rows to the document's layers.
    m_doc->setModel(m_model, m_loadingReference);
    m_doc->setFileName({});
    if (m_model)
        m_doc->selectLayer(0);
    m_layers->setModel(m_model);
    m_summary->setModel(m_model);
    if (m_model) {
        m_modelLabel->setText(QFileInfo(m_model->folder()).fileName());
        m_modelLabel->setToolTip(QDir::toNativeSeparators(m_model->folder()));
        m_parametersLabel->setText(tr("%1 parameters · %2")
                                       .arg(formatCompactCount(m_model->totalParameters()),
                                            formatBytes(m_model->totalStoredBytes())));
        m_parametersLabel->setToolTip(tr("%1 parameters").arg(formatCount(m_model->totalParameters())));
    } else {
        m_modelLabel->setText(tr("No model"));
        m_modelLabel->setToolTip({});
        m_parametersLabel->clear();
    }
    m_parametersLabel->setVisible(m_model != nullptr);
    updateTitle();
    emit modelChanged();
}

void MainWindow::setLoading(bool loading)
{
    if (loading) {
        m_progress->setRange(0, 0); // busy until the first progress report
        m_cancelButton->setEnabled(true);
    }
    m_progress->setVisible(loading);
    m_cancelButton->setVisible(loading);
}

void MainWindow::updateTitle()
{
    if (!m_model) {
        setWindowTitle(tr("Bitsmith"));
        return;
    }
    const QString project = m_doc->fileName().isEmpty() ? tr("untitled") : QFileInfo(m_doc->fileName()).fileName();
    setWindowTitle(tr("%1%2 · %3 — Bitsmith")
                       .arg(project, m_doc->isModified() ? QStringLiteral("*") : QString(),
                            QDir::toNativeSeparators(m_model->folder())));
}

void MainWindow::reportError(const core::Error &error, const QString &title)
{
    m_lastError = error;
    statusBar()->showMessage(error.toString(), 15000);
    if (!m_errorDialogsEnabled)
        return;
    auto *box = new QMessageBox(QMessageBox::Critical, title, error.toString(), QMessageBox::Ok, this);
    box->setInformativeText(error.hintLine());
    box->setAttribute(Qt::WA_DeleteOnClose);
    box->open();
}

void MainWindow::openProject(const QString &path)
{
    if (core::isProjectFile(path)) {
        auto project = core::loadProject(path);
        if (!project) {
            reportError(project.error(), tr("Cannot open project"));
            emit projectOpened(false);
            return;
        }
        m_pendingProject = std::move(*project);
        m_pendingFile = path;
        addRecentFile(path);
        // Reload the model even when the same one is shown: the project's state replaces ours.
        openModel(m_pendingProject->modelReference);
        return;
    }
    auto exp = core::loadSensitivityExperiment(path);
    if (!exp) {
        reportError(exp.error(), tr("Cannot open file"));
        emit projectOpened(false);
        return;
    }
    addRecentFile(path);
    // The model on display when the experiment names its folder (or, failing that, its weights:
    // hashing them is the slow path, taken only for experiments made elsewhere).
    const bool sameFolder = m_model && !exp->modelFolder.isEmpty()
                            && QFileInfo(exp->modelFolder).canonicalFilePath() == QFileInfo(m_model->folder()).canonicalFilePath();
    if (m_model && (sameFolder || exp->modelHash.isEmpty() || exp->modelHash == m_model->weightsHash())) {
        m_doc->setSensitivity(std::move(*exp));
        emit projectOpened(true);
        return;
    }
    m_pendingExperiment = std::move(*exp);
    openModel(m_pendingExperiment->modelFolder);
}

void MainWindow::applyPendingProject()
{
    if (m_pendingProject) {
        core::Project p = std::move(*m_pendingProject);
        m_pendingProject.reset();
        m_doc->restoreProject(p);
        m_doc->setFileName(m_pendingFile);
        m_doc->setClean();
        if (m_doc->layerCount() > 0)
            m_doc->selectLayer(0);
        updateTitle();
        emit projectOpened(true);
    } else if (m_pendingExperiment) {
        core::SensitivityResult r = std::move(*m_pendingExperiment);
        m_pendingExperiment.reset();
        m_doc->setSensitivity(std::move(r));
        emit projectOpened(true);
    }
}

bool MainWindow::saveProjectAs(const QString &path)
{
    if (auto ok = core::saveProject(m_doc->toProject(), path); !ok) {
        reportError(ok.error(), tr("Cannot save project"));
        return false;
    }
    m_doc->setFileName(path);
    m_doc->setClean();
    addRecentFile(path);
    statusBar()->showMessage(tr("Saved %1").arg(QDir::toNativeSeparators(path)), 5000);
    updateTitle();
    return true;
}

bool MainWindow::saveProject()
{
    return !m_doc->fileName().isEmpty() && saveProjectAs(m_doc->fileName());
}

void MainWindow::newProject()
{
    m_doc->setModel(m_model, m_doc->modelReference());
    m_doc->setSensitivity(std::nullopt);
    m_doc->setClean();
    m_doc->setFileName({});
    if (m_model)
        m_doc->selectLayer(0);
    updateTitle();
}

void MainWindow::openProjectDialog()
{
    const QString path = QFileDialog::getOpenFileName(this, tr("Open Project or Experiment"), m_lastOpenDir,
                                                      tr("Bitsmith projects and experiments (*.bsproj *.h5);;All files (*)"));
    if (!path.isEmpty())
        openProject(path);
}

void MainWindow::saveAsDialog()
{
    QString path = QFileDialog::getSaveFileName(this, tr("Save Project"), m_doc->fileName(),
                                                tr("Bitsmith projects (*.bsproj)"));
    if (path.isEmpty())
        return;
    if (QFileInfo(path).suffix().isEmpty())
        path += QStringLiteral(".bsproj");
    saveProjectAs(path);
}

QStringList MainWindow::recentFiles() const
{
    return QSettings().value(QStringLiteral("recentFiles")).toStringList();
}

void MainWindow::addRecentFile(const QString &path)
{
    QStringList files = recentFiles();
    const QString abs = QFileInfo(path).absoluteFilePath();
    files.removeAll(abs);
    files.prepend(abs);
    while (files.size() > 10)
        files.removeLast();
    QSettings().setValue(QStringLiteral("recentFiles"), files);
    updateRecentMenu();
}

void MainWindow::updateRecentMenu()
{
    m_recentMenu->clear();
    const QStringList files = recentFiles();
    for (const QString &f : files)
        m_recentMenu->addAction(QDir::toNativeSeparators(f), this, [this, f] { openProject(f); });
    m_recentMenu->setEnabled(!files.isEmpty());
}

void MainWindow::setAutosaveInterval(int ms)
{
    if (ms <= 0) {
        m_autosave->stop();
        return;
    }
    m_autosave->start(ms);
}

QString MainWindow::autosavePath()
{
    const QString dir = QStandardPaths::writableLocation(QStandardPaths::AppDataLocation);
    QDir().mkpath(dir);
    return dir + QStringLiteral("/autosave.bsproj");
}

bool MainWindow::autosaveNow()
{
    if (!m_model || !m_doc->isModified())
        return false;
    // The same atomic write as Save: a crash mid-write leaves the previous autosave intact.
    return core::saveProject(m_doc->toProject(), autosavePath()).has_value();
}

bool MainWindow::hasRecoverableAutosave() const
{
    return core::isProjectFile(autosavePath());
}

void MainWindow::recoverAutosave()
{
    if (hasRecoverableAutosave())
        openProject(autosavePath());
}

Job *MainWindow::runSensitivity(const SweepSpec &spec)
{
    if (!m_model)
        return nullptr;
    std::shared_ptr<const core::Model> model = m_model;
    QPointer<ProjectDocument> doc = m_doc;
    return m_jobs->start(tr("Sensitivity sweep (%1)").arg(spec.candidates),
                         [model, spec, doc](core::Feedback &fb) -> core::Expected<Job::Apply> {
                             auto r = runSweep(model, spec, fb);
                             if (!r)
                                 return core::unexpected(r.error());
                             return Job::Apply([doc, model, res = std::move(*r)]() mutable {
                                 if (doc && doc->model() == model) // still the same model
                                     doc->setSensitivity(std::move(res));
                             });
                         });
}

Job *MainWindow::runQuickSensitivity()
{
    return runSensitivity(SweepSpec::quick());
}

void MainWindow::openFolderDialog()
{
    QString start = m_lastOpenDir;
    if (start.isEmpty())
        start = m_model ? QFileInfo(m_model->folder()).absolutePath() : QDir::homePath();
    const QString folder = QFileDialog::getExistingDirectory(
        this, tr("Open Model Folder"), start, QFileDialog::ShowDirsOnly);
    if (!folder.isEmpty())
        openModel(folder);
}

void MainWindow::showAbout()
{
    QMessageBox::about(
        this, tr("About Bitsmith"),
        tr("<h3>Bitsmith %1</h3>"
           "<p>A workbench for compressing neural networks: quantization, pruning and "
           "distillation of Llama-family language models.</p>"
           "<p>Open a Hugging Face model folder (config.json, safetensors, tokenizer.json) to "
           "inspect its layers. The same engine runs headless as <tt>bitsmith-cli</tt>.</p>")
            .arg(QStringLiteral(BITSMITH_VERSION)));
}

void MainWindow::closeEvent(QCloseEvent *event)
{
    // Stop a load and the jobs promptly; their destructors then wait only for the current step.
    if (m_job)
        m_job->cancel();
    m_jobs->cancelAll();
    // A clean exit needs no recovery copy (unsaved changes were the user's choice to drop).
    QFile::remove(autosavePath());
    QMainWindow::closeEvent(event);
}

void MainWindow::dragEnterEvent(QDragEnterEvent *event)
{
    if (!modelFolderFromMime(event->mimeData()).isEmpty())
        event->acceptProposedAction();
}

void MainWindow::dropEvent(QDropEvent *event)
{
    const QString folder = modelFolderFromMime(event->mimeData());
    if (folder.isEmpty())
        return;
    event->acceptProposedAction();
    openModel(folder);
}

} // namespace bitsmith::ui
