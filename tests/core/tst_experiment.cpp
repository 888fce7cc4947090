// tst_experiment: the HDF5 experiment file round trip, and truncated / garbage / foreign files
// giving a clear Error (no crash, nothing printed by HDF5).
#include "core/experiment.h"

#include <QDir>
#include <QFile>
#include <QTemporaryDir>
#include <QTest>

#include <hdf5.h>

#include <cmath>
#include <cstdio>
#include <unistd.h>

using namespace bitsmith::core;

namespace {

SensitivityResult sample()
{
    SensitivityResult r;
    r.layers = {QStringLiteral("model.layers.0.self_attn.q_proj"), QStringLiteral("model.layers.0.mlp.down_proj")};
    r.parameters = {65536, 196608};
    r.settings = *parseSensitivitySettings(QStringLiteral("rtn:w2g64,gptq:w4g128,rtn:w8"));
    const std::size_t n = r.layers.size() * r.settings.size();
    for (auto *m : {&r.bytes, &r.deltaLoss, &r.kl, &r.perplexity, &r.relativeError, &r.hessianError, &r.activationError,
                    &r.hutchinsonError})
        for (std::size_t i = 0; i < n; ++i)
            m->push_back(0.25 * static_cast<double>(i) + static_cast<double>(m - &r.bytes));
    r.hessianError[1] = std::nan("");
    r.baseLoss = 3.25;
    r.basePerplexity = std::exp(3.25);
    r.ctx = 128;
    r.windows = 4;
    r.calibSequences = 32;
    r.calibLength = 128;
    r.seed = 42;
    r.modelHash = QStringLiteral("sha256:abc");
    r.modelFolder = QStringLiteral("/models/tiny ü");
    r.evalText = QStringLiteral("eval.txt");
    r.calibText = QString();
    r.seconds = 12.5;
    r.measureSeconds = 10;
    r.naiveSecondsEstimate = 200;
    r.naiveScriptSecondsEstimate = 900;
    r.naiveTimingSeconds = 3;
    r.quantizeSeconds = 1.5;
    r.hutchinsonSeconds = 7;
    r.hutchinsonProbes = 2;
    r.hutchinsonTrace = {0.75, std::nan("")};
    return r;
}

} // namespace

class TestExperiment : public QObject
{
    Q_OBJECT
    QTemporaryDir m_dir;

    QString path(const char *name) const { return m_dir.filePath(QString::fromLatin1(name)); }

private slots:
    void roundTrip()
    {
        const SensitivityResult r = sample();
        QVERIFY(saveSensitivityExperiment(r, path("exp.h5")));
        QCOMPARE(QDir(m_dir.path()).entryList(QDir::Files).size(), 1);
        // Saving again replaces it.
        QVERIFY(saveSensitivityExperiment(r, path("exp.h5")));
        auto l = loadSensitivityExperiment(path("exp.h5"));
        QVERIFY2(l, qPrintable(l ? QString() : l.error().toString()));
        QCOMPARE(l->layers, r.layers);
        QCOMPARE(l->parameters, r.parameters);
        QCOMPARE(l->settings.size(), r.settings.size());
        for (std::size_t i = 0; i < r.settings.size(); ++i) {
            QCOMPARE(l->settings[i].label(), r.settings[i].label());
            QVERIFY(l->settings[i].format == r.settings[i].format);
        }
        QCOMPARE(l->bytes, r.bytes);
        QCOMPARE(l->deltaLoss, r.deltaLoss);
        QCOMPARE(l->kl, r.kl);
        QCOMPARE(l->perplexity, r.perplexity);
        QCOMPARE(l->relativeError, r.relativeError);
        QVERIFY(std::isnan(l->hessianError[1]));
        QCOMPARE(l->activationError, r.activationError);
        QCOMPARE(l->baseLoss, r.baseLoss);
        QCOMPARE(l->basePerplexity, r.basePerplexity);
        QCOMPARE(l->ctx, 128);
        QCOMPARE(l->windows, 4);
        QCOMPARE(l->calibSequences, 32);
        QCOMPARE(l->calibLength, 128);
        QCOMPARE(l->seed, std::uint64_t(42));
        QCOMPARE(l->modelHash, r.modelHash);
        QCOMPARE(l->modelFolder, r.modelFolder);
        QCOMPARE(l->evalText, r.evalText);
        QCOMPARE(l->calibText, QString());
        QCOMPARE(l->naiveSecondsEstimate, 200.0);
        QCOMPARE(l->naiveScriptSecondsEstimate, 900.0);
        QCOMPARE(l->naiveTimingSeconds, 3.0);
        QCOMPARE(l->quantizeSeconds, 1.5);
        QCOMPARE(l->hutchinsonSeconds, 7.0);
        QCOMPARE(l->hutchinsonProbes, 2);
        QCOMPARE(l->hutchinsonError, r.hutchinsonError);
        QCOMPARE(l->hutchinsonTrace.size(), std::size_t(2));
        QCOMPARE(l->hutchinsonTrace[0], 0.75);
        QVERIFY(std::isnan(l->hutchinsonTrace[1]));
    }

