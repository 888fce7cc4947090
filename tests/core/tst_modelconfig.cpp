// tst_modelconfig: config.json parsing of the supported families and the errors for bad ones.
#include "core/modelconfig.h"

#include <QTest>

using namespace bitsmith::core;

class TestModelConfig : public QObject
{
    Q_OBJECT

private slots:
    void llama()
    {
        auto c = ModelConfig::fromJson(R"({"architectures":["LlamaForCausalLM"],"model_type":"llama",
            "vocab_size":32000,"hidden_size":4096,"intermediate_size":11008,"num_hidden_layers":32,
            "num_attention_heads":32,"num_key_value_heads":8,"max_position_embeddings":4096,
            "rope_theta":500000.0,"rms_norm_eps":1e-5,"tie_word_embeddings":false,"bos_token_id":1,
            "eos_token_id":[2,3],"hidden_act":"silu","torch_dtype":"bfloat16"})",
                                       QStringLiteral("config.json"));
        QVERIFY2(c, qPrintable(c ? QString() : c.error().toString()));
        QCOMPARE(c->architecture, Architecture::Llama);
        QCOMPARE(c->headDim, 128);
        QCOMPARE(c->numKvHeads, 8);
        QCOMPARE(c->ropeTheta, 500000.0);
        QCOMPARE(c->rmsNormEps, 1e-5);
        QCOMPARE(c->eosTokenId, 2);
        QVERIFY(!c->attentionBias);
        // Llama-2-7B-like shapes: 6.74 B parameters
        auto l2 = ModelConfig::fromJson(R"({"architectures":["LlamaForCausalLM"],"vocab_size":32000,"hidden_size":4096,
            "intermediate_size":11008,"num_hidden_layers":32,"num_attention_heads":32})",
                                        QStringLiteral("config.json"));
        QVERIFY(l2);
        QCOMPARE(l2->parameterCount(), qint64(6738415616));
    }

    void qwen2AlwaysHasQkvBias()
    {
        auto c = ModelConfig::fromJson(R"({"architectures":["Qwen2ForCausalLM"],"vocab_size":151936,"hidden_size":896,
            "intermediate_size":4864,"num_hidden_layers":24,"num_attention_heads":14,"num_key_value_heads":2,
            "tie_word_embeddings":true,"rope_theta":1000000.0,"use_sliding_window":false,"sliding_window":32768})",
                                       QStringLiteral("config.json"));
        QVERIFY(c);
        QCOMPARE(c->architecture, Architecture::Qwen2);
        QVERIFY(c->attentionBias);
        QVERIFY(!c->outputBias);
        QVERIFY(c->tieWordEmbeddings);
        QCOMPARE(c->slidingWindow, 0);
        // Qwen2-0.5B: 494 M parameters (tied)
        QCOMPARE(c->parameterCount(), qint64(494032768));
    }

    void transformers5RopeParameters()
    {
        auto c = ModelConfig::fromJson(R"({"architectures":["MistralForCausalLM"],"vocab_size":100,"hidden_size":64,
            "intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,
            "rope_parameters":{"rope_type":"default","rope_theta":12345.0},"sliding_window":4096})",
                                       QStringLiteral("config.json"));
        QVERIFY(c);
        QCOMPARE(c->ropeTheta, 12345.0);
        QCOMPARE(c->slidingWindow, 4096);
    }

    void errors_data()
    {
        QTest::addColumn<QByteArray>("json");
        QTest::addColumn<int>("code");
        QTest::addColumn<QString>("parameter");
        QTest::addColumn<QString>("mention");
        const QByteArray base = R"("vocab_size":100,"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4)";
        QTest::newRow("not json") << QByteArray("{oops") << int(ErrorCode::Format) << QString() << QStringLiteral("JSON");
        QTest::newRow("unknown architecture") << QByteArray(R"({"architectures":["GPTNeoXForCausalLM"],)" + base + "}")
                                              << int(ErrorCode::Unsupported) << QStringLiteral("architectures")
                                              << QStringLiteral("GPTNeoXForCausalLM");
        QTest::newRow("missing hidden_size")
            << QByteArray(R"({"architectures":["LlamaForCausalLM"],"vocab_size":100,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4})")
            << int(ErrorCode::Format) << QStringLiteral("hidden_size") << QStringLiteral("hidden_size");
        QTest::newRow("heads not divisible")
            << QByteArray(R"({"architectures":["LlamaForCausalLM"],"num_key_value_heads":3,)" + base + "}")
            << int(ErrorCode::Format) << QStringLiteral("num_key_value_heads") << QStringLiteral("multiple");
        QTest::newRow("rope scaling")
            << QByteArray(R"({"architectures":["LlamaForCausalLM"],"rope_scaling":{"rope_type":"llama3","factor":8.0},)" + base + "}")
            << int(ErrorCode::Unsupported) << QStringLiteral("rope_scaling") << QStringLiteral("llama3");
        QTest::newRow("activation") << QByteArray(R"({"architectures":["LlamaForCausalLM"],"hidden_act":"gelu",)" + base + "}")
                                    << int(ErrorCode::Unsupported) << QStringLiteral("hidden_act") << QStringLiteral("gelu");
        QTest::newRow("fractional size")
            << QByteArray(R"({"architectures":["LlamaForCausalLM"],"vocab_size":100.5,"hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4})")
            << int(ErrorCode::Format) << QStringLiteral("vocab_size") << QStringLiteral("vocab_size");
    }

    void errors()
    {
        QFETCH(QByteArray, json);
        QFETCH(int, code);
        QFETCH(QString, parameter);
        QFETCH(QString, mention);
        auto c = ModelConfig::fromJson(json, QStringLiteral("/m/config.json"));
        QVERIFY(!c);
        QCOMPARE(int(c.error().code), code);
        QCOMPARE(c.error().file, QStringLiteral("/m/config.json"));
        if (!parameter.isEmpty())
            QCOMPARE(c.error().parameter, parameter);
        QVERIFY2(c.error().toString().contains(mention), qPrintable(c.error().toString()));
    }

    void missingFile()
    {
        auto c = ModelConfig::fromFile(QStringLiteral("/nonexistent/config.json"));
        QVERIFY(!c);
        QCOMPARE(c.error().code, ErrorCode::Io);
        QVERIFY(!c.error().hint.isEmpty());
    }
};

QTEST_GUILESS_MAIN(TestModelConfig)
#include "tst_modelconfig.moc"
