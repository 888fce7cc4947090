// tokenizer.h: Hugging Face tokenizer.json tokenizers, exact against the reference implementation.
// Two families: byte-level BPE (GPT-2, Llama-3, Qwen2: pre-tokenizer regex + bytes-to-unicode map)
// and SentencePiece-style BPE (Llama-2, Mistral, TinyLlama: Metaspace "▁", byte fallback <0xNN>).
#pragma once

#include "error.h"

#include <QString>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace bitsmith::core {

class TokenizerImpl;

class Tokenizer
{
public:
    enum class Kind { ByteLevelBpe, SentencePieceBpe };

    // Reads a tokenizer.json. Unsupported models or pre-tokenizers are an Error naming them.
    static Expected<std::shared_ptr<Tokenizer>> fromFile(const QString &path);
    static Expected<std::shared_ptr<Tokenizer>> fromJson(const QByteArray &json,
                                                         const QString &pathForErrors);
    ~Tokenizer();

    // Encodes UTF-8 text. With addSpecialTokens the post-processor's tokens (e.g. Llama's BOS) are
    // added as the reference does with add_special_tokens=True (add_bos_token / add_eos_token of
    // tokenizer_config.json, where given, decide instead, as Llama/Gemma tokenizers do); prompts
    // (logits --text, generate, Try It) use true, the perplexity protocol false.
    // Added/special tokens written literally in the text (e.g. "<|endoftext|>") are matched.
    std::vector<std::int32_t> encode(std::string_view utf8, bool addSpecialTokens = false) const;
    // Decodes ids to UTF-8 (invalid byte sequences become U+FFFD as in the reference).
    std::string decode(std::span<const std::int32_t> ids, bool skipSpecialTokens = false) const;

    // The vocabulary string of one id ("Ġthe", "▁the", "<0x0A>"); empty for out-of-range ids.
    std::string idToToken(std::int32_t id) const;
    // -1 when the token is not in the vocabulary.
    std::int32_t tokenToId(std::string_view token) const;
    // Number of ids (vocabulary plus added tokens).
    std::int32_t vocabSize() const;
    Kind kind() const;
    // Ids of the BOS / EOS tokens if the tokenizer defines them, else -1.
    std::int32_t bosId() const;
    std::int32_t eosId() const;

private:
    Tokenizer();
    std::unique_ptr<TokenizerImpl> d;
};

} // namespace bitsmith::core
