// gguffile.cpp: GGUF v3 reader (memory-mapped, bounds-checked cursor) and writer (atomic).
#include "gguffile.h"

#include <QSaveFile>

#include <algorithm>
#include <cstring>
#include <limits>
#include <set>

namespace bitsmith::core::gguf {

namespace {

constexpr std::uint32_t kMagic = 0x46554747; // "GGUF" read as a little-endian u32
constexpr std::uint32_t kVersion = 3;
constexpr std::uint64_t kDefaultAlignment = 32;
constexpr std::uint32_t kMaxDims = 4; // GGML_MAX_DIMS

std::size_t scalarSize(GgufValueType t)
{
    switch (t) {
    case GgufValueType::U8: case GgufValueType::I8: case GgufValueType::Bool: return 1;
    case GgufValueType::U16: case GgufValueType::I16: return 2;
    case GgufValueType::U32: case GgufValueType::I32: case GgufValueType::F32: return 4;
    case GgufValueType::U64: case GgufValueType::I64: case GgufValueType::F64: return 8;
    default: return 0;
    }
}

bool isKnownType(std::uint32_t t)
{
    return t <= static_cast<std::uint32_t>(GgufValueType::F64);
}

// A cursor over the mapped bytes that never reads past the end; every failure is remembered with
// a message so the caller can return one Format error.
class Cursor
{
public:
    Cursor(const std::uint8_t *data, std::uint64_t size) : m_data(data), m_size(size) {}

    std::uint64_t pos() const { return m_pos; }
    std::uint64_t remaining() const { return m_size - m_pos; }

