// tokenizer.cpp: reads a Hugging Face tokenizer.json (BPE models) and encodes/decodes text with
// the same ids as the Hugging Face `tokenizers` library (the Rust reference, checked against it
// and against transformers.js on real GPT-2, Llama-2/Mistral, Llama-3 and Qwen3 vocabularies).
//
// The pipeline follows the reference step by step, because exactness depends on the order:
//   1. added tokens with normalized=false are cut out of the raw text (leftmost-longest match);
//   2. each remaining section is normalized (NFC, Prepend, Replace, ...), then added tokens with
//      normalized=true are cut out of the normalized text;
//   3. the pre-tokenizer splits each piece (ByteLevel's GPT-2 regex, Split with a regex,
//      Metaspace, Digits);
//   4. each pre-token goes through BPE (priority-queue merging by rank, byte fallback, unk
//      fusing, ignore_merges) with a cache of repeated words;
//   5. the post-processor adds BOS/EOS-style tokens when asked to.
// The GPT-2, Llama-3 and Qwen2 split regexes are matched by hand-written code (exact and several
// times faster than a regex engine); any other pattern goes through QRegularExpression (PCRE2).
#include "tokenizer.h"

#include <QByteArray>
#include <QChar>
#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QJsonValue>
#include <QRegularExpression>
#include <QString>

#include <algorithm>
#include <array>
#include <cstdio>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>

