// feedback.cpp: throttling of progress reports.
#include "feedback.h"

namespace bitsmith::core {

void Feedback::setProgress(double fraction)
{
    if (fraction < 0.0)
        fraction = 0.0;
    if (fraction > 1.0)
        fraction = 1.0;
    m_progress.store(fraction);
    const auto now = std::chrono::steady_clock::now();
    {
        std::lock_guard lock(m_mutex);
        const bool first = m_lastReport == std::chrono::steady_clock::time_point{};
        if (!first && fraction < 1.0 && now - m_lastReport < std::chrono::milliseconds(50))
            return;
        m_lastReport = now;
    }
    onProgress(fraction);
}

void Feedback::setStatus(const QString &text)
{
    onStatus(text);
}

void Feedback::log(const QString &line)
{
    onLog(line);
}

} // namespace bitsmith::core
