// clicommon.h: what every bitsmith-cli command shares: error and usage reporting, progress on
// stderr, the common options (--json, --threads, --backend, --quiet), argument parsing helpers.
// A command is `int cmdName(const QStringList &args)` (args[0] is the program, the command word
// removed), declared in commands.h and dispatched from main.cpp.
#pragma once

#include "core/error.h"       // Error, Expected
#include "core/feedback.h"    // Feedback
#include "core/linear.h"      // LinearBackend
#include "core/model.h"       // Model
#include "core/tokenizer.h"   // Tokenizer

#include <QCommandLineParser>
#include <QElapsedTimer>
#include <QJsonObject>
#include <QStringList>

#include <memory>
#include <vector>

namespace bitsmith::cli {

using namespace bitsmith::core;

constexpr int kExitUsage = 2;
constexpr int kExitError = 1;

// Prints "bitsmith-cli: error: ..." and the HINT line; returns the exit code for the error.
int reportError(const Error &e);
// Prints a usage error with a hint; returns kExitUsage.
int usageError(const QString &message, const QString &hint);
// Prints one indented JSON object on stdout, with "peak_memory" (peakMemoryJson()) added.
void printJson(const QJsonObject &o);

// Progress lines on stderr: "eval: window 3/40" at most a few times a second.
class StderrFeedback : public Feedback
{
public:
    explicit StderrFeedback(QString prefix, bool quiet)
        : m_prefix(std::move(prefix))
        , m_quiet(quiet)
    {}

protected:
    void onStatus(const QString &text) override
    {
        if (m_quiet || (m_timer.isValid() && m_timer.elapsed() < 500))
            return;
        m_timer.start();
        std::fprintf(stderr, "%s: %s\n", qPrintable(m_prefix), qPrintable(text));
    }

private:
    QString m_prefix;
    bool m_quiet;
    QElapsedTimer m_timer;
};

struct Common
{
    QCommandLineParser parser;
    QCommandLineOption json{QStringLiteral("json"), QStringLiteral("Print one JSON object.")};
    QCommandLineOption threads{QStringLiteral("threads"), QStringLiteral("Threads for OpenMP/oneDNN (default: BITSMITH_THREADS or all)."), QStringLiteral("N")};
    QCommandLineOption backend{QStringLiteral("backend"), QStringLiteral("Linear kernels: onednn (default) or eigen."), QStringLiteral("NAME"), QStringLiteral("onednn")};
    QCommandLineOption quiet{QStringLiteral("quiet"), QStringLiteral("No progress lines on stderr.")};
    QCommandLineOption maxMemory{QStringLiteral("max-memory"),
                                 QStringLiteral("Memory the job may allocate (e.g. 4GiB); calibration activations beyond it go to a temporary file."),
                                 QStringLiteral("BYTES")};

    Common() { parser.addOptions({json, threads, backend, quiet, maxMemory}); parser.addHelpOption(); }
};

// --max-memory of the running command (0 when not set).
std::int64_t maxMemoryOption();
// Starts the sampler behind the "peak_memory" of every --json output (main() calls it once).
void startMemoryMonitor();
// {"rss_peak_bytes": VmHWM, "anon_peak_bytes": sampled peak of anonymous memory}
QJsonObject peakMemoryJson();

// Loads a model folder (or "default") with progress on stderr.
Expected<std::shared_ptr<Model>> loadModel(const QString &name, bool quiet);
// "onednn" or "eigen".
Expected<LinearBackend> backendFrom(const QString &name);
// The model's tokenizer, or an error naming the folder.
Expected<std::shared_ptr<const Tokenizer>> requireTokenizer(const Model &m);
// Parses argv after the subcommand; returns false (with the exit code set) on bad usage or --help.
bool parseArgs(Common &c, const QStringList &args, int positionals, const QString &usage, int &exitCode);
// Reads an integer option >= minimum if set; returns false (exit code set) if malformed.
bool intOption(const QCommandLineParser &p, const QCommandLineOption &o, int &out, int minimum, int &exitCode);
// "4096x256"
QString shapeText(const std::vector<std::int64_t> &shape);

} // namespace bitsmith::cli
