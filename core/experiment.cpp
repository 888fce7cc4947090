// experiment.cpp: the HDF5 experiment file, through HDF5's C API (no exceptions to convert;
// every call's status is checked and turned into an Error at this boundary).
#include "core/experiment.h"

#include <QCoreApplication>
#include <QFile>
#include <QStringList>
#include <QFileInfo>

#include <hdf5.h>

#include <algorithm>
#include <cstdio>
#include <limits>
#include <cstring>
#include <string>
#include <vector>

namespace bitsmith::core {

namespace {

const char *const kMagic = "bitsmith-experiment";

// HDF5 prints a stack of errors to stderr by default; Bitsmith reports its own Error instead.
void silenceHdf5()
{
    static const bool done = [] {
        H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
        return true;
    }();
    (void)done;
}

// Closes an HDF5 handle when it goes out of scope.
class Handle
{
public:
    using Closer = herr_t (*)(hid_t);
    Handle(hid_t id, Closer closer) : m_id(id), m_closer(closer) {}
    ~Handle()
    {
        if (m_id >= 0)
            m_closer(m_id);
    }
    Handle(const Handle &) = delete;
    Handle &operator=(const Handle &) = delete;
    hid_t get() const { return m_id; }
    bool valid() const { return m_id >= 0; }

private:
    hid_t m_id;
    Closer m_closer;
};

bool writeStringAttr(hid_t obj, const char *name, const QString &value)
{
    const QByteArray utf8 = value.toUtf8();
    Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(type.get(), static_cast<size_t>(utf8.size()) + 1); // with the terminating NUL
    H5Tset_cset(type.get(), H5T_CSET_UTF8);
    Handle space(H5Screate(H5S_SCALAR), H5Sclose);
    Handle attr(H5Acreate2(obj, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    if (!attr.valid())
        return false;
    return H5Awrite(attr.get(), type.get(), utf8.constData()) >= 0; // QByteArray data is NUL-terminated
}

template<typename T>
bool writeScalarAttr(hid_t obj, const char *name, hid_t memType, T value)
{
    Handle space(H5Screate(H5S_SCALAR), H5Sclose);
    Handle attr(H5Acreate2(obj, name, memType, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
    return attr.valid() && H5Awrite(attr.get(), memType, &value) >= 0;
}

bool readStringAttr(hid_t obj, const char *name, QString &out)
{
    if (H5Aexists(obj, name) <= 0)
        return false;
    Handle attr(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
    if (!attr.valid())
        return false;
    Handle type(H5Aget_type(attr.get()), H5Tclose);
    if (!type.valid() || H5Tget_class(type.get()) != H5T_STRING || H5Tis_variable_str(type.get()) > 0)
        return false;
    const size_t size = H5Tget_size(type.get());
    if (size == 0 || size > (1u << 28))
        return false;
    std::vector<char> buf(size + 1, '\0');
    Handle mem(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mem.get(), size);
    H5Tset_cset(mem.get(), H5Tget_cset(type.get())); // HDF5 does not convert between character sets
    if (H5Aread(attr.get(), mem.get(), buf.data()) < 0)
        return false;
    out = QString::fromUtf8(buf.data(), static_cast<qsizetype>(strnlen(buf.data(), size)));
    return true;
}

template<typename T>
bool readScalarAttr(hid_t obj, const char *name, hid_t memType, T &out)
{
    if (H5Aexists(obj, name) <= 0)
        return false;
    Handle attr(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
    if (!attr.valid())
        return false;
    Handle space(H5Aget_space(attr.get()), H5Sclose);
    if (H5Sget_simple_extent_npoints(space.get()) != 1)
        return false;
    return H5Aread(attr.get(), memType, &out) >= 0;
}

template<typename T>
bool writeDataset(hid_t loc, const char *name, hid_t fileType, hid_t memType, const std::vector<T> &data,
                  std::vector<hsize_t> dims)
{
    Handle space(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose);
    Handle set(H5Dcreate2(loc, name, fileType, space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose);
    if (!set.valid())
        return false;
    return data.empty() || H5Dwrite(set.get(), memType, H5S_ALL, H5S_ALL, H5P_DEFAULT, data.data()) >= 0;
}

// Reads a dataset whose shape must be `dims`; empty string on success, else what is wrong.
template<typename T>
QString readDataset(hid_t loc, const char *name, hid_t memType, const std::vector<hsize_t> &dims, std::vector<T> &out)
{
    if (H5Lexists(loc, name, H5P_DEFAULT) <= 0)
        return QStringLiteral("dataset '%1' is missing").arg(QLatin1String(name));
    Handle set(H5Dopen2(loc, name, H5P_DEFAULT), H5Dclose);
    if (!set.valid())
        return QStringLiteral("dataset '%1' cannot be opened").arg(QLatin1String(name));
    Handle space(H5Dget_space(set.get()), H5Sclose);
    const int rank = H5Sget_simple_extent_ndims(space.get());
    std::vector<hsize_t> got(static_cast<std::size_t>(std::max(rank, 0)));
    if (rank != static_cast<int>(dims.size()) || H5Sget_simple_extent_dims(space.get(), got.data(), nullptr) < 0
        || got != dims)
        return QStringLiteral("dataset '%1' has the wrong shape").arg(QLatin1String(name));
    hsize_t n = 1;
    for (hsize_t d : dims)
        n *= d;
    out.resize(static_cast<std::size_t>(n));
    if (n > 0 && H5Dread(set.get(), memType, H5S_ALL, H5S_ALL, H5P_DEFAULT, out.data()) < 0)
        return QStringLiteral("dataset '%1' cannot be read (truncated file?)").arg(QLatin1String(name));
    return {};
}

struct Matrix
{
    const char *name;
    std::vector<double> SensitivityResult::*member;
};

const Matrix kMatrices[] = {
    {"bytes", &SensitivityResult::bytes},
    {"deltaLoss", &SensitivityResult::deltaLoss},
    {"kl", &SensitivityResult::kl},
    {"perplexity", &SensitivityResult::perplexity},
    {"relativeError", &SensitivityResult::relativeError},
    {"hessianError", &SensitivityResult::hessianError},
    {"activationError", &SensitivityResult::activationError},
    {"hutchinsonError", &SensitivityResult::hutchinsonError}, // schema 2
};

Expected<void> writeFile(const SensitivityResult &r, const QString &path)
{
    const QByteArray native = QFile::encodeName(path);
    Handle file(H5Fcreate(native.constData(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
    if (!file.valid())
        return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot create the experiment file")).inFile(path)
                              .withHint(QStringLiteral("check that the folder exists and is writable")));
    const hid_t f = file.get();
    const std::size_t L = r.layers.size(), S = r.settings.size();
    bool ok = writeStringAttr(f, "magic", QString::fromLatin1(kMagic))
              && writeScalarAttr<int>(f, "schemaVersion", H5T_NATIVE_INT, kExperimentSchemaVersion)
              && writeStringAttr(f, "modelHash", r.modelHash) && writeStringAttr(f, "modelFolder", r.modelFolder)
              && writeStringAttr(f, "evalText", r.evalText) && writeStringAttr(f, "calibText", r.calibText)
              && writeScalarAttr<int>(f, "ctx", H5T_NATIVE_INT, r.ctx)
              && writeScalarAttr<int>(f, "windows", H5T_NATIVE_INT, r.windows)
              && writeScalarAttr<int>(f, "calibSequences", H5T_NATIVE_INT, r.calibSequences)
              && writeScalarAttr<int>(f, "calibLength", H5T_NATIVE_INT, r.calibLength)
              && writeScalarAttr<unsigned long long>(f, "seed", H5T_NATIVE_ULLONG, r.seed)
              && writeScalarAttr<double>(f, "baseLoss", H5T_NATIVE_DOUBLE, r.baseLoss)
              && writeScalarAttr<double>(f, "basePerplexity", H5T_NATIVE_DOUBLE, r.basePerplexity)
              && writeScalarAttr<double>(f, "seconds", H5T_NATIVE_DOUBLE, r.seconds)
              && writeScalarAttr<double>(f, "measureSeconds", H5T_NATIVE_DOUBLE, r.measureSeconds)
              && writeScalarAttr<double>(f, "naiveSecondsEstimate", H5T_NATIVE_DOUBLE, r.naiveSecondsEstimate)
              && writeScalarAttr<double>(f, "naiveScriptSecondsEstimate", H5T_NATIVE_DOUBLE, r.naiveScriptSecondsEstimate)
              && writeScalarAttr<double>(f, "naiveTimingSeconds", H5T_NATIVE_DOUBLE, r.naiveTimingSeconds)
              && writeScalarAttr<double>(f, "quantizeSeconds", H5T_NATIVE_DOUBLE, r.quantizeSeconds)
              && writeScalarAttr<double>(f, "hutchinsonSeconds", H5T_NATIVE_DOUBLE, r.hutchinsonSeconds)
              && writeScalarAttr<int>(f, "hutchinsonProbes", H5T_NATIVE_INT, r.hutchinsonProbes);
    Handle group(H5Gcreate2(f, "sensitivity", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
    ok = ok && group.valid();
    if (ok) {
        QStringList labels;
        for (const SensitivitySetting &s : r.settings)
            labels << s.label();
        QStringList layers(r.layers.begin(), r.layers.end());
        ok = writeStringAttr(group.get(), "layers", layers.join(QLatin1Char('\n')))
             && writeStringAttr(group.get(), "settings", labels.join(QLatin1Char('\n')));
        std::vector<long long> params(r.parameters.begin(), r.parameters.end());
        ok = ok && writeDataset(group.get(), "parameters", H5T_STD_I64LE, H5T_NATIVE_LLONG, params, {L});
        std::vector<double> trace = r.hutchinsonTrace;
        trace.resize(L, std::numeric_limits<double>::quiet_NaN());
        ok = ok && writeDataset(group.get(), "hutchinsonTrace", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, trace, {L});
        for (const Matrix &m : kMatrices) {
            std::vector<double> v = r.*(m.member);
            if (v.empty() && m.member == &SensitivityResult::hutchinsonError)
                v.assign(L * S, std::numeric_limits<double>::quiet_NaN());
            if (v.size() != L * S)
                return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("matrix '%1' has %2 values, expected %3")
                                                                       .arg(QLatin1String(m.name)).arg(v.size()).arg(L * S)));
            ok = ok && writeDataset(group.get(), m.name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, v, {L, S});
        }
    }
    if (!ok || H5Fflush(f, H5F_SCOPE_GLOBAL) < 0)
        return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot write the experiment file")).inFile(path)
                              .withHint(QStringLiteral("check the free disk space")));
    return {};
}

} // namespace

Expected<void> saveSensitivityExperiment(const SensitivityResult &result, const QString &path)
{
    silenceHdf5();
    const QString tmp = path + QStringLiteral(".tmp-%1").arg(QCoreApplication::applicationPid());
    // The file handle is closed at the end of writeFile, before the rename.
    if (auto ok = writeFile(result, tmp); !ok) {
        QFile::remove(tmp);
        return ok;
    }
    if (std::rename(QFile::encodeName(tmp).constData(), QFile::encodeName(path).constData()) != 0) {
        QFile::remove(tmp);
        return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot move the new experiment file into place")).inFile(path));
    }
    return {};
}

Expected<SensitivityResult> loadSensitivityExperiment(const QString &path)
{
    silenceHdf5();
    if (!QFileInfo(path).isFile())
        return unexpected(fail(ErrorCode::Io, QStringLiteral("experiment file not found")).inFile(path)
                              .withHint(QStringLiteral("run `bitsmith-cli sensitivity ... --out %1` first").arg(path)));
    const QByteArray native = QFile::encodeName(path);
    auto format = [&](const QString &what) {
        return unexpected(fail(ErrorCode::Format, QStringLiteral("not a valid Bitsmith experiment: %1").arg(what)).inFile(path)
                              .withHint(QStringLiteral("the file is truncated or corrupt; run the sensitivity analysis again")));
    };
    if (H5Fis_hdf5(native.constData()) <= 0)
        return format(QStringLiteral("not an HDF5 file (or truncated)"));
    Handle file(H5Fopen(native.constData(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
    if (!file.valid())
        return format(QStringLiteral("HDF5 cannot open it"));
    const hid_t f = file.get();
    SensitivityResult r;
    QString magic;
    if (!readStringAttr(f, "magic", magic) || magic != QLatin1String(kMagic))
        return format(QStringLiteral("no '%1' magic attribute").arg(QLatin1String(kMagic)));
    int version = 0;
    if (!readScalarAttr(f, "schemaVersion", H5T_NATIVE_INT, version))
        return format(QStringLiteral("no schemaVersion"));
    if (version < 1 || version > kExperimentSchemaVersion)
        return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("experiment schema version %1; this Bitsmith reads %2")
                                                           .arg(version).arg(kExperimentSchemaVersion))
                              .inFile(path).withHint(QStringLiteral("open it with a newer Bitsmith")));
    unsigned long long seed = 0;
    const bool attrsOk = readStringAttr(f, "modelHash", r.modelHash) && readStringAttr(f, "modelFolder", r.modelFolder)
                         && readStringAttr(f, "evalText", r.evalText) && readStringAttr(f, "calibText", r.calibText)
                         && readScalarAttr(f, "ctx", H5T_NATIVE_INT, r.ctx)
                         && readScalarAttr(f, "windows", H5T_NATIVE_INT, r.windows)
                         && readScalarAttr(f, "calibSequences", H5T_NATIVE_INT, r.calibSequences)
                         && readScalarAttr(f, "calibLength", H5T_NATIVE_INT, r.calibLength)
                         && readScalarAttr(f, "seed", H5T_NATIVE_ULLONG, seed)
                         && readScalarAttr(f, "baseLoss", H5T_NATIVE_DOUBLE, r.baseLoss)
                         && readScalarAttr(f, "basePerplexity", H5T_NATIVE_DOUBLE, r.basePerplexity)
                         && readScalarAttr(f, "seconds", H5T_NATIVE_DOUBLE, r.seconds)
                         && readScalarAttr(f, "measureSeconds", H5T_NATIVE_DOUBLE, r.measureSeconds)
                         && readScalarAttr(f, "naiveSecondsEstimate", H5T_NATIVE_DOUBLE, r.naiveSecondsEstimate);
    if (!attrsOk)
        return format(QStringLiteral("missing or unreadable attributes"));
    if (version >= 2
        && !(readScalarAttr(f, "naiveScriptSecondsEstimate", H5T_NATIVE_DOUBLE, r.naiveScriptSecondsEstimate)
             && readScalarAttr(f, "naiveTimingSeconds", H5T_NATIVE_DOUBLE, r.naiveTimingSeconds)
             && readScalarAttr(f, "quantizeSeconds", H5T_NATIVE_DOUBLE, r.quantizeSeconds)
             && readScalarAttr(f, "hutchinsonSeconds", H5T_NATIVE_DOUBLE, r.hutchinsonSeconds)
             && readScalarAttr(f, "hutchinsonProbes", H5T_NATIVE_INT, r.hutchinsonProbes)))
        return format(QStringLiteral("missing or unreadable attributes (schema 2)"));
    r.seed = seed;
    if (H5Lexists(f, "sensitivity", H5P_DEFAULT) <= 0)
        return format(QStringLiteral("no 'sensitivity' group"));
    Handle group(H5Gopen2(f, "sensitivity", H5P_DEFAULT), H5Gclose);
    if (!group.valid())
        return format(QStringLiteral("the 'sensitivity' group cannot be opened"));
    QString layers, labels;
    if (!readStringAttr(group.get(), "layers", layers) || !readStringAttr(group.get(), "settings", labels))
        return format(QStringLiteral("no layer / setting names"));
    for (const QString &l : layers.split(QLatin1Char('\n'), Qt::SkipEmptyParts))
        r.layers.push_back(l);
    auto settings = parseSensitivitySettings(labels.split(QLatin1Char('\n')).join(QLatin1Char(',')));
    if (!settings)
        return format(QStringLiteral("bad setting labels (%1)").arg(settings.error().message));
    r.settings = std::move(*settings);
    const hsize_t L = r.layers.size(), S = r.settings.size();
    std::vector<long long> params;
    if (QString e = readDataset(group.get(), "parameters", H5T_NATIVE_LLONG, {L}, params); !e.isEmpty())
        return format(e);
    r.parameters.assign(params.begin(), params.end());
    for (const Matrix &m : kMatrices) {
        if (version < 2 && m.member == &SensitivityResult::hutchinsonError) {
            r.hutchinsonError.assign(L * S, std::numeric_limits<double>::quiet_NaN());
            continue;
        }
        if (QString e = readDataset(group.get(), m.name, H5T_NATIVE_DOUBLE, {L, S}, r.*(m.member)); !e.isEmpty())
            return format(e);
    }
    if (version >= 2) {
        if (QString e = readDataset(group.get(), "hutchinsonTrace", H5T_NATIVE_DOUBLE, {L}, r.hutchinsonTrace); !e.isEmpty())
            return format(e);
    } else {
        r.hutchinsonTrace.assign(L, std::numeric_limits<double>::quiet_NaN());
    }
    return r;
}

} // namespace bitsmith::core
