#include "th/io/namelist.hpp"

#include <cctype>
#include <charconv>
#include <map>
#include <system_error>

#include "th/core/error.hpp"

namespace th {
namespace {

bool is_name_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; }
bool is_name_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_'; }
bool is_blank(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_quote(char c) { return c == '\'' || c == '"'; }

// Characters that end an unquoted value: separators, the group terminators, a comment, a quote.
bool ends_word(char c) {
  return is_blank(c) || c == '\n' || c == ',' || c == '/' || c == '!' || c == '=' || c == '&' ||
         is_quote(c);
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// Deck text quoted inside a message: one short printable line, whatever the deck contains.
std::string snippet(const std::string& s) {
  constexpr std::size_t kMax = 40;
  std::string out;
  for (char c : s.substr(0, kMax)) out += std::isprint(static_cast<unsigned char>(c)) ? c : '?';
  if (s.size() > kMax) out += "...";
  return out;
}

bool all_digits(const std::string& s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!is_digit(c)) return false;
  return true;
}

// Fortran real literal without sign, lower-cased: mantissa with at least one digit, then an
// optional exponent (e or d); a '.' or an exponent must be present (else it is an integer).
bool is_real_literal(const std::string& s) {
  std::size_t i = 0, digits = 0;
  bool dot = false;
  while (i < s.size() && is_digit(s[i])) ++i, ++digits;
  if (i < s.size() && s[i] == '.') {
    dot = true;
    ++i;
    while (i < s.size() && is_digit(s[i])) ++i, ++digits;
  }
  if (digits == 0) return false;
  if (i == s.size()) return dot;
  if (s[i] != 'e' && s[i] != 'd') return false;
  ++i;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
  return all_digits(s.substr(i));
}

// A key as someone may have typed it: name characters plus any non-ASCII byte (a letter with an
// accent, a typographic quote), so that "d_fé = 1" is read as a bad key name, not as a value of
// the key before it.
bool is_wide_name_char(char c) { return is_name_char(c) || static_cast<unsigned char>(c) >= 0x80; }
bool is_non_ascii(char c) { return static_cast<unsigned char>(c) >= 0x80; }

// A key name in a message: as typed (UTF-8 passes through), control characters as '?'.
std::string shown_name(const std::string& s) {
  std::string out;
  for (char c : s.substr(0, 40)) out += is_non_ascii(c) || std::isprint(static_cast<unsigned char>(c)) ? c : '?';
  return out;
}

bool is_name(const std::string& s) {
  if (s.empty() || !is_name_start(s[0])) return false;
  for (char c : s)
    if (!is_name_char(c)) return false;
  return true;
}

class Parser {
 public:
  // `numbered`: the source has lines worth naming (a file) or not (a --set override).
  Parser(const std::string& text, const std::string& source, bool numbered)
      : text_(text), source_(source), numbered_(numbered) {}

  std::vector<NamelistGroup> deck();
  std::vector<NamelistValue> values_only(const std::string& group, const std::string& key);

 private:
  [[noreturn]] void fail(int line, const std::string& what) const {
    throw InputError(namelist_location(source_, numbered_ ? line : 0) + ": " + what);
  }
  bool at_end() const { return pos_ >= text_.size(); }
  char peek() const { return text_[pos_]; }

  void skip_space();
  std::string read_name();
  std::string read_word();
  std::string token_here() const;
  std::string rest_of_line() const;
  int last_line() const;
  bool next_is_assignment();
  std::size_t wide_name_end() const;
  [[noreturn]] void fail_non_ascii_key(int line, const std::string& group, std::size_t end) const;
  void group_body(NamelistGroup& group);
  std::vector<NamelistValue> value_list(const std::string& where, int key_line);
  std::string read_string(const std::string& where);
  void append_word(const std::string& word, int line, const std::string& where,
                   std::vector<NamelistValue>& values);
  NamelistValue scalar(const std::string& word, int line, const std::string& where) const;

  const std::string& text_;
  std::string source_;
  bool numbered_;
  std::size_t pos_ = 0;
  int line_ = 1;
};

void Parser::skip_space() {
  while (!at_end()) {
    const char c = peek();
    if (c == '\n') {
      ++line_;
      ++pos_;
    } else if (is_blank(c)) {
      ++pos_;
    } else if (c == '!') {
      while (!at_end() && peek() != '\n') ++pos_;
    } else {
      return;
    }
  }
}

std::string Parser::read_name() {
  const std::size_t start = pos_;
  if (!at_end() && is_name_start(peek()))
    while (!at_end() && is_name_char(peek())) ++pos_;
  return text_.substr(start, pos_ - start);
}

std::string Parser::read_word() {
  const std::size_t start = pos_;
  while (!at_end() && !ends_word(peek())) ++pos_;
  return text_.substr(start, pos_ - start);
}

// What the reader is looking at, for "got '...'" in a message; does not consume it.
std::string Parser::token_here() const {
  if (at_end()) return "end of file";
  std::size_t end = pos_;
  while (end < text_.size() && !ends_word(text_[end])) ++end;
  return snippet(end == pos_ ? text_.substr(pos_, 1) : text_.substr(pos_, end - pos_));
}

std::string Parser::rest_of_line() const {
  std::size_t end = pos_;
  while (end < text_.size() && text_[end] != '\n' && text_[end] != '!') ++end;
  while (end > pos_ && is_blank(text_[end - 1])) --end;
  return text_.substr(pos_, end - pos_);
}

// The line a reader stands on at end of input: the last line that has any character.
int Parser::last_line() const {
  int lines = 1;
  for (std::size_t i = 0; i + 1 < text_.size(); ++i)
    if (text_[i] == '\n') ++lines;
  return lines;
}

// A bare name followed by '=' starts the next key; otherwise it is a value such as T or F. A name
// with non-ASCII characters followed by '=' is a (bad) key too.
bool Parser::next_is_assignment() {
  const std::size_t pos = pos_;
  const int line = line_;
  pos_ = wide_name_end();
  skip_space();
  const bool assignment = !at_end() && peek() == '=';
  pos_ = pos;
  line_ = line;
  return assignment;
}

// Where a key name read with is_wide_name_char from here ends.
std::size_t Parser::wide_name_end() const {
  std::size_t end = pos_;
  while (end < text_.size() && is_wide_name_char(text_[end])) ++end;
  return end;
}

void Parser::fail_non_ascii_key(int line, const std::string& group, std::size_t end) const {
  const std::string key = text_.substr(pos_, end - pos_);
  std::size_t at = 0;
  while (at < key.size() && !is_non_ascii(key[at])) ++at;
  fail(line, "&" + group + ": key name '" + shown_name(key) + "' has a non-ASCII character (" +
                 (at == 0 ? std::string("its first") : "after '" + shown_name(key.substr(0, at)) + "'") +
                 "); key names are ASCII letters, digits and '_'");
}

std::vector<NamelistGroup> Parser::deck() {
  if (text_.compare(0, 3, "\xEF\xBB\xBF") == 0) pos_ = 3;  // UTF-8 byte-order mark
  std::vector<NamelistGroup> groups;
  std::map<std::string, int> first_line;  // group%key -> line where it was set
  for (;;) {
    skip_space();
    if (at_end()) break;
    const char c = peek();
    if (c == '/') fail(line_, "'/' outside a group (a group starts with '&name')");
    if (c != '&')
      fail(line_, "text outside a group: '" + snippet(rest_of_line()) +
                      "' (a group starts with '&name' and ends with '/')");
    NamelistGroup group;
    group.line = line_;
    group.source = source_;
    ++pos_;
    group.name = lower(read_name());
    if (group.name.empty()) fail(group.line, "'&' must be followed by a group name");
    if (group.name == "end") fail(group.line, "'&end' outside a group");
    group_body(group);
    for (const NamelistItem& item : group.items) {
      const std::string name = item.group + "%" + item.key;
      const auto seen = first_line.find(name);
      if (seen != first_line.end())
        fail(item.line, "'" + name + "' is set twice (lines " + std::to_string(seen->second) +
                            " and " + std::to_string(item.line) + ")");
      first_line[name] = item.line;
    }
    groups.push_back(std::move(group));
  }
  return groups;
}

void Parser::group_body(NamelistGroup& group) {
  const std::string unclosed = "&" + group.name +
                               ": missing '/' to close the group (opened at line " +
                               std::to_string(group.line) + ")";
  for (;;) {
    skip_space();
    if (at_end()) fail(last_line(), unclosed);
    const char c = peek();
    if (c == '/') {
      ++pos_;
      return;
    }
    if (c == ',') {  // a separator after the last value of the previous key
      ++pos_;
      continue;
    }
    if (c == '&') {
      const int line = line_;
      ++pos_;
      if (lower(read_name()) == "end") return;
      fail(line, unclosed);
    }
    if (!is_name_start(c) && !is_non_ascii(c))
      fail(line_, "&" + group.name + ": expected a key name or '/', got '" + token_here() + "'");
    const std::size_t wide_end = wide_name_end();
    for (std::size_t i = pos_; i < wide_end; ++i)
      if (is_non_ascii(text_[i])) fail_non_ascii_key(line_, group.name, wide_end);
    NamelistItem item;
    item.group = group.name;
    item.source = source_;
    item.line = line_;
    item.key = lower(read_name());
    const std::string where = "'" + group.name + "%" + item.key + "'";
    skip_space();
    if (at_end() || peek() != '=') {
      if (!at_end() && peek() == '(')
        fail(item.line, "expected '=' after " + where +
                            " (elements cannot be set one by one; give the whole list)");
      fail(item.line, "expected '=' after " + where);
    }
    ++pos_;
    item.values = value_list(where, item.line);
    group.items.push_back(std::move(item));
  }
}

std::vector<NamelistValue> Parser::value_list(const std::string& where, int key_line) {
  std::vector<NamelistValue> values;
  bool after_comma = false;
  for (;;) {
    skip_space();
    if (at_end()) break;
    const char c = peek();
    if (c == '/' || c == '&') break;
    if (c == ',') {
      if (values.empty()) fail(key_line, where + " has no value");
      // Fortran reads ',,' as a null value (keep the old one); a deck says every value outright.
      if (after_comma) fail(line_, "empty value in the list of " + where + " (',,')");
      after_comma = true;
      ++pos_;
      continue;
    }
    if (c == '=') fail(line_, "unexpected '=' among the values of " + where);
    if ((is_name_start(c) || is_non_ascii(c)) && next_is_assignment()) break;
    const int line = line_;
    if (is_quote(c))
      values.emplace_back(read_string(where));
    else
      append_word(read_word(), line, where, values);
    after_comma = false;
  }
  if (values.empty()) fail(key_line, where + " has no value");
  return values;
}

std::string Parser::read_string(const std::string& where) {
  const char quote = peek();
  const int line = line_;
  ++pos_;
  std::string s;
  for (;;) {
    if (at_end() || peek() == '\n') fail(line, "unterminated string for key " + where);
    const char c = text_[pos_++];
    if (c == quote) {
      if (at_end() || peek() != quote) return s;
      ++pos_;  // a doubled quote stands for itself
    }
    s += c;
  }
}

// One unquoted value, possibly `n*value`; a repeated string continues at the quote that follows.
void Parser::append_word(const std::string& word, int line, const std::string& where,
                         std::vector<NamelistValue>& values) {
  const std::size_t star = word.find('*');
  if (star == std::string::npos) {
    values.push_back(scalar(word, line, where));
    return;
  }
  const std::string count_text = word.substr(0, star);
  constexpr long long kMaxRepeat = 1000000;  // decks hold small arrays; this guards memory only
  long long count = 0;
  const auto [end, ec] =
      std::from_chars(count_text.data(), count_text.data() + count_text.size(), count);
  if (!all_digits(count_text) || ec != std::errc() ||
      end != count_text.data() + count_text.size() || count < 1 || count > kMaxRepeat)
    fail(line, "bad repeat count in '" + snippet(word) + "' for " + where +
                   " (write n*value with n from 1 to " + std::to_string(kMaxRepeat) + ")");
  const std::string rest = word.substr(star + 1);
  NamelistValue value;
  if (!rest.empty())
    value = scalar(rest, line, where);
  else if (!at_end() && is_quote(peek()))
    value = read_string(where);
  else
    fail(line, "'" + snippet(word) + "' repeats nothing in the values of " + where +
                   " (null values are not supported)");
  values.insert(values.end(), static_cast<std::size_t>(count), value);
}

NamelistValue Parser::scalar(const std::string& word, int line, const std::string& where) const {
  const std::string w = lower(word);
  if (w == ".true." || w == ".t." || w == "t" || w == "true") return true;
  if (w == ".false." || w == ".f." || w == "f" || w == "false") return false;
  const bool negative = !w.empty() && w[0] == '-';
  const std::size_t sign = (!w.empty() && (w[0] == '+' || w[0] == '-')) ? 1 : 0;
  const std::string body = w.substr(sign);
  if (all_digits(body)) {
    const std::string digits = (negative ? "-" : "") + body;
    long long v = 0;
    const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
    if (ec != std::errc() || end != digits.data() + digits.size())
      fail(line, where + " = " + snippet(word) + " does not fit in a 64-bit integer");
    return v;
  }
  if (is_real_literal(body)) {
    std::string number = (negative ? "-" : "") + body;
    for (char& c : number)
      if (c == 'd') c = 'e';  // Fortran double-precision exponent
    double v = 0;
    const auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), v);
    if (ec != std::errc() || end != number.data() + number.size())
      fail(line, where + " = " + snippet(word) + " is out of the range of a double");
    return v;
  }
  const std::string magnitude = w.substr(sign);
  if (magnitude == "nan" || magnitude.compare(0, 4, "nan(") == 0 || magnitude == "inf" || magnitude == "infinity")
    fail(line, where + " = " + snippet(word) + " is not a finite number (deck values are finite)");
  if (is_name(word))
    fail(line, "cannot read '" + snippet(word) + "' as a value of " + where +
                   " (a string needs quotes: '" + snippet(word) + "')");
  fail(line, "cannot read '" + snippet(word) + "' as a value of " + where);
}

