// Corpus BLEU (sacreBLEU 2.x defaults: 13a tokenizer, 'exp' smoothing, BLEU-4, one reference) and
// the 13a tokenizer. Every expected value is worked out by hand in the comment above it.
//
// Cross-check: Debian has no python3-sacrebleu package (apt-cache search sacrebleu: nothing, on
// bookworm), and PyPI cannot be reached from the build machines. The expected strings below were
// therefore cross-checked against a transcription of sacreBLEU's own Python code (Tokenizer13a,
// TokenizerRegexp with Python's `re`, BLEU.compute_bleu, _compute_segment_statistics,
// BLEUScore's format, utils.my_log - from the mjpost/sacrebleu sources), run on these cases and on
// 40,000 random lines (tokenizer: entities, <skipped>, "-\n", Unicode spaces, digits with . , -)
// and 6,000 random small corpora (smoothing, brevity penalty, zero-match and too-short corpora
// all exercised): identical tokens, identical format_bleu() strings, bit-identical scores.
// For example, that transcription gives for
//   hyps ["the cat sat on the mat", "a dog ran away"], refs ["the cat sat on the mat",
//   "a cat ran away"]:  76.21991222319218
//   "BLEU = 76.22 90.0/75.0/66.7/75.0 (BP = 1.000 ratio = 1.000 hyp_len = 10 ref_len = 10)"
// and for hyps ["the the the the"], refs ["the cat the mat"]:  18.99589214128981
//   "BLEU = 19.00 50.0/16.7/12.5/12.5 (BP = 1.000 ratio = 1.000 hyp_len = 4 ref_len = 4)".
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "th/core/error.hpp"
#include "th/eval/bleu.hpp"

using th::BleuResult;
using th::corpus_bleu;
using th::format_bleu;
using th::tokenize_13a;

