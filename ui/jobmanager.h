// jobmanager.h: every long task of the workbench (sensitivity sweep, frontier, measurement,
// compression for "Try it") as a Job on the global thread pool, with progress, elapsed and
// remaining time and Cancel, listed by the Jobs view. Core sees only a core::Feedback (adapted
// by JobFeedback); results come back to the UI thread as a closure that the job runs there, so
// workers never touch widgets or the document.
#pragma once

#include "core/error.h"
#include "core/feedback.h"
#include "core/memory.h"

#include <QElapsedTimer>
#include <QFutureWatcher>
#include <QList>
#include <QObject>
#include <QString>

#include <functional>
#include <memory>
#include <optional>

namespace bitsmith::ui {

class JobFeedback;

class Job : public QObject
{
    Q_OBJECT

public:
    enum class State { Running, Succeeded, Failed, Cancelled };
    // Runs on the UI thread after a successful worker (publishes the result).
    using Apply = std::function<void()>;
    // Runs on a worker thread; reports through the feedback, checks its cancel flag.
    using Work = std::function<core::Expected<Apply>(core::Feedback &)>;

    Job(QString name, Work work, QObject *parent = nullptr);
    // A job whose work runs elsewhere (e.g. the window's model load): the owner reports through
    // reportProgress/reportStatus/reportFinished; cancel() calls `cancel`.
    Job(QString name, std::function<void()> cancel, QObject *parent = nullptr);
    void reportProgress(double fraction);
    void reportStatus(const QString &text);
    void reportFinished(const std::optional<core::Error> &error);
    // Cancels and waits for the worker, which never outlives its feedback object.
    ~Job() override;

    void start();
    void cancel();
    // Blocks until the worker has returned (tests and --screenshot only), then delivers.
    void waitForFinished();

    QString name() const { return m_name; }
    State state() const { return m_state; }
    bool isRunning() const { return m_state == State::Running; }
    double progress() const { return m_progress; }
    QString status() const { return m_status; }
    qint64 elapsedMs() const;
    // Linear extrapolation from the progress so far; -1 while unknown.
    qint64 remainingMs() const;
    const std::optional<core::Error> &error() const { return m_error; }
    // Peak anonymous memory of the process while the job ran (sampled; the page cache of mapped
    // checkpoints is not counted): the figure a memory limit is charged with.
    qint64 peakMemoryBytes() const;

signals:
    void changed();
    void finished(bool ok);

private:
    void onWorkerFinished();

    QString m_name;
    Work m_work;
    JobFeedback *m_feedback = nullptr;
    QFutureWatcher<core::Expected<Apply>> m_watcher;
    QElapsedTimer m_timer;
    qint64 m_finalMs = -1;
    State m_state = State::Running;
    double m_progress = 0;
    QString m_status;
    std::optional<core::Error> m_error;
    bool m_started = false;
    std::function<void()> m_externalCancel; // set for external jobs
    std::unique_ptr<core::MemoryMonitor> m_monitor; // while running
    qint64 m_peakMemory = 0;
    void stopMonitor();
};

class JobManager : public QObject
{
    Q_OBJECT

public:
    explicit JobManager(QObject *parent = nullptr);
    ~JobManager() override;

    // Creates and starts a job; the manager owns it (finished jobs stay listed).
    Job *start(const QString &name, Job::Work work);
    // Lists work that runs elsewhere (see Job's second constructor); the manager owns the Job.
    Job *track(const QString &name, std::function<void()> cancel);
    const QList<Job *> &jobs() const { return m_jobs; }
    int runningCount() const;
    void cancelAll();
    // Removes finished jobs from the list.
    void clearFinished();

signals:
    void jobAdded(Job *job);
    void jobFinished(Job *job, bool ok);
    void jobsCleared();

private:
    QList<Job *> m_jobs;
};

} // namespace bitsmith::ui
