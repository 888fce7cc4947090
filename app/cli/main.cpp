// bitsmith-cli: the headless face of Bitsmith. Every command is a thin layer over core calls,
// the same ones the GUI makes. Errors print one line plus a HINT line and exit non-zero.
#include "app/cli/clicommon.h"
#include "app/cli/commands.h"
#include "core/allocation.h"
#include "core/calibration.h"
#include "core/compression.h"
#include "core/evaluate.h"
#include "core/experiment.h"
#include "core/sensitivity.h"
#include "core/recipe.h"
#include "core/sdk/techniqueregistry.h"
#include "core/generate.h"
#include "core/memory.h"
#include "core/model.h"
#include "core/npy.h"
#include "core/threading.h"
#include "core/transformer.h"

#include <QCommandLineParser>
#include <QCoreApplication>
#ifdef BITSMITH_CLI_REPORT
#include <QApplication> // `export --format report` only: the report renders QCustomPlot views
#endif
#include <QDir>
#include <QFileInfo>
#include <QSaveFile>
#include <QElapsedTimer>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <new>

using namespace bitsmith::core;

using namespace bitsmith::cli;

namespace {

int cmdInfo(const QStringList &args)
{
    Common c;
    QCommandLineOption stats(QStringLiteral("stats"),
                             QStringLiteral("Read the weights to count zeros (sparsity); large models show it only with this."));
    c.parser.addOption(stats);
    int code = 0;
    const QString usage = QStringLiteral("info MODEL [--json] [--stats]");
    if (!parseArgs(c, args, 1, usage, code))
        return code;
    auto model = loadModel(c.parser.positionalArguments().first(), true);
    if (!model)
        return reportError(model.error());
    const Model &m = **model;
    const ModelConfig &cfg = m.config();
    // Headers only unless asked: statistics that need the data are known for small models (read
    // at load) and for compressed folders (recorded by the writer).
    if (c.parser.isSet(stats) && !m.statisticsComputed()) {
        StderrFeedback fb(QStringLiteral("info"), c.parser.isSet(c.quiet));
        if (auto ok = m.computeStatistics(&fb); !ok)
            return reportError(ok.error());
    }
    const bool known = m.statisticsComputed();
    auto sparsityJson = [](double s) { return s >= 0 ? QJsonValue(s) : QJsonValue(); };
    if (c.parser.isSet(c.json)) {
        QJsonObject o;
        o[QStringLiteral("folder")] = m.folder();
        o[QStringLiteral("architecture")] = cfg.architectureName;
        o[QStringLiteral("model_type")] = cfg.modelType;
        o[QStringLiteral("layers")] = cfg.numLayers;
        o[QStringLiteral("hidden_size")] = cfg.hiddenSize;
        o[QStringLiteral("intermediate_size")] = cfg.intermediateSize;
        o[QStringLiteral("num_attention_heads")] = cfg.numHeads;
        o[QStringLiteral("num_key_value_heads")] = cfg.numKvHeads;
        o[QStringLiteral("head_dim")] = cfg.headDim;
        if (cfg.isMoe()) {
            o[QStringLiteral("num_experts")] = cfg.numExperts;
            o[QStringLiteral("num_experts_per_tok")] = cfg.expertsPerToken;
            o[QStringLiteral("moe_intermediate_size")] = cfg.moeIntermediateSize;
            o[QStringLiteral("norm_topk_prob")] = cfg.normTopkProb;
            o[QStringLiteral("moe_layers")] = int(std::count(cfg.moeLayers.begin(), cfg.moeLayers.end(), true));
        }
        o[QStringLiteral("vocab_size")] = cfg.vocabSize;
        o[QStringLiteral("max_position_embeddings")] = cfg.maxPositions;
        o[QStringLiteral("rope_theta")] = cfg.ropeTheta;
        o[QStringLiteral("rope_type")] = QString::fromLatin1(ropeTypeName(cfg.ropeScaling.type));
        if (cfg.ropeScaling.type != RopeType::Default)
            o[QStringLiteral("rope_factor")] = cfg.ropeScaling.factor;
        o[QStringLiteral("sliding_window")] = cfg.slidingWindow > 0 ? QJsonValue(cfg.slidingWindow) : QJsonValue();
        o[QStringLiteral("tie_word_embeddings")] = cfg.tieWordEmbeddings;
        o[QStringLiteral("parameters")] = static_cast<double>(m.totalParameters());
        o[QStringLiteral("bytes")] = static_cast<double>(m.totalStoredBytes());
        o[QStringLiteral("effective_bpw")] = 8.0 * static_cast<double>(m.totalStoredBytes()) / static_cast<double>(m.totalParameters());
        o[QStringLiteral("quantized_layers")] = static_cast<int>(m.quantizedLayers().size());
        o[QStringLiteral("sparsity")] = known ? QJsonValue(m.linearSparsity()) : QJsonValue(); // zeros over all linear weights; null: not read
        o[QStringLiteral("tokenizer")] = m.tokenizer() ? QJsonValue(static_cast<int>(m.tokenizer()->vocabSize())) : QJsonValue();
        QJsonArray tensors;
        for (const WeightInfo &w : m.weights()) {
            QJsonArray shape;
            for (auto d : w.shape)
                shape.append(static_cast<double>(d));
            tensors.append(QJsonObject{{QStringLiteral("name"), w.name},
                                       {QStringLiteral("kind"), QString::fromLatin1(weightRoleName(w.role))},
                                       {QStringLiteral("block"), w.block},
                                       {QStringLiteral("shape"), shape},
                                       {QStringLiteral("dtype"), QString::fromLatin1(dtypeName(w.storedType))},
                                       {QStringLiteral("parameters"), static_cast<double>(w.parameters)},
                                       {QStringLiteral("bytes"), static_cast<double>(w.storedBytes)},
                                       {QStringLiteral("format"), w.format},
                                       {QStringLiteral("effective_bpw"), w.bitsPerWeight},
                                       {QStringLiteral("sparsity"), sparsityJson(w.sparsity)},
                                       // a part of a fused checkpoint tensor (Phi-3): its name
                                       {QStringLiteral("fused_from"), w.fusedName.isEmpty() ? QJsonValue() : QJsonValue(w.fusedName)}});
        }
        o[QStringLiteral("tensors")] = tensors;
        printJson(o);
        return 0;
    }
    std::printf("model         %s\n", qPrintable(m.folder()));
    std::printf("architecture  %s (%d layers, hidden %d, MLP %d, heads %d/%d kv, head dim %d)\n",
                qPrintable(cfg.architectureName), cfg.numLayers, cfg.hiddenSize, cfg.intermediateSize, cfg.numHeads,
                cfg.numKvHeads, cfg.headDim);
    std::printf("vocabulary    %d   context %d   rope theta %g (%s%s)   tied embeddings %s\n", cfg.vocabSize,
                cfg.maxPositions, cfg.ropeTheta, ropeTypeName(cfg.ropeScaling.type),
                cfg.ropeScaling.type == RopeType::Default || cfg.ropeScaling.factor <= 0 ? "" : qPrintable(QStringLiteral(", factor %1").arg(cfg.ropeScaling.factor)),
                cfg.tieWordEmbeddings ? "yes" : "no");
    if (cfg.isMoe())
        std::printf("experts       %d per MoE layer (width %d), top %d per token%s, on %d of %d layers\n", cfg.numExperts,
                    cfg.moeIntermediateSize, cfg.expertsPerToken, cfg.normTopkProb ? " (weights renormalized)" : "",
                    int(std::count(cfg.moeLayers.begin(), cfg.moeLayers.end(), true)), cfg.numLayers);
    if (cfg.slidingWindow > 0)
        std::printf("attention     sliding window of %d tokens on %s\n", cfg.slidingWindow,
                    cfg.slidingLayers.empty() ? "every layer" : qPrintable(QStringLiteral("%1 of %2 layers").arg(std::count(cfg.slidingLayers.begin(), cfg.slidingLayers.end(), true)).arg(cfg.numLayers)));
    std::printf("parameters    %lld   stored %.2f MiB   %.3f bits per weight%s\n\n",
                static_cast<long long>(m.totalParameters()), static_cast<double>(m.totalStoredBytes()) / (1024.0 * 1024.0),
                8.0 * static_cast<double>(m.totalStoredBytes()) / static_cast<double>(m.totalParameters()),
                m.quantizedLayers().empty() ? "" : qPrintable(QStringLiteral(" (%1 quantized layers)").arg(m.quantizedLayers().size())));
    if (!known)
        std::printf("sparsity      not read (a large model opens from its headers; --stats counts the zeros)\n\n");
    else if (m.linearSparsity() > 0.0)
        std::printf("sparsity      %.2f%% of the linear weights are zero\n\n", 100.0 * m.linearSparsity());
    std::printf("%-52s %-12s %-10s %-16s %7s %12s %12s %8s\n", "tensor", "kind", "shape", "format", "bpw", "parameters", "bytes", "sparsity");
    for (const WeightInfo &w : m.weights())
        std::printf("%-52s %-12s %-10s %-16s %7.3f %12lld %12lld %8s\n", qPrintable(w.name), weightRoleName(w.role),
                    qPrintable(shapeText(w.shape)), qPrintable(w.format), w.bitsPerWeight,
                    static_cast<long long>(w.parameters), static_cast<long long>(w.storedBytes),
                    w.sparsity >= 0 ? qPrintable(QStringLiteral("%1%").arg(100.0 * w.sparsity, 0, 'f', 2)) : "-");
    return 0;
}

int cmdEval(const QStringList &args)
{
    Common c;
    QCommandLineOption text(QStringLiteral("text"), QStringLiteral("Evaluation text file (UTF-8)."), QStringLiteral("FILE"));
    QCommandLineOption ctx(QStringLiteral("ctx"), QStringLiteral("Window length in tokens (default: the model's context)."), QStringLiteral("N"));
    QCommandLineOption maxWindows(QStringLiteral("max-windows"), QStringLiteral("Evaluate at most K windows."), QStringLiteral("K"));
    QCommandLineOption scoreFrom(QStringLiteral("score-from"),
                                 QStringLiteral("Score only predictions at positions >= P of each window (ctx/2: as llama-perplexity)."),
                                 QStringLiteral("P"));
    c.parser.addOptions({text, ctx, maxWindows, scoreFrom});
    int code = 0;
    const QString usage = QStringLiteral("eval MODEL --text FILE [--ctx N] [--max-windows K] [--score-from P] [--json]");
    if (!parseArgs(c, args, 1, usage, code))
        return code;
    if (!c.parser.isSet(text))
        return usageError(QStringLiteral("--text is required"), QStringLiteral("usage: bitsmith-cli %1").arg(usage));
    EvalOptions opt;
    if (!intOption(c.parser, ctx, opt.ctx, 2, code) || !intOption(c.parser, maxWindows, opt.maxWindows, 1, code)
        || !intOption(c.parser, scoreFrom, opt.scoreFrom, 0, code))
        return code;
    auto backend = backendFrom(c.parser.value(c.backend));
    if (!backend)
        return reportError(backend.error());
    const bool quiet = c.parser.isSet(c.quiet);
    auto model = loadModel(c.parser.positionalArguments().first(), quiet);
    if (!model)
        return reportError(model.error());
    QElapsedTimer tokTimer;
    tokTimer.start();
    auto tokens = tokenizeTextFile(**model, c.parser.value(text));
    if (!tokens)
        return reportError(tokens.error());
    const std::vector<std::int32_t> &ids = *tokens;
    const double tokSeconds = static_cast<double>(tokTimer.nsecsElapsed()) / 1e9;
    Transformer tf(*model, *backend);
    StderrFeedback fb(QStringLiteral("eval"), quiet);
    auto r = evaluatePerplexity(tf, ids, opt, &fb);
    if (!r)
        return reportError(std::move(r.error()).inFile(c.parser.value(text)));
    if (c.parser.isSet(c.json)) {
        printJson(QJsonObject{{QStringLiteral("model"), (*model)->folder()},
                              {QStringLiteral("text"), c.parser.value(text)},
                              {QStringLiteral("perplexity"), r->perplexity},
                              {QStringLiteral("mean_nll"), r->meanNll},
                              {QStringLiteral("tokens"), static_cast<double>(r->textTokens)},
                              {QStringLiteral("scored_tokens"), static_cast<double>(r->scoredTokens)},
                              {QStringLiteral("windows"), static_cast<double>(r->windows)},
                              {QStringLiteral("ctx"), r->ctx},
                              {QStringLiteral("seconds"), r->seconds},
                              {QStringLiteral("tokens_per_second"), r->tokensPerSecond},
                              {QStringLiteral("tokenize_seconds"), tokSeconds},
                              {QStringLiteral("threads"), threadCount()},
                              {QStringLiteral("backend"), c.parser.value(c.backend)}});
    } else {
        std::printf("perplexity %.4f  (mean NLL %.5f; %lld windows of %d tokens, %lld scored of %lld text tokens; "
                    "%.2f s, %.1f tokens/s)\n",
                    r->perplexity, r->meanNll, static_cast<long long>(r->windows), r->ctx,
                    static_cast<long long>(r->scoredTokens), static_cast<long long>(r->textTokens), r->seconds,
                    r->tokensPerSecond);
    }
    return 0;
}

int cmdLogits(const QStringList &args)
{
    Common c;
    QCommandLineOption text(QStringLiteral("text"), QStringLiteral("The input text."), QStringLiteral("STRING"));
    QCommandLineOption idsOption(QStringLiteral("ids"), QStringLiteral("The input token ids, comma-separated (no tokenizer needed)."),
                                 QStringLiteral("I,J,..."));
    QCommandLineOption out(QStringLiteral("out"), QStringLiteral("Output .npy file: float32 [tokens, vocab]."), QStringLiteral("FILE"));
    c.parser.addOptions({text, idsOption, out});
    int code = 0;
    const QString usage = QStringLiteral("logits MODEL (--text STRING | --ids I,J,...) --out FILE.npy");
    if (!parseArgs(c, args, 1, usage, code))
        return code;
    if (c.parser.isSet(text) == c.parser.isSet(idsOption) || !c.parser.isSet(out))
        return usageError(QStringLiteral("--out and one of --text or --ids are required"), QStringLiteral("usage: bitsmith-cli %1").arg(usage));
    std::vector<std::int32_t> ids;
    if (c.parser.isSet(idsOption)) { // parsed before the model loads: a typo fails at once
        for (const QString &part : c.parser.value(idsOption).split(QLatin1Char(','), Qt::SkipEmptyParts)) {
            bool ok = false;
            const int id = part.trimmed().toInt(&ok);
            if (!ok || id < 0)
                return usageError(QStringLiteral("--ids: '%1' is not a token id").arg(part),
                                  QStringLiteral("give non-negative integers separated by commas, e.g. --ids 1,2,3"));
            ids.push_back(id);
        }
        if (ids.empty())
            return usageError(QStringLiteral("--ids is empty"), QStringLiteral("e.g. --ids 1,2,3"));
    }
    auto backend = backendFrom(c.parser.value(c.backend));
    if (!backend)
        return reportError(backend.error());
    auto model = loadModel(c.parser.positionalArguments().first(), true);
    if (!model)
        return reportError(model.error());
    if (c.parser.isSet(text)) {
        auto tok = requireTokenizer(**model);
        if (!tok)
            return reportError(tok.error());
        ids = (*tok)->encode(c.parser.value(text).toStdString(), true); // as tokenizer(text) does
        if (ids.empty())
            return usageError(QStringLiteral("the text encodes to no tokens"), QStringLiteral("give a non-empty --text"));
    }
    Transformer tf(*model, *backend);
    KVCache cache = tf.makeCache(static_cast<int>(ids.size()));
    std::vector<float> logits;
    if (auto ok = tf.forward(ids, cache, logits); !ok)
        return reportError(ok.error());
    if (auto ok = writeNpyF32(c.parser.value(out), logits, {static_cast<std::int64_t>(ids.size()), tf.vocabSize()}); !ok)
        return reportError(ok.error());
    if (c.parser.isSet(c.json)) {
        QJsonArray idArray;
        for (auto id : ids)
            idArray.append(id);
        printJson(QJsonObject{{QStringLiteral("out"), c.parser.value(out)},
                              {QStringLiteral("tokens"), idArray},
                              {QStringLiteral("vocab"), tf.vocabSize()}});
    } else {
        std::printf("wrote %s: float32 [%zu, %d]\n", qPrintable(c.parser.value(out)), ids.size(), tf.vocabSize());
    }
    return 0;
}

int cmdGenerate(const QStringList &args)
{
    Common c;
    QCommandLineOption prompt(QStringLiteral("prompt"), QStringLiteral("The prompt text."), QStringLiteral("STRING"));
    QCommandLineOption maxTokens(QStringLiteral("max-tokens"), QStringLiteral("New tokens to generate (default 64)."), QStringLiteral("N"));
    QCommandLineOption temperature(QStringLiteral("temperature"), QStringLiteral("Sampling temperature; 0 = greedy (default 0.8)."), QStringLiteral("T"));
    QCommandLineOption topK(QStringLiteral("top-k"), QStringLiteral("Sample from the K most likely tokens (default 40, 0 = all)."), QStringLiteral("K"));
    QCommandLineOption topP(QStringLiteral("top-p"), QStringLiteral("Nucleus sampling threshold (default 0.95)."), QStringLiteral("P"));
    QCommandLineOption seed(QStringLiteral("seed"), QStringLiteral("Random seed (default 0)."), QStringLiteral("S"));
    c.parser.addOptions({prompt, maxTokens, temperature, topK, topP, seed});
    int code = 0;
    const QString usage = QStringLiteral("generate MODEL --prompt STRING [--max-tokens N] [--temperature T] [--seed S]");
    if (!parseArgs(c, args, 1, usage, code))
        return code;
    if (!c.parser.isSet(prompt))
        return usageError(QStringLiteral("--prompt is required"), QStringLiteral("usage: bitsmith-cli %1").arg(usage));
    GenerateOptions opt;
    if (!intOption(c.parser, maxTokens, opt.maxTokens, 0, code) || !intOption(c.parser, topK, opt.topK, 0, code))
        return code;
    bool ok = true;
    if (c.parser.isSet(temperature))
        opt.temperature = c.parser.value(temperature).toDouble(&ok);
    if (!ok || opt.temperature < 0)
        return usageError(QStringLiteral("--temperature must be a number >= 0"), QStringLiteral("e.g. --temperature 0.8, or 0 for greedy"));
    if (c.parser.isSet(topP))
        opt.topP = c.parser.value(topP).toDouble(&ok);
    if (!ok || opt.topP <= 0 || opt.topP > 1)
        return usageError(QStringLiteral("--top-p must be in (0, 1]"), QStringLiteral("e.g. --top-p 0.95"));
    if (c.parser.isSet(seed))
        opt.seed = c.parser.value(seed).toULongLong(&ok);
    if (!ok)
        return usageError(QStringLiteral("--seed must be a non-negative integer"), QStringLiteral("e.g. --seed 42"));
    auto backend = backendFrom(c.parser.value(c.backend));
    if (!backend)
        return reportError(backend.error());
    auto model = loadModel(c.parser.positionalArguments().first(), true);
    if (!model)
        return reportError(model.error());
    auto tok = requireTokenizer(**model);
    if (!tok)
        return reportError(tok.error());
    const std::string promptText = c.parser.value(prompt).toStdString();
    const std::vector<std::int32_t> ids = (*tok)->encode(promptText, true); // BOS where the tokenizer adds one
    Transformer tf(*model, *backend);
    const bool json = c.parser.isSet(c.json);
    if (!json) {
        std::fputs(promptText.c_str(), stdout);
        std::fflush(stdout);
    }
    // Stream text as it comes; decode the whole tail each time so multi-byte characters that
    // span tokens print correctly.
    std::vector<std::int32_t> produced;
    std::size_t printed = 0;
    QElapsedTimer timer;
    timer.start();
    auto out = generate(tf, ids, opt, [&](std::int32_t id) {
        produced.push_back(id);
        if (!json) {
            const std::string text = (*tok)->decode(produced, true);
            if (text.size() > printed && (text.back() & 0xC0) != 0x80 && static_cast<unsigned char>(text.back()) < 0xC0) {
                std::fputs(text.c_str() + printed, stdout);
                std::fflush(stdout);
                printed = text.size();
            }
        }
        return true;
    });
    if (!out)
        return reportError(out.error());
    const double seconds = static_cast<double>(timer.nsecsElapsed()) / 1e9;
    const std::string text = (*tok)->decode(*out, true);
    if (json) {
        QJsonArray idArray;
        for (auto id : *out)
            idArray.append(id);
        printJson(QJsonObject{{QStringLiteral("prompt"), c.parser.value(prompt)},
                              {QStringLiteral("text"), QString::fromStdString(text)},
                              {QStringLiteral("tokens"), idArray},
                              {QStringLiteral("seconds"), seconds},
                              {QStringLiteral("tokens_per_second"), seconds > 0 ? static_cast<double>(out->size()) / seconds : 0.0}});
    } else {
        if (text.size() > printed)
            std::fputs(text.c_str() + printed, stdout);
        std::printf("\n");
        std::fprintf(stderr, "generate: %zu tokens in %.2f s (%.1f tokens/s)\n", out->size(), seconds,
                     seconds > 0 ? static_cast<double>(out->size()) / seconds : 0.0);
    }
    return 0;
}

int cmdCompare(const QStringList &args)
{
    Common c;
    QCommandLineOption text(QStringLiteral("text"), QStringLiteral("Evaluation text file (UTF-8)."), QStringLiteral("FILE"));
    QCommandLineOption ctx(QStringLiteral("ctx"), QStringLiteral("Window length in tokens."), QStringLiteral("N"));
    QCommandLineOption maxWindows(QStringLiteral("max-windows"), QStringLiteral("Evaluate at most K windows."), QStringLiteral("K"));
    c.parser.addOptions({text, ctx, maxWindows});
    int code = 0;
    const QString usage = QStringLiteral("compare REFERENCE CANDIDATE --text FILE [--ctx N] [--max-windows K] [--json]");
    if (!parseArgs(c, args, 2, usage, code))
        return code;
    if (!c.parser.isSet(text))
        return usageError(QStringLiteral("--text is required"), QStringLiteral("usage: bitsmith-cli %1").arg(usage));
    EvalOptions opt;
    if (!intOption(c.parser, ctx, opt.ctx, 2, code) || !intOption(c.parser, maxWindows, opt.maxWindows, 1, code))
        return code;
    const bool quiet = c.parser.isSet(c.quiet);
    auto a = loadModel(c.parser.positionalArguments()[0], quiet);
    if (!a)
        return reportError(a.error());
    auto b = loadModel(c.parser.positionalArguments()[1], quiet);
    if (!b)
        return reportError(b.error());
    auto tokens = tokenizeTextFile(**a, c.parser.value(text));
    if (!tokens)
        return reportError(tokens.error());
    const std::vector<std::int32_t> &ids = *tokens;
    Transformer ta(*a), tb(*b);
    StderrFeedback fb(QStringLiteral("compare"), quiet);
    auto r = compareModels(ta, tb, ids, opt, &fb);
    if (!r)
        return reportError(r.error());
    if (c.parser.isSet(c.json)) {
        printJson(QJsonObject{{QStringLiteral("kl"), r->meanKl},
                              {QStringLiteral("top1_agreement"), r->top1Agreement},
                              {QStringLiteral("reference_perplexity"), r->reference.perplexity},
                              {QStringLiteral("candidate_perplexity"), r->candidate.perplexity},
                              {QStringLiteral("scored_tokens"), static_cast<double>(r->reference.scoredTokens)},
                              {QStringLiteral("windows"), static_cast<double>(r->reference.windows)},
                              {QStringLiteral("ctx"), r->reference.ctx}});
    } else {
        std::printf("KL(reference || candidate) %.6f nats/token   top-1 agreement %.2f%%\n"
                    "perplexity: reference %.4f  candidate %.4f  (%lld scored tokens)\n",
                    r->meanKl, 100.0 * r->top1Agreement, r->reference.perplexity, r->candidate.perplexity,
                    static_cast<long long>(r->reference.scoredTokens));
    }
    return 0;
}

// Builds the recipe from --recipe or from --method/--bits/... flags.
Expected<Recipe> recipeFromFlags(const QCommandLineParser &p, const QCommandLineOption &recipeOpt,
                                 const QCommandLineOption &method, const QCommandLineOption &bits,
                                 const QCommandLineOption &group, const QCommandLineOption &sym,
                                 const QCommandLineOption &actOrder, const QCommandLineOption &param,
                                 bool bitsOptional = false)
{
    if (p.isSet(recipeOpt)) {
        if (p.isSet(method) || p.isSet(bits))
            return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("--recipe and --method/--bits exclude each other"))
                                  .forParameter(QStringLiteral("recipe"))
                                  .withHint(QStringLiteral("put the settings in the recipe, or drop --recipe")));
        return Recipe::fromFile(p.value(recipeOpt));
    }
    if (!p.isSet(method) || (!p.isSet(bits) && !bitsOptional))
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("give --recipe FILE, or --method NAME and --bits B"))
                              .forParameter(QStringLiteral("method"))
                              .withHint(QStringLiteral("e.g. --method gptq --bits 4 --group 128")));
    Recipe r;
    r.defaultTechnique = p.value(method);
    bool ok = !p.isSet(bits);
    r.defaultFormat.bits = p.isSet(bits) ? p.value(bits).toInt(&ok) : 4;
    if (!ok || r.defaultFormat.bits < 2 || r.defaultFormat.bits > 8)
        return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("--bits must be an integer from 2 to 8"))
                              .forParameter(QStringLiteral("bits"))
                              .withHint(QStringLiteral("e.g. --bits 4")));
    r.defaultFormat.groupSize = 128;
    if (p.isSet(group)) {
        r.defaultFormat.groupSize = p.value(group).toInt(&ok);
        if (!ok || r.defaultFormat.groupSize < -1)
            return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("--group must be a positive integer, 0 (per channel) or -1 (per tensor)"))
                                  .forParameter(QStringLiteral("group"))
                                  .withHint(QStringLiteral("e.g. --group 128")));
    }
    r.defaultFormat.symmetric = p.isSet(sym);
    if (p.isSet(actOrder))
        r.defaultParameters.insert(QStringLiteral("actOrder"), true);
    for (const QString &kv : p.values(param)) {
        const qsizetype eq = kv.indexOf(QLatin1Char('='));
        if (eq <= 0)
            return unexpected(fail(ErrorCode::InvalidArgument, QStringLiteral("--param '%1' is not NAME=VALUE").arg(kv))
                                  .forParameter(QStringLiteral("param"))
                                  .withHint(QStringLiteral("e.g. --param dampPercent=0.02")));
        const QString name = kv.left(eq), value = kv.mid(eq + 1);
        bool isNumber = false;
        const double d = value.toDouble(&isNumber);
        if (value == QLatin1String("true") || value == QLatin1String("false"))
            r.defaultParameters.insert(name, value == QLatin1String("true"));
        else if (isNumber)
            r.defaultParameters.insert(name, d);
        else
            r.defaultParameters.insert(name, value);
    }
    return r;
}

