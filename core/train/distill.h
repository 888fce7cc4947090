// distill.h: knowledge distillation (issue 8). A teacher (any model the core runtime runs, no
// gradient) trains a student TrainModel on random windows of a training text with
//   loss = α·T²·KL(softmax(teacher/T) ‖ softmax(student/T)) + (1 − α)·CE(student, next token)
//          + β·hidden-state loss (optional: MSE or cosine on chosen student blocks),
// KL averaged over positions ("batchmean"). The teacher's logits are computed on the fly for each
// micro-batch (the teacher forward costs about a third of a student step; nothing is cached on
// disk, so any window of the text can be drawn). α = 0 is plain fine-tuning with CE alone (the
// teacher is then not run). Optimizer: AdamW, warm-up + cosine schedule, global-norm clipping,
// gradient accumulation. Checkpoints hold the parameters (latent QAT values), the AdamW moments
// and step, the data sampler's RNG state and the step, written atomically; resuming continues
// bit for bit as if the run had not stopped. Progress (losses, validation, tokens/s, ETA) goes to
// a Feedback and a callback, so the CLI and a GUI view share the same engine.
#pragma once

#include "core/error.h"
#include "core/feedback.h"
#include "core/model.h"
#include "core/transformer.h"
#include "optimizer.h"
#include "trainmodel.h"

#include <QString>

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <span>
#include <vector>

namespace bitsmith::core::train {

struct KdLoss
{
    double total = 0.0; // α·T²·kl + (1 − α)·ce
    double kl = 0.0;    // KL(teacher/T ‖ student/T), mean over positions
    double ce = 0.0;    // cross-entropy of the student, mean over positions
};

// The response-based loss over n positions and its gradient (× scale) w.r.t. the student's
// logits, written to dStudent (n · vocab; may be null). teacher may be null when alpha == 0.
KdLoss distillationLoss(const float *student, const float *teacher, const std::int32_t *targets, std::int64_t n,
                        std::int64_t vocab, float temperature, float alpha, float *dStudent, float scale = 1.0f);

// The hidden-state loss between a student block output hs and a teacher's ht ([rows, cols]):
// "mse" = mean((hs − ht)²) over all entries, "cosine" = mean over rows of 1 − cos(hs_r, ht_r).
// Adds scale · d(loss)/d(hs) into dhs (may be null). Returns the loss.
double hiddenStateLoss(const float *hs, const float *ht, std::int64_t rows, std::int64_t cols, bool cosine, float *dhs,
                       float scale = 1.0f);

// The teacher's logits [seqs · t, vocab] for seqs sequences of t tokens (each from position 0).
// hidden (optional) receives each block's output [seqs · t, hidden] per block.
std::vector<float> teacherLogits(const Transformer &teacher, std::span<const std::int32_t> ids, std::int64_t seqs,
                                 std::int64_t t, std::vector<std::vector<float>> *hidden = nullptr);

struct DistillOptions
{
    int steps = 100;
    double learningRate = 1e-4;
    int warmupSteps = -1;      // -1: steps / 10
    double minLrRatio = 0.1;   // the cosine ends at learningRate · minLrRatio
    double weightDecay = 0.0;
    double clipNorm = 1.0;     // <= 0: no clipping
    int batch = 4;             // sequences per micro-batch
    int ctx = 128;             // tokens per sequence
    int accumulate = 1;        // micro-batches per optimizer step
    float temperature = 2.0f;
    float alpha = 0.5f;        // 1 = KD only, 0 = CE only (plain fine-tuning)
    // Hidden-state loss: weight β (0 = off), on these student blocks (empty with β > 0: all). Student
    // block i is matched with teacher block round((i + 1) · Lt / Ls) − 1 (every-other students:
    // block i ↔ teacher block 2i + 1, the output of the pair it replaces).
    double hiddenWeight = 0.0;
    bool hiddenCosine = false;
    std::vector<int> hiddenLayers;
    std::uint64_t seed = 0;
    int evalEvery = 0;    // validation every N steps (0: steps / 5); also at the start and the end
    int valWindows = 16;  // validation windows of ctx tokens (0: all)
    QString checkpointDir; // "" = no checkpoints
    int checkpointEvery = 0; // 0: only at the end (and on cancel)
    int logEvery = 1;        // a progress line to Feedback::log every N steps (and at validations)
};

struct DistillProgress
{
    int step = 0; // steps done
    int steps = 0;
    double learningRate = 0.0;
    double loss = 0.0, kd = 0.0, ce = 0.0, hidden = 0.0; // kd = α·T²·KL part, ce = (1−α)·CE part
    double kl = 0.0, rawCe = 0.0;                         // unweighted KL and CE
    double gradNorm = 0.0;                                // before clipping
    double valLoss = std::numeric_limits<double>::quiet_NaN(); // mean NLL on the validation windows (when evaluated)
    double tokensPerSecond = 0.0; // student tokens per second of training steps in this run (teacher included, validation not)
    double elapsedSeconds = 0.0;
    double etaSeconds = 0.0;
};

// "step 10/100  loss 3.1234 (kd 1.2000 ce 1.9234)  val 3.4500 (ppl 31.50)  lr 1.00e-04  950 tok/s  ETA 1m20s"
QString progressLine(const DistillProgress &p);

class Distiller
{
public:
    // teacher may be null when alpha == 0 and hiddenWeight == 0. Checks the options and that the
    // texts are long enough and the vocabularies agree.
    static Expected<std::unique_ptr<Distiller>> create(std::shared_ptr<const Model> teacher, TrainModel student,
                                                       std::vector<std::int32_t> trainTokens,
                                                       std::vector<std::int32_t> valTokens, DistillOptions options);