namespace bitsmith::core {

namespace {

constexpr char32_t kReplacementChar = 0xFFFD;

// ---------------------------------------------------------------------------------------------
// UTF-8
// ---------------------------------------------------------------------------------------------

// Decodes one code point. Ill-formed input consumes its "maximal subpart" (the Unicode
// recommendation that Rust's from_utf8_lossy and JavaScript's TextDecoder both follow) and gives
// ok = false, so that replacing it with one U+FFFD matches the reference.
std::size_t decodeUtf8(const unsigned char *p, std::size_t n, char32_t &cp, bool &ok)
{
    const unsigned char b0 = p[0];
    ok = true;
    if (b0 < 0x80) {
        cp = b0;
        return 1;
    }
    int need = 0;
    unsigned char lo = 0x80;
    unsigned char hi = 0xBF;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        need = 1;
        cp = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        need = 2;
        cp = b0 & 0x0F;
        if (b0 == 0xE0)
            lo = 0xA0;
        else if (b0 == 0xED)
            hi = 0x9F; // no UTF-16 surrogates
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        need = 3;
        cp = b0 & 0x07;
        if (b0 == 0xF0)
            lo = 0x90;
        else if (b0 == 0xF4)
            hi = 0x8F; // nothing above U+10FFFF
    } else {
        ok = false;
        cp = kReplacementChar;
        return 1;
    }
    std::size_t i = 1;
    for (int k = 0; k < need; ++k, ++i) {
        if (i >= n || p[i] < lo || p[i] > hi) {
            ok = false;
            cp = kReplacementChar;
            return i;
        }
        cp = (cp << 6) | (p[i] & 0x3F);
        lo = 0x80;
        hi = 0xBF;
    }
    return i;
}

void appendUtf8(std::string &out, char32_t cp)
{
    if (cp < 0x80) {
        out += static_cast<char>(cp);
    } else if (cp < 0x800) {
        out += static_cast<char>(0xC0 | (cp >> 6));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        out += static_cast<char>(0xE0 | (cp >> 12));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
        out += static_cast<char>(0xF0 | (cp >> 18));
        out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
        out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
        out += static_cast<char>(0x80 | (cp & 0x3F));
    }
}

bool isValidUtf8(std::string_view s)
{
    const auto *p = reinterpret_cast<const unsigned char *>(s.data());
    std::size_t i = 0;
    while (i < s.size()) {
        if (p[i] < 0x80) {
            ++i;
            continue;
        }
        char32_t cp = 0;
        bool ok = true;
        i += decodeUtf8(p + i, s.size() - i, cp, ok);
        if (!ok)
            return false;
    }
    return true;
}

// Like Rust's String::from_utf8_lossy: each ill-formed subsequence becomes one U+FFFD.
std::string toValidUtf8(std::string_view s)
{
    std::string out;
    out.reserve(s.size());
    const auto *p = reinterpret_cast<const unsigned char *>(s.data());
    std::size_t i = 0;
    while (i < s.size()) {
        char32_t cp = 0;
        bool ok = true;
        const std::size_t len = decodeUtf8(p + i, s.size() - i, cp, ok);
        if (ok)
            out.append(s.data() + i, len);
        else
            appendUtf8(out, kReplacementChar);
        i += len;
    }
    return out;
}

std::u32string toCodePoints(std::string_view s)
{
    std::u32string out;
    out.reserve(s.size());
    const auto *p = reinterpret_cast<const unsigned char *>(s.data());
    std::size_t i = 0;
    while (i < s.size()) {
        char32_t cp = 0;
        bool ok = true;
        i += decodeUtf8(p + i, s.size() - i, cp, ok);
        out += cp;
    }
    return out;
}

std::string fromCodePoints(std::u32string_view s)
{
    std::string out;
    out.reserve(s.size());
    for (char32_t c : s)
        appendUtf8(out, c);
    return out;
}

QString toQString(std::string_view s)
{
    return QString::fromUtf8(s.data(), static_cast<qsizetype>(s.size()));
}

std::string toStdString(const QString &s)
{
    const QByteArray b = s.toUtf8();
    return std::string(b.constData(), static_cast<std::size_t>(b.size()));
}

bool isAscii(std::string_view s)
{
    return std::all_of(
        s.begin(), s.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

// ---------------------------------------------------------------------------------------------
// Character classes of the pre-tokenizer regexes: \s, \p{L}, \p{N}
// ---------------------------------------------------------------------------------------------

enum CharClass : std::uint8_t { kOther = 0, kLetter = 1, kNumber = 2, kSpace = 4 };

// \s of the reference (Oniguruma with Unicode): the White_Space property. transformers.js (a
// JavaScript \s) differs on U+0085 (not space there) and U+FEFF (space there).
bool isWhiteSpace(char32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680
        || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F
        || c == 0x3000;
}

// Letters and numbers assigned in Unicode versions newer than Qt 6.4's tables (up to 16.0, the
// version the reference's regex engine uses). Found by classifying every code point with both;
// only consulted for code points that Qt reports as unassigned.
struct ClassRange
{
    char32_t first;
    char32_t last;
    std::uint8_t cls;
};
constexpr ClassRange kNewerUnicodeClasses[] = {
    { 0x1C89, 0x1C8A, kLetter },   { 0xA7CB, 0xA7CD, kLetter },   { 0xA7DA, 0xA7DC, kLetter },
    { 0x105C0, 0x105F3, kLetter }, { 0x10D40, 0x10D49, kNumber }, { 0x10D4A, 0x10D65, kLetter },
    { 0x10D6F, 0x10D85, kLetter }, { 0x10EC2, 0x10EC4, kLetter }, { 0x1123F, 0x11240, kLetter },
    { 0x11380, 0x11389, kLetter }, { 0x1138B, 0x1138B, kLetter }, { 0x1138E, 0x1138E, kLetter },
    { 0x11390, 0x113B5, kLetter }, { 0x113B7, 0x113B7, kLetter }, { 0x113D1, 0x113D1, kLetter },
    { 0x113D3, 0x113D3, kLetter }, { 0x116D0, 0x116E3, kNumber }, { 0x11BC0, 0x11BE0, kLetter },
    { 0x11BF0, 0x11BF9, kNumber }, { 0x11F02, 0x11F02, kLetter }, { 0x11F04, 0x11F10, kLetter },
    { 0x11F12, 0x11F33, kLetter }, { 0x11F50, 0x11F59, kNumber }, { 0x1342F, 0x1342F, kLetter },
    { 0x13441, 0x13446, kLetter }, { 0x13460, 0x143FA, kLetter }, { 0x16100, 0x1611D, kLetter },
    { 0x16130, 0x16139, kNumber }, { 0x16D40, 0x16D6C, kLetter }, { 0x16D70, 0x16D79, kNumber },
    { 0x18CFF, 0x18CFF, kLetter }, { 0x1B132, 0x1B132, kLetter }, { 0x1B155, 0x1B155, kLetter },
    { 0x1CCF0, 0x1CCF9, kNumber }, { 0x1D2C0, 0x1D2D3, kNumber }, { 0x1DF25, 0x1DF2A, kLetter },
    { 0x1E030, 0x1E06D, kLetter }, { 0x1E4D0, 0x1E4EB, kLetter }, { 0x1E4F0, 0x1E4F9, kNumber },
    { 0x1E5D0, 0x1E5ED, kLetter }, { 0x1E5F0, 0x1E5F0, kLetter }, { 0x1E5F1, 0x1E5FA, kNumber },
    { 0x2B739, 0x2B739, kLetter }, { 0x2EBF0, 0x2EE5D, kLetter }, { 0x31350, 0x323AF, kLetter },
};

std::uint8_t classifySlow(char32_t c)
{
    if (isWhiteSpace(c))
        return kSpace;
    switch (QChar::category(c)) {
    case QChar::Letter_Uppercase:
    case QChar::Letter_Lowercase:
    case QChar::Letter_Titlecase:
    case QChar::Letter_Modifier:
    case QChar::Letter_Other:
        return kLetter;
    case QChar::Number_DecimalDigit:
    case QChar::Number_Letter:
    case QChar::Number_Other:
        return kNumber;
    case QChar::Other_NotAssigned:
        for (const ClassRange &r : kNewerUnicodeClasses) {
            if (c >= r.first && c <= r.last)
                return r.cls;
        }
        return kOther;
    default:
        return kOther;
    }
}

// The Basic Multilingual Plane in a table, built once (64 KiB), since the regexes ask for the
// class of every character.
const std::uint8_t *bmpClasses()
{
    static const std::array<std::uint8_t, 0x10000> table = [] {
        std::array<std::uint8_t, 0x10000> t {};
        for (char32_t c = 0; c < 0x10000; ++c)
            t[c] = (c >= 0xD800 && c <= 0xDFFF) ? std::uint8_t(kOther) : classifySlow(c);
        return t;
    }();
    return table.data();
}

// \w of the Rust regex crate (used for single_word added tokens): alphabetic, marks, decimal
// digits, connector punctuation, joiners. Approximated with Qt's categories.
bool isWordChar(char32_t c)
{
    if (c == 0x200C || c == 0x200D)
        return true;
    switch (QChar::category(c)) {
    case QChar::Letter_Uppercase:
    case QChar::Letter_Lowercase:
    case QChar::Letter_Titlecase:
    case QChar::Letter_Modifier:
    case QChar::Letter_Other:
    case QChar::Number_DecimalDigit:
    case QChar::Number_Letter:
    case QChar::Mark_NonSpacing:
    case QChar::Mark_SpacingCombining:
    case QChar::Mark_Enclosing:
    case QChar::Punctuation_Connector:
        return true;
    default:
        return false;
    }
}

// ---------------------------------------------------------------------------------------------
// GPT-2 byte-to-unicode map (bytes_char in the reference)
// ---------------------------------------------------------------------------------------------

struct ByteLevelAlphabet
{
    // The characters are all below U+0144, so the inverse map is a small array (-1: not a byte).
    static constexpr char32_t kEnd = 0x144;
    std::array<char32_t, 256> byteToChar {};
    std::array<std::int16_t, kEnd> charToByte {};

    int byteOf(char32_t c) const { return c < kEnd ? charToByte[c] : -1; }

    ByteLevelAlphabet()
    {
        std::array<bool, 256> direct {};
        for (int b = '!'; b <= '~'; ++b)
            direct[b] = true;
        for (int b = 0xA1; b <= 0xAC; ++b)
            direct[b] = true;
        for (int b = 0xAE; b <= 0xFF; ++b)
            direct[b] = true;
        charToByte.fill(-1);
        char32_t n = 0;
        for (int b = 0; b < 256; ++b) {
            byteToChar[b] = direct[b] ? static_cast<char32_t>(b) : 256 + n++;
            charToByte[byteToChar[b]] = static_cast<std::int16_t>(b);
        }
    }
};

const ByteLevelAlphabet &byteLevelAlphabet()
{
    static const ByteLevelAlphabet alphabet;
    return alphabet;
}

// Maps a byte-level vocabulary string ("Ġthe") back to the bytes it stands for (" the").
std::optional<std::string> byteLevelToBytes(std::string_view token)
{
    const ByteLevelAlphabet &a = byteLevelAlphabet();
    std::string out;
    out.reserve(token.size());
    for (char32_t c : toCodePoints(token)) {
        const int b = a.byteOf(c);
        if (b < 0)
            return std::nullopt;
        out += static_cast<char>(b);
    }
    return out;
}

// ---------------------------------------------------------------------------------------------
// Split patterns
// ---------------------------------------------------------------------------------------------

struct ByteRange
{
    std::size_t start;
    std::size_t end;
};

// The three regexes that real byte-level tokenizers use, recognized by their exact text.
enum class BuiltinRegex { None, Gpt2, Llama3, Qwen2 };

const char *const kGpt2Regex
    = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
const char *const kLlama3Regex
    = R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char *const kQwen2Regex
    = R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// A text decoded once for the hand-written matchers: code points, their classes and the byte
// offset of each (offsets has one more entry, the total length).
struct DecodedText
{
    std::u32string cps;
    std::vector<std::uint8_t> cls;
    std::vector<std::uint32_t> offsets;

    void assign(std::string_view s)
    {
        cps.clear();
        cls.clear();
        offsets.clear();
        const std::uint8_t *bmp = bmpClasses();
        const auto *p = reinterpret_cast<const unsigned char *>(s.data());
        std::size_t i = 0;
        while (i < s.size()) {
            char32_t cp = p[i];
            std::size_t len = 1;
            if (cp >= 0x80) {
                bool ok = true;
                len = decodeUtf8(p + i, s.size() - i, cp, ok);
            }
            cps += cp;
            cls.push_back(cp < 0x10000 ? bmp[cp] : classifySlow(cp));
            offsets.push_back(static_cast<std::uint32_t>(i));
            i += len;
        }
        offsets.push_back(static_cast<std::uint32_t>(s.size()));
    }
};

// The whitespace tail shared by all three regexes: `\s+(?!\S)|\s+` at i (a space). The greedy
// run backs off by one so that the last space stays with the following word, unless the run
// ends the text or is a single character (then `\s+` takes it).
std::size_t matchSpaces(const DecodedText &t, std::size_t i)
{
    const std::size_t n = t.cps.size();
    std::size_t e = i;
    while (e < n && t.cls[e] == kSpace)
        ++e;
    if (e == n || e - i == 1)
        return e;
    return e - 1;
}

// 's|'t|'re|'ve|'m|'ll|'d, optionally case-insensitive as (?i:...) in the reference, whose
// Unicode case folding also maps U+017F (long s) to s. Returns the end, or i when no match.
std::size_t matchContraction(const DecodedText &t, std::size_t i, bool caseInsensitive)
{
    const std::size_t n = t.cps.size();
    if (t.cps[i] != U'\'' || i + 1 >= n)
        return i;
    auto fold = [caseInsensitive](char32_t c) -> char32_t {
        if (!caseInsensitive)
            return c;
        if (c >= U'A' && c <= U'Z')
            return c + 32;
        if (c == 0x17F)
            return U's';
        return c;
    };
    const char32_t c1 = fold(t.cps[i + 1]);
    if (c1 == U's' || c1 == U't' || c1 == U'm' || c1 == U'd')
        return i + 2;
    if (i + 2 < n) {
        const char32_t c2 = fold(t.cps[i + 2]);
        if ((c1 == U'r' && c2 == U'e') || (c1 == U'v' && c2 == U'e') || (c1 == U'l' && c2 == U'l'))
            return i + 3;
    }
    return i;
}

// GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
std::size_t matchGpt2At(const DecodedText &t, std::size_t i)
{
    const std::size_t n = t.cps.size();
    if (const std::size_t e = matchContraction(t, i, false); e > i)
        return e;
    // ` ?X+` for X in letters, numbers, other: the optional space only when X follows it.
    std::size_t j = i;
    if (t.cps[j] == U' ' && j + 1 < n && t.cls[j + 1] != kSpace)
        ++j;
    const std::uint8_t c = t.cls[j];
    if (c != kSpace) {
        std::size_t e = j + 1;
        while (e < n && t.cls[e] == c)
            ++e;
        return e;
    }
    return matchSpaces(t, i);
}

// Llama-3 (maxDigits 3) and Qwen2 (maxDigits 1):
// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*
// |\s*[\r\n]+|\s+(?!\S)|\s+
std::size_t matchLlama3At(const DecodedText &t, std::size_t i, std::size_t maxDigits)
{
    const std::size_t n = t.cps.size();
    if (const std::size_t e = matchContraction(t, i, true); e > i)
        return e;
    const char32_t c = t.cps[i];
    const std::uint8_t cl = t.cls[i];
    // [^\r\n\p{L}\p{N}]?\p{L}+
    {
        std::size_t j = i;
        if (cl != kLetter && cl != kNumber && c != U'\r' && c != U'\n' && i + 1 < n
            && t.cls[i + 1] == kLetter)
            ++j;
        if (t.cls[j] == kLetter) {
            std::size_t e = j + 1;
            while (e < n && t.cls[e] == kLetter)
                ++e;
            return e;
        }
    }
    // \p{N}{1,3}
    if (cl == kNumber) {
        std::size_t e = i + 1;
        while (e < n && e - i < maxDigits && t.cls[e] == kNumber)
            ++e;
        return e;
    }
    // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
    {
        std::size_t j = i;
        if (c == U' ' && i + 1 < n && t.cls[i + 1] == kOther)
            ++j;
        if (t.cls[j] == kOther) {
            std::size_t e = j + 1;
            while (e < n && t.cls[e] == kOther)
                ++e;
            while (e < n && (t.cps[e] == U'\r' || t.cps[e] == U'\n'))
                ++e;
            return e;
        }
    }
    // \s*[\r\n]+ : the greedy \s* backs off to the last line break of the whitespace run.
    if (cl == kSpace) {
        std::size_t e = i;
        std::size_t lastBreak = n;
        while (e < n && t.cls[e] == kSpace) {
            if (t.cps[e] == U'\r' || t.cps[e] == U'\n')
                lastBreak = e;
            ++e;
        }
        if (lastBreak != n)
            return lastBreak + 1;
        return matchSpaces(t, i);
    }
    return i + 1; // not reachable: every character is a letter, number, space or other
}

// A compiled Split/ByteLevel pattern: builtin, literal string, or a PCRE2 regex.
struct SplitPattern
{
    BuiltinRegex builtin = BuiltinRegex::None;
    std::string literal; // when !isRegex
    bool isRegex = false;
    std::optional<QRegularExpression> regex; // when isRegex and not builtin
    std::string source; // for error messages

    void findMatches(std::string_view text, DecodedText &scratch, std::vector<ByteRange> &out) const
    {
        out.clear();
        if (text.empty())
            return;
        if (builtin != BuiltinRegex::None) {
            scratch.assign(text);
            const std::size_t n = scratch.cps.size();
            std::size_t i = 0;
            while (i < n) {
                std::size_t e = 0;
                switch (builtin) {
                case BuiltinRegex::Gpt2:
                    e = matchGpt2At(scratch, i);
                    break;
                case BuiltinRegex::Llama3:
                    e = matchLlama3At(scratch, i, 3);
                    break;
                default:
                    e = matchLlama3At(scratch, i, 1);
                    break;
                }
                out.push_back({ scratch.offsets[i], scratch.offsets[e] });
                i = e;
            }
            return;
        }
        if (!isRegex) {
            if (literal.empty())
                return;
            std::size_t pos = 0;
            while ((pos = text.find(literal, pos)) != std::string_view::npos) {
                out.push_back({ pos, pos + literal.size() });
                pos += literal.size();
            }
            return;
        }
        // PCRE2 works on UTF-16; matches come back in order, so offsets are mapped by walking.
        const QString s = toQString(text);
        QRegularExpressionMatchIterator it = regex->globalMatch(s);
        qsizetype u16 = 0;
        std::size_t u8 = 0;
        auto advance = [&](qsizetype to) {
            while (u16 < to) {
                const char16_t ch = s.at(u16).unicode();
                if (QChar::isHighSurrogate(ch) && u16 + 1 < s.size()) {
                    u16 += 2;
                    u8 += 4;
                } else {
                    u16 += 1;
                    u8 += ch < 0x80 ? 1 : (ch < 0x800 ? 2 : 3);
                }
            }
        };
        while (it.hasNext()) {
            const QRegularExpressionMatch m = it.next();
            advance(m.capturedStart());
            const std::size_t start = u8;
            advance(m.capturedEnd());
            out.push_back({ start, u8 });
        }
    }
};

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

// Turns matches into pieces the way the reference's NormalizedString::split does.
void applySplitBehavior(std::size_t length,
                        const std::vector<ByteRange> &matches,
                        SplitBehavior behavior,
                        bool invert,
                        std::vector<ByteRange> &out)
{
    struct Segment
    {
        std::size_t start;
        std::size_t end;
        bool isMatch;
    };
    std::vector<Segment> segs;
    segs.reserve(matches.size() * 2 + 1);
    std::size_t prev = 0;
    for (const ByteRange &m : matches) {
        if (prev != m.start)
            segs.push_back({ prev, m.start, false });
        segs.push_back({ m.start, m.end, true });
        prev = m.end;
    }
    if (prev != length)
        segs.push_back({ prev, length, false });
    if (invert) {
        for (Segment &s : segs)
            s.isMatch = !s.isMatch;
    }

    out.clear();
    switch (behavior) {
    case SplitBehavior::Removed:
        for (const Segment &s : segs) {
            if (!s.isMatch)
                out.push_back({ s.start, s.end });
        }
        break;
    case SplitBehavior::Isolated:
        for (const Segment &s : segs)
            out.push_back({ s.start, s.end });
        break;
    case SplitBehavior::MergedWithPrevious: {
        bool previousMatch = false;
        for (const Segment &s : segs) {
            if (s.isMatch && !previousMatch && !out.empty())
                out.back().end = s.end;
            else
                out.push_back({ s.start, s.end });
            previousMatch = s.isMatch;
        }
        break;
    }
    case SplitBehavior::MergedWithNext: {
        bool previousMatch = false;
        for (auto it = segs.rbegin(); it != segs.rend(); ++it) {
            if (it->isMatch && !previousMatch && !out.empty())
                out.back().start = it->start;
            else
                out.push_back({ it->start, it->end });
            previousMatch = it->isMatch;
        }
        std::reverse(out.begin(), out.end());
        break;
    }
    case SplitBehavior::Contiguous: {
        bool previousMatch = false;
        bool first = true;
        for (const Segment &s : segs) {
            if (!first && s.isMatch == previousMatch)
                out.back().end = s.end;
            else
                out.push_back({ s.start, s.end });
            previousMatch = s.isMatch;
            first = false;
        }
        break;
    }
    }
    // The reference drops empty pieces.
    out.erase(
        std::remove_if(out.begin(), out.end(), [](const ByteRange &r) { return r.start == r.end; }),
        out.end());
}

// ---------------------------------------------------------------------------------------------
// Pipeline steps read from the JSON
// ---------------------------------------------------------------------------------------------

struct NormalizerStep
{
    enum class Type { Nfc, Nfd, Nfkc, Nfkd, Prepend, Replace, Lowercase, Strip };
    Type type = Type::Nfc;
    std::string text; // Prepend: prefix; Replace: content
    SplitPattern pattern; // Replace
    bool left = false; // Strip
    bool right = false;
};

enum class PrependScheme { Always, First, Never };

struct PreTokenizerStep
{
    enum class Type { ByteLevel, Split, Metaspace, Digits };
    Type type = Type::ByteLevel;
    bool addPrefixSpace = false; // ByteLevel
    bool useRegex = true; // ByteLevel
    SplitPattern pattern; // Split (ByteLevel uses the GPT-2 builtin)
    SplitBehavior behavior = SplitBehavior::Isolated;
    bool invert = false;
    std::string replacement; // Metaspace
    PrependScheme prependScheme = PrependScheme::Always;
    bool split = true; // Metaspace
    bool individualDigits = false;
};

struct DecoderStep
{
    enum class Type { ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace };
    Type type = Type::ByteLevel;
    std::string pattern; // Replace (literal)
    std::string content; // Replace
    char32_t stripChar = U' ';
    std::size_t start = 0;
    std::size_t stop = 0;
    char32_t replacement = 0x2581;
    PrependScheme prependScheme = PrependScheme::Always;
};

// One post-processor wraps the ids: prefix + ids + suffix (TemplateProcessing's single template,
// Bert/RobertaProcessing's [CLS] ... [SEP]); ByteLevel adds nothing.
struct PostStep
{
    std::vector<std::int32_t> prefix;
    std::vector<std::int32_t> suffix;
};

struct AddedToken
{
    std::string content;
    std::int32_t id = -1;
    bool special = false;
    bool lstrip = false;
    bool rstrip = false;
    bool normalized = false;
    bool singleWord = false;
};

// Leftmost-longest literal matching of added tokens. Real files have few added tokens (at most a
// few hundred, nearly all starting with '<'), so a first-byte index with candidates sorted by
// length is as fast as an Aho-Corasick automaton here.
class AddedTokenMatcher
{
public:
    void add(std::string pattern, int index)
    {
        if (pattern.empty())
            return;
        const auto first = static_cast<unsigned char>(pattern[0]);
        m_patterns.push_back({ std::move(pattern), index });
        m_byFirstByte[first].push_back(m_patterns.size() - 1);
        m_hasFirst[first] = true;
        auto &bucket = m_byFirstByte[first];
        std::stable_sort(bucket.begin(), bucket.end(), [this](std::size_t a, std::size_t b) {
            return m_patterns[a].first.size() > m_patterns[b].first.size();
        });
    }
    bool empty() const { return m_patterns.empty(); }

    // Finds the leftmost match at or after `from`, the longest one there.
    bool find(std::string_view text,
              std::size_t from,
              std::size_t &start,
              std::size_t &length,
              int &index) const
    {
        for (std::size_t i = from; i < text.size(); ++i) {
            const auto b = static_cast<unsigned char>(text[i]);
            if (!m_hasFirst[b])
                continue;
            const std::string_view rest = text.substr(i);
            for (std::size_t k : m_byFirstByte[b]) {
                const std::string &p = m_patterns[k].first;
                if (rest.starts_with(p)) {
                    start = i;
                    length = p.size();
                    index = m_patterns[k].second;
                    return true;
                }
            }
        }
        return false;
    }

private:
    std::vector<std::pair<std::string, int>> m_patterns;
    std::array<std::vector<std::size_t>, 256> m_byFirstByte;
    std::array<bool, 256> m_hasFirst {};
};

struct StringHash
{
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept
    {
        return std::hash<std::string_view> {}(s);
    }
};
using StringMap = std::unordered_map<std::string, std::int32_t, StringHash, std::equal_to<>>;

struct MergeValue
{
    std::uint32_t rank;
    std::int32_t newId;
};

inline std::uint64_t pairKey(std::int32_t a, std::int32_t b)
{
    return (static_cast<std::uint64_t>(static_cast<std::uint32_t>(a)) << 32)
        | static_cast<std::uint32_t>(b);
}

// Words longer than this are not cached (like the reference's MAX_LENGTH): long ones rarely
// repeat, and a SentencePiece text without pre-tokenizer is one huge "word".
constexpr std::size_t kMaxCachedWordBytes = 256;
constexpr std::string_view kMetaspace = "\xE2\x96\x81"; // U+2581, SentencePiece's space
constexpr std::size_t kMaxCacheEntries = 1 << 17;

// Per-call working memory, so that encode() can run on several threads at once.
struct Scratch
{
    struct Symbol
    {
        std::int32_t id;
        std::int32_t prev;
        std::int32_t next;
        bool alive;
    };
    struct QueueEntry
    {
        std::uint32_t rank;
        std::uint32_t pos;
        std::int32_t newId;
    };
    struct Piece
    {
        std::string_view text;
        bool atStart; // starts at offset 0 of the input (Metaspace's prepend_scheme "first")
    };
    std::vector<Symbol> symbols;
    std::vector<QueueEntry> heap;
    std::vector<Piece> pieces;
    std::vector<Piece> nextPieces;
    std::vector<ByteRange> matches;
    std::vector<ByteRange> ranges;
    DecodedText decoded;
    std::deque<std::string> arena; // storage for pieces that a step rewrote
    std::vector<std::int32_t> word;
};

QString typeOf(const QJsonValue &v)
{
    return v.toObject().value(QStringLiteral("type")).toString();
}

} // namespace

// ---------------------------------------------------------------------------------------------
// TokenizerImpl
// ---------------------------------------------------------------------------------------------

class TokenizerImpl
{
public:
    Expected<void> load(const QJsonObject &root, const QString &path);
    void applyConfig(const QJsonObject &config);

    std::vector<std::int32_t> encode(std::string_view text, bool addSpecialTokens) const;
    std::string decode(std::span<const std::int32_t> ids, bool skipSpecialTokens) const;

    // Vocabulary: original strings (as in the file) for idToToken/tokenToId.
    std::vector<std::string> m_idToToken;
    std::vector<std::int8_t> m_isAddedId;
    StringMap m_vocab;
    // What the model looks words up in: the bytes behind each token for byte-level models
    // (so that no per-character byte-to-unicode mapping is needed at encode time), else m_vocab.
    StringMap m_byteVocab;
    std::array<std::int32_t, 256> m_byteToId {}; // byte-level: the single-byte tokens
    std::array<std::int32_t, 256> m_byteFallbackId {}; // <0xNN> tokens
    std::array<std::int32_t, 128> m_asciiId {}; // SentencePiece: ids of ASCII characters
    std::unordered_map<std::uint64_t, MergeValue> m_merges;
    std::int32_t m_unkId = -1;
    bool m_hasUnkToken = false;
    std::string m_unkToken;
    bool m_fuseUnk = false;
    bool m_byteFallback = false;
    bool m_ignoreMerges = false;
    bool m_byteLevel = false;
    // SentencePiece text has no pre-tokenizer, so a whole section is one BPE word. When no token
    // has a "▁" right after another character, no merge can cross such a point, and cutting the
    // word there gives the same ids while letting the word cache work (Llama-2: 20x faster).
    bool m_cutBeforeMetaspace = false;

    std::vector<AddedToken> m_added;
    StringMap m_addedByContent;
    std::unordered_map<std::int32_t, std::size_t> m_addedById;
    AddedTokenMatcher m_rawMatcher;
    AddedTokenMatcher m_normalizedMatcher;

    std::vector<NormalizerStep> m_normalizers;
    std::vector<PreTokenizerStep> m_preTokenizers;
    std::vector<PostStep> m_postSteps;
    std::vector<DecoderStep> m_decoders;
    bool m_hasDecoder = false;

    Tokenizer::Kind m_kind = Tokenizer::Kind::SentencePieceBpe;
    std::int32_t m_bosId = -1;
    // tokenizer_config.json's add_bos_token / add_eos_token (-1: not given, the post-processor
    // decides), as LlamaTokenizerFast / GemmaTokenizerFast rebuild their post-processor from them
    int m_addBos = -1, m_addEos = -1;
    std::int32_t m_eosId = -1;
    std::int32_t m_vocabSize = 0;

    mutable std::mutex m_cacheMutex;
    mutable std::unordered_map<std::string, std::vector<std::int32_t>, StringHash, std::equal_to<>>
        m_cache;

private:
    Expected<void> loadModel(const QJsonObject &model, const QString &path);
    Expected<void> loadAddedTokens(const QJsonArray &tokens, const QString &path);
    Expected<void> loadNormalizer(const QJsonValue &v, const QString &path);
    Expected<void> loadPreTokenizer(const QJsonValue &v, const QString &path);
    Expected<void> loadPostProcessor(const QJsonValue &v, const QString &path);
    Expected<void> loadDecoder(const QJsonValue &v, const QString &path);
    Expected<SplitPattern>
    loadPattern(const QJsonValue &v, const QString &what, const QString &path) const;
    void guessBosEos();
    std::int32_t idOf(std::string_view token) const;

    std::string normalize(std::string_view text) const;
    void encodeSection(std::string_view text,
                       bool atStart,
                       std::vector<std::int32_t> &out,
                       Scratch &s) const;
    void encodeNormalized(std::string_view text,
                          bool atStart,
                          std::vector<std::int32_t> &out,
                          Scratch &s) const;
    void preTokenize(std::string_view text, bool atStart, Scratch &s) const;
    void encodeWord(std::string_view word, std::vector<std::int32_t> &out, Scratch &s) const;
    void encodeCachedWord(std::string_view word, std::vector<std::int32_t> &out, Scratch &s) const;
    void mergeWord(std::string_view word, Scratch &s) const;
    const MergeValue *findMerge(std::int32_t a, std::int32_t b) const
    {
        const auto it = m_merges.find(pairKey(a, b));
        return it == m_merges.end() ? nullptr : &it->second;
    }
};

namespace {

Error formatError(const QString &message, const QString &path)
{
    return fail(ErrorCode::Format, message)
        .inFile(path)
        .withHint(QStringLiteral("the file is not a valid Hugging Face tokenizer.json; "
                                 "re-download or re-export it"));
}

Error unsupportedError(const QString &message, const QString &path)
{
    return fail(ErrorCode::Unsupported, message)
        .inFile(path)
        .withHint(QStringLiteral("Bitsmith reads BPE tokenizers: byte-level (GPT-2, Llama-3, "
                                 "Qwen2) and SentencePiece-style (Llama-2, Mistral, TinyLlama)"));
}

std::string jsonString(const QJsonValue &v)
{
    return toStdString(v.toString());
}

} // namespace

std::int32_t TokenizerImpl::idOf(std::string_view token) const
{
    if (const auto it = m_addedByContent.find(token); it != m_addedByContent.end())
        return it->second;
    if (const auto it = m_vocab.find(token); it != m_vocab.end())
        return it->second;
    return -1;
}

Expected<void> TokenizerImpl::load(const QJsonObject &root, const QString &path)
{
    const QJsonValue model = root.value(QStringLiteral("model"));
    if (!model.isObject())
        return unexpected(formatError(QStringLiteral("no \"model\" object"), path));

    // The pre-tokenizer decides whether the model works on bytes, which the vocabulary loading
    // needs to know, so it is read first.
    if (auto r = loadPreTokenizer(root.value(QStringLiteral("pre_tokenizer")), path); !r)
        return r;
    if (auto r = loadModel(model.toObject(), path); !r)
        return r;
    if (auto r = loadNormalizer(root.value(QStringLiteral("normalizer")), path); !r)
        return r;
    if (auto r = loadAddedTokens(root.value(QStringLiteral("added_tokens")).toArray(), path); !r)
        return r;
    if (auto r = loadPostProcessor(root.value(QStringLiteral("post_processor")), path); !r)
        return r;
    if (auto r = loadDecoder(root.value(QStringLiteral("decoder")), path); !r)
        return r;
    m_kind = m_byteLevel ? Tokenizer::Kind::ByteLevelBpe : Tokenizer::Kind::SentencePieceBpe;
    guessBosEos();
    return {};
}

Expected<void> TokenizerImpl::loadModel(const QJsonObject &model, const QString &path)
{
    const QString type = model.value(QStringLiteral("type")).toString();
    // Old files (e.g. the original GPT-2 export) have no type; a merges list means BPE.
    if (type.isEmpty() ? !model.contains(QStringLiteral("merges")) : type != QLatin1String("BPE")) {
        return unexpected(
            unsupportedError(QStringLiteral("tokenizer model type '%1' is not supported (only BPE)")
                                 .arg(type.isEmpty() ? QStringLiteral("(none)") : type),
                             path));
    }
    const QJsonValue dropout = model.value(QStringLiteral("dropout"));
    if (dropout.isDouble() && dropout.toDouble() > 0.0) {
        return unexpected(unsupportedError(
            QStringLiteral("BPE dropout %1 is not supported (encoding would be random)")
                .arg(dropout.toDouble()),
            path));
    }
    for (const char *key : { "continuing_subword_prefix", "end_of_word_suffix" }) {
        const QString v = model.value(QLatin1String(key)).toString();
        if (!v.isEmpty()) {
            return unexpected(unsupportedError(
                QStringLiteral("BPE option %1 = '%2' is not supported").arg(QLatin1String(key), v),
                path));
        }
    }

    const QJsonValue vocabValue = model.value(QStringLiteral("vocab"));
    if (!vocabValue.isObject())
        return unexpected(
            formatError(QStringLiteral("the BPE model has no \"vocab\" object"), path));
    const QJsonObject vocab = vocabValue.toObject();
    m_vocab.reserve(static_cast<std::size_t>(vocab.size()));
    std::int32_t maxId = -1;
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
        const double idValue = it.value().toDouble(-1.0);
        if (!it.value().isDouble() || idValue < 0 || idValue > 0x7fffffff
            || idValue != static_cast<double>(static_cast<std::int32_t>(idValue))) {
            return unexpected(formatError(
                QStringLiteral("vocabulary entry '%1' has no valid id").arg(it.key()), path));
        }
        const auto id = static_cast<std::int32_t>(idValue);
        m_vocab.emplace(toStdString(it.key()), id);
        maxId = std::max(maxId, id);
    }
    m_idToToken.assign(static_cast<std::size_t>(maxId + 1), std::string());
    for (const auto &[token, id] : m_vocab)
        m_idToToken[static_cast<std::size_t>(id)] = token;

    m_byteToId.fill(-1);
    m_byteFallbackId.fill(-1);
    m_asciiId.fill(-1);
    if (m_byteLevel) {
        m_byteVocab.reserve(m_vocab.size());
        for (const auto &[token, id] : m_vocab) {
            // A token with characters outside the byte alphabet cannot come out of byte-level
            // input; it stays reachable through idToToken/tokenToId only.
            if (std::optional<std::string> bytes = byteLevelToBytes(token))
                m_byteVocab.emplace(std::move(*bytes), id);
        }
        for (int b = 0; b < 256; ++b) {
            const char byte = static_cast<char>(b);
            const auto it = m_byteVocab.find(std::string_view(&byte, 1));
            m_byteToId[b] = it == m_byteVocab.end() ? -1 : it->second;
        }
    } else {
        for (int c = 0; c < 128; ++c) {
            const char ch = static_cast<char>(c);
            const auto it = m_vocab.find(std::string_view(&ch, 1));
            m_asciiId[c] = it == m_vocab.end() ? -1 : it->second;
        }
        m_cutBeforeMetaspace = std::none_of(m_vocab.begin(), m_vocab.end(), [](const auto &entry) {
            const std::string &t = entry.first;
            for (std::size_t p = t.find(kMetaspace); p != std::string::npos;
                 p = t.find(kMetaspace, p + 1)) {
                if (p > 0
                    && (p < kMetaspace.size()
                        || t.compare(p - kMetaspace.size(), kMetaspace.size(), kMetaspace) != 0))
                    return true;
            }
            return false;
        });
    }
    for (int b = 0; b < 256; ++b) {
        char name[8];
        std::snprintf(name, sizeof name, "<0x%02X>", b);
        const auto it = m_vocab.find(std::string_view(name));
        m_byteFallbackId[b] = it == m_vocab.end() ? -1 : it->second;
    }

    m_fuseUnk = model.value(QStringLiteral("fuse_unk")).toBool(false);
    m_byteFallback = model.value(QStringLiteral("byte_fallback")).toBool(false);
    m_ignoreMerges = model.value(QStringLiteral("ignore_merges")).toBool(false);
    const QJsonValue unk = model.value(QStringLiteral("unk_token"));
    if (unk.isString()) {
        m_hasUnkToken = true;
        m_unkToken = jsonString(unk);
        const auto it = m_vocab.find(m_unkToken);
        if (it == m_vocab.end()) {
            return unexpected(formatError(
                QStringLiteral("unk_token '%1' is not in the vocabulary").arg(unk.toString()),
                path));
        }
        m_unkId = it->second;
    }

    // Merges: "a b" strings (tokenizers < 0.20) or ["a", "b"] pairs. Each names two tokens
    // whose concatenation must be a token too, as the reference requires.
    const QJsonValue mergesValue = model.value(QStringLiteral("merges"));
    if (!mergesValue.isArray() && !mergesValue.isUndefined() && !mergesValue.isNull())
        return unexpected(formatError(QStringLiteral("\"merges\" is not a list"), path));
    const QJsonArray merges = mergesValue.toArray();
    m_merges.reserve(static_cast<std::size_t>(merges.size()) * 2);
    std::uint32_t rank = 0;
    for (const QJsonValue &m : merges) {
        std::string a;
        std::string b;
        if (m.isString()) {
            const std::string line = jsonString(m);
            if (line.starts_with("#version"))
                continue;
            const std::size_t space = line.find(' ');
            if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
                return unexpected(formatError(
                    QStringLiteral("merge %1 ('%2') is not two tokens separated by one space")
                        .arg(rank + 1)
                        .arg(m.toString()),
                    path));
            }
            a = line.substr(0, space);
            b = line.substr(space + 1);
        } else if (m.isArray() && m.toArray().size() == 2) {
            a = jsonString(m.toArray().at(0));
            b = jsonString(m.toArray().at(1));
        } else {
            return unexpected(formatError(
                QStringLiteral("merge %1 is neither \"a b\" nor [a, b]").arg(rank + 1), path));
        }
        const auto ia = m_vocab.find(a);
        const auto ib = m_vocab.find(b);
        const auto inew = m_vocab.find(a + b);
        if (ia == m_vocab.end() || ib == m_vocab.end() || inew == m_vocab.end()) {
            const std::string &missing
                = ia == m_vocab.end() ? a : (ib == m_vocab.end() ? b : a + b);
            return unexpected(
                formatError(QStringLiteral("merge %1 uses '%2', which is not in the vocabulary")
                                .arg(rank + 1)
                                .arg(toQString(missing)),
                            path));
        }
        // A repeated pair keeps its last rank, as in the reference's map.
        m_merges[pairKey(ia->second, ib->second)] = MergeValue { rank, inew->second };
        ++rank;
    }
    return {};
}

