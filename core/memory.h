// memory.h: how much memory the machine (or the memory cgroup this process runs in) has left, how
// much this process uses, and the check every long job makes before it starts.
//
// Available = MemAvailable of /proc/meminfo (free memory plus reclaimable page cache), lowered to
// the cgroup's limit minus the cgroup's anonymous memory when a limit is set (cgroup v1
// memory.limit_in_bytes / v2 memory.max). Page cache of mapped checkpoints is reclaimable, so a
// job's need counts only what it allocates itself (working sets, activations, caches).
#pragma once

#include "core/error.h"

#include <QString>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <thread>

namespace bitsmith::core {

struct MemoryStatus
{
    std::int64_t available = 0;   // bytes a job may still allocate
    std::int64_t total = 0;       // MemTotal, or the cgroup limit when lower
    bool cgroupLimited = false;   // `total` is a cgroup limit
};

MemoryStatus memoryStatus();

// This process: peak resident set (VmHWM: anonymous and mapped file pages), resident anonymous
// memory now (RssAnon).
std::int64_t peakResidentBytes();
std::int64_t residentAnonymousBytes();

// "1.5 GiB", "730 MiB"
QString formatBytes(std::int64_t bytes);

// Fails with ErrorCode::OutOfMemory when `need` bytes are more than what is available (or than
// `limit` when > 0, a user's --max-memory): the message says what `job` needs and what there is,
// with `hint`.
Expected<void> checkMemory(std::int64_t need, const QString &job, const QString &hint, std::int64_t limit = 0);

// Samples this process's anonymous resident memory every few milliseconds on a thread of its own
// and keeps the peak (the figure a memory cgroup would charge, without reclaimable page cache).
class MemoryMonitor
{
public:
    MemoryMonitor();
    ~MemoryMonitor();
    MemoryMonitor(const MemoryMonitor &) = delete;
    MemoryMonitor &operator=(const MemoryMonitor &) = delete;
    std::int64_t peakAnonymousBytes() const;

private:
    std::atomic<bool> m_stop{false};
    std::atomic<std::int64_t> m_peak{0};
    std::thread m_thread;
};

} // namespace bitsmith::core
