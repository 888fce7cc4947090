// mainwindow.cpp: menus, docks, status bar and the asynchronous model loading of the main window.
#include "mainwindow.h"

#include "formatting.h"
#include "layerbrowserwidget.h"
#include "modelloadjob.h"
#include "modelsummarywidget.h"

#include <QAction>
#include <QApplication>
#include <QCloseEvent>
#include <QDir>
#include <QDockWidget>
#include <QDragEnterEvent>
#include <QDropEvent>
#include <QFileDialog>
#include <QFileInfo>
#include <QLabel>
#include <QMenuBar>
#include <QMessageBox>
#include <QMimeData>
#include <QProgressBar>
#include <QScrollArea>
#include <QStatusBar>
#include <QToolButton>

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

    createActions();
    createStatusBar();
    addToolDock(Qt::LeftDockWidgetArea, m_summaryDock);
    resizeDocks({m_summaryDock}, {350}, Qt::Horizontal);

    resize(1280, 800);
    setModel(nullptr);
}

MainWindow::~MainWindow() = default; // a running job is a child: its destructor cancels and waits

void MainWindow::createActions()
{
    QMenu *file = menuBar()->addMenu(tr("&File"));
    QAction *open = file->addAction(tr("&Open…"), this, &MainWindow::openFolderDialog);
    open->setShortcut(QKeySequence::Open);
    open->setStatusTip(tr("Open a Hugging Face model folder (config.json + safetensors)"));
    QAction *openDefault = file->addAction(tr("Open &Default Model"), this,
                                           [this] { openModel(QStringLiteral("default")); });
    openDefault->setStatusTip(tr("Open the model bundled with Bitsmith"));
    file->addSeparator();
    QAction *quit = file->addAction(tr("&Quit"), this, &QWidget::close);
    quit->setShortcut(QKeySequence::Quit);
    quit->setMenuRole(QAction::QuitRole);

    m_viewMenu = menuBar()->addMenu(tr("&View"));
    m_viewMenu->setObjectName(QStringLiteral("viewMenu"));

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

    m_job = new ModelLoadJob(folderOrName, this);
    connect(m_job, &ModelLoadJob::progressChanged, this, &MainWindow::onJobProgress);
    connect(m_job, &ModelLoadJob::statusChanged, this, &MainWindow::onJobStatus);
    connect(m_job, &ModelLoadJob::finished, this, &MainWindow::onJobFinished);
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
        statusBar()->showMessage(tr("Loaded %1 tensors in %2 s")
                                     .arg(m_model->weights().size())
                                     .arg(static_cast<double>(m_loadTimer.elapsed()) / 1000.0, 0,
                                          'f', 2),
                                 10000);
        emit loadFinished(true);
        return;
    }
    m_lastError = job->error();
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
    if (m_model)
        setWindowTitle(tr("%1 — Bitsmith").arg(QDir::toNativeSeparators(m_model->folder())));
    else
        setWindowTitle(tr("Bitsmith"));
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
    // Stop a load promptly; the job's destructor then waits only for the current step.
    if (m_job)
        m_job->cancel();
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