int cmdCompress(const QStringList &args)
{
    // Structured pruning rewrites the model's shapes: its own command (structuredcommand.cpp).
    if (const qsizetype at = args.indexOf(QStringLiteral("--method")); at >= 0 && args.value(at + 1) == QLatin1String("structured"))
        return cmdCompressStructured(args);
    if (args.contains(QStringLiteral("--method=structured")))
        return cmdCompressStructured(args);
    Common c;
    QCommandLineOption recipeOpt(QStringLiteral("recipe"), QStringLiteral("Recipe JSON file."), QStringLiteral("FILE"));
    QCommandLineOption method(QStringLiteral("method"), QStringLiteral("Technique id (e.g. rtn, gptq, awq, smoothquant)."), QStringLiteral("NAME"));
    QCommandLineOption bits(QStringLiteral("bits"), QStringLiteral("Bits per weight, 2..8."), QStringLiteral("B"));
    QCommandLineOption group(QStringLiteral("group"), QStringLiteral("Group size (default 128; 0 = per channel, -1 = per tensor)."), QStringLiteral("G"));
    QCommandLineOption sym(QStringLiteral("sym"), QStringLiteral("Symmetric quantization."));
    QCommandLineOption actOrder(QStringLiteral("act-order"), QStringLiteral("GPTQ: quantize columns in order of decreasing Hessian diagonal."));
    QCommandLineOption param(QStringLiteral("param"), QStringLiteral("A technique parameter NAME=VALUE (repeatable)."), QStringLiteral("NAME=VALUE"));
    QCommandLineOption calib(QStringLiteral("calib"), QStringLiteral("Calibration text (default: the model folder's calib.txt, if any)."), QStringLiteral("FILE"));
    QCommandLineOption calibSeqs(QStringLiteral("calib-sequences"), QStringLiteral("Calibration sequences (default 128)."), QStringLiteral("N"));
    QCommandLineOption calibLen(QStringLiteral("calib-length"), QStringLiteral("Tokens per calibration sequence (default: the model's context)."), QStringLiteral("L"));
    QCommandLineOption seed(QStringLiteral("seed"), QStringLiteral("Seed for choosing calibration sequences (default 0)."), QStringLiteral("S"));
    QCommandLineOption out(QStringLiteral("out"), QStringLiteral("Output model folder."), QStringLiteral("DIR"));
    QCommandLineOption sparsity(QStringLiteral("sparsity"), QStringLiteral("Pruning: fraction of weights to remove (0..1)."), QStringLiteral("S"));
    QCommandLineOption pattern(QStringLiteral("pattern"), QStringLiteral("Pruning: N:M pattern (e.g. 2:4) or unstructured."), QStringLiteral("N:M"));
    c.parser.addOptions({recipeOpt, method, bits, group, sym, actOrder, param, calib, calibSeqs, calibLen, seed, out, sparsity, pattern});
    int code = 0;
    const QString usage = QStringLiteral("compress MODEL (--recipe FILE | --method NAME --bits B [--group G] [--sym] [--act-order] | "
                                         "--method magnitude|wanda|sparsegpt --sparsity S [--pattern N:M] [--bits B --group G] | "
                                         "--method structured --heads F --mlp F) [--calib TEXT_FILE] --out DIR");
    if (!parseArgs(c, args, 1, usage, code))
        return code;
    if (!c.parser.isSet(out))
        return usageError(QStringLiteral("--out is required"), QStringLiteral("usage: bitsmith-cli %1").arg(usage));
    const bool pruning = c.parser.isSet(sparsity) || c.parser.isSet(pattern);
    auto recipe = recipeFromFlags(c.parser, recipeOpt, method, bits, group, sym, actOrder, param, pruning);
    if (!recipe)
        return reportError(recipe.error());
    if (pruning) {
        if (c.parser.isSet(recipeOpt))
            return reportError(fail(ErrorCode::InvalidArgument, QStringLiteral("--recipe and --sparsity/--pattern exclude each other"))
                                   .forParameter(QStringLiteral("sparsity"))
                                   .withHint(QStringLiteral("put \"sparsity\"/\"pattern\" in the recipe's defaults or layers")));
        if (c.parser.isSet(sparsity)) {
            bool ok = false;
            const double s = c.parser.value(sparsity).toDouble(&ok);
            if (!ok || !(s >= 0.0 && s < 1.0))
                return reportError(fail(ErrorCode::InvalidArgument, QStringLiteral("--sparsity must be a number from 0 to below 1"))
                                       .forParameter(QStringLiteral("sparsity"))
                                       .withHint(QStringLiteral("e.g. --sparsity 0.5")));
            recipe->defaultSparsity = s;
        }
        if (c.parser.isSet(pattern)) {
            const auto p = SparsityPattern::parse(c.parser.value(pattern));
            if (!p)
                return reportError(fail(ErrorCode::InvalidArgument, QStringLiteral("--pattern '%1' is not N:M or unstructured").arg(c.parser.value(pattern)))
                                       .forParameter(QStringLiteral("pattern"))
                                       .withHint(QStringLiteral("e.g. --pattern 2:4 (0 < N < M <= 64)")));
            recipe->defaultPattern = *p;
        }
        // --bits with a pruning method: prune and quantize in one pass (SparseGPT's joint mode).
        if (c.parser.isSet(bits) && recipe->defaultTechnique != QLatin1String("sparsegpt"))
            return reportError(fail(ErrorCode::InvalidArgument, QStringLiteral("--bits with --sparsity/--pattern needs --method sparsegpt"))
                                   .forParameter(QStringLiteral("bits"))
                                   .withHint(QStringLiteral("sparsegpt prunes and quantizes in one pass; other pruners keep f32 weights")));
        if (c.parser.isSet(bits) && !recipe->defaultParameters.contains(QStringLiteral("quantize")))
            recipe->defaultParameters.insert(QStringLiteral("quantize"), true);
    }
    int sequences = recipe->calibration.sequences, length = recipe->calibration.length;
    if (!intOption(c.parser, calibSeqs, sequences, 1, code) || !intOption(c.parser, calibLen, length, 2, code))
        return code;
    if (c.parser.isSet(seed))
        recipe->calibration.seed = c.parser.value(seed).toULongLong();
    recipe->calibration.sequences = sequences;
    recipe->calibration.length = length;
    const bool quiet = c.parser.isSet(c.quiet);
    auto model = loadModel(c.parser.positionalArguments().first(), quiet);
    if (!model)
        return reportError(model.error());
    if (!(*model)->quantizedLayers().empty())
        return reportError(fail(ErrorCode::InvalidArgument, QStringLiteral("the model is already compressed"))
                               .inFile((*model)->folder())
                               .withHint(QStringLiteral("compress the original model instead")));
    TechniqueRegistry registry;
    for (const PluginProblem &p : registry.problems())
        std::fprintf(stderr, "bitsmith-cli: warning: plugin %s skipped: %s\n", qPrintable(p.file), qPrintable(p.message));
    auto needs = recipeNeedsCalibration(*recipe, **model, registry);
    if (!needs)
        return reportError(needs.error());
    std::vector<std::vector<std::int32_t>> sequencesData;
    if (*needs) {
        QString calibPath = c.parser.isSet(calib) ? c.parser.value(calib) : recipe->calibration.text;
        if (calibPath.isEmpty() && QFileInfo::exists((*model)->folder() + QStringLiteral("/calib.txt")))
            calibPath = (*model)->folder() + QStringLiteral("/calib.txt");
        if (calibPath.isEmpty())
            return reportError(fail(ErrorCode::InvalidArgument, QStringLiteral("the recipe's techniques need calibration data"))
                                   .forParameter(QStringLiteral("calib"))
                                   .withHint(QStringLiteral("give a text file with --calib FILE")));
        auto ids = tokenizeTextFile(**model, calibPath);
        if (!ids)
            return reportError(ids.error());
        const int len = length > 0 ? std::min(length, (*model)->config().maxPositions) : (*model)->config().maxPositions;
        auto seqs = makeCalibrationSequences(*ids, sequences, len, recipe->calibration.seed);
        if (!seqs)
            return reportError(std::move(seqs.error()).inFile(calibPath));
        sequencesData = std::move(*seqs);
        recipe->calibration.text = calibPath;
    }
    StderrFeedback fb(QStringLiteral("compress"), quiet);
    // Packed results go to a temporary file beside the output when they would take more than a
    // quarter of the memory available (or of --max-memory): they are file-backed then, and the
    // page cache holds them as long as there is room.
    QString spill;
    if (auto need = estimateCompressionMemory(**model, *recipe, registry, sequencesData); need) {
        const std::int64_t budget = maxMemoryOption() > 0 ? maxMemoryOption() : memoryStatus().available;
        std::int64_t packed = 0;
        for (const WeightInfo &w : (*model)->weights())
            if (isLinearRole(w.role))
                packed += w.parameters * std::max(1, recipe->defaultFormat.bits) / 8;
        if (packed > budget / 4)
            spill = QDir(c.parser.value(out)).absolutePath() + QStringLiteral(".bitsmith-spill");
    }
    struct RemoveSpill
    {
        QString path;
        ~RemoveSpill()
        {
            if (!path.isEmpty())
                QFile::remove(path);
        }
    } removeSpill{spill};
    CompressionOptions options;
    options.spillFile = spill;
    options.maxMemory = maxMemoryOption();
    options.tempFolder = QFileInfo(QDir(c.parser.value(out)).absolutePath()).absolutePath(); // beside the output
    auto result = compressModel(**model, *recipe, registry, sequencesData, &fb, options);
    if (!result)
        return reportError(result.error());
    if (auto ok = writeCompressedModel(*result, **model, c.parser.value(out), &fb); !ok)
        return reportError(ok.error());
    if (c.parser.isSet(c.json)) {
        QJsonObject o = compressionReportJson(*result, **model);
        o.insert(QStringLiteral("out"), QDir(c.parser.value(out)).absolutePath());
        o.remove(QStringLiteral("layers"));
        printJson(o);
    } else {
        std::printf("compressed %d layers in %.2f s: %.2f MiB -> %.2f MiB (%.2fx), %.3f bits per weight in compressed layers, "
                    "%.3f over the whole model\nwrote %s (recipe.json and report.json beside the weights)\n",
                    static_cast<int>(result->layers.size()), result->seconds,
                    static_cast<double>(result->originalBytes) / 1048576.0, static_cast<double>(result->compressedBytes) / 1048576.0,
                    static_cast<double>(result->originalBytes) / static_cast<double>(result->compressedBytes),
                    result->effectiveBitsPerWeight, result->modelBitsPerWeight, qPrintable(QDir(c.parser.value(out)).absolutePath()));
    }
    return 0;
}

