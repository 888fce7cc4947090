// distillationwidget.h: the Distillation view (issue 8): choose a student (the current recipe's
// compressed model, or an architecture change of the teacher), the training settings, and run
// core::train::Distiller as a Job (listed in the Jobs view with progress and ETA) with Pause /
// Resume and Cancel. The per-step callback sends each step's losses to the UI thread (queued);
// the view draws live loss curves (train loss, its KD and CE parts, validation loss when
// computed). A finished run's student is measured against the teacher and added to the
// document's measured points, so it appears on the accuracy-vs-size chart.
#pragma once

#include "core/train/distill.h" // DistillProgress
#include "projectdocument.h"

#include <QWidget>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <vector>

class QComboBox;
class QCPGraph;
class QCustomPlot;
class QDoubleSpinBox;
class QLabel;
class QPushButton;
class QSpinBox;

namespace bitsmith::ui {

class Job;
class JobManager;

// Shared by the view (UI thread) and the job's per-step callback (worker thread): the pause
// flag and the condition the worker waits on while paused. Plain C++ (no QObject), so the
// worker may hold it after the view is gone.
struct DistillPauseControl
{
    std::mutex mutex;
    std::condition_variable wake;
    bool paused = false;              // guarded by mutex
    std::atomic<bool> waiting{false}; // the worker is blocked in the callback
};

class DistillationWidget : public QWidget
{
    Q_OBJECT

public:
    DistillationWidget(ProjectDocument *doc, JobManager *jobs, QWidget *parent = nullptr);
    ~DistillationWidget() override;

    struct Settings
    {
        QString student = QStringLiteral("recipe"); // "recipe", "layers:every-other", "mlp:0.5"
        int steps = 50;
        double learningRate = 3e-4;
        double temperature = 2.0;
        double alpha = 1.0;
        int batch = 4;
        int ctx = 128;
        int evalEvery = 0;   // 0: steps / 5
        int valWindows = 8;  // validation windows of ctx tokens
    };
    Settings settings() const;
    void setSettings(const Settings &s);

    // Starts a run (nullptr when no model is loaded or one is running).
    Job *start();
    void pause();
    void resume();
    void cancel();
    bool isPaused() const;
    // The worker is blocked in the per-step callback (paused and no further step is running).
    bool isWorkerWaiting() const;
    Job *currentJob() const { return m_job; }

    // What the view has received from the engine, one entry per step (UI thread).
    const std::vector<core::train::DistillProgress> &received() const { return m_received; }
    QCustomPlot *plot() const { return m_plot; }
    int curvePointCount() const;      // points of the train-loss curve
    int validationPointCount() const; // points of the validation curve
    QString resultText() const;

signals:
    // Emitted on the UI thread for each step the engine reported.
    void stepReceived(int step);
    // A run ended: "finished", "cancelled" or "failed".
    void runEnded(const QString &state);

private:
    void onProgress(const core::train::DistillProgress &p);
    void resetCurves();
    void updateButtons();

    ProjectDocument *m_doc;
    JobManager *m_jobs;
    QComboBox *m_student = nullptr;
    QSpinBox *m_steps = nullptr;
    QDoubleSpinBox *m_lr = nullptr;
    QDoubleSpinBox *m_temperature = nullptr;
    QDoubleSpinBox *m_alpha = nullptr;
    QSpinBox *m_batch = nullptr;
    QSpinBox *m_ctx = nullptr;
    QPushButton *m_start = nullptr;
    QPushButton *m_pause = nullptr;
    QPushButton *m_cancel = nullptr;
    QLabel *m_info = nullptr;
    QLabel *m_result = nullptr;
    QCustomPlot *m_plot = nullptr;
    QCPGraph *m_loss = nullptr;
    QCPGraph *m_kd = nullptr;
    QCPGraph *m_ce = nullptr;
    QCPGraph *m_val = nullptr;
    Job *m_job = nullptr;
    std::shared_ptr<DistillPauseControl> m_control;
    std::vector<core::train::DistillProgress> m_received;
    double m_teacherPerplexity = 0;
    int m_evalEvery = 0;   // Settings::evalEvery (no widget: steps / 5 by default)
    int m_valWindows = 8;  // Settings::valWindows
};

} // namespace bitsmith::ui