    bool raw(void *dst, std::uint64_t n)
    {
        if (n > remaining())
            return false;
        std::memcpy(dst, m_data + m_pos, static_cast<std::size_t>(n));
        m_pos += n;
        return true;
    }
    template<typename T>
    bool read(T &v)
    {
        return raw(&v, sizeof v);
    }
    bool string(QByteArray &s)
    {
        std::uint64_t n = 0;
        if (!read(n) || n > remaining())
            return false;
        s = QByteArray(reinterpret_cast<const char *>(m_data + m_pos), static_cast<qsizetype>(n));
        m_pos += n;
        return true;
    }

private:
    const std::uint8_t *m_data;
    std::uint64_t m_size;
    std::uint64_t m_pos = 0;
};

bool readScalar(Cursor &c, GgufValueType t, GgufValue &v)
{
    switch (t) {
    case GgufValueType::U8: { std::uint8_t x; if (!c.read(x)) return false; v.ints.push_back(x); return true; }
    case GgufValueType::I8: { std::int8_t x; if (!c.read(x)) return false; v.ints.push_back(x); return true; }
    case GgufValueType::Bool: { std::uint8_t x; if (!c.read(x)) return false; v.ints.push_back(x != 0); return true; }
    case GgufValueType::U16: { std::uint16_t x; if (!c.read(x)) return false; v.ints.push_back(x); return true; }
    case GgufValueType::I16: { std::int16_t x; if (!c.read(x)) return false; v.ints.push_back(x); return true; }
    case GgufValueType::U32: { std::uint32_t x; if (!c.read(x)) return false; v.ints.push_back(x); return true; }
    case GgufValueType::I32: { std::int32_t x; if (!c.read(x)) return false; v.ints.push_back(x); return true; }
    case GgufValueType::U64: { std::uint64_t x; if (!c.read(x)) return false; v.ints.push_back(static_cast<std::int64_t>(x)); return true; }
    case GgufValueType::I64: { std::int64_t x; if (!c.read(x)) return false; v.ints.push_back(x); return true; }
    case GgufValueType::F32: { float x; if (!c.read(x)) return false; v.floats.push_back(x); return true; }
    case GgufValueType::F64: { double x; if (!c.read(x)) return false; v.floats.push_back(x); return true; }
    case GgufValueType::String: { QByteArray s; if (!c.string(s)) return false; v.strings.push_back(std::move(s)); return true; }
    default: return false;
    }
}

void appendRaw(QByteArray &out, const void *p, std::size_t n)
{
    out.append(reinterpret_cast<const char *>(p), static_cast<qsizetype>(n));
}
template<typename T>
void append(QByteArray &out, T v)
{
    appendRaw(out, &v, sizeof v);
}
void appendString(QByteArray &out, const QByteArray &s)
{
    append<std::uint64_t>(out, static_cast<std::uint64_t>(s.size()));
    out.append(s);
}

void appendScalar(QByteArray &out, const GgufValue &v, std::size_t i)
{
    switch (v.type) {
    case GgufValueType::U8: append<std::uint8_t>(out, static_cast<std::uint8_t>(v.ints[i])); break;
    case GgufValueType::I8: append<std::int8_t>(out, static_cast<std::int8_t>(v.ints[i])); break;
    case GgufValueType::Bool: append<std::uint8_t>(out, v.ints[i] ? 1 : 0); break;
    case GgufValueType::U16: append<std::uint16_t>(out, static_cast<std::uint16_t>(v.ints[i])); break;
    case GgufValueType::I16: append<std::int16_t>(out, static_cast<std::int16_t>(v.ints[i])); break;
    case GgufValueType::U32: append<std::uint32_t>(out, static_cast<std::uint32_t>(v.ints[i])); break;
    case GgufValueType::I32: append<std::int32_t>(out, static_cast<std::int32_t>(v.ints[i])); break;
    case GgufValueType::U64: append<std::uint64_t>(out, static_cast<std::uint64_t>(v.ints[i])); break;
    case GgufValueType::I64: append<std::int64_t>(out, v.ints[i]); break;
    case GgufValueType::F32: append<float>(out, static_cast<float>(v.floats[i])); break;
    case GgufValueType::F64: append<double>(out, v.floats[i]); break;
    case GgufValueType::String: appendString(out, v.strings[i]); break;
    default: break;
    }
}

std::uint64_t alignUp(std::uint64_t x, std::uint64_t a)
{
    return (x + a - 1) / a * a;
}

} // namespace

const char *ggufValueTypeName(GgufValueType t)
{
    static const char *names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64", "f64"};
    const auto i = static_cast<std::uint32_t>(t);
    return i < 13 ? names[i] : "?";
}

std::size_t GgufValue::count() const
{
    if (type == GgufValueType::String)
        return strings.size();
    if (type == GgufValueType::F32 || type == GgufValueType::F64)
        return floats.size();
    return ints.size();
}

GgufValue GgufValue::u32(std::uint32_t v) { GgufValue g; g.type = GgufValueType::U32; g.ints = {v}; return g; }
GgufValue GgufValue::i32(std::int32_t v) { GgufValue g; g.type = GgufValueType::I32; g.ints = {v}; return g; }
GgufValue GgufValue::u64(std::uint64_t v) { GgufValue g; g.type = GgufValueType::U64; g.ints = {static_cast<std::int64_t>(v)}; return g; }
GgufValue GgufValue::f32(float v) { GgufValue g; g.type = GgufValueType::F32; g.floats = {v}; return g; }
GgufValue GgufValue::boolean(bool v) { GgufValue g; g.type = GgufValueType::Bool; g.ints = {v ? 1 : 0}; return g; }
GgufValue GgufValue::string(const QByteArray &v) { GgufValue g; g.type = GgufValueType::String; g.strings = {v}; return g; }
GgufValue GgufValue::stringArray(std::vector<QByteArray> v)
{
    GgufValue g;
    g.type = GgufValueType::String;
    g.isArray = true;
    g.strings = std::move(v);
    return g;
}
GgufValue GgufValue::intArray(GgufValueType elementType, std::vector<std::int64_t> v)
{
    GgufValue g;
    g.type = elementType;
    g.isArray = true;
    g.ints = std::move(v);
    return g;
}
GgufValue GgufValue::floatArray(std::vector<double> v)
{
    GgufValue g;
    g.type = GgufValueType::F32;
    g.isArray = true;
    g.floats = std::move(v);
    return g;
}

GgufFile::~GgufFile()
{
    if (m_map)
        m_file.unmap(const_cast<uchar *>(m_map));
}

Expected<std::shared_ptr<GgufFile>> GgufFile::open(const QString &path)
{
    std::shared_ptr<GgufFile> g(new GgufFile);
    g->m_path = path;
    g->m_file.setFileName(path);
    if (!g->m_file.open(QIODevice::ReadOnly))
        return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot open GGUF file: %1").arg(g->m_file.errorString()))
                              .inFile(path));
    g->m_size = static_cast<std::uint64_t>(g->m_file.size());
    auto bad = [&](const QString &msg) {
        return unexpected(fail(ErrorCode::Format, msg).inFile(path).withHint(QStringLiteral(
            "the file is not a valid GGUF file (truncated or corrupt?); re-download or re-export it")));
    };
    if (g->m_size < 24)
        return bad(QStringLiteral("file too small for a GGUF header (%1 bytes)").arg(g->m_size));
    g->m_map = g->m_file.map(0, static_cast<qint64>(g->m_size));
    if (!g->m_map)
        return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot map file: %1").arg(g->m_file.errorString())).inFile(path));

