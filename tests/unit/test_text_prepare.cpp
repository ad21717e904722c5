// Monolingual text for language models: JSON Lines parsing, documents from text files (blank
// lines, one per file, folders, globs, BOM/CRLF/NBSP, seek points), errors with file:line, the
// cached word encoder against SentencePiece itself, the bytes each piece stands for, and
// task='prepare' from text on one rank against an independent recomputation of the token stream.
#include <gtest/gtest.h>
#include <mpi.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "data/json_line.hpp"
#include "th/config/config.hpp"
#include "th/io/deck.hpp"
#include "th/parallel/mpi_comm.hpp"
#include "th/core/error.hpp"
#include "th/data/batching.hpp"
#include "th/data/corpus.hpp"
#include "th/data/lm_dataset.hpp"
#include "th/data/prepare.hpp"
#include "th/data/split.hpp"
#include "th/data/text_corpus.hpp"
#include "th/data/tokenizer.hpp"

using namespace th;

namespace {
const std::string kFixture = std::string(TH_TEST_DIR) + "/data/genesis_1-4_en_es.tsv";

std::string temp_dir(const std::string& name) {
  const std::string d = "/tmp/th-text-test-" + name + "-" + std::to_string(::getpid());
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d;
}

void write(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::vector<Document> all_documents(const TextSource& s) {
  std::vector<Document> docs;
  auto r = open_documents(s);
  Document d;
  while (r->next(d)) docs.push_back(d);
  return docs;
}

std::string input_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}

// The English side of the Genesis fixture, one verse per entry.
std::vector<std::string> genesis_english() {
  std::vector<std::string> out;
  for (const auto& p : read_tsv(kFixture).pairs) out.push_back(p.src);
  return out;
}

MpiComm& self() {
  static MpiComm comm(MPI_COMM_SELF);
  return comm;
}
}  // namespace

TEST(JsonLine, StringFieldWithEscapesAmongOtherValues) {
  const auto r = json_string_field(
      R"({"id": -1.5e3, "meta": {"tags": ["a", {"b": null}], "ok": true}, "text": "say \"hi\"\\ caf\u00e9 \ud83d\ude00\n", "n": 0})",
      "text");
  ASSERT_EQ(r.status, JsonFieldResult::Status::Ok) << r.message;
  EXPECT_EQ(r.value, "say \"hi\"\\ caf\xC3\xA9 \xF0\x9F\x98\x80\n");
  EXPECT_EQ(json_string_field(R"(  {"text":""}  )", "text").value, "");
}

TEST(JsonLine, EveryKindOfBadLine) {
  using S = JsonFieldResult::Status;
  EXPECT_EQ(json_string_field(R"({"body": "x"})", "text").status, S::Missing);
  EXPECT_EQ(json_string_field(R"({"text": 5})", "text").status, S::NotString);
  EXPECT_EQ(json_string_field(R"(["text"])", "text").status, S::NotObject);
  for (const char* bad : {R"({"text": "abc)", R"({"text": "a"} x)", R"({"text": "a\q"})", R"({"text": "\ud83d"})",
                          R"({"text" "a"})", R"({"text": "a",})", R"({"a": 01})", R"({"a": tru})", "{\"a\": \"\t\"}",
                          R"({"text": "a")", ""}) {
    const auto r = json_string_field(bad, "text");
    EXPECT_EQ(r.status, S::Malformed) << bad;
    EXPECT_NE(r.message.find("column"), std::string::npos) << bad << ": " << r.message;
  }
  EXPECT_EQ(json_string_field(R"({"text": "abc)", "text").message, "unterminated string at column 14");
}

TEST(TextCorpus, BlankLineDocumentsAcrossFilesFoldersAndGlobs) {
  const std::string d = temp_dir("docs");
  // a.txt: BOM, CRLF, a line of blanks and a no-break space (blank), two documents.
  write(d + "/a.txt", "\xEF\xBB\xBFIn the beginning\r\nGod created.\r\n \xC2\xA0\t\r\n\r\nSecond   doc\n");
  write(d + "/b.txt", "\n\nthird\nand last");  // no final newline
  write(d + "/notes.md", "not text\n");
  const TextSource dir = parse_text_source("text:" + d, TextDocuments::BlankLine);
  ASSERT_EQ(dir.files, (std::vector<std::string>{d + "/a.txt", d + "/b.txt"}));
  const auto docs = all_documents(dir);
  ASSERT_EQ(docs.size(), 3u);
  EXPECT_EQ(docs[0].text, "In the beginning God created.");
  EXPECT_EQ(docs[0].where, d + "/a.txt:1");
  EXPECT_EQ(docs[1].text, "Second doc");
  EXPECT_EQ(docs[1].where, d + "/a.txt:5");
  EXPECT_EQ(docs[2].text, "third and last");
  EXPECT_EQ(docs[2].key, docs[2].text);  // the split key of text is the text
  // One document per file; a glob; a single file.
  const auto per_file = all_documents(parse_text_source("text:" + d + "/*.txt", TextDocuments::File));
  ASSERT_EQ(per_file.size(), 2u);
  EXPECT_EQ(per_file[0].text, "In the beginning God created. Second doc");
  EXPECT_EQ(per_file[1].text, "third and last");
  EXPECT_EQ(parse_text_source("text:" + d + "/b.txt", TextDocuments::BlankLine).files.size(), 1u);
  EXPECT_NE(input_error([&] { parse_text_source("text:" + d + "/*.none", TextDocuments::BlankLine); }).find("no file matches"),
            std::string::npos);
  EXPECT_NE(input_error([&] { parse_text_source("text:" + d + "/missing.txt", TextDocuments::BlankLine); })
                .find("no such file"),
            std::string::npos);
  EXPECT_TRUE(is_text_source("bible:engWEB2015eb"));
  EXPECT_FALSE(is_text_source("bible:engWEB2015eb:spaRV1909eb"));
  EXPECT_FALSE(is_text_source("pairs.tsv"));
}

