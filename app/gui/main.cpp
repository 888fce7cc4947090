// main.cpp: the `bitsmith` desktop application. Parses the command line, opens the main window on
// a model folder (the bundled model by default) or a project / experiment file, or with
// --screenshot fills the window with real data, renders it (or one view) offscreen to a PNG and
// exits (for tests and the README).
#include "core/project.h"
#include "core/threading.h"
#include "ui/mainwindow.h"
#include "ui/projectdocument.h"
#include "ui/screenshot.h"

#include <QApplication>
#include <QCommandLineParser>
#include <QDir>
#include <QFileInfo>
#include <QImage>
#include <QMessageBox>
#include <QPixmap>
#include <QElapsedTimer>
#include <QTimer>

#include <cstdio>
#include <functional>
#include <cstring>

namespace {

// True when Qt has somewhere to draw: a display server, or a platform chosen explicitly.
bool displayAvailable(int argc, char **argv)
{
    for (const char *var : {"DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"})
        if (!qEnvironmentVariableIsEmpty(var))
            return true;
    for (int i = 1; i < argc; ++i)
        if (std::strcmp(argv[i], "-platform") == 0 || std::strcmp(argv[i], "--platform") == 0)
            return true;
    return false;
}

bool wantsScreenshot(int argc, char **argv)
{
    for (int i = 1; i < argc; ++i)
        if (std::strcmp(argv[i], "--screenshot") == 0
            || std::strncmp(argv[i], "--screenshot=", 13) == 0)
            return true;
    return false;
}

void printError(const QString &message, const QString &hintLine = {})
{
    std::fprintf(stderr, "bitsmith: %s\n", qPrintable(message));
    if (!hintLine.isEmpty())
        std::fprintf(stderr, "%s\n", qPrintable(hintLine));
}

// Fills the loaded window with real data, renders it (or one view) to `path`. Returns the exit code.
int saveScreenshot(bitsmith::ui::MainWindow &window, const QString &path, const QString &view, QSize size)
{
    if (auto ok = bitsmith::ui::prepareScreenshot(window, view); !ok) {
        printError(ok.error().toString(), ok.error().hintLine());
        return 1;
    }
    const QImage image = bitsmith::ui::renderScreenshot(window, view, size);
    // Quality 0 is zlib level 9 for PNG: the README image stays small, losslessly.
    if (image.isNull() || !image.save(path, "PNG", 0)) {
        printError(QStringLiteral("cannot write screenshot %1").arg(QDir::toNativeSeparators(path)),
                   QStringLiteral("HINT: check that the folder exists and is writable"));
        return 1;
    }
    return 0;
}

} // namespace

