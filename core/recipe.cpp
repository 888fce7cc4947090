// recipe.cpp: parsing, validation, resolution against a model, and saving of recipes.
#include "recipe.h"

#include "core/sdk/techniqueregistry.h"

#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QRegularExpression>
#include <QSaveFile>

namespace bitsmith::core {

QString RecipeEntry::selector() const
{
    if (!name.isEmpty())
        return name;
    if (!match.isEmpty())
        return match;
    return regex;
}

namespace {

Error recipeError(const QString &path, const QString &msg, const QString &parameter, const QString &hint)
{
    return fail(ErrorCode::Format, msg).inFile(path).forParameter(parameter).withHint(hint);
}

// Reads bits / groupSize / symmetric / technique / parameters from an object (defaults or entry).
Expected<void> readSettings(const QJsonObject &o, const QString &path, const QString &where,
                            std::optional<QString> &technique, std::optional<int> &bits,
                            std::optional<int> &groupSize, std::optional<bool> &symmetric, ParameterValues &params)
{
    auto intField = [&](const char *key, std::optional<int> &out) -> Expected<void> {
        if (!o.contains(QLatin1String(key)))
            return {};
        const QJsonValue v = o.value(QLatin1String(key));
        if (!v.isDouble() || v.toDouble() != static_cast<double>(v.toInt()))
            return unexpected(recipeError(path, QStringLiteral("%1: '%2' must be an integer").arg(where, QLatin1String(key)),
                                          QLatin1String(key), QStringLiteral("e.g. \"%1\": 4").arg(QLatin1String(key))));
        out = v.toInt();
        return {};
    };
    if (auto r = intField("bits", bits); !r)
        return r;
    if (auto r = intField("groupSize", groupSize); !r)
        return r;
    if (bits && (*bits < 2 || *bits > 8))
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("%1: bits %2 out of range").arg(where).arg(*bits))
                              .inFile(path)
                              .forParameter(QStringLiteral("bits"))
                              .withHint(QStringLiteral("use 2 to 8 bits")));
    if (groupSize && *groupSize < -1)
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("%1: groupSize %2 is invalid").arg(where).arg(*groupSize))
                              .inFile(path)
                              .forParameter(QStringLiteral("groupSize"))
                              .withHint(QStringLiteral("use a positive group size, 0 (per channel) or -1 (per tensor)")));
    if (o.contains(QLatin1String("symmetric"))) {
        if (!o.value(QLatin1String("symmetric")).isBool())
            return unexpected(recipeError(path, QStringLiteral("%1: 'symmetric' must be true or false").arg(where),
                                          QStringLiteral("symmetric"), QStringLiteral("e.g. \"symmetric\": false")));
        symmetric = o.value(QLatin1String("symmetric")).toBool();
    }
    if (o.contains(QLatin1String("technique"))) {
        if (!o.value(QLatin1String("technique")).isString())
            return unexpected(recipeError(path, QStringLiteral("%1: 'technique' must be a string").arg(where),
                                          QStringLiteral("technique"), QStringLiteral("e.g. \"technique\": \"gptq\"")));
        technique = o.value(QLatin1String("technique")).toString();
    }
    if (o.contains(QLatin1String("parameters"))) {
        if (!o.value(QLatin1String("parameters")).isObject())
            return unexpected(recipeError(path, QStringLiteral("%1: 'parameters' must be an object").arg(where),
                                          QStringLiteral("parameters"), QStringLiteral("e.g. \"parameters\": {\"actOrder\": true}")));
        params = o.value(QLatin1String("parameters")).toObject().toVariantMap();
    }
    return {};
}