int cmdTokenize(const QStringList &args)
{
    Common c;
    QCommandLineOption text(QStringLiteral("text"), QStringLiteral("Text file to tokenize (UTF-8, CRLF -> LF)."), QStringLiteral("FILE"));
    QCommandLineOption out(QStringLiteral("out"), QStringLiteral("Write the ids as a JSON array to FILE (default: stdout)."), QStringLiteral("FILE"));
    c.parser.addOptions({text, out});
    int code = 0;
    const QString usage = QStringLiteral("tokenize MODEL --text FILE [--out IDS.json]");
    if (!parseArgs(c, args, 1, usage, code))
        return code;
    if (!c.parser.isSet(text))
        return usageError(QStringLiteral("--text is required"), QStringLiteral("usage: bitsmith-cli %1").arg(usage));
    auto model = loadModel(c.parser.positionalArguments().first(), true);
    if (!model)
        return reportError(model.error());
    auto tokens = tokenizeTextFile(**model, c.parser.value(text));
    if (!tokens)
        return reportError(tokens.error());
    const std::vector<std::int32_t> &ids = *tokens;
    QByteArray json = "[";
    for (std::size_t i = 0; i < ids.size(); ++i) {
        if (i)
            json += ',';
        json += QByteArray::number(ids[i]);
    }
    json += "]\n";
    if (!c.parser.isSet(out)) {
        std::fputs(json.constData(), stdout);
        return 0;
    }
    QSaveFile f(c.parser.value(out));
    if (!f.open(QIODevice::WriteOnly) || f.write(json) != json.size() || !f.commit())
        return reportError(fail(ErrorCode::Io, QStringLiteral("cannot write: %1").arg(f.errorString())).inFile(c.parser.value(out)));
    std::fprintf(stderr, "tokenize: %zu tokens -> %s\n", ids.size(), qPrintable(c.parser.value(out)));
    return 0;
}