    Cursor c(g->m_map, g->m_size);
    std::uint32_t magic = 0;
    c.read(magic);
    if (magic != kMagic)
        return bad(QStringLiteral("bad magic (not a GGUF file)"));
    c.read(g->m_version);
    if (g->m_version != 2 && g->m_version != 3)
        return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("GGUF version %1 is not supported (Bitsmith reads 2 and 3)")
                                                           .arg(g->m_version))
                              .inFile(path)
                              .withHint(QStringLiteral("convert the model with a current llama.cpp")));
    std::uint64_t nTensors = 0, nKv = 0;
    c.read(nTensors);
    c.read(nKv);
    // Each key/value takes at least 8 (key length) + 4 (type) + 1 bytes, each tensor info at least
    // 8 + 4 + 4 + 8 bytes: counts beyond what the file can hold are rejected before any allocation.
    if (nKv > c.remaining() / 13)
        return bad(QStringLiteral("absurd metadata count %1 for a file of %2 bytes").arg(nKv).arg(g->m_size));
    if (nTensors > c.remaining() / 24)
        return bad(QStringLiteral("absurd tensor count %1 for a file of %2 bytes").arg(nTensors).arg(g->m_size));

    std::set<QString> keys;
    g->m_kv.reserve(static_cast<std::size_t>(nKv));
    for (std::uint64_t i = 0; i < nKv; ++i) {
        QByteArray key;
        std::uint32_t type = 0;
        if (!c.string(key) || !c.read(type))
            return bad(QStringLiteral("truncated metadata (key %1 of %2)").arg(i).arg(nKv));
        const QString k = QString::fromUtf8(key);
        if (k.isEmpty() || !keys.insert(k).second)
            return bad(QStringLiteral("empty or duplicate metadata key '%1'").arg(k));
        if (!isKnownType(type))
            return bad(QStringLiteral("unknown value type %1 of key '%2'").arg(type).arg(k));
        GgufValue v;
        if (static_cast<GgufValueType>(type) == GgufValueType::Array) {
            std::uint32_t elemType = 0;
            std::uint64_t n = 0;
            if (!c.read(elemType) || !c.read(n))
                return bad(QStringLiteral("truncated array header of key '%1'").arg(k));
            if (!isKnownType(elemType))
                return bad(QStringLiteral("unknown array element type %1 of key '%2'").arg(elemType).arg(k));
            if (static_cast<GgufValueType>(elemType) == GgufValueType::Array)
                return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("nested arrays are not supported"))
                                      .inFile(path)
                                      .forParameter(k));
            v.type = static_cast<GgufValueType>(elemType);
            v.isArray = true;
            const std::size_t minSize = v.type == GgufValueType::String ? 8 : scalarSize(v.type);
            if (n > c.remaining() / minSize)
                return bad(QStringLiteral("array of %1 elements of key '%2' exceeds the file").arg(n).arg(k));
            if (v.type == GgufValueType::String)
                v.strings.reserve(static_cast<std::size_t>(n));
            else if (v.type == GgufValueType::F32 || v.type == GgufValueType::F64)
                v.floats.reserve(static_cast<std::size_t>(n));
            else
                v.ints.reserve(static_cast<std::size_t>(n));
            for (std::uint64_t j = 0; j < n; ++j)
                if (!readScalar(c, v.type, v))
                    return bad(QStringLiteral("truncated array of key '%1'").arg(k));
        } else {
            v.type = static_cast<GgufValueType>(type);
            if (!readScalar(c, v.type, v))
                return bad(QStringLiteral("truncated value of key '%1'").arg(k));
        }
        g->m_kv.emplace_back(k, std::move(v));
    }

    if (const GgufValue *a = g->find(QStringLiteral("general.alignment"))) {
        if (a->isArray || a->ints.size() != 1 || a->type != GgufValueType::U32)
            return bad(QStringLiteral("general.alignment must be a u32"));
        const std::int64_t al = a->ints[0];
        if (al <= 0 || (al & (al - 1)) != 0)
            return bad(QStringLiteral("general.alignment %1 is not a power of two").arg(al));
        g->m_alignment = static_cast<std::uint64_t>(al);
    }

    std::set<QString> names;
    g->m_tensors.reserve(static_cast<std::size_t>(nTensors));
    for (std::uint64_t i = 0; i < nTensors; ++i) {
        QByteArray name;
        std::uint32_t nDims = 0;
        if (!c.string(name) || !c.read(nDims))
            return bad(QStringLiteral("truncated tensor info %1 of %2").arg(i).arg(nTensors));
        GgufTensorInfo t;
        t.name = QString::fromUtf8(name);
        if (t.name.isEmpty() || !names.insert(t.name).second)
            return bad(QStringLiteral("empty or duplicate tensor name '%1'").arg(t.name));
        if (nDims == 0 || nDims > kMaxDims)
            return unexpected(fail(ErrorCode::Format, QStringLiteral("tensor has %1 dimensions (1 to 4 allowed)").arg(nDims))
                                  .inFile(path)
                                  .forTensor(t.name));
        std::int64_t elements = 1;
        for (std::uint32_t d = 0; d < nDims; ++d) {
            std::uint64_t dim = 0;
            if (!c.read(dim))
                return bad(QStringLiteral("truncated dimensions of tensor '%1'").arg(t.name));
            // A dimension larger than the file (in elements of at least 1/8 byte) cannot be real;
            // the running product is kept below 2^62 so that byte counts never overflow.
            if (dim == 0 || dim > (std::uint64_t(1) << 40) || static_cast<std::uint64_t>(elements) > (std::uint64_t(1) << 62) / dim)
                return unexpected(fail(ErrorCode::Format, QStringLiteral("absurd tensor dimension %1").arg(dim))
                                      .inFile(path)
                                      .forTensor(t.name));
            t.dims.push_back(static_cast<std::int64_t>(dim));
            elements *= static_cast<std::int64_t>(dim);
        }
        std::uint32_t type = 0;
        if (!c.read(type) || !c.read(t.offset))
            return bad(QStringLiteral("truncated tensor info of '%1'").arg(t.name));
        const auto gt = ggmlTypeFromId(type);
        if (!gt)
            return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("ggml type %1 is not supported").arg(type))
                                  .inFile(path)
                                  .forTensor(t.name)
                                  .withHint(QStringLiteral("Bitsmith reads F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and Q2_K..Q6_K")));
        t.type = *gt;
        if (t.dims[0] % ggmlBlockSize(t.type) != 0)
            return unexpected(fail(ErrorCode::Format, QStringLiteral("row of %1 elements is not a multiple of the %2 block size %3")
                                                          .arg(t.dims[0])
                                                          .arg(QLatin1String(ggmlTypeName(t.type)))
                                                          .arg(ggmlBlockSize(t.type)))
                                  .inFile(path)
                                  .forTensor(t.name));
        t.elements = elements;
        t.bytes = ggmlBytes(t.type, elements);
        if (t.offset % g->m_alignment != 0)
            return unexpected(fail(ErrorCode::Format, QStringLiteral("tensor offset %1 is not aligned to %2").arg(t.offset).arg(g->m_alignment))
                                  .inFile(path)
                                  .forTensor(t.name));
        g->m_tensors.push_back(std::move(t));
    }
    g->m_dataOffset = alignUp(c.pos(), g->m_alignment);
    if (g->m_dataOffset > g->m_size && !g->m_tensors.empty())
        return bad(QStringLiteral("data section starts past the end of the file"));
    const std::uint64_t dataSize = g->m_size >= g->m_dataOffset ? g->m_size - g->m_dataOffset : 0;
    for (const GgufTensorInfo &t : g->m_tensors) {
        if (t.offset > dataSize || static_cast<std::uint64_t>(t.bytes) > dataSize - t.offset)
            return unexpected(fail(ErrorCode::Format, QStringLiteral("tensor data [%1, %2) lies outside the data section of %3 bytes")
                                                          .arg(t.offset)
                                                          .arg(t.offset + static_cast<std::uint64_t>(t.bytes))
                                                          .arg(dataSize))
                                  .inFile(path)
                                  .forTensor(t.name)
                                  .withHint(QStringLiteral("the file is truncated; re-download or re-export it")));
    }
    return g;
}

