// mainwindow.h: Bitsmith's main window: the layer table (the Model view) in the middle, the views
// as docks around it (Summary, Sensitivity, Bit-width assignment, Accuracy vs size, Layer
// inspector, Try it, Jobs), all over one ProjectDocument; project files (open/save/recent,
// autosave with crash recovery), keyboard shortcuts, light/dark palettes, and a status bar with
// the model's name and size, or a progress bar and Cancel button while a model loads.
#pragma once

#include "core/error.h"
#include "core/model.h"
#include "core/project.h"

#include <QElapsedTimer>
#include <QMainWindow>

#include <memory>
#include <optional>

class QDockWidget;
class QLabel;
class QMenu;
class QProgressBar;
class QTimer;
class QToolButton;

namespace bitsmith::ui {

class AssignmentWidget;
class FrontierWidget;
class InspectorWidget;
class Job;
class JobManager;
class JobsWidget;
class LayerBrowserWidget;
class ModelLoadJob;
class ModelSummaryWidget;
class ProjectDocument;
class SensitivityWidget;
class TryItWidget;
class DistillationWidget;
struct SweepSpec;

class MainWindow : public QMainWindow
{
    Q_OBJECT

public:
    explicit MainWindow(QWidget *parent = nullptr);
    ~MainWindow() override;

    // Starts loading `folderOrName` (a folder, or "default" for the bundled model) on a worker
    // thread and returns at once; loadFinished() follows. A load already running is cancelled.
    // The model shown so far stays until the new one has loaded.
    void openModel(const QString &folderOrName);
    // Cancels the running load, if any; loadFinished(false) follows with ErrorCode::Cancelled.
    void cancelLoading();
    bool isLoading() const;

    // The model on display (null before the first successful load).
    std::shared_ptr<const core::Model> model() const { return m_model; }
    // Why the last load failed; nullopt after a success or before any load.
    const std::optional<core::Error> &lastError() const { return m_lastError; }

    // Whether failed loads open a message box (non-blocking: window-modal, opened with open()).
    // On by default; --screenshot and tests turn it off and read lastError() instead.
    void setErrorDialogsEnabled(bool enabled) { m_errorDialogsEnabled = enabled; }
    bool errorDialogsEnabled() const { return m_errorDialogsEnabled; }

    // Adds a tool dock and lists it in the View menu; later tools (heatmaps, plots) plug in here.
    void addToolDock(Qt::DockWidgetArea area, QDockWidget *dock);

    // ---- projects ----
    // Opens a project file (.bsproj), or an experiment file (sensitivity results, .h5) which
    // becomes the current project's sensitivity. Loads the model it refers to when needed;
    // projectOpened(ok) follows (at once when no model load is needed).
    void openProject(const QString &path);
    // Writes the project (atomically); false with lastError() set on failure.
    bool saveProjectAs(const QString &path);
    bool saveProject(); // to the current file name (false if none)
    // A new project on the current model: default recipe, no results, no file name.
    void newProject();
    QStringList recentFiles() const;

    // Autosave: every `ms` milliseconds while the project has unsaved changes (0 = off); the
    // copy lives in autosavePath() and is removed on a clean exit. recoverAutosave() opens it.
    void setAutosaveInterval(int ms);
    static QString autosavePath();
    bool autosaveNow();
    bool hasRecoverableAutosave() const;
    void recoverAutosave();

    // ---- analysis ----
    // Runs the sensitivity sweep on the current model (a job); its result becomes the project's.
    Job *runSensitivity(const SweepSpec &spec);
    Job *runQuickSensitivity();

    // Light or dark palette for the widgets and the plots.
    void setDarkTheme(bool dark);
    bool isDarkTheme() const { return m_dark; }

    // The view names of --screenshot --view: model, sensitivity, assignment, frontier, inspector,
    // tryit, jobs. Returns the widget that shows it (null for unknown names).
    QWidget *viewWidget(const QString &name) const;
    // Shows only that view (and hides the others) — for one-view screenshots.
    bool showOnlyView(const QString &name);
    static QStringList viewNames();

    ProjectDocument *document() const { return m_doc; }
    JobManager *jobs() const { return m_jobs; }
    SensitivityWidget *sensitivityView() const { return m_sensitivity; }
    AssignmentWidget *assignmentView() const { return m_assignment; }
    FrontierWidget *frontierView() const { return m_frontier; }
    InspectorWidget *inspectorView() const { return m_inspector; }
    TryItWidget *tryItView() const { return m_tryIt; }
    DistillationWidget *distillationView() const { return m_distill; }
    JobsWidget *jobsView() const { return m_jobsView; }

    LayerBrowserWidget *layerBrowser() const { return m_layers; }
    ModelSummaryWidget *summaryWidget() const { return m_summary; }
    QDockWidget *summaryDock() const { return m_summaryDock; }

signals:
    // A load ended: `ok` is false on failure or cancellation (see lastError()).
    void loadFinished(bool ok);
    // The model on display changed.
    void modelChanged();
    // openProject() ended (false: see lastError()).
    void projectOpened(bool ok);

protected:
    void closeEvent(QCloseEvent *event) override;
    void dragEnterEvent(QDragEnterEvent *event) override;
    void dropEvent(QDropEvent *event) override;

private:
    void createActions();
    void createViews();
    void openProjectDialog();
    void saveAsDialog();
    void addRecentFile(const QString &path);
    void updateRecentMenu();
    void applyPendingProject();
    void reportError(const core::Error &error, const QString &title);
    void createStatusBar();
    void openFolderDialog();
    void showAbout();
    void setModel(std::shared_ptr<const core::Model> model);
    void setLoading(bool loading);
    void onJobProgress(double fraction);
    void onJobStatus(const QString &text);
    void onJobFinished();
    void showLoadError(const core::Error &error);
    void updateTitle();

    LayerBrowserWidget *m_layers = nullptr;
    ModelSummaryWidget *m_summary = nullptr;
    QDockWidget *m_summaryDock = nullptr;
    QMenu *m_viewMenu = nullptr;
    QLabel *m_modelLabel = nullptr;
    QLabel *m_parametersLabel = nullptr;
    QProgressBar *m_progress = nullptr;
    QToolButton *m_cancelButton = nullptr;

    ModelLoadJob *m_job = nullptr; // the running load (a child); null when idle
    QElapsedTimer m_loadTimer;
    std::shared_ptr<const core::Model> m_model;
    std::optional<core::Error> m_lastError;
    bool m_errorDialogsEnabled = true;
    QString m_lastOpenDir;
    QString m_loadingReference; // what openModel() was given ("default" or a folder)

    ProjectDocument *m_doc = nullptr;
    JobManager *m_jobs = nullptr;
    SensitivityWidget *m_sensitivity = nullptr;
    AssignmentWidget *m_assignment = nullptr;
    FrontierWidget *m_frontier = nullptr;
    InspectorWidget *m_inspector = nullptr;
    TryItWidget *m_tryIt = nullptr;
    DistillationWidget *m_distill = nullptr;
    JobsWidget *m_jobsView = nullptr;
    QList<QDockWidget *> m_viewDocks;
    QMenu *m_recentMenu = nullptr;
    QTimer *m_autosave = nullptr;
    std::optional<core::Project> m_pendingProject;     // applied when its model has loaded
    std::optional<core::SensitivityResult> m_pendingExperiment;
    QString m_pendingFile;
    bool m_dark = false;
};

} // namespace bitsmith::ui
