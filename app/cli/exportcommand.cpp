// exportcommand.cpp: `bitsmith-cli export MODEL --format gguf|hf|hf-gptq|recipe-yaml --out PATH`:
// a model folder, a compressed folder or a .gguf file written for deployment runtimes; and
// `export EXP_OR_PROJECT.h5 --format report --out report.html [--model DIR]` (reportcommand.cpp).
#include "app/cli/clicommon.h"
#include "app/cli/commands.h"

#include "core/export/hfexport.h"  // exportHfDense, exportHfGptq, recipeToYaml
#include "core/gguf/ggufmodel.h"   // exportGguf
#include "core/recipe.h"          // Recipe::fromFile

#include <QDir>
#include <QFileInfo>
#include <QJsonDocument>
#include <QSaveFile>

#include <cstdio>

namespace bitsmith::cli {

namespace {

Expected<void> writeText(const QString &path, const QByteArray &text)
{
    QSaveFile f(path);
    if (!f.open(QIODevice::WriteOnly) || f.write(text) != text.size() || !f.commit())
        return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot write: %1").arg(f.errorString())).inFile(path));
    return {};
}

} // namespace

int cmdExport(const QStringList &args)
{
    Common c;
    QCommandLineOption format(QStringLiteral("format"), QStringLiteral("gguf, hf, hf-gptq, recipe-yaml or report."), QStringLiteral("FORMAT"));
    QCommandLineOption out(QStringLiteral("out"), QStringLiteral("Output file (gguf, recipe-yaml) or folder (hf, hf-gptq)."), QStringLiteral("PATH"));
    QCommandLineOption type(QStringLiteral("type"), QStringLiteral("gguf: type of the dense matrices (F16, BF16, F32, Q8_0, Q4_K, ...)."), QStringLiteral("TYPE"));
    QCommandLineOption strict(QStringLiteral("strict-exact"),
                              QStringLiteral("gguf: requantize Q4_1/Q5_1 layers whose min is not an fp16 value instead of rounding it."));
    QCommandLineOption modelDir(QStringLiteral("model"),
                                QStringLiteral("report: the model folder (default: the one the experiment names) or a compressed folder whose recipe to tabulate."),
                                QStringLiteral("DIR"));
    QCommandLineOption shard(QStringLiteral("max-shard-size"),
                             QStringLiteral("hf, hf-gptq: largest safetensors shard (default 5GB, as transformers writes; e.g. 2GB, 500MiB)."),
                             QStringLiteral("SIZE"));
    c.parser.addOptions({format, out, type, strict, modelDir, shard});
    int code = 0;
    const QString usage = QStringLiteral("export MODEL --format gguf|hf|hf-gptq|recipe-yaml --out PATH [--type TYPE] [--strict-exact] [--max-shard-size SIZE]\n"
                                         "       export EXP_OR_PROJECT.h5 --format report --out report.html [--model DIR]");
    if (!parseArgs(c, args, 1, usage, code))
        return code;
    const QString fmt = c.parser.value(format);
    const QStringList formats{QStringLiteral("gguf"), QStringLiteral("hf"), QStringLiteral("hf-gptq"), QStringLiteral("recipe-yaml"), QStringLiteral("report")};
    if (!formats.contains(fmt))
        return usageError(QStringLiteral("--format must be one of %1").arg(formats.join(QStringLiteral(", "))), usage);
    if (!c.parser.isSet(out))
        return usageError(QStringLiteral("--out is required"), usage);
    const QString outPath = c.parser.value(out);
    const QString source = c.parser.positionalArguments().first();
    const bool quiet = c.parser.isSet(c.quiet);
    if (c.parser.isSet(modelDir) && fmt != QLatin1String("report"))
        return usageError(QStringLiteral("--model is for --format report"), usage);
    if (fmt == QLatin1String("report"))
        return runReport(source, outPath, c.parser.value(modelDir), quiet, c.parser.isSet(c.json));

    if (fmt == QLatin1String("recipe-yaml")) {
        // A recipe file, or a compressed folder's recipe.json.
        QString recipePath = source;
        if (QFileInfo(source).isDir())
            recipePath = QDir(source).filePath(QStringLiteral("recipe.json"));
        auto recipe = Recipe::fromFile(recipePath);
        if (!recipe)
            return reportError(recipe.error());
        if (auto ok = writeText(outPath, recipeToYaml(*recipe)); !ok)
            return reportError(ok.error());
        if (c.parser.isSet(c.json))
            printJson(QJsonObject{{QStringLiteral("format"), fmt}, {QStringLiteral("out"), outPath}});
        else
            std::printf("wrote %s\n", qPrintable(outPath));
        return 0;
    }

    std::optional<gguf::GgmlType> denseType;
    if (c.parser.isSet(type)) {
        denseType = gguf::ggmlTypeFromName(c.parser.value(type));
        if (!denseType || fmt != QLatin1String("gguf"))
            return usageError(QStringLiteral("--type '%1' is not a GGUF type (or the format is not gguf)").arg(c.parser.value(type)),
                              QStringLiteral("types: F32 F16 BF16 Q8_0 Q6_K Q5_K Q5_1 Q5_0 Q4_K Q4_1 Q4_0 Q3_K Q2_K"));
    }
    auto model = loadModel(source, quiet);
    if (!model)
        return reportError(model.error());
    StderrFeedback feedback(QStringLiteral("export"), quiet);

    if (fmt == QLatin1String("gguf")) {
        gguf::GgufExportOptions options;
        options.denseType = denseType;
        options.strictExact = c.parser.isSet(strict);
        auto report = gguf::exportGguf(**model, outPath, options, &feedback);
        if (!report)
            return reportError(report.error());
        // Beside the file: the report and the llama-quantize overrides.
        const QString base = outPath.endsWith(QLatin1String(".gguf")) ? outPath.chopped(5) : outPath;
        QJsonObject json = report->toJson();
        if (auto ok = writeText(base + QStringLiteral(".report.json"), QJsonDocument(json).toJson()); !ok)
            return reportError(ok.error());
        if (auto ok = writeText(base + QStringLiteral(".tensor-types.txt"), report->tensorTypeOverrides.join(QLatin1Char('\n')).toUtf8() + '\n'); !ok)
            return reportError(ok.error());
        if (c.parser.isSet(c.json)) {
            printJson(json);
            return 0;
        }
        std::printf("wrote %s (%.2f MiB, architecture %s, pre-tokenizer %s)\n", qPrintable(outPath),
                    static_cast<double>(report->fileBytes) / (1024.0 * 1024.0), qPrintable(report->architecture),
                    qPrintable(report->preTokenizer));
        const QJsonObject how = json.value(QLatin1String("howCounts")).toObject();
        for (auto it = how.begin(); it != how.end(); ++it)
            std::printf("  %3d tensors: %s\n", it.value().toInt(), qPrintable(it.key()));
        std::printf("report: %s.report.json   llama-quantize overrides: %s.tensor-types.txt\n", qPrintable(base), qPrintable(base));
        return 0;
    }

    std::int64_t shardBytes = kDefaultShardBytes;
    if (c.parser.isSet(shard)) {
        const auto b = parseByteSize(c.parser.value(shard));
        if (!b)
            return usageError(QStringLiteral("--max-shard-size must be a size such as 5GB, 2GiB or a byte count"), usage);
        shardBytes = *b;
    }
    auto result = fmt == QLatin1String("hf") ? exportHfDense(**model, outPath, &feedback, shardBytes)
                                             : exportHfGptq(**model, outPath, &feedback, shardBytes);
    if (!result)
        return reportError(result.error());
    if (c.parser.isSet(c.json)) {
        printJson(*result);
        return 0;
    }
    std::printf("wrote %s\n", qPrintable(outPath));
    return 0;
}

} // namespace bitsmith::cli