int cmdTechniques(const QStringList &args)
{
    Common c;
    int code = 0;
    if (!parseArgs(c, args, 0, QStringLiteral("techniques [--json]"), code))
        return code;
    TechniqueRegistry registry;
    QJsonArray list;
    for (const PluginInfo &info : registry.plugins()) {
        auto t = registry.create(info.id);
        if (!t)
            continue;
        QJsonArray params;
        for (const ParameterSpec &p : (*t)->parameters())
            params.append(QJsonObject{{QStringLiteral("name"), p.name},
                                      {QStringLiteral("default"), QJsonValue::fromVariant(p.defaultValue)},
                                      {QStringLiteral("help"), p.help}});
        list.append(QJsonObject{{QStringLiteral("id"), info.id},
                                {QStringLiteral("name"), info.displayName},
                                {QStringLiteral("category"), info.category},
                                {QStringLiteral("calibration"), (*t)->needsCalibration()},
                                {QStringLiteral("file"), info.file},
                                {QStringLiteral("parameters"), params}});
        if (!c.parser.isSet(c.json)) {
            std::printf("%-12s %-32s %-13s %s\n", qPrintable(info.id), qPrintable(info.displayName), qPrintable(info.category),
                        (*t)->needsCalibration() ? "needs calibration" : "");
            for (const ParameterSpec &p : (*t)->parameters())
                std::printf("    --param %s=%s   %s\n", qPrintable(p.name), qPrintable(p.defaultValue.toString()), qPrintable(p.help));
        }
    }
    QJsonArray problems;
    for (const PluginProblem &p : registry.problems()) {
        problems.append(QJsonObject{{QStringLiteral("file"), p.file}, {QStringLiteral("problem"), p.message}});
        if (!c.parser.isSet(c.json))
            std::printf("skipped %s: %s\n", qPrintable(p.file), qPrintable(p.message));
    }
    if (c.parser.isSet(c.json))
        printJson(QJsonObject{{QStringLiteral("techniques"), list}, {QStringLiteral("problems"), problems}});
    return 0;
}

