#pragma once
// Corpus-level BLEU, computed exactly as sacreBLEU 2.x computes it with its defaults
// (`sacrebleu.corpus_bleu(hyps, [refs])`, i.e. BLEU(tokenize='13a', smooth_method='exp',
// lowercase=False, effective_order=False, max_ngram_order=4)), for one reference per sentence.
//
// What "the standard way" means here, step by step:
//  1. Every hypothesis and reference is right-stripped of whitespace (Python's str.rstrip()) and
//     tokenized with tokenize_13a() (mteval-v13a rules, see below).
//  2. For each sentence pair, n-grams (n = 1..4) of the hypothesis are counted; an n-gram's match
//     count is clipped to the number of times it occurs in the reference ("modified precision").
//     matches[n] and totals[n] are SUMMED OVER THE CORPUS before any division: the corpus score is
//     not an average of sentence scores.
//  3. precision[n] = 100 * matches[n] / totals[n] (percent). Smoothing 'exp' (the NIST/mteval
//     method 3 of Chen & Cherry 2014): the k-th order (k = 1, 2, ...) counted from the lowest whose
//     match count is 0 gets precision 100 / (2^k * totals[n]) instead of 0. Two exceptions, both
//     from sacreBLEU: if NO order has a match at all, the score is 0 and every precision is
//     reported as 0; if some order has totals[n] == 0 (the corpus has no n-gram that long), that
//     precision and all higher ones stay 0 and the score is 0.
//  4. Brevity penalty: c = total hypothesis tokens, r = total reference tokens;
//     BP = 1 if c >= r, exp(1 - r/c) if 0 < c < r, and 0 if c == 0 < r.
//  5. score = BP * exp((ln p1 + ln p2 + ln p3 + ln p4) / 4), with the precisions in percent, so the
//     score is in percent (0..100).
#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace th {

// The mteval-v13a tokenizer (sacreBLEU's `13a`, the default for BLEU). Input is UTF-8 text; only
// ASCII characters are ever split off, and whitespace is what Python's str.split() calls
// whitespace (ASCII \t \n \v \f \r \x1c-\x1f and space, plus U+0085, U+00A0, U+1680,
// U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000). Returns the tokens joined by single
// spaces, with no leading or trailing space. Does NOT right-strip first (corpus_bleu does, as
// sacreBLEU does before tokenizing), which only matters for a trailing "-\n".
std::string tokenize_13a(const std::string& line);

struct BleuResult {
  double score = 0.0;                        // 0..100
  std::array<double, 4> precisions{};        // percent, after smoothing
  double bp = 1.0;                           // brevity penalty
  std::int64_t hyp_len = 0, ref_len = 0;     // total tokens (c and r)
  std::array<std::int64_t, 4> matches{};     // clipped n-gram matches, summed over the corpus
  std::array<std::int64_t, 4> totals{};      // hypothesis n-grams, summed over the corpus
};

// Corpus BLEU of hypotheses[i] against the single reference references[i].
// Throws th::Error when the two sizes differ, and when a reference is the empty string (sacreBLEU
// refuses those too: "Empty or `None` reference sentence found."; a reference of only blanks is
// accepted and has length 0). An empty corpus gives the all-zero result with BP = 1 (sacreBLEU
// itself fails on an empty list).
BleuResult corpus_bleu(const std::vector<std::string>& hypotheses,
                       const std::vector<std::string>& references);

// sacreBLEU's one-line summary (str(BLEUScore), no signature), e.g.
// "BLEU = 32.45 64.1/38.2/25.0/17.1 (BP = 0.951 ratio = 0.952 hyp_len = 20 ref_len = 21)".
// ratio = hyp_len / ref_len, or 0 when ref_len is 0.
std::string format_bleu(const BleuResult& result);

}  // namespace th
