// Corpus BLEU and the 13a tokenizer, written from sacreBLEU 2.x's rules (see th/eval/bleu.hpp).
// The regular expressions of sacreBLEU's tokenizer are carried out by hand: each one matches one
// or two fixed characters, so Python's re.sub (leftmost match, matches never overlap, scanning
// resumes after the end of the previous match) is a plain left-to-right scan.
#include "th/eval/bleu.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string_view>
#include <unordered_map>

#include "th/core/error.hpp"

namespace th {
namespace {

// ---------------------------------------------------------------------------------------------
// Whitespace as Python's str.split() / str.rstrip() see it (str.isspace()), on UTF-8 bytes.
// Returns the byte length of the whitespace character that starts at s[i], or 0 if there is none.
// The multi-byte sequences all start with a lead byte (0xC2, 0xE1, 0xE2, 0xE3), which never occurs
// inside another character of valid UTF-8, so the string may be scanned byte by byte.
std::size_t space_len_at(std::string_view s, std::size_t i) {
  const auto b = [&](std::size_t k) -> unsigned {
    return i + k < s.size() ? static_cast<unsigned char>(s[i + k]) : 0u;
  };
  const unsigned c0 = b(0);
  if (c0 == ' ' || (c0 >= 0x09 && c0 <= 0x0D) || (c0 >= 0x1C && c0 <= 0x1F)) return 1;
  if (c0 == 0xC2 && (b(1) == 0x85 || b(1) == 0xA0)) return 2;  // U+0085 NEL, U+00A0 NBSP
  if (c0 == 0xE1 && b(1) == 0x9A && b(2) == 0x80) return 3;     // U+1680 OGHAM SPACE MARK
  if (c0 == 0xE2 && b(1) == 0x80) {
    const unsigned c2 = b(2);
    if (c2 >= 0x80 && c2 <= 0x8A) return 3;                      // U+2000..U+200A
    if (c2 == 0xA8 || c2 == 0xA9 || c2 == 0xAF) return 3;        // U+2028, U+2029, U+202F
  }
  if (c0 == 0xE2 && b(1) == 0x81 && b(2) == 0x9F) return 3;     // U+205F
  if (c0 == 0xE3 && b(1) == 0x80 && b(2) == 0x80) return 3;     // U+3000 IDEOGRAPHIC SPACE
  return 0;
}

// Python's ' '.join(s.split()): words separated by runs of whitespace, joined by one space.
std::string collapse_whitespace(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  bool pending_space = false;
  for (std::size_t i = 0; i < s.size();) {
    if (const std::size_t n = space_len_at(s, i)) {
      pending_space = !out.empty();
      i += n;
    } else {
      if (pending_space) out.push_back(' ');
      pending_space = false;
      out.push_back(s[i++]);
    }
  }
  return out;
}

// Python's s.rstrip().
std::string_view rstrip(std::string_view s) {
  std::size_t end = 0;  // one past the last byte that is not whitespace
  for (std::size_t i = 0; i < s.size();) {
    if (const std::size_t n = space_len_at(s, i)) {
      i += n;
    } else {
      end = ++i;
    }
  }
  return s.substr(0, end);
}

// Python's s.replace(from, to): one left-to-right pass, non-overlapping, replaced text not rescanned.
std::string replace_all(const std::string& s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  std::size_t pos = 0;
  for (std::size_t hit; (hit = s.find(from.data(), pos, from.size())) != std::string::npos;) {
    out.append(s, pos, hit - pos);
    out.append(to);
    pos = hit + from.size();
  }
  out.append(s, pos, std::string::npos);
  return out;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_period_or_comma(char c) { return c == '.' || c == ','; }

// The character class of sacreBLEU's first rule, [\{-\~\[-\` -\&\(-\+\:-\@\/], spelled out:
//   \{-\~  0x7B-0x7E   { | } ~
//   \[-\`  0x5B-0x60   [ \ ] ^ _ `
//    -\&   0x20-0x26   space ! " # $ % &
//   \(-\+  0x28-0x2B   ( ) * +
//   \:-\@  0x3A-0x40   : ; < = > ? @
//   \/     0x2F        /
// i.e. all ASCII punctuation except the apostrophe ', the comma, the hyphen - and the period,
// which the later rules (or nothing) handle. Non-ASCII bytes are never in the class.
bool is_split_punct(char ch) {
  const auto c = static_cast<unsigned char>(ch);
  return (c >= 0x7B && c <= 0x7E) || (c >= 0x5B && c <= 0x60) || (c >= 0x20 && c <= 0x26) ||
         (c >= 0x28 && c <= 0x2B) || (c >= 0x3A && c <= 0x40) || c == 0x2F;
}

// re.sub of a two-character pattern (first, second) by a replacement built from the two matched
// characters: scan left to right; on a match emit the replacement and skip both characters (so the
// second character cannot start the next match), otherwise copy one character.
template <class Match, class Emit>
std::string sub_pairs(const std::string& s, Match match, Emit emit) {
  std::string out;
  out.reserve(s.size() + s.size() / 2);
  std::size_t i = 0;
  while (i < s.size()) {
    if (i + 1 < s.size() && match(s[i], s[i + 1])) {
      emit(out, s[i], s[i + 1]);
      i += 2;
    } else {
      out.push_back(s[i++]);
    }
  }
  return out;
}

// Sufficient statistics of one sentence pair.
struct Stats {
  std::int64_t hyp_len = 0, ref_len = 0;
  std::array<std::int64_t, 4> matches{}, totals{};
};

// Start offsets and lengths of the tokens of a tokenize_13a() result (single-space separated).
std::vector<std::string_view> split_tokens(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (start < s.size()) {
    std::size_t end = s.find(' ', start);
    if (end == std::string_view::npos) end = s.size();
    out.push_back(s.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// n-gram counts for n = 1..4. Tokens contain no spaces and are joined by exactly one space in the
// tokenized string, so the n-gram of tokens i..i+n-1 is the substring from the start of token i to
// the end of token i+n-1: a unique key (its number of spaces tells n).
using NgramCounts = std::unordered_map<std::string_view, std::int64_t>;
NgramCounts count_ngrams(std::string_view text, const std::vector<std::string_view>& tok) {
  NgramCounts counts;
  for (std::size_t n = 1; n <= 4; ++n) {
    for (std::size_t i = 0; i + n <= tok.size(); ++i) {
      const std::size_t begin = static_cast<std::size_t>(tok[i].data() - text.data());
      const std::size_t end =
          static_cast<std::size_t>(tok[i + n - 1].data() - text.data()) + tok[i + n - 1].size();
      ++counts[text.substr(begin, end - begin)];
    }
  }
  return counts;
}

Stats sentence_stats(const std::string& hyp_raw, const std::string& ref_raw) {
  // sacreBLEU's BLEU._preprocess_segment: tokenizer(sent.rstrip()).
  const std::string hyp = tokenize_13a(std::string(rstrip(hyp_raw)));
  const std::string ref = tokenize_13a(std::string(rstrip(ref_raw)));
  const auto hyp_tok = split_tokens(hyp), ref_tok = split_tokens(ref);
  const NgramCounts hyp_counts = count_ngrams(hyp, hyp_tok);
  const NgramCounts ref_counts = count_ngrams(ref, ref_tok);

  Stats st;
  st.hyp_len = static_cast<std::int64_t>(hyp_tok.size());
  st.ref_len = static_cast<std::int64_t>(ref_tok.size());  // the closest (only) reference length
  for (const auto& [ngram, count] : hyp_counts) {
    const std::size_t n = static_cast<std::size_t>(std::count(ngram.begin(), ngram.end(), ' '));
    st.totals[n] += count;
    const auto it = ref_counts.find(ngram);
    if (it != ref_counts.end()) st.matches[n] += std::min(count, it->second);  // clipped count
  }
  return st;
}

// sacreBLEU's utils.my_log: log, with log(0) floored to -9999999999 (so exp(...) gives 0).
double floored_log(double x) { return x == 0.0 ? -9999999999.0 : std::log(x); }

}  // namespace

// ---------------------------------------------------------------------------------------------
std::string tokenize_13a(const std::string& input) {
  // Language-independent part (mteval-v13a), each a Python str.replace in this order:
  std::string line = replace_all(input, "<skipped>", "");  // drop the <skipped> marker
  line = replace_all(line, "-\n", "");                      // a hyphen at a line end joins the lines
  line = replace_all(line, "\n", " ");                      // other line ends become spaces
  // Unescape the four SGML entities, in this order, one pass each: "&amp;lt;" therefore ends as
  // "<" (the &amp; pass makes "&lt;", which the later &lt; pass unescapes), while "&amp;quot;"
  // ends as "&quot;" (the &quot; pass has already run).
  line = replace_all(line, "&quot;", "\"");
  line = replace_all(line, "&amp;", "&");
  line = replace_all(line, "&lt;", "<");
  line = replace_all(line, "&gt;", ">");
  line = " " + line + " ";  // so every character has a neighbour on both sides

  // Rule 1: ([\{-\~\[-\` -\&\(-\+\:-\@\/]) -> " \1 ": put spaces around every punctuation
  // character of the class (see is_split_punct).
  {
    std::string out;
    out.reserve(line.size() * 2);
    for (const char c : line) {
      if (is_split_punct(c)) {
        out.push_back(' ');
        out.push_back(c);
        out.push_back(' ');
      } else {
        out.push_back(c);
      }
    }
    line.swap(out);
  }
  // Rule 2: ([^0-9])([\.,]) -> "\1 \2 ": a period or comma preceded by a non-digit is split off.
  line = sub_pairs(
      line, [](char a, char b) { return !is_digit(a) && is_period_or_comma(b); },
      [](std::string& out, char a, char b) {
        out.push_back(a);
        out.push_back(' ');
        out.push_back(b);
        out.push_back(' ');
      });
  // Rule 3: ([\.,])([^0-9]) -> " \1 \2": a period or comma followed by a non-digit is split off.
  // Together with rule 2 a period/comma stays attached only when it has a digit on both sides
  // ("3.14", "1,000"); "3." and ".5" are split ("3 ." and ". 5" - a leading ".5" has a space
  // before it, which rule 2 treats as a non-digit).
  line = sub_pairs(
      line, [](char a, char b) { return is_period_or_comma(a) && !is_digit(b); },
      [](std::string& out, char a, char b) {
        out.push_back(' ');
        out.push_back(a);
        out.push_back(' ');
        out.push_back(b);
      });
  // Rule 4: ([0-9])(-) -> "\1 \2 ": a hyphen right after a digit is split off ("1990-2000" ->
  // "1990 - 2000"); other hyphens stay inside their word ("well-known", "-5").
  line = sub_pairs(
      line, [](char a, char b) { return is_digit(a) && b == '-'; },
      [](std::string& out, char a, char b) {
        out.push_back(a);
        out.push_back(' ');
        out.push_back(b);
        out.push_back(' ');
      });
  // Finally ' '.join(line.split()): one space between tokens, none at either end.
  return collapse_whitespace(line);
}

BleuResult corpus_bleu(const std::vector<std::string>& hypotheses,
                       const std::vector<std::string>& references) {
  if (hypotheses.size() != references.size())
    throw Error("corpus_bleu: " + std::to_string(hypotheses.size()) + " hypotheses but " +
                std::to_string(references.size()) + " references");

  // Corpus-level sufficient statistics: sums over sentences, no per-sentence division.
  BleuResult r;
  for (std::size_t i = 0; i < hypotheses.size(); ++i) {
    if (references[i].empty())
      throw Error("corpus_bleu: reference " + std::to_string(i) +
                  " is empty (sacreBLEU refuses empty references)");
    const Stats st = sentence_stats(hypotheses[i], references[i]);
    r.hyp_len += st.hyp_len;
    r.ref_len += st.ref_len;
    for (std::size_t n = 0; n < 4; ++n) {
      r.matches[n] += st.matches[n];
      r.totals[n] += st.totals[n];
    }
  }

  // Brevity penalty (sacreBLEU: strict c < r; 0 for an empty output).
  const std::int64_t c = r.hyp_len, ref = r.ref_len;
  if (c < ref)
    r.bp = c > 0 ? std::exp(1.0 - static_cast<double>(ref) / static_cast<double>(c)) : 0.0;
  else
    r.bp = 1.0;

  r.precisions = {0.0, 0.0, 0.0, 0.0};
  // No match of any order: score 0, precisions reported as 0 (sacreBLEU issue #141), no smoothing.
  if (r.matches[0] == 0 && r.matches[1] == 0 && r.matches[2] == 0 && r.matches[3] == 0) {
    r.score = 0.0;
    return r;
  }
  // 'exp' smoothing: the k-th order with 0 matches gets 100 / (2^k * totals[n]).
  double smooth = 1.0;
  for (std::size_t n = 0; n < 4; ++n) {
    if (r.totals[n] == 0) break;  // no n-grams this long: this and higher precisions stay 0
    if (r.matches[n] == 0) {
      smooth *= 2.0;
      r.precisions[n] = 100.0 / (smooth * static_cast<double>(r.totals[n]));
    } else {
      r.precisions[n] =
          100.0 * static_cast<double>(r.matches[n]) / static_cast<double>(r.totals[n]);
    }
  }
  // Geometric mean of the percent precisions (uniform weights 1/4); a 0 precision makes it 0.
  double log_sum = 0.0;
  for (const double p : r.precisions) log_sum += floored_log(p);
  r.score = r.bp * std::exp(log_sum / 4.0);
  return r;
}

std::string format_bleu(const BleuResult& r) {
  const double ratio =
      r.ref_len != 0 ? static_cast<double>(r.hyp_len) / static_cast<double>(r.ref_len) : 0.0;
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "BLEU = %.2f %.1f/%.1f/%.1f/%.1f (BP = %.3f ratio = %.3f hyp_len = %lld "
                "ref_len = %lld)",
                r.score, r.precisions[0], r.precisions[1], r.precisions[2], r.precisions[3], r.bp,
                ratio, static_cast<long long>(r.hyp_len), static_cast<long long>(r.ref_len));
  return buf;
}

}  // namespace th
