// tst_report.cpp: the HTML report (ui/reportwriter.h), offscreen: an experiment over a tiny
// random model written by hand (known layer names, costs rising as bits fall), and a project with
// a recipe and a measured point. Checks the sections, the layer table, the escaping of text taken
// from the file, the embedded PNGs (decoded back, of real size and not blank), the recipe's source
// and the clear errors for corrupt or missing input (no output file left behind).
#include "ui/reportwriter.h"

#include "core/experiment.h"
#include "core/layerassignment.h"
#include "core/model.h"
#include "core/project.h"
#include "core/sensitivity.h"

#include "tinymodel.h"

#include <QApplication>
#include <QImage>
#include <QRegularExpression>
#include <QSet>
#include <QTemporaryDir>
#include <QtTest>

#include <cmath>

using namespace bitsmith;

namespace {

// A hand-made sweep: per layer l and setting s (bits b), cost = (l+1) · 4^(8−b) · 1e-4, so the
// cells span orders of magnitude and every layer prefers more bits; bytes from the formats.
core::SensitivityResult handMadeResult(const core::Model &model, const QString &folder)
{
    core::SensitivityResult r;
    r.settings = *core::parseSensitivitySettings(QStringLiteral("rtn:w2g32,rtn:w4g32,rtn:w8"));
    for (const core::AssignableLayer &l : core::assignableLayers(model))
        if (!l.isHead) {
            r.layers.push_back(l.name);
            r.parameters.push_back(l.parameters());
        }
    const std::size_t L = r.layers.size(), S = r.settings.size();
    for (auto *m : {&r.bytes, &r.deltaLoss, &r.kl, &r.perplexity, &r.relativeError, &r.hessianError, &r.activationError,
                    &r.hutchinsonError})
        m->assign(L * S, 0.0);
    r.hutchinsonTrace.assign(L, std::nan(""));
    for (std::size_t l = 0; l < L; ++l)
        for (std::size_t s = 0; s < S; ++s) {
            const int bits = r.settings[s].format.bits;
            const double cost = static_cast<double>(l + 1) * std::pow(4.0, 8 - bits) * 1e-4;
            const std::size_t i = l * S + s;
            const double groups = r.settings[s].format.groupSize > 0 ? 32.0 / r.settings[s].format.groupSize : 1.0;
            r.bytes[i] = static_cast<double>(r.parameters[l]) * bits / 8.0 + groups * 4.0 * 8;
            r.kl[i] = cost;
            r.deltaLoss[i] = cost * 1.1;
            r.perplexity[i] = 50.0 * std::exp(cost);
            r.relativeError[i] = std::pow(2.0, -2.0 * bits) * (1.0 + 0.1 * static_cast<double>((l * 7) % 5));
            r.hessianError[i] = cost * (1.0 + 0.05 * static_cast<double>(l % 3));
            r.activationError[i] = r.hessianError[i] / 2;
            r.hutchinsonError[i] = std::nan("");
        }
    r.baseLoss = std::log(50.0);
    r.basePerplexity = 50.0;
    r.ctx = 32;
    r.windows = 2;
    r.calibSequences = 4;
    r.calibLength = 32;
    r.modelFolder = folder;
    r.modelHash = model.weightsHash();
    r.evalText = QStringLiteral("eval <b>&\"quoted\".txt"); // must come out escaped
    r.calibText = QStringLiteral("calib.txt");
    r.seconds = 12.5;
    r.measureSeconds = 3.25;
    r.naiveSecondsEstimate = 321.0;
    return r;
}

// The images embedded in the HTML, decoded.
QList<QImage> embeddedImages(const QString &html)
{
    QList<QImage> out;
    static const QRegularExpression re(QStringLiteral("src=\"data:image/png;base64,([A-Za-z0-9+/=]+)\""));
    for (auto it = re.globalMatch(html); it.hasNext();) {
        const QByteArray png = QByteArray::fromBase64(it.next().captured(1).toLatin1());
        QImage img;
        img.loadFromData(png, "PNG");
        out << img;
    }
    return out;
}

int distinctColours(const QImage &img)
{
    QSet<QRgb> colours;
    for (int y = 0; y < img.height(); y += 3)
        for (int x = 0; x < img.width(); x += 3)
            colours.insert(img.pixel(x, y));
    return static_cast<int>(colours.size());
}

} // namespace