TEST(TextCorpus, SeekPointsResumeAtTheSameDocument) {
  const std::string d = temp_dir("seek");
  std::string a, b;
  for (int i = 0; i < 7; ++i) a += "doc " + std::to_string(i) + " line one\nline two\n\n\n";
  for (int i = 7; i < 12; ++i) b += "\ndoc " + std::to_string(i) + "\n";
  write(d + "/a.txt", a);
  write(d + "/b.txt", b);
  const TextSource s = parse_text_source("text:" + d, TextDocuments::BlankLine);
  std::vector<DocumentPosition> at;
  std::vector<std::string> texts;
  {
    auto r = open_documents(s);
    Document doc;
    for (;;) {
      at.push_back(r->position());
      if (!r->next(doc)) break;
      texts.push_back(doc.text);
    }
  }
  ASSERT_EQ(texts.size(), 12u);
  for (std::size_t i = 0; i < texts.size(); ++i) {
    auto r = open_documents(s);
    r->seek(at[i]);
    Document doc;
    ASSERT_TRUE(r->next(doc));
    EXPECT_EQ(doc.text, texts[i]) << i;
    EXPECT_EQ(r->position().document, static_cast<std::int64_t>(i) + 1);
  }
}

TEST(TextCorpus, BadInputNamesFileAndLine) {
  const std::string d = temp_dir("bad");
  write(d + "/bad.txt", "fine\nalso fine\nbroken \xC3\x28 here\n");
  EXPECT_EQ(input_error([&] { all_documents(parse_text_source("text:" + d + "/bad.txt", TextDocuments::BlankLine)); }),
            d + "/bad.txt:3: invalid UTF-8 at byte 8 of the line");
  write(d + "/x.jsonl", "{\"text\": \"one\"}\n\n{\"text\": \"two\", }\n");
  EXPECT_EQ(input_error([&] { all_documents(parse_text_source("jsonl:" + d + "/x.jsonl:text", TextDocuments::BlankLine)); }),
            d + "/x.jsonl:3: malformed JSON: expected a string at column 17");
  write(d + "/y.jsonl", "{\"text\": \"one\"}\n{\"body\": \"two\"}\n");
  EXPECT_EQ(input_error([&] { all_documents(parse_text_source("jsonl:" + d + "/y.jsonl:text", TextDocuments::BlankLine)); }),
            d + "/y.jsonl:2: the object has no member 'text'");
  write(d + "/z.jsonl", "{\"text\": \"a  b\"}\n\n{\"text\": \"\", \"n\": 1}\n{\"text\": \"c\\nd\"}\n");
  const auto docs = all_documents(parse_text_source("jsonl:" + d + "/z.jsonl:text", TextDocuments::BlankLine));
  ASSERT_EQ(docs.size(), 3u);  // the blank line is no document; the empty text is one (skipped later)
  EXPECT_EQ(docs[0].text, "a b");
  EXPECT_EQ(docs[1].text, "");
  EXPECT_EQ(docs[2].text, "c d");
  EXPECT_EQ(docs[2].where, d + "/z.jsonl:4");
  EXPECT_NE(input_error([&] { parse_text_source("jsonl:" + d + "/z.jsonl", TextDocuments::BlankLine); }).find("FIELD"),
            std::string::npos);
}