    // Runs until options.steps (or `maxSteps` more steps, when >= 0). Calls onProgress after every
    // step; progress lines (progressLine) go to feedback->log every options.logEvery steps. Cancellation through the feedback writes a checkpoint (when a folder is set) and
    // returns ErrorCode::Cancelled.
    Expected<void> run(Feedback *feedback, const std::function<void(const DistillProgress &)> &onProgress = {},
                       int maxSteps = -1);

    // Mean NLL (nats) of the student on the validation windows (the perplexity protocol of
    // evaluate.h: windows of ctx tokens, tokens 1..ctx-1 scored); NaN without validation text.
    double validationLoss() const;
    // The same for the teacher.
    double teacherValidationLoss() const;

    Expected<void> saveCheckpoint(const QString &dir) const;
    Expected<void> loadCheckpoint(const QString &dir);

    int step() const { return m_step; }
    const DistillOptions &options() const { return m_options; }
    const TrainModel &student() const { return m_student; }
    TrainModel &student() { return m_student; }
    const std::vector<DistillProgress> &history() const { return m_history; }

private:
    Distiller() = default;
    DistillProgress trainStep();

    std::shared_ptr<const Model> m_teacherModel;
    std::unique_ptr<Transformer> m_teacher;
    TrainModel m_student;
    AdamW m_optimizer;
    std::vector<std::int32_t> m_train, m_val;
    DistillOptions m_options;
    int m_step = 0;
    std::uint64_t m_rng = 0;
    std::vector<DistillProgress> m_history;
};

// Writes the student as a model folder Model::load reads. A student with quantized (QAT) layers
// is re-quantized on its frozen grids and written with writeCompressedModel as a compressed
// folder (recipe.json kept from studentFolder when present) whose tensor names and dense tensors
// come from `denseSource` (the teacher: the same architecture, uncompressed). Other students are
// written as a plain Hugging Face folder (f32 safetensors, config.json from configSource with
// num_hidden_layers / intermediate_size of the student, tokenizer files copied). Atomic: built in
// a temporary folder and renamed into place.
// Whether saveStudent can write this student against denseSource (checked before training, so a
// long run does not end in an error): every parameter of a quantized student must be a tensor of
// denseSource with the same number of elements.
Expected<void> checkStudentSavable(const TrainModel &student, const Model &denseSource);
Expected<void> saveStudent(const TrainModel &student, const Model &studentModel, const Model &denseSource,
                           const QString &outDir);
Expected<void> saveDenseStudent(const TrainModel &student, const QString &configSourceFolder, const QString &outDir);

} // namespace bitsmith::core::train
