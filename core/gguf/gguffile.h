// gguffile.h: reading and writing GGUF (version 3) files, the format of llama.cpp / ggml.
//
// Layout (all little-endian): "GGUF" magic, u32 version, u64 tensor count, u64 key/value count;
// the key/values (key: u64 length + bytes; u32 value type; value — scalars, strings as u64 length
// + bytes, arrays as u32 element type + u64 count + elements); the tensor infos (name, u32 number
// of dimensions, u64 dims with the fastest-varying first, u32 ggml type, u64 offset relative to the
// data section); padding to `general.alignment` (default 32); the data section.
//
// The reader maps the file read-only and validates everything before anything is allocated from
// a count in the file: every count and length is bounded by the bytes left in the file, every
// tensor's byte range must lie inside the data section, and malformed files give a Format error
// naming the file (and key or tensor), never a crash.
#pragma once

#include "core/error.h"
#include "core/gguf/ggmltype.h"
#include "core/feedback.h"

#include <QByteArray>
#include <QFile>
#include <QString>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <utility>
#include <vector>

namespace bitsmith::core::gguf {

enum class GgufValueType : std::uint32_t {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
};

const char *ggufValueTypeName(GgufValueType t);

// One metadata value: a scalar or an array (of scalars or strings; nested arrays are rejected, as
// llama.cpp does). Integers and bools are kept in `ints` (u64 by its bit pattern), floats in
// `floats`, strings in `strings`; a scalar has one entry.
struct GgufValue
{
    GgufValueType type = GgufValueType::U32; // the element type for arrays
    bool isArray = false;
    std::vector<std::int64_t> ints;
    std::vector<double> floats;
    std::vector<QByteArray> strings;

    std::size_t count() const;

    static GgufValue u32(std::uint32_t v);
    static GgufValue i32(std::int32_t v);
    static GgufValue u64(std::uint64_t v);
    static GgufValue f32(float v);
    static GgufValue boolean(bool v);
    static GgufValue string(const QByteArray &v);
    static GgufValue stringArray(std::vector<QByteArray> v);
    static GgufValue intArray(GgufValueType elementType, std::vector<std::int64_t> v);
    static GgufValue floatArray(std::vector<double> v); // F32 elements
};

struct GgufTensorInfo
{
    QString name;
    std::vector<std::int64_t> dims; // ne0 (contiguous) first, as in the file
    GgmlType type = GgmlType::F32;
    std::uint64_t offset = 0; // relative to the data section
    std::int64_t elements = 0;
    std::int64_t bytes = 0;

    // Row-major shape as Bitsmith / PyTorch write it: dims reversed ([rows, cols] for a matrix).
    std::vector<std::int64_t> shape() const { return {dims.rbegin(), dims.rend()}; }
};

class GgufFile
{
public:
    // Maps and parses the file. Errors: Io (cannot open), Format (bad magic, truncated, absurd
    // counts, offsets outside the file, ...), Unsupported (version other than 2/3, unknown ggml
    // type, nested arrays).
    static Expected<std::shared_ptr<GgufFile>> open(const QString &path);
    ~GgufFile();

    const QString &path() const { return m_path; }
    std::uint32_t version() const { return m_version; }
    std::uint64_t alignment() const { return m_alignment; }
    std::uint64_t dataOffset() const { return m_dataOffset; }
    std::uint64_t fileSize() const { return m_size; }

    const std::vector<std::pair<QString, GgufValue>> &metadata() const { return m_kv; }
    const GgufValue *find(const QString &key) const;
    // Typed look-ups: nullopt when missing or of another kind (ints covers all integer types).
    std::optional<std::int64_t> intValue(const QString &key) const;
    std::optional<double> floatValue(const QString &key) const;
    std::optional<QString> stringValue(const QString &key) const;

    const std::vector<GgufTensorInfo> &tensors() const { return m_tensors; }
    const GgufTensorInfo *findTensor(const QString &name) const;
    // The tensor's bytes inside the mapping (valid while this object lives).
    std::span<const std::uint8_t> tensorBytes(const GgufTensorInfo &t) const;
    // All elements as f32, in row-major order of shape().
    std::vector<float> dequantize(const GgufTensorInfo &t) const;

private:
    GgufFile() = default;
    QString m_path;
    QFile m_file;
    const std::uint8_t *m_map = nullptr;
    std::uint64_t m_size = 0;
    std::uint32_t m_version = 0;
    std::uint64_t m_alignment = 32;
    std::uint64_t m_dataOffset = 0;
    std::vector<std::pair<QString, GgufValue>> m_kv;
    std::vector<GgufTensorInfo> m_tensors;
};

// Builds a GGUF v3 file in order: metadata keys as set (re-setting a key replaces its value in
// place), tensors as added; `general.alignment` is honoured if set (default 32). The tensors'
// bytes are held until written and the file is assembled in memory (fine for the models Bitsmith
// runs, which it holds as f32 anyway; a streaming writer would be needed for much larger ones).
class GgufWriter
{
public:
    void set(const QString &key, GgufValue value);
    // `dims` fastest-varying first (ggml order); `data` must hold ggmlBytes(type, elements) bytes.
    Expected<void> addTensor(const QString &name, std::vector<std::int64_t> dims, GgmlType type,
                             std::vector<std::uint8_t> data);
    // A tensor whose bytes `produce` makes when write() reaches it (one tensor in memory at a
    // time); it must return exactly ggmlBytes(type, elements) bytes.
    using Producer = std::function<Expected<std::vector<std::uint8_t>>()>;
    Expected<void> addTensor(const QString &name, std::vector<std::int64_t> dims, GgmlType type, Producer produce);
    // Atomic write (QSaveFile: a temporary file renamed into place), tensor by tensor; progress
    // and cancellation through `feedback`.
    Expected<void> write(const QString &path, Feedback *feedback = nullptr) const;
    // The whole file in memory (tests).
    QByteArray toBytes() const;

private:
    struct Tensor
    {
        QString name;
        std::vector<std::int64_t> dims;
        GgmlType type;
        std::vector<std::uint8_t> data;
        Producer produce;
        std::int64_t bytes = 0;
    };
    Expected<void> checkTensor(const QString &name, const std::vector<std::int64_t> &dims, GgmlType type,
                               std::int64_t bytes) const;
    QByteArray header(std::uint64_t *alignment) const;
    template<typename Sink>
    Expected<void> emitTo(Sink &&sink, Feedback *feedback) const;
    std::vector<std::pair<QString, GgufValue>> m_kv;
    std::vector<Tensor> m_tensors;
};

} // namespace bitsmith::core::gguf