namespace {

void expect_counts(const BleuResult& r, std::array<std::int64_t, 4> matches,
                   std::array<std::int64_t, 4> totals) {
  for (int n = 0; n < 4; ++n) {
    EXPECT_EQ(r.matches[n], matches[n]) << "matches of order " << n + 1;
    EXPECT_EQ(r.totals[n], totals[n]) << "totals of order " << n + 1;
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Tokenizer

TEST(Tokenize13a, PunctuationIsSplitOff) {
  // '!' is in the split class (0x20-0x26); ',' is split by rule 2 (preceded by the non-digit 'o').
  EXPECT_EQ(tokenize_13a("Hello, world!"), "Hello , world !");
  // A final period after a letter: rule 2.
  EXPECT_EQ(tokenize_13a("The cat sat on the mat."), "The cat sat on the mat .");
  // Every character of the class [\{-\~\[-\` -\&\(-\+\:-\@\/] becomes its own token.
  EXPECT_EQ(tokenize_13a("(x) [y] {z} a/b a+b=c 50% #1 @me ~_^`|\\"),
            "( x ) [ y ] { z } a / b a + b = c 50 % # 1 @ me ~ _ ^ ` | \\");
  // The apostrophe is not in the class and stays inside its word.
  EXPECT_EQ(tokenize_13a("don't"), "don't");
}

TEST(Tokenize13a, PeriodsAndCommasBetweenDigitsAreKept) {
  // "$" split (class); "3.14": '.' has digits on both sides, so neither rule 2 ('3' is a digit)
  // nor rule 3 ('1' is a digit) applies; the ',' after "3.14" is followed by a space: rule 3.
  // "1,000" kept; "dollars." split by rule 2.
  EXPECT_EQ(tokenize_13a("It costs $3.14, not 1,000 dollars."),
            "It costs $ 3.14 , not 1,000 dollars .");
  EXPECT_EQ(tokenize_13a("1.5.2 1,2,3 a,b"), "1.5.2 1,2,3 a , b");
  // A digit on one side only is not enough: "3." (rule 3: followed by a space), ".5" (rule 2:
  // preceded by a space), "a.b" (rule 2), "U.S." (rule 2 twice).
  EXPECT_EQ(tokenize_13a("3. .5 a.b U.S."), "3 . . 5 a . b U . S .");
}

TEST(Tokenize13a, HyphensAreSplitOnlyAfterDigits) {
  // Rule 4 ([0-9])(-): "10-20" -> "10 - 20", "2-3-4" -> "2 - 3 - 4"; "well-known", "-5" and "--"
  // have no digit before the hyphen and stay whole.
  EXPECT_EQ(tokenize_13a("pages 10-20 and well-known -5"), "pages 10 - 20 and well-known -5");
  EXPECT_EQ(tokenize_13a("2-3-4 --"), "2 - 3 - 4 --");
}

TEST(Tokenize13a, EntitiesAreUnescapedThenSplit) {
  // &quot; -> '"', &amp; -> '&', &lt; -> '<', &gt; -> '>', and all four are in the split class.
  EXPECT_EQ(tokenize_13a("&quot;Yes&quot; &amp; &lt;no&gt;"), "\" Yes \" & < no >");
  // One str.replace pass per entity, in the order quot, amp, lt, gt: "&amp;lt;" becomes "&lt;" in
  // the amp pass and "<" in the later lt pass; "&amp;quot;" becomes "&quot;" after the quot pass
  // has run, so it stays, and '&' and ';' are then split: "& quot ;".
  EXPECT_EQ(tokenize_13a("&amp;lt; &amp;quot;"), "< & quot ;");
}

TEST(Tokenize13a, SkippedTagsLineBreaksAndWhitespace) {
  // "<skipped>" is deleted, "-\n" joins the two lines, any other "\n" is a space.
  EXPECT_EQ(tokenize_13a("x<skipped>y line-\nbreak a\nb"), "xy linebreak a b");
  // Runs of whitespace - tab, NBSP U+00A0 (C2 A0), ideographic space U+3000 (E3 80 80) - collapse
  // to one space; leading and trailing whitespace goes.
  EXPECT_EQ(tokenize_13a("  a\t\tb \xC2\xA0 c\xE3\x80\x80" "d  "), "a b c d");
  // A zero-width space U+200B is not whitespace for Python and stays.
  EXPECT_EQ(tokenize_13a("a\xE2\x80\x8B" "b"), "a\xE2\x80\x8B" "b");
  // Non-ASCII letters are never split; the period after 'é' is (rule 2: not a digit).
  EXPECT_EQ(tokenize_13a("caf\xC3\xA9."), "caf\xC3\xA9 .");
  EXPECT_EQ(tokenize_13a(""), "");
  EXPECT_EQ(tokenize_13a(" \t\n "), "");
}

// ---------------------------------------------------------------------------------------------
// Corpus BLEU

TEST(CorpusBleu, PerfectMatchIs100) {
  // Tokens: The cat sat on the mat .  (7; "The" and "the" differ, no lowercasing)
  // n-grams: 7 unigrams, 6 bigrams, 5 trigrams, 4 four-grams, all matched; c = r = 7, BP = 1.
  // BLEU = 1 * (100 * 100 * 100 * 100)^(1/4) = 100.
  const auto r = corpus_bleu({"The cat sat on the mat."}, {"The cat sat on the mat."});
  expect_counts(r, {7, 6, 5, 4}, {7, 6, 5, 4});
  EXPECT_NEAR(r.score, 100.0, 1e-9);
  EXPECT_EQ(r.bp, 1.0);
  EXPECT_EQ(format_bleu(r),
            "BLEU = 100.00 100.0/100.0/100.0/100.0 (BP = 1.000 ratio = 1.000 hyp_len = 7 "
            "ref_len = 7)");
}

TEST(CorpusBleu, TotalMissIsZeroWithoutSmoothing) {
  // hyp: dogs bark loudly (3 tokens); ref: the cat sat on the mat . (7 tokens).
  // No unigram matches, hence no n-gram of any order: matches 0/0/0/0 of totals 3/2/1/0.
  // sacreBLEU stops early when NO order has a match: score 0 and precisions reported as 0 - the
  // 'exp' smoothing is not applied (it would otherwise give 50/3 = 16.7 for the unigrams).
  // BP = exp(1 - 7/3) = exp(-4/3) = 0.2636; ratio = 3/7 = 0.429.
  const auto r = corpus_bleu({"dogs bark loudly"}, {"the cat sat on the mat."});
  expect_counts(r, {0, 0, 0, 0}, {3, 2, 1, 0});
  EXPECT_EQ(r.score, 0.0);
  for (double p : r.precisions) EXPECT_EQ(p, 0.0);
  EXPECT_NEAR(r.bp, std::exp(-4.0 / 3.0), 1e-15);
  EXPECT_EQ(format_bleu(r),
            "BLEU = 0.00 0.0/0.0/0.0/0.0 (BP = 0.264 ratio = 0.429 hyp_len = 3 ref_len = 7)");
}

TEST(CorpusBleu, ExpSmoothingOfZeroCounts) {
  // hyp: mat the on sat cat the      ref: the cat sat on the mat      (c = r = 6, BP = 1)
  // unigrams: hyp {mat, the x2, on, sat, cat}, ref {the x2, cat, sat, on, mat}: 6/6 matched.
  // bigrams:  hyp "mat the" "the on" "on sat" "sat cat" "cat the";
  //           ref "the cat" "cat sat" "sat on" "on the" "the mat": no match, 0/5.
  // trigrams: 0/4; four-grams: 0/3 (none can match when no bigram does).
  // 'exp' smoothing: the k-th zero order gets 100 / (2^k * total):
  //   p1 = 100, p2 = 100/(2*5) = 10, p3 = 100/(4*4) = 6.25, p4 = 100/(8*3) = 4.1667
  // BLEU = (100 * 10 * 6.25 * 4.1667)^(1/4) = 26041.67^(1/4) = 12.7033
  // (6.25 prints as "6.2": round-half-even on an exactly representable tie, as Python does).
  const auto r = corpus_bleu({"mat the on sat cat the"}, {"the cat sat on the mat"});
  expect_counts(r, {6, 0, 0, 0}, {6, 5, 4, 3});
  EXPECT_DOUBLE_EQ(r.precisions[0], 100.0);
  EXPECT_DOUBLE_EQ(r.precisions[1], 10.0);
  EXPECT_DOUBLE_EQ(r.precisions[2], 6.25);
  EXPECT_DOUBLE_EQ(r.precisions[3], 100.0 / 24.0);
  EXPECT_NEAR(r.score, std::pow(100.0 * 10.0 * 6.25 * 100.0 / 24.0, 0.25), 1e-10);
  EXPECT_NEAR(r.score, 12.703318703865376, 1e-10);
  EXPECT_EQ(format_bleu(r),
            "BLEU = 12.70 100.0/10.0/6.2/4.2 (BP = 1.000 ratio = 1.000 hyp_len = 6 ref_len = 6)");
}

TEST(CorpusBleu, ClippedCountsAndSmoothing) {
  // hyp: the the the the     ref: the cat the mat     (c = r = 4, BP = 1)
  // unigrams: "the" x4 in hyp but x2 in ref: clipped to 2 -> 2/4 = 50
  // bigrams "the the" x3 -> 0/3; trigrams "the the the" x2 -> 0/2; four-gram x1 -> 0/1
  // smoothed: p2 = 100/(2*3) = 16.667, p3 = 100/(4*2) = 12.5, p4 = 100/(8*1) = 12.5
  // BLEU = (50 * 16.667 * 12.5 * 12.5)^(1/4) = 130208.3^(1/4) = 18.9959
  const auto r = corpus_bleu({"the the the the"}, {"the cat the mat"});
  expect_counts(r, {2, 0, 0, 0}, {4, 3, 2, 1});
  EXPECT_NEAR(r.score, 18.99589214128981, 1e-10);
  EXPECT_EQ(format_bleu(r),
            "BLEU = 19.00 50.0/16.7/12.5/12.5 (BP = 1.000 ratio = 1.000 hyp_len = 4 ref_len = 4)");
}

TEST(CorpusBleu, BrevityPenalty) {
  // hyp: the cat sat on the (c = 5)     ref: the cat sat on the mat (r = 6)
  // every hyp n-gram is in the ref: unigrams 5/5 ("the" x2 in both), bigrams 4/4, trigrams 3/3,
  // four-grams 2/2 -> all precisions 100.
  // c < r: BP = exp(1 - r/c) = exp(1 - 6/5) = exp(-0.2) = 0.81873; BLEU = 81.873; ratio = 0.833.
  const auto r = corpus_bleu({"the cat sat on the"}, {"the cat sat on the mat"});
  expect_counts(r, {5, 4, 3, 2}, {5, 4, 3, 2});
  EXPECT_NEAR(r.bp, std::exp(-0.2), 1e-15);
  EXPECT_NEAR(r.score, 100.0 * std::exp(-0.2), 1e-10);
  EXPECT_EQ(format_bleu(r),
            "BLEU = 81.87 100.0/100.0/100.0/100.0 (BP = 0.819 ratio = 0.833 hyp_len = 5 "
            "ref_len = 6)");
  // A longer hypothesis is not penalised (BP = 1, c > r); its extra n-grams lower the precision.
  const auto longer = corpus_bleu({"the cat sat on the mat"}, {"the cat sat on the"});
  EXPECT_EQ(longer.bp, 1.0);
}

TEST(CorpusBleu, CorpusLevelCountsNotAveragedSentenceScores) {
  // Sentence 1: hyp = ref = "the cat sat on the mat" (6 tokens): 6/6, 5/5, 4/4, 3/3.
  // Sentence 2: hyp "a dog ran away", ref "a cat ran away" (4 tokens each):
  //   unigrams a, dog, ran, away -> a, ran, away match: 3/4
  //   bigrams "a dog" "dog ran" "ran away" -> "ran away": 1/3
  //   trigrams "a dog ran" "dog ran away": 0/2; four-gram "a dog ran away": 0/1
  // Alone, sentence 2 would score (75 * 33.33 * 100/(2*2) * 100/(4*1))^(1/4) = 35.36 (smoothed),
  // and the mean of the sentence scores would be (100 + 35.36) / 2 = 67.68.
  // The corpus sums the counts first: 9/10, 6/8, 4/6, 3/4 -> 90, 75, 66.67, 75, no zero count so
  // no smoothing; c = r = 10, BP = 1.
  // BLEU = (90 * 75 * 66.667 * 75)^(1/4) = 33,750,000^(1/4) = 76.2199
  const auto r = corpus_bleu({"the cat sat on the mat", "a dog ran away"},
                             {"the cat sat on the mat", "a cat ran away"});
  expect_counts(r, {9, 6, 4, 3}, {10, 8, 6, 4});
  EXPECT_EQ(r.hyp_len, 10);
  EXPECT_EQ(r.ref_len, 10);
  EXPECT_NEAR(r.score, std::pow(90.0 * 75.0 * (200.0 / 3.0) * 75.0, 0.25), 1e-10);
  EXPECT_NEAR(r.score, 76.21991222319218, 1e-10);
  EXPECT_EQ(format_bleu(r),
            "BLEU = 76.22 90.0/75.0/66.7/75.0 (BP = 1.000 ratio = 1.000 hyp_len = 10 "
            "ref_len = 10)");

  const auto s2 = corpus_bleu({"a dog ran away"}, {"a cat ran away"});
  EXPECT_NEAR(s2.score, 35.35533905932737, 1e-10);
  EXPECT_GT(std::abs(r.score - (100.0 + s2.score) / 2.0), 8.0);
}

TEST(CorpusBleu, CorpusTooShortForFourGramsScoresZero) {
  // hyp = ref = "the cat sat": 3/3, 2/2, 1/1, and no four-gram at all (total 0). sacreBLEU stops
  // at the first order with total 0: that precision stays 0, and log(0) (floored to -9999999999)
  // makes the score 0 even though every n-gram that exists matches.
  const auto r = corpus_bleu({"the cat sat"}, {"the cat sat"});
  expect_counts(r, {3, 2, 1, 0}, {3, 2, 1, 0});
  EXPECT_EQ(r.score, 0.0);
  EXPECT_EQ(format_bleu(r),
            "BLEU = 0.00 100.0/100.0/100.0/0.0 (BP = 1.000 ratio = 1.000 hyp_len = 3 ref_len = 3)");
}

TEST(CorpusBleu, EmptyHypothesis) {
  // c = 0 < r = 2: BP = 0 (sacreBLEU's special case), no n-grams, score 0, ratio 0/2 = 0.
  const auto r = corpus_bleu({""}, {"a b"});
  EXPECT_EQ(r.score, 0.0);
  EXPECT_EQ(r.bp, 0.0);
  EXPECT_EQ(format_bleu(r),
            "BLEU = 0.00 0.0/0.0/0.0/0.0 (BP = 0.000 ratio = 0.000 hyp_len = 0 ref_len = 2)");
}

TEST(CorpusBleu, SentencesAreRightStrippedBeforeTokenizing) {
  // sacreBLEU tokenizes sent.rstrip(): "well-\n" loses its "\n" before the "-\n" join could apply,
  // so it is the token "well-" and matches the reference exactly (5 tokens, BLEU 100).
  // tokenize_13a() alone does not strip: it joins "-\n" and gives "well".
  EXPECT_EQ(tokenize_13a("well-\n"), "well");
  const auto r = corpus_bleu({"x y z w well-\n"}, {"x y z w well-"});
  EXPECT_NEAR(r.score, 100.0, 1e-9);
  EXPECT_EQ(r.hyp_len, 5);
}

TEST(CorpusBleu, Errors) {
  EXPECT_THROW(corpus_bleu({"a", "b"}, {"a"}), th::Error);
  EXPECT_THROW(corpus_bleu({"a"}, {"a", "b"}), th::Error);
  // sacreBLEU refuses an empty reference string; one of blanks only is a reference of length 0.
  EXPECT_THROW(corpus_bleu({"a"}, {""}), th::Error);
  EXPECT_NO_THROW(corpus_bleu({"a"}, {" "}));
  // Empty corpus: all zero, BP 1 (sacreBLEU itself fails on an empty list).
  const auto r = corpus_bleu({}, {});
  EXPECT_EQ(r.score, 0.0);
  EXPECT_EQ(r.bp, 1.0);
  EXPECT_EQ(format_bleu(r),
            "BLEU = 0.00 0.0/0.0/0.0/0.0 (BP = 1.000 ratio = 0.000 hyp_len = 0 ref_len = 0)");
}

TEST(FormatBleu, MatchesSacreBleuLayout) {
  BleuResult r;
  r.score = 32.4512;
  r.precisions = {64.13, 38.249, 25.0, 17.06};
  r.bp = std::exp(1.0 - 21.0 / 20.0);  // 0.95123
  r.hyp_len = 20;
  r.ref_len = 21;
  EXPECT_EQ(format_bleu(r),
            "BLEU = 32.45 64.1/38.2/25.0/17.1 (BP = 0.951 ratio = 0.952 hyp_len = 20 ref_len = 21)");
}