// Reads the optional "sparsity" (0 <= s < 1) and "pattern" ("unstructured" or "N:M").
Expected<void> readSparsity(const QJsonObject &o, const QString &path, const QString &where,
                            std::optional<double> &sparsity, std::optional<SparsityPattern> &pattern)
{
    if (o.contains(QLatin1String("sparsity"))) {
        const QJsonValue v = o.value(QLatin1String("sparsity"));
        if (!v.isDouble() || !(v.toDouble() >= 0.0 && v.toDouble() < 1.0))
            return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("%1: 'sparsity' must be a number from 0 to below 1").arg(where))
                                  .inFile(path)
                                  .forParameter(QStringLiteral("sparsity"))
                                  .withHint(QStringLiteral("the fraction of weights to remove, e.g. \"sparsity\": 0.5")));
        sparsity = v.toDouble();
    }
    if (o.contains(QLatin1String("pattern"))) {
        const QJsonValue v = o.value(QLatin1String("pattern"));
        const auto p = v.isString() ? SparsityPattern::parse(v.toString()) : std::nullopt;
        if (!p)
            return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("%1: 'pattern' must be \"unstructured\" or \"N:M\"").arg(where))
                                  .inFile(path)
                                  .forParameter(QStringLiteral("pattern"))
                                  .withHint(QStringLiteral("e.g. \"pattern\": \"2:4\" (0 < N < M <= 64)")));
        pattern = *p;
    }
    return {};
}

Expected<void> rejectUnknownKeys(const QJsonObject &o, const QStringList &known, const QString &path, const QString &where)
{
    for (auto it = o.begin(); it != o.end(); ++it)
        if (!known.contains(it.key()))
            return unexpected(recipeError(path, QStringLiteral("%1: unknown key '%2'").arg(where, it.key()), it.key(),
                                          QStringLiteral("known keys: %1").arg(known.join(QStringLiteral(", ")))));
    return {};
}

} // namespace

Expected<Recipe> Recipe::fromFile(const QString &path)
{
    QFile f(path);
    if (!f.open(QIODevice::ReadOnly))
        return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot open recipe: %1").arg(f.errorString()))
                              .inFile(path)
                              .withHint(QStringLiteral("check the path given to --recipe")));
    return fromJson(f.readAll(), path);
}