class TestReport : public QObject
{
    Q_OBJECT

private slots:
    void initTestCase();
    void experimentReport();
    void projectReport();
    void corruptInput();

private:
    QTemporaryDir m_dir;
    QString m_modelFolder;
    QString m_experiment;
    std::optional<core::SensitivityResult> m_result;
};

void TestReport::initTestCase()
{
    QVERIFY(m_dir.isValid());
    m_modelFolder = m_dir.filePath(QStringLiteral("tiny"));
    test::TinySpec spec;
    QVERIFY(test::writeTinyModel(m_modelFolder, spec));
    auto model = core::Model::load(m_modelFolder);
    QVERIFY2(model, model ? "" : qPrintable(model.error().toString()));
    m_result = handMadeResult(**model, m_modelFolder);
    QCOMPARE(m_result->layers.size(), std::size_t(14)); // 2 blocks × q k v o gate up down
    m_experiment = m_dir.filePath(QStringLiteral("exp.h5"));
    QVERIFY(core::saveSensitivityExperiment(*m_result, m_experiment));
}

void TestReport::experimentReport()
{
    ui::ReportOptions options;
    options.input = m_experiment;
    options.plotWidth = 700;
    options.plotHeight = 500;
    const QString out = m_dir.filePath(QStringLiteral("report.html"));
    auto summary = ui::writeReport(options, out);
    QVERIFY2(summary, summary ? "" : qPrintable(summary.error().toString()));
    QCOMPARE(summary->layers, 14);
    QCOMPARE(summary->settings, 3);
    QVERIFY(summary->frontierPoints > 2);
    QCOMPARE(summary->measuredPoints, 0);
    QVERIFY(summary->recipeSource.contains(QStringLiteral("allocation at 4.50")));

    QFile f(out);
    QVERIFY(f.open(QIODevice::ReadOnly));
    const QString html = QString::fromUtf8(f.readAll());
    QCOMPARE(f.size(), summary->htmlBytes);
    QVERIFY(html.startsWith(QStringLiteral("<!DOCTYPE html>")));
    QVERIFY(html.trimmed().endsWith(QStringLiteral("</html>")));
    for (const char *id : {"model", "data", "recipe", "sensitivity", "frontier", "measured", "timings"})
        QVERIFY2(html.contains(QStringLiteral("id=\"%1\"").arg(QLatin1String(id))), id);
    // Every table row opened is closed: a cheap well-formedness check of the generated markup.
    QCOMPARE(html.count(QStringLiteral("<tr>")), html.count(QStringLiteral("</tr>")));
    QCOMPARE(html.count(QStringLiteral("<table>")), html.count(QStringLiteral("</table>")));
    // The recipe table: one row per layer, with its name and one of the candidate settings.
    for (const QString &layer : m_result->layers) {
        static const QRegularExpression rowRe(QStringLiteral("<tr><td>([^<]+)</td><td>([^<]+)</td>"));
        bool found = false;
        for (auto it = rowRe.globalMatch(html); it.hasNext();) {
            const auto m = it.next();
            if (m.captured(1) == layer) {
                found = true;
                QVERIFY2(QStringList({"rtn:w2g32", "rtn:w4g32", "rtn:w8"}).contains(m.captured(2)), qPrintable(m.captured(2)));
            }
        }
        QVERIFY2(found, qPrintable(layer));
    }
    // Text from the file is escaped; the raw markup never appears.
    QVERIFY(html.contains(QStringLiteral("eval &lt;b&gt;&amp;&quot;quoted&quot;.txt")));
    QVERIFY(!html.contains(QStringLiteral("eval <b>")));
    // Figures from the file: base perplexity, sweep time, naive estimate.
    QVERIFY(html.contains(QStringLiteral("50.00")));
    QVERIFY(html.contains(QStringLiteral("12.5 s")));
    QVERIFY(html.contains(QStringLiteral("321.0 s")));
    // Proxy correlations: the Hessian proxy is a near-monotone function of KL here (rank ~1).
    QVERIFY(html.contains(QStringLiteral("Hessian-weighted error")));

    // Three plots (heatmap, proxy map, frontier): real PNGs at the requested size, not blank.
    const QList<QImage> images = embeddedImages(html);
    QCOMPARE(images.size(), 3);
    for (const QImage &img : images) {
        QVERIFY(!img.isNull());
        QVERIFY2(img.width() >= 300 && img.height() >= 200, qPrintable(QStringLiteral("%1x%2").arg(img.width()).arg(img.height())));
        QVERIFY2(distinctColours(img) > 20, qPrintable(QString::number(distinctColours(img))));
    }
    QCOMPARE(images[2].width(), 700);
    QCOMPARE(images[2].height(), 500);
}

