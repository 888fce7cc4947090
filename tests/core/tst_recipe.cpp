// tst_recipe: recipe parsing (malformed documents give errors naming the key/parameter),
// resolution against a model (patterns, order, skip, head, unknown layers/techniques/parameters)
// and the JSON round trip.
#include "core/model.h"
#include "core/recipe.h"
#include "core/sdk/techniqueregistry.h"
#include "tinymodel.h"

#include <QTemporaryDir>
#include <QTest>

using namespace bitsmith::core;
using namespace bitsmith::test;

class TestRecipe : public QObject
{
    Q_OBJECT

    QTemporaryDir m_dir;
    std::shared_ptr<Model> m_model;
    std::unique_ptr<TechniqueRegistry> m_registry;

    const ResolvedLayer *find(const std::vector<ResolvedLayer> &layers, const QString &name)
    {
        for (const ResolvedLayer &l : layers)
            if (l.name == name)
                return &l;
        return nullptr;
    }

private slots:
    void initTestCase()
    {
        TinySpec s;
        s.layers = 3;
        QVERIFY(writeTinyModel(m_dir.path(), s));
        auto m = Model::load(m_dir.path());
        QVERIFY(m);
        m_model = *m;
        m_registry = std::make_unique<TechniqueRegistry>(QStringList{QStringLiteral(BITSMITH_PLUGIN_DIR_FOR_TESTS)});
        QVERIFY(m_registry->contains(QStringLiteral("rtn")));
    }

    void malformed_data()
    {
        QTest::addColumn<QByteArray>("json");
        QTest::addColumn<QString>("parameter");
        QTest::addColumn<QString>("mention");
        QTest::newRow("not json") << QByteArray("{\"schemaVersion\": 1,") << QString() << QStringLiteral("JSON");
        QTest::newRow("no version") << QByteArray("{\"defaults\": {}}") << QStringLiteral("schemaVersion") << QStringLiteral("schemaVersion");
        QTest::newRow("future version") << QByteArray("{\"schemaVersion\": 7}") << QStringLiteral("schemaVersion") << QStringLiteral("7");
        QTest::newRow("unknown top key") << QByteArray("{\"schemaVersion\": 1, \"layerz\": []}") << QStringLiteral("layerz") << QStringLiteral("layerz");
        QTest::newRow("bits out of range") << QByteArray("{\"schemaVersion\": 1, \"defaults\": {\"bits\": 12}}")
                                           << QStringLiteral("bits") << QStringLiteral("12");
        QTest::newRow("bits not integer") << QByteArray("{\"schemaVersion\": 1, \"defaults\": {\"bits\": \"four\"}}")
                                          << QStringLiteral("bits") << QStringLiteral("integer");
        QTest::newRow("bad group") << QByteArray("{\"schemaVersion\": 1, \"layers\": [{\"match\": \"*\", \"groupSize\": -5}]}")
                                   << QStringLiteral("groupSize") << QStringLiteral("-5");
        QTest::newRow("two selectors") << QByteArray("{\"schemaVersion\": 1, \"layers\": [{\"name\": \"a\", \"match\": \"b\"}]}")
                                       << QStringLiteral("name") << QStringLiteral("exactly one");
        QTest::newRow("bad regex") << QByteArray("{\"schemaVersion\": 1, \"layers\": [{\"regex\": \"(\"}]}")
                                   << QStringLiteral("regex") << QStringLiteral("invalid regex");
        QTest::newRow("layers not array") << QByteArray("{\"schemaVersion\": 1, \"layers\": {}}") << QStringLiteral("layers")
                                          << QStringLiteral("array");
        QTest::newRow("unknown entry key") << QByteArray("{\"schemaVersion\": 1, \"layers\": [{\"match\": \"*\", \"bitz\": 3}]}")
                                           << QStringLiteral("bitz") << QStringLiteral("layers[0]");
        QTest::newRow("parameters not object")
            << QByteArray("{\"schemaVersion\": 1, \"defaults\": {\"parameters\": [1]}}") << QStringLiteral("parameters")
            << QStringLiteral("object");
    }

