// fixtureplugin.cpp: a minimal technique used to build good and broken plugin fixtures.
#include "core/sdk/technique.h"

#include <QObject>

#ifdef FIXTURE_USES_DEPENDENCY
int fixtureDependencyValue();
#endif

namespace {

using namespace bitsmith::core;

class FixtureTechnique final : public Technique
{
public:
    QString id() const override { return QStringLiteral("fixture"); }
    QString displayName() const override { return QStringLiteral("Fixture"); }
    TechniqueCategory category() const override { return TechniqueCategory::Quantization; }
    QString description() const override { return QStringLiteral("Test fixture."); }
    QList<ParameterSpec> parameters() const override
    {
#ifdef FIXTURE_USES_DEPENDENCY
        return {ParameterSpec::integer(QStringLiteral("x"), fixtureDependencyValue(), 0, 10, QString())};
#else
        return {ParameterSpec::integer(QStringLiteral("x"), 1, 0, 10, QStringLiteral("A number."))};
#endif
    }
    Expected<void> apply(TechniqueContext &) override { return {}; }
};

class FixtureFactory final : public QObject, public TechniqueFactory
{
    Q_OBJECT
    Q_PLUGIN_METADATA(IID BITSMITH_TECHNIQUE_IID FILE "plugin.json")
    Q_INTERFACES(bitsmith::core::TechniqueFactory)

public:
    std::unique_ptr<Technique> create() const override { return std::make_unique<FixtureTechnique>(); }
};

} // namespace

#include "fixtureplugin.moc"
