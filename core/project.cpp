// project.cpp: the project file through HDF5's C API. The sensitivity part is written and read by
// core/experiment.cpp (so a project is an experiment file too); this file adds /project.
#include "core/project.h"

#include "core/experiment.h" // saveSensitivityExperiment, loadSensitivityExperiment

#include <QCoreApplication>
#include <QFile>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>

#include <hdf5.h>

#include <cstdio>
#include <cstring>

namespace bitsmith::core {

namespace {

const char *const kProjectMagic = "bitsmith-project";

// Closes an HDF5 handle when it goes out of scope.
struct Handle
{
    hid_t id;
    herr_t (*closer)(hid_t);
    ~Handle()
    {
        if (id >= 0)
            closer(id);
    }
    bool valid() const { return id >= 0; }
};

void silenceHdf5()
{
    static const bool done = [] {
        H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
        return true;
    }();
    (void)done;
}

QJsonObject recipeJson(const Recipe &r)
{
    return QJsonDocument::fromJson(r.toJson()).object();
}

Expected<Recipe> recipeFrom(const QJsonValue &v, const QString &path, const QString &where)
{
    if (!v.isObject())
        return unexpected(fail(ErrorCode::Format, QStringLiteral("project: %1 is not a recipe object").arg(where)).inFile(path));
    auto r = Recipe::fromJson(QJsonDocument(v.toObject()).toJson(QJsonDocument::Compact), path);
    if (!r)
        return unexpected(std::move(r.error()).forParameter(where));
    return r;
}

QByteArray stateJson(const Project &p)
{
    QJsonArray saved;
    for (const SavedConfiguration &s : p.saved)
        saved.append(QJsonObject{{QStringLiteral("name"), s.name},
                                 {QStringLiteral("recipe"), recipeJson(s.recipe)},
                                 {QStringLiteral("bytes"), s.bytes},
                                 {QStringLiteral("bitsPerWeight"), s.bitsPerWeight},
                                 {QStringLiteral("predicted"), s.predicted},
                                 {QStringLiteral("created"), s.created.toString(Qt::ISODateWithMs)}});
    QJsonArray measured;
    for (const MeasuredPoint &m : p.measured)
        measured.append(QJsonObject{{QStringLiteral("kind"), m.kind},
                                    {QStringLiteral("label"), m.label},
                                    {QStringLiteral("bytes"), m.bytes},
                                    {QStringLiteral("bitsPerWeight"), m.bitsPerWeight},
                                    {QStringLiteral("predicted"), m.predicted},
                                    {QStringLiteral("kl"), m.kl},
                                    {QStringLiteral("deltaLoss"), m.deltaLoss},
                                    {QStringLiteral("perplexity"), m.perplexity},
                                    {QStringLiteral("recipe"), recipeJson(m.recipe)}});
    const QJsonObject o{{QStringLiteral("modelReference"), p.modelReference},
                        {QStringLiteral("recipe"), recipeJson(p.recipe)},
                        {QStringLiteral("savedConfigurations"), saved},
                        {QStringLiteral("measuredPoints"), measured},
                        {QStringLiteral("hasSensitivity"), p.sensitivity.has_value()}};
    return QJsonDocument(o).toJson(QJsonDocument::Compact);
}

bool writeProjectGroup(hid_t file, const QByteArray &state)
{
    Handle group{H5Gcreate2(file, "project", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose};
    if (!group.valid())
        return false;
    {
        Handle type{H5Tcopy(H5T_C_S1), H5Tclose};
        H5Tset_size(type.id, std::strlen(kProjectMagic) + 1);
        Handle space{H5Screate(H5S_SCALAR), H5Sclose};
        Handle attr{H5Acreate2(group.id, "magic", type.id, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose};
        if (!attr.valid() || H5Awrite(attr.id, type.id, kProjectMagic) < 0)
            return false;
    }
    {
        const int version = kProjectSchemaVersion;
        Handle space{H5Screate(H5S_SCALAR), H5Sclose};
        Handle attr{H5Acreate2(group.id, "schemaVersion", H5T_STD_I32LE, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose};
        if (!attr.valid() || H5Awrite(attr.id, H5T_NATIVE_INT, &version) < 0)
            return false;
    }
    const hsize_t n = static_cast<hsize_t>(state.size());
    Handle space{H5Screate_simple(1, &n, nullptr), H5Sclose};
    Handle set{H5Dcreate2(group.id, "state", H5T_STD_U8LE, space.id, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose};
    return set.valid() && H5Dwrite(set.id, H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, state.constData()) >= 0
           && H5Fflush(file, H5F_SCOPE_GLOBAL) >= 0;
}

} // namespace

Expected<void> saveProject(const Project &project, const QString &path)
{
    silenceHdf5();
    const QString tmp = path + QStringLiteral(".tmp-project-%1").arg(QCoreApplication::applicationPid());
    auto ioError = [&](const QString &what) {
        QFile::remove(tmp);
        return unexpected(fail(ErrorCode::Io, what).inFile(path)
                              .withHint(QStringLiteral("check that the folder exists, is writable and has free space")));
    };
    // The sensitivity part first (its own atomic write into our temporary name), then /project.
    if (project.sensitivity) {
        if (auto ok = saveSensitivityExperiment(*project.sensitivity, tmp); !ok)
            return ioError(QStringLiteral("cannot write the project's sensitivity results: %1").arg(ok.error().message));
    }
    {
        const QByteArray native = QFile::encodeName(tmp);
        Handle file{project.sensitivity ? H5Fopen(native.constData(), H5F_ACC_RDWR, H5P_DEFAULT)
                                        : H5Fcreate(native.constData(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT),
                    H5Fclose};
        if (!file.valid())
            return ioError(QStringLiteral("cannot create the project file"));
        if (!writeProjectGroup(file.id, stateJson(project)))
            return ioError(QStringLiteral("cannot write the project file"));
    } // closed before the rename
    if (std::rename(QFile::encodeName(tmp).constData(), QFile::encodeName(path).constData()) != 0)
        return ioError(QStringLiteral("cannot move the new project file into place"));
    return {};
}

bool isProjectFile(const QString &path)
{
    silenceHdf5();
    const QByteArray native = QFile::encodeName(path);
    if (!QFileInfo(path).isFile() || H5Fis_hdf5(native.constData()) <= 0)
        return false;
    Handle file{H5Fopen(native.constData(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose};
    return file.valid() && H5Lexists(file.id, "project", H5P_DEFAULT) > 0;
}

Expected<Project> loadProject(const QString &path)
{
    silenceHdf5();
    if (!QFileInfo(path).isFile())
        return unexpected(fail(ErrorCode::Io, QStringLiteral("project file not found")).inFile(path));
    auto format = [&](const QString &what) {
        return unexpected(fail(ErrorCode::Format, QStringLiteral("not a valid Bitsmith project: %1").arg(what)).inFile(path)
                              .withHint(QStringLiteral("the file is truncated or corrupt; an autosaved copy may exist")));
    };
    const QByteArray native = QFile::encodeName(path);
    if (H5Fis_hdf5(native.constData()) <= 0)
        return format(QStringLiteral("not an HDF5 file"));
    QByteArray state;
    {
        Handle file{H5Fopen(native.constData(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose};
        if (!file.valid())
            return format(QStringLiteral("cannot be opened (truncated?)"));
        if (H5Lexists(file.id, "project", H5P_DEFAULT) <= 0)
            return format(QStringLiteral("no /project group (an experiment file? open it as an experiment)"));
        Handle group{H5Gopen2(file.id, "project", H5P_DEFAULT), H5Gclose};
        if (!group.valid() || H5Aexists(group.id, "magic") <= 0)
            return format(QStringLiteral("no project magic"));
        {
            Handle attr{H5Aopen(group.id, "magic", H5P_DEFAULT), H5Aclose};
            Handle type{H5Aget_type(attr.id), H5Tclose};
            if (!type.valid() || H5Tget_class(type.id) != H5T_STRING || H5Tis_variable_str(type.id) > 0)
                return format(QStringLiteral("bad magic"));
            const size_t size = H5Tget_size(type.id);
            if (size == 0 || size > 256)
                return format(QStringLiteral("bad magic"));
            QByteArray magic(static_cast<qsizetype>(size), '\0');
            Handle mem{H5Tcopy(H5T_C_S1), H5Tclose};
            H5Tset_size(mem.id, size);
            if (H5Aread(attr.id, mem.id, magic.data()) < 0 || QByteArray(magic.constData()) != kProjectMagic)
                return format(QStringLiteral("bad magic"));
        }
        int version = 0;
        {
            Handle attr{H5Aopen(group.id, "schemaVersion", H5P_DEFAULT), H5Aclose};
            if (!attr.valid() || H5Aread(attr.id, H5T_NATIVE_INT, &version) < 0)
                return format(QStringLiteral("no schemaVersion"));
        }
        if (version > kProjectSchemaVersion)
            return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("project schema version %1 is newer than this Bitsmith's %2")
                                                              .arg(version).arg(kProjectSchemaVersion))
                                  .inFile(path).withHint(QStringLiteral("open it with a newer Bitsmith")));
        Handle set{H5Dopen2(group.id, "state", H5P_DEFAULT), H5Dclose};
        if (!set.valid())
            return format(QStringLiteral("no /project/state"));
        Handle space{H5Dget_space(set.id), H5Sclose};
        hsize_t n = 0;
        if (H5Sget_simple_extent_ndims(space.id) != 1 || H5Sget_simple_extent_dims(space.id, &n, nullptr) < 0)
            return format(QStringLiteral("bad /project/state shape"));
        // Bounded by the file's own size: a corrupt header never makes us allocate more.
        if (n > static_cast<hsize_t>(QFileInfo(path).size()))
            return format(QStringLiteral("/project/state larger than the file"));
        state.resize(static_cast<qsizetype>(n));
        if (n > 0 && H5Dread(set.id, H5T_NATIVE_UCHAR, H5S_ALL, H5S_ALL, H5P_DEFAULT, state.data()) < 0)
            return format(QStringLiteral("cannot read /project/state (truncated?)"));
    }
    QJsonParseError err;
    const QJsonDocument doc = QJsonDocument::fromJson(state, &err);
    if (err.error != QJsonParseError::NoError || !doc.isObject())
        return format(QStringLiteral("/project/state is not JSON (%1)").arg(err.errorString()));
    const QJsonObject o = doc.object();
    Project p;
    p.modelReference = o.value(QStringLiteral("modelReference")).toString();
    auto recipe = recipeFrom(o.value(QStringLiteral("recipe")), path, QStringLiteral("recipe"));
    if (!recipe)
        return unexpected(recipe.error());
    p.recipe = std::move(*recipe);
    for (const QJsonValue &v : o.value(QStringLiteral("savedConfigurations")).toArray()) {
        const QJsonObject s = v.toObject();
        auto r = recipeFrom(s.value(QStringLiteral("recipe")), path, QStringLiteral("savedConfigurations"));
        if (!r)
            return unexpected(r.error());
        p.saved.push_back({s.value(QStringLiteral("name")).toString(), std::move(*r),
                           s.value(QStringLiteral("bytes")).toDouble(), s.value(QStringLiteral("bitsPerWeight")).toDouble(),
                           s.value(QStringLiteral("predicted")).toDouble(),
                           QDateTime::fromString(s.value(QStringLiteral("created")).toString(), Qt::ISODateWithMs)});
    }
    for (const QJsonValue &v : o.value(QStringLiteral("measuredPoints")).toArray()) {
        const QJsonObject m = v.toObject();
        auto r = recipeFrom(m.value(QStringLiteral("recipe")), path, QStringLiteral("measuredPoints"));
        if (!r)
            return unexpected(r.error());
        MeasuredPoint mp;
        mp.kind = m.value(QStringLiteral("kind")).toString();
        mp.label = m.value(QStringLiteral("label")).toString();
        mp.bytes = m.value(QStringLiteral("bytes")).toDouble();
        mp.bitsPerWeight = m.value(QStringLiteral("bitsPerWeight")).toDouble();
        mp.predicted = m.value(QStringLiteral("predicted")).toDouble();
        mp.kl = m.value(QStringLiteral("kl")).toDouble();
        mp.deltaLoss = m.value(QStringLiteral("deltaLoss")).toDouble();
        mp.perplexity = m.value(QStringLiteral("perplexity")).toDouble();
        mp.recipe = std::move(*r);
        p.measured.push_back(std::move(mp));
    }
    if (o.value(QStringLiteral("hasSensitivity")).toBool()) {
        auto exp = loadSensitivityExperiment(path);
        if (!exp)
            return unexpected(exp.error());
        p.sensitivity = std::move(*exp);
    }
    return p;
}

} // namespace bitsmith::core
