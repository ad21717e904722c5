#include "th/data/bible.hpp"

#include <sys/wait.h>

#include <cctype>
#include <cstdio>
#include <unordered_map>

#include "th/core/error.hpp"

namespace th {

const char* const kWholeBible = "Genesis 1:1-Revelation 22:21";

namespace {
// Elements whose content is not verse text: headings, notes, speaker labels of the Song.
const char* const kDropWithContent[] = {"title", "note", "speaker"};
// Structural elements: a boundary between words, so they become a space.
const char* const kStructural[] = {"l", "lg", "lb", "div", "p", "milestone", "chapter", "verse", "item",
                                   "list", "br", "head", "table", "row", "cell"};

std::string tag_name(const std::string& tag) {  // tag = "<...>"
  std::size_t i = 1;
  if (i < tag.size() && tag[i] == '/') ++i;
  std::size_t j = i;
  while (j < tag.size() && (std::isalnum(static_cast<unsigned char>(tag[j])) || tag[j] == ':')) ++j;
  return tag.substr(i, j - i);
}
bool is_closing(const std::string& tag) { return tag.size() > 1 && tag[1] == '/'; }
bool is_empty_element(const std::string& tag) { return tag.size() > 2 && tag[tag.size() - 2] == '/'; }
bool ends_book(const std::string& tag) {
  return tag_name(tag) == "div" && tag.find("eID=") != std::string::npos && tag.find("type=\"book\"") != std::string::npos;
}
template <std::size_t N>
bool one_of(const std::string& name, const char* const (&names)[N]) {
  for (const char* n : names)
    if (name == n) return true;
  return false;
}

bool valid_module_name(const std::string& m) {
  if (m.empty()) return false;
  for (char c : m)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  return true;
}
bool valid_range(const std::string& r) {
  for (char c : r)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != ' ' && c != ':' && c != '-' && c != ';' && c != ',')
      return false;
  return !r.empty();
}
}  // namespace

std::string strip_osis_markup(const std::string& osis) {
  std::string out;
  out.reserve(osis.size());
  int dropping = 0;          // depth inside elements whose content is dropped
  bool word_closed = false;  // an inline element closed and no text followed yet
  std::size_t i = 0;
  while (i < osis.size()) {
    if (osis[i] != '<') {
      if (dropping == 0) {
        out.push_back(osis[i]);
        word_closed = false;
      }
      ++i;
      continue;
    }
    const std::size_t end = osis.find('>', i);
    if (end == std::string::npos) break;  // a cut-off tag at the end of the text
    const std::string tag = osis.substr(i, end - i + 1);
    i = end + 1;
    if (ends_book(tag)) break;
    const std::string name = tag_name(tag);
    if (one_of(name, kDropWithContent)) {
      if (is_empty_element(tag)) continue;
      dropping += is_closing(tag) ? (dropping > 0 ? -1 : 0) : 1;
      continue;
    }
    if (dropping > 0) continue;
    if (one_of(name, kStructural)) {
      out.push_back(' ');
    } else if (is_closing(tag)) {
      word_closed = true;
    } else if ((name == "w" || name == "transChange") && word_closed) {
      // <w>God</w><w>created</w>, <w>allí</w><transChange>también</transChange>,
      // born</q><q><w>Son</w>: a word element right after a closed element starts a new word
      out.push_back(' ');
      word_closed = false;
    }
  }
  return normalize_whitespace(out);
}

bool parse_diatheke_line(const std::string& line, Verse& out) {
  // "Book C:V: text" where Book is words of [0-9A-Za-z()] ending in a letter or ')'. Parsed by
  // hand: std::regex recurses per character and verses reach thousands of characters.
  const std::string plain = strip_osis_markup(line);
  auto digits_end = [&](std::size_t i) {
    while (i < plain.size() && std::isdigit(static_cast<unsigned char>(plain[i]))) ++i;
    return i;
  };
  for (std::size_t b = plain.find(' '); b != std::string::npos && b > 0; b = plain.find(' ', b + 1)) {
    const char last = plain[b - 1];
    if (!std::isalpha(static_cast<unsigned char>(last)) && last != ')') continue;
    const std::size_t c_end = digits_end(b + 1);
    if (c_end == b + 1 || c_end >= plain.size() || plain[c_end] != ':') continue;
    const std::size_t v_end = digits_end(c_end + 1);
    if (v_end == c_end + 1 || v_end >= plain.size() || plain[v_end] != ':') continue;
    if (v_end + 1 < plain.size() && plain[v_end + 1] != ' ') continue;
    for (std::size_t k = 0; k < b; ++k) {
      const char ch = plain[k];
      if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != ' ' && ch != '(' && ch != ')') return false;
    }
    out.ref = plain.substr(0, v_end);
    out.text = v_end + 2 <= plain.size() ? plain.substr(v_end + 2) : std::string();
    return true;
  }
  return false;
}

