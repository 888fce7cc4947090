// mainwindow.h: Bitsmith's main window: the layer table in the middle, tool docks around it
// (the model summary now; sensitivity, bit-width and accuracy plots later), and a status bar
// with the model's name and size, or a progress bar and Cancel button while a job runs.
#pragma once

#include "core/error.h"
#include "core/model.h"

#include <QElapsedTimer>
#include <QMainWindow>

#include <memory>
#include <optional>

class QDockWidget;
class QLabel;
class QMenu;
class QProgressBar;
class QToolButton;

namespace bitsmith::ui {

class LayerBrowserWidget;
class ModelLoadJob;
class ModelSummaryWidget;

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

    LayerBrowserWidget *layerBrowser() const { return m_layers; }
    ModelSummaryWidget *summaryWidget() const { return m_summary; }
    QDockWidget *summaryDock() const { return m_summaryDock; }

signals:
    // A load ended: `ok` is false on failure or cancellation (see lastError()).
    void loadFinished(bool ok);
    // The model on display changed.
    void modelChanged();

protected:
    void closeEvent(QCloseEvent *event) override;
    void dragEnterEvent(QDragEnterEvent *event) override;
    void dropEvent(QDropEvent *event) override;

private:
    void createActions();
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
};

} // namespace bitsmith::ui