QJsonArray correlationJson(const std::vector<ProxyCorrelation> &correlations)
{
    QJsonArray a;
    auto num = [](double v) { return std::isnan(v) ? QJsonValue() : QJsonValue(v); };
    for (const ProxyCorrelation &pc : correlations)
        a.append(QJsonObject{{QStringLiteral("proxy"), pc.proxy},
                             {QStringLiteral("delta_loss"), num(pc.withDeltaLoss)},
                             {QStringLiteral("kl"), num(pc.withKl)}});
    return a;
}

// sensitivity: per layer × candidate setting, what compressing only that layer does (Δloss, KL,
// perplexity) plus the proxies, saved as an HDF5 experiment.
int cmdSensitivity(const QStringList &args)
{
    Common c;
    QCommandLineOption text(QStringLiteral("text"), QStringLiteral("Evaluation text file (default: the model folder's eval.txt)."), QStringLiteral("FILE"));
    QCommandLineOption calib(QStringLiteral("calib"), QStringLiteral("Calibration text (default: the model folder's calib.txt)."), QStringLiteral("FILE"));
    QCommandLineOption candidates(QStringLiteral("candidates"), QStringLiteral("Settings, e.g. rtn:w2g64,rtn:w3,gptq:w4g128,rtn:w8."), QStringLiteral("SPEC"));
    QCommandLineOption windows(QStringLiteral("windows"), QStringLiteral("Evaluation windows (default 4)."), QStringLiteral("K"));
    QCommandLineOption ctx(QStringLiteral("ctx"), QStringLiteral("Tokens per window (default 128)."), QStringLiteral("N"));
    QCommandLineOption calibSeqs(QStringLiteral("calib-sequences"), QStringLiteral("Calibration sequences (default 32)."), QStringLiteral("N"));
    QCommandLineOption calibLen(QStringLiteral("calib-length"), QStringLiteral("Tokens per calibration sequence (default 128)."), QStringLiteral("L"));
    QCommandLineOption naive(QStringLiteral("naive-samples"), QStringLiteral("Layers timed the naive way for the speed-up (default 4, 0 = none)."), QStringLiteral("N"));
    QCommandLineOption probes(QStringLiteral("hutchinson-probes"), QStringLiteral("Rademacher probes per layer for the Hessian trace proxy (default 2, 0 = skip)."), QStringLiteral("N"));
    QCommandLineOption out(QStringLiteral("out"), QStringLiteral("Experiment file (.h5)."), QStringLiteral("EXP.h5"));
    c.parser.addOptions({text, calib, candidates, windows, ctx, calibSeqs, calibLen, naive, probes, out});
    int code = 0;
    const QString usage = QStringLiteral("sensitivity MODEL --text EVAL --calib CALIB --candidates SPEC --out EXP.h5 "
                                         "[--windows K] [--ctx N] [--json]");
    if (!parseArgs(c, args, 1, usage, code))
        return code;
    if (!c.parser.isSet(out) || !c.parser.isSet(candidates))
        return usageError(QStringLiteral("--candidates and --out are required"), QStringLiteral("usage: bitsmith-cli %1").arg(usage));
    SensitivityOptions opt;
    opt.naiveSamples = 4;
    if (!intOption(c.parser, windows, opt.windows, 1, code) || !intOption(c.parser, ctx, opt.ctx, 2, code)
        || !intOption(c.parser, calibSeqs, opt.calibSequences, 1, code) || !intOption(c.parser, calibLen, opt.calibLength, 2, code)
        || !intOption(c.parser, naive, opt.naiveSamples, 0, code) || !intOption(c.parser, probes, opt.hutchinsonProbes, 0, code))
        return code;
    auto settings = parseSensitivitySettings(c.parser.value(candidates));
    if (!settings)
        return reportError(settings.error());
    const bool quiet = c.parser.isSet(c.quiet);
    auto model = loadModel(c.parser.positionalArguments().first(), quiet);
    if (!model)
        return reportError(model.error());
    auto textPath = [&](const QCommandLineOption &o, const char *fallback) {
        if (c.parser.isSet(o))
            return c.parser.value(o);
        const QString f = (*model)->folder() + QLatin1Char('/') + QLatin1String(fallback);
        return QFileInfo::exists(f) ? f : QString();
    };
    const QString evalPath = textPath(text, "eval.txt"), calibPath = textPath(calib, "calib.txt");
    if (evalPath.isEmpty())
        return usageError(QStringLiteral("--text is required"), QStringLiteral("usage: bitsmith-cli %1").arg(usage));
    auto evalTokens = tokenizeTextFile(**model, evalPath);
    if (!evalTokens)
        return reportError(evalTokens.error());
    std::vector<std::int32_t> calibIds;
    if (!calibPath.isEmpty()) {
        auto calibTokens = tokenizeTextFile(**model, calibPath);
        if (!calibTokens)
            return reportError(calibTokens.error());
        calibIds = std::move(*calibTokens);
    }
    const std::vector<std::int32_t> &evalIds = *evalTokens;
    StderrFeedback fb(QStringLiteral("sensitivity"), quiet);
    auto analysis = SensitivityAnalysis::create(*model, evalIds, calibIds, opt, &fb);
    if (!analysis)
        return reportError(std::move(analysis.error()).inFile(evalPath));
    auto r = (*analysis)->run(*settings, &fb);
    if (!r)
        return reportError(r.error());
    r->modelFolder = (*model)->folder();
    r->evalText = evalPath;
    r->calibText = calibPath;
    if (auto ok = saveSensitivityExperiment(*r, c.parser.value(out)); !ok)
        return reportError(ok.error());
    const double speedup = r->measureSeconds > 0 ? r->naiveSecondsEstimate / r->measureSeconds : 0.0;
    // The sweep proper (setup + quantize + measure; without the optional Hutchinson probes and the
    // naive timing itself) against the per-cell script.
    const double sweep = r->seconds - r->hutchinsonSeconds - r->naiveTimingSeconds;
    const double scriptSpeedup = sweep > 0 ? r->naiveScriptSecondsEstimate / sweep : 0.0;
    const auto correlations = proxyCorrelations(*r);
    if (c.parser.isSet(c.json)) {
        QJsonArray layers;
        for (std::size_t l = 0; l < r->layers.size(); ++l) {
            QJsonArray cells;
            for (std::size_t s = 0; s < r->settings.size(); ++s)
                cells.append(QJsonObject{{QStringLiteral("setting"), r->settings[s].label()},
                                         {QStringLiteral("bytes"), r->at(r->bytes, l, s)},
                                         {QStringLiteral("delta_loss"), r->at(r->deltaLoss, l, s)},
                                         {QStringLiteral("kl"), r->at(r->kl, l, s)},
                                         {QStringLiteral("perplexity"), r->at(r->perplexity, l, s)},
                                         {QStringLiteral("relative_error"), r->at(r->relativeError, l, s)},
                                         {QStringLiteral("hessian_error"), r->at(r->hessianError, l, s)},
                                         {QStringLiteral("activation_error"), r->at(r->activationError, l, s)},
                                         {QStringLiteral("hutchinson_error"), r->at(r->hutchinsonError, l, s)}});
            layers.append(QJsonObject{{QStringLiteral("name"), r->layers[l]},
                                      {QStringLiteral("parameters"), static_cast<double>(r->parameters[l])},
                                      {QStringLiteral("hutchinson_trace"), r->hutchinsonTrace[l]},
                                      {QStringLiteral("settings"), cells}});
        }
        printJson(QJsonObject{{QStringLiteral("out"), c.parser.value(out)},
                              {QStringLiteral("base_loss"), r->baseLoss},
                              {QStringLiteral("base_perplexity"), r->basePerplexity},
                              {QStringLiteral("seconds"), r->seconds},
                              {QStringLiteral("measure_seconds"), r->measureSeconds},
                              {QStringLiteral("quantize_seconds"), r->quantizeSeconds},
                              {QStringLiteral("hutchinson_seconds"), r->hutchinsonSeconds},
                              {QStringLiteral("hutchinson_probes"), r->hutchinsonProbes},
                              {QStringLiteral("naive_seconds_estimate"), r->naiveSecondsEstimate},
                              {QStringLiteral("speedup"), speedup},
                              {QStringLiteral("sweep_seconds"), sweep},
                              {QStringLiteral("naive_script_seconds_estimate"), r->naiveScriptSecondsEstimate},
                              {QStringLiteral("script_speedup"), scriptSpeedup},
                              {QStringLiteral("proxy_rank_correlation"), correlationJson(correlations)},
                              {QStringLiteral("layers"), layers}});
    } else {
        std::printf("%d layers x %d settings in %.2f s; base perplexity %.4f\n", static_cast<int>(r->layers.size()),
                    static_cast<int>(r->settings.size()), r->seconds, r->basePerplexity);
        if (r->naiveSecondsEstimate > 0)
            std::printf("  measurements %.2f s; a full forward per layer and setting would take ~%.2f s (%.1fx)\n"
                        "  sweep %.2f s; a script that reloads, recalibrates (GPTQ) and runs a full forward per cell ~%.2f s (%.1fx)\n",
                        r->measureSeconds, r->naiveSecondsEstimate, speedup, sweep, r->naiveScriptSecondsEstimate, scriptSpeedup);
        if (r->hutchinsonProbes > 0)
            std::printf("  Hessian traces (%d probes per layer) %.2f s\n", r->hutchinsonProbes, r->hutchinsonSeconds);
        std::printf("  rank correlation (Spearman) of each proxy with   delta loss      KL\n");
        for (const ProxyCorrelation &pc : correlations)
            std::printf("    %-18s %39.3f %8.3f\n", qPrintable(pc.proxy), pc.withDeltaLoss, pc.withKl);
        std::printf("wrote %s\n", qPrintable(c.parser.value(out)));
    }
    return 0;
}