std::vector<Verse> read_bible_module(const std::string& module, const std::string& range) {
  if (!valid_module_name(module))
    throw InputError("prepare%source: '" + module + "' is not a SWORD module name (letters, digits, '_')");
  if (!valid_range(range)) throw InputError("Bible range '" + range + "' has characters a verse key cannot have");
  const std::string cmd = "diatheke -b " + module + " -f internal -k '" + range + "' 2>/dev/null";
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) throw InputError("cannot run diatheke (Debian package diatheke): " + cmd);
  std::string output;  // read all, close, then parse: no pipe left open by a parse error
  char buf[1 << 16];
  std::size_t got = 0;
  while ((got = std::fread(buf, 1, sizeof buf, pipe)) > 0) output.append(buf, got);
  const int status = pclose(pipe);
  if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) == 127)
    throw InputError("prepare%source: diatheke did not run (Debian package diatheke; tests/setup-deps.sh installs it)");
  std::vector<Verse> verses;
  std::size_t pos = 0;
  while (pos < output.size()) {
    std::size_t nl = output.find('\n', pos);
    if (nl == std::string::npos) nl = output.size();
    const std::string line = output.substr(pos, nl - pos);
    pos = nl + 1;
    Verse v;
    if (parse_diatheke_line(line, v)) {
      const std::size_t bad = find_invalid_utf8(v.text);
      if (bad != std::string::npos)
        throw InputError("SWORD module '" + module + "', " + v.ref + ": invalid UTF-8 at byte " + std::to_string(bad + 1));
      verses.push_back(std::move(v));
    } else {
      // An entry continued on another line (not seen in the Debian modules, but allowed by the
      // format); the "(MODULE)" trailer and blank lines are not verse text.
      const std::string rest = strip_osis_markup(line);
      if (!verses.empty() && !rest.empty() && rest != "(" + module + ")")
        verses.back().text = normalize_whitespace(verses.back().text + " " + rest);
    }
  }
  if (verses.empty())
    throw InputError("prepare%source: SWORD module '" + module + "' gave no verse for '" + range +
                     "': is it installed? (Debian: sword-text-web has engWEB2015eb, sword-text-sparv has spaRV1909eb; "
                     "`diatheke -b system -k modulelist` lists the installed ones)");
  return verses;
}

Corpus read_bible(const std::string& src_module, const std::string& tgt_module, const std::string& range) {
  const std::vector<Verse> src = read_bible_module(src_module, range);
  const std::vector<Verse> tgt = read_bible_module(tgt_module, range);
  std::unordered_map<std::string, const Verse*> by_ref;
  for (const Verse& v : tgt) by_ref.emplace(v.ref, &v);
  Corpus c;
  c.source = "bible:" + src_module + ":" + tgt_module;
  std::unordered_map<std::string, bool> seen;
  for (const Verse& v : src) {
    ++c.records;
    seen[v.ref] = true;
    const auto it = by_ref.find(v.ref);
    if (it == by_ref.end()) {
      ++c.skipped_missing;
    } else if (v.text.empty() || it->second->text.empty()) {
      ++c.skipped_empty;
    } else {
      c.pairs.push_back({v.ref, v.text, it->second->text});
    }
  }
  for (const Verse& v : tgt)  // verses only the target module has
    if (!seen.count(v.ref)) {
      ++c.records;
      ++c.skipped_missing;
    }
  if (c.pairs.empty())
    throw InputError("prepare%source = 'bible:" + src_module + ":" + tgt_module + "': the modules share no non-empty verse");
  return c;
}

}  // namespace th