Expected<void> TokenizerImpl::loadAddedTokens(const QJsonArray &tokens, const QString &path)
{
    // The reference ignores the ids written in the file (it only warns when they differ): a
    // token already in the model vocabulary keeps that id, the others are numbered from the
    // vocabulary size on (AddedVocabulary::add_tokens). In real files both agree.
    auto nextId = static_cast<std::int32_t>(m_vocab.size());
    for (const QJsonValue &v : tokens) {
        const QJsonObject o = v.toObject();
        AddedToken t;
        t.content = jsonString(o.value(QStringLiteral("content")));
        if (t.content.empty())
            continue; // ignored by the reference too
        t.special = o.value(QStringLiteral("special")).toBool(false);
        t.lstrip = o.value(QStringLiteral("lstrip")).toBool(false);
        t.rstrip = o.value(QStringLiteral("rstrip")).toBool(false);
        t.normalized = o.value(QStringLiteral("normalized")).toBool(!t.special);
        t.singleWord = o.value(QStringLiteral("single_word")).toBool(false);
        if (const auto it = m_addedByContent.find(t.content); it != m_addedByContent.end()) {
            t.id = it->second; // a repeated token: the later properties win
        } else if (const auto iv = m_vocab.find(t.content); iv != m_vocab.end()) {
            t.id = iv->second;
        } else {
            t.id = nextId++;
        }
        if (const auto it = m_addedById.find(t.id); it != m_addedById.end()) {
            m_added[it->second] = t;
        } else {
            m_addedById[t.id] = m_added.size();
            m_added.push_back(t);
        }
        m_addedByContent[t.content] = t.id;
    }
    for (std::size_t i = 0; i < m_added.size(); ++i) {
        const AddedToken &t = m_added[i];
        if (t.normalized) {
            // Matched on normalized text, so the pattern is the normalized content (the
            // reference does the same, quirks included: Prepend applies to it too).
            m_normalizedMatcher.add(m_normalizers.empty() ? t.content : normalize(t.content),
                                    static_cast<int>(i));
        } else {
            m_rawMatcher.add(t.content, static_cast<int>(i));
        }
        if (static_cast<std::size_t>(t.id) >= m_idToToken.size())
            m_idToToken.resize(static_cast<std::size_t>(t.id) + 1);
        m_idToToken[static_cast<std::size_t>(t.id)] = t.content;
    }
    m_isAddedId.assign(m_idToToken.size(), 0);
    for (const AddedToken &t : m_added)
        m_isAddedId[static_cast<std::size_t>(t.id)] = 1;
    m_vocabSize = static_cast<std::int32_t>(m_idToToken.size());
    Q_UNUSED(path);
    return {};
}

