// error.cpp: formatting of Error for the CLI, the GUI and logs.
#include "error.h"

#include <QStringList>

namespace bitsmith::core {

QString Error::toString() const
{
    QStringList context;
    if (!file.isEmpty())
        context << QStringLiteral("file: %1").arg(file);
    if (!tensor.isEmpty())
        context << QStringLiteral("tensor: %1").arg(tensor);
    if (!layer.isEmpty())
        context << QStringLiteral("layer: %1").arg(layer);
    if (!parameter.isEmpty())
        context << QStringLiteral("parameter: %1").arg(parameter);
    if (context.isEmpty())
        return message;
    return QStringLiteral("%1 [%2]").arg(message, context.join(QStringLiteral(", ")));
}

QString Error::hintLine() const
{
    return QStringLiteral("HINT: %1").arg(hint.isEmpty() ? defaultHint(code) : hint);
}

QString Error::defaultHint(ErrorCode code)
{
    switch (code) {
    case ErrorCode::Io: return QStringLiteral("check that the path exists and is readable (or writable)");
    case ErrorCode::Format: return QStringLiteral("the file is corrupt or not in the expected format");
    case ErrorCode::Unsupported: return QStringLiteral("this input is valid but not supported by Bitsmith yet");
    case ErrorCode::InvalidArgument: return QStringLiteral("check the option's value; --help lists the valid ones");
    case ErrorCode::Mismatch: return QStringLiteral("the files or settings do not belong together");
    case ErrorCode::Cancelled: return QStringLiteral("the job was cancelled; nothing was written");
    case ErrorCode::OutOfMemory: return QStringLiteral("use fewer calibration sequences or a shorter context, or close other programs");
    case ErrorCode::Internal: return QStringLiteral("this is a bug in Bitsmith; please report it with the command line");
    }
    return {};
}

const char *Error::codeName(ErrorCode code)
{
    switch (code) {
    case ErrorCode::Io: return "io";
    case ErrorCode::Format: return "format";
    case ErrorCode::Unsupported: return "unsupported";
    case ErrorCode::InvalidArgument: return "invalid-argument";
    case ErrorCode::Mismatch: return "mismatch";
    case ErrorCode::Cancelled: return "cancelled";
    case ErrorCode::OutOfMemory: return "out-of-memory";
    case ErrorCode::Internal: return "internal";
    }
    return "internal";
}

} // namespace bitsmith::core
