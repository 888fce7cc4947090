// modelloadjob.h: loading a model folder on a worker thread so that the window keeps painting and
// answering input while safetensors are mapped and widened. One job loads one folder once.
#pragma once

#include "core/error.h"
#include "core/model.h"

#include <QFutureWatcher>
#include <QObject>
#include <QString>

#include <memory>
#include <optional>

namespace bitsmith::ui {

class JobFeedback;

class ModelLoadJob : public QObject
{
    Q_OBJECT

public:
    using Result = core::Expected<std::shared_ptr<core::Model>>;

    // `folderOrName` is anything core::Model::load accepts: a folder, or "default".
    explicit ModelLoadJob(QString folderOrName, QObject *parent = nullptr);
    // Cancels a running load and waits for the worker, which stops at its next cancellation
    // check, so that the worker never outlives the feedback object it reports to.
    ~ModelLoadJob() override;

    // Starts the worker and returns at once; finished() follows on this object's thread.
    // Calling start() twice does nothing the second time.
    void start();
    // Asks the worker to stop; the job then finishes with ErrorCode::Cancelled (or, if the
    // worker was already past its last check, with the loaded model). Safe to call any time.
    void cancel();

    bool isRunning() const;
    bool isFinished() const { return m_result.has_value(); }
    bool wasCancelRequested() const { return m_cancelRequested; }
    const QString &folderOrName() const { return m_folderOrName; }

    // After finished(): true when the model loaded.
    bool succeeded() const;
    // After a successful finish: the model; null otherwise.
    std::shared_ptr<const core::Model> model() const;
    // After a failed finish: what went wrong (code, message, context, hint).
    const core::Error &error() const;

signals:
    void progressChanged(double fraction);
    void statusChanged(const QString &text);
    // Emitted once, on this object's thread, when the worker has returned.
    void finished();

private:
    void onWorkerFinished();

    QString m_folderOrName;
    JobFeedback *m_feedback = nullptr; // child; outlives the worker (see the destructor)
    QFutureWatcher<Result> m_watcher;
    std::optional<Result> m_result;
    bool m_started = false;
    bool m_cancelRequested = false;
};

} // namespace bitsmith::ui
