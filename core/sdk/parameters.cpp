// parameters.cpp: schema construction and validation of parameter values.
#include "parameters.h"

namespace bitsmith::core {

ParameterSpec ParameterSpec::integer(QString name, int def, int min, int max, QString help)
{
    return {std::move(name), Type::Int, def, min, max, {}, std::move(help)};
}

ParameterSpec ParameterSpec::real(QString name, double def, double min, double max, QString help)
{
    return {std::move(name), Type::Double, def, min, max, {}, std::move(help)};
}

ParameterSpec ParameterSpec::boolean(QString name, bool def, QString help)
{
    return {std::move(name), Type::Bool, def, {}, {}, {}, std::move(help)};
}

ParameterSpec ParameterSpec::choice(QString name, QString def, QStringList choices, QString help)
{
    return {std::move(name), Type::Choice, def, {}, {}, std::move(choices), std::move(help)};
}

Expected<ParameterValues> resolveParameters(const QList<ParameterSpec> &schema, const ParameterValues &values,
                                            const QString &context)
{
    ParameterValues out;
    QStringList known;
    for (const ParameterSpec &p : schema)
        known << p.name;
    for (auto it = values.begin(); it != values.end(); ++it)
        if (!known.contains(it.key()))
            return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("unknown parameter '%1' for %2").arg(it.key(), context))
                                  .forParameter(it.key())
                                  .withHint(known.isEmpty() ? QStringLiteral("%1 takes no parameters").arg(context)
                                                            : QStringLiteral("known: %1").arg(known.join(QStringLiteral(", ")))));
    for (const ParameterSpec &p : schema) {
        if (!values.contains(p.name)) {
            out.insert(p.name, p.defaultValue);
            continue;
        }
        const QVariant v = values.value(p.name);
        auto bad = [&](const QString &why) {
            return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("parameter '%1' of %2 %3").arg(p.name, context, why))
                                  .forParameter(p.name)
                                  .withHint(p.help));
        };
        switch (p.type) {
        case ParameterSpec::Type::Int: {
            bool ok = false;
            const double d = v.toDouble(&ok);
            if (!ok || d != static_cast<double>(static_cast<long long>(d)) || v.typeId() == QMetaType::Bool)
                return bad(QStringLiteral("must be an integer"));
            if ((p.minimum.isValid() && d < p.minimum.toDouble()) || (p.maximum.isValid() && d > p.maximum.toDouble()))
                return bad(QStringLiteral("must be between %1 and %2").arg(p.minimum.toString(), p.maximum.toString()));
            out.insert(p.name, static_cast<int>(d));
            break;
        }
        case ParameterSpec::Type::Double: {
            bool ok = false;
            const double d = v.toDouble(&ok);
            if (!ok || v.typeId() == QMetaType::Bool || v.typeId() == QMetaType::QString)
                return bad(QStringLiteral("must be a number"));
            if ((p.minimum.isValid() && d < p.minimum.toDouble()) || (p.maximum.isValid() && d > p.maximum.toDouble()))
                return bad(QStringLiteral("must be between %1 and %2").arg(p.minimum.toString(), p.maximum.toString()));
            out.insert(p.name, d);
            break;
        }
        case ParameterSpec::Type::Bool:
            if (v.typeId() != QMetaType::Bool)
                return bad(QStringLiteral("must be true or false"));
            out.insert(p.name, v.toBool());
            break;
        case ParameterSpec::Type::Choice:
            if (!p.choices.contains(v.toString()))
                return bad(QStringLiteral("must be one of %1").arg(p.choices.join(QStringLiteral(", "))));
            out.insert(p.name, v.toString());
            break;
        }
    }
    return out;
}

} // namespace bitsmith::core
