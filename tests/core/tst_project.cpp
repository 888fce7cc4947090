// tst_project.cpp: the HDF5 project file (core/project.h): a full round trip (recipe, saved
// configurations, measured points, sensitivity results), a project is also a valid experiment
// file, a project without sensitivity, and broken files (truncated, not HDF5, an experiment that
// is not a project, a newer schema) giving clear errors; writes leave no temporary file and a
// failed write leaves the previous file intact.
#include "core/experiment.h"
#include "core/project.h"

#include <QDir>
#include <QFile>
#include <QTemporaryDir>
#include <QTest>

using namespace bitsmith;

namespace {

core::SensitivityResult smallResult()
{
    core::SensitivityResult r;
    r.layers = {QStringLiteral("model.layers.0.self_attn.q_proj"), QStringLiteral("model.layers.0.mlp.down_proj")};
    r.parameters = {65536, 196608};
    auto s = core::parseSensitivitySettings(QStringLiteral("rtn:w2g64,rtn:w4g128,gptq:w3g64"));
    r.settings = *s;
    const std::size_t n = r.layers.size() * r.settings.size();
    for (std::size_t i = 0; i < n; ++i) {
        r.bytes.push_back(1000.0 + static_cast<double>(i));
        r.deltaLoss.push_back(0.01 * static_cast<double>(i) - 0.005);
        r.kl.push_back(0.002 * static_cast<double>(i + 1));
        r.perplexity.push_back(30.0 + static_cast<double>(i));
        r.relativeError.push_back(1e-3 * static_cast<double>(i + 1));
        r.hessianError.push_back(2e-3 * static_cast<double>(i + 1));
        r.activationError.push_back(1e-3 * static_cast<double>(i + 1));
    }
    r.baseLoss = 3.4;
    r.basePerplexity = 29.96;
    r.ctx = 64;
    r.windows = 2;
    r.modelHash = QStringLiteral("sha256:abc");
    r.modelFolder = QStringLiteral("/models/x");
    r.evalText = QStringLiteral("/models/x/eval.txt");
    return r;
}

core::Project fullProject()
{
    core::Project p;
    p.modelReference = QStringLiteral("default");
    p.recipe.defaultTechnique = QStringLiteral("gptq");
    p.recipe.defaultFormat = {3, 64, false};
    core::RecipeEntry e;
    e.name = QStringLiteral("model.layers.0.mlp.down_proj");
    e.bits = 8;
    e.groupSize = 0;
    p.recipe.layers.push_back(e);
    core::SavedConfiguration s;
    s.name = QStringLiteral("Ünïcode name, 4 bits");
    s.recipe = p.recipe;
    s.bytes = 12345;
    s.bitsPerWeight = 4.156;
    s.predicted = 0.0123;
    s.created = QDateTime(QDate(2026, 11, 25), QTime(12, 0, 1, 250), Qt::UTC);
    p.saved.push_back(s);
    core::MeasuredPoint m;
    m.kind = QStringLiteral("uniform");
    m.label = QStringLiteral("rtn:w4g128");
    m.bytes = 2.5e6;
    m.bitsPerWeight = 4.156;
    m.predicted = 0.02;
    m.kl = 0.021;
    m.deltaLoss = 0.019;
    m.perplexity = 48.4;
    m.recipe = p.recipe;
    p.measured.push_back(m);
    p.sensitivity = smallResult();
    return p;
}

} // namespace

class TestProject : public QObject
{
    Q_OBJECT

private slots:
    void roundTrip();
    void projectIsAnExperiment();
    void withoutSensitivity();
    void brokenFiles();
    void failedWriteKeepsOldFile();

private:
    QTemporaryDir m_tmp;
};

void TestProject::roundTrip()
{
    const QString path = m_tmp.filePath(QStringLiteral("a.bsproj"));
    const core::Project p = fullProject();
    QVERIFY(core::saveProject(p, path));
    QVERIFY(core::isProjectFile(path));
    // Nothing left next to it.
    QCOMPARE(QDir(m_tmp.path()).entryList(QDir::Files), QStringList{QStringLiteral("a.bsproj")});
    auto q = core::loadProject(path);
    QVERIFY2(q, qPrintable(q ? QString() : q.error().toString()));
    QCOMPARE(q->modelReference, p.modelReference);
    QCOMPARE(q->recipe.toJson(), p.recipe.toJson());
    QCOMPARE(q->saved.size(), std::size_t(1));
    QCOMPARE(q->saved[0].name, p.saved[0].name);
    QCOMPARE(q->saved[0].recipe.toJson(), p.saved[0].recipe.toJson());
    QCOMPARE(q->saved[0].bitsPerWeight, 4.156);
    QCOMPARE(q->saved[0].created, p.saved[0].created);
    QCOMPARE(q->measured.size(), std::size_t(1));
    QCOMPARE(q->measured[0].perplexity, 48.4);
    QCOMPARE(q->measured[0].kl, 0.021);
    QCOMPARE(q->measured[0].kind, QStringLiteral("uniform"));
    QVERIFY(q->sensitivity);
    const core::SensitivityResult &a = *p.sensitivity, &b = *q->sensitivity;
    QCOMPARE(b.layers, a.layers);
    QCOMPARE(b.settings.size(), a.settings.size());
    for (std::size_t s = 0; s < a.settings.size(); ++s)
        QCOMPARE(b.settings[s].label(), a.settings[s].label());
    QCOMPARE(b.kl, a.kl);
    QCOMPARE(b.deltaLoss, a.deltaLoss);
    QCOMPARE(b.bytes, a.bytes);
    QCOMPARE(b.modelHash, a.modelHash);
    // Saving over an existing project replaces it.
    core::Project p2 = p;
    p2.saved.clear();
    QVERIFY(core::saveProject(p2, path));
    QCOMPARE(core::loadProject(path)->saved.size(), std::size_t(0));
}

