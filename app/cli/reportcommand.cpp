// reportcommand.cpp: `bitsmith-cli export EXP_OR_PROJECT.h5 --format report --out report.html
// [--model DIR]`: the self-contained HTML report (ui/reportwriter.h). The report draws with the
// GUI's QCustomPlot views, so this one command needs a QApplication: main() asks
// wantsGuiApplication() before creating the application object and makes an offscreen one.
#include "app/cli/clicommon.h"
#include "app/cli/commands.h"

#ifdef BITSMITH_CLI_REPORT
#include "ui/reportwriter.h" // writeReport
#endif

#include <QJsonObject>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace bitsmith::cli {

bool wantsGuiApplication(int argc, char **argv)
{
#ifdef BITSMITH_CLI_REPORT
    if (argc < 2 || std::strcmp(argv[1], "export") != 0)
        return false;
    for (int i = 2; i < argc; ++i) {
        if (std::strcmp(argv[i], "--format=report") == 0)
            return true;
        if (std::strcmp(argv[i], "--format") == 0 && i + 1 < argc && std::strcmp(argv[i + 1], "report") == 0)
            return true;
    }
#else
    (void)argc;
    (void)argv;
#endif
    return false;
}

void prepareGuiEnvironment()
{
    // Nothing is shown: render offscreen whatever display there is (same pixels on a server and
    // on a desktop), unless the user chose a platform.
    if (qEnvironmentVariableIsEmpty("QT_QPA_PLATFORM"))
        qputenv("QT_QPA_PLATFORM", "offscreen");
}

#ifdef BITSMITH_CLI_REPORT
namespace {
QtMessageHandler g_previousHandler = nullptr;
// The offscreen platform warns that it "does not support propagateSizeHints()" for every window
// laid out: noise to a CLI user, dropped; everything else goes to Qt's handler.
void quietOffscreen(QtMsgType type, const QMessageLogContext &context, const QString &message)
{
    if (message.contains(QLatin1String("propagateSizeHints")))
        return;
    if (g_previousHandler)
        g_previousHandler(type, context, message);
}
} // namespace
#endif

int runReport(const QString &input, const QString &out, const QString &model, bool quiet, bool json)
{
#ifdef BITSMITH_CLI_REPORT
    g_previousHandler = qInstallMessageHandler(quietOffscreen);
    StderrFeedback feedback(QStringLiteral("report"), quiet);
    ui::ReportOptions options;
    options.input = input;
    options.model = model;
    auto summary = ui::writeReport(options, out, &feedback);
    if (!summary)
        return reportError(summary.error());
    if (json) {
        printJson(QJsonObject{{QStringLiteral("format"), QStringLiteral("report")},
                              {QStringLiteral("out"), out},
                              {QStringLiteral("bytes"), static_cast<double>(summary->htmlBytes)},
                              {QStringLiteral("layers"), summary->layers},
                              {QStringLiteral("settings"), summary->settings},
                              {QStringLiteral("frontierPoints"), summary->frontierPoints},
                              {QStringLiteral("measuredPoints"), summary->measuredPoints},
                              {QStringLiteral("recipe"), summary->recipeSource}});
        return 0;
    }
    std::printf("wrote %s (%.1f KiB: %d layers × %d settings, %d frontier points, %d measured; recipe: %s)\n", qPrintable(out),
                static_cast<double>(summary->htmlBytes) / 1024.0, summary->layers, summary->settings, summary->frontierPoints,
                summary->measuredPoints, qPrintable(summary->recipeSource));
    return 0;
#else
    (void)input;
    (void)out;
    (void)model;
    (void)quiet;
    (void)json;
    return reportError(fail(ErrorCode::Unsupported, QStringLiteral("this bitsmith-cli was built without the GUI library"))
                           .withHint(QStringLiteral("rebuild with -DBITSMITH_BUILD_GUI=ON to write HTML reports")));
#endif
}

} // namespace bitsmith::cli
