// reportwriter.cpp: loads the experiment / project into a ProjectDocument, lays the GUI's
// sensitivity and frontier views out offscreen, grabs their plots as PNG and writes the HTML.
#include "reportwriter.h"

#include "frontierwidget.h"
#include "jobmanager.h"
#include "projectdocument.h"
#include "sensitivitywidget.h"

#include "core/allocation.h" // allocationFrontier
#include "core/experiment.h" // loadSensitivityExperiment
#include "core/model.h"
#include "core/project.h"    // loadProject, isProjectFile
#include "core/recipe.h"

#include <QApplication>
#include <QBuffer>
#include <QDateTime>
#include <QDir>
#include <QFileInfo>
#include <QJsonDocument>
#include <QJsonObject>
#include <QPixmap>
#include <QSaveFile>
#include <qcustomplot.h>

#include <cmath>

namespace bitsmith::ui {

namespace {

using core::ErrorCode;
using core::fail;
using core::unexpected;

QString esc(const QString &s)
{
    return s.toHtmlEscaped();
}

QString num(double v, int decimals = 2)
{
    return std::isfinite(v) ? QString::number(v, 'f', decimals) : QStringLiteral("n/a");
}

QString gnum(double v, int digits = 4)
{
    return std::isfinite(v) ? QString::number(v, 'g', digits) : QStringLiteral("n/a");
}

QString mib(double bytes)
{
    return QStringLiteral("%1 MiB").arg(bytes / (1024.0 * 1024.0), 0, 'f', 2);
}

// The plot rendered at `size` (its laid-out size when invalid) as a data: URI <img>.
QString plotImage(QCustomPlot *plot, const QString &alt, QSize size = {})
{
    plot->replot(QCustomPlot::rpImmediateRefresh);
    if (!size.isValid())
        size = plot->size();
    const QPixmap pixmap = plot->toPixmap(size.width(), size.height());
    QByteArray png;
    QBuffer buffer(&png);
    buffer.open(QIODevice::WriteOnly);
    if (pixmap.isNull() || !pixmap.save(&buffer, "PNG"))
        return QStringLiteral("<p class=\"note\">(the plot could not be rendered)</p>");
    return QStringLiteral("<img alt=\"%1\" width=\"%2\" height=\"%3\" src=\"data:image/png;base64,%4\">")
        .arg(esc(alt))
        .arg(pixmap.width())
        .arg(pixmap.height())
        .arg(QString::fromLatin1(png.toBase64()));
}

QString row(const QStringList &cells, bool header = false)
{
    const QString tag = header ? QStringLiteral("th") : QStringLiteral("td");
    QString out = QStringLiteral("<tr>");
    for (const QString &c : cells)
        out += QStringLiteral("<%1>%2</%1>").arg(tag, esc(c));
    return out + QStringLiteral("</tr>\n");
}

// Lays a view out offscreen at `size` and lets its deferred work (queued replots, the resize
// re-labelling of the heatmap) run.
void layOut(QWidget *w, QSize size)
{
    w->setAttribute(Qt::WA_DontShowOnScreen);
    w->resize(size);
    w->show();
    for (int i = 0; i < 3; ++i)
        QCoreApplication::processEvents();
}

QString proxyTitle(const QString &key)
{
    if (key == QLatin1String("relative_error"))
        return QStringLiteral("relative error ‖ΔW‖²/‖W‖²");
    if (key == QLatin1String("hessian_error"))
        return QStringLiteral("Hessian-weighted error");
    if (key == QLatin1String("activation_error"))
        return QStringLiteral("imatrix (activation-weighted) error");
    if (key == QLatin1String("hutchinson_error"))
        return QStringLiteral("Hutchinson trace × ‖ΔW‖²");
    return key;
}

const char *kStyle = R"(body{font-family:sans-serif;margin:24px auto;max-width:1100px;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:2px;margin-top:1.6em}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f0f0f0}td.n{text-align:right}.note{color:#666;font-style:italic}img{max-width:100%;height:auto})";

} // namespace

core::Expected<QString> renderReportHtml(const ReportOptions &options, ReportSummary *summary, core::Feedback *feedback)
{
    if (!qobject_cast<QApplication *>(QCoreApplication::instance()))
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("the report needs a QApplication (it renders plots)")));
    if (feedback)
        feedback->setStatus(QStringLiteral("reading %1").arg(options.input));

    // ---- the input: a project (recipe, measured points) or a bare experiment ----
    core::Project project;
    bool isProject = false;
    if (core::isProjectFile(options.input)) {
        auto p = core::loadProject(options.input);
        if (!p)
            return unexpected(p.error());
        project = std::move(*p);
        isProject = true;
    } else {
        auto e = core::loadSensitivityExperiment(options.input);
        if (!e)
            return unexpected(e.error());
        project.modelReference = e->modelFolder;
        project.sensitivity = std::move(*e);
    }
    if (!project.sensitivity || project.sensitivity->layers.empty())
        return unexpected(fail(ErrorCode::Format, QStringLiteral("the file holds no sensitivity results"))
                              .inFile(options.input)
                              .withHint(QStringLiteral("run `bitsmith-cli sensitivity MODEL --out FILE.h5` first")));
    const core::SensitivityResult &r = *project.sensitivity;

    // ---- the model, and a compressed folder's recipe / report ----
    QString modelRef = project.modelReference;
    std::optional<core::Recipe> compressedRecipe;
    QJsonObject compressedReport;
    QString compressedFolder;
    if (!options.model.isEmpty()) {
        const QDir dir(options.model);
        if (QFileInfo(options.model).isDir() && dir.exists(QStringLiteral("recipe.json"))) {
            // A compressed folder: its recipe is tabulated; the dense model stays the experiment's.
            compressedFolder = options.model;
            auto recipe = core::Recipe::fromFile(dir.filePath(QStringLiteral("recipe.json")));
            if (!recipe)
                return unexpected(recipe.error());
            compressedRecipe = std::move(*recipe);
            QFile f(dir.filePath(QStringLiteral("report.json")));
            if (f.open(QIODevice::ReadOnly) && f.size() < (16 << 20))
                compressedReport = QJsonDocument::fromJson(f.readAll()).object();
        } else {
            modelRef = options.model;
        }
    }
    if (modelRef.isEmpty())
        modelRef = QStringLiteral("default");
    if (feedback)
        feedback->setStatus(QStringLiteral("loading the model %1").arg(modelRef));
    auto model = core::Model::load(modelRef, feedback);
    if (!model)
    {
        core::Error e = model.error();
        if (e.hint.isEmpty())
            e.hint = QStringLiteral("the report needs the experiment's model; name it with --model DIR");
        return unexpected(std::move(e));
    }

    ProjectDocument doc;
    doc.setModel(*model, modelRef, std::nullopt);
    QString recipeSource;
    if (compressedRecipe) {
        project.recipe = *compressedRecipe;
        recipeSource = QStringLiteral("the compressed folder's recipe.json (%1)").arg(compressedFolder);
    } else if (isProject) {
        recipeSource = QStringLiteral("the project's recipe");
    }
    if (isProject || compressedRecipe)
        doc.restoreProject(project);
    else
        doc.setSensitivity(project.sensitivity);
    if (doc.layerCount() == 0)
        return unexpected(fail(ErrorCode::Format, QStringLiteral("the model has no compressible layers")).inFile(modelRef));

    // The predicted frontier, computed here (the view would start a background job for it).
    auto curve = core::allocationFrontier(doc.allocationProblem(), 200);
    if (!curve)
        return unexpected(curve.error());
    doc.setFrontier(std::move(*curve));
    if (recipeSource.isEmpty()) {
        const double budget = doc.bytesForBitsPerWeight(options.defaultBitsPerWeight);
        if (doc.fillToBudget(budget))
            recipeSource = QStringLiteral("no recipe in the input: the exact allocation at %1 bits per weight (predicted)")
                               .arg(options.defaultBitsPerWeight, 0, 'f', 2);
        else
            recipeSource = QStringLiteral("no recipe in the input, and %1 bits per weight does not fit: the default recipe")
                               .arg(options.defaultBitsPerWeight, 0, 'f', 2);
    }
    // No layer is selected: the heatmap shows no selection rectangle, only the recipe's markers.

    // ---- the plots, by the GUI's views ----
    if (feedback)
        feedback->setStatus(QStringLiteral("rendering the plots"));
    const QSize plotSize(options.plotWidth, options.plotHeight);
    SensitivityWidget sensitivity(&doc);
    // The heatmap gets 3/5 of the view's width (its splitter); size the view so that it is plotSize.
    layOut(&sensitivity, QSize(options.plotWidth * 5 / 3, options.plotHeight * 4 / 3 + 40));
    const QString heatImg = plotImage(sensitivity.heatmap(), QStringLiteral("sensitivity heatmap"));
    sensitivity.setProxy(SensitivityMetric::HessianError);
    const QString proxyImg = plotImage(sensitivity.proxyPlot(), QStringLiteral("proxy heatmap"));
    JobManager jobs;
    FrontierWidget frontier(&doc, &jobs);
    layOut(&frontier, plotSize + QSize(8, 70));
    const QString frontierImg = plotImage(frontier.plot(), QStringLiteral("accuracy vs size"), plotSize);

    // ---- the HTML ----
    const core::Model &m = **model;
    const ProjectDocument::Totals &t = doc.totals();
    QString h;
    h += QStringLiteral("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>%1</title>\n<style>%2</style></head><body>\n")
             .arg(esc(QStringLiteral("Bitsmith report: %1").arg(QFileInfo(options.input).fileName())), QString::fromUtf8(kStyle));
    h += QStringLiteral("<h1>%1</h1>\n<p class=\"note\">%2</p>\n")
             .arg(esc(QStringLiteral("Bitsmith report: %1").arg(QFileInfo(options.input).fileName())),
                  esc(QStringLiteral("Written %1 by Bitsmith %2 from %3")
                          .arg(QDateTime::currentDateTimeUtc().toString(Qt::ISODate), QStringLiteral(BITSMITH_VERSION),
                               QFileInfo(options.input).absoluteFilePath())));

    h += QStringLiteral("<h2 id=\"model\">Model</h2>\n<table>\n");
    h += row({QStringLiteral("model"), modelRef});
    h += row({QStringLiteral("folder"), m.folder()});
    h += row({QStringLiteral("architecture"), m.config().architectureName});
    h += row({QStringLiteral("parameters"), QStringLiteral("%1 (%2 M)").arg(m.totalParameters()).arg(m.totalParameters() / 1e6, 0, 'f', 2)});
    h += row({QStringLiteral("stored size"), mib(static_cast<double>(m.totalStoredBytes()))});
    h += row({QStringLiteral("compressible layers"), QString::number(doc.layerCount())});
    h += row({QStringLiteral("weights hash"), r.modelHash});
    h += QStringLiteral("</table>\n");

    h += QStringLiteral("<h2 id=\"data\">Data</h2>\n<table>\n");
    h += row({QStringLiteral("evaluation text"), r.evalText.isEmpty() ? QStringLiteral("the model's eval.txt") : r.evalText});
    h += row({QStringLiteral("evaluation windows"), QStringLiteral("%1 × %2 tokens").arg(r.windows).arg(r.ctx)});
    h += row({QStringLiteral("calibration text"), r.calibText.isEmpty() ? QStringLiteral("the model's calib.txt") : r.calibText});
    h += row({QStringLiteral("calibration"), QStringLiteral("%1 sequences × %2 tokens, seed %3").arg(r.calibSequences).arg(r.calibLength).arg(r.seed)});
    h += row({QStringLiteral("base loss / perplexity"), QStringLiteral("%1 / %2").arg(num(r.baseLoss, 4), num(r.basePerplexity, 2))});
    h += row({QStringLiteral("candidates"), [&] {
                  QStringList l;
                  for (const auto &s : r.settings)
                      l << s.label();
                  return l.join(QStringLiteral(", "));
              }()});
    h += QStringLiteral("</table>\n");

    h += QStringLiteral("<h2 id=\"recipe\">Recipe</h2>\n<p>%1</p>\n").arg(esc(QStringLiteral("Source: %1.").arg(recipeSource)));
    h += QStringLiteral("<p>%1</p>\n").arg(esc(QStringLiteral("Compressible layers: %1 → %2 (%3 → %4 bits per weight); predicted %5 %6.")
                                                   .arg(mib(t.originalBytes), mib(t.bytes), num(t.originalBitsPerWeight, 3),
                                                        num(t.bitsPerWeight, 3), metricName(doc.costMetric()), gnum(t.predicted))));
    h += QStringLiteral("<table>\n");
    h += row({QStringLiteral("layer"), QStringLiteral("setting"), QStringLiteral("bits/weight"), QStringLiteral("size (KiB)"),
              QStringLiteral("predicted %1").arg(metricName(doc.costMetric()))}, true);
    for (int i = 0; i < doc.layerCount(); ++i) {
        const core::LayerSetting &s = doc.setting(i);
        const double bytes = doc.layerBytes(i, s);
        const auto &layer = doc.layers()[static_cast<std::size_t>(i)];
        const double params = static_cast<double>(layer.rows) * static_cast<double>(layer.cols);
        h += row({layer.name, s.label(), params > 0 ? num(8.0 * bytes / params, 3) : QStringLiteral("n/a"), num(bytes / 1024.0, 1),
                  gnum(doc.predictedCost(i, s))});
    }
    h += QStringLiteral("</table>\n");

    h += QStringLiteral("<h2 id=\"sensitivity\">Sensitivity</h2>\n<p>%1</p>\n%2\n")
             .arg(esc(QStringLiteral("%1 of compressing one layer at a time, per layer (rows) and candidate setting (columns); "
                                     "log colour scale. Circles mark the recipe's setting of each layer.")
                          .arg(metricName(sensitivity.metric()))),
                  heatImg);
    h += QStringLiteral("<p>%1</p>\n%2\n")
             .arg(esc(QStringLiteral("A proxy needing no evaluation pass (%1), for comparison.").arg(metricName(SensitivityMetric::HessianError))),
                  proxyImg);
    h += QStringLiteral("<h3>Proxy correlations</h3>\n<p>%1</p>\n<table>\n")
             .arg(esc(QStringLiteral("Spearman rank correlation of each proxy with the measured metrics over all cells.")));
    h += row({QStringLiteral("proxy"), QStringLiteral("with Δloss"), QStringLiteral("with KL")}, true);
    for (const core::ProxyCorrelation &c : core::proxyCorrelations(r))
        h += row({proxyTitle(c.proxy), num(c.withDeltaLoss, 3), num(c.withKl, 3)});
    h += QStringLiteral("</table>\n");

    h += QStringLiteral("<h2 id=\"frontier\">Accuracy vs size</h2>\n<p>%1</p>\n%2\n")
             .arg(esc(QStringLiteral("Predicted frontier (exact allocation swept over the budget, %1 points), uniform-precision "
                                     "baselines, measured points (%2) and saved configurations (%3); the red circle is the recipe above.")
                          .arg(doc.frontier().size())
                          .arg(doc.measuredPoints().size())
                          .arg(doc.savedConfigurations().size())),
                  frontierImg);

    h += QStringLiteral("<h2 id=\"measured\">Measured</h2>\n");
    if (doc.measuredPoints().empty() && compressedReport.isEmpty())
        h += QStringLiteral("<p class=\"note\">%1</p>\n").arg(esc(QStringLiteral("Nothing measured: the input holds no measured points "
                                                                               "(measure them in the GUI's Accuracy-vs-size view, or pass a compressed folder with --model).")));
    if (!doc.measuredPoints().empty()) {
        h += QStringLiteral("<table>\n");
        h += row({QStringLiteral("kind"), QStringLiteral("label"), QStringLiteral("size"), QStringLiteral("bits/weight"),
                  QStringLiteral("predicted"), QStringLiteral("KL"), QStringLiteral("Δloss"), QStringLiteral("perplexity")}, true);
        for (const core::MeasuredPoint &p : doc.measuredPoints())
            h += row({p.kind, p.label, mib(p.bytes), num(p.bitsPerWeight, 3), gnum(p.predicted), gnum(p.kl), gnum(p.deltaLoss),
                      num(p.perplexity, 2)});
        h += QStringLiteral("</table>\n");
    }
    if (!compressedReport.isEmpty()) {
        h += QStringLiteral("<p>%1</p>\n<table>\n").arg(esc(QStringLiteral("From %1/report.json:").arg(compressedFolder)));
        for (auto it = compressedReport.begin(); it != compressedReport.end(); ++it)
            if (it.value().isDouble() || it.value().isString() || it.value().isBool())
            {
                const double v = it.value().toDouble();
                // Byte counts as integers, not "7.34822e+06".
                const QString text = !it.value().isDouble()                             ? it.value().toVariant().toString()
                                     : (v == std::floor(v) && std::abs(v) < 1e15) ? QString::number(static_cast<qint64>(v))
                                                                                  : gnum(v, 6);
                h += row({it.key(), text});
            }
        h += QStringLiteral("</table>\n");
    }

    h += QStringLiteral("<h2 id=\"timings\">Sizes and timings</h2>\n<table>\n");
    h += row({QStringLiteral("model stored"), mib(static_cast<double>(m.totalStoredBytes()))});
    h += row({QStringLiteral("compressible layers, as stored"), mib(t.originalBytes)});
    h += row({QStringLiteral("compressible layers, recipe"), mib(t.bytes)});
    h += row({QStringLiteral("sweep (whole)"), QStringLiteral("%1 s").arg(num(r.seconds, 1))});
    h += row({QStringLiteral("cached measurements"), QStringLiteral("%1 s").arg(num(r.measureSeconds, 1))});
    h += row({QStringLiteral("quantizing every cell"), QStringLiteral("%1 s").arg(num(r.quantizeSeconds, 1))});
    h += row({QStringLiteral("Hutchinson traces"), QStringLiteral("%1 s").arg(num(r.hutchinsonSeconds, 1))});
    h += row({QStringLiteral("naive full forwards (estimate)"),
              r.naiveSecondsEstimate > 0 ? QStringLiteral("%1 s").arg(num(r.naiveSecondsEstimate, 1)) : QStringLiteral("not timed")});
    h += row({QStringLiteral("naive per-cell script (estimate)"),
              r.naiveScriptSecondsEstimate > 0 ? QStringLiteral("%1 s").arg(num(r.naiveScriptSecondsEstimate, 1)) : QStringLiteral("not timed")});
    h += QStringLiteral("</table>\n</body></html>\n");

    if (summary) {
        summary->layers = static_cast<int>(r.layers.size());
        summary->settings = static_cast<int>(r.settings.size());
        summary->frontierPoints = static_cast<int>(doc.frontier().size());
        summary->measuredPoints = static_cast<int>(doc.measuredPoints().size());
        summary->recipeSource = recipeSource;
    }
    return h;
}

core::Expected<ReportSummary> writeReport(const ReportOptions &options, const QString &outPath, core::Feedback *feedback)
{
    ReportSummary summary;
    auto html = renderReportHtml(options, &summary, feedback);
    if (!html)
        return unexpected(html.error());
    const QByteArray bytes = html->toUtf8();
    QSaveFile f(outPath);
    if (!f.open(QIODevice::WriteOnly) || f.write(bytes) != bytes.size() || !f.commit())
        return unexpected(fail(ErrorCode::Io, QStringLiteral("cannot write: %1").arg(f.errorString())).inFile(outPath));
    summary.htmlBytes = bytes.size();
    return summary;
}

} // namespace bitsmith::ui
