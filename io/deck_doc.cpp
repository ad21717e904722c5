#include "th/io/deck_doc.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>
#include <set>

#include "th/io/deck_schema.hpp"
#include "th/core/error.hpp"

namespace th {
namespace {

const std::string kBegin = "<!-- deck-keys ";
const std::string kEnd = "<!-- end deck-keys -->";

// A '|' inside a cell would end it.
std::string cell(const std::string& text) {
  std::string out;
  for (char c : text) out += c == '|' ? std::string("\\|") : std::string(1, c);
  return out;
}

// The next `marker` at the start of a line, from `from` on (markers quoted in prose do not count).
std::size_t find_marker(const std::string& text, const std::string& marker, std::size_t from) {
  for (std::size_t at = text.find(marker, from); at != std::string::npos; at = text.find(marker, at + 1))
    if (at == 0 || text[at - 1] == '\n') return at;
  return std::string::npos;
}

int line_of(const std::string& text, std::size_t pos) {
  return 1 + static_cast<int>(std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(pos), '\n'));
}

}  // namespace

std::string deck_doc_table(const std::string& group) {
  std::string out = "| key | type | default | allowed | meaning |\n|---|---|---|---|---|\n";
  for (const KeySpec& s : deck_schema())
    if (s.group == group)
      out += "| `" + s.key + "` | " + key_type_name(s) + " | `" + cell(key_default(s)) + "` | " +
             cell(key_allowed(s)) + " | " + cell(s.doc) + " |\n";
  return out;
}

std::string deck_doc_tables() {
  std::string out;
  for (const std::string& group : deck_groups())
    out += (out.empty() ? "" : "\n") + std::string("### `&") + group + "`\n\n" + deck_doc_table(group);
  return out;
}

std::string deck_doc_update(const std::string& markdown, const std::string& source) {
  const auto fail = [&](std::size_t pos, const std::string& what) {
    throw InputError(source + ":" + std::to_string(line_of(markdown, pos)) + ": " + what);
  };
  std::string out;
  std::set<std::string> done;
  std::size_t at = 0;
  for (;;) {
    const std::size_t begin = find_marker(markdown, kBegin, at);
    if (begin == std::string::npos) break;
    const std::size_t name_end = markdown.find(" -->", begin);
    const std::size_t eol = markdown.find('\n', begin);
    if (name_end == std::string::npos || eol == std::string::npos || name_end > eol)
      fail(begin, "expected '" + kBegin + "GROUP -->' on a line of its own");
    const std::string group = markdown.substr(begin + kBegin.size(), name_end - begin - kBegin.size());
    const std::vector<std::string>& groups = deck_groups();
    if (std::find(groups.begin(), groups.end(), group) == groups.end())
      fail(begin, "'" + group + "' is not a deck group");
    if (!done.insert(group).second) fail(begin, "the keys of &" + group + " are placed twice");
    const std::size_t end = find_marker(markdown, kEnd, eol);
    const std::size_t next = find_marker(markdown, kBegin, eol);
    if (end == std::string::npos || (next != std::string::npos && next < end))
      fail(begin, "the keys of &" + group + " have no '" + kEnd + "' after them");
    out += markdown.substr(at, eol + 1 - at) + deck_doc_table(group);
    at = end;
  }
  out += markdown.substr(at);
  for (const std::string& group : deck_groups())
    if (!done.count(group))
      throw InputError(source + ": no place for the keys of &" + group + " ('" + kBegin + group +
                       " -->' ... '" + kEnd + "')");
  return out;
}

std::string deck_doc_update_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(path + ": cannot open: " + std::strerror(errno));
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return deck_doc_update(text, path);
}

}  // namespace th
