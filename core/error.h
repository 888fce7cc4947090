// error.h: the error value every fallible core call returns (through Expected<T>).
// An Error carries a code, a one-line message, the context it happened in (file, tensor, layer,
// parameter) and a hint for the user, so the CLI and the GUI can show something actionable.
#pragma once

#include <QString>

#include <expected>
#include <utility>

namespace bitsmith::core {

enum class ErrorCode {
    Io,              // a file could not be opened, read or written
    Format,          // a file is corrupt, truncated or not what it claims to be
    Unsupported,     // valid input that Bitsmith does not handle (architecture, dtype, ...)
    InvalidArgument, // a parameter or option is out of range or malformed
    Mismatch,        // shapes, names or versions that must agree do not
    Cancelled,       // the user cancelled a long job
    OutOfMemory,     // the job needs more memory than the machine (or its memory limit) has
    Internal,        // a bug or a failure inside a library (oneDNN, HDF5)
};

struct Error
{
    ErrorCode code = ErrorCode::Internal;
    QString message;
    QString file;
    QString tensor;
    QString layer;
    QString parameter;
    QString hint;

    // Builders, so call sites read as one expression:
    //   return fail(ErrorCode::Format, "truncated header").inFile(path).withHint("re-download");
    Error &&inFile(QString f) && { file = std::move(f); return std::move(*this); }
    Error &&forTensor(QString t) && { tensor = std::move(t); return std::move(*this); }
    Error &&forLayer(QString l) && { layer = std::move(l); return std::move(*this); }
    Error &&forParameter(QString p) && { parameter = std::move(p); return std::move(*this); }
    Error &&withHint(QString h) && { hint = std::move(h); return std::move(*this); }

    // One line: "message [file: F, tensor: T, ...]"; the hint is separate (see hintLine()).
    QString toString() const;
    // "HINT: ..." with the specific hint, or a generic one for the error's code.
    QString hintLine() const;
    static QString defaultHint(ErrorCode code);
    static const char *codeName(ErrorCode code);
};

template<typename T>
using Expected = std::expected<T, Error>;

// Starts an error; convert to std::unexpected with `return std::unexpected(fail(...))` or use
// the Unexpected helper below.
inline Error fail(ErrorCode code, QString message)
{
    Error e;
    e.code = code;
    e.message = std::move(message);
    return e;
}

inline std::unexpected<Error> unexpected(Error e)
{
    return std::unexpected<Error>(std::move(e));
}

} // namespace bitsmith::core