// The allocation problem of an experiment: per layer, its settings with size and Δloss.
std::vector<AllocationLayer> allocationLayers(const SensitivityResult &r, bool useKl)
{
    std::vector<AllocationLayer> layers;
    for (std::size_t l = 0; l < r.layers.size(); ++l) {
        AllocationLayer a{r.layers[l], r.parameters[l], {}};
        for (std::size_t s = 0; s < r.settings.size(); ++s)
            a.options.push_back({r.settings[s].label(), r.at(r.bytes, l, s), r.at(useKl ? r.kl : r.deltaLoss, l, s)});
        layers.push_back(std::move(a));
    }
    return layers;
}

// The recipe that gives each layer of the experiment the setting `choice` picks: one entry per
// layer by exact name; calibration as the sensitivities used when any setting is GPTQ.
Recipe recipeForChoice(const SensitivityResult &exp, const std::vector<int> &choice)
{
    Recipe recipe;
    recipe.modelWeightsHash = exp.modelHash;
    bool needsCalibration = false;
    for (std::size_t l = 0; l < exp.layers.size(); ++l) {
        const SensitivitySetting &s = exp.settings[static_cast<std::size_t>(choice[l])];
        recipe.layers.push_back(recipeEntryFor(exp.layers[l], s));
        needsCalibration = needsCalibration || bitsmith::core::needsCalibration(s);
    }
    if (needsCalibration) {
        // The same calibration text, but compress's own amount of it (the sweep's smaller sample
        // ranks settings; the final model deserves what a uniform GPTQ model gets).
        recipe.calibration.text = exp.calibText;
        recipe.calibration.seed = exp.seed;
    }
    return recipe;
}

