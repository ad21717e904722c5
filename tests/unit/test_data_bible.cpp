// The Bible reader: OSIS markup stripping and verse-line parsing on snippets copied from the
// Debian modules' `diatheke -f internal` output, then (when diatheke and the modules are
// installed: tests/setup-deps.sh) the real Genesis 1 of both modules, aligned.
#include <gtest/gtest.h>

#include <cstdlib>

#include "th/core/error.hpp"
#include "th/data/bible.hpp"

using namespace th;

TEST(Bible, StripsMarkupLikeTheModulesUseIt) {
  // engWEB2015eb, Genesis 1:1: two touching word elements must stay two words.
  EXPECT_EQ(strip_osis_markup(R"(<w savlm="strong:H0430">In</w> <w savlm="strong:H0853">the</w> <w savlm="strong:H7225">beginning</w>, <w savlm="strong:H0430">God</w><w savlm="strong:H1254">created</w> <w savlm="strong:H0853">the</w> <w savlm="strong:H8064">heavens</w>.)"),
            "In the beginning, God created the heavens.");
  // Psalms 3:1: the heading (<title>) is not verse text; line elements separate words.
  EXPECT_EQ(strip_osis_markup(R"(<title canonical="true" type="psalm">A Psalm by David, when he fled from Absalom his son.</title> <lg sID="gen7860"/> <l level="1" sID="gen7861"/>Yahweh, how <w savlm="strong:H1732">my</w> adversaries <w>have</w> increased!<l eID="gen7861" level="1"/><l level="2" sID="gen7862"/>Many <w>are</w> <w>those</w>)"),
            "Yahweh, how my adversaries have increased! Many are those");
  // spaRV1909eb, Genesis 2:12: added words (<transChange>) between word elements.
  EXPECT_EQ(strip_osis_markup(R"(<w savlm="strong:H8033">hay allí</w><transChange type="added">también</transChange><w savlm="strong:H0916">bdelio</w>)"),
            "hay allí también bdelio");
  // John 3:16: a quotation closes and reopens inside the verse.
  EXPECT_EQ(strip_osis_markup(R"(<w>his</w> <w>only</w> born</q><q marker=""><w savlm="strong:G5207">Son</w>,)"),
            "his only born Son,");
  // Revelation 22:21: the module's glossary follows the end of the book.
  EXPECT_EQ(strip_osis_markup(R"(<w>all</w> <w>the</w> saints. Amen.  <chapter eID="Rev.22"/><div eID="gen35836" type="x-p"/> <div canonical="true" eID="gen35575" osisID="Rev" type="book"/> <div sID="gen35837" type="glossary"/> The following words)"),
            "all the saints. Amen.");
  EXPECT_EQ(strip_osis_markup(R"(a<note type="study">a footnote</note> b<title/>c)"), "a bc");
}

TEST(Bible, ParsesVerseLines) {
  Verse v;
  ASSERT_TRUE(parse_diatheke_line("Genesis 1:3: <w>God</w> <w>said</w>", v));
  EXPECT_EQ(v.ref, "Genesis 1:3");
  EXPECT_EQ(v.text, "God said");
  ASSERT_TRUE(parse_diatheke_line(R"(<title type="psalm">A praise psalm by David.</title> <lg sID="g1"/>Esther (Greek) 1:1: [In the second year)", v));
  EXPECT_EQ(v.ref, "Esther (Greek) 1:1");
  EXPECT_EQ(v.text, "[In the second year");
  ASSERT_TRUE(parse_diatheke_line("  Revelation of John 22:21: Amen. See Exodus 3:13: later", v));
  EXPECT_EQ(v.ref, "Revelation of John 22:21");
  EXPECT_EQ(v.text, "Amen. See Exodus 3:13: later");
  ASSERT_TRUE(parse_diatheke_line("I Samuel 2:4:", v));  // an empty verse
  EXPECT_EQ(v.ref, "I Samuel 2:4");
  EXPECT_EQ(v.text, "");
  EXPECT_FALSE(parse_diatheke_line("(engWEB2015eb)", v));
  EXPECT_FALSE(parse_diatheke_line("", v));
  EXPECT_FALSE(parse_diatheke_line("a line, with 3:4: no book", v));
}

namespace {
bool have_modules() {
  return std::system("diatheke -b system -k modulelist 2>/dev/null | grep -q spaRV1909eb && "
                     "diatheke -b system -k modulelist 2>/dev/null | grep -q engWEB2015eb") == 0;
}
}  // namespace

TEST(Bible, ReadsAndAlignsGenesisOne) {
  if (!have_modules()) GTEST_SKIP() << "diatheke or the SWORD modules are missing: run tests/setup-deps.sh";
  const Corpus c = read_bible("engWEB2015eb", "spaRV1909eb", "Genesis 1");
  ASSERT_EQ(c.pairs.size(), 31u);
  EXPECT_EQ(c.records, 31);
  EXPECT_EQ(c.skipped_empty + c.skipped_missing, 0);
  EXPECT_EQ(c.pairs[0].key, "Genesis 1:1");
  EXPECT_EQ(c.pairs[0].src, "In the beginning, God created the heavens and the earth.");
  EXPECT_EQ(c.pairs[0].tgt, "EN el principio cri\xC3\xB3 Dios los cielos y la tierra.");
  EXPECT_EQ(c.pairs[30].key, "Genesis 1:31");
  EXPECT_EQ(c.pairs[2].tgt, "Y dijo Dios: Sea la luz: y fu\xC3\xA9 la luz.");
  // Jonah 1:17 of the WEB is Jonah 2:1 in the Spanish numbering; the Reina Valera module's 1:17 is
  // empty: skipped and counted, the neighbours kept.
  const Corpus j = read_bible("engWEB2015eb", "spaRV1909eb", "Jonah 1:15-17");
  EXPECT_EQ(j.records, 3);
  EXPECT_EQ(j.pairs.size(), 2u);
  EXPECT_EQ(j.skipped_empty, 1);
  EXPECT_EQ(j.pairs[1].key, "Jonah 1:16");
  try {
    read_bible("engWEB2015eb", "noSuchModule", "Genesis 1:1");
    ADD_FAILURE() << "no error for a missing module";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("'noSuchModule' gave no verse"), std::string::npos) << e.what();
  }
  EXPECT_THROW(read_bible("eng;rm -rf", "x", "Genesis 1"), InputError);  // never reaches a shell
}
