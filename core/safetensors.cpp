// safetensors.cpp: header validation, memory mapping, sharded folders and atomic writing.
#include "safetensors.h"

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QSaveFile>
#include <QRegularExpression>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace bitsmith::core {

namespace {

constexpr std::uint64_t kMaxHeader = 100u * 1024 * 1024; // as the reference implementation

Error formatError(const QString &path, const QString &msg)
{
    return fail(ErrorCode::Format, msg)
        .inFile(path)
        .withHint(QStringLiteral("the file is corrupt or truncated; re-download or re-export it"));
}

} // namespace

SafetensorsFile::~SafetensorsFile()
{
    if (m_map)
        m_file.unmap(m_map);
}

Expected<std::shared_ptr<SafetensorsFile>> SafetensorsFile::open(const QString &path)
{
    std::shared_ptr<SafetensorsFile> st(new SafetensorsFile);
    st->m_path = path;
    st->m_file.setFileName(path);
    if (!st->m_file.open(QIODevice::ReadOnly))
        return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot open safetensors file: %1")
                                                  .arg(st->m_file.errorString()))
                              .inFile(path)
                              .withHint(QStringLiteral("check that the path exists and is readable")));
    const qint64 size = st->m_file.size();
    if (size < 8)
        return unexpected(formatError(path, QStringLiteral("file too small (%1 bytes) for a safetensors header").arg(size)));
    st->m_map = st->m_file.map(0, size);
    if (!st->m_map)
        return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot memory-map the file: %1")
                                                  .arg(st->m_file.errorString()))
                              .inFile(path));
    std::uint64_t headerLen = 0;
    for (int i = 7; i >= 0; --i)
        headerLen = (headerLen << 8) | st->m_map[i];
    if (headerLen > kMaxHeader || headerLen > static_cast<std::uint64_t>(size - 8))
        return unexpected(formatError(path, QStringLiteral("header length %1 exceeds the file size %2")
                                                .arg(headerLen)
                                                .arg(size)));
    const QByteArray headerBytes = QByteArray::fromRawData(reinterpret_cast<const char *>(st->m_map + 8),
                                                           static_cast<qsizetype>(headerLen));
    QJsonParseError perr;
    const QJsonDocument doc = QJsonDocument::fromJson(headerBytes, &perr);
    if (perr.error != QJsonParseError::NoError || !doc.isObject())
        return unexpected(formatError(path, QStringLiteral("header is not a JSON object (%1 at offset %2)")
                                                .arg(perr.errorString())
                                                .arg(perr.offset)));
    const std::uint64_t bufferSize = static_cast<std::uint64_t>(size) - 8 - headerLen;
    const std::byte *buffer = reinterpret_cast<const std::byte *>(st->m_map + 8 + headerLen);
    const QJsonObject obj = doc.object();
    std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
    for (auto it = obj.begin(); it != obj.end(); ++it) {
        if (it.key() == QLatin1String("__metadata__")) {
            if (!it.value().isObject())
                return unexpected(formatError(path, QStringLiteral("__metadata__ is not an object")));
            const QJsonObject md = it.value().toObject();
            for (auto m = md.begin(); m != md.end(); ++m)
                st->m_metadata.insert(m.key(), m.value().toString());
            continue;
        }
        const QString name = it.key();
        auto bad = [&](const QString &msg) { return unexpected(formatError(path, msg).forTensor(name)); };
        if (!it.value().isObject())
            return bad(QStringLiteral("tensor entry is not an object"));
        const QJsonObject t = it.value().toObject();
        TensorRecord rec;
        rec.name = name;
        rec.file = path;
        const auto dt = dtypeFromName(t.value(QLatin1String("dtype")).toString());
        if (!dt)
            return unexpected(fail(ErrorCode::Unsupported,
                                   QStringLiteral("unsupported dtype '%1'")
                                       .arg(t.value(QLatin1String("dtype")).toString()))
                                  .inFile(path)
                                  .forTensor(name)
                                  .withHint(QStringLiteral("Bitsmith reads F64/F32/F16/BF16 and integer tensors")));
        rec.dtype = *dt;
        const QJsonValue shapeValue = t.value(QLatin1String("shape"));
        if (!shapeValue.isArray())
            return bad(QStringLiteral("missing or invalid 'shape'"));
        std::uint64_t numel = 1;
        for (const QJsonValue &d : shapeValue.toArray()) {
            const double v = d.toDouble(-1);
            if (!d.isDouble() || v < 0 || v != static_cast<double>(static_cast<std::int64_t>(v)))
                return bad(QStringLiteral("invalid dimension in 'shape'"));
            rec.shape.push_back(static_cast<std::int64_t>(v));
            if (v > 0 && numel > std::numeric_limits<std::uint64_t>::max() / static_cast<std::uint64_t>(v))
                return bad(QStringLiteral("shape overflows"));
            numel *= static_cast<std::uint64_t>(v);
        }
        const QJsonArray offs = t.value(QLatin1String("data_offsets")).toArray();
        if (offs.size() != 2 || !offs[0].isDouble() || !offs[1].isDouble())
            return bad(QStringLiteral("missing or invalid 'data_offsets'"));
        const auto begin = static_cast<std::uint64_t>(offs[0].toDouble());
        const auto end = static_cast<std::uint64_t>(offs[1].toDouble());
        if (offs[0].toDouble() < 0 || end < begin || end > bufferSize)
            return bad(QStringLiteral("data_offsets [%1, %2] outside the data buffer of %3 bytes (truncated file?)")
                           .arg(begin)
                           .arg(end)
                           .arg(bufferSize));
        if (end - begin != numel * dtypeSize(rec.dtype))
            return bad(QStringLiteral("byte range of %1 bytes does not match shape and dtype (%2 bytes)")
                           .arg(end - begin)
                           .arg(numel * dtypeSize(rec.dtype)));
        rec.data = buffer + begin;
        rec.nbytes = static_cast<std::size_t>(end - begin);
        rec.readableAfter = static_cast<std::size_t>(bufferSize - end);
        ranges.emplace_back(begin, end);
        st->m_tensors.push_back(std::move(rec));
    }
    std::sort(ranges.begin(), ranges.end());
    for (std::size_t i = 1; i < ranges.size(); ++i)
        if (ranges[i].first < ranges[i - 1].second)
            return unexpected(formatError(path, QStringLiteral("tensor byte ranges overlap")));
    // Keep the order of the data buffer: that is the order writers and readers expect.
    std::sort(st->m_tensors.begin(), st->m_tensors.end(),
              [](const TensorRecord &a, const TensorRecord &b) { return a.data < b.data; });
    for (std::size_t i = 0; i < st->m_tensors.size(); ++i)
        st->m_index.emplace(st->m_tensors[i].name, i);
    return st;
}