void TestProject::projectIsAnExperiment()
{
    const QString path = m_tmp.filePath(QStringLiteral("exp.bsproj"));
    QVERIFY(core::saveProject(fullProject(), path));
    auto exp = core::loadSensitivityExperiment(path); // what `bitsmith-cli allocate PROJECT` reads
    QVERIFY2(exp, qPrintable(exp ? QString() : exp.error().toString()));
    QCOMPARE(exp->kl, fullProject().sensitivity->kl);
}

void TestProject::withoutSensitivity()
{
    const QString path = m_tmp.filePath(QStringLiteral("nosens.bsproj"));
    core::Project p = fullProject();
    p.sensitivity.reset();
    QVERIFY(core::saveProject(p, path));
    auto q = core::loadProject(path);
    QVERIFY(q);
    QVERIFY(!q->sensitivity);
    QCOMPARE(q->recipe.toJson(), p.recipe.toJson());
    QVERIFY(!core::loadSensitivityExperiment(path)); // not an experiment without results
}

void TestProject::brokenFiles()
{
    const QString good = m_tmp.filePath(QStringLiteral("good.bsproj"));
    QVERIFY(core::saveProject(fullProject(), good));
    QFile f(good);
    QVERIFY(f.open(QIODevice::ReadOnly));
    const QByteArray bytes = f.readAll();
    f.close();

    // Truncated at several places: a Format error (or Io), never a crash.
    for (double frac : {0.1, 0.5, 0.9, 0.99}) {
        const QString path = m_tmp.filePath(QStringLiteral("trunc.bsproj"));
        QFile t(path);
        QVERIFY(t.open(QIODevice::WriteOnly | QIODevice::Truncate));
        t.write(bytes.left(static_cast<qsizetype>(bytes.size() * frac)));
        t.close();
        auto r = core::loadProject(path);
        QVERIFY2(!r, qPrintable(QString::number(frac)));
        QVERIFY(r.error().code == core::ErrorCode::Format || r.error().code == core::ErrorCode::Io);
        QCOMPARE(r.error().file, path);
    }
    // Not HDF5.
    const QString text = m_tmp.filePath(QStringLiteral("text.bsproj"));
    QFile t(text);
    QVERIFY(t.open(QIODevice::WriteOnly));
    t.write("this is not a project\n");
    t.close();
    auto r = core::loadProject(text);
    QVERIFY(!r);
    QCOMPARE(r.error().code, core::ErrorCode::Format);
    QVERIFY(r.error().message.contains(QStringLiteral("HDF5")));
    QVERIFY(!core::isProjectFile(text));
    // An experiment file is not a project (the GUI opens it as an experiment instead).
    const QString exp = m_tmp.filePath(QStringLiteral("only.h5"));
    QVERIFY(core::saveSensitivityExperiment(smallResult(), exp));
    QVERIFY(!core::isProjectFile(exp));
    r = core::loadProject(exp);
    QVERIFY(!r);
    QVERIFY(r.error().message.contains(QStringLiteral("/project")));
    // Missing.
    r = core::loadProject(m_tmp.filePath(QStringLiteral("none.bsproj")));
    QVERIFY(!r);
    QCOMPARE(r.error().code, core::ErrorCode::Io);
}

void TestProject::failedWriteKeepsOldFile()
{
    const QString path = m_tmp.filePath(QStringLiteral("keep.bsproj"));
    QVERIFY(core::saveProject(fullProject(), path));
    // A folder that does not exist: the write fails with the path named.
    auto bad = core::saveProject(fullProject(), m_tmp.filePath(QStringLiteral("no/such/dir/x.bsproj")));
    QVERIFY(!bad);
    QCOMPARE(bad.error().code, core::ErrorCode::Io);
    // An invalid result (matrix of the wrong size) fails before anything replaces the old file.
    core::Project broken = fullProject();
    broken.sensitivity->kl.pop_back();
    QVERIFY(!core::saveProject(broken, path));
    auto q = core::loadProject(path);
    QVERIFY(q);
    QCOMPARE(q->saved.size(), std::size_t(1));
    QCOMPARE(QDir(m_tmp.path()).entryList({QStringLiteral("keep.bsproj*")}, QDir::Files), QStringList{QStringLiteral("keep.bsproj")});
}

QTEST_GUILESS_MAIN(TestProject)
#include "tst_project.moc"
