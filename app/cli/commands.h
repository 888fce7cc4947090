// commands.h: the bitsmith-cli commands that live in files of their own (the older ones are still
// in main.cpp). Each takes the arguments after the command word (args[0] = program name).
#pragma once

#include <QStringList>

namespace bitsmith::cli {

// distillcommand.cpp: knowledge distillation into a compressed or smaller student.
int cmdDistill(const QStringList &args);

} // namespace bitsmith::cli