Expected<Recipe> Recipe::fromJson(const QByteArray &json, const QString &path)
{
    QJsonParseError perr;
    const QJsonDocument doc = QJsonDocument::fromJson(json, &perr);
    if (perr.error != QJsonParseError::NoError || !doc.isObject())
        return unexpected(recipeError(path, QStringLiteral("recipe is not a JSON object (%1 at offset %2)").arg(perr.errorString()).arg(perr.offset),
                                      QString(), QStringLiteral("a recipe is a JSON object with schemaVersion, defaults and layers")));
    const QJsonObject o = doc.object();
    if (auto r = rejectUnknownKeys(o, {QStringLiteral("schemaVersion"), QStringLiteral("model"), QStringLiteral("defaults"),
                                       QStringLiteral("layers"), QStringLiteral("calibration"), QStringLiteral("comment")},
                                   path, QStringLiteral("recipe"));
        !r)
        return unexpected(r.error());
    Recipe r;
    const QJsonValue version = o.value(QLatin1String("schemaVersion"));
    if (!version.isDouble())
        return unexpected(recipeError(path, QStringLiteral("missing 'schemaVersion'"), QStringLiteral("schemaVersion"),
                                      QStringLiteral("add \"schemaVersion\": %1").arg(kRecipeSchemaVersion)));
    r.schemaVersion = version.toInt();
    if (r.schemaVersion < 1 || r.schemaVersion > kRecipeSchemaVersion)
        return unexpected(fail(ErrorCode::Unsupported, QStringLiteral("recipe schemaVersion %1 is not supported (this Bitsmith reads up to %2)")
                                                           .arg(r.schemaVersion)
                                                           .arg(kRecipeSchemaVersion))
                              .inFile(path)
                              .forParameter(QStringLiteral("schemaVersion"))
                              .withHint(QStringLiteral("upgrade Bitsmith to read this recipe")));
    const QJsonObject model = o.value(QLatin1String("model")).toObject();
    r.modelArchitecture = model.value(QLatin1String("architecture")).toString();
    r.modelWeightsHash = model.value(QLatin1String("weightsHash")).toString();

    const QJsonObject defaults = o.value(QLatin1String("defaults")).toObject();
    if (auto k = rejectUnknownKeys(defaults, {QStringLiteral("technique"), QStringLiteral("bits"), QStringLiteral("groupSize"),
                                              QStringLiteral("symmetric"), QStringLiteral("parameters"),
                                              QStringLiteral("sparsity"), QStringLiteral("pattern")},
                                   path, QStringLiteral("defaults"));
        !k)
        return unexpected(k.error());
    std::optional<QString> technique;
    std::optional<int> bits, group;
    std::optional<bool> sym;
    if (auto s = readSettings(defaults, path, QStringLiteral("defaults"), technique, bits, group, sym, r.defaultParameters); !s)
        return unexpected(s.error());
    r.defaultTechnique = technique.value_or(QStringLiteral("rtn"));
    r.defaultFormat.bits = bits.value_or(4);
    r.defaultFormat.groupSize = group.value_or(128);
    r.defaultFormat.symmetric = sym.value_or(false);
    std::optional<double> sparsity;
    std::optional<SparsityPattern> pattern;
    if (auto s = readSparsity(defaults, path, QStringLiteral("defaults"), sparsity, pattern); !s)
        return unexpected(s.error());
    r.defaultSparsity = sparsity.value_or(0.0);
    r.defaultPattern = pattern.value_or(SparsityPattern{});

    const QJsonValue layers = o.value(QLatin1String("layers"));
    if (!layers.isUndefined() && !layers.isArray())
        return unexpected(recipeError(path, QStringLiteral("'layers' must be an array"), QStringLiteral("layers"),
                                      QStringLiteral("e.g. \"layers\": [{\"match\": \"*.down_proj\", \"bits\": 8}]")));
    int index = 0;
    for (const QJsonValue &v : layers.toArray()) {
        const QString where = QStringLiteral("layers[%1]").arg(index++);
        if (!v.isObject())
            return unexpected(recipeError(path, QStringLiteral("%1 must be an object").arg(where), QStringLiteral("layers"), {}));
        const QJsonObject e = v.toObject();
        if (auto k = rejectUnknownKeys(e, {QStringLiteral("name"), QStringLiteral("match"), QStringLiteral("regex"),
                                           QStringLiteral("technique"), QStringLiteral("bits"), QStringLiteral("groupSize"),
                                           QStringLiteral("symmetric"), QStringLiteral("skip"), QStringLiteral("parameters"),
                                           QStringLiteral("sparsity"), QStringLiteral("pattern")},
                                       path, where);
            !k)
            return unexpected(k.error());
        RecipeEntry entry;
        entry.name = e.value(QLatin1String("name")).toString();
        entry.match = e.value(QLatin1String("match")).toString();
        entry.regex = e.value(QLatin1String("regex")).toString();
        const int selectors = int(!entry.name.isEmpty()) + int(!entry.match.isEmpty()) + int(!entry.regex.isEmpty());
        if (selectors != 1)
            return unexpected(recipeError(path, QStringLiteral("%1 needs exactly one of 'name', 'match' or 'regex'").arg(where),
                                          QStringLiteral("name"), QStringLiteral("e.g. {\"match\": \"model.layers.*.mlp.*\", \"bits\": 3}")));
        if (!entry.regex.isEmpty() && !QRegularExpression(entry.regex).isValid())
            return unexpected(recipeError(path, QStringLiteral("%1: invalid regex '%2'").arg(where, entry.regex), QStringLiteral("regex"),
                                          QRegularExpression(entry.regex).errorString()));
        entry.skip = e.value(QLatin1String("skip")).toBool(false);
        if (auto s = readSettings(e, path, where, entry.technique, entry.bits, entry.groupSize, entry.symmetric, entry.parameters); !s)
            return unexpected(s.error());
        if (auto s = readSparsity(e, path, where, entry.sparsity, entry.pattern); !s)
            return unexpected(s.error());
        r.layers.push_back(std::move(entry));
    }

    const QJsonObject calib = o.value(QLatin1String("calibration")).toObject();
    r.calibration.text = calib.value(QLatin1String("text")).toString();
    r.calibration.sequences = calib.value(QLatin1String("sequences")).toInt(128);
    r.calibration.length = calib.value(QLatin1String("length")).toInt(0);
    r.calibration.seed = static_cast<quint64>(calib.value(QLatin1String("seed")).toDouble(0));
    if (r.calibration.sequences < 1 || r.calibration.length < 0)
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("calibration sequences must be >= 1 and length >= 0"))
                              .inFile(path)
                              .forParameter(QStringLiteral("calibration"))
                              .withHint(QStringLiteral("e.g. \"calibration\": {\"sequences\": 128, \"length\": 512}")));
    return r;
}

