#include "th/data/corpus.hpp"

#include <cerrno>
#include <cstring>
#include <fstream>

#include "th/core/error.hpp"
#include "th/data/bible.hpp"

namespace th {

namespace {
bool ascii_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'; }
}  // namespace

std::string normalize_whitespace(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  bool space = false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    const bool nbsp = c == 0xC2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) == 0xA0;
    if (ascii_space(c) || nbsp) {
      space = true;
      if (nbsp) ++i;
      continue;
    }
    if (space && !out.empty()) out.push_back(' ');
    space = false;
    out.push_back(static_cast<char>(c));
  }
  return out;
}

std::size_t find_invalid_utf8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len = 0;
    unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte (RFC 3629, table 3-7)
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      if (c == 0xE0) lo = 0xA0;  // no overlong forms
      if (c == 0xED) hi = 0x9F;  // no surrogates
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      if (c == 0xF0) lo = 0x90;
      if (c == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
    } else {
      return i;
    }
    if (i + static_cast<std::size_t>(len) > n || p[i + 1] < lo || p[i + 1] > hi) return i;
    for (int k = 2; k < len; ++k)
      if (p[i + k] < 0x80 || p[i + k] > 0xBF) return i;
    i += static_cast<std::size_t>(len);
  }
  return std::string::npos;
}

Corpus read_tsv(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open the TSV file: " + std::strerror(errno));
  Corpus c;
  c.source = path;
  std::string line;
  std::int64_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (lineno == 1 && line.compare(0, 3, "\xEF\xBB\xBF") == 0) line.erase(0, 3);  // UTF-8 BOM
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const std::string where = path + ":" + std::to_string(lineno) + ": ";
    const std::size_t bad = find_invalid_utf8(line);
    if (bad != std::string::npos)
      throw InputError(where + "invalid UTF-8 at byte " + std::to_string(bad + 1) + " of the line");
    // Valid UTF-8, but no text: a binary file, or UTF-16 (every other byte 0).
    const std::size_t nul = line.find('\0');
    if (nul != std::string::npos)
      throw InputError(where + "a NUL byte at byte " + std::to_string(nul + 1) +
                       " of the line (a binary file, or UTF-16 text?); expected UTF-8 text 'source<TAB>target'");
    ++c.records;
    if (normalize_whitespace(line).empty()) {
      ++c.skipped_empty;
      continue;
    }
    const std::size_t tab = line.find('\t');
    if (tab == std::string::npos)
      throw InputError(where + "no TAB in the line: expected 'source<TAB>target'");
    if (line.find('\t', tab + 1) != std::string::npos)
      throw InputError(where + "more than one TAB in the line: expected 'source<TAB>target'");
    SentencePair p;
    p.src = normalize_whitespace(line.substr(0, tab));
    p.tgt = normalize_whitespace(line.substr(tab + 1));
    if (p.src.empty() || p.tgt.empty()) {
      ++c.skipped_empty;
      continue;
    }
    p.key = p.src + '\t' + p.tgt;  // the text is the identity: duplicates share a split
    c.pairs.push_back(std::move(p));
  }
  if (in.bad()) throw InputError(path + ": read error after line " + std::to_string(lineno));
  if (lineno == 0) throw InputError(path + ": empty file: expected lines of 'source<TAB>target'");
  if (c.pairs.empty())
    throw InputError(path + ": no usable pair in " + std::to_string(lineno) + " lines (every line is blank or has "
                     "an empty side)");
  return c;
}

Corpus read_corpus(const std::string& source) {
  if (source.rfind("bible:", 0) == 0) {
    const std::size_t colon = source.find(':', 6);
    if (colon == std::string::npos || colon == 6 || colon + 1 == source.size() ||
        source.find(':', colon + 1) != std::string::npos)
      throw InputError("prepare%source = '" + source + "': expected 'bible:SRC_MODULE:TGT_MODULE', e.g. "
                       "'bible:engWEB2015eb:spaRV1909eb'");
    Corpus c = read_bible(source.substr(6, colon - 6), source.substr(colon + 1));
    c.source = source;
    return c;
  }
  return read_tsv(source);
}

}  // namespace th
