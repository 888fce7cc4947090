// commands.h: the bitsmith-cli commands that live in files of their own (the older ones are still
// in main.cpp). Each takes the arguments after the command word (args[0] = program name).
#pragma once

#include <QStringList>

namespace bitsmith::cli {

// export MODEL --format gguf|hf|hf-gptq|recipe-yaml|report --out PATH (exportcommand.cpp)
int cmdExport(const QStringList &args);
// reportcommand.cpp: whether argv is `export ... --format report` (decided before the application
// object exists: the report needs a QApplication), the offscreen platform for it, and the report.
bool wantsGuiApplication(int argc, char **argv);
void prepareGuiEnvironment();
int runReport(const QString &input, const QString &out, const QString &model, bool quiet, bool json);
// `compress MODEL --method structured --heads F --mlp F [--calib FILE] --out DIR`: removes attention
// heads and MLP neurons and writes a smaller Hugging Face folder (structuredcommand.cpp).
int cmdCompressStructured(const QStringList &args);
// distillcommand.cpp: knowledge distillation into a compressed or smaller student.
int cmdDistill(const QStringList &args);

} // namespace bitsmith::cli
