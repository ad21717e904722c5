#pragma once
// Parallel text for task='prepare': sentence pairs with a stable key, read from a TSV of
// `source<TAB>target` lines or from two SWORD Bible modules (bible.hpp). Text is checked to be
// UTF-8 and its whitespace normalized; bad input stops with th::InputError naming file and line.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace th {

struct SentencePair {
  std::string key;  // stable identity for the split rule: the verse reference, or the pair's text
  std::string src, tgt;
};

struct Corpus {
  std::string source;  // what prepare%source named
  std::vector<SentencePair> pairs;
  std::int64_t records = 0;          // lines (TSV) or verse references (Bible) read
  std::int64_t skipped_empty = 0;    // a side is empty after markup stripping / normalization
  std::int64_t skipped_missing = 0;  // a verse present in only one of the two Bible modules
};

// Collapses every run of whitespace (ASCII space, tab, CR, LF, VT, FF, and U+00A0 no-break
// space) to one ASCII space and trims both ends.
std::string normalize_whitespace(const std::string& s);

// Byte index of the first byte that does not begin a well-formed UTF-8 sequence (overlong forms,
// surrogates and code points above U+10FFFF are ill-formed), or std::string::npos.
std::size_t find_invalid_utf8(const std::string& s);

// A TSV of `source<TAB>target` lines: exactly one TAB per line, UTF-8 (a leading BOM is
// skipped), CRLF accepted. Blank lines and pairs with an empty side are skipped and counted.
// Errors (InputError, "file:line: ..."): no TAB, more than one TAB, invalid UTF-8; an empty file
// or one without any usable pair.
Corpus read_tsv(const std::string& path);

// prepare%source: 'bible:SRC_MODULE:TGT_MODULE' or the path of a TSV file.
Corpus read_corpus(const std::string& source);

}  // namespace th