Expected<SplitPattern>
TokenizerImpl::loadPattern(const QJsonValue &v, const QString &what, const QString &path) const
{
    SplitPattern p;
    const QJsonObject o = v.toObject();
    if (o.contains(QStringLiteral("String"))) {
        p.literal = jsonString(o.value(QStringLiteral("String")));
        p.source = p.literal;
        return p;
    }
    if (!o.contains(QStringLiteral("Regex")))
        return unexpected(
            formatError(QStringLiteral("%1 has no String or Regex pattern").arg(what), path));
    const QString re = o.value(QStringLiteral("Regex")).toString();
    p.isRegex = true;
    p.source = toStdString(re);
    if (re == QLatin1String(kGpt2Regex)) {
        p.builtin = BuiltinRegex::Gpt2;
    } else if (re == QLatin1String(kLlama3Regex)) {
        p.builtin = BuiltinRegex::Llama3;
    } else if (re == QLatin1String(kQwen2Regex)) {
        p.builtin = BuiltinRegex::Qwen2;
    } else {
        QRegularExpression rx(re, QRegularExpression::UseUnicodePropertiesOption);
        if (!rx.isValid()) {
            return unexpected(
                unsupportedError(QStringLiteral("%1 regex '%2' cannot be compiled: %3")
                                     .arg(what, re, rx.errorString()),
                                 path));
        }
        rx.optimize();
        p.regex = std::move(rx);
    }
    return p;
}

