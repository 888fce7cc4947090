// layerassignment.cpp: recipe <-> per-layer settings without plugins (see the header).
#include "core/layerassignment.h"

#include <QHash>
#include <QRegularExpression>

#include <algorithm>
#include <cmath>

namespace bitsmith::core {

QString LayerSetting::label() const
{
    if (dense)
        return QStringLiteral("dense");
    return toSensitivity().label();
}

std::vector<AssignableLayer> assignableLayers(const Model &model)
{
    std::vector<AssignableLayer> out;
    for (const ResolvedLayer &l : linearLayers(model))
        out.push_back({l.name, l.rows, l.cols, l.role == WeightRole::LmHead});
    return out;
}

std::vector<LayerSetting> resolveAssignment(const Recipe &recipe, const std::vector<AssignableLayer> &layers)
{
    const LayerSetting defaults{false, recipe.defaultTechnique, recipe.defaultFormat};
    std::vector<LayerSetting> out(layers.size(), defaults);
    QHash<QString, int> byName;
    for (std::size_t i = 0; i < layers.size(); ++i) {
        byName.insert(layers[i].name, static_cast<int>(i));
        if (layers[i].isHead)
            out[i].dense = true; // the head only when an entry names it
    }
    auto apply = [](LayerSetting &s, const RecipeEntry &e) {
        if (e.skip) {
            s.dense = true;
            return;
        }
        s.dense = false;
        if (e.technique)
            s.technique = *e.technique;
        if (e.bits)
            s.format.bits = *e.bits;
        if (e.groupSize)
            s.format.groupSize = *e.groupSize;
        if (e.symmetric)
            s.format.symmetric = *e.symmetric;
        if (e.sparsity) {
            s.sparsity = *e.sparsity;
            s.pattern = {};
        }
        if (e.pattern) {
            s.pattern = *e.pattern;
            if (s.pattern.isNM())
                s.sparsity = 1.0 - static_cast<double>(s.pattern.n) / s.pattern.m;
        }
        // Pure pruners store no codes; SparseGPT only when asked to quantize; quantizers prune nothing.
        if (s.technique == QLatin1String("magnitude") || s.technique == QLatin1String("wanda")
            || (s.technique == QLatin1String("sparsegpt") && !e.parameters.value(QStringLiteral("quantize")).toBool()))
            s.format.bits = 0;
        if (s.technique == QLatin1String("rtn") || s.technique == QLatin1String("gptq")) {
            s.sparsity = 0.0;
            s.pattern = {};
        }
        if (s.technique == QLatin1String("none"))
            s.dense = true;
    };
    for (const RecipeEntry &e : recipe.layers) {
        if (!e.name.isEmpty()) {
            QString name = e.name;
            if (name.endsWith(QLatin1String(".weight")))
                name.chop(7);
            if (auto it = byName.constFind(name); it != byName.cend())
                apply(out[static_cast<std::size_t>(*it)], e);
            continue;
        }
        const QRegularExpression re(!e.match.isEmpty()
                                        ? QRegularExpression::wildcardToRegularExpression(e.match)
                                        : QRegularExpression::anchoredPattern(e.regex));
        for (std::size_t i = 0; i < layers.size(); ++i)
            if (re.match(layers[i].name).hasMatch())
                apply(out[i], e);
    }
    return out;
}

namespace {

RecipeEntry entryFor(const QString &name, const LayerSetting &setting)
{
    RecipeEntry e;
    e.name = name;
    if (setting.dense) {
        e.skip = true;
        return e;
    }
    return recipeEntryFor(name, setting.toSensitivity());
}

} // namespace

Recipe withLayerSetting(const Recipe &recipe, const QString &name, const LayerSetting &setting)
{
    Recipe out = recipe;
    // Only the LAST exact entry may be replaced in place: an earlier one could be overridden by a
    // pattern that follows it.
    for (auto it = out.layers.rbegin(); it != out.layers.rend(); ++it) {
        if (it->name == name) {
            *it = entryFor(name, setting);
            return out;
        }
        if (!it->match.isEmpty() || !it->regex.isEmpty())
            break;
    }
    out.layers.push_back(entryFor(name, setting));
    return out;
}

Recipe recipeFromAssignment(const Recipe &base, const std::vector<AssignableLayer> &layers,
                            const std::vector<LayerSetting> &settings)
{
    Recipe out = base;
    out.layers.clear();
    for (std::size_t i = 0; i < layers.size() && i < settings.size(); ++i)
        out.layers.push_back(entryFor(layers[i].name, settings[i]));
    return out;
}

double layerBytes(const AssignableLayer &layer, const LayerSetting &setting, double denseBytes)
{
    if (setting.dense)
        return denseBytes;
    const double n = static_cast<double>(layer.parameters());
    double valueBits = 0;
    if (setting.format.bits > 0) {
        QuantizedTensor shape;
        shape.rows = layer.rows;
        shape.cols = layer.cols;
        shape.format = setting.format;
        valueBits = static_cast<double>(shape.storageBits());
    }
    if (setting.sparsity <= 0 && !setting.pattern.isNM())
        return valueBits / 8.0;
    // Pruned: the kept values (codes, or the dense dtype) plus their positions — the same
    // accounting as SensitivityAnalysis::compress.
    const double kept = std::floor(n * (1.0 - setting.sparsity) + 0.5);
    if (setting.format.bits > 0)
        valueBits = valueBits - n * setting.format.bits + kept * setting.format.bits;
    else
        valueBits = kept * (n > 0 ? 8.0 * denseBytes / n : 32.0);
    double positionBits = n;
    if (setting.pattern.isNM())
        positionBits = std::min(positionBits, kept * std::ceil(std::log2(setting.pattern.m)));
    return (valueBits + positionBits) / 8.0;
}

} // namespace bitsmith::core