TEST(CachedEncoder, SameIdsAsSentencePieceAndBytesAddUp) {
  const std::vector<std::string> verses = genesis_english();
  for (const char* type : {"unigram", "bpe"}) {
    TokenizerOptions opt;
    opt.vocab_size = 300;
    opt.model_type = type;
    const Tokenizer tok(train_sentencepiece(verses, opt), "test");
    CachedEncoder enc(tok, 50);  // a small cache: later new words go uncached
    std::vector<std::string> texts = verses;
    texts.insert(texts.end(), {"Zebra-quagga 1234 x", "caf\xC3\xA9 na\xC3\xAFve \xE2\x80\x9Cquoted\xE2\x80\x9D",
                               "\xE4\xB8\xAD\xE6\x96\x87 \xF0\x9F\x98\x80", "a", "unseen\xC2\xA7symbols ###"});
    const std::vector<float> bytes = tok.piece_bytes();
    for (const std::string& t : texts) {
      std::vector<int> ids;
      enc.encode(t, ids);
      EXPECT_EQ(ids, tok.encode(t)) << type << ": " << t;
    }
    EXPECT_EQ(enc.words_cached(), 50u);
    // A document's ids stand for its bytes plus one (the mark before the first word).
    for (const std::string& v : verses) {
      double sum = 0;
      for (const int id : tok.encode(v)) sum += bytes[static_cast<std::size_t>(id)];
      EXPECT_EQ(sum, static_cast<double>(v.size() + 1)) << type << ": " << v;
    }
    EXPECT_EQ(bytes[SpecialTokens::eos], 0.0f);
    EXPECT_EQ(bytes[SpecialTokens::pad], 0.0f);
  }
}

TEST(TextPrepare, TokenStreamIsEveryDocumentOfItsSplitWithEos) {
  const std::string d = temp_dir("prepare");
  // Documents of five verses, separated by blank lines, in two files.
  const std::vector<std::string> verses = genesis_english();
  std::string a, b;
  std::vector<std::string> docs;
  for (std::size_t i = 0; i < verses.size(); i += 5) {
    std::string doc;
    for (std::size_t k = i; k < std::min(verses.size(), i + 5); ++k) doc += (doc.empty() ? "" : "\n") + verses[k];
    (i < verses.size() / 2 ? a : b) += doc + "\n\n";
    docs.push_back(normalize_whitespace(doc));
  }
  write(d + "/part1.txt", a);
  write(d + "/part2.txt", b);
  const std::string deck = "&run task = 'prepare', output_dir = '" + d + "/out', seed = 5 /\n"
                           "&prepare source = 'text:" + d + "', vocab_size = 250, valid_fraction = 0.2, "
                           "test_fraction = 0.1, spm_sample_sentences = 1000 /\n";
  const Config cfg = make_config(Deck::from_text(deck, "text-prepare"));
  const TextPrepareSummary s = prepare_text_datasets(cfg, self());
  EXPECT_EQ(s.documents, static_cast<std::int64_t>(docs.size()));
  // Recompute independently: the split of each document by its hash, its ids, EOS after it.
  std::ifstream model_in(d + "/out/sentencepiece.model", std::ios::binary);
  const Tokenizer tok(std::string(std::istreambuf_iterator<char>(model_in), {}), "model file");
  std::vector<int> want[3];
  std::int64_t want_docs[3] = {0, 0, 0};
  for (const std::string& doc : docs) {
    const int sp = static_cast<int>(assign_split(doc, 0.2, 0.1));
    const auto ids = tok.encode(doc);
    want[sp].insert(want[sp].end(), ids.begin(), ids.end());
    want[sp].push_back(SpecialTokens::eos);
    ++want_docs[sp];
  }
  for (int sp = 0; sp < 3; ++sp) {
    EXPECT_EQ(s.files[sp], d + "/out/" + split_name(static_cast<Split>(sp)) + ".h5");
    const LmDatasetInfo info = inspect_lm_dataset(s.files[sp]);
    EXPECT_EQ(info.documents, want_docs[sp]);
    EXPECT_EQ(info.tokens, static_cast<std::int64_t>(want[sp].size()));
    EXPECT_EQ(info.split, split_name(static_cast<Split>(sp)));
    LmDatasetReader reader(s.files[sp], self());
    EXPECT_EQ(reader.tokenizer_model().size(), std::filesystem::file_size(d + "/out/sentencepiece.model"));
    const auto got = reader.read_spans({{0, info.tokens}}, true);
    EXPECT_EQ(got[0], want[sp]) << split_name(static_cast<Split>(sp));
    // Overlapping and out-of-order spans come back as asked.
    if (info.tokens > 20) {
      const auto parts = reader.read_spans({{10, 5}, {0, 12}, {11, 0}, {3, 4}}, false);
      EXPECT_EQ(parts[0], std::vector<int>(want[sp].begin() + 10, want[sp].begin() + 15));
      EXPECT_EQ(parts[1], std::vector<int>(want[sp].begin(), want[sp].begin() + 12));
      EXPECT_TRUE(parts[2].empty());
      EXPECT_EQ(parts[3], std::vector<int>(want[sp].begin() + 3, want[sp].begin() + 7));
    }
  }
  EXPECT_GT(want_docs[1], 0);
  EXPECT_GT(want_docs[2], 0);
  // A pair dataset where a text dataset is expected: a clear error.
  const std::string pairs = "&run task = 'prepare', output_dir = '" + d + "/pairs' /\n&prepare source = '" + kFixture +
                            "', vocab_size = 300 /\n";
  prepare_datasets(make_config(Deck::from_text(pairs, "pairs")));
  EXPECT_NE(input_error([&] { inspect_lm_dataset(d + "/pairs/train.h5"); }).find("a dataset of sentence pairs"),
            std::string::npos);
  std::filesystem::remove_all(d);
}