// allocate: one setting per layer under a budget, written as a recipe `compress` accepts.
int cmdAllocate(const QStringList &args)
{
    Common c;
    QCommandLineOption bpw(QStringLiteral("target-bpw"), QStringLiteral("Effective bits per weight over the layers."), QStringLiteral("X"));
    QCommandLineOption maxBytes(QStringLiteral("max-bytes"), QStringLiteral("Total bytes of the layers."), QStringLiteral("N"));
    QCommandLineOption maxLoss(QStringLiteral("max-loss-increase"), QStringLiteral("Smallest model whose predicted cost (sum over layers of --metric) is at most D."), QStringLiteral("D"));
    QCommandLineOption greedy(QStringLiteral("greedy"), QStringLiteral("Use the greedy baseline instead of the exact DP."));
    QCommandLineOption metric(QStringLiteral("metric"), QStringLiteral("Per-layer cost to sum: kl (default; KL from the original model) or loss (Δ mean NLL, noisier on short evaluations)."), QStringLiteral("NAME"), QStringLiteral("kl"));
    QCommandLineOption out(QStringLiteral("out"), QStringLiteral("Recipe JSON file."), QStringLiteral("RECIPE.json"));
    c.parser.addOptions({bpw, maxBytes, maxLoss, greedy, metric, out});
    int code = 0;
    const QString usage = QStringLiteral("allocate EXP.h5 (--target-bpw X | --max-bytes N | --max-loss-increase D) "
                                         "--out RECIPE.json [--greedy] [--metric kl|loss] [--json]");
    if (!parseArgs(c, args, 1, usage, code))
        return code;
    const int budgets = int(c.parser.isSet(bpw)) + int(c.parser.isSet(maxBytes)) + int(c.parser.isSet(maxLoss));
    if (budgets != 1 || !c.parser.isSet(out))
        return usageError(QStringLiteral("give exactly one of --target-bpw, --max-bytes, --max-loss-increase, and --out"),
                          QStringLiteral("usage: bitsmith-cli %1").arg(usage));
    auto exp = loadSensitivityExperiment(c.parser.positionalArguments().first());
    if (!exp)
        return reportError(exp.error());
    const QString metricName = c.parser.value(metric);
    if (metricName != QLatin1String("loss") && metricName != QLatin1String("kl"))
        return usageError(QStringLiteral("--metric must be loss or kl, got '%1'").arg(metricName), QStringLiteral("e.g. --metric kl"));
    const std::vector<AllocationLayer> layers = allocationLayers(*exp, metricName == QLatin1String("kl"));
    auto number = [&](const QCommandLineOption &o, double &v) {
        bool ok = false;
        v = c.parser.value(o).toDouble(&ok);
        return ok && std::isfinite(v);
    };
    double value = 0;
    const QCommandLineOption &given = c.parser.isSet(bpw) ? bpw : c.parser.isSet(maxBytes) ? maxBytes : maxLoss;
    if (!number(given, value))
        return usageError(QStringLiteral("--%1 must be a number").arg(given.names().first()), QStringLiteral("e.g. --target-bpw 3.5"));
    Expected<AllocationResult> exact = unexpected(fail(ErrorCode::Internal, QString()));
    Expected<AllocationResult> greedyResult = unexpected(fail(ErrorCode::Internal, QString()));
    if (c.parser.isSet(maxLoss)) {
        if (c.parser.isSet(greedy))
            return usageError(QStringLiteral("--greedy works with a size budget only"), QStringLiteral("use --target-bpw or --max-bytes"));
        exact = allocateMinSize(layers, value);
    } else {
        const double budget = c.parser.isSet(bpw) ? bytesForBitsPerWeight(layers, value) : value;
        exact = allocateExact(layers, budget);
        greedyResult = allocateGreedy(layers, budget);
    }
    if (!exact)
        return reportError(exact.error());
    const AllocationResult &chosen = c.parser.isSet(greedy) ? *greedyResult : *exact;

    const Recipe recipe = recipeForChoice(*exp, chosen.choice);
    if (auto ok = recipe.save(c.parser.value(out)); !ok)
        return reportError(ok.error());
    if (c.parser.isSet(c.json)) {
        QJsonArray chosenLayers;
        for (std::size_t l = 0; l < layers.size(); ++l)
            chosenLayers.append(QJsonObject{{QStringLiteral("name"), layers[l].name},
                                            {QStringLiteral("setting"), layers[l].options[static_cast<std::size_t>(chosen.choice[l])].label}});
        QJsonObject o{{QStringLiteral("out"), c.parser.value(out)},
                      {QStringLiteral("solver"), c.parser.isSet(greedy) ? QStringLiteral("greedy") : QStringLiteral("dp")},
                      {QStringLiteral("metric"), metricName},
                      {QStringLiteral("bytes"), chosen.bytes},
                      {QStringLiteral("bits_per_weight"), chosen.bitsPerWeight},
                      {QStringLiteral("predicted_loss_increase"), chosen.loss},
                      {QStringLiteral("dp_unit_bytes"), exact->unitBytes},
                      {QStringLiteral("layers"), chosenLayers}};
        if (greedyResult)
            o.insert(QStringLiteral("greedy_predicted_loss_increase"), greedyResult->loss);
        o.insert(QStringLiteral("dp_predicted_loss_increase"), exact->loss);
        printJson(o);
    } else {
        std::printf("%s: %.0f bytes (%.3f bits per weight), predicted %s %.5f", c.parser.isSet(greedy) ? "greedy" : "dp",
                    chosen.bytes, chosen.bitsPerWeight, metricName == QLatin1String("kl") ? "KL" : "loss increase", chosen.loss);
        if (greedyResult)
            std::printf(" (dp %.5f, greedy %.5f)", exact->loss, greedyResult->loss);
        std::printf("\nwrote %s\n", qPrintable(c.parser.value(out)));
    }
    return 0;
}

// frontier: the predicted Pareto curve of an experiment, and K points along it (plus the uniform
// model of every candidate setting) compressed for real and evaluated, so the curve is measured.
int cmdFrontier(const QStringList &args)
{
    Common c;
    QCommandLineOption measure(QStringLiteral("measure"), QStringLiteral("Frontier points to compress and evaluate (default 4)."), QStringLiteral("K"));
    QCommandLineOption evalWindows(QStringLiteral("eval-windows"), QStringLiteral("Windows of the evaluation text to measure on (default: all)."), QStringLiteral("N"));
    QCommandLineOption metric(QStringLiteral("metric"), QStringLiteral("Per-layer cost: kl (default) or loss."), QStringLiteral("NAME"), QStringLiteral("kl"));
    QCommandLineOption noUniform(QStringLiteral("no-uniform"), QStringLiteral("Do not measure the uniform models."));
    QCommandLineOption out(QStringLiteral("out"), QStringLiteral("Frontier JSON file."), QStringLiteral("FRONTIER.json"));
    c.parser.addOptions({measure, evalWindows, metric, noUniform, out});
    int code = 0;
    const QString usage = QStringLiteral("frontier EXP.h5 --measure K --out FRONTIER.json [--eval-windows N] [--no-uniform] [--json]");
    if (!parseArgs(c, args, 1, usage, code))
        return code;
    if (!c.parser.isSet(out))
        return usageError(QStringLiteral("--out is required"), QStringLiteral("usage: bitsmith-cli %1").arg(usage));
    int k = 4, windows = 0;
    if (!intOption(c.parser, measure, k, 0, code) || !intOption(c.parser, evalWindows, windows, 1, code))
        return code;
    const QString metricName = c.parser.value(metric);
    if (metricName != QLatin1String("loss") && metricName != QLatin1String("kl"))
        return usageError(QStringLiteral("--metric must be loss or kl, got '%1'").arg(metricName), QStringLiteral("e.g. --metric kl"));
    auto exp = loadSensitivityExperiment(c.parser.positionalArguments().first());
    if (!exp)
        return reportError(exp.error());
    const std::vector<AllocationLayer> layers = allocationLayers(*exp, metricName == QLatin1String("kl"));
    auto curve = allocationFrontier(layers, 200);
    if (!curve)
        return reportError(curve.error());
    QJsonArray predicted;
    for (const FrontierPoint &p : *curve)
        predicted.append(QJsonObject{{QStringLiteral("bytes"), p.bytes}, {QStringLiteral("bits_per_weight"), p.bitsPerWeight},
                                     {QStringLiteral("predicted"), p.loss}});

    // What to measure: K frontier points evenly spread in size, and the uniform models.
    struct Candidate { QString kind; QString label; std::vector<int> choice; };
    std::vector<Candidate> todo;
    for (int i = 0; i < k && !curve->empty(); ++i) {
        const double target = curve->front().bytes + (curve->back().bytes - curve->front().bytes) * (k > 1 ? double(i) / (k - 1) : 1.0);
        std::size_t best = 0;
        for (std::size_t j = 0; j < curve->size(); ++j)
            if (std::abs((*curve)[j].bytes - target) < std::abs((*curve)[best].bytes - target))
                best = j;
        if (todo.empty() || todo.back().choice != (*curve)[best].choice)
            todo.push_back({QStringLiteral("frontier"), QStringLiteral("frontier %1").arg(i), (*curve)[best].choice});
    }
    // Each uniform model, and the allocation under the same size budget beside it.
    if (!c.parser.isSet(noUniform))
        for (std::size_t s = 0; s < exp->settings.size(); ++s) {
            std::vector<int> uniform(layers.size(), int(s));
            todo.push_back({QStringLiteral("uniform"), exp->settings[s].label(), uniform});
            auto same = allocateExact(layers, evaluateChoice(layers, uniform).bytes);
            if (same && same->choice != uniform)
                todo.push_back({QStringLiteral("allocated"), QStringLiteral("@") + exp->settings[s].label(), same->choice});
        }

    const bool quiet = c.parser.isSet(c.quiet);
    QJsonArray measured;
    if (!todo.empty()) {
        auto model = loadModel(exp->modelFolder, quiet);
        if (!model)
            return reportError(model.error());
        if ((*model)->weightsHash() != exp->modelHash)
            return reportError(fail(ErrorCode::Mismatch, QStringLiteral("the model's weights changed since the experiment was made"))
                                   .inFile(exp->modelFolder).withHint(QStringLiteral("run the sensitivity analysis again")));
        auto evalTokens = tokenizeTextFile(**model, exp->evalText);
        if (!evalTokens)
            return reportError(evalTokens.error());
        const std::vector<std::int32_t> &evalIds = *evalTokens;
        std::vector<std::vector<std::int32_t>> calibSeqs;
        if (!exp->calibText.isEmpty()) {
            auto calibTokens = tokenizeTextFile(**model, exp->calibText);
            if (!calibTokens)
                return reportError(calibTokens.error());
            auto seqs = makeCalibrationSequences(*calibTokens, exp->calibSequences,
                                                 std::min(exp->calibLength, (*model)->config().maxPositions), exp->seed);
            if (!seqs)
                return reportError(seqs.error());
            calibSeqs = std::move(*seqs);
        }
        TechniqueRegistry registry;
        EvalOptions eo;
        eo.ctx = exp->ctx;
        eo.maxWindows = windows;
        Transformer reference(*model, LinearBackend::OneDnn);
        for (std::size_t i = 0; i < todo.size(); ++i) {
            if (!quiet)
                std::fprintf(stderr, "frontier: measuring %s (%d/%d)\n", qPrintable(todo[i].label), int(i + 1), int(todo.size()));
            const Recipe recipe = recipeForChoice(*exp, todo[i].choice);
            auto compressed = compressModel(**model, recipe, registry, calibSeqs);
            if (!compressed)
                return reportError(compressed.error());
            Transformer candidate(compressed->model, LinearBackend::OneDnn);
            auto cmp = compareModels(reference, candidate, evalIds, eo);
            if (!cmp)
                return reportError(std::move(cmp.error()).inFile(exp->evalText));
            const AllocationResult pred = evaluateChoice(layers, todo[i].choice);
            measured.append(QJsonObject{{QStringLiteral("kind"), todo[i].kind},
                                        {QStringLiteral("label"), todo[i].label},
                                        {QStringLiteral("bytes"), pred.bytes},
                                        {QStringLiteral("bits_per_weight"), pred.bitsPerWeight},
                                        {QStringLiteral("predicted"), pred.loss},
                                        {QStringLiteral("perplexity"), cmp->candidate.perplexity},
                                        {QStringLiteral("delta_loss"), cmp->candidate.meanNll - cmp->reference.meanNll},
                                        {QStringLiteral("kl"), cmp->meanKl},
                                        {QStringLiteral("reference_perplexity"), cmp->reference.perplexity},
                                        {QStringLiteral("windows"), static_cast<double>(cmp->candidate.windows)}});
        }
    }
    const QJsonObject o{{QStringLiteral("experiment"), c.parser.positionalArguments().first()},
                        {QStringLiteral("metric"), metricName},
                        {QStringLiteral("predicted"), predicted},
                        {QStringLiteral("measured"), measured}};
    QSaveFile f(c.parser.value(out));
    if (!f.open(QIODevice::WriteOnly) || f.write(QJsonDocument(o).toJson(QJsonDocument::Indented)) < 0 || !f.commit())
        return reportError(fail(ErrorCode::Io, QStringLiteral("cannot write the frontier file")).inFile(c.parser.value(out)));
    if (c.parser.isSet(c.json)) {
        printJson(o);
    } else {
        std::printf("%d predicted frontier points; measured:\n", int(predicted.size()));
        for (const auto &v : measured) {
            const QJsonObject m = v.toObject();
            std::printf("  %-10s %-14s %8.3f bpw  predicted %9.5f  perplexity %9.4f  KL %.5f\n",
                        qPrintable(m.value(QStringLiteral("kind")).toString()), qPrintable(m.value(QStringLiteral("label")).toString()),
                        m.value(QStringLiteral("bits_per_weight")).toDouble(), m.value(QStringLiteral("predicted")).toDouble(),
                        m.value(QStringLiteral("perplexity")).toDouble(), m.value(QStringLiteral("kl")).toDouble());
        }
        std::printf("wrote %s\n", qPrintable(c.parser.value(out)));
    }
    return 0;
}