namespace {

QJsonObject settingsJson(const std::optional<QString> &technique, const std::optional<int> &bits,
                         const std::optional<int> &group, const std::optional<bool> &sym, const ParameterValues &params)
{
    QJsonObject o;
    if (technique)
        o.insert(QStringLiteral("technique"), *technique);
    if (bits)
        o.insert(QStringLiteral("bits"), *bits);
    if (group)
        o.insert(QStringLiteral("groupSize"), *group);
    if (sym)
        o.insert(QStringLiteral("symmetric"), *sym);
    if (!params.isEmpty())
        o.insert(QStringLiteral("parameters"), QJsonObject::fromVariantMap(params));
    return o;
}

} // namespace

QByteArray Recipe::toJson() const
{
    QJsonObject o;
    o.insert(QStringLiteral("schemaVersion"), schemaVersion);
    if (!modelArchitecture.isEmpty() || !modelWeightsHash.isEmpty())
        o.insert(QStringLiteral("model"), QJsonObject{{QStringLiteral("architecture"), modelArchitecture},
                                                      {QStringLiteral("weightsHash"), modelWeightsHash}});
    QJsonObject defaults = settingsJson(defaultTechnique, defaultFormat.bits, defaultFormat.groupSize,
                                        defaultFormat.symmetric, defaultParameters);
    // Written only when used, so quantization recipes stay as they were.
    if (defaultSparsity > 0.0)
        defaults.insert(QStringLiteral("sparsity"), defaultSparsity);
    if (defaultPattern.isNM())
        defaults.insert(QStringLiteral("pattern"), defaultPattern.name());
    o.insert(QStringLiteral("defaults"), defaults);
    QJsonArray layers;
    for (const RecipeEntry &e : this->layers) {
        QJsonObject j = settingsJson(e.technique, e.bits, e.groupSize, e.symmetric, e.parameters);
        if (!e.name.isEmpty())
            j.insert(QStringLiteral("name"), e.name);
        if (!e.match.isEmpty())
            j.insert(QStringLiteral("match"), e.match);
        if (!e.regex.isEmpty())
            j.insert(QStringLiteral("regex"), e.regex);
        if (e.skip)
            j.insert(QStringLiteral("skip"), true);
        if (e.sparsity)
            j.insert(QStringLiteral("sparsity"), *e.sparsity);
        if (e.pattern)
            j.insert(QStringLiteral("pattern"), e.pattern->name());
        layers.append(j);
    }
    o.insert(QStringLiteral("layers"), layers);
    QJsonObject calib{{QStringLiteral("sequences"), calibration.sequences},
                      {QStringLiteral("length"), calibration.length},
                      {QStringLiteral("seed"), static_cast<double>(calibration.seed)}};
    if (!calibration.text.isEmpty())
        calib.insert(QStringLiteral("text"), calibration.text);
    o.insert(QStringLiteral("calibration"), calib);
    return QJsonDocument(o).toJson(QJsonDocument::Indented);
}

Expected<void> Recipe::save(const QString &path) const
{
    QSaveFile f(path);
    if (!f.open(QIODevice::WriteOnly))
        return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot write recipe: %1").arg(f.errorString())).inFile(path));
    f.write(toJson());
    if (!f.commit())
        return unexpected(fail(ErrorCode::Io, QStringLiteral("writing the recipe failed: %1").arg(f.errorString()))
                              .inFile(path)
                              .withHint(QStringLiteral("check free disk space; the previous file was left untouched")));
    return {};
}

std::vector<ResolvedLayer> linearLayers(const Model &model)
{
    std::vector<ResolvedLayer> out;
    for (const WeightInfo &w : model.weights()) {
        if (!isLinearRole(w.role))
            continue;
        ResolvedLayer l;
        l.tensor = w.name;
        l.name = w.name.endsWith(QLatin1String(".weight")) ? w.name.chopped(7) : w.name;
        l.role = w.role;
        l.block = w.block;
        l.expert = w.expert;
        l.rows = w.shape.size() == 2 ? w.shape[0] : 1;
        l.cols = w.shape.back();
        out.push_back(l);
    }
    return out;
}

