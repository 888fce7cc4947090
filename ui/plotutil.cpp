// plotutil.cpp: export (QCustomPlot's PNG/PDF writers, SVG through QSvgGenerator) and colours.
#include "plotutil.h"

#include <QApplication>
#include <QFileDialog>
#include <QDir>
#include <QFileInfo>
#include <QMenu>
#include <QPalette>
#include <QSvgGenerator>
#include <qcustomplot.h>

namespace bitsmith::ui {

bool exportPlot(QCustomPlot *plot, const QString &path)
{
    const QString suffix = QFileInfo(path).suffix().toLower();
    if (!QFileInfo(path).absoluteDir().exists() || plot->width() <= 0 || plot->height() <= 0)
        return false;
    // Written to a temporary name and renamed: a failure never leaves half a file behind.
    const QString tmp = path + QStringLiteral(".part");
    bool ok = false;
    if (suffix == QLatin1String("png")) {
        ok = plot->savePng(tmp);
    } else if (suffix == QLatin1String("pdf")) {
        ok = plot->savePdf(tmp);
    } else if (suffix == QLatin1String("svg")) {
        QSvgGenerator svg;
        svg.setFileName(tmp);
        svg.setSize(plot->size());
        svg.setViewBox(QRect(QPoint(0, 0), plot->size()));
        svg.setTitle(QStringLiteral("Bitsmith plot"));
        QCPPainter painter;
        if (painter.begin(&svg)) {
            plot->toPainter(&painter, plot->width(), plot->height());
            ok = painter.end();
        }
    }
    if (!ok) {
        QFile::remove(tmp);
        return false;
    }
    QFile::remove(path);
    return QFile::rename(tmp, path);
}

void installExportMenu(QCustomPlot *plot)
{
    plot->setContextMenuPolicy(Qt::CustomContextMenu);
    QObject::connect(plot, &QWidget::customContextMenuRequested, plot, [plot](const QPoint &pos) {
        QMenu menu(plot);
        for (const char *fmt : {"PNG", "SVG", "PDF"}) {
            const QString f = QString::fromLatin1(fmt);
            menu.addAction(QObject::tr("Export as %1…").arg(f), plot, [plot, f] {
                const QString path = QFileDialog::getSaveFileName(
                    plot, QObject::tr("Export Plot"), QStringLiteral("plot.%1").arg(f.toLower()),
                    QStringLiteral("%1 (*.%2)").arg(f, f.toLower()));
                if (!path.isEmpty())
                    exportPlot(plot, path);
            });
        }
        menu.exec(plot->mapToGlobal(pos));
    });
}

void applyPlotPalette(QCustomPlot *plot)
{
    const QPalette pal = QApplication::palette();
    const QColor bg = pal.color(QPalette::Base);
    const QColor fg = pal.color(QPalette::Text);
    QColor grid = fg;
    grid.setAlpha(40);
    plot->setBackground(bg);
    for (QCPAxisRect *rect : plot->axisRects())
        for (QCPAxis *axis : rect->axes()) {
            axis->setBasePen(QPen(fg));
            axis->setTickPen(QPen(fg));
            axis->setSubTickPen(QPen(fg));
            axis->setTickLabelColor(fg);
            axis->setLabelColor(fg);
            axis->grid()->setPen(QPen(grid, 1, Qt::DotLine));
        }
    // Colour scales keep their own axis outside the plot's axis rects.
    for (QCPLayoutElement *e : plot->plotLayout()->elements(true))
        if (auto *scale = qobject_cast<QCPColorScale *>(e)) {
            QCPAxis *axis = scale->axis();
            axis->setBasePen(QPen(fg));
            axis->setTickPen(QPen(fg));
            axis->setSubTickPen(QPen(fg));
            axis->setTickLabelColor(fg);
            axis->setLabelColor(fg);
        } else if (auto *title = qobject_cast<QCPTextElement *>(e)) {
            title->setTextColor(fg);
        }
    if (plot->legend) {
        plot->legend->setBrush(bg);
        plot->legend->setTextColor(fg);
        plot->legend->setBorderPen(QPen(grid));
    }
}

} // namespace bitsmith::ui
