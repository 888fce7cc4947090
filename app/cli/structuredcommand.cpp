// structuredcommand.cpp: `bitsmith-cli compress MODEL --method structured --heads F --mlp F --out DIR`
// — scores attention heads and MLP neurons on calibration text and writes a physically smaller
// Hugging Face folder (core/prune/structured.h).
#include "app/cli/clicommon.h"
#include "app/cli/commands.h"
#include "core/calibration.h"   // makeCalibrationSequences
#include "core/evaluate.h"      // tokenizeTextFile
#include "core/prune/structured.h"

#include <QDir>
#include <QFileInfo>

#include <cstdio>

using namespace bitsmith::core;

namespace bitsmith::cli {

int cmdCompressStructured(const QStringList &args)
{
    Common c;
    QCommandLineOption method(QStringLiteral("method"), QStringLiteral("structured"), QStringLiteral("NAME"));
    QCommandLineOption heads(QStringLiteral("heads"), QStringLiteral("Fraction of attention heads to remove (0..1)."), QStringLiteral("F"), QStringLiteral("0"));
    QCommandLineOption mlp(QStringLiteral("mlp"), QStringLiteral("Fraction of MLP intermediate neurons to remove (0..1)."), QStringLiteral("F"), QStringLiteral("0"));
    QCommandLineOption calib(QStringLiteral("calib"), QStringLiteral("Calibration text (default: the model folder's calib.txt)."), QStringLiteral("FILE"));
    QCommandLineOption calibSeqs(QStringLiteral("calib-sequences"), QStringLiteral("Calibration sequences (default 32)."), QStringLiteral("N"));
    QCommandLineOption calibLen(QStringLiteral("calib-length"), QStringLiteral("Tokens per calibration sequence (default: the model's context)."), QStringLiteral("L"));
    QCommandLineOption seed(QStringLiteral("seed"), QStringLiteral("Seed for choosing calibration sequences (default 0)."), QStringLiteral("S"));
    QCommandLineOption out(QStringLiteral("out"), QStringLiteral("Output model folder."), QStringLiteral("DIR"));
    c.parser.addOptions({method, heads, mlp, calib, calibSeqs, calibLen, seed, out});
    int code = 0;
    const QString usage = QStringLiteral("compress MODEL --method structured --heads F --mlp F [--calib TEXT_FILE] --out DIR");
    if (!parseArgs(c, args, 1, usage, code))
        return code;
    if (!c.parser.isSet(out))
        return usageError(QStringLiteral("--out is required"), QStringLiteral("usage: bitsmith-cli %1").arg(usage));
    bool okH = false, okM = false;
    const double headFraction = c.parser.value(heads).toDouble(&okH), mlpFraction = c.parser.value(mlp).toDouble(&okM);
    if (!okH)
        return reportError(fail(ErrorCode::InvalidArgument, QStringLiteral("--heads must be a number")).forParameter(QStringLiteral("heads")).withHint(QStringLiteral("e.g. --heads 0.25")));
    if (!okM)
        return reportError(fail(ErrorCode::InvalidArgument, QStringLiteral("--mlp must be a number")).forParameter(QStringLiteral("mlp")).withHint(QStringLiteral("e.g. --mlp 0.25")));
    int sequences = 32, length = 0;
    if (!intOption(c.parser, calibSeqs, sequences, 1, code) || !intOption(c.parser, calibLen, length, 2, code))
        return code;
    const bool quiet = c.parser.isSet(c.quiet);
    auto model = loadModel(c.parser.positionalArguments().first(), quiet);
    if (!model)
        return reportError(model.error());
    QString calibPath = c.parser.value(calib);
    if (calibPath.isEmpty() && QFileInfo::exists((*model)->folder() + QStringLiteral("/calib.txt")))
        calibPath = (*model)->folder() + QStringLiteral("/calib.txt");
    if (calibPath.isEmpty())
        return reportError(fail(ErrorCode::InvalidArgument, QStringLiteral("structured pruning needs calibration data"))
                               .forParameter(QStringLiteral("calib"))
                               .withHint(QStringLiteral("give a text file with --calib FILE")));
    auto ids = tokenizeTextFile(**model, calibPath);
    if (!ids)
        return reportError(ids.error());
    const int len = length > 0 ? std::min(length, (*model)->config().maxPositions) : (*model)->config().maxPositions;
    auto seqs = makeCalibrationSequences(*ids, sequences, len, c.parser.isSet(seed) ? c.parser.value(seed).toULongLong() : 0);
    if (!seqs)
        return reportError(std::move(seqs.error()).inFile(calibPath));
    StderrFeedback fb(QStringLiteral("structured"), quiet);
    auto importance = structuredImportance(*model, *seqs, &fb);
    if (!importance)
        return reportError(importance.error());
    auto plan = planStructuredPruning(**model, *importance, headFraction, mlpFraction);
    if (!plan)
        return reportError(plan.error());
    auto report = writeStructuredModel(**model, *plan, c.parser.value(out));
    if (!report)
        return reportError(report.error());
    report->insert(QStringLiteral("out"), QDir(c.parser.value(out)).absolutePath());
    report->remove(QStringLiteral("blocks"));
    if (c.parser.isSet(c.json)) {
        printJson(*report);
    } else {
        std::printf("removed %.1f%% of the attention heads (%d heads, %d KV heads left) and %.1f%% of the MLP neurons "
                    "(%d left): %.0f -> %.0f parameters\nwrote %s\n",
                    100.0 * plan->headFraction, report->value(QStringLiteral("num_attention_heads")).toInt(), plan->kvHeads,
                    100.0 * plan->neuronFraction, report->value(QStringLiteral("intermediate_size")).toInt(),
                    report->value(QStringLiteral("parameters_before")).toDouble(), report->value(QStringLiteral("parameters_after")).toDouble(),
                    qPrintable(QDir(c.parser.value(out)).absolutePath()));
    }
    return 0;
}

} // namespace bitsmith::cli