void printUsage(FILE *to)
{
    std::fputs("usage: bitsmith-cli COMMAND [options]\n\n"
               "commands:\n"
               "  info MODEL [--json]                         architecture and every weight tensor\n"
               "  eval MODEL --text FILE [--ctx N] [--max-windows K] [--score-from P] [--json]\n"
               "                                              perplexity (non-overlapping windows)\n"
               "  compare REFERENCE CANDIDATE --text FILE     KL divergence and top-1 agreement\n"
               "  logits MODEL (--text S | --ids I,J,..) --out F.npy   float32 [tokens, vocab] logits\n"
               "  generate MODEL --prompt STRING [--max-tokens N] [--temperature T] [--seed S]\n"
               "  compress MODEL (--recipe FILE | --method NAME --bits B [--group G] [--sym] [--act-order])\n"
               "           [--calib TEXT_FILE] --out DIR     write a compressed model folder\n"
               "  techniques [--json]                         the technique plugins and their parameters\n"
               "  tokenize MODEL --text FILE [--out IDS.json] token ids of a text\n"
               "  sensitivity MODEL --text EVAL --calib CALIB --candidates SPEC --out EXP.h5 [--windows K] [--ctx N]\n"
               "                                              per-layer sensitivity (SPEC: rtn:w2g64,rtn:w3,gptq:w4g128,...)\n"
               "  allocate EXP.h5 (--target-bpw X | --max-bytes N | --max-loss-increase D) --out RECIPE.json [--greedy]\n"
               "                                              bits per layer under a budget, as a recipe\n"
               "  frontier EXP.h5 --measure K --out FRONTIER.json [--eval-windows N]\n"
               "                                              predicted size/loss frontier, K points measured\n"
               "  export MODEL --format gguf|hf|hf-gptq|recipe-yaml --out PATH [--type TYPE] [--strict-exact]\n"
               "  export EXP_OR_PROJECT.h5 --format report --out report.html [--model DIR]\n"
               "                                              GGUF for llama.cpp, Hugging Face folders, llm-compressor YAML\n"
               "  distill TEACHER --student STUDENT --text TRAIN [--val VAL] --steps N [--lr X] [--temperature T] [--alpha A]\n"
               "          [--batch B] [--ctx N] [--accumulate K] [--checkpoint DIR] [--resume DIR] --out DIR\n"
               "                                              knowledge distillation (STUDENT: compressed folder, layers:every-other, mlp:0.5)\n\n"
               "MODEL is a Hugging Face model folder, a compressed folder, a .gguf file, or 'default' for the\n"
               "bundled model.\n"
               "Common options: --threads N, --backend onednn|eigen, --quiet, --help.\n",
               to);
}

} // namespace

namespace {

int dispatch(const QString &command, const QStringList &args)
{
    if (command == QLatin1String("info"))
        return cmdInfo(args);
    if (command == QLatin1String("eval"))
        return cmdEval(args);
    if (command == QLatin1String("compare"))
        return cmdCompare(args);
    if (command == QLatin1String("logits"))
        return cmdLogits(args);
    if (command == QLatin1String("generate"))
        return cmdGenerate(args);
    if (command == QLatin1String("compress"))
        return cmdCompress(args);
    if (command == QLatin1String("techniques"))
        return cmdTechniques(args);
    if (command == QLatin1String("tokenize"))
        return cmdTokenize(args);
    if (command == QLatin1String("sensitivity"))
        return cmdSensitivity(args);
    if (command == QLatin1String("allocate"))
        return cmdAllocate(args);
    if (command == QLatin1String("frontier"))
        return cmdFrontier(args);
    if (command == QLatin1String("export"))
        return cmdExport(args);
    if (command == QLatin1String("distill"))
        return cmdDistill(args);
    if (command == QLatin1String("--help") || command == QLatin1String("-h") || command == QLatin1String("help")) {
        printUsage(stdout);
        return 0;
    }
    if (command == QLatin1String("--version")) {
        std::printf("bitsmith-cli %s\n", BITSMITH_VERSION);
        return 0;
    }
    std::fprintf(stderr, "bitsmith-cli: error: unknown command '%s'\n", qPrintable(command));
    std::fprintf(stderr, "HINT: run 'bitsmith-cli --help' for the list of commands\n");
    return kExitUsage;
}

} // namespace

int main(int argc, char **argv)
{
    prepareProcessEnvironment(argc, argv);
    startMemoryMonitor();
    // Every command runs on a QCoreApplication except the HTML report, whose plots are widgets:
    // decided from argv before the application object exists.
    std::unique_ptr<QCoreApplication> app;
#ifdef BITSMITH_CLI_REPORT
    if (wantsGuiApplication(argc, argv)) {
        prepareGuiEnvironment();
        app = std::make_unique<QApplication>(argc, argv);
    }
#endif
    if (!app)
        app = std::make_unique<QCoreApplication>(argc, argv);
    QCoreApplication::setApplicationName(QStringLiteral("bitsmith-cli"));
    QCoreApplication::setApplicationVersion(QStringLiteral(BITSMITH_VERSION));
    QStringList args = QCoreApplication::arguments();
    if (args.size() < 2) {
        printUsage(stderr);
        return kExitUsage;
    }
    const QString command = args.at(1);
    args.removeAt(1); // QCommandLineParser expects argv[0] first
    try {
        return dispatch(command, args);
    } catch (const std::bad_alloc &) {
        return reportError(fail(ErrorCode::OutOfMemory, QStringLiteral("%1 ran out of memory (peak resident %2)")
                                                            .arg(command, formatBytes(peakResidentBytes())))
                               .withHint(QStringLiteral("use a shorter context, fewer windows or calibration sequences, "
                                                        "or close other programs")));
    }
}
