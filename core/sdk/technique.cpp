// technique.cpp: defaults shared by all techniques.
#include "technique.h"

namespace bitsmith::core {

QString categoryName(TechniqueCategory c)
{
    switch (c) {
    case TechniqueCategory::Quantization: return QStringLiteral("quantization");
    case TechniqueCategory::Pruning: return QStringLiteral("pruning");
    case TechniqueCategory::Distillation: return QStringLiteral("distillation");
    }
    return {};
}

Expected<void> Technique::validate(const LayerSettings &settings, std::int64_t rows, std::int64_t cols) const
{
    const QuantFormat &f = settings.format;
    if (f.bits < 2 || f.bits > 8)
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("bits %1 out of range for %2").arg(f.bits).arg(id()))
                              .forParameter(QStringLiteral("bits"))
                              .withHint(QStringLiteral("use 2 to 8 bits")));
    if (f.groupSize < -1 || f.groupSize > cols)
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("group size %1 does not fit a layer of %2 inputs")
                                                               .arg(f.groupSize)
                                                               .arg(cols))
                              .forParameter(QStringLiteral("group"))
                              .withHint(QStringLiteral("use 32, 64, 128, 0 (per channel) or -1 (per tensor)")));
    (void)rows;
    return {};
}

QString SparsityPattern::name() const
{
    if (!isNM())
        return QStringLiteral("unstructured");
    return QStringLiteral("%1:%2").arg(n).arg(m);
}

std::optional<SparsityPattern> SparsityPattern::parse(const QString &text)
{
    const QString t = text.trimmed().toLower();
    if (t.isEmpty() || t == QLatin1String("unstructured"))
        return SparsityPattern{};
    const QStringList parts = t.split(QLatin1Char(':'));
    if (parts.size() != 2)
        return std::nullopt;
    bool okN = false, okM = false;
    const int n = parts[0].toInt(&okN), m = parts[1].toInt(&okM);
    if (!okN || !okM || n <= 0 || m <= n || m > 64)
        return std::nullopt;
    return SparsityPattern{n, m};
}

std::vector<LayerTarget *> layersUsing(LayerGroup &group, const QString &id)
{
    std::vector<LayerTarget *> out;
    for (LayerTarget &l : group.layers)
        if (l.settings.technique == id)
            out.push_back(&l);
    return out;
}

bool canFoldInputScales(const LayerGroup &group, std::size_t count)
{
    if (count != group.layers.size() || group.layers.empty() || !group.producer.data || group.producer.compressed)
        return false;
    const std::int64_t width = group.layers.front().cols;
    if (group.producer.kind == InputProducer::Kind::Norm)
        return group.producer.cols == width;
    return group.producer.kind == InputProducer::Kind::Linear && group.producer.rows == width;
}

void foldInputScales(LayerGroup &group, std::span<const float> s, ResultSink &results)
{
    InputProducer &p = group.producer;
    if (p.kind == InputProducer::Kind::Norm) {
        for (std::int64_t j = 0; j < p.cols; ++j) // (offset + w) / s = offset + w'
            p.data[j] = (p.offset + p.data[j]) / s[static_cast<std::size_t>(j)] - p.offset;
    } else {
        for (std::int64_t r = 0; r < p.rows; ++r)
            for (std::int64_t c = 0; c < p.cols; ++c)
                p.data[r * p.cols + c] /= s[static_cast<std::size_t>(r)];
    }
    results.markModified(p.name);
    for (LayerTarget &l : group.layers)
        for (std::int64_t r = 0; r < l.rows; ++r)
            for (std::int64_t c = 0; c < l.cols; ++c)
                l.weight[r * l.cols + c] *= s[static_cast<std::size_t>(c)];
}

} // namespace bitsmith::core