const GgufValue *GgufFile::find(const QString &key) const
{
    for (const auto &[k, v] : m_kv)
        if (k == key)
            return &v;
    return nullptr;
}

std::optional<std::int64_t> GgufFile::intValue(const QString &key) const
{
    const GgufValue *v = find(key);
    if (!v || v->isArray || v->ints.size() != 1)
        return std::nullopt;
    return v->ints[0];
}

std::optional<double> GgufFile::floatValue(const QString &key) const
{
    const GgufValue *v = find(key);
    if (!v || v->isArray || v->floats.size() != 1)
        return std::nullopt;
    return v->floats[0];
}

std::optional<QString> GgufFile::stringValue(const QString &key) const
{
    const GgufValue *v = find(key);
    if (!v || v->isArray || v->strings.size() != 1)
        return std::nullopt;
    return QString::fromUtf8(v->strings[0]);
}

const GgufTensorInfo *GgufFile::findTensor(const QString &name) const
{
    for (const GgufTensorInfo &t : m_tensors)
        if (t.name == name)
            return &t;
    return nullptr;
}

std::span<const std::uint8_t> GgufFile::tensorBytes(const GgufTensorInfo &t) const
{
    return {m_map + m_dataOffset + t.offset, static_cast<std::size_t>(t.bytes)};
}