std::vector<NamelistValue> Parser::values_only(const std::string& group, const std::string& key) {
  const std::string where = "'" + group + "%" + key + "'";
  std::vector<NamelistValue> values = value_list(where, 0);
  skip_space();
  if (!at_end()) fail(line_, "unexpected '" + token_here() + "' after the value of " + where);
  return values;
}

}  // namespace

std::vector<NamelistGroup> parse_namelist(const std::string& text, const std::string& source) {
  return Parser(text, source, true).deck();
}

std::vector<NamelistItem> namelist_items(const std::vector<NamelistGroup>& groups) {
  std::vector<NamelistItem> items;
  for (const NamelistGroup& g : groups) items.insert(items.end(), g.items.begin(), g.items.end());
  return items;
}

std::vector<NamelistValue> parse_namelist_values(const std::string& text, const std::string& source,
                                                 const std::string& group, const std::string& key) {
  return Parser(text, source, false).values_only(group, key);
}

std::string format_namelist_value(const NamelistValue& value) {
  if (const auto* i = std::get_if<long long>(&value)) return std::to_string(*i);
  if (const auto* b = std::get_if<bool>(&value)) return *b ? ".true." : ".false.";
  if (const auto* d = std::get_if<double>(&value)) {
    char buf[64];
    const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, *d);
    std::string s = ec == std::errc() ? std::string(buf, end) : std::string("nan");
    const std::size_t e = s.find('e');
    if (e != std::string::npos) {  // "7e-04" -> "7e-4": the exponent as a person writes it
      const bool negative = s[e + 1] == '-';
      const std::size_t digits = s.find_first_not_of("+-0", e + 1);
      s = s.substr(0, e + 1) + (negative ? "-" : "") +
          (digits == std::string::npos ? "0" : s.substr(digits));
    }
    if (s.find_first_of(".eni") == std::string::npos) s += ".0";  // keep it a real when read back
    return s;
  }
  std::string out = "'";
  for (char c : std::get<std::string>(value)) {
    out += c;
    if (c == '\'') out += c;
  }
  return out + "'";
}

std::string namelist_location(const std::string& source, int line) {
  return line > 0 ? source + ":" + std::to_string(line) : source;
}

}  // namespace th
