// jobmanager.cpp: QtConcurrent workers reporting through JobFeedback's queued signals.
#include "jobmanager.h"

#include "jobfeedback.h"

#include <QtConcurrent/QtConcurrentRun>

namespace bitsmith::ui {

Job::Job(QString name, Work work, QObject *parent)
    : QObject(parent)
    , m_name(std::move(name))
    , m_work(std::move(work))
    , m_feedback(new JobFeedback(this))
{
    connect(m_feedback, &JobFeedback::progressChanged, this, [this](double f) {
        m_progress = f;
        emit changed();
    }, Qt::QueuedConnection);
    connect(m_feedback, &JobFeedback::statusChanged, this, [this](const QString &s) {
        m_status = s;
        emit changed();
    }, Qt::QueuedConnection);
    connect(&m_watcher, &QFutureWatcher<core::Expected<Apply>>::finished, this, &Job::onWorkerFinished);
}

Job::Job(QString name, std::function<void()> cancel, QObject *parent)
    : QObject(parent)
    , m_name(std::move(name))
    , m_externalCancel(std::move(cancel))
{
    m_started = true;
    m_timer.start();
    m_monitor = std::make_unique<core::MemoryMonitor>();
}

void Job::stopMonitor()
{
    if (m_monitor) {
        m_peakMemory = m_monitor->peakAnonymousBytes();
        m_monitor.reset();
    }
}

qint64 Job::peakMemoryBytes() const
{
    return m_monitor ? m_monitor->peakAnonymousBytes() : m_peakMemory;
}

void Job::reportProgress(double fraction)
{
    if (m_state != State::Running)
        return;
    m_progress = fraction;
    emit changed();
}

void Job::reportStatus(const QString &text)
{
    if (m_state != State::Running)
        return;
    m_status = text;
    emit changed();
}

void Job::reportFinished(const std::optional<core::Error> &error)
{
    if (m_state != State::Running)
        return;
    m_finalMs = m_timer.elapsed();
    stopMonitor();
    m_error = error;
    if (!error) {
        m_state = State::Succeeded;
        m_progress = 1.0;
        m_status = tr("done");
    } else {
        m_state = error->code == core::ErrorCode::Cancelled ? State::Cancelled : State::Failed;
        m_status = m_state == State::Cancelled ? tr("cancelled") : error->message;
    }
    emit changed();
    emit finished(!error);
}

Job::~Job()
{
    if (!m_externalCancel && m_started && !m_watcher.isFinished()) {
        m_feedback->cancel();
        m_watcher.waitForFinished();
    }
}

void Job::start()
{
    if (m_started || m_externalCancel)
        return;
    m_started = true;
    m_timer.start();
    m_monitor = std::make_unique<core::MemoryMonitor>();
    core::Feedback *fb = m_feedback;
    Work work = m_work;
    m_watcher.setFuture(QtConcurrent::run([work, fb]() { return work(*fb); }));
}

void Job::cancel()
{
    if (m_state != State::Running)
        return;
    if (m_externalCancel)
        m_externalCancel();
    else
        m_feedback->cancel();
    m_status = tr("cancelling…");
    emit changed();
}

void Job::waitForFinished()
{
    if (!m_externalCancel && m_started && m_state == State::Running) {
        m_watcher.waitForFinished();
        if (m_state == State::Running) // the watcher's signal is still queued: deliver now
            onWorkerFinished();
    }
}

qint64 Job::elapsedMs() const
{
    if (m_finalMs >= 0)
        return m_finalMs;
    return m_started ? m_timer.elapsed() : 0;
}

qint64 Job::remainingMs() const
{
    if (m_state != State::Running)
        return 0;
    if (m_progress <= 0.02)
        return -1;
    return static_cast<qint64>(static_cast<double>(elapsedMs()) * (1.0 - m_progress) / m_progress);
}

void Job::onWorkerFinished()
{
    if (m_state != State::Running)
        return;
    m_finalMs = m_timer.elapsed();
    stopMonitor();
    core::Expected<Apply> result = m_watcher.result();
    bool ok = false;
    if (result) {
        m_state = State::Succeeded;
        m_progress = 1.0;
        m_status = tr("done");
        ok = true;
        if (*result)
            (*result)();
    } else {
        m_error = result.error();
        m_state = result.error().code == core::ErrorCode::Cancelled ? State::Cancelled : State::Failed;
        m_status = m_state == State::Cancelled ? tr("cancelled") : result.error().message;
    }
    emit changed();
    emit finished(ok);
}

JobManager::JobManager(QObject *parent)
    : QObject(parent)
{}

JobManager::~JobManager()
{
    cancelAll();
    qDeleteAll(m_jobs); // each waits for its worker
    m_jobs.clear();
}

Job *JobManager::start(const QString &name, Job::Work work)
{
    auto *job = new Job(name, std::move(work), this);
    m_jobs.append(job);
    connect(job, &Job::finished, this, [this, job](bool ok) { emit jobFinished(job, ok); });
    emit jobAdded(job);
    job->start();
    return job;
}

Job *JobManager::track(const QString &name, std::function<void()> cancel)
{
    auto *job = new Job(name, std::move(cancel), this);
    m_jobs.append(job);
    connect(job, &Job::finished, this, [this, job](bool ok) { emit jobFinished(job, ok); });
    emit jobAdded(job);
    return job;
}

int JobManager::runningCount() const
{
    int n = 0;
    for (const Job *j : m_jobs)
        n += j->isRunning() ? 1 : 0;
    return n;
}

void JobManager::cancelAll()
{
    for (Job *j : m_jobs)
        j->cancel();
}

void JobManager::clearFinished()
{
    for (auto it = m_jobs.begin(); it != m_jobs.end();) {
        if (!(*it)->isRunning()) {
            (*it)->deleteLater();
            it = m_jobs.erase(it);
        } else {
            ++it;
        }
    }
    emit jobsCleared();
}

} // namespace bitsmith::ui
