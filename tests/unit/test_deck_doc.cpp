// The key tables of docs/deck.md come from the key table (th/config/deck_keys.def): the file is
// what the generator makes of it, stale tables are replaced, prose is kept, and bad markers are
// reported with file and line. (ctest deck_docs checks the same through `torch-handle --deck-keys`.)
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <string>

#include "th/io/deck_doc.hpp"
#include "th/io/deck_schema.hpp"
#include "th/core/error.hpp"

namespace th {
namespace {

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// A document with every group's markers around `inside`, and prose around them.
std::string marked(const std::string& inside) {
  std::string doc = "# Deck\n\nprose before\n";
  for (const std::string& g : deck_groups())
    doc += "\n### `&" + g + "`\n\n<!-- deck-keys " + g + " -->\n" + inside + "<!-- end deck-keys -->\n\nprose of " + g + "\n";
  return doc;
}

std::string error_of(const std::string& doc) {
  try {
    deck_doc_update(doc, "deck.md");
  } catch (const InputError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no InputError for:\n" << doc;
  return "";
}

TEST(DeckDoc, DocsDeckMdIsWhatTheGeneratorMakesOfIt) {
  const std::string path = TH_TEST_DIR "/../docs/deck.md";
  const std::string doc = read_text(path);
  ASSERT_FALSE(doc.empty());
  EXPECT_TRUE(deck_doc_update(doc, path) == doc)
      << "docs/deck.md's key tables differ from include/th/config/deck_keys.def; regenerate them:\n"
         "  build/bin/torch-handle --deck-keys=docs/deck.md > docs/deck.md.new && mv docs/deck.md.new docs/deck.md";
}

TEST(DeckDoc, StaleTablesAreReplacedAndProseIsKept) {
  const std::string out = deck_doc_update(marked("| `no_such_key` | integer | `0` |  | stale |\n"), "deck.md");
  EXPECT_EQ(out.find("no_such_key"), std::string::npos);
  EXPECT_NE(out.find("prose before\n"), std::string::npos);
  for (const std::string& g : deck_groups()) {
    EXPECT_NE(out.find("<!-- deck-keys " + g + " -->\n" + deck_doc_table(g) + "<!-- end deck-keys -->\n\nprose of " + g),
              std::string::npos)
        << g;
  }
  // Generating twice changes nothing.
  EXPECT_EQ(deck_doc_update(out, "deck.md"), out);
}

TEST(DeckDoc, OneRowPerKeyInSchemaOrder) {
  const std::string table = deck_doc_table("optim");
  EXPECT_EQ(table.rfind("| key | type | default | allowed | meaning |\n|---|---|---|---|---|\n", 0), 0u);
  EXPECT_NE(table.find("\n| `betas` | real(2) | `0.9, 0.98` | >= 0.0 and < 1.0 | AdamW beta1, beta2 |\n"),
            std::string::npos);
  EXPECT_LT(table.find("`lr`"), table.find("`grad_accum`"));
  std::size_t rows = 0;
  for (const KeySpec& s : deck_schema()) rows += s.group == "optim";
  std::size_t lines = 0;
  for (char c : table) lines += c == '\n';
  EXPECT_EQ(lines, rows + 2);
  // Every group once, under its heading.
  const std::string all = deck_doc_tables();
  for (const std::string& g : deck_groups())
    EXPECT_NE(all.find("### `&" + g + "`\n\n" + deck_doc_table(g)), std::string::npos) << g;
}

TEST(DeckDoc, BadMarkersAreReportedWithTheirLine) {
  EXPECT_EQ(error_of(marked("") + "<!-- deck-keys modle -->\n<!-- end deck-keys -->\n"),
            "deck.md:" + std::to_string(4 + 7 * static_cast<int>(deck_groups().size())) +
                ": 'modle' is not a deck group");
  EXPECT_EQ(error_of(marked("") + "<!-- deck-keys run -->\n<!-- end deck-keys -->\n"),
            "deck.md:" + std::to_string(4 + 7 * static_cast<int>(deck_groups().size())) +
                ": the keys of &run are placed twice");
  EXPECT_EQ(error_of("x\n<!-- deck-keys run -->\n| row |\n"),
            "deck.md:2: the keys of &run have no '<!-- end deck-keys -->' after them");
  EXPECT_EQ(error_of("prose\n"),
            "deck.md: no place for the keys of &run ('<!-- deck-keys run -->' ... '<!-- end deck-keys -->')");
  // A marker quoted in prose (not at the start of a line) is not a marker.
  EXPECT_EQ(deck_doc_update(marked("") + "see `<!-- deck-keys GROUP -->`\n", "deck.md"),
            deck_doc_update(marked(""), "deck.md") + "see `<!-- deck-keys GROUP -->`\n");
}

}  // namespace
}  // namespace th
