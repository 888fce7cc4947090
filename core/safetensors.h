// safetensors.h: reading (memory-mapped, zero-copy) and writing (atomic) of .safetensors files,
// and the sharded layout of Hugging Face folders (model.safetensors.index.json).
// Format: 8-byte little-endian header length N, N bytes of JSON {name: {dtype, shape,
// data_offsets: [begin, end]}, "__metadata__": {...}}, then the data buffer.
#pragma once

#include "dtype.h"
#include "error.h"

#include <QFile>
#include <QMap>
#include <QString>

#include <cstdint>
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

// A tensor to write: raw little-endian bytes of `dtype` elements.
struct TensorToWrite
{
    QString name;
    DType dtype = DType::F32;
    std::vector<std::int64_t> shape;
    std::span<const std::byte> bytes;
};

// Writes a .safetensors file atomically (QSaveFile: a crash never leaves a half-written file).
// Tensors are written in the given order; the header is padded to a multiple of 8 bytes so that
// every tensor's data is 8-byte aligned when the given tensors' sizes keep it so.
Expected<void> writeSafetensors(const QString &path, const std::vector<TensorToWrite> &tensors,
                                const QMap<QString, QString> &metadata = {});

} // namespace bitsmith::core
