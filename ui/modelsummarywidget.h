// modelsummarywidget.h: the model at a glance: the config's sizes, parameter count, stored size,
// tokenizer, and a bar chart of where the parameters sit (embedding, each block, head).
#pragma once

#include "core/model.h"

#include <QHash>
#include <QWidget>

#include <memory>

class QCPBars;
class QCustomPlot;
class QFormLayout;
class QLabel;

namespace bitsmith::ui {

class ModelSummaryWidget : public QWidget
{
    Q_OBJECT

public:
    explicit ModelSummaryWidget(QWidget *parent = nullptr);

    // Shows `model` (null shows a hint on how to open one).
    void setModel(std::shared_ptr<const core::Model> model);

    // The text of one summary field, by key: "architecture", "layers", "hiddenSize", "mlpSize",
    // "heads", "vocabulary", "context", "ropeTheta", "totalParameters", "storedSize", "dtype",
    // "tokenizer". Empty for unknown keys. Tests and screen readers read the same text.
    QString fieldText(const QString &key) const;

    QCustomPlot *blockChart() const { return m_chart; }

private:
    void addField(const QString &key, const QString &label, const QString &toolTip);
    void setField(const QString &key, const QString &text);
    void updateFields();
    void updateChart();

    std::shared_ptr<const core::Model> m_model;
    QLabel *m_title = nullptr;
    QLabel *m_placeholder = nullptr;
    QWidget *m_details = nullptr;
    QFormLayout *m_form = nullptr;
    QHash<QString, QLabel *> m_fields;
    QLabel *m_chartCaption = nullptr;
    QCustomPlot *m_chart = nullptr;
    QCPBars *m_blockBars = nullptr; // transformer blocks
    QCPBars *m_outerBars = nullptr; // embedding and head, in a second colour
};

} // namespace bitsmith::ui