Expected<void> TokenizerImpl::loadNormalizer(const QJsonValue &v, const QString &path)
{
    if (v.isNull() || v.isUndefined())
        return {};
    const QString type = typeOf(v);
    const QJsonObject o = v.toObject();
    if (type == QLatin1String("Sequence")) {
        for (const QJsonValue &child : o.value(QStringLiteral("normalizers")).toArray()) {
            if (auto r = loadNormalizer(child, path); !r)
                return r;
        }
        return {};
    }
    NormalizerStep step;
    if (type == QLatin1String("NFC")) {
        step.type = NormalizerStep::Type::Nfc;
    } else if (type == QLatin1String("NFD")) {
        step.type = NormalizerStep::Type::Nfd;
    } else if (type == QLatin1String("NFKC")) {
        step.type = NormalizerStep::Type::Nfkc;
    } else if (type == QLatin1String("NFKD")) {
        step.type = NormalizerStep::Type::Nfkd;
    } else if (type == QLatin1String("Prepend")) {
        step.type = NormalizerStep::Type::Prepend;
        step.text = jsonString(o.value(QStringLiteral("prepend")));
    } else if (type == QLatin1String("Replace")) {
        step.type = NormalizerStep::Type::Replace;
        auto p = loadPattern(
            o.value(QStringLiteral("pattern")), QStringLiteral("Replace normalizer"), path);
        if (!p)
            return unexpected(p.error());
        step.pattern = std::move(*p);
        step.text = jsonString(o.value(QStringLiteral("content")));
    } else if (type == QLatin1String("Lowercase")) {
        step.type = NormalizerStep::Type::Lowercase;
    } else if (type == QLatin1String("Strip")) {
        step.type = NormalizerStep::Type::Strip;
        step.left = o.value(QStringLiteral("strip_left")).toBool(true);
        step.right = o.value(QStringLiteral("strip_right")).toBool(true);
    } else {
        return unexpected(unsupportedError(
            QStringLiteral("normalizer type '%1' is not supported").arg(type), path));
    }
    m_normalizers.push_back(std::move(step));
    return {};
}

Expected<void> TokenizerImpl::loadPreTokenizer(const QJsonValue &v, const QString &path)
{
    if (v.isNull() || v.isUndefined())
        return {};
    const QString type = typeOf(v);
    const QJsonObject o = v.toObject();
    if (type == QLatin1String("Sequence")) {
        for (const QJsonValue &child : o.value(QStringLiteral("pretokenizers")).toArray()) {
            if (auto r = loadPreTokenizer(child, path); !r)
                return r;
        }
        return {};
    }
    // Pieces are kept as bytes and the model looks up bytes, which is the same as the byte-level
    // mapping only when nothing after ByteLevel looks at the characters.
    if (m_byteLevel) {
        return unexpected(unsupportedError(
            QStringLiteral("pre-tokenizer '%1' after ByteLevel is not supported").arg(type), path));
    }
    PreTokenizerStep step;
    if (type == QLatin1String("ByteLevel")) {
        step.type = PreTokenizerStep::Type::ByteLevel;
        step.addPrefixSpace = o.value(QStringLiteral("add_prefix_space")).toBool(true);
        step.useRegex = o.value(QStringLiteral("use_regex")).toBool(true);
        step.pattern.isRegex = true;
        step.pattern.builtin = BuiltinRegex::Gpt2;
        step.pattern.source = kGpt2Regex;
        m_byteLevel = true;
    } else if (type == QLatin1String("Split")) {
        step.type = PreTokenizerStep::Type::Split;
        auto p = loadPattern(
            o.value(QStringLiteral("pattern")), QStringLiteral("Split pre-tokenizer"), path);
        if (!p)
            return unexpected(p.error());
        step.pattern = std::move(*p);
        const QString behavior = o.value(QStringLiteral("behavior")).toString();
        if (behavior == QLatin1String("Removed"))
            step.behavior = SplitBehavior::Removed;
        else if (behavior == QLatin1String("Isolated"))
            step.behavior = SplitBehavior::Isolated;
        else if (behavior == QLatin1String("MergedWithPrevious"))
            step.behavior = SplitBehavior::MergedWithPrevious;
        else if (behavior == QLatin1String("MergedWithNext"))
            step.behavior = SplitBehavior::MergedWithNext;
        else if (behavior == QLatin1String("Contiguous"))
            step.behavior = SplitBehavior::Contiguous;
        else
            return unexpected(
                formatError(QStringLiteral("unknown Split behavior '%1'").arg(behavior), path));
        step.invert = o.value(QStringLiteral("invert")).toBool(false);
    } else if (type == QLatin1String("Metaspace")) {
        step.type = PreTokenizerStep::Type::Metaspace;
        step.replacement = jsonString(o.value(QStringLiteral("replacement")));
        if (step.replacement.empty())
            step.replacement = "\xE2\x96\x81"; // U+2581
        const QString scheme = o.value(QStringLiteral("prepend_scheme")).toString();
        if (scheme == QLatin1String("first"))
            step.prependScheme = PrependScheme::First;
        else if (scheme == QLatin1String("never"))
            step.prependScheme = PrependScheme::Never;
        else
            step.prependScheme = PrependScheme::Always;
        // Files from before prepend_scheme say add_prefix_space: false for "never".
        if (o.value(QStringLiteral("add_prefix_space")).isBool()
            && !o.value(QStringLiteral("add_prefix_space")).toBool())
            step.prependScheme = PrependScheme::Never;
        step.split = o.value(QStringLiteral("split")).toBool(true);
    } else if (type == QLatin1String("Digits")) {
        step.type = PreTokenizerStep::Type::Digits;
        step.individualDigits = o.value(QStringLiteral("individual_digits")).toBool(false);
    } else {
        return unexpected(unsupportedError(
            QStringLiteral("pre-tokenizer type '%1' is not supported").arg(type), path));
    }
    m_preTokenizers.push_back(std::move(step));
    return {};
}