std::vector<float> GgufFile::dequantize(const GgufTensorInfo &t) const
{
    std::vector<float> out(static_cast<std::size_t>(t.elements));
    dequantizeRow(t.type, tensorBytes(t).data(), out.data(), t.elements);
    return out;
}

void GgufWriter::set(const QString &key, GgufValue value)
{
    for (auto &[k, v] : m_kv)
        if (k == key) {
            v = std::move(value);
            return;
        }
    m_kv.emplace_back(key, std::move(value));
}

Expected<void> GgufWriter::checkTensor(const QString &name, const std::vector<std::int64_t> &dims, GgmlType type,
                                       std::int64_t bytes) const
{
    std::int64_t n = 1;
    for (auto d : dims)
        n *= d;
    if (dims.empty() || dims.size() > kMaxDims || ggmlBytes(type, n) != bytes || dims[0] % ggmlBlockSize(type) != 0)
        return unexpected(fail(ErrorCode::Internal, QStringLiteral("tensor data does not match its dimensions and type %1")
                                                        .arg(QLatin1String(ggmlTypeName(type))))
                              .forTensor(name));
    for (const Tensor &t : m_tensors)
        if (t.name == name)
            return unexpected(fail(ErrorCode::Internal, QStringLiteral("duplicate tensor")).forTensor(name));
    return {};
}

Expected<void> GgufWriter::addTensor(const QString &name, std::vector<std::int64_t> dims, GgmlType type,
                                     std::vector<std::uint8_t> data)
{
    if (auto ok = checkTensor(name, dims, type, static_cast<std::int64_t>(data.size())); !ok)
        return ok;
    const auto bytes = static_cast<std::int64_t>(data.size());
    m_tensors.push_back({name, std::move(dims), type, std::move(data), {}, bytes});
    return {};
}

Expected<void> GgufWriter::addTensor(const QString &name, std::vector<std::int64_t> dims, GgmlType type, Producer produce)
{
    std::int64_t n = 1;
    for (auto d : dims)
        n *= d;
    const std::int64_t bytes = dims.empty() ? 0 : ggmlBytes(type, n);
    if (auto ok = checkTensor(name, dims, type, bytes); !ok)
        return ok;
    m_tensors.push_back({name, std::move(dims), type, {}, std::move(produce), bytes});
    return {};
}