    void badFiles()
    {
        const SensitivityResult r = sample();
        QVERIFY(saveSensitivityExperiment(r, path("good.h5")));
        QFile good(path("good.h5"));
        QVERIFY(good.open(QIODevice::ReadOnly));
        const QByteArray bytes = good.readAll();

        // Capture stderr to check that HDF5 prints nothing.
        std::fflush(stderr);
        const int saved = dup(2);
        FILE *capture = std::tmpfile();
        dup2(fileno(capture), 2);

        auto missing = loadSensitivityExperiment(path("nothere.h5"));
        QFile garbage(path("garbage.h5"));
        garbage.open(QIODevice::WriteOnly);
        garbage.write(QByteArray(5000, 'x'));
        garbage.close();
        auto g = loadSensitivityExperiment(path("garbage.h5"));
        std::vector<std::pair<qsizetype, bool>> cuts = {{bytes.size() / 2, false}, {bytes.size() - 100, false},
                                                         {600, false}, {8, false}};
        int truncatedErrors = 0;
        for (auto &cut : cuts) {
            QFile t(path("trunc.h5"));
            t.open(QIODevice::WriteOnly | QIODevice::Truncate);
            t.write(bytes.left(cut.first));
            t.close();
            auto e = loadSensitivityExperiment(path("trunc.h5"));
            if (!e && (e.error().code == ErrorCode::Format || e.error().code == ErrorCode::Io))
                ++truncatedErrors;
        }
        // A valid HDF5 file that is not an experiment.
        {
            const QByteArray n = QFile::encodeName(path("other.h5"));
            hid_t f = H5Fcreate(n.constData(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
            H5Fclose(f);
        }
        auto other = loadSensitivityExperiment(path("other.h5"));
        // Unwritable target.
        auto unwritable = saveSensitivityExperiment(r, path("no/such/dir/exp.h5"));

        std::fflush(stderr);
        dup2(saved, 2);
        close(saved);
        std::rewind(capture);
        char buf[256] = {};
        const std::size_t printed = std::fread(buf, 1, sizeof buf - 1, capture);
        std::fclose(capture);

        QVERIFY(!missing);
        QCOMPARE(missing.error().code, ErrorCode::Io);
        QVERIFY(!g);
        QCOMPARE(g.error().code, ErrorCode::Format);
        QVERIFY(g.error().message.contains(QStringLiteral("HDF5")));
        QCOMPARE(g.error().file, path("garbage.h5"));
        QCOMPARE(truncatedErrors, int(cuts.size()));
        QVERIFY(!other);
        QCOMPARE(other.error().code, ErrorCode::Format);
        QVERIFY(other.error().message.contains(QStringLiteral("magic")));
        QVERIFY(!unwritable);
        QCOMPARE(unwritable.error().code, ErrorCode::Io);
        QVERIFY2(printed == 0, buf);
    }
};

QTEST_GUILESS_MAIN(TestExperiment)
#include "tst_experiment.moc"