void TestReport::projectReport()
{
    auto model = core::Model::load(m_modelFolder);
    QVERIFY(model);
    core::Project p;
    p.modelReference = m_modelFolder;
    p.sensitivity = *m_result;
    p.recipe.defaultFormat = core::QuantFormat{8, 0, false}; // every layer rtn:w8
    core::MeasuredPoint mp;
    mp.kind = QStringLiteral("recipe");
    mp.label = QStringLiteral("my <measured> point");
    mp.bytes = 40000;
    mp.bitsPerWeight = 8.1;
    mp.kl = 0.0042;
    mp.perplexity = 50.21;
    p.measured.push_back(mp);
    const QString path = m_dir.filePath(QStringLiteral("project.bsproj"));
    QVERIFY(core::saveProject(p, path));

    ui::ReportOptions options;
    options.input = path;
    options.plotWidth = 600;
    options.plotHeight = 400;
    ui::ReportSummary summary;
    auto html = ui::renderReportHtml(options, &summary);
    QVERIFY2(html, html ? "" : qPrintable(html.error().toString()));
    QCOMPARE(summary.recipeSource, QStringLiteral("the project's recipe"));
    QCOMPARE(summary.measuredPoints, 1);
    QVERIFY(html->contains(QStringLiteral("my &lt;measured&gt; point")));
    QVERIFY(html->contains(QStringLiteral("50.21")));
    // Every layer of the table at rtn:w8 (the recipe's default), none at the other settings.
    QCOMPARE(html->count(QStringLiteral("<td>rtn:w8</td>")), 14);
    QVERIFY(!html->contains(QStringLiteral("<td>rtn:w2g32</td>")));
    QCOMPARE(embeddedImages(*html).size(), 3);
}

void TestReport::corruptInput()
{
    // Not HDF5 at all.
    const QString bad = m_dir.filePath(QStringLiteral("corrupt.h5"));
    {
        QFile f(bad);
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write(QByteArray(4096, 'x'));
    }
    const QString out = m_dir.filePath(QStringLiteral("never.html"));
    ui::ReportOptions options;
    options.input = bad;
    auto r = ui::writeReport(options, out);
    QVERIFY(!r);
    QCOMPARE(r.error().code, core::ErrorCode::Format);
    QVERIFY(r.error().toString().contains(QStringLiteral("corrupt.h5")));
    QVERIFY(!QFile::exists(out));

    // A truncated experiment.
    QFile good(m_experiment);
    QVERIFY(good.open(QIODevice::ReadOnly));
    const QByteArray bytes = good.readAll();
    const QString truncated = m_dir.filePath(QStringLiteral("truncated.h5"));
    {
        QFile f(truncated);
        QVERIFY(f.open(QIODevice::WriteOnly));
        f.write(bytes.left(bytes.size() / 2));
    }
    options.input = truncated;
    r = ui::writeReport(options, out);
    QVERIFY(!r);
    QVERIFY(r.error().code == core::ErrorCode::Format || r.error().code == core::ErrorCode::Io);
    QVERIFY(!QFile::exists(out));

    // Missing file.
    options.input = m_dir.filePath(QStringLiteral("missing.h5"));
    r = ui::writeReport(options, out);
    QVERIFY(!r);
    QCOMPARE(r.error().code, core::ErrorCode::Io);

    // A model that cannot be loaded: the error says how to name it.
    options.input = m_experiment;
    options.model = m_dir.filePath(QStringLiteral("no-such-model"));
    r = ui::writeReport(options, out);
    QVERIFY(!r);
    QVERIFY(!r.error().hintLine().isEmpty());
    QVERIFY(!QFile::exists(out));
}

QTEST_MAIN(TestReport)
#include "tst_report.moc"
