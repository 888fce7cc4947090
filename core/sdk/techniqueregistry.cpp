// techniqueregistry.cpp: plugin discovery, metadata and API-version checks.
#include "techniqueregistry.h"

#include <QCoreApplication>
#include <QDir>
#include <QFileInfo>
#include <QJsonObject>

namespace bitsmith::core {

TechniqueRegistry::TechniqueRegistry()
{
    scan(defaultSearchPath());
}

TechniqueRegistry::TechniqueRegistry(const QStringList &folders)
{
    scan(folders);
}

TechniqueRegistry::~TechniqueRegistry() = default; // loaders keep the libraries loaded

QStringList TechniqueRegistry::defaultSearchPath()
{
    QStringList folders;
    const QString env = qEnvironmentVariable("BITSMITH_PLUGIN_PATH");
    for (const QString &f : env.split(QLatin1Char(':'), Qt::SkipEmptyParts))
        folders << f;
    // An installed program uses its install's plugins; one run from the build tree, the build's.
    const QString installed = QCoreApplication::instance()
                                  ? QCoreApplication::applicationDirPath() + QStringLiteral("/../lib/bitsmith/plugins")
                                  : QString();
    if (!installed.isEmpty() && QDir(installed).exists())
        folders << QDir(installed).absolutePath();
#ifdef BITSMITH_PLUGIN_BUILD_DIR
    else
        folders << QStringLiteral(BITSMITH_PLUGIN_BUILD_DIR);
#endif
    return folders;
}

void TechniqueRegistry::scan(const QStringList &folders)
{
    QStringList seen;
    for (const QString &folder : folders) {
        const QDir dir(folder);
        if (!dir.exists())
            continue;
        for (const QFileInfo &fi : dir.entryInfoList({QStringLiteral("*.so")}, QDir::Files, QDir::Name)) {
            const QString canonical = fi.canonicalFilePath();
            if (seen.contains(canonical))
                continue;
            seen << canonical;
            tryLoad(fi.absoluteFilePath());
        }
    }
}

void TechniqueRegistry::tryLoad(const QString &file)
{
    auto loader = std::make_unique<QPluginLoader>(file);
    // metaData() reads the embedded JSON without running the library's code.
    const QJsonObject meta = loader->metaData();
    if (meta.isEmpty()) {
        m_problems.push_back({file, QStringLiteral("not a Qt plugin (no plugin metadata): %1; remove it from the plugin folder")
                                        .arg(loader->errorString())});
        return;
    }
    if (meta.value(QLatin1String("IID")).toString() != QLatin1String(BITSMITH_TECHNIQUE_IID)) {
        m_problems.push_back({file, QStringLiteral("plugin interface '%1' is not %2")
                                        .arg(meta.value(QLatin1String("IID")).toString(), QLatin1String(BITSMITH_TECHNIQUE_IID))});
        return;
    }
    const QJsonObject data = meta.value(QLatin1String("MetaData")).toObject();
    PluginInfo info;
    info.file = file;
    info.id = data.value(QLatin1String("id")).toString();
    info.displayName = data.value(QLatin1String("name")).toString();
    info.category = data.value(QLatin1String("category")).toString();
    info.sdkVersion = data.value(QLatin1String("sdkVersion")).toInt(0);
    if (info.id.isEmpty() || info.displayName.isEmpty() || info.sdkVersion == 0) {
        m_problems.push_back({file, QStringLiteral("plugin metadata lacks 'id', 'name' or 'sdkVersion'; rebuild it with bitsmith_add_plugin()")});
        return;
    }
    if (info.sdkVersion != kSdkApiVersion) {
        m_problems.push_back({file, QStringLiteral("plugin '%1' was built for SDK API version %2, but this Bitsmith has version %3; "
                                                   "rebuild the plugin against this Bitsmith")
                                        .arg(info.id)
                                        .arg(info.sdkVersion)
                                        .arg(kSdkApiVersion)});
        return;
    }
    if (m_loaders.count(info.id)) {
        m_problems.push_back({file, QStringLiteral("technique '%1' is already provided by %2; this copy is ignored")
                                        .arg(info.id, m_loaders.at(info.id)->fileName())});
        return;
    }
    if (!loader->load()) {
        m_problems.push_back({file, QStringLiteral("cannot load plugin '%1': %2").arg(info.id, loader->errorString())});
        return;
    }
    if (!qobject_cast<TechniqueFactory *>(loader->instance())) {
        m_problems.push_back({file, QStringLiteral("plugin '%1' does not provide a TechniqueFactory").arg(info.id)});
        loader->unload();
        return;
    }
    m_plugins.push_back(info);
    m_loaders.emplace(info.id, std::move(loader));
}

bool TechniqueRegistry::contains(const QString &id) const
{
    return m_loaders.count(id) != 0;
}

QStringList TechniqueRegistry::ids() const
{
    QStringList out;
    for (const auto &[id, loader] : m_loaders)
        out << id;
    return out;
}

Expected<std::unique_ptr<Technique>> TechniqueRegistry::create(const QString &id) const
{
    const auto it = m_loaders.find(id);
    if (it == m_loaders.end())
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("unknown technique '%1'").arg(id))
                              .forParameter(QStringLiteral("technique"))
                              .withHint(ids().isEmpty() ? QStringLiteral("no technique plugins were found; set BITSMITH_PLUGIN_PATH")
                                                        : QStringLiteral("available: %1").arg(ids().join(QStringLiteral(", ")))));
    auto *factory = qobject_cast<TechniqueFactory *>(it->second->instance());
    std::unique_ptr<Technique> t = factory->create();
    if (!t)
        return unexpected(fail(ErrorCode::Internal, QStringLiteral("plugin '%1' returned no technique").arg(id))
                              .inFile(it->second->fileName()));
    return t;
}

} // namespace bitsmith::core