Expected<void> TokenizerImpl::loadPostProcessor(const QJsonValue &v, const QString &path)
{
    if (v.isNull() || v.isUndefined())
        return {};
    const QString type = typeOf(v);
    const QJsonObject o = v.toObject();
    if (type == QLatin1String("Sequence")) {
        for (const QJsonValue &child : o.value(QStringLiteral("processors")).toArray()) {
            if (auto r = loadPostProcessor(child, path); !r)
                return r;
        }
        return {};
    }
    if (type == QLatin1String("ByteLevel"))
        return {}; // only trims offsets, which encode() does not return
    PostStep step;
    if (type == QLatin1String("TemplateProcessing")) {
        const QJsonObject specials = o.value(QStringLiteral("special_tokens")).toObject();
        bool seenA = false;
        for (const QJsonValue &item : o.value(QStringLiteral("single")).toArray()) {
            const QJsonObject io = item.toObject();
            if (io.contains(QStringLiteral("Sequence"))) {
                if (seenA) {
                    return unexpected(unsupportedError(
                        QStringLiteral("TemplateProcessing with the sequence twice"), path));
                }
                seenA = true;
                continue;
            }
            const QString name = io.value(QStringLiteral("SpecialToken"))
                                     .toObject()
                                     .value(QStringLiteral("id"))
                                     .toString();
            const QJsonValue special = specials.value(name);
            std::vector<std::int32_t> ids;
            if (special.isObject()) {
                for (const QJsonValue &id :
                     special.toObject().value(QStringLiteral("ids")).toArray())
                    ids.push_back(static_cast<std::int32_t>(id.toDouble(-1)));
            } else if (const std::int32_t id = idOf(toStdString(name)); id >= 0) {
                ids.push_back(id);
            }
            if (ids.empty() || std::find(ids.begin(), ids.end(), -1) != ids.end()) {
                return unexpected(formatError(
                    QStringLiteral("TemplateProcessing special token '%1' has no id").arg(name),
                    path));
            }
            auto &dst = seenA ? step.suffix : step.prefix;
            dst.insert(dst.end(), ids.begin(), ids.end());
        }
    } else if (type == QLatin1String("BertProcessing")
               || type == QLatin1String("RobertaProcessing")) {
        // "cls": ["[CLS]", 101], "sep": ["[SEP]", 102]
        step.prefix.push_back(
            static_cast<std::int32_t>(o.value(QStringLiteral("cls")).toArray().at(1).toDouble(-1)));
        step.suffix.push_back(
            static_cast<std::int32_t>(o.value(QStringLiteral("sep")).toArray().at(1).toDouble(-1)));
        if (step.prefix[0] < 0 || step.suffix[0] < 0)
            return unexpected(
                formatError(QStringLiteral("%1 without cls/sep ids").arg(type), path));
    } else {
        return unexpected(unsupportedError(
            QStringLiteral("post-processor type '%1' is not supported").arg(type), path));
    }
    m_postSteps.push_back(std::move(step));
    return {};
}

Expected<void> TokenizerImpl::loadDecoder(const QJsonValue &v, const QString &path)
{
    if (v.isNull() || v.isUndefined())
        return {};
    m_hasDecoder = true;
    const QString type = typeOf(v);
    const QJsonObject o = v.toObject();
    if (type == QLatin1String("Sequence")) {
        for (const QJsonValue &child : o.value(QStringLiteral("decoders")).toArray()) {
            if (auto r = loadDecoder(child, path); !r)
                return r;
        }
        return {};
    }
    DecoderStep step;
    if (type == QLatin1String("ByteLevel")) {
        step.type = DecoderStep::Type::ByteLevel;
    } else if (type == QLatin1String("Replace")) {
        step.type = DecoderStep::Type::Replace;
        const QJsonObject pattern = o.value(QStringLiteral("pattern")).toObject();
        if (!pattern.contains(QStringLiteral("String"))) {
            return unexpected(unsupportedError(
                QStringLiteral("Replace decoder with a regex pattern is not supported"), path));
        }
        step.pattern = jsonString(pattern.value(QStringLiteral("String")));
        step.content = jsonString(o.value(QStringLiteral("content")));
    } else if (type == QLatin1String("ByteFallback")) {
        step.type = DecoderStep::Type::ByteFallback;
    } else if (type == QLatin1String("Fuse")) {
        step.type = DecoderStep::Type::Fuse;
    } else if (type == QLatin1String("Strip")) {
        step.type = DecoderStep::Type::Strip;
        const std::u32string content = toCodePoints(jsonString(o.value(QStringLiteral("content"))));
        step.stripChar = content.empty() ? U' ' : content[0];
        step.start = static_cast<std::size_t>(o.value(QStringLiteral("start")).toInt(0));
        step.stop = static_cast<std::size_t>(o.value(QStringLiteral("stop")).toInt(0));
    } else if (type == QLatin1String("Metaspace")) {
        step.type = DecoderStep::Type::Metaspace;
        const std::u32string r = toCodePoints(jsonString(o.value(QStringLiteral("replacement"))));
        step.replacement = r.empty() ? char32_t(0x2581) : r[0];
        const QString scheme = o.value(QStringLiteral("prepend_scheme")).toString();
        step.prependScheme = scheme == QLatin1String("never") ? PrependScheme::Never
            : scheme == QLatin1String("first")                ? PrependScheme::First
                                                              : PrependScheme::Always;
        if (o.value(QStringLiteral("add_prefix_space")).isBool()
            && !o.value(QStringLiteral("add_prefix_space")).toBool())
            step.prependScheme = PrependScheme::Never;
    } else {
        return unexpected(
            unsupportedError(QStringLiteral("decoder type '%1' is not supported").arg(type), path));
    }
    m_decoders.push_back(std::move(step));
    return {};
}

// tokenizer.json does not name BOS/EOS (tokenizer_config.json does, see applyConfig); without a
// config, the post-processor's leading token and the usual names are the best guess.
void TokenizerImpl::guessBosEos()
{
    for (const PostStep &p : m_postSteps) {
        if (m_bosId < 0 && !p.prefix.empty())
            m_bosId = p.prefix.front();
        if (m_eosId < 0 && !p.suffix.empty())
            m_eosId = p.suffix.back();
    }
    for (const char *name :
         { "<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>", "<|endoftext|>" }) {
        if (m_bosId >= 0)
            break;
        m_bosId = idOf(name);
    }
    for (const char *name : { "</s>", "<|end_of_text|>", "<eos>", "<|endoftext|>" }) {
        if (m_eosId >= 0)
            break;
        m_eosId = idOf(name);
    }
}

