// jobfeedback.cpp: core::Feedback callbacks turned into Qt signals.
#include "jobfeedback.h"

namespace bitsmith::ui {

JobFeedback::JobFeedback(QObject *parent)
    : QObject(parent)
{}

void JobFeedback::onProgress(double fraction)
{
    emit progressChanged(fraction);
}

void JobFeedback::onStatus(const QString &text)
{
    emit statusChanged(text);
}

void JobFeedback::onLog(const QString &line)
{
    emit logged(line);
}

} // namespace bitsmith::ui
