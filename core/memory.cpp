// memory.cpp: /proc and cgroup readings (see memory.h).
#include "memory.h"

#include <QFile>
#include <QString>
#include <QStringList>

#include <algorithm>
#include <chrono>
#include <limits>

namespace bitsmith::core {

namespace {

QByteArray readSmallFile(const QString &path)
{
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly))
        return {};
    return f.read(1 << 16);
}

// A "Key:   123 kB" line of /proc/meminfo or /proc/self/status, in bytes (-1 if absent).
std::int64_t procKiB(const QByteArray &text, const char *key)
{
    const QByteArray k = QByteArray(key) + ':';
    const qsizetype at = text.startsWith(k) ? 0 : text.indexOf('\n' + k);
    if (at < 0)
        return -1;
    const qsizetype from = at + (at == 0 ? 0 : 1) + k.size();
    const qsizetype end = text.indexOf('\n', from);
    QByteArray v = text.mid(from, end < 0 ? -1 : end - from).trimmed();
    v.replace("kB", "");
    bool ok = false;
    const std::int64_t n = v.trimmed().toLongLong(&ok);
    return ok ? n * 1024 : -1;
}

// A "key value" line of a cgroup memory.stat (bytes), -1 if absent.
std::int64_t statValue(const QByteArray &text, const char *key)
{
    for (const QByteArray &line : text.split('\n')) {
        const QList<QByteArray> parts = line.split(' ');
        if (parts.size() == 2 && parts[0] == key) {
            bool ok = false;
            const std::int64_t n = parts[1].toLongLong(&ok);
            return ok ? n : -1;
        }
    }
    return -1;
}

struct CgroupMemory
{
    std::int64_t limit = -1; // bytes, -1 when unlimited
    std::int64_t anon = 0;   // anonymous memory charged to it
};

// The memory cgroup of this process (v1 "memory" controller, or v2 unified), if it sets a limit.
CgroupMemory cgroupMemory()
{
    CgroupMemory out;
    const QList<QByteArray> lines = readSmallFile(QStringLiteral("/proc/self/cgroup")).split('\n');
    for (const QByteArray &line : lines) {
        const QList<QByteArray> f = line.split(':');
        if (f.size() < 3)
            continue;
        const QString path = QString::fromUtf8(f.mid(2).join(':'));
        if (f[1].split(',').contains("memory")) { // v1
            const QString dir = QStringLiteral("/sys/fs/cgroup/memory") + path;
            bool ok = false;
            const std::int64_t lim = readSmallFile(dir + QStringLiteral("/memory.limit_in_bytes")).trimmed().toLongLong(&ok);
            if (ok && lim > 0 && lim < (std::int64_t(1) << 60)) {
                out.limit = lim;
                const QByteArray stat = readSmallFile(dir + QStringLiteral("/memory.stat"));
                std::int64_t rss = statValue(stat, "total_rss");
                if (rss < 0)
                    rss = statValue(stat, "rss");
                out.anon = std::max<std::int64_t>(0, rss);
                return out;
            }
        } else if (f[0] == "0" && f[1].isEmpty()) { // v2
            for (const QString root : {QStringLiteral("/sys/fs/cgroup"), QStringLiteral("/sys/fs/cgroup/unified")}) {
                const QByteArray max = readSmallFile(root + path + QStringLiteral("/memory.max")).trimmed();
                bool ok = false;
                const std::int64_t lim = max.toLongLong(&ok);
                if (ok && lim > 0) {
                    out.limit = lim;
                    out.anon = std::max<std::int64_t>(0, statValue(readSmallFile(root + path + QStringLiteral("/memory.stat")), "anon"));
                    return out;
                }
            }
        }
    }
    return out;
}

} // namespace

MemoryStatus memoryStatus()
{
    MemoryStatus s;
    const QByteArray info = readSmallFile(QStringLiteral("/proc/meminfo"));
    s.total = procKiB(info, "MemTotal");
    s.available = procKiB(info, "MemAvailable");
    if (s.available < 0)
        s.available = procKiB(info, "MemFree");
    if (s.total < 0 || s.available < 0) { // not Linux: no figure, nothing is refused
        s.total = s.available = std::numeric_limits<std::int64_t>::max() / 4;
        return s;
    }
    const CgroupMemory cg = cgroupMemory();
    if (cg.limit > 0 && cg.limit < s.total) {
        s.total = cg.limit;
        s.cgroupLimited = true;
        s.available = std::min(s.available, std::max<std::int64_t>(0, cg.limit - cg.anon));
    }
    return s;
}

std::int64_t peakResidentBytes()
{
    return std::max<std::int64_t>(0, procKiB(readSmallFile(QStringLiteral("/proc/self/status")), "VmHWM"));
}

std::int64_t residentAnonymousBytes()
{
    return std::max<std::int64_t>(0, procKiB(readSmallFile(QStringLiteral("/proc/self/status")), "RssAnon"));
}

QString formatBytes(std::int64_t bytes)
{
    const double b = static_cast<double>(bytes);
    if (b >= 1024.0 * 1024 * 1024)
        return QStringLiteral("%1 GiB").arg(b / (1024.0 * 1024 * 1024), 0, 'f', 2);
    if (b >= 1024.0 * 1024)
        return QStringLiteral("%1 MiB").arg(b / (1024.0 * 1024), 0, 'f', 0);
    return QStringLiteral("%1 KiB").arg(b / 1024.0, 0, 'f', 0);
}

Expected<void> checkMemory(std::int64_t need, const QString &job, const QString &hint, std::int64_t limit)
{
    if (limit > 0 && need > limit)
        return unexpected(fail(ErrorCode::OutOfMemory, QStringLiteral("%1 needs about %2 of memory; --max-memory allows %3")
                                                           .arg(job, formatBytes(need), formatBytes(limit)))
                              .forParameter(QStringLiteral("max-memory"))
                              .withHint(hint));
    const MemoryStatus s = memoryStatus();
    if (need > s.available)
        return unexpected(fail(ErrorCode::OutOfMemory, QStringLiteral("%1 needs about %2 of memory; %3 is available%4")
                                                           .arg(job, formatBytes(need), formatBytes(s.available),
                                                                s.cgroupLimited ? QStringLiteral(" (memory limit %1)").arg(formatBytes(s.total))
                                                                                : QString()))
                              .withHint(hint));
    return {};
}

MemoryMonitor::MemoryMonitor()
{
    m_peak = residentAnonymousBytes();
    m_thread = std::thread([this] {
        while (!m_stop.load(std::memory_order_relaxed)) {
            const std::int64_t now = residentAnonymousBytes();
            std::int64_t old = m_peak.load();
            while (now > old && !m_peak.compare_exchange_weak(old, now)) {}
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    });
}

MemoryMonitor::~MemoryMonitor()
{
    m_stop = true;
    if (m_thread.joinable())
        m_thread.join();
}

std::int64_t MemoryMonitor::peakAnonymousBytes() const
{
    const std::int64_t now = residentAnonymousBytes();
    return std::max(m_peak.load(), now);
}

} // namespace bitsmith::core