const TensorRecord *SafetensorsFile::find(const QString &name) const
{
    const auto it = m_index.find(name);
    return it == m_index.end() ? nullptr : &m_tensors[it->second];
}

Expected<std::shared_ptr<SafetensorsCollection>> SafetensorsCollection::openFolder(const QString &folder)
{
    auto coll = std::make_shared<SafetensorsCollection>();
    const QDir dir(folder);
    const QString indexPath = dir.filePath(QStringLiteral("model.safetensors.index.json"));
    const QString singlePath = dir.filePath(QStringLiteral("model.safetensors"));
    if (QFileInfo::exists(indexPath)) {
        QFile f(indexPath);
        if (!f.open(QIODevice::ReadOnly))
            return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot open the shard index: %1").arg(f.errorString()))
                                  .inFile(indexPath));
        QJsonParseError perr;
        const QJsonDocument doc = QJsonDocument::fromJson(f.readAll(), &perr);
        const QJsonObject weightMap = doc.object().value(QLatin1String("weight_map")).toObject();
        if (perr.error != QJsonParseError::NoError || weightMap.isEmpty())
            return unexpected(fail(ErrorCode::Format, QStringLiteral("shard index has no 'weight_map'"))
                                  .inFile(indexPath)
                                  .withHint(QStringLiteral("the index must map tensor names to shard files")));
        QStringList shardNames;
        for (auto it = weightMap.begin(); it != weightMap.end(); ++it)
            if (!shardNames.contains(it.value().toString()))
                shardNames << it.value().toString();
        shardNames.sort();
        QMap<QString, std::shared_ptr<SafetensorsFile>> byName;
        for (const QString &shard : shardNames) {
            if (shard.contains(QLatin1Char('/')) || shard.contains(QLatin1String("..")))
                return unexpected(fail(ErrorCode::Format, QStringLiteral("shard name '%1' is not a plain file name").arg(shard))
                                      .inFile(indexPath));
            auto file = SafetensorsFile::open(dir.filePath(shard));
            if (!file)
                return unexpected(file.error());
            byName.insert(shard, *file);
            coll->m_files.push_back(*file);
        }
        for (auto it = weightMap.begin(); it != weightMap.end(); ++it) {
            const TensorRecord *rec = byName.value(it.value().toString())->find(it.key());
            if (!rec)
                return unexpected(fail(ErrorCode::Mismatch, QStringLiteral("tensor listed in the index is missing from its shard"))
                                      .inFile(dir.filePath(it.value().toString()))
                                      .forTensor(it.key()));
            coll->m_index.emplace(it.key(), rec);
        }
        return coll;
    }
    if (!QFileInfo::exists(singlePath))
        return unexpected(fail(ErrorCode::Io, QStringLiteral("no model.safetensors or model.safetensors.index.json"))
                              .inFile(folder)
                              .withHint(QStringLiteral("point to a Hugging Face model folder with safetensors weights")));
    auto file = SafetensorsFile::open(singlePath);
    if (!file)
        return unexpected(file.error());
    coll->m_files.push_back(*file);
    for (const TensorRecord &rec : (*file)->tensors())
        coll->m_index.emplace(rec.name, &rec);
    return coll;
}

