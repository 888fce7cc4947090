// formatting.cpp: number, size and shape spelling shared by every view.
#include "formatting.h"

#include <QStringList>

#include <cmath>

namespace bitsmith::ui {

QString formatCount(std::int64_t n)
{
    const bool negative = n < 0;
    QString digits = QString::number(negative ? -n : n);
    for (qsizetype i = digits.size() - 3; i > 0; i -= 3)
        digits.insert(i, QLatin1Char(','));
    return negative ? QLatin1Char('-') + digits : digits;
}

QString formatCompactCount(std::int64_t n)
{
    const double v = static_cast<double>(n);
    const double a = std::abs(v);
    // Three significant digits keep the column narrow without hiding meaningful differences.
    auto scaled = [](double x, const char *suffix) {
        const int decimals = x >= 100 ? 0 : x >= 10 ? 1 : 2;
        return QString::number(x, 'f', decimals) + QLatin1Char(' ') + QLatin1String(suffix);
    };
    if (a >= 1e9)
        return scaled(v / 1e9, "B");
    if (a >= 1e6)
        return scaled(v / 1e6, "M");
    if (a >= 1e4)
        return scaled(v / 1e3, "K");
    return QString::number(n);
}

QString formatBytes(std::int64_t bytes)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB"};
    if (bytes < 1024)
        return QString::number(bytes) + QStringLiteral(" B");
    double v = static_cast<double>(bytes);
    int unit = -1;
    while (v >= 1024.0 && unit < 3) {
        v /= 1024.0;
        ++unit;
    }
    const int decimals = v >= 100 ? 1 : 2;
    return QString::number(v, 'f', decimals) + QLatin1Char(' ') + QLatin1String(units[unit]);
}

QString formatShape(const std::vector<std::int64_t> &shape)
{
    if (shape.empty())
        return QStringLiteral("scalar");
    QStringList parts;
    for (auto d : shape)
        parts << QString::number(d);
    return parts.join(QStringLiteral(" × "));
}

} // namespace bitsmith::ui
