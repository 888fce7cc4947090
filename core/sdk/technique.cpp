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

} // namespace bitsmith::core
