// modelloadjob.cpp: Model::load on the global thread pool, reported back through queued signals.
#include "modelloadjob.h"

#include "jobfeedback.h"

#include <QtConcurrent/QtConcurrentRun>

namespace bitsmith::ui {

ModelLoadJob::ModelLoadJob(QString folderOrName, QObject *parent)
    : QObject(parent)
    , m_folderOrName(std::move(folderOrName))
    , m_feedback(new JobFeedback(this))
{
    // The feedback emits on the worker thread; queued connections deliver on ours.
    connect(m_feedback, &JobFeedback::progressChanged, this, &ModelLoadJob::progressChanged,
            Qt::QueuedConnection);
    connect(m_feedback, &JobFeedback::statusChanged, this, &ModelLoadJob::statusChanged,
            Qt::QueuedConnection);
    connect(&m_watcher, &QFutureWatcher<Result>::finished, this, &ModelLoadJob::onWorkerFinished);
}

ModelLoadJob::~ModelLoadJob()
{
    if (m_started && !m_watcher.isFinished()) {
        m_feedback->cancel();
        m_watcher.waitForFinished();
    }
}

void ModelLoadJob::start()
{
    if (m_started)
        return;
    m_started = true;
    core::Feedback *feedback = m_feedback;
    const QString folder = m_folderOrName;
    m_watcher.setFuture(QtConcurrent::run([folder, feedback]() -> Result {
        return core::Model::load(folder, feedback);
    }));
}

void ModelLoadJob::cancel()
{
    // Only core's flag: cancelling the QFuture itself would make Qt drop the result, and the
    // UI needs the Cancelled error (or the model, if the worker had already finished).
    m_cancelRequested = true;
    m_feedback->cancel();
}

bool ModelLoadJob::isRunning() const
{
    return m_started && !m_result.has_value();
}

bool ModelLoadJob::succeeded() const
{
    return m_result.has_value() && m_result->has_value();
}

std::shared_ptr<const core::Model> ModelLoadJob::model() const
{
    return succeeded() ? std::shared_ptr<const core::Model>(**m_result) : nullptr;
}

const core::Error &ModelLoadJob::error() const
{
    static const core::Error none;
    return m_result.has_value() && !m_result->has_value() ? m_result->error() : none;
}

void ModelLoadJob::onWorkerFinished()
{
    m_result = m_watcher.result();
    emit finished();
}

} // namespace bitsmith::ui
