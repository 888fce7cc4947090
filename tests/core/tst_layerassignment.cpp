// tst_layerassignment.cpp: a recipe as one setting per layer (core/layerassignment.h), against
// hand-worked cases: defaults, glob/regex/exact entries applied in order, skip, the head only when
// named; editing one layer leaves the others alone; storage sizes computed by hand; and the
// resolution agrees with core::resolveRecipe's (through a recipe JSON round trip).
#include "core/layerassignment.h"

#include <QTest>

using namespace bitsmith;
using core::AssignableLayer;
using core::LayerSetting;

class TestLayerAssignment : public QObject
{
    Q_OBJECT

private slots:
    void defaultsAndEntriesInOrder();
    void withLayerSettingChangesOneLayer();
    void recipeFromAssignmentRoundTrips();
    void bytesByHand();
    void labels();

private:
    std::vector<AssignableLayer> layers() const
    {
        return {{QStringLiteral("model.layers.0.self_attn.q_proj"), 256, 256, false},
                {QStringLiteral("model.layers.0.mlp.down_proj"), 256, 768, false},
                {QStringLiteral("model.layers.1.self_attn.q_proj"), 256, 256, false},
                {QStringLiteral("model.layers.1.mlp.down_proj"), 256, 768, false},
                {QStringLiteral("lm_head"), 4096, 256, true}};
    }
};

void TestLayerAssignment::defaultsAndEntriesInOrder()
{
    auto recipe = core::Recipe::fromJson(R"({"schemaVersion": 1,
        "defaults": {"technique": "gptq", "bits": 4, "groupSize": 128},
        "layers": [{"match": "model.layers.*.mlp.down_proj", "bits": 8, "groupSize": 0},
                   {"name": "model.layers.1.mlp.down_proj", "technique": "rtn", "bits": 3},
                   {"regex": "model\\.layers\\.1\\.self_attn\\..*", "skip": true}]})",
                                         QStringLiteral("inline"));
    QVERIFY2(recipe, qPrintable(recipe ? QString() : recipe.error().toString()));
    const auto s = core::resolveAssignment(*recipe, layers());
    QCOMPARE(s.size(), std::size_t(5));
    QCOMPARE(s[0].label(), QStringLiteral("gptq:w4g128"));      // defaults
    QCOMPARE(s[1].label(), QStringLiteral("gptq:w8"));          // glob: 8 bits per channel
    QCOMPARE(s[2].label(), QStringLiteral("dense"));            // regex skip
    QCOMPARE(s[3].label(), QStringLiteral("rtn:w3"));           // glob then exact: group 0 kept, rtn 3
    QVERIFY(s[4].dense);                                         // the head unless named
    // A later pattern overrides an earlier exact entry.
    recipe->layers.push_back({});
    recipe->layers.back().match = QStringLiteral("*down_proj");
    recipe->layers.back().bits = 2;
    QCOMPARE(core::resolveAssignment(*recipe, layers())[3].label(), QStringLiteral("rtn:w2"));
}

void TestLayerAssignment::withLayerSettingChangesOneLayer()
{
    core::Recipe recipe; // rtn w4 g128 everywhere
    const auto ls = layers();
    const auto before = core::resolveAssignment(recipe, ls);
    const LayerSetting w2{false, QStringLiteral("rtn"), {2, 64, false}};
    core::Recipe edited = core::withLayerSetting(recipe, ls[1].name, w2);
    auto after = core::resolveAssignment(edited, ls);
    for (std::size_t i = 0; i < ls.size(); ++i)
        QVERIFY(i == 1 ? after[i] == w2 : after[i] == before[i]);
    // Editing the same layer again replaces its entry instead of growing the recipe.
    edited = core::withLayerSetting(edited, ls[1].name, LayerSetting{});
    QCOMPARE(edited.layers.size(), std::size_t(1));
    QVERIFY(core::resolveAssignment(edited, ls)[1].dense);
    // Naming the head brings it in.
    edited = core::withLayerSetting(edited, QStringLiteral("lm_head"), w2);
    QVERIFY(core::resolveAssignment(edited, ls)[4] == w2);
}

void TestLayerAssignment::recipeFromAssignmentRoundTrips()
{
    const auto ls = layers();
    std::vector<LayerSetting> want = {{false, QStringLiteral("rtn"), {8, 0, false}},
                                      {false, QStringLiteral("gptq"), {3, 64, false}},
                                      {},
                                      {false, QStringLiteral("rtn"), {2, 64, true}},
                                      {}};
    const core::Recipe r = core::recipeFromAssignment(core::Recipe{}, ls, want);
    // Through JSON, as a project file or `compress --recipe` sees it.
    auto back = core::Recipe::fromJson(r.toJson(), QStringLiteral("inline"));
    QVERIFY(back);
    const auto got = core::resolveAssignment(*back, ls);
    for (std::size_t i = 0; i < ls.size(); ++i)
        QVERIFY2(got[i] == want[i], qPrintable(got[i].label() + QStringLiteral(" vs ") + want[i].label()));
}

void TestLayerAssignment::bytesByHand()
{
    const AssignableLayer down{QStringLiteral("d"), 256, 768, false};
    // 3-bit asymmetric, groups of 64: 256·12 = 3072 groups; codes 256·768·3, fp16 scales, 3-bit zeros.
    QCOMPARE(core::layerBytes(down, {false, QStringLiteral("rtn"), {3, 64, false}}, 0),
             (256.0 * 768 * 3 + 3072 * 16 + 3072 * 3) / 8);
    // 8-bit per channel symmetric: one fp16 scale per row, no zeros.
    QCOMPARE(core::layerBytes(down, {false, QStringLiteral("rtn"), {8, 0, true}}, 0), (256.0 * 768 * 8 + 256 * 16) / 8);
    // Per tensor: one group.
    QCOMPARE(core::layerBytes(down, {false, QStringLiteral("rtn"), {4, -1, false}}, 0), (256.0 * 768 * 4 + 16 + 4) / 8);
    QCOMPARE(core::layerBytes(down, LayerSetting{}, 393216.0), 393216.0);
}

void TestLayerAssignment::labels()
{
    QCOMPARE((LayerSetting{false, QStringLiteral("gptq"), {4, 128, false}}.label()), QStringLiteral("gptq:w4g128"));
    QCOMPARE((LayerSetting{false, QStringLiteral("rtn"), {8, 0, false}}.label()), QStringLiteral("rtn:w8"));
    QCOMPARE(LayerSetting{}.label(), QStringLiteral("dense"));
    // The same spelling as the sensitivity settings, so labels parse back.
    auto parsed = core::parseSensitivitySettings(QStringLiteral("gptq:w3g64"));
    QVERIFY(parsed);
    QVERIFY((LayerSetting::fromSensitivity(parsed->front()) == LayerSetting{false, QStringLiteral("gptq"), {3, 64, false}}));
}

QTEST_GUILESS_MAIN(TestLayerAssignment)
#include "tst_layerassignment.moc"
