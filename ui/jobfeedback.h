// jobfeedback.h: the bridge between core's plain Feedback (called on a worker thread) and Qt
// signals that the UI thread receives. Core stays free of GUI types; the UI never polls.
#pragma once

#include "core/feedback.h"

#include <QObject>
#include <QString>

namespace bitsmith::ui {

// A core::Feedback that re-emits progress and status as Qt signals. The signals are emitted on
// the worker thread; connect them with Qt::QueuedConnection (or let AutoConnection pick it) so
// that slots run on the receiver's thread. Cancellation is core's atomic flag: cancel() may be
// called from any thread and the core loop sees it at its next check.
class JobFeedback : public QObject, public core::Feedback
{
    Q_OBJECT

public:
    explicit JobFeedback(QObject *parent = nullptr);

signals:
    // Fraction done in [0, 1], already throttled by core::Feedback (~20 per second).
    void progressChanged(double fraction);
    // A short description of the current step, e.g. "binding weights".
    void statusChanged(const QString &text);
    // One line for a log panel.
    void logged(const QString &line);

protected:
    void onProgress(double fraction) override;
    void onStatus(const QString &text) override;
    void onLog(const QString &line) override;
};

} // namespace bitsmith::ui