void TokenizerImpl::applyConfig(const QJsonObject &config)
{
    // "bos_token": "<s>" or {"content": "<s>", ...} or null (Qwen: no BOS).
    auto tokenId = [this](const QJsonValue &v) -> std::int32_t {
        const QString name = v.isObject() ? v.toObject().value(QStringLiteral("content")).toString()
                                          : v.toString();
        return name.isEmpty() ? -1 : idOf(toStdString(name));
    };
    if (config.contains(QStringLiteral("bos_token")))
        m_bosId = tokenId(config.value(QStringLiteral("bos_token")));
    if (config.contains(QStringLiteral("eos_token")))
        m_eosId = tokenId(config.value(QStringLiteral("eos_token")));
    if (config.value(QStringLiteral("add_bos_token")).isBool())
        m_addBos = config.value(QStringLiteral("add_bos_token")).toBool() ? 1 : 0;
    if (config.value(QStringLiteral("add_eos_token")).isBool())
        m_addEos = config.value(QStringLiteral("add_eos_token")).toBool() ? 1 : 0;
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

std::string TokenizerImpl::normalize(std::string_view input) const
{
    std::string text(input);
    for (const NormalizerStep &step : m_normalizers) {
        switch (step.type) {
        case NormalizerStep::Type::Nfc:
        case NormalizerStep::Type::Nfd:
        case NormalizerStep::Type::Nfkc:
        case NormalizerStep::Type::Nfkd: {
            if (isAscii(text))
                break; // ASCII is invariant under all four forms
            const QString::NormalizationForm form = step.type == NormalizerStep::Type::Nfc
                ? QString::NormalizationForm_C
                : step.type == NormalizerStep::Type::Nfd  ? QString::NormalizationForm_D
                : step.type == NormalizerStep::Type::Nfkc ? QString::NormalizationForm_KC
                                                          : QString::NormalizationForm_KD;
            text = toStdString(toQString(text).normalized(form));
            break;
        }
        case NormalizerStep::Type::Prepend:
            if (!text.empty())
                text.insert(0, step.text);
            break;
        case NormalizerStep::Type::Replace: {
            DecodedText scratch;
            std::vector<ByteRange> matches;
            step.pattern.findMatches(text, scratch, matches);
            if (matches.empty())
                break;
            std::string out;
            out.reserve(text.size() + matches.size() * step.text.size());
            std::size_t prev = 0;
            for (const ByteRange &m : matches) {
                out.append(text, prev, m.start - prev);
                out += step.text;
                prev = m.end;
            }
            out.append(text, prev, std::string::npos);
            text = std::move(out);
            break;
        }
        case NormalizerStep::Type::Lowercase:
            text = toStdString(toQString(text).toLower());
            break;
        case NormalizerStep::Type::Strip: {
            std::u32string cps = toCodePoints(text);
            std::size_t b = 0;
            std::size_t e = cps.size();
            if (step.left) {
                while (b < e && isWhiteSpace(cps[b]))
                    ++b;
            }
            if (step.right) {
                while (e > b && isWhiteSpace(cps[e - 1]))
                    --e;
            }
            text = fromCodePoints(std::u32string_view(cps).substr(b, e - b));
            break;
        }
        }
    }
    return text;
}

void TokenizerImpl::preTokenize(std::string_view text, bool atStart, Scratch &s) const
{
    s.pieces.clear();
    s.pieces.push_back({ text, atStart });
    for (const PreTokenizerStep &step : m_preTokenizers) {
        s.nextPieces.clear();
        for (const Scratch::Piece &piece : s.pieces) {
            std::string_view t = piece.text;
            switch (step.type) {
            case PreTokenizerStep::Type::ByteLevel:
                if (step.addPrefixSpace && !t.starts_with(' ')) {
                    s.arena.push_back(" " + std::string(t));
                    t = s.arena.back();
                }
                if (!step.useRegex) {
                    s.nextPieces.push_back({ t, piece.atStart });
                    continue;
                }
                step.pattern.findMatches(t, s.decoded, s.matches);
                applySplitBehavior(t.size(), s.matches, SplitBehavior::Isolated, false, s.ranges);
                break;
            case PreTokenizerStep::Type::Split:
                step.pattern.findMatches(t, s.decoded, s.matches);
                applySplitBehavior(t.size(), s.matches, step.behavior, step.invert, s.ranges);
                break;
            case PreTokenizerStep::Type::Digits: {
                s.decoded.assign(t);
                s.matches.clear();
                const std::size_t n = s.decoded.cps.size();
                for (std::size_t i = 0; i < n;) {
                    if (s.decoded.cls[i] != kNumber) {
                        ++i;
                        continue;
                    }
                    std::size_t e = i + 1;
                    while (!step.individualDigits && e < n && s.decoded.cls[e] == kNumber)
                        ++e;
                    s.matches.push_back({ s.decoded.offsets[i], s.decoded.offsets[e] });
                    i = e;
                }
                applySplitBehavior(t.size(), s.matches, SplitBehavior::Isolated, false, s.ranges);
                break;
            }
            case PreTokenizerStep::Type::Metaspace: {
                std::string rewritten;
                rewritten.reserve(t.size() + step.replacement.size());
                const bool prepend = !t.starts_with(' ') && !t.starts_with(step.replacement)
                    && (step.prependScheme == PrependScheme::Always
                        || (step.prependScheme == PrependScheme::First && piece.atStart));
                if (prepend)
                    rewritten += step.replacement;
                for (char c : t) {
                    if (c == ' ')
                        rewritten += step.replacement;
                    else
                        rewritten += c;
                }
                s.arena.push_back(std::move(rewritten));
                t = s.arena.back();
                if (!step.split) {
                    s.nextPieces.push_back({ t, piece.atStart });
                    continue;
                }
                s.matches.clear();
                std::size_t pos = 0;
                while ((pos = t.find(step.replacement, pos)) != std::string_view::npos) {
                    s.matches.push_back({ pos, pos + step.replacement.size() });
                    pos += step.replacement.size();
                }
                applySplitBehavior(
                    t.size(), s.matches, SplitBehavior::MergedWithNext, false, s.ranges);
                break;
            }
            }
            for (const ByteRange &r : s.ranges)
                s.nextPieces.push_back(
                    { t.substr(r.start, r.end - r.start), piece.atStart && r.start == 0 });
        }
        std::swap(s.pieces, s.nextPieces);
    }
}

// Builds the initial symbols of a word and merges them (merge_word + merge_all in the reference).
void TokenizerImpl::mergeWord(std::string_view word, Scratch &s) const
{
    auto &syms = s.symbols;
    syms.clear();
    // Unknown characters become the unk token; with fuse_unk a run of them becomes one.
    bool pendingUnk = false;
    auto flushUnk = [&] {
        if (pendingUnk) {
            syms.push_back({ m_unkId, 0, 0, true });
            pendingUnk = false;
        }
    };
    auto addUnknown = [&] {
        if (!m_hasUnkToken)
            return; // the reference drops characters it cannot represent
        if (pendingUnk && !m_fuseUnk)
            flushUnk();
        pendingUnk = true;
    };
    auto addKnown = [&](std::int32_t id) {
        flushUnk();
        syms.push_back({ id, 0, 0, true });
    };

    if (m_byteLevel) {
        for (char c : word) {
            const std::int32_t id = m_byteToId[static_cast<unsigned char>(c)];
            if (id >= 0)
                addKnown(id);
            else
                addUnknown();
        }
    } else {
        const auto *p = reinterpret_cast<const unsigned char *>(word.data());
        std::size_t i = 0;
        while (i < word.size()) {
            std::size_t len = 1;
            std::int32_t id = -1;
            if (p[i] < 0x80) {
                id = m_asciiId[p[i]];
            } else {
                char32_t cp = 0;
                bool ok = true;
                len = decodeUtf8(p + i, word.size() - i, cp, ok);
                const auto it = m_vocab.find(word.substr(i, len));
                if (it != m_vocab.end())
                    id = it->second;
            }
            if (id >= 0) {
                addKnown(id);
            } else {
                bool fellBack = false;
                if (m_byteFallback) {
                    fellBack = true;
                    for (std::size_t k = 0; k < len; ++k)
                        fellBack = fellBack && m_byteFallbackId[p[i + k]] >= 0;
                    if (fellBack) {
                        flushUnk();
                        for (std::size_t k = 0; k < len; ++k)
                            syms.push_back({ m_byteFallbackId[p[i + k]], 0, 0, true });
                    }
                }
                if (!fellBack)
                    addUnknown();
            }
            i += len;
        }
    }
    flushUnk();

    const auto n = static_cast<std::int32_t>(syms.size());
    for (std::int32_t i = 0; i < n; ++i) {
        syms[i].prev = i - 1;
        syms[i].next = i + 1 < n ? i + 1 : -1;
    }
    if (n < 2)
        return;

    // Lowest rank first, then leftmost: exactly the reference's (rank, pos) min-heap order.
    auto greater = [](const Scratch::QueueEntry &a, const Scratch::QueueEntry &b) {
        return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
    };
    auto &heap = s.heap;
    heap.clear();
    for (std::int32_t i = 0; i + 1 < n; ++i) {
        if (const MergeValue *m = findMerge(syms[i].id, syms[i + 1].id))
            heap.push_back({ m->rank, static_cast<std::uint32_t>(i), m->newId });
    }
    std::make_heap(heap.begin(), heap.end(), greater);
    while (!heap.empty()) {
        std::pop_heap(heap.begin(), heap.end(), greater);
        const Scratch::QueueEntry top = heap.back();
        heap.pop_back();
        Scratch::Symbol &left = syms[top.pos];
        if (!left.alive || left.next < 0)
            continue;
        const std::int32_t nextPos = left.next;
        // An entry is stale when its pair has changed since it was queued.
        const MergeValue *current = findMerge(left.id, syms[nextPos].id);
        if (!current || current->newId != top.newId)
            continue;
        left.id = top.newId;
        syms[nextPos].alive = false;
        left.next = syms[nextPos].next;
        if (left.next >= 0)
            syms[left.next].prev = static_cast<std::int32_t>(top.pos);
        if (left.prev >= 0) {
            if (const MergeValue *m = findMerge(syms[left.prev].id, left.id)) {
                heap.push_back({ m->rank, static_cast<std::uint32_t>(left.prev), m->newId });
                std::push_heap(heap.begin(), heap.end(), greater);
            }
        }
        if (left.next >= 0) {
            if (const MergeValue *m = findMerge(left.id, syms[left.next].id)) {
                heap.push_back({ m->rank, top.pos, m->newId });
                std::push_heap(heap.begin(), heap.end(), greater);
            }
        }
    }
}

void TokenizerImpl::encodeWord(std::string_view word,
                               std::vector<std::int32_t> &out,
                               Scratch &s) const
{
    if (word.empty())
        return;
    const StringMap &lookup = m_byteLevel ? m_byteVocab : m_vocab;
    // Llama-3: a whole pre-token that is a token is emitted as is, even where the merges would
    // have split it differently.
    if (m_ignoreMerges) {
        if (const auto it = lookup.find(word); it != lookup.end()) {
            out.push_back(it->second);
            return;
        }
    }
    if (!m_cutBeforeMetaspace) {
        encodeCachedWord(word, out, s);
        return;
    }
    // Cut before each "▁" that follows another character ("▁▁▁x" stays together).
    std::size_t begin = 0;
    std::size_t p = word.find(kMetaspace, 1);
    while (p != std::string_view::npos) {
        const bool afterMetaspace = p >= kMetaspace.size()
            && word.substr(p - kMetaspace.size(), kMetaspace.size()) == kMetaspace;
        if (!afterMetaspace && p > begin) {
            encodeCachedWord(word.substr(begin, p - begin), out, s);
            begin = p;
        }
        p = word.find(kMetaspace, p + kMetaspace.size());
    }
    encodeCachedWord(word.substr(begin), out, s);
}

void TokenizerImpl::encodeCachedWord(std::string_view word,
                                     std::vector<std::int32_t> &out,
                                     Scratch &s) const
{
    const bool cacheable = word.size() < kMaxCachedWordBytes;
    if (cacheable) {
        std::lock_guard lock(m_cacheMutex);
        if (const auto it = m_cache.find(word); it != m_cache.end()) {
            out.insert(out.end(), it->second.begin(), it->second.end());
            return;
        }
    }
    mergeWord(word, s);
    s.word.clear();
    for (const Scratch::Symbol &sym : s.symbols) {
        if (sym.alive)
            s.word.push_back(sym.id);
    }
    out.insert(out.end(), s.word.begin(), s.word.end());
    if (cacheable) {
        std::lock_guard lock(m_cacheMutex);
        if (m_cache.size() >= kMaxCacheEntries)
            m_cache.clear();
        m_cache.emplace(std::string(word), s.word);
    }
}

void TokenizerImpl::encodeNormalized(std::string_view text,
                                     bool atStart,
                                     std::vector<std::int32_t> &out,
                                     Scratch &s) const
{
    preTokenize(text, atStart, s);
    for (const Scratch::Piece &piece : s.pieces)
        encodeWord(piece.text, out, s);
    s.arena.clear();
}

void TokenizerImpl::encodeSection(std::string_view section,
                                  bool atStart,
                                  std::vector<std::int32_t> &out,
                                  Scratch &s) const
{
    if (section.empty())
        return;
    std::string normalizedStorage;
    std::string_view text = section;
    if (!m_normalizers.empty()) {
        normalizedStorage = normalize(section);
        text = normalizedStorage;
    }
    if (text.empty())
        return;
    if (m_normalizedMatcher.empty()) {
        encodeNormalized(text, atStart, out, s);
        return;
    }
    // Added tokens with normalized=true are found in the normalized text.
    std::size_t from = 0;
    std::size_t start = 0;
    std::size_t length = 0;
    int index = -1;
    while (m_normalizedMatcher.find(text, from, start, length, index)) {
        if (start > from)
            encodeNormalized(text.substr(from, start - from), atStart && from == 0, out, s);
        out.push_back(m_added[static_cast<std::size_t>(index)].id);
        from = start + length;
    }
    if (from < text.size())
        encodeNormalized(text.substr(from), atStart && from == 0, out, s);
}

std::vector<std::int32_t> TokenizerImpl::encode(std::string_view input, bool addSpecialTokens) const
{
    std::string validStorage;
    std::string_view text = input;
    if (!isValidUtf8(input)) {
        validStorage = toValidUtf8(input);
        text = validStorage;
    }

    std::vector<std::int32_t> ids;
    ids.reserve(text.size() / 3 + 4);
    Scratch s;

    // Added tokens with normalized=false are cut out of the raw text first (find_matches in the
    // reference's AddedVocabulary, including its lstrip/rstrip/single_word handling).
    std::size_t sectionStart = 0;
    std::size_t searchFrom = 0;
    std::size_t start = 0;
    std::size_t length = 0;
    int index = -1;
    while (!m_rawMatcher.empty() && m_rawMatcher.find(text, searchFrom, start, length, index)) {
        const AddedToken &token = m_added[static_cast<std::size_t>(index)];
        std::size_t stop = start + length;
        searchFrom = stop;
        if (token.singleWord) {
            auto lastChar = [&](std::size_t end) {
                std::size_t b = end - 1;
                while (b > 0 && (static_cast<unsigned char>(text[b]) & 0xC0) == 0x80)
                    --b;
                return toCodePoints(text.substr(b, end - b)).front();
            };
            const bool startOk = start == 0 || !isWordChar(lastChar(start));
            const bool stopOk
                = stop == text.size() || !isWordChar(toCodePoints(text.substr(stop, 4)).front());
            if (!startOk || !stopOk)
                continue;
        }
        if (token.lstrip) {
            const std::u32string before
                = toCodePoints(text.substr(sectionStart, start - sectionStart));
            std::size_t k = before.size();
            while (k > 0 && isWhiteSpace(before[k - 1]))
                --k;
            start = sectionStart + fromCodePoints(std::u32string_view(before).substr(0, k)).size();
        }
        if (token.rstrip) {
            const auto *p = reinterpret_cast<const unsigned char *>(text.data());
            while (stop < text.size()) {
                char32_t cp = 0;
                bool ok = true;
                const std::size_t len = decodeUtf8(p + stop, text.size() - stop, cp, ok);
                if (!isWhiteSpace(cp))
                    break;
                stop += len;
            }
            searchFrom = stop;
        }
        if (start > sectionStart)
            encodeSection(
                text.substr(sectionStart, start - sectionStart), sectionStart == 0, ids, s);
        ids.push_back(token.id);
        sectionStart = stop;
    }
    if (sectionStart < text.size())
        encodeSection(text.substr(sectionStart), sectionStart == 0, ids, s);

    if (addSpecialTokens && (m_addBos >= 0 || m_addEos >= 0)) {
        // the config's flags replace the template: [BOS] text [EOS] as they say; a flag the
        // config leaves out follows the post-processor
        bool templBos = false, templEos = false;
        for (const PostStep &step : m_postSteps) {
            templBos = templBos || (!step.prefix.empty() && step.prefix.front() == m_bosId);
            templEos = templEos || (!step.suffix.empty() && step.suffix.back() == m_eosId);
        }
        const bool bos = m_addBos >= 0 ? m_addBos == 1 : templBos;
        const bool eos = m_addEos >= 0 ? m_addEos == 1 : templEos;
        if (bos && m_bosId >= 0)
            ids.insert(ids.begin(), m_bosId);
        if (eos && m_eosId >= 0)
            ids.push_back(m_eosId);
    } else if (addSpecialTokens) {
        for (const PostStep &step : m_postSteps) {
            if (step.prefix.empty() && step.suffix.empty())
                continue;
            std::vector<std::int32_t> wrapped;
            wrapped.reserve(ids.size() + step.prefix.size() + step.suffix.size());
            wrapped.insert(wrapped.end(), step.prefix.begin(), step.prefix.end());
            wrapped.insert(wrapped.end(), ids.begin(), ids.end());
            wrapped.insert(wrapped.end(), step.suffix.begin(), step.suffix.end());
            ids = std::move(wrapped);
        }
    }
    return ids;
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

namespace {

void replaceAll(std::string &s, std::string_view from, std::string_view to)
{
    if (from.empty())
        return;
    std::size_t pos = 0;
    while ((pos = s.find(from, pos)) != std::string::npos) {
        s.replace(pos, from.size(), to);
        pos += to.size();
    }
}

// "<0x0A>" -> 0x0A, the reference's check: six bytes, "<0x" prefix, ">" suffix, two hex digits.
std::optional<std::uint8_t> byteFallbackValue(std::string_view token)
{
    if (token.size() != 6 || !token.starts_with("<0x") || token[5] != '>')
        return std::nullopt;
    auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9')
            return c - '0';
        if (c >= 'a' && c <= 'f')
            return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
            return c - 'A' + 10;
        return -1;
    };
    const int hi = hex(token[3]);
    const int lo = hex(token[4]);
    if (hi < 0 || lo < 0)
        return std::nullopt;
    return static_cast<std::uint8_t>(hi * 16 + lo);
}

} // namespace

std::string TokenizerImpl::decode(std::span<const std::int32_t> ids, bool skipSpecialTokens) const
{
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (const std::int32_t id : ids) {
        if (id < 0 || static_cast<std::size_t>(id) >= m_idToToken.size())
            continue; // the reference skips ids it does not know
        if (m_isAddedId[static_cast<std::size_t>(id)]) {
            const AddedToken &t = m_added[m_addedById.at(id)];
            if (skipSpecialTokens && t.special)
                continue;
            tokens.push_back(t.content);
        } else {
            if (m_idToToken[static_cast<std::size_t>(id)].empty()
                && !m_vocab.contains(std::string()))
                continue; // a hole in the id range
            tokens.push_back(m_idToToken[static_cast<std::size_t>(id)]);
        }
    }
    if (!m_hasDecoder) {
        std::string out;
        for (std::size_t i = 0; i < tokens.size(); ++i) {
            if (i > 0)
                out += ' ';
            out += tokens[i];
        }
        return out;
    }

    for (const DecoderStep &step : m_decoders) {
        switch (step.type) {
        case DecoderStep::Type::ByteLevel: {
            // All tokens become one byte string; a token with characters outside the byte
            // alphabet (an added token such as "<|im_start|>" is inside it) keeps its UTF-8.
            const ByteLevelAlphabet &a = byteLevelAlphabet();
            std::string bytes;
            for (const std::string &t : tokens) {
                const std::u32string cps = toCodePoints(t);
                std::string mapped;
                bool allMapped = true;
                for (char32_t c : cps) {
                    const int b = a.byteOf(c);
                    if (b < 0) {
                        allMapped = false;
                        break;
                    }
                    mapped += static_cast<char>(b);
                }
                bytes += allMapped ? mapped : t;
            }
            tokens.assign(1, toValidUtf8(bytes));
            break;
        }
        case DecoderStep::Type::Replace:
            for (std::string &t : tokens)
                replaceAll(t, step.pattern, step.content);
            break;
        case DecoderStep::Type::ByteFallback: {
            // Runs of <0xNN> become their UTF-8 text; a run that is not valid UTF-8 becomes one
            // U+FFFD per byte (the reference's rule, unlike from_utf8_lossy).
            std::vector<std::string> out;
            std::string pending;
            auto flush = [&] {
                if (pending.empty())
                    return;
                if (isValidUtf8(pending)) {
                    out.push_back(pending);
                } else {
                    for (std::size_t i = 0; i < pending.size(); ++i)
                        out.emplace_back("\xEF\xBF\xBD");
                }
                pending.clear();
            };
            for (std::string &t : tokens) {
                if (const std::optional<std::uint8_t> b = byteFallbackValue(t)) {
                    pending += static_cast<char>(*b);
                } else {
                    flush();
                    out.push_back(std::move(t));
                }
            }
            flush();
            tokens = std::move(out);
            break;
        }
        case DecoderStep::Type::Fuse: {
            std::string joined;
            for (const std::string &t : tokens)
                joined += t;
            tokens.assign(1, std::move(joined));
            break;
        }
        case DecoderStep::Type::Strip:
            for (std::string &t : tokens) {
                const std::u32string cps = toCodePoints(t);
                std::size_t b = 0;
                while (b < step.start && b < cps.size() && cps[b] == step.stripChar)
                    ++b;
                std::size_t e = cps.size();
                for (std::size_t k = 0; k < step.stop && e > b && cps[e - 1] == step.stripChar; ++k)
                    --e;
                t = fromCodePoints(std::u32string_view(cps).substr(b, e - b));
            }
            break;
        case DecoderStep::Type::Metaspace:
            for (std::size_t i = 0; i < tokens.size(); ++i) {
                std::u32string cps = toCodePoints(tokens[i]);
                std::u32string out;
                for (char32_t c : cps) {
                    if (c != step.replacement)
                        out += c;
                    else if (!(i == 0 && step.prependScheme != PrependScheme::Never))
                        out += U' ';
                }
                tokens[i] = fromCodePoints(out);
            }
            break;
        }
    }
    std::string out;
    for (const std::string &t : tokens)
        out += t;
    return out;
}

// ---------------------------------------------------------------------------------------------
// Tokenizer
// ---------------------------------------------------------------------------------------------

Tokenizer::Tokenizer()
    : d(std::make_unique<TokenizerImpl>())
{ }

Tokenizer::~Tokenizer() = default;

Expected<std::shared_ptr<Tokenizer>> Tokenizer::fromFile(const QString &path)
{
    QFile file(path);
    if (!file.open(QIODevice::ReadOnly)) {
        return unexpected(
            fail(ErrorCode::Io, QStringLiteral("cannot open tokenizer: %1").arg(file.errorString()))
                .inFile(path)
                .withHint(QStringLiteral("check the path; a Hugging Face model folder "
                                         "has its tokenizer in tokenizer.json")));
    }
    const QByteArray json = file.readAll();
    auto tokenizer = fromJson(json, path);
    if (!tokenizer)
        return tokenizer;
    // BOS/EOS are named in tokenizer_config.json next to it, when there is one.
    QFile config(QFileInfo(path).dir().filePath(QStringLiteral("tokenizer_config.json")));
    if (config.open(QIODevice::ReadOnly)) {
        const QJsonDocument doc = QJsonDocument::fromJson(config.readAll());
        if (doc.isObject())
            (*tokenizer)->d->applyConfig(doc.object());
    }
    return tokenizer;
}

Expected<std::shared_ptr<Tokenizer>> Tokenizer::fromJson(const QByteArray &json,
                                                         const QString &pathForErrors)
{
    QJsonParseError parseError;
    const QJsonDocument doc = QJsonDocument::fromJson(json, &parseError);
    if (parseError.error != QJsonParseError::NoError) {
        return unexpected(fail(ErrorCode::Format,
                               QStringLiteral("invalid JSON at byte %1: %2")
                                   .arg(parseError.offset)
                                   .arg(parseError.errorString()))
                              .inFile(pathForErrors)
                              .withHint(QStringLiteral("the file is damaged or truncated; "
                                                       "download tokenizer.json again")));
    }
    if (!doc.isObject())
        return unexpected(formatError(QStringLiteral("the JSON is not an object"), pathForErrors));
    std::shared_ptr<Tokenizer> tokenizer(new Tokenizer());
    if (auto r = tokenizer->d->load(doc.object(), pathForErrors); !r)
        return unexpected(r.error());
    return tokenizer;
}

std::vector<std::int32_t> Tokenizer::encode(std::string_view utf8, bool addSpecialTokens) const
{
    return d->encode(utf8, addSpecialTokens);
}

std::string Tokenizer::decode(std::span<const std::int32_t> ids, bool skipSpecialTokens) const
{
    return d->decode(ids, skipSpecialTokens);
}

std::string Tokenizer::idToToken(std::int32_t id) const
{
    if (id < 0 || static_cast<std::size_t>(id) >= d->m_idToToken.size())
        return {};
    return d->m_idToToken[static_cast<std::size_t>(id)];
}

std::int32_t Tokenizer::tokenToId(std::string_view token) const
{
    if (const auto it = d->m_addedByContent.find(token); it != d->m_addedByContent.end())
        return it->second;
    if (const auto it = d->m_vocab.find(token); it != d->m_vocab.end())
        return it->second;
    return -1;
}

std::int32_t Tokenizer::vocabSize() const
{
    return d->m_vocabSize;
}

Tokenizer::Kind Tokenizer::kind() const
{
    return d->m_kind;
}

std::int32_t Tokenizer::bosId() const
{
    return d->m_bosId;
}

std::int32_t Tokenizer::eosId() const
{
    return d->m_eosId;
}

} // namespace bitsmith::core
