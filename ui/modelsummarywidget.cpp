// modelsummarywidget.cpp: summary fields and the parameters-per-block chart.
#include "modelsummarywidget.h"

#include "formatting.h"

#include <QDir>
#include <QFileInfo>
#include <QFormLayout>
#include <QLabel>
#include <QVBoxLayout>

#include <qcustomplot.h>

#include <algorithm>
#include <set>

namespace bitsmith::ui {

namespace {

const QColor blockColor(70, 130, 180);  // steel blue: the repeated transformer blocks
const QColor outerColor(226, 140, 60);  // orange: embedding and head stand out

QString tokenizerKindName(core::Tokenizer::Kind kind)
{
    switch (kind) {
    case core::Tokenizer::Kind::ByteLevelBpe: return QStringLiteral("byte-level BPE");
    case core::Tokenizer::Kind::SentencePieceBpe: return QStringLiteral("SentencePiece BPE");
    }
    return QStringLiteral("unknown");
}

} // namespace

ModelSummaryWidget::ModelSummaryWidget(QWidget *parent)
    : QWidget(parent)
    , m_title(new QLabel(this))
    , m_placeholder(new QLabel(this))
    , m_details(new QWidget(this))
    , m_form(new QFormLayout)
    , m_chartCaption(new QLabel(m_details))
    , m_chart(new QCustomPlot(m_details))
{
    QFont titleFont = m_title->font();
    titleFont.setBold(true);
    titleFont.setPointSizeF(titleFont.pointSizeF() * 1.15);
    m_title->setFont(titleFont);
    m_title->setObjectName(QStringLiteral("summaryTitle"));
    m_title->setTextInteractionFlags(Qt::TextSelectableByMouse);
    m_title->setWordWrap(true);

    m_placeholder->setObjectName(QStringLiteral("summaryPlaceholder"));
    m_placeholder->setWordWrap(true);
    m_placeholder->setAlignment(Qt::AlignTop | Qt::AlignLeft);
    m_placeholder->setText(tr("No model loaded.\n\nUse File → Open… to choose a Hugging Face "
                              "model folder (config.json + safetensors), or File → Open "
                              "Default Model."));

    m_form->setLabelAlignment(Qt::AlignRight);
    m_form->setFieldGrowthPolicy(QFormLayout::AllNonFixedFieldsGrow);
    m_form->setHorizontalSpacing(12);
    m_form->setVerticalSpacing(4);
    addField(QStringLiteral("architecture"), tr("Architecture"), tr("From config.json"));
    addField(QStringLiteral("layers"), tr("Layers"), tr("Transformer blocks"));
    addField(QStringLiteral("hiddenSize"), tr("Hidden size"), tr("Width of the residual stream"));
    addField(QStringLiteral("mlpSize"), tr("MLP size"), tr("Intermediate size of the SwiGLU MLP"));
    addField(QStringLiteral("heads"), tr("Heads"),
             tr("Query heads / key-value heads (grouped-query attention when fewer) and the "
                "dimension of each head"));
    addField(QStringLiteral("vocabulary"), tr("Vocabulary"), tr("Rows of the embedding matrix"));
    addField(QStringLiteral("context"), tr("Context"), tr("max_position_embeddings"));
    addField(QStringLiteral("ropeTheta"), tr("RoPE θ"), tr("Base of the rotary position embedding"));
    addField(QStringLiteral("totalParameters"), tr("Parameters"),
             tr("Elements of every weight tensor (a tied head counted once)"));
    addField(QStringLiteral("storedSize"), tr("Stored size"), tr("Bytes of the weights on disk"));
    addField(QStringLiteral("dtype"), tr("DType"),
             tr("Element types of the stored weights (and config.json's torch_dtype)"));
    addField(QStringLiteral("tokenizer"), tr("Tokenizer"), tr("From tokenizer.json"));

    m_chartCaption->setObjectName(QStringLiteral("summaryChartCaption"));
    m_chartCaption->setWordWrap(true);

    m_chart->setObjectName(QStringLiteral("blockChart"));
    m_chart->setMinimumHeight(200);
    m_chart->setMaximumHeight(280);
    m_chart->setBackground(palette().brush(QPalette::Window));
    m_chart->setInteractions({}); // a glance, not an analysis tool: no panning or zooming
    QFont tickFont = font();
    tickFont.setPointSizeF(tickFont.pointSizeF() * 0.85);
    m_chart->xAxis->setTickLabelFont(tickFont);
    m_chart->yAxis->setTickLabelFont(tickFont);
    m_chart->yAxis->setLabelFont(tickFont);
    m_chart->xAxis->setTicker(QSharedPointer<QCPAxisTickerText>::create());
    m_chart->xAxis->grid()->setVisible(false);
    m_chart->xAxis->setTickLength(0, 3);
    m_chart->xAxis->setSubTicks(false);
    m_chart->yAxis->setSubTicks(false);
    m_chart->yAxis->grid()->setPen(QPen(QColor(0, 0, 0, 30), 1, Qt::DotLine));
    m_chart->axisRect()->setAutoMargins(QCP::msLeft | QCP::msBottom);
    m_chart->axisRect()->setMargins(QMargins(0, 8, 8, 0));
    m_blockBars = new QCPBars(m_chart->xAxis, m_chart->yAxis);
    m_blockBars->setPen(Qt::NoPen);
    m_blockBars->setBrush(blockColor);
    m_blockBars->setWidth(0.7);
    m_outerBars = new QCPBars(m_chart->xAxis, m_chart->yAxis);
    m_outerBars->setPen(Qt::NoPen);
    m_outerBars->setBrush(outerColor);
    m_outerBars->setWidth(0.7);

    auto *detailsLayout = new QVBoxLayout(m_details);
    detailsLayout->setContentsMargins(0, 0, 0, 0);
    detailsLayout->addLayout(m_form);
    detailsLayout->addSpacing(10);
    detailsLayout->addWidget(m_chartCaption);
    detailsLayout->addWidget(m_chart);

    auto *layout = new QVBoxLayout(this);
    layout->setContentsMargins(10, 8, 10, 8);
    layout->addWidget(m_title);
    layout->addSpacing(4);
    layout->addWidget(m_placeholder);
    layout->addWidget(m_details);
    layout->addStretch(1);

    setModel(nullptr);
}

void ModelSummaryWidget::addField(const QString &key, const QString &label, const QString &toolTip)
{
    auto *value = new QLabel(m_details);
    value->setObjectName(QStringLiteral("summary_") + key);
    value->setTextInteractionFlags(Qt::TextSelectableByMouse);
    value->setToolTip(toolTip);
    auto *name = new QLabel(label + QLatin1Char(':'), m_details);
    name->setToolTip(toolTip);
    QPalette dim = name->palette();
    dim.setColor(QPalette::WindowText, dim.color(QPalette::PlaceholderText));
    name->setPalette(dim);
    m_form->addRow(name, value);
    m_fields.insert(key, value);
}

void ModelSummaryWidget::setField(const QString &key, const QString &text)
{
    if (QLabel *l = m_fields.value(key))
        l->setText(text);
}

QString ModelSummaryWidget::fieldText(const QString &key) const
{
    const QLabel *l = m_fields.value(key);
    return l ? l->text() : QString();
}

void ModelSummaryWidget::setModel(std::shared_ptr<const core::Model> model)
{
    m_model = std::move(model);
    m_placeholder->setVisible(!m_model);
    m_details->setVisible(m_model != nullptr);
    m_title->setText(m_model ? QFileInfo(m_model->folder()).fileName() : tr("Model"));
    m_title->setToolTip(m_model ? QDir::toNativeSeparators(m_model->folder()) : QString());
    updateFields();
    updateChart();
}

void ModelSummaryWidget::updateFields()
{
    if (!m_model) {
        for (QLabel *l : std::as_const(m_fields))
            l->clear();
        return;
    }
    const core::ModelConfig &c = m_model->config();
    setField(QStringLiteral("architecture"), c.architectureName);
    setField(QStringLiteral("layers"), QString::number(c.numLayers));
    setField(QStringLiteral("hiddenSize"), formatCount(c.hiddenSize));
    setField(QStringLiteral("mlpSize"), formatCount(c.intermediateSize));
    setField(QStringLiteral("heads"), tr("%1 / %2 KV, %3 dims each")
                                          .arg(c.numHeads)
                                          .arg(c.numKvHeads)
                                          .arg(c.headDim));
    setField(QStringLiteral("vocabulary"),
             formatCount(c.vocabSize)
                 + (c.tieWordEmbeddings ? tr(" (head tied to embedding)") : QString()));
    setField(QStringLiteral("context"),
             tr("%1 tokens").arg(formatCount(c.maxPositions))
                 + (c.slidingWindow > 0 ? tr(", sliding window %1%2")
                                              .arg(c.slidingWindow)
                                              .arg(c.slidingLayers.empty()
                                                       ? QString()
                                                       : tr(" on %1 of %2 layers")
                                                             .arg(std::count(c.slidingLayers.begin(), c.slidingLayers.end(), true))
                                                             .arg(c.numLayers))
                                        : QString()));
    setField(QStringLiteral("ropeTheta"),
             QString::number(c.ropeTheta, 'g', 10)
                 + (c.ropeScaling.type == core::RopeType::Default
                        ? QString()
                        : c.ropeScaling.factor > 0
                            ? tr(" (%1 scaling, factor %2)").arg(QLatin1String(core::ropeTypeName(c.ropeScaling.type))).arg(c.ropeScaling.factor)
                            : tr(" (%1 scaling)").arg(QLatin1String(core::ropeTypeName(c.ropeScaling.type)))));

    const std::int64_t params = m_model->totalParameters();
    setField(QStringLiteral("totalParameters"),
             QStringLiteral("%1 (%2)").arg(formatCount(params), formatCompactCount(params)));
    const std::int64_t bytes = m_model->totalStoredBytes();
    setField(QStringLiteral("storedSize"),
             QString::number(static_cast<double>(bytes) / (1024.0 * 1024.0), 'f', 2)
                 + QStringLiteral(" MiB"));

    std::set<QString> types;
    for (const core::WeightInfo &w : m_model->weights())
        types.insert(QLatin1String(core::dtypeName(w.storedType)));
    QStringList typeList(types.begin(), types.end());
    QString dtype = typeList.join(QStringLiteral(", "));
    if (!c.torchDtype.isEmpty())
        dtype += tr(" (config: %1)").arg(c.torchDtype);
    setField(QStringLiteral("dtype"), dtype);

    if (const auto tok = m_model->tokenizer())
        setField(QStringLiteral("tokenizer"), tr("%1, %2 tokens")
                                                  .arg(tokenizerKindName(tok->kind()),
                                                       formatCount(tok->vocabSize())));
    else
        setField(QStringLiteral("tokenizer"), tr("none (no tokenizer.json)"));
}

void ModelSummaryWidget::updateChart()
{
    QVector<double> blockKeys, blockValues, outerKeys, outerValues;
    auto ticker = QSharedPointer<QCPAxisTickerText>::create();
    if (m_model) {
        const int n = m_model->config().numLayers;
        std::vector<double> perBlock(static_cast<std::size_t>(n), 0.0);
        double embedding = 0, head = 0;
        for (const core::WeightInfo &w : m_model->weights()) {
            if (w.block >= 0 && w.block < n)
                perBlock[static_cast<std::size_t>(w.block)] += static_cast<double>(w.parameters);
            else if (w.role == core::WeightRole::Embedding)
                embedding += static_cast<double>(w.parameters);
            else
                head += static_cast<double>(w.parameters); // final norm and lm_head
        }
        // One unit for the whole axis keeps the tick labels short ("12.5", not "12500000").
        const double maxValue = std::max({embedding, head,
                                          perBlock.empty() ? 0.0
                                                           : *std::max_element(perBlock.begin(),
                                                                               perBlock.end())});
        double scale = 1;
        QString unit = tr("parameters");
        if (maxValue >= 1e6) {
            scale = 1e6;
            unit = tr("parameters (M)");
        } else if (maxValue >= 1e4) {
            scale = 1e3;
            unit = tr("parameters (K)");
        }
        // Blocks sit at 0..n-1 under their own numbers; the embedding and the head stand apart
        // by a wider gap so that their labels never collide with the block numbers.
        const double embKey = -1.5, headKey = n + 0.5;
        outerKeys << embKey << headKey;
        outerValues << embedding / scale << head / scale;
        for (int i = 0; i < n; ++i) {
            blockKeys << i;
            blockValues << perBlock[static_cast<std::size_t>(i)] / scale;
        }
        // Label every block while they fit, else every k-th.
        const int step = n <= 12 ? 1 : n <= 24 ? 2 : n <= 48 ? 4 : 8;
        ticker->addTick(embKey, tr("emb"));
        for (int i = 0; i < n; i += step)
            ticker->addTick(i, QString::number(i));
        ticker->addTick(headKey, tr("head"));
        m_chart->xAxis->setRange(embKey - 0.7, headKey + 0.7);
        m_chart->yAxis->setRange(0, maxValue > 0 ? maxValue / scale * 1.08 : 1);
        m_chart->yAxis->setLabel(unit);
        m_chartCaption->setText(
            m_model->config().tieWordEmbeddings
                ? tr("Parameters per block (head tied to the embedding)")
                : tr("Parameters per block"));
    }
    m_blockBars->setData(blockKeys, blockValues, true);
    m_outerBars->setData(outerKeys, outerValues, true);
    m_chart->xAxis->setTicker(ticker);
    m_chart->replot(QCustomPlot::rpQueuedReplot);
}

} // namespace bitsmith::ui
