// tst_mainwindow.cpp: the main window end to end, offscreen: asynchronous loading of a tiny Llama
// folder written here, the layer table (rows, sorting, filtering), the summary, a broken folder
// that must end in an error state (not a crash or a hanging dialog), cancellation, and grab().
#include "core/safetensors.h"
#include "ui/formatting.h"
#include "ui/layerbrowserwidget.h"
#include "ui/layertablemodel.h"
#include "ui/mainwindow.h"
#include "ui/modelsummarywidget.h"

#include <QDir>
#include <QFile>
#include <QLabel>
#include <QLineEdit>
#include <QMessageBox>
#include <QProgressBar>
#include <QSemaphore>
#include <QSignalSpy>
#include <QSortFilterProxyModel>
#include <QTableView>
#include <QTemporaryDir>
#include <QTest>
#include <QThreadPool>
#include <QtConcurrent/QtConcurrentRun>

#include <algorithm>
#include <set>

using namespace bitsmith;

namespace {

struct TensorSpec
{
    QString name;
    std::vector<std::int64_t> shape;
    std::int64_t numel() const
    {
        std::int64_t n = 1;
        for (auto d : shape)
            n *= d;
        return n;
    }
};

// Sizes chosen so that numeric and text order differ (16384 vs 8192) and the kv projections are
// narrower than q (grouped-query attention), as in real Llama checkpoints.
constexpr int hidden = 64, intermediate = 128, layers = 2, heads = 4, kvHeads = 2, vocab = 256;

std::vector<TensorSpec> tinyLlamaTensors()
{
    const std::int64_t h = hidden, i = intermediate, v = vocab;
    const std::int64_t kv = static_cast<std::int64_t>(kvHeads) * (hidden / heads);
    std::vector<TensorSpec> t;
    t.push_back({QStringLiteral("model.embed_tokens.weight"), {v, h}});
    for (int b = 0; b < layers; ++b) {
        const QString p = QStringLiteral("model.layers.%1.").arg(b);
        t.push_back({p + QStringLiteral("input_layernorm.weight"), {h}});
        t.push_back({p + QStringLiteral("self_attn.q_proj.weight"), {h, h}});
        t.push_back({p + QStringLiteral("self_attn.k_proj.weight"), {kv, h}});
        t.push_back({p + QStringLiteral("self_attn.v_proj.weight"), {kv, h}});
        t.push_back({p + QStringLiteral("self_attn.o_proj.weight"), {h, h}});
        t.push_back({p + QStringLiteral("post_attention_layernorm.weight"), {h}});
        t.push_back({p + QStringLiteral("mlp.gate_proj.weight"), {i, h}});
        t.push_back({p + QStringLiteral("mlp.up_proj.weight"), {i, h}});
        t.push_back({p + QStringLiteral("mlp.down_proj.weight"), {h, i}});
    }
    t.push_back({QStringLiteral("model.norm.weight"), {h}});
    t.push_back({QStringLiteral("lm_head.weight"), {v, h}});
    return t;
}

bool writeFile(const QString &path, const QByteArray &bytes)
{
    QFile f(path);
    return f.open(QIODevice::WriteOnly) && f.write(bytes) == bytes.size();
}

QByteArray llamaConfig(const char *architecture)
{
    return QStringLiteral(R"({
  "architectures": ["%1"],
  "model_type": "llama",
  "hidden_size": %2,
  "intermediate_size": %3,
  "num_hidden_layers": %4,
  "num_attention_heads": %5,
  "num_key_value_heads": %6,
  "vocab_size": %7,
  "max_position_embeddings": 128,
  "rope_theta": 10000.0,
  "rms_norm_eps": 1e-5,
  "hidden_act": "silu",
  "tie_word_embeddings": false,
  "torch_dtype": "float32"
})")
        .arg(QLatin1String(architecture))
        .arg(hidden)
        .arg(intermediate)
        .arg(layers)
        .arg(heads)
        .arg(kvHeads)
        .arg(vocab)
        .toUtf8();
}

// Writes config.json + model.safetensors (f32, small deterministic values); no tokenizer.json.
bool writeTinyLlama(const QString &folder, const char *architecture)
{
    if (!QDir().mkpath(folder) || !writeFile(folder + QStringLiteral("/config.json"),
                                             llamaConfig(architecture)))
        return false;
    const auto specs = tinyLlamaTensors();
    std::vector<std::vector<float>> storage;
    std::vector<core::TensorToWrite> tensors;
    storage.reserve(specs.size());
    for (const TensorSpec &s : specs) {
        auto &data = storage.emplace_back(static_cast<std::size_t>(s.numel()));
        for (std::size_t k = 0; k < data.size(); ++k)
            data[k] = 0.01f * static_cast<float>(static_cast<int>(k % 17) - 8);
        tensors.push_back({s.name, core::DType::F32, s.shape, std::as_bytes(std::span(data))});
    }
    return core::writeSafetensors(folder + QStringLiteral("/model.safetensors"), tensors).has_value();
}

} // namespace