const TensorRecord *SafetensorsCollection::find(const QString &name) const
{
    const auto it = m_index.find(name);
    return it == m_index.end() ? nullptr : it->second;
}

std::vector<const TensorRecord *> SafetensorsCollection::tensors() const
{
    std::vector<const TensorRecord *> out;
    for (const auto &f : m_files)
        for (const TensorRecord &rec : f->tensors())
            if (find(rec.name) == &rec)
                out.push_back(&rec);
    return out;
}

Expected<void> writeSafetensors(const QString &path, const std::vector<TensorToWrite> &tensors,
                                const QMap<QString, QString> &metadata, Feedback *feedback)
{
    QJsonObject header;
    if (!metadata.isEmpty()) {
        QJsonObject md;
        for (auto it = metadata.begin(); it != metadata.end(); ++it)
            md.insert(it.key(), it.value());
        header.insert(QStringLiteral("__metadata__"), md);
    }
    std::uint64_t offset = 0;
    for (const TensorToWrite &t : tensors) {
        std::uint64_t numel = 1;
        QJsonArray shape;
        for (auto d : t.shape) {
            numel *= static_cast<std::uint64_t>(d);
            shape.append(static_cast<double>(d));
        }
        if (numel * dtypeSize(t.dtype) != t.size())
            return unexpected(fail(ErrorCode::Mismatch, QStringLiteral("tensor data size does not match its shape"))
                                  .inFile(path)
                                  .forTensor(t.name));
        QJsonObject entry;
        entry.insert(QStringLiteral("dtype"), QString::fromLatin1(dtypeName(t.dtype)));
        entry.insert(QStringLiteral("shape"), shape);
        entry.insert(QStringLiteral("data_offsets"),
                     QJsonArray{static_cast<double>(offset), static_cast<double>(offset + t.size())});
        header.insert(t.name, entry);
        offset += t.size();
    }
    QByteArray json = QJsonDocument(header).toJson(QJsonDocument::Compact);
    while ((json.size() + 8) % 8 != 0)
        json.append(' ');
    QSaveFile out(path);
    if (!out.open(QIODevice::WriteOnly))
        return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot write: %1").arg(out.errorString())).inFile(path));
    char len[8];
    std::uint64_t n = static_cast<std::uint64_t>(json.size());
    for (int i = 0; i < 8; ++i)
        len[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
    bool ok = out.write(len, 8) == 8 && out.write(json) == json.size();
    // Large spans go out in pieces of 64 MiB, so that a mapped source is read (and its pages can
    // be dropped) progressively.
    auto writeAll = [&](const std::byte *data, std::size_t size) {
        constexpr std::size_t kPiece = std::size_t(64) << 20;
        for (std::size_t done = 0; ok && done < size; done += kPiece) {
            const std::size_t piece = std::min(kPiece, size - done);
            ok = out.write(reinterpret_cast<const char *>(data + done), static_cast<qint64>(piece)) == static_cast<qint64>(piece);
        }
    };
    std::size_t index = 0;
    for (const TensorToWrite &t : tensors) {
        if (feedback) {
            if (feedback->isCancelled()) {
                out.cancelWriting();
                return unexpected(fail(ErrorCode::Cancelled, QStringLiteral("writing cancelled")).inFile(path));
            }
            feedback->setProgress(static_cast<double>(index++) / static_cast<double>(tensors.size()));
        }
        if (!ok)
            break;
        if (t.produce) {
            auto bytes = t.produce();
            if (!bytes) {
                out.cancelWriting();
                return unexpected(std::move(bytes.error()).inFile(path).forTensor(t.name));
            }
            if (bytes->size() != t.nbytes) {
                out.cancelWriting();
                return unexpected(fail(ErrorCode::Internal, QStringLiteral("tensor produced %1 bytes, %2 announced")
                                                                .arg(bytes->size())
                                                                .arg(t.nbytes))
                                      .inFile(path)
                                      .forTensor(t.name));
            }
            writeAll(bytes->data(), bytes->size());
        } else {
            writeAll(t.bytes.data(), t.bytes.size());
        }
    }
    if (!ok || !out.commit())
        return unexpected(fail(ErrorCode::Io, QStringLiteral("writing failed: %1").arg(out.errorString()))
                              .inFile(path)
                              .withHint(QStringLiteral("check free disk space; the previous file was left untouched")));
    return {};
}

Expected<QStringList> writeSafetensorsSharded(const QString &folder, const std::vector<TensorToWrite> &tensors,
                                              std::int64_t maxShardBytes, const QMap<QString, QString> &metadata,
                                              Feedback *feedback)
{
    std::vector<std::vector<std::size_t>> shards(1);
    std::int64_t current = 0, total = 0;
    for (std::size_t i = 0; i < tensors.size(); ++i) {
        const auto size = static_cast<std::int64_t>(tensors[i].size());
        if (!shards.back().empty() && maxShardBytes > 0 && current + size > maxShardBytes) {
            shards.emplace_back();
            current = 0;
        }
        shards.back().push_back(i);
        current += size;
        total += size;
    }
    const QDir dir(folder);
    QStringList names;
    // Once written, weight files of an earlier export into the same folder that are not part of
    // this one are removed (a stale index or shard would make loaders read the wrong weights).
    auto removeStale = [&dir](const QStringList &keep) {
        const QStringList old = dir.entryList({QStringLiteral("model.safetensors"), QStringLiteral("model-*-of-*.safetensors"),
                                               QStringLiteral("model.safetensors.index.json")},
                                              QDir::Files);
        for (const QString &f : old)
            if (!keep.contains(f))
                QFile::remove(dir.filePath(f));
    };
    if (shards.size() == 1) {
        if (auto ok = writeSafetensors(dir.filePath(QStringLiteral("model.safetensors")), tensors, metadata, feedback); !ok)
            return unexpected(ok.error());
        removeStale({QStringLiteral("model.safetensors")});
        return QStringList{QStringLiteral("model.safetensors")};
    }
    QJsonObject weightMap;
    for (std::size_t s = 0; s < shards.size(); ++s) {
        const QString name = QStringLiteral("model-%1-of-%2.safetensors")
                                 .arg(s + 1, 5, 10, QLatin1Char('0'))
                                 .arg(shards.size(), 5, 10, QLatin1Char('0'));
        std::vector<TensorToWrite> part;
        for (std::size_t i : shards[s]) {
            part.push_back(tensors[i]);
            weightMap.insert(tensors[i].name, name);
        }
        if (feedback)
            feedback->setStatus(QStringLiteral("writing %1").arg(name));
        if (auto ok = writeSafetensors(dir.filePath(name), part, metadata, nullptr); !ok)
            return unexpected(ok.error());
        if (feedback)
            feedback->setProgress(static_cast<double>(s + 1) / static_cast<double>(shards.size()));
        names << name;
    }
    const QJsonObject index{{QStringLiteral("metadata"), QJsonObject{{QStringLiteral("total_size"), static_cast<double>(total)}}},
                            {QStringLiteral("weight_map"), weightMap}};
    QSaveFile f(dir.filePath(QStringLiteral("model.safetensors.index.json")));
    const QByteArray bytes = QJsonDocument(index).toJson(QJsonDocument::Indented);
    if (!f.open(QIODevice::WriteOnly) || f.write(bytes) != bytes.size() || !f.commit())
        return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot write: %1").arg(f.errorString())).inFile(f.fileName()));
    names << QStringLiteral("model.safetensors.index.json");
    removeStale(names);
    return names;
}

std::optional<std::int64_t> parseByteSize(const QString &text)
{
    static const QRegularExpression re(QStringLiteral("^\\s*([0-9]+(?:\\.[0-9]+)?)\\s*([KMGT]?)(i?)B?\\s*$"),
                                       QRegularExpression::CaseInsensitiveOption);
    const auto m = re.match(text);
    if (!m.hasMatch())
        return std::nullopt;
    const double value = m.captured(1).toDouble();
    const QString unit = m.captured(2).toUpper();
    const double base = m.captured(3).isEmpty() ? 1000.0 : 1024.0;
    const int power = unit == QLatin1String("K") ? 1 : unit == QLatin1String("M") ? 2 : unit == QLatin1String("G") ? 3 : unit == QLatin1String("T") ? 4 : 0;
    const double bytes = value * std::pow(base, power);
    if (!(bytes >= 1.0) || bytes > 9.0e18)
        return std::nullopt;
    return static_cast<std::int64_t>(bytes);
}

} // namespace bitsmith::core