int main(int argc, char **argv)
{
    bitsmith::core::prepareProcessEnvironment(argc, argv);

    // The platform plugin is chosen when QApplication is constructed, so this must come first.
    if (!displayAvailable(argc, argv)) {
        if (wantsScreenshot(argc, argv)) {
            qputenv("QT_QPA_PLATFORM", "offscreen");
        } else {
            printError(QStringLiteral("no display available (DISPLAY and WAYLAND_DISPLAY are unset)"),
                       QStringLiteral("HINT: use bitsmith-cli on headless machines, run under "
                                      "xvfb-run, or pass --screenshot FILE.png to render offscreen"));
            return 1;
        }
    }

    QApplication app(argc, argv);
    QApplication::setApplicationName(QStringLiteral("Bitsmith"));
    QApplication::setApplicationVersion(QStringLiteral(BITSMITH_VERSION));
    QApplication::setOrganizationName(QStringLiteral("Bitsmith"));

    QCommandLineParser parser;
    parser.setApplicationDescription(
        QStringLiteral("Bitsmith: a workbench for compressing neural networks."));
    parser.addHelpOption();
    parser.addVersionOption();
    parser.addPositionalArgument(QStringLiteral("model"),
                                 QStringLiteral("Hugging Face model folder (default: the bundled "
                                                "model), a Bitsmith project (.bsproj) or a sensitivity "
                                                "experiment (.h5)."),
                                 QStringLiteral("[MODEL_OR_PROJECT]"));
    const QCommandLineOption screenshotOption(
        QStringLiteral("screenshot"),
        QStringLiteral("Load the model, render the window offscreen to FILE.png and exit."),
        QStringLiteral("FILE.png"));
    const QCommandLineOption widthOption(QStringLiteral("width"),
                                         QStringLiteral("Window width in pixels (default 1280)."),
                                         QStringLiteral("W"), QStringLiteral("1280"));
    const QCommandLineOption heightOption(QStringLiteral("height"),
                                          QStringLiteral("Window height in pixels (default 800)."),
                                          QStringLiteral("H"), QStringLiteral("800"));
    const QCommandLineOption viewOption(
        QStringLiteral("view"),
        QStringLiteral("With --screenshot: render only this view: %1.")
            .arg(bitsmith::ui::MainWindow::viewNames().join(QStringLiteral(", "))),
        QStringLiteral("NAME"));
    const QCommandLineOption themeOption(QStringLiteral("theme"), QStringLiteral("light (default) or dark."),
                                         QStringLiteral("NAME"), QStringLiteral("light"));
    const QCommandLineOption openTimeOption(
        QStringLiteral("open-time"),
        QStringLiteral("Open the model, show the window with its layer table, print how long that took and exit "
                       "(a benchmark of opening large checkpoints)."));
    parser.addOptions({screenshotOption, widthOption, heightOption, viewOption, themeOption, openTimeOption});
    parser.process(app); // --help, --version and unknown options exit here

    const QStringList positional = parser.positionalArguments();
    if (positional.size() > 1) {
        printError(QStringLiteral("expected at most one model folder or project, got %1").arg(positional.size()),
                   QStringLiteral("HINT: bitsmith [MODEL_OR_PROJECT] [--screenshot FILE.png [--view NAME]]"));
        return 2;
    }
    bool widthOk = false, heightOk = false;
    const int width = parser.value(widthOption).toInt(&widthOk);
    const int height = parser.value(heightOption).toInt(&heightOk);
    if (!widthOk || !heightOk || width < 320 || height < 240 || width > 8192 || height > 8192) {
        printError(QStringLiteral("invalid window size %1 x %2")
                       .arg(parser.value(widthOption), parser.value(heightOption)),
                   QStringLiteral("HINT: --width and --height take pixels, e.g. --width 1280 "
                                  "--height 800"));
        return 2;
    }
    const QString model = positional.isEmpty() ? QStringLiteral("default") : positional.first();
    const QString screenshotPath = parser.value(screenshotOption);
    const QString view = parser.value(viewOption);
    if (!view.isEmpty() && !bitsmith::ui::MainWindow::viewNames().contains(view)) {
        printError(QStringLiteral("unknown view '%1'").arg(view),
                   QStringLiteral("HINT: --view takes one of %1")
                       .arg(bitsmith::ui::MainWindow::viewNames().join(QStringLiteral(", "))));
        return 2;
    }
    // A file is a project or an experiment; a folder (or "default") is a model.
    const bool isFile = QFileInfo(model).isFile();

    const QString theme = parser.value(themeOption);
    if (theme != QLatin1String("light") && theme != QLatin1String("dark")) {
        printError(QStringLiteral("unknown theme '%1'").arg(theme), QStringLiteral("HINT: --theme light or --theme dark"));
        return 2;
    }

    bitsmith::ui::MainWindow window;
    window.resize(width, height);
    if (theme == QLatin1String("dark"))
        window.setDarkTheme(true);

    // Batch modes (--open-time, --screenshot): no dialogs, a failed load is one line on stderr and
    // a non-zero exit; once loaded the window is shown and `then` runs after one turn of the event
    // loop (the shown window is laid out, polished and painted).
    const bool batch = parser.isSet(openTimeOption) || parser.isSet(screenshotOption);
    if (batch) {
        window.setErrorDialogsEnabled(false);
        window.setAutosaveInterval(0);
    }
    QElapsedTimer timer;
    timer.start();
    auto whenLoaded = [&](std::function<int()> then) {
        return [&window, &app, then](bool ok) {
            if (!ok) {
                const bitsmith::core::Error &e = *window.lastError();
                printError(e.toString(), e.hintLine());
                QCoreApplication::exit(1);
                return;
            }
            window.show();
            QTimer::singleShot(0, &app, [then] { QCoreApplication::exit(then()); });
        };
    };

    if (parser.isSet(openTimeOption)) {
        QObject::connect(&window, &bitsmith::ui::MainWindow::loadFinished, &app, whenLoaded([&] {
                             std::printf("opened %s: %d layers in the table, %.2f s\n", qPrintable(model),
                                         window.document()->layerCount(), static_cast<double>(timer.nsecsElapsed()) / 1e9);
                             return 0;
                         }));
        window.openModel(model);
        return app.exec();
    }

    if (parser.isSet(screenshotOption)) {
        if (screenshotPath.isEmpty()) {
            printError(QStringLiteral("--screenshot needs a file name"),
                       QStringLiteral("HINT: --screenshot docs/screenshots/workbench.png"));
            return 2;
        }
        auto finish = whenLoaded([&] { return saveScreenshot(window, screenshotPath, view, QSize(width, height)); });
        if (isFile) {
            QObject::connect(&window, &bitsmith::ui::MainWindow::projectOpened, &app, finish);
            // From inside the event loop: a bad file fails at once, and exit() needs a running loop.
            QTimer::singleShot(0, &window, [&] { window.openProject(model); });
        } else {
            QObject::connect(&window, &bitsmith::ui::MainWindow::loadFinished, &app, finish);
            window.openModel(model);
        }
        return app.exec();
    }

    window.show();
    if (isFile)
        window.openProject(model);
    else
        window.openModel(model);
    // Crash recovery: an autosave left behind by a session that did not exit cleanly.
    if (window.hasRecoverableAutosave()) {
        auto *box = new QMessageBox(QMessageBox::Question, QStringLiteral("Recover unsaved work?"),
                                    QStringLiteral("Bitsmith did not exit cleanly last time. Open the autosaved project?"),
                                    QMessageBox::Open | QMessageBox::Discard, &window);
        box->setAttribute(Qt::WA_DeleteOnClose);
        QObject::connect(box, &QMessageBox::finished, &window, [&window](int result) {
            if (result == QMessageBox::Open)
                window.recoverAutosave();
        });
        box->open();
    }
    return app.exec();
}
