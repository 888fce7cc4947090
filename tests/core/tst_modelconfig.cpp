// tst_modelconfig: config.json parsing of the supported families and the errors for bad ones.
#include "core/modelconfig.h"

#include <QTest>

#include <cmath>

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

    // Llama 3.1's rope in the transformers 4.x spelling (rope_scaling + top-level rope_theta) and
    // the 5.x one (rope_parameters) parse to the same thing; the frequencies are Meta's formula
    // (high frequencies kept, low ones divided by the factor, smooth in between).
    void llama3RopeBothSpellings()
    {
        const QByteArray base = R"("architectures":["LlamaForCausalLM"],"vocab_size":100,"hidden_size":128,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":1,"max_position_embeddings":131072)";
        auto v4 = ModelConfig::fromJson("{" + base + R"(,"rope_theta":500000.0,"rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192}})", QStringLiteral("c"));
        auto v5 = ModelConfig::fromJson("{" + base + R"(,"rope_parameters":{"rope_type":"llama3","rope_theta":500000.0,"factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192}})", QStringLiteral("c"));
        QVERIFY2(v4, v4 ? "" : qPrintable(v4.error().toString()));
        QVERIFY2(v5, v5 ? "" : qPrintable(v5.error().toString()));
        for (const ModelConfig *c : {&*v4, &*v5}) {
            QCOMPARE(c->ropeScaling.type, RopeType::Llama3);
            QCOMPARE(c->ropeTheta, 500000.0);
            QCOMPARE(c->ropeScaling.factor, 8.0);
            QCOMPARE(c->ropeScaling.originalMaxPositions, 8192);
            QCOMPARE(c->contextLimit(), 131072);
        }
        double attention = 0;
        const auto inv = ropeInverseFrequencies(v4->ropeScaling, v4->ropeTheta, 128, 131072, 100, &attention);
        QCOMPARE(attention, 1.0);
        QCOMPARE(inv.size(), std::size_t(64));
        for (int i = 0; i < 64; ++i) { // Meta's reference apply_scaling, in double
            const double f = 1.0 / std::pow(500000.0, 2.0 * i / 128), wavelen = 2 * M_PI / f;
            double want = f;
            if (wavelen > 8192.0)
                want = f / 8;
            else if (wavelen >= 8192.0 / 4) {
                const double smooth = (8192.0 / wavelen - 1) / (4 - 1);
                want = (1 - smooth) * f / 8 + smooth * f;
            }
            QVERIFY2(std::abs(inv[std::size_t(i)] - want) <= 2e-6 * want, qPrintable(QString::number(i)));
        }
    }

    // Qwen's sliding window covers the layers from max_window_layers on, and only when
    // use_sliding_window is set; layer_types, where given, decides.
    void qwenSlidingLayers()
    {
        const QByteArray base = R"("architectures":["Qwen3ForCausalLM"],"vocab_size":100,"hidden_size":64,"intermediate_size":128,"num_hidden_layers":4,"num_attention_heads":4,"head_dim":32,"sliding_window":16)";
        auto on = ModelConfig::fromJson("{" + base + R"(,"use_sliding_window":true,"max_window_layers":2})", QStringLiteral("c"));
        QVERIFY(on);
        QVERIFY(on->qkNorm);
        QCOMPARE(on->headDim, 32);
        QCOMPARE(on->windowOfLayer(0), 0);
        QCOMPARE(on->windowOfLayer(1), 0);
        QCOMPARE(on->windowOfLayer(2), 16);
        QCOMPARE(on->windowOfLayer(3), 16);
        auto off = ModelConfig::fromJson("{" + base + R"(,"use_sliding_window":false,"max_window_layers":2})", QStringLiteral("c"));
        QVERIFY(off);
        QCOMPARE(off->windowOfLayer(3), 0);
        auto typed = ModelConfig::fromJson("{" + base + R"(,"use_sliding_window":true,"layer_types":["sliding_attention","full_attention","sliding_attention","full_attention"]})", QStringLiteral("c"));
        QVERIFY(typed);
        QCOMPARE(typed->windowOfLayer(0), 16);
        QCOMPARE(typed->windowOfLayer(1), 0);
    }

    // Gemma's defaults as transformers fills them: tied head, tanh GELU, (1 + w) and sandwich
    // norms, Gemma 2 sliding on even layers with soft-capping 50 / 30, Gemma 3 sliding except
    // every 6th layer with its local rope from rope_local_base_freq (4.x spelling).
    void gemmaDefaults()
    {
        const QByteArray sizes = R"("vocab_size":100,"hidden_size":64,"intermediate_size":128,"num_hidden_layers":6,"num_attention_heads":4,"head_dim":16)";
        auto g2 = ModelConfig::fromJson(R"({"architectures":["Gemma2ForCausalLM"],)" + sizes + "}", QStringLiteral("c"));
        QVERIFY2(g2, g2 ? "" : qPrintable(g2.error().toString()));
        QVERIFY(g2->tieWordEmbeddings);
        QCOMPARE(g2->activation, Activation::GeluTanh);
        QCOMPARE(g2->normOffset, 1.0f);
        QVERIFY(g2->sandwichNorms && g2->embedScale && !g2->qkNorm);
        QCOMPARE(g2->attnSoftcap, 50.0);
        QCOMPARE(g2->finalSoftcap, 30.0);
        QCOMPARE(g2->queryPreAttnScalar, 256.0);
        QCOMPARE(g2->windowOfLayer(0), 4096);
        QCOMPARE(g2->windowOfLayer(1), 0);
        auto g3 = ModelConfig::fromJson(R"({"architectures":["Gemma3ForCausalLM"],"sliding_window":512,"rope_theta":1000000.0,"rope_local_base_freq":10000.0,"rope_scaling":{"rope_type":"linear","factor":8.0},)" + sizes + "}",
                                        QStringLiteral("c"));
        QVERIFY2(g3, g3 ? "" : qPrintable(g3.error().toString()));
        QVERIFY(g3->qkNorm);
        QCOMPARE(g3->attnSoftcap, 0.0);
        for (int l = 0; l < 5; ++l)
            QCOMPARE(g3->windowOfLayer(l), 512);
        QCOMPARE(g3->windowOfLayer(5), 0);
        QCOMPARE(g3->ropeTheta, 1000000.0);
        QCOMPARE(g3->ropeScaling.type, RopeType::Linear);
        QCOMPARE(g3->slidingRopeTheta, 10000.0);
        QCOMPARE(g3->slidingRopeScaling.type, RopeType::Default);
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
        QTest::newRow("llama3 rope without its frequency factors")
            << QByteArray(R"({"architectures":["LlamaForCausalLM"],"rope_scaling":{"rope_type":"llama3","factor":8.0},)" + base + "}")
            << int(ErrorCode::Format) << QStringLiteral("rope_scaling") << QStringLiteral("low_freq_factor");
        QTest::newRow("unknown rope type")
            << QByteArray(R"({"architectures":["LlamaForCausalLM"],"rope_parameters":{"rope_type":"su","factor":2.0},)" + base + "}")
            << int(ErrorCode::Unsupported) << QStringLiteral("rope_parameters") << QStringLiteral("'su'");
        QTest::newRow("linear rope without factor")
            << QByteArray(R"({"architectures":["LlamaForCausalLM"],"rope_scaling":{"type":"linear"},)" + base + "}")
            << int(ErrorCode::Format) << QStringLiteral("rope_scaling") << QStringLiteral("factor");
        QTest::newRow("longrope factors of the wrong length")
            << QByteArray(R"({"architectures":["LlamaForCausalLM"],"rope_scaling":{"rope_type":"longrope","short_factor":[1,1],"long_factor":[1,1]},)" + base + "}")
            << int(ErrorCode::Format) << QStringLiteral("rope_scaling") << QStringLiteral("head_dim 16 needs 8");
        QTest::newRow("partial rotary")
            << QByteArray(R"({"architectures":["LlamaForCausalLM"],"partial_rotary_factor":0.5,)" + base + "}")
            << int(ErrorCode::Unsupported) << QStringLiteral("partial_rotary_factor") << QStringLiteral("partial_rotary_factor");
        QTest::newRow("layer_types of the wrong length")
            << QByteArray(R"({"architectures":["Qwen3ForCausalLM"],"layer_types":["full_attention"],)" + base + "}")
            << int(ErrorCode::Format) << QStringLiteral("layer_types") << QStringLiteral("1 entries for 2 layers");
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