class TestMainWindow : public QObject
{
    Q_OBJECT

private slots:
    void initTestCase();
    void loadIsAsynchronous();
    void tableHasOneRowPerWeight();
    void sortsParametersNumerically();
    void filterMatchesNameAndKind();
    void summaryShowsModel();
    void brokenFolderGivesErrorState();
    void cancelStopsLoading();
    void grabRendersWindow();

private:
    // Opens `folder` in `w` and waits for the load to end; returns loadFinished's argument.
    bool load(ui::MainWindow &w, const QString &folder);

    QTemporaryDir m_tmp;
    QString m_good;
    QString m_broken;
    std::vector<TensorSpec> m_specs;
};

void TestMainWindow::initTestCase()
{
    QVERIFY(m_tmp.isValid());
    m_good = m_tmp.filePath(QStringLiteral("tiny-llama"));
    m_broken = m_tmp.filePath(QStringLiteral("unknown-arch"));
    QVERIFY(writeTinyLlama(m_good, "LlamaForCausalLM"));
    QVERIFY(writeTinyLlama(m_broken, "FancyNewForCausalLM"));
    m_specs = tinyLlamaTensors();
}

bool TestMainWindow::load(ui::MainWindow &w, const QString &folder)
{
    QSignalSpy finished(&w, &ui::MainWindow::loadFinished);
    w.openModel(folder);
    if (!finished.wait(20000) || finished.size() != 1)
        return false;
    return finished.first().first().toBool();
}

void TestMainWindow::loadIsAsynchronous()
{
    ui::MainWindow w;
    w.show();
    QSignalSpy finished(&w, &ui::MainWindow::loadFinished);
    w.openModel(m_good);
    // openModel() has returned, yet nothing has finished: the result can only arrive through
    // the event loop, which the window keeps running.
    QVERIFY(w.isLoading());
    QCOMPARE(finished.size(), 0);
    QVERIFY(w.findChild<QProgressBar *>(QStringLiteral("loadProgress"))->isVisible());
    QVERIFY(finished.wait(20000));
    QCOMPARE(finished.first().first().toBool(), true);
    QVERIFY(!w.isLoading());
    QVERIFY(!w.findChild<QProgressBar *>(QStringLiteral("loadProgress"))->isVisible());
    QVERIFY(w.model());
    QVERIFY(w.windowTitle().contains(QDir::toNativeSeparators(w.model()->folder())));
}

void TestMainWindow::tableHasOneRowPerWeight()
{
    ui::MainWindow w;
    QVERIFY(load(w, m_good));
    const ui::LayerTableModel *table = w.layerBrowser()->tableModel();
    QCOMPARE(table->rowCount(), static_cast<int>(m_specs.size()));
    QCOMPARE(w.layerBrowser()->tableView()->model()->rowCount(), static_cast<int>(m_specs.size()));
    // Checkpoint order, names, shapes and parameter counts as written.
    for (int r = 0; r < table->rowCount(); ++r) {
        const TensorSpec &s = m_specs[static_cast<std::size_t>(r)];
        QCOMPARE(table->index(r, ui::LayerTableModel::NameColumn).data().toString(), s.name);
        QCOMPARE(table->index(r, ui::LayerTableModel::ShapeColumn).data().toString(),
                 ui::formatShape(s.shape));
        QCOMPARE(table->index(r, ui::LayerTableModel::ParametersColumn)
                     .data(ui::LayerTableModel::SortRole)
                     .toLongLong(),
                 s.numel());
        QCOMPARE(table->index(r, ui::LayerTableModel::DTypeColumn).data().toString(),
                 QStringLiteral("F32"));
        QCOMPARE(table->index(r, ui::LayerTableModel::BytesColumn)
                     .data(ui::LayerTableModel::SortRole)
                     .toLongLong(),
                 s.numel() * 4);
        QVERIFY(!table->index(r, ui::LayerTableModel::NameColumn).data(Qt::ToolTipRole).toString().isEmpty());
    }
    QCOMPARE(table->index(1, ui::LayerTableModel::KindColumn).data().toString(),
             QStringLiteral("attn.norm"));
    QCOMPARE(table->index(1, ui::LayerTableModel::BlockColumn).data().toString(), QStringLiteral("0"));
    QCOMPARE(table->index(2, ui::LayerTableModel::ShapeColumn).data().toString(),
             QStringLiteral("64 × 64"));
    QCOMPARE(table->headerData(ui::LayerTableModel::ShareColumn, Qt::Horizontal).toString(),
             QStringLiteral("% of model"));
}

