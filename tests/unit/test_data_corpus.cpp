// Corpus reading for task='prepare': whitespace, UTF-8 validation against hand-made byte
// sequences, the TSV reader on the Genesis fixture and on every kind of bad TSV (each error names
// the file and line), and the split rule (FNV-1a test vectors, shares, stability).
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <unistd.h>

#include "th/core/error.hpp"
#include "th/data/corpus.hpp"
#include "th/data/split.hpp"

using namespace th;

namespace {
const std::string kFixture = std::string(TH_TEST_DIR) + "/data/genesis_1-4_en_es.tsv";

std::string temp_file(const std::string& name, const std::string& bytes) {
  const std::string path = "/tmp/th-corpus-test-" + std::to_string(::getpid()) + "-" + name;
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

// The InputError message of reading this TSV ("" if it reads fine).
std::string tsv_error(const std::string& name, const std::string& bytes) {
  const std::string path = temp_file(name, bytes);
  std::string msg;
  try {
    read_tsv(path);
  } catch (const InputError& e) {
    msg = e.what();
  }
  std::remove(path.c_str());
  return msg;
}
}  // namespace

TEST(Corpus, NormalizeWhitespace) {
  EXPECT_EQ(normalize_whitespace("  a \t b\r\n c  "), "a b c");
  EXPECT_EQ(normalize_whitespace("x\xC2\xA0y"), "x y");  // no-break space
  EXPECT_EQ(normalize_whitespace("caf\xC3\xA9  ol\xC3\xA9"), "caf\xC3\xA9 ol\xC3\xA9");  // é kept
  EXPECT_EQ(normalize_whitespace(" \t "), "");
}

TEST(Corpus, FindInvalidUtf8) {
  const auto npos = std::string::npos;
  EXPECT_EQ(find_invalid_utf8("plain ascii"), npos);
  EXPECT_EQ(find_invalid_utf8("\xC3\xB1 \xE2\x82\xAC \xF0\x9D\x84\x9E"), npos);  // ñ € 𝄞
  EXPECT_EQ(find_invalid_utf8("ab\xFF"), 2u);               // never valid
  EXPECT_EQ(find_invalid_utf8("a\xC0\x80"), 1u);            // overlong NUL
  EXPECT_EQ(find_invalid_utf8("\xE0\x80\xAF"), 0u);         // overlong '/'
  EXPECT_EQ(find_invalid_utf8("xy\xED\xA0\x80"), 2u);       // UTF-16 surrogate
  EXPECT_EQ(find_invalid_utf8("\xF4\x90\x80\x80"), 0u);     // above U+10FFFF
  EXPECT_EQ(find_invalid_utf8("abc\xE2\x82"), 3u);          // cut off
  EXPECT_EQ(find_invalid_utf8("\xC3 x"), 0u);               // continuation missing
  EXPECT_EQ(find_invalid_utf8("ok\x80"), 2u);               // stray continuation byte
}

TEST(Corpus, ReadsTheGenesisFixture) {
  const Corpus c = read_tsv(kFixture);
  ASSERT_EQ(c.pairs.size(), 106u);  // Genesis 1-4: 31 + 25 + 24 + 26 verses
  EXPECT_EQ(c.records, 106);
  EXPECT_EQ(c.skipped_empty, 0);
  EXPECT_EQ(c.pairs[0].src, "In the beginning, God created the heavens and the earth.");
  EXPECT_EQ(c.pairs[0].tgt, "EN el principio cri\xC3\xB3 Dios los cielos y la tierra.");
  EXPECT_EQ(c.pairs[0].key, c.pairs[0].src + "\t" + c.pairs[0].tgt);
}

TEST(Corpus, TsvDetailsCrlfBomBlankAndEmptySides) {
  const std::string path = temp_file("ok.tsv", "\xEF\xBB\xBFhello  world\thola mundo\r\n\n  \t x\nsun\tsol\n");
  const Corpus c = read_tsv(path);
  std::remove(path.c_str());
  ASSERT_EQ(c.pairs.size(), 2u);
  EXPECT_EQ(c.pairs[0].src, "hello world");
  EXPECT_EQ(c.pairs[0].tgt, "hola mundo");
  EXPECT_EQ(c.pairs[1].src, "sun");
  EXPECT_EQ(c.records, 4);
  EXPECT_EQ(c.skipped_empty, 2);  // the blank line and the pair with an empty source
}

TEST(Corpus, BadTsvIsAClearErrorWithFileAndLine) {
  std::string m = tsv_error("notab.tsv", "a\tb\nc\td\nno tab here\n");
  EXPECT_NE(m.find("notab.tsv:3: no TAB"), std::string::npos) << m;
  m = tsv_error("twotabs.tsv", "a\tb\tc\n");
  EXPECT_NE(m.find("twotabs.tsv:1: more than one TAB"), std::string::npos) << m;
  m = tsv_error("empty.tsv", "");
  EXPECT_NE(m.find("empty.tsv: empty file"), std::string::npos) << m;
  m = tsv_error("blank.tsv", "\n \n\t\n");
  EXPECT_NE(m.find("blank.tsv: no usable pair in 3 lines"), std::string::npos) << m;
  m = tsv_error("latin1.tsv", "ok\tfine\nbad\tcaf\xE9\n");  // Latin-1 é
  EXPECT_NE(m.find("latin1.tsv:2: invalid UTF-8 at byte 8"), std::string::npos) << m;
  try {
    read_tsv("/nonexistent/th.tsv");
    ADD_FAILURE() << "no error for a missing file";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/th.tsv: cannot open"), std::string::npos) << e.what();
  }
  EXPECT_THROW(read_corpus("bible:onlyone"), InputError);
}

// Issue 15: a NUL byte (binary data, UTF-16 text) is an error with file and line, not text.
TEST(Corpus, NulByteIsAnErrorWithFileAndLine) {
  std::string m = tsv_error("nul.tsv", std::string("ok\tfine\nbad\tna\0me\n", 18));
  EXPECT_NE(m.find("nul.tsv:2: a NUL byte at byte 7 of the line"), std::string::npos) << m;
  // "a\tb" in UTF-16LE: every other byte is 0.
  m = tsv_error("utf16.tsv", std::string("a\0\t\0b\0\n\0", 8));
  EXPECT_NE(m.find("utf16.tsv:1: a NUL byte at byte 2 of the line (a binary file, or UTF-16 text?)"), std::string::npos)
      << m;
}

TEST(Split, Fnv1aTestVectorsAndShares) {
  // Reference values of 64-bit FNV-1a (Fowler/Noll/Vo test suite).
  EXPECT_EQ(fnv1a64(""), 0xcbf29ce484222325ULL);
  EXPECT_EQ(fnv1a64("a"), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(fnv1a64("foobar"), 0x85944171f73967e8ULL);
  int count[3] = {0, 0, 0};
  const int n = 200000;
  for (int i = 0; i < n; ++i) ++count[static_cast<int>(assign_split("Genesis " + std::to_string(i), 0.05, 0.10))];
  // Binomial standard deviations: 0.05 -> 0.00049, 0.10 -> 0.00067; allow 5 of them.
  EXPECT_NEAR(count[1] / double(n), 0.05, 0.0025);
  EXPECT_NEAR(count[2] / double(n), 0.10, 0.0034);
  EXPECT_EQ(assign_split("anything", 0.0, 0.0), Split::Train);
  // A key's split is a function of the key and the fractions only: growing a held-out share
  // moves pairs from train into it, never between valid and test or out of them.
  for (int i = 0; i < 2000; ++i) {
    const std::string k = "John 3:" + std::to_string(i);
    const Split small = assign_split(k, 0.01, 0.01), large = assign_split(k, 0.01, 0.05);
    if (small != Split::Train) {
      EXPECT_EQ(small, large);
    }
  }
}