Expected<std::vector<ResolvedLayer>> resolveRecipe(const Recipe &recipe, const Model &model,
                                                   const TechniqueRegistry &registry)
{
    if (!recipe.modelArchitecture.isEmpty() && recipe.modelArchitecture != model.config().architectureName)
        return unexpected(fail(ErrorCode::Mismatch, QStringLiteral("the recipe was made for %1, the model is %2")
                                                        .arg(recipe.modelArchitecture, model.config().architectureName))
                              .forParameter(QStringLiteral("model"))
                              .withHint(QStringLiteral("use a recipe made for this model, or remove its \"model\" entry")));
    std::vector<ResolvedLayer> layers = linearLayers(model);
    std::vector<bool> targeted(layers.size());
    for (std::size_t i = 0; i < layers.size(); ++i) {
        ResolvedLayer &l = layers[i];
        targeted[i] = l.role != WeightRole::LmHead; // the head only when an entry names it
        l.settings.technique = recipe.defaultTechnique;
        l.settings.format = recipe.defaultFormat;
        l.settings.parameters = recipe.defaultParameters;
        l.settings.sparsity = recipe.defaultSparsity;
        l.settings.pattern = recipe.defaultPattern;
    }
    int index = 0;
    for (const RecipeEntry &e : recipe.layers) {
        const QString where = QStringLiteral("layers[%1] ('%2')").arg(index++).arg(e.selector());
        QRegularExpression re;
        if (!e.match.isEmpty())
            re = QRegularExpression(QRegularExpression::wildcardToRegularExpression(e.match));
        else if (!e.regex.isEmpty())
            re = QRegularExpression(QRegularExpression::anchoredPattern(e.regex));
        int matched = 0;
        for (std::size_t i = 0; i < layers.size(); ++i) {
            ResolvedLayer &l = layers[i];
            const bool hit = !e.name.isEmpty() ? l.name == e.name || l.tensor == e.name : re.match(l.name).hasMatch();
            if (!hit)
                continue;
            ++matched;
            targeted[i] = !e.skip;
            if (e.technique) {
                if (*e.technique != l.settings.technique)
                    l.settings.parameters.clear(); // parameters belong to a technique
                l.settings.technique = *e.technique;
            }
            if (e.bits)
                l.settings.format.bits = *e.bits;
            if (e.groupSize)
                l.settings.format.groupSize = *e.groupSize;
            if (e.symmetric)
                l.settings.format.symmetric = *e.symmetric;
            if (e.sparsity)
                l.settings.sparsity = *e.sparsity;
            if (e.pattern)
                l.settings.pattern = *e.pattern;
            for (auto it = e.parameters.begin(); it != e.parameters.end(); ++it)
                l.settings.parameters.insert(it.key(), it.value());
        }
        if (matched == 0)
            return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("%1 matches no layer of the model").arg(where))
                                  .forLayer(e.selector())
                                  .withHint(QStringLiteral("layer names look like 'model.layers.0.self_attn.q_proj' or 'lm_head'; "
                                                           "'bitsmith-cli info MODEL' lists them")));
    }
    std::vector<ResolvedLayer> out;
    for (std::size_t i = 0; i < layers.size(); ++i) {
        if (!targeted[i] || layers[i].settings.technique == QLatin1String("none"))
            continue;
        ResolvedLayer &l = layers[i];
        auto technique = registry.create(l.settings.technique);
        if (!technique)
            return unexpected(std::move(technique.error()).forLayer(l.name));
        auto params = resolveParameters((*technique)->parameters(), l.settings.parameters,
                                        QStringLiteral("technique '%1'").arg(l.settings.technique));
        if (!params)
            return unexpected(std::move(params.error()).forLayer(l.name));
        l.settings.parameters = *params;
        if (auto ok = (*technique)->validate(l.settings, l.rows, l.cols); !ok)
            return unexpected(std::move(ok.error()).forLayer(l.name));
        out.push_back(l);
    }
    return out;
}

} // namespace bitsmith::core
