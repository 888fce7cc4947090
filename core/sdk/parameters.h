// parameters.h: typed parameter schemas of techniques. The GUI builds forms from them, the CLI
// validates flags and recipe entries against them, errors name the parameter.
#pragma once

#include "core/error.h"

#include <QList>
#include <QString>
#include <QStringList>
#include <QVariant>
#include <QVariantMap>

namespace bitsmith::core {

struct ParameterSpec
{
    enum class Type { Int, Double, Bool, Choice };
    QString name; // camelCase, as written in recipes ("actOrder", "dampPercent")
    Type type = Type::Double;
    QVariant defaultValue;
    QVariant minimum; // Int/Double only; invalid = unbounded
    QVariant maximum;
    QStringList choices; // Choice only
    QString help;        // one sentence for tooltips and --help

    static ParameterSpec integer(QString name, int def, int min, int max, QString help);
    static ParameterSpec real(QString name, double def, double min, double max, QString help);
    static ParameterSpec boolean(QString name, bool def, QString help);
    static ParameterSpec choice(QString name, QString def, QStringList choices, QString help);
};

using ParameterValues = QVariantMap;

// Checks `values` against `schema` (unknown names, types, ranges, choices) and returns the full set
// with defaults filled in. Errors name the parameter and, in `context`, the technique.
Expected<ParameterValues> resolveParameters(const QList<ParameterSpec> &schema, const ParameterValues &values,
                                            const QString &context);

} // namespace bitsmith::core
