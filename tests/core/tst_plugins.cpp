// tst_plugins: technique plugin discovery: the built-in plugins load, broken fixtures (not a
// library, metadata of the wrong shape, a newer SDK API version, a missing shared library) are
// reported with the file and a reason and skipped, never a crash; and the example pow2 plugin
// quantizes a hand-made layer as its comment says.
#include "core/sdk/techniqueregistry.h"

#include <QTest>

#include <cmath>

using namespace bitsmith::core;

namespace {

QString fixtures(const char *name)
{
    return QStringLiteral(BITSMITH_TEST_PLUGIN_DIR "/") + QLatin1String(name);
}

const PluginProblem *problemFor(const TechniqueRegistry &r, const QString &fileSuffix)
{
    for (const PluginProblem &p : r.problems())
        if (p.file.endsWith(fileSuffix))
            return &p;
    return nullptr;
}

class CollectSink final : public ResultSink
{
public:
    void setQuantized(const LayerTarget &, QuantizedTensor weights, Execution) override { results.push_back(std::move(weights)); }
    void markModified(const QString &) override {}
    std::vector<QuantizedTensor> results;
};

} // namespace

class TestPlugins : public QObject
{
    Q_OBJECT

private slots:
    void builtInPluginsLoad()
    {
        TechniqueRegistry r(QStringList{QStringLiteral(BITSMITH_PLUGIN_DIR)});
        QVERIFY2(r.problems().empty(), r.problems().empty() ? "" : qPrintable(r.problems().front().message));
        for (const char *id : {"rtn", "pow2"})
            QVERIFY2(r.contains(QLatin1String(id)), id);
        auto t = r.create(QStringLiteral("rtn"));
        QVERIFY(t);
        QCOMPARE((*t)->id(), QStringLiteral("rtn"));
        // a fresh instance per run
        auto t2 = r.create(QStringLiteral("rtn"));
        QVERIFY(t2 && t2->get() != t->get());
        auto unknown = r.create(QStringLiteral("nope"));
        QVERIFY(!unknown);
        QVERIFY(unknown.error().hint.contains(QStringLiteral("rtn")));
    }

    void goodFixture()
    {
        TechniqueRegistry r(QStringList{fixtures("good")});
        QCOMPARE(r.plugins().size(), size_t(1));
        QCOMPARE(r.plugins().front().id, QStringLiteral("fixture-good"));
        QCOMPARE(r.plugins().front().category, QStringLiteral("quantization"));
        QCOMPARE(r.plugins().front().sdkVersion, kSdkApiVersion);
    }

    void brokenFixtures_data()
    {
        QTest::addColumn<QString>("folder");
        QTest::addColumn<QString>("file");
        QTest::addColumn<QString>("mention");
        QTest::newRow("not a library") << fixtures("not-a-library") << QStringLiteral("garbage.so") << QStringLiteral("not a Qt plugin");
        QTest::newRow("bad metadata") << fixtures("bad-metadata") << QStringLiteral("fixture_bad_metadata.so")
                                      << QStringLiteral("lacks");
        QTest::newRow("wrong SDK version") << fixtures("wrong-version") << QStringLiteral("fixture_wrong_version.so")
                                           << QStringLiteral("version 999, but this Bitsmith has version %1").arg(kSdkApiVersion);
        QTest::newRow("missing library") << fixtures("missing-dependency") << QStringLiteral("fixture_missing_dependency.so")
                                         << QStringLiteral("libfixture_dependency.so");
    }

    void brokenFixtures()
    {
        QFETCH(QString, folder);
        QFETCH(QString, file);
        QFETCH(QString, mention);
        // the broken one sits beside a good one: it is skipped, the good one still loads
        TechniqueRegistry r(QStringList{folder, fixtures("good")});
        QCOMPARE(r.plugins().size(), size_t(1));
        const PluginProblem *p = problemFor(r, file);
        QVERIFY2(p, qPrintable(file));
        QVERIFY2(p->message.contains(mention), qPrintable(p->message));
        QVERIFY(p->file.startsWith(folder));
    }

    void searchPathFromEnvironment()
    {
        qputenv("BITSMITH_PLUGIN_PATH", fixtures("good").toUtf8());
        const QStringList path = TechniqueRegistry::defaultSearchPath();
        qunsetenv("BITSMITH_PLUGIN_PATH");
        QCOMPARE(path.first(), fixtures("good"));
        QVERIFY(path.contains(QStringLiteral(BITSMITH_PLUGIN_DIR)));
    }

    void examplePow2Plugin()
    {
        TechniqueRegistry r(QStringList{QStringLiteral(BITSMITH_PLUGIN_DIR)});
        auto t = r.create(QStringLiteral("pow2"));
        QVERIFY(t);
        // one row, two groups of 4: maxima 3.0 and 0.3 at 4 bits (codes -7..7 around 8)
        std::vector<float> w = {3.0f, -1.0f, 0.5f, 0.0f, 0.3f, -0.05f, 0.1f, 0.2f};
        LayerTarget layer;
        layer.name = QStringLiteral("model.layers.0.mlp.up_proj");
        layer.weight = w.data();
        layer.rows = 1;
        layer.cols = 8;
        layer.settings.technique = QStringLiteral("pow2");
        layer.settings.format = QuantFormat{4, 4, true};
        auto params = resolveParameters((*t)->parameters(), {}, QStringLiteral("pow2"));
        QVERIFY(params);
        layer.settings.parameters = *params;
        QVERIFY((*t)->validate(layer.settings, 1, 8));
        LayerSettings asym = layer.settings;
        asym.format.symmetric = false;
        auto bad = (*t)->validate(asym, 1, 8);
        QVERIFY(!bad);
        QCOMPARE(bad.error().parameter, QStringLiteral("symmetric"));

        ModelConfig cfg;
        LayerGroup group;
        group.layers.push_back(layer);
        CollectSink sink;
        CallbackFeedback fb;
        TechniqueContext ctx{cfg, group, sink, fb};
        QVERIFY((*t)->apply(ctx));
        QCOMPARE(sink.results.size(), size_t(1));
        const QuantizedTensor &q = sink.results.front();
        // group 0: ideal scale 3/7 = 0.43 -> 2^-1 = 0.5 (rounded up, never clips)
        // group 1: ideal 0.3/7 = 0.043 -> 2^-4 = 0.0625
        QCOMPARE(q.scales, (std::vector<float>{0.5f, 0.0625f}));
        // codes = round(w / s) + 8: 3/0.5 = 6 -> 14; -1/0.5 = -2 -> 6; 0.5/0.5 -> 9; 0 -> 8;
        // 0.3/0.0625 = 4.8 -> 13; -0.05/0.0625 = -0.8 -> 7; 0.1/0.0625 = 1.6 -> 10; 0.2/0.0625 = 3.2 -> 11
        QCOMPARE(q.codes, (std::vector<std::uint8_t>{14, 6, 9, 8, 13, 7, 10, 11}));
        QCOMPARE(q.value(0, 0), 3.0f);
        QCOMPARE(q.value(0, 4), 0.3125f);
    }
};

QTEST_GUILESS_MAIN(TestPlugins)
#include "tst_plugins.moc"