void TestMainWindow::sortsParametersNumerically()
{
    ui::MainWindow w;
    QVERIFY(load(w, m_good));
    QTableView *view = w.layerBrowser()->tableView();
    const QAbstractItemModel *proxy = view->model();
    const int col = ui::LayerTableModel::ParametersColumn;
    view->sortByColumn(col, Qt::DescendingOrder);

    std::int64_t largest = 0;
    for (const TensorSpec &s : m_specs)
        largest = std::max(largest, s.numel());
    // 16384 first: a text sort would have put "8192" first.
    QCOMPARE(proxy->index(0, col).data(ui::LayerTableModel::SortRole).toLongLong(), largest);
    QCOMPARE(proxy->index(0, col).data().toString(), ui::formatCount(largest));
    for (int r = 1; r < proxy->rowCount(); ++r)
        QVERIFY(proxy->index(r - 1, col).data(ui::LayerTableModel::SortRole).toLongLong()
                >= proxy->index(r, col).data(ui::LayerTableModel::SortRole).toLongLong());

    view->sortByColumn(col, Qt::AscendingOrder);
    QCOMPARE(proxy->index(0, col).data(ui::LayerTableModel::SortRole).toLongLong(), hidden);

    // Names sort with numbers by value: the embedding, then layer 0 before layer 1.
    view->sortByColumn(ui::LayerTableModel::NameColumn, Qt::AscendingOrder);
    QCOMPARE(proxy->index(0, 0).data().toString(), QStringLiteral("lm_head.weight"));
    QCOMPARE(proxy->index(1, 0).data().toString(), QStringLiteral("model.embed_tokens.weight"));
    QVERIFY(proxy->index(2, 0).data().toString().startsWith(QStringLiteral("model.layers.0.")));
}

void TestMainWindow::filterMatchesNameAndKind()
{
    ui::MainWindow w;
    QVERIFY(load(w, m_good));
    ui::LayerBrowserWidget *browser = w.layerBrowser();
    const QAbstractItemModel *proxy = browser->tableView()->model();
    QLineEdit *edit = w.findChild<QLineEdit *>(QStringLiteral("layerFilter"));
    QVERIFY(edit);

    QTest::keyClicks(edit, QStringLiteral("mlp.down"));
    QCOMPARE(proxy->rowCount(), layers);
    for (int r = 0; r < proxy->rowCount(); ++r)
        QVERIFY(proxy->index(r, 0).data().toString().endsWith(QStringLiteral("mlp.down_proj.weight")));

    browser->setFilterText(QStringLiteral("MLP.DOWN")); // case-insensitive
    QCOMPARE(proxy->rowCount(), layers);
    browser->setFilterText(QStringLiteral("attn.")); // kinds attn.norm/q/k/v/o; names say self_attn
    QCOMPARE(proxy->rowCount(), 5 * layers);
    browser->setFilterText(QStringLiteral("lm_head"));
    QCOMPARE(proxy->rowCount(), 1);
    browser->setFilterText(QStringLiteral("no such tensor"));
    QCOMPARE(proxy->rowCount(), 0);
    browser->setFilterText({});
    QCOMPARE(proxy->rowCount(), static_cast<int>(m_specs.size()));
}

void TestMainWindow::summaryShowsModel()
{
    ui::MainWindow w;
    QVERIFY(load(w, m_good));
    std::int64_t total = 0;
    for (const TensorSpec &s : m_specs)
        total += s.numel();
    QCOMPARE(w.model()->totalParameters(), total);
    const ui::ModelSummaryWidget *summary = w.summaryWidget();
    QVERIFY2(summary->fieldText(QStringLiteral("totalParameters")).contains(ui::formatCount(total)),
             qPrintable(summary->fieldText(QStringLiteral("totalParameters"))));
    QCOMPARE(summary->fieldText(QStringLiteral("architecture")), QStringLiteral("LlamaForCausalLM"));
    QCOMPARE(summary->fieldText(QStringLiteral("layers")), QString::number(layers));
    QVERIFY(summary->fieldText(QStringLiteral("heads")).startsWith(QStringLiteral("4 / 2 KV")));
    QVERIFY(summary->fieldText(QStringLiteral("tokenizer")).startsWith(QStringLiteral("none")));
    QVERIFY(summary->fieldText(QStringLiteral("dtype")).startsWith(QStringLiteral("F32")));
    // The status bar names the model.
    QCOMPARE(w.findChild<QLabel *>(QStringLiteral("statusModel"))->text(),
             QStringLiteral("tiny-llama"));
    QVERIFY(summary->findChild<QWidget *>(QStringLiteral("blockChart")));
}

