#include "json_line.hpp"

#include <cctype>
#include <cstdint>

namespace th {

namespace {
class Parser {
 public:
  explicit Parser(const std::string& s) : s_(s) {}

  // The top-level object; the value of member `field` if it is a string.
  JsonFieldResult top(const std::string& field) {
    JsonFieldResult r;
    skip_ws();
    if (at_end() || s_[i_] != '{') {
      if (!at_end() && (s_[i_] == '[' || s_[i_] == '"' || s_[i_] == '-' || std::isdigit(byte()) || s_[i_] == 't' ||
                        s_[i_] == 'f' || s_[i_] == 'n')) {
        if (!value(0)) return malformed();
        skip_ws();
        if (!at_end()) return malformed("unexpected text after the value");
        r.status = JsonFieldResult::Status::NotObject;
        return r;
      }
      fail("expected '{'");
      return malformed();
    }
    bool found = false, is_string = false;
    const bool ok = members('}', [&] {
      std::string key;
      if (!key_colon(&key)) return false;
      if (key == field && !found) {
        found = true;
        is_string = peek('"');
        return is_string ? string(&r.value) : value(1);
      }
      return value(1);
    });
    if (!ok) return malformed();
    skip_ws();
    if (!at_end()) return malformed("unexpected text after the object");
    if (!found) r.status = JsonFieldResult::Status::Missing;
    else if (!is_string) r.status = JsonFieldResult::Status::NotString;
    return r;
  }

 private:
  bool at_end() const { return i_ >= s_.size(); }
  unsigned char byte() const { return static_cast<unsigned char>(s_[i_]); }
  bool peek(char c) const { return !at_end() && s_[i_] == c; }
  void skip_ws() {
    while (!at_end() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\r' || s_[i_] == '\n')) ++i_;
  }
  bool fail(const std::string& what) {
    if (error_.empty()) error_ = what + " at column " + std::to_string(i_ + 1);
    return false;
  }
  JsonFieldResult malformed(const std::string& what = "") {
    if (!what.empty()) fail(what);
    JsonFieldResult r;
    r.status = JsonFieldResult::Status::Malformed;
    r.message = error_.empty() ? "malformed JSON" : error_;
    return r;
  }
  bool expect(char c) {
    if (peek(c)) {
      ++i_;
      return true;
    }
    return fail(std::string("expected '") + c + "'" + (at_end() ? " (the line ends)" : ""));
  }

  bool value(int depth) {
    if (depth > 512) return fail("nesting deeper than 512");
    if (at_end()) return fail("expected a value (the line ends)");
    switch (s_[i_]) {
      case '"': return string(nullptr);
      case '{': return object(depth);
      case '[': return array(depth);
      case 't': return literal("true");
      case 'f': return literal("false");
      case 'n': return literal("null");
      default: return number();
    }
  }
  bool literal(const char* word) {
    const std::string w(word);
    if (s_.compare(i_, w.size(), w) != 0) return fail("expected '" + w + "'");
    i_ += w.size();
    return true;
  }
  // The members of an object or the elements of an array, from the opening bracket at i_ to
  // `close`; member() reads one member or element.
  template <typename Member> bool members(char close, Member member) {
    ++i_;
    skip_ws();
    if (peek(close)) {
      ++i_;
      return true;
    }
    for (;;) {
      skip_ws();
      if (!member()) return false;
      skip_ws();
      if (!peek(',')) return expect(close);
      ++i_;
    }
  }
  bool key_colon(std::string* key) {  // "key" : (the value follows)
    if (!string(key)) return false;
    skip_ws();
    if (!expect(':')) return false;
    skip_ws();
    return true;
  }
  bool object(int depth) {
    return members('}', [&] { return key_colon(nullptr) && value(depth + 1); });
  }
  bool array(int depth) {
    return members(']', [&] { return value(depth + 1); });
  }
  bool digits() {
    const std::size_t start = i_;
    while (!at_end() && std::isdigit(byte())) ++i_;
    return i_ > start;
  }
  bool number() {
    if (peek('-')) ++i_;
    if (peek('0')) {
      ++i_;
    } else if (!digits()) {
      return fail("expected a value");
    }
    if (peek('.')) {
      ++i_;
      if (!digits()) return fail("expected digits after '.'");
    }
    if (peek('e') || peek('E')) {
      ++i_;
      if (peek('+') || peek('-')) ++i_;
      if (!digits()) return fail("expected an exponent");
    }
    return true;
  }
  static void append_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
      out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
  bool hex4(std::uint32_t& v) {
    v = 0;
    for (int k = 0; k < 4; ++k, ++i_) {
      if (at_end()) return fail("\\u escape cut short");
      const char c = s_[i_];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= static_cast<std::uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f') v |= static_cast<std::uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= static_cast<std::uint32_t>(c - 'A' + 10);
      else return fail("bad hex digit in a \\u escape");
    }
    return true;
  }
  // A string; its unescaped text into *out when out is not null.
  bool string(std::string* out) {
    if (!peek('"')) return fail("expected a string");
    ++i_;
    for (;;) {
      if (at_end()) return fail("unterminated string");
      const unsigned char c = byte();
      if (c == '"') {
        ++i_;
        return true;
      }
      if (c < 0x20) return fail("control character in a string");
      if (c != '\\') {
        if (out) out->push_back(static_cast<char>(c));
        ++i_;
        continue;
      }
      ++i_;
      if (at_end()) return fail("unterminated escape");
      const char e = s_[i_++];
      char plain = 0;
      switch (e) {
        case '"': plain = '"'; break;
        case '\\': plain = '\\'; break;
        case '/': plain = '/'; break;
        case 'b': plain = '\b'; break;
        case 'f': plain = '\f'; break;
        case 'n': plain = '\n'; break;
        case 'r': plain = '\r'; break;
        case 't': plain = '\t'; break;
        case 'u': {
          std::uint32_t cp = 0;
          if (!hex4(cp)) return false;
          if (cp >= 0xD800 && cp <= 0xDBFF) {  // high surrogate: a low one must follow
            std::uint32_t lo = 0;
            if (s_.compare(i_, 2, "\\u") != 0) return fail("lone high surrogate in a \\u escape");
            i_ += 2;
            if (!hex4(lo)) return false;
            if (lo < 0xDC00 || lo > 0xDFFF) return fail("high surrogate without a low one");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return fail("lone low surrogate in a \\u escape");
          }
          if (out) append_utf8(*out, cp);
          continue;
        }
        default:
          --i_;
          return fail(std::string("bad escape '\\") + e + "'");
      }
      if (out) out->push_back(plain);
    }
  }

  const std::string& s_;
  std::size_t i_ = 0;
  std::string error_;
};
}  // namespace

JsonFieldResult json_string_field(const std::string& line, const std::string& field) {
  return Parser(line).top(field);
}

}  // namespace th
