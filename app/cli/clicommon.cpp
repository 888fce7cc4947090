// clicommon.cpp: what every bitsmith-cli command shares (see clicommon.h).
#include "app/cli/clicommon.h"

#include "core/memory.h"    // peak memory, --max-memory
#include "core/safetensors.h" // parseByteSize
#include "core/threading.h" // setThreadCount

#include <QJsonDocument>

#include <cstdio>

using namespace bitsmith::core;

namespace bitsmith::cli {


int reportError(const Error &e)
{
    std::fprintf(stderr, "bitsmith-cli: error: %s\n", qPrintable(e.toString()));
    std::fprintf(stderr, "%s\n", qPrintable(e.hintLine()));
    return e.code == ErrorCode::InvalidArgument ? kExitUsage : kExitError;
}

int usageError(const QString &message, const QString &hint)
{
    std::fprintf(stderr, "bitsmith-cli: error: %s\nHINT: %s\n", qPrintable(message), qPrintable(hint));
    return kExitUsage;
}

namespace {
std::unique_ptr<MemoryMonitor> g_monitor;
std::int64_t g_maxMemory = 0;
} // namespace

void startMemoryMonitor()
{
    if (!g_monitor)
        g_monitor = std::make_unique<MemoryMonitor>();
}

std::int64_t maxMemoryOption()
{
    return g_maxMemory;
}

QJsonObject peakMemoryJson()
{
    return QJsonObject{{QStringLiteral("rss_peak_bytes"), static_cast<double>(peakResidentBytes())},
                       {QStringLiteral("anon_peak_bytes"),
                        static_cast<double>(g_monitor ? g_monitor->peakAnonymousBytes() : residentAnonymousBytes())}};
}

void printJson(const QJsonObject &o)
{
    QJsonObject out = o;
    if (!out.contains(QStringLiteral("peak_memory")))
        out.insert(QStringLiteral("peak_memory"), peakMemoryJson());
    std::fputs(QJsonDocument(out).toJson(QJsonDocument::Indented).constData(), stdout);
}

Expected<std::shared_ptr<Model>> loadModel(const QString &name, bool quiet)
{
    StderrFeedback fb(QStringLiteral("load"), quiet);
    return Model::load(name, &fb);
}

Expected<LinearBackend> backendFrom(const QString &name)
{
    if (name == QLatin1String("onednn"))
        return LinearBackend::OneDnn;
    if (name == QLatin1String("eigen"))
        return LinearBackend::Eigen;
    return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("unknown backend '%1'").arg(name))
                          .forParameter(QStringLiteral("backend"))
                          .withHint(QStringLiteral("use --backend onednn or --backend eigen")));
}

Expected<std::shared_ptr<const Tokenizer>> requireTokenizer(const Model &m)
{
    if (!m.tokenizer())
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("the model folder has no tokenizer.json"))
                              .inFile(m.folder())
                              .withHint(QStringLiteral("copy the checkpoint's tokenizer.json into the folder")));
    return m.tokenizer();
}

// Parses argv after the subcommand; returns false (with the exit code set) on bad usage.
bool parseArgs(Common &c, const QStringList &args, int positionals, const QString &usage, int &exitCode)
{
    if (!c.parser.parse(args)) {
        exitCode = usageError(c.parser.errorText(), QStringLiteral("usage: bitsmith-cli %1").arg(usage));
        return false;
    }
    if (c.parser.isSet(QStringLiteral("help"))) {
        std::printf("usage: bitsmith-cli %s\n\n%s", qPrintable(usage), qPrintable(c.parser.helpText()));
        exitCode = 0;
        return false;
    }
    if (c.parser.positionalArguments().size() != positionals) {
        exitCode = usageError(QStringLiteral("expected %1 positional argument(s), got %2")
                                  .arg(positionals)
                                  .arg(c.parser.positionalArguments().size()),
                              QStringLiteral("usage: bitsmith-cli %1").arg(usage));
        return false;
    }
    if (c.parser.isSet(c.threads)) {
        bool ok = false;
        const int n = c.parser.value(c.threads).toInt(&ok);
        if (!ok || n < 1) {
            exitCode = usageError(QStringLiteral("--threads must be a positive integer"), QStringLiteral("e.g. --threads 1"));
            return false;
        }
        setThreadCount(n);
    }
    if (c.parser.isSet(c.maxMemory)) {
        const auto bytes = parseByteSize(c.parser.value(c.maxMemory));
        if (!bytes) {
            exitCode = usageError(QStringLiteral("--max-memory must be a size such as 4GiB, 1500MB or a byte count"),
                                  QStringLiteral("e.g. --max-memory 4GiB"));
            return false;
        }
        g_maxMemory = *bytes;
    }
    return true;
}

bool intOption(const QCommandLineParser &p, const QCommandLineOption &o, int &out, int minimum, int &exitCode)
{
    if (!p.isSet(o))
        return true;
    bool ok = false;
    out = p.value(o).toInt(&ok);
    if (!ok || out < minimum) {
        exitCode = usageError(QStringLiteral("--%1 must be an integer >= %2").arg(o.names().first()).arg(minimum),
                              QStringLiteral("e.g. --%1 %2").arg(o.names().first()).arg(std::max(minimum, 1)));
        return false;
    }
    return true;
}

QString shapeText(const std::vector<std::int64_t> &shape)
{
    QStringList s;
    for (auto d : shape)
        s << QString::number(d);
    return s.join(QLatin1Char('x'));
}

} // namespace bitsmith::cli