    void malformed()
    {
        QFETCH(QByteArray, json);
        QFETCH(QString, parameter);
        QFETCH(QString, mention);
        auto r = Recipe::fromJson(json, QStringLiteral("r.json"));
        QVERIFY(!r);
        QCOMPARE(r.error().file, QStringLiteral("r.json"));
        if (!parameter.isEmpty())
            QCOMPARE(r.error().parameter, parameter);
        QVERIFY2(r.error().toString().contains(mention), qPrintable(r.error().toString()));
        QVERIFY(!r.error().hint.isEmpty());
    }

    void resolution()
    {
        auto r = Recipe::fromJson(R"({"schemaVersion": 1,
            "defaults": {"technique": "rtn", "bits": 4, "groupSize": 16},
            "layers": [
              {"match": "model.layers.*.mlp.down_proj", "bits": 8, "groupSize": 0},
              {"name": "model.layers.1.mlp.down_proj", "bits": 3},
              {"regex": "model\\.layers\\.2\\..*", "skip": true},
              {"name": "lm_head", "bits": 6, "parameters": {"mse": true}},
              {"match": "*.q_proj", "technique": "pow2", "symmetric": true}
            ]})",
                                  QStringLiteral("r.json"));
        QVERIFY2(r, qPrintable(r ? QString() : r.error().toString()));
        auto layers = resolveRecipe(*r, *m_model, *m_registry);
        QVERIFY2(layers, qPrintable(layers ? QString() : layers.error().toString()));
        // 3 blocks x 7 linears, block 2 skipped, head added; the q_proj entry after the skip
        // targets block 2's q_proj again (later entries override earlier ones)
        QCOMPARE(layers->size(), size_t(2 * 7 + 1 + 1));
        QVERIFY(!find(*layers, QStringLiteral("model.layers.2.self_attn.k_proj")));
        QCOMPARE(find(*layers, QStringLiteral("model.layers.2.self_attn.q_proj"))->settings.technique, QStringLiteral("pow2"));
        QCOMPARE(find(*layers, QStringLiteral("model.layers.0.mlp.down_proj"))->settings.format, (QuantFormat{8, 0, false}));
        // the later entry overrides the earlier one
        QCOMPARE(find(*layers, QStringLiteral("model.layers.1.mlp.down_proj"))->settings.format, (QuantFormat{3, 0, false}));
        QCOMPARE(find(*layers, QStringLiteral("model.layers.0.mlp.up_proj"))->settings.format, (QuantFormat{4, 16, false}));
        const ResolvedLayer *head = find(*layers, QStringLiteral("lm_head"));
        QVERIFY(head);
        QCOMPARE(head->settings.parameters.value(QStringLiteral("mse")).toBool(), true);
        QCOMPARE(head->settings.parameters.value(QStringLiteral("execution")).toString(), QStringLiteral("weight-only")); // default filled
        const ResolvedLayer *q = find(*layers, QStringLiteral("model.layers.0.self_attn.q_proj"));
        QCOMPARE(q->settings.technique, QStringLiteral("pow2"));
        QVERIFY(q->settings.format.symmetric);
        QVERIFY(q->settings.parameters.contains(QStringLiteral("roundScaleDown")));
        QVERIFY(!q->settings.parameters.contains(QStringLiteral("mse"))); // rtn's parameters dropped
    }

    void resolutionErrors_data()
    {
        QTest::addColumn<QByteArray>("json");
        QTest::addColumn<QString>("parameter");
        QTest::addColumn<QString>("mention");
        QTest::newRow("unknown layer") << QByteArray(R"({"schemaVersion": 1, "layers": [{"name": "model.layers.9.mlp.up_proj", "bits": 3}]})")
                                       << QString() << QStringLiteral("matches no layer");
        QTest::newRow("pattern matching nothing") << QByteArray(R"({"schemaVersion": 1, "layers": [{"match": "*.fc1", "bits": 3}]})")
                                                  << QString() << QStringLiteral("*.fc1");
        QTest::newRow("unknown technique") << QByteArray(R"({"schemaVersion": 1, "defaults": {"technique": "magic"}})")
                                           << QStringLiteral("technique") << QStringLiteral("magic");
        QTest::newRow("unknown parameter") << QByteArray(R"({"schemaVersion": 1, "defaults": {"parameters": {"actOrder": true}}})")
                                           << QStringLiteral("actOrder") << QStringLiteral("actOrder");
        QTest::newRow("parameter type") << QByteArray(R"({"schemaVersion": 1, "defaults": {"parameters": {"mse": 3}}})")
                                        << QStringLiteral("mse") << QStringLiteral("true or false");
        QTest::newRow("choice") << QByteArray(R"({"schemaVersion": 1, "defaults": {"parameters": {"execution": "fp4"}}})")
                                << QStringLiteral("execution") << QStringLiteral("one of");
        QTest::newRow("group larger than layer") << QByteArray(R"({"schemaVersion": 1, "defaults": {"groupSize": 4096}})")
                                                 << QStringLiteral("group") << QStringLiteral("4096");
        QTest::newRow("technique validation") << QByteArray(R"({"schemaVersion": 1, "defaults": {"technique": "pow2", "groupSize": 16}})")
                                              << QStringLiteral("symmetric") << QStringLiteral("symmetric");
        QTest::newRow("other architecture") << QByteArray(R"({"schemaVersion": 1, "model": {"architecture": "Qwen2ForCausalLM"}})")
                                            << QStringLiteral("model") << QStringLiteral("Qwen2ForCausalLM");
    }

    void resolutionErrors()
    {
        QFETCH(QByteArray, json);
        QFETCH(QString, parameter);
        QFETCH(QString, mention);
        auto r = Recipe::fromJson(json, QStringLiteral("r.json"));
        QVERIFY2(r, qPrintable(r ? QString() : r.error().toString()));
        auto layers = resolveRecipe(*r, *m_model, *m_registry);
        QVERIFY(!layers);
        if (!parameter.isEmpty())
            QCOMPARE(layers.error().parameter, parameter);
        QVERIFY2(layers.error().toString().contains(mention), qPrintable(layers.error().toString()));
        QVERIFY(!layers.error().hint.isEmpty());
    }

    void roundTrip()
    {
        auto r = Recipe::fromJson(R"({"schemaVersion": 1, "model": {"architecture": "LlamaForCausalLM", "weightsHash": "sha256:ab"},
            "defaults": {"technique": "rtn", "bits": 3, "groupSize": 64, "symmetric": true, "parameters": {"mse": true}},
            "layers": [{"match": "*.down_proj", "bits": 8}, {"name": "model.layers.0.self_attn.k_proj", "skip": true}],
            "calibration": {"text": "c.txt", "sequences": 16, "length": 64, "seed": 5}})",
                                  QStringLiteral("r.json"));
        QVERIFY(r);
        QTemporaryDir dir;
        const QString path = dir.filePath(QStringLiteral("recipe.json"));
        QVERIFY(r->save(path));
        auto back = Recipe::fromFile(path);
        QVERIFY(back);
        QCOMPARE(back->toJson(), r->toJson());
        QCOMPARE(back->defaultFormat, (QuantFormat{3, 64, true}));
        QCOMPARE(back->layers.size(), size_t(2));
        QVERIFY(back->layers[1].skip);
        QCOMPARE(back->calibration.seed, quint64(5));
        QCOMPARE(back->modelWeightsHash, QStringLiteral("sha256:ab"));
    }
};

QTEST_GUILESS_MAIN(TestRecipe)
#include "tst_recipe.moc"