void TestMainWindow::brokenFolderGivesErrorState()
{
    ui::MainWindow w;
    w.show();
    QVERIFY(!load(w, m_broken)); // returns: the error dialog does not block the event loop
    QVERIFY(w.lastError().has_value());
    QCOMPARE(w.lastError()->code, core::ErrorCode::Unsupported);
    QVERIFY(!w.model());
    QCOMPARE(w.layerBrowser()->tableModel()->rowCount(), 0);
    QCOMPARE(w.windowTitle(), QStringLiteral("Bitsmith"));

    auto *box = w.findChild<QMessageBox *>(QStringLiteral("loadErrorBox"));
    QVERIFY(box);
    QVERIFY(box->isVisible());
    QVERIFY2(box->text().contains(QStringLiteral("unsupported architecture")), qPrintable(box->text()));
    QVERIFY(box->informativeText().startsWith(QStringLiteral("HINT:")));
    box->close();

    // A missing folder is an error too, and the window recovers with a good one.
    QVERIFY(!load(w, m_tmp.filePath(QStringLiteral("does-not-exist"))));
    QCOMPARE(w.lastError()->code, core::ErrorCode::Io);
    if (auto *again = w.findChild<QMessageBox *>(QStringLiteral("loadErrorBox")))
        again->close();
    QVERIFY(load(w, m_good));
    QVERIFY(!w.lastError().has_value());
    QCOMPARE(w.layerBrowser()->tableModel()->rowCount(), static_cast<int>(m_specs.size()));

    // Without dialogs (the --screenshot mode) a failure only sets lastError().
    ui::MainWindow quiet;
    quiet.setErrorDialogsEnabled(false);
    QVERIFY(!load(quiet, m_broken));
    QVERIFY(!quiet.findChild<QMessageBox *>(QStringLiteral("loadErrorBox")));
}

void TestMainWindow::cancelStopsLoading()
{
    // Hold the thread pool so that the worker cannot start before the cancel: deterministic.
    QThreadPool *pool = QThreadPool::globalInstance();
    const int oldMax = pool->maxThreadCount();
    pool->setMaxThreadCount(1);
    QSemaphore release;
    QSemaphore running;
    auto blocker = QtConcurrent::run([&] {
        running.release();
        release.acquire();
    });
    running.acquire();

    ui::MainWindow w;
    w.show();
    QSignalSpy finished(&w, &ui::MainWindow::loadFinished);
    w.openModel(m_good);
    auto *cancel = w.findChild<QWidget *>(QStringLiteral("cancelButton"));
    QVERIFY(cancel && cancel->isVisible() && cancel->isEnabled());
    QTest::mouseClick(cancel, Qt::LeftButton);
    release.release();
    blocker.waitForFinished();

    QVERIFY(finished.wait(20000));
    pool->setMaxThreadCount(oldMax);
    QCOMPARE(finished.first().first().toBool(), false);
    QVERIFY(w.lastError().has_value());
    QCOMPARE(w.lastError()->code, core::ErrorCode::Cancelled);
    QVERIFY(!w.findChild<QMessageBox *>(QStringLiteral("loadErrorBox"))); // not an error to report
    QVERIFY(!w.isLoading());
    QVERIFY(!cancel->isVisible());
}

void TestMainWindow::grabRendersWindow()
{
    ui::MainWindow w;
    w.resize(1000, 700);
    QVERIFY(load(w, m_good));
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    const QImage image = w.grab().toImage();
    QVERIFY(!image.isNull());
    QCOMPARE(image.size(), w.size() * w.devicePixelRatio());
    // Something was drawn: a blank window has one or two colours, text and bars have many.
    std::set<QRgb> colours;
    for (int y = 0; y < image.height(); y += 3)
        for (int x = 0; x < image.width(); x += 3)
            colours.insert(image.pixel(x, y));
    QVERIFY2(colours.size() > 20, qPrintable(QString::number(colours.size())));
}

QTEST_MAIN(TestMainWindow)
#include "tst_mainwindow.moc"