QByteArray GgufWriter::header(std::uint64_t *alignmentOut) const
{
    std::uint64_t alignment = kDefaultAlignment;
    for (const auto &[k, v] : m_kv)
        if (k == QLatin1String("general.alignment") && v.ints.size() == 1 && v.ints[0] > 0)
            alignment = static_cast<std::uint64_t>(v.ints[0]);
    QByteArray out;
    append<std::uint32_t>(out, kMagic);
    append<std::uint32_t>(out, kVersion);
    append<std::uint64_t>(out, m_tensors.size());
    append<std::uint64_t>(out, m_kv.size());
    for (const auto &[k, v] : m_kv) {
        appendString(out, k.toUtf8());
        if (v.isArray) {
            append<std::uint32_t>(out, static_cast<std::uint32_t>(GgufValueType::Array));
            append<std::uint32_t>(out, static_cast<std::uint32_t>(v.type));
            append<std::uint64_t>(out, v.count());
        } else {
            append<std::uint32_t>(out, static_cast<std::uint32_t>(v.type));
        }
        for (std::size_t i = 0; i < v.count(); ++i)
            appendScalar(out, v, i);
    }
    std::uint64_t offset = 0;
    for (const Tensor &t : m_tensors) {
        appendString(out, t.name.toUtf8());
        append<std::uint32_t>(out, static_cast<std::uint32_t>(t.dims.size()));
        for (auto d : t.dims)
            append<std::uint64_t>(out, static_cast<std::uint64_t>(d));
        append<std::uint32_t>(out, static_cast<std::uint32_t>(t.type));
        append<std::uint64_t>(out, offset);
        offset = alignUp(offset + static_cast<std::uint64_t>(t.bytes), alignment);
    }
    out.append(QByteArray(static_cast<qsizetype>(alignUp(static_cast<std::uint64_t>(out.size()), alignment) - out.size()), '\0'));
    *alignmentOut = alignment;
    return out;
}

// Header, then each tensor's bytes at its aligned offset (producers called one at a time), then
// the padding ggml puts at the end of the data section.
template<typename Sink>
Expected<void> GgufWriter::emitTo(Sink &&sink, Feedback *feedback) const
{
    std::uint64_t alignment = kDefaultAlignment;
    const QByteArray head = header(&alignment);
    if (auto ok = sink(head.constData(), static_cast<std::size_t>(head.size())); !ok)
        return ok;
    std::uint64_t offset = 0;
    static const std::vector<char> zeros(4096, 0);
    auto pad = [&](std::uint64_t to) -> Expected<void> {
        while (offset < to) {
            const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(to - offset, zeros.size()));
            if (auto ok = sink(zeros.data(), n); !ok)
                return ok;
            offset += n;
        }
        return {};
    };
    for (std::size_t i = 0; i < m_tensors.size(); ++i) {
        const Tensor &t = m_tensors[i];
        if (feedback) {
            if (feedback->isCancelled())
                return unexpected(fail(ErrorCode::Cancelled, QStringLiteral("export cancelled")));
            feedback->setProgress(static_cast<double>(i) / static_cast<double>(m_tensors.size()));
        }
        if (auto ok = pad(alignUp(offset, alignment)); !ok)
            return ok;
        if (t.produce) {
            auto bytes = t.produce();
            if (!bytes)
                return unexpected(std::move(bytes.error()).forTensor(t.name));
            if (static_cast<std::int64_t>(bytes->size()) != t.bytes)
                return unexpected(fail(ErrorCode::Internal, QStringLiteral("tensor produced %1 bytes, %2 expected")
                                                                .arg(bytes->size())
                                                                .arg(t.bytes))
                                      .forTensor(t.name));
            if (auto ok = sink(bytes->data(), bytes->size()); !ok)
                return ok;
        } else if (auto ok = sink(t.data.data(), t.data.size()); !ok) {
            return ok;
        }
        offset += static_cast<std::uint64_t>(t.bytes);
    }
    return pad(alignUp(offset, alignment));
}

QByteArray GgufWriter::toBytes() const
{
    QByteArray out;
    auto ok = emitTo(
        [&out](const void *p, std::size_t n) -> Expected<void> {
            appendRaw(out, p, n);
            return {};
        },
        nullptr);
    return ok ? out : QByteArray();
}

Expected<void> GgufWriter::write(const QString &path, Feedback *feedback) const
{
    QSaveFile f(path);
    if (!f.open(QIODevice::WriteOnly))
        return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot write: %1").arg(f.errorString())).inFile(path));
    auto ok = emitTo(
        [&](const void *p, std::size_t n) -> Expected<void> {
            if (f.write(static_cast<const char *>(p), static_cast<qint64>(n)) != static_cast<qint64>(n))
                return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot write: %1").arg(f.errorString()))
                                      .inFile(path)
                                      .withHint(QStringLiteral("check free disk space")));
            return {};
        },
        feedback);
    if (!ok) {
        f.cancelWriting();
        return ok;
    }
    if (!f.commit())
        return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot write: %1").arg(f.errorString())).inFile(path));
    return {};
}

} // namespace bitsmith::core::gguf
