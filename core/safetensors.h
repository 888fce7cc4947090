// safetensors.h: reading (memory-mapped, zero-copy) and writing (atomic) of .safetensors files,
// and the sharded layout of Hugging Face folders (model.safetensors.index.json).
// Format: 8-byte little-endian header length N, N bytes of JSON {name: {dtype, shape,
// data_offsets: [begin, end]}, "__metadata__": {...}}, then the data buffer.
#pragma once

#include "dtype.h"
#include "error.h"
#include "feedback.h"

#include <QFile>
#include <QMap>
#include <QString>

#include <cstdint>
#include <functional>
#include <optional>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace bitsmith::core {

struct TensorRecord
{
    QString name;
    DType dtype = DType::F32;
    std::vector<std::int64_t> shape;
    const std::byte *data = nullptr; // into the mapped file; valid while the file object lives
    std::size_t nbytes = 0;
    std::size_t readableAfter = 0; // mapped bytes after the tensor's data (to the end of the file)
    QString file; // the file it lives in

    std::int64_t numel() const
    {
        std::int64_t n = 1;
        for (auto d : shape)
            n *= d;
        return n;
    }
};

class SafetensorsFile
{
public:
    // Maps the file read-only and validates the whole header: dtypes, shapes against byte ranges,
    // ranges inside the buffer and not overlapping. Any problem is a Format error naming the file
    // (and the tensor).
    static Expected<std::shared_ptr<SafetensorsFile>> open(const QString &path);
    ~SafetensorsFile();

    const QString &path() const { return m_path; }
    const std::vector<TensorRecord> &tensors() const { return m_tensors; }
    const TensorRecord *find(const QString &name) const;
    const QMap<QString, QString> &metadata() const { return m_metadata; }

private:
    SafetensorsFile() = default;
    QString m_path;
    QFile m_file;
    uchar *m_map = nullptr;
    std::vector<TensorRecord> m_tensors;
    std::unordered_map<QString, std::size_t> m_index;
    QMap<QString, QString> m_metadata;
};

// All safetensors files of a model folder: model.safetensors, or the shards listed in
// model.safetensors.index.json (every tensor of the index must be found in its shard).
class SafetensorsCollection
{
public:
    static Expected<std::shared_ptr<SafetensorsCollection>> openFolder(const QString &folder);

    const TensorRecord *find(const QString &name) const;
    std::vector<const TensorRecord *> tensors() const; // in file order, shards in order
    const std::vector<std::shared_ptr<SafetensorsFile>> &files() const { return m_files; }

private:
    std::vector<std::shared_ptr<SafetensorsFile>> m_files;
    std::unordered_map<QString, const TensorRecord *> m_index;
};

// A tensor to write: raw little-endian bytes of `dtype` elements, given as a span, or produced
// when it is written (`produce`, returning exactly `nbytes` bytes), so that a writer holds one
// tensor at a time.
struct TensorToWrite
{
    QString name;
    DType dtype = DType::F32;
    std::vector<std::int64_t> shape;
    std::span<const std::byte> bytes;
    std::size_t nbytes = 0; // with produce
    std::function<Expected<std::vector<std::byte>>()> produce;

    std::size_t size() const { return produce ? nbytes : bytes.size(); }
};

// Writes a .safetensors file atomically (QSaveFile: a crash never leaves a half-written file).
// Tensors are written in the given order, one at a time; the header is padded to a multiple of 8
// bytes so that every tensor's data is 8-byte aligned when the given tensors' sizes keep it so.
Expected<void> writeSafetensors(const QString &path, const std::vector<TensorToWrite> &tensors,
                                const QMap<QString, QString> &metadata = {}, Feedback *feedback = nullptr);

// Writes the tensors into `folder` as Hugging Face does: one model.safetensors when they fit in
// `maxShardBytes`, else model-0000i-of-0000N.safetensors shards of at most that size (a larger
// tensor gets a shard of its own) and model.safetensors.index.json (metadata.total_size,
// weight_map). Returns the file names written.
Expected<QStringList> writeSafetensorsSharded(const QString &folder, const std::vector<TensorToWrite> &tensors,
                                              std::int64_t maxShardBytes, const QMap<QString, QString> &metadata = {},
                                              Feedback *feedback = nullptr);

// Hugging Face's default shard size (5 GB) and the parser of --max-shard-size values ("5GB",
// "500MB", "2GiB", or bytes).
inline constexpr std::int64_t kDefaultShardBytes = 5'000'000'000;
std::optional<std::int64_t> parseByteSize(const QString &text);

} // namespace bitsmith::core
