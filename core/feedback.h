// feedback.h: how long-running core work reports progress and learns about cancellation.
// Plain C++ (no GUI types): the GUI adapts it to QPromise/QFuture, the CLI prints lines.
#pragma once

#include <QString>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>

namespace bitsmith::core {

class Feedback
{
public:
    virtual ~Feedback() = default;

    // Fraction done in [0, 1]. Throttled: subclasses see at most ~20 updates a second,
    // plus the first and the final (1.0) one.
    void setProgress(double fraction);
    double progress() const { return m_progress.load(); }

    // A short description of the current step ("loading tensors", "window 3/40").
    void setStatus(const QString &text);

    void cancel() { m_cancelled.store(true); }
    bool isCancelled() const { return m_cancelled.load(); }

    void log(const QString &line);

protected:
    virtual void onProgress(double fraction) {}
    virtual void onStatus(const QString &text) {}
    virtual void onLog(const QString &line) {}

private:
    std::atomic<double> m_progress{0.0};
    std::atomic<bool> m_cancelled{false};
    std::mutex m_mutex;
    std::chrono::steady_clock::time_point m_lastReport{};
};

// A Feedback that forwards to callbacks; handy in the CLI and in tests.
class CallbackFeedback : public Feedback
{
public:
    std::function<void(double)> progressFn;
    std::function<void(const QString &)> statusFn;
    std::function<void(const QString &)> logFn;

protected:
    void onProgress(double f) override
    {
        if (progressFn)
            progressFn(f);
    }
    void onStatus(const QString &t) override
    {
        if (statusFn)
            statusFn(t);
    }
    void onLog(const QString &l) override
    {
        if (logFn)
            logFn(l);
    }
};

} // namespace bitsmith::core
