#include "th/io/deck.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>

#include "deck_suggest.hpp"
#include "th/core/error.hpp"

namespace th {
namespace {

[[noreturn]] void input_error(const std::string& where, const std::string& what) {
  throw InputError(where + ": " + what);
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string trim(const std::string& s) {
  const std::size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

// Messages are one line whatever a command line or a file name holds.
std::string one_line(std::string s) {
  for (char& c : s)
    if (std::iscntrl(static_cast<unsigned char>(c))) c = '?';
  return s;
}

std::string join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string out;
  for (const std::string& p : parts) out += (out.empty() ? "" : sep) + p;
  return out;
}

std::string format_values(const std::vector<NamelistValue>& values) {
  std::vector<std::string> parts;
  for (const NamelistValue& v : values) parts.push_back(format_namelist_value(v));
  return join(parts, ", ");
}

std::string type_word(KeyType t) {
  switch (t) {
    case KeyType::Int:
      return "integer";
    case KeyType::Real:
      return "real";
    case KeyType::Bool:
      return "logical";
    case KeyType::String:
      return "string";
  }
  return "";
}

std::string one_of_type(KeyType t) { return (t == KeyType::Int ? "an " : "a ") + type_word(t); }
std::string many_of_type(KeyType t) { return type_word(t) + "s"; }

bool has_type(const NamelistValue& v, KeyType t) {
  switch (t) {
    case KeyType::Int:
      return std::holds_alternative<long long>(v);
    case KeyType::Real:
      return std::holds_alternative<double>(v);
    case KeyType::Bool:
      return std::holds_alternative<bool>(v);
    case KeyType::String:
      return std::holds_alternative<std::string>(v);
  }
  return false;
}

bool inside(double x, const Bound& lo, const Bound& hi) {
  if (lo.set && (lo.open ? !(x > lo.value) : !(x >= lo.value))) return false;
  if (hi.set && (hi.open ? !(x < hi.value) : !(x <= hi.value))) return false;
  return true;
}

void check_group(const std::string& group, const std::string& where) {
  const std::vector<std::string>& groups = deck_groups();
  if (std::find(groups.begin(), groups.end(), group) != groups.end()) return;
  const std::string hint = closest_name(group, groups);
  input_error(where, "unknown group '&" + group + "' " +
                         (hint.empty() ? "(groups: " + join(groups, ", ") + ")"
                                       : "(did you mean '&" + hint + "'?)"));
}

int check_key(const std::string& group, const std::string& key, const std::string& where) {
  const int index = deck_key_index(group, key);
  if (index >= 0) return index;
  std::vector<std::string> keys, elsewhere;
  for (const KeySpec& s : deck_schema()) {
    if (s.group == group) keys.push_back(s.key);
    if (s.key == key) elsewhere.push_back("&" + s.group);
  }
  const std::string hint = closest_name(key, keys);
  std::string why;
  if (!hint.empty())
    why = "did you mean '" + hint + "'?";
  else if (!elsewhere.empty())
    why = "'" + key + "' is a key of " + join(elsewhere, ", ");
  else
    why = "keys of &" + group + ": " + join(keys, ", ");
  input_error(where, "'" + group + "%" + key + "' is not a key of &" + group + " (" + why + ")");
}

// Checks values against their key's type, shape and allowed values; widens integers given for
// reals and spells choices the schema's way.
std::vector<NamelistValue> typed_values(const KeySpec& spec, std::vector<NamelistValue> values,
                                        const std::string& where) {
  const std::string name = "'" + spec.group + "%" + spec.key + "'";
  const std::size_t want = spec.length == 0 ? 1 : static_cast<std::size_t>(spec.length);
  const std::string got_n =
      std::to_string(values.size()) + (values.size() == 1 ? " value" : " values");
  if (spec.list && (values.empty() || values.size() > want))
    input_error(where, name + " expects 1 to " + std::to_string(want) + " " + many_of_type(spec.type) +
                           ", got " + got_n);
  if (!spec.list && values.size() != want) {
    if (spec.length == 0)
      input_error(where, name + " expects one " + type_word(spec.type) + ", got " + got_n);
    input_error(where, name + " expects " + std::to_string(want) + " " + many_of_type(spec.type) +
                           ", got " + got_n);
  }
  for (NamelistValue& v : values) {
    if (spec.type == KeyType::Real && std::holds_alternative<long long>(v))
      v = static_cast<double>(std::get<long long>(v));
    if (!has_type(v, spec.type))
      input_error(where, name + " expects " +
                             (spec.length == 0 ? one_of_type(spec.type) : many_of_type(spec.type)) +
                             ", got " + format_namelist_value(v));
    const std::string shown = name + " = " + format_namelist_value(v);
    if (spec.type == KeyType::Int) {
      const long long i = std::get<long long>(v);
      if (!spec.wide && (i < INT_MIN || i > INT_MAX))
        input_error(where, shown + " is out of range (it must fit a 32-bit integer)");
    }
    if (spec.type == KeyType::Int || spec.type == KeyType::Real) {
      const double x = spec.type == KeyType::Int ? static_cast<double>(std::get<long long>(v))
                                                 : std::get<double>(v);
      if (!inside(x, spec.lo, spec.hi))
        input_error(where, shown + " is out of range (" + key_allowed(spec) + ")");
    }
    if (spec.type != KeyType::String) continue;
    std::string& s = std::get<std::string>(v);
    if (spec.non_empty && s.empty()) input_error(where, name + " must not be empty");
    if (spec.choices.empty()) continue;
    const auto match = std::find(spec.choices.begin(), spec.choices.end(), lower(s));
    if (match != spec.choices.end()) {
      s = *match;
      continue;
    }
    const std::string hint = closest_name(lower(s), spec.choices);
    input_error(where, shown + " is not one of " + key_allowed(spec) +
                           (hint.empty() ? "" : " (did you mean '" + hint + "'?)"));
  }
  return values;
}

std::string read_file(const std::string& path) {
  const std::string where = one_line(path);
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) input_error(where, std::string("cannot open deck: ") + std::strerror(errno));
  struct stat st {};
  if (::fstat(::fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
    std::fclose(f);
    input_error(where, std::string("cannot open deck: ") + std::strerror(EISDIR));
  }
  std::string text;
  char buf[65536];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  const bool failed = std::ferror(f) != 0;
  const int err = errno;
  std::fclose(f);
  if (failed) input_error(where, std::string("cannot read deck: ") + std::strerror(err));
  return text;
}

}  // namespace

Deck::Deck(std::string name) : name_(std::move(name)) {
  for (const KeySpec& spec : deck_schema())
    entries_.push_back(Entry{spec.default_value, "", 0, -1});
}

Deck Deck::from_file(const std::string& path, const std::vector<std::string>& overrides) {
  return from_text(read_file(path), path, overrides);
}

Deck Deck::from_text(const std::string& text, const std::string& name,
                     const std::vector<std::string>& overrides) {
  const std::string source = one_line(name);
  Deck deck(source);
  for (const NamelistGroup& group : parse_namelist(text, source)) {
    check_group(group.name, namelist_location(source, group.line));
    for (const NamelistItem& item : group.items)
      deck.assign(item, namelist_location(source, item.line));
  }
  for (const std::string& o : overrides) deck.apply_override(o);
  deck.check_rules();
  return deck;
}

void Deck::assign(const NamelistItem& item, const std::string& where) {
  const int index = check_key(item.group, item.key, where);
  Entry& e = entries_[static_cast<std::size_t>(index)];
  e.values = typed_values(deck_schema()[static_cast<std::size_t>(index)], item.values, where);
  e.source = item.source;
  e.line = item.line;
  e.order = assignments_++;
}

void Deck::apply_override(const std::string& text) {
  const std::string where = "--set " + one_line(text);
  const std::size_t eq = text.find('=');
  const std::string lhs = trim(text.substr(0, eq));
  const std::size_t pct = lhs.find('%');
  if (eq == std::string::npos || pct == std::string::npos)
    input_error(where, "expected group%key=value (e.g. --set optim%lr=3e-4)");
  NamelistItem item;
  item.group = lower(trim(lhs.substr(0, pct)));
  item.key = lower(trim(lhs.substr(pct + 1)));
  if (item.group.empty() || item.key.empty())
    input_error(where, "expected group%key=value (e.g. --set optim%lr=3e-4)");
  check_group(item.group, where);
  check_key(item.group, item.key, where);
  item.values = parse_namelist_values(text.substr(eq + 1), where, item.group, item.key);
  item.source = where;
  item.line = 0;
  assign(item, where);
}

void Deck::fail_at(const std::vector<std::string>& keys, const std::string& what) const {
  const Entry* latest = nullptr;
  for (const std::string& name : keys) {
    const std::size_t pct = name.find('%');
    const int index = deck_key_index(name.substr(0, pct), name.substr(pct + 1));
    if (index < 0) throw Error("deck rule names '" + name + "', which is not in the schema");
    const Entry& e = entries_[static_cast<std::size_t>(index)];
    if (e.order >= 0 && (!latest || e.order > latest->order)) latest = &e;
  }
  input_error(latest ? namelist_location(latest->source, latest->line) : name_, what);
}

const Deck::Entry& Deck::entry(const std::string& group, const std::string& key, KeyType type,
                               bool array) const {
  const int index = deck_key_index(group, key);
  if (index < 0) throw Error("'" + group + "%" + key + "' is not a deck key");
  const KeySpec& spec = deck_schema()[static_cast<std::size_t>(index)];
  if (spec.type != type || (spec.length > 0) != array)
    throw Error("deck key '" + group + "%" + key + "' is " + key_type_name(spec) +
                ", read here as another type");
  return entries_[static_cast<std::size_t>(index)];
}

std::string Deck::show(const std::string& name) const {
  const std::size_t pct = name.find('%');
  const int index = deck_key_index(name.substr(0, pct), name.substr(pct + 1));
  if (index < 0) throw Error("'" + name + "' is not a deck key");
  return "'" + name + "' = " + format_values(entries_[static_cast<std::size_t>(index)].values);
}

long long Deck::get_int(const std::string& group, const std::string& key) const {
  return std::get<long long>(entry(group, key, KeyType::Int, false).values[0]);
}

double Deck::get_real(const std::string& group, const std::string& key) const {
  return std::get<double>(entry(group, key, KeyType::Real, false).values[0]);
}

bool Deck::get_bool(const std::string& group, const std::string& key) const {
  return std::get<bool>(entry(group, key, KeyType::Bool, false).values[0]);
}

const std::string& Deck::get_string(const std::string& group, const std::string& key) const {
  return std::get<std::string>(entry(group, key, KeyType::String, false).values[0]);
}

std::vector<double> Deck::get_reals(const std::string& group, const std::string& key) const {
  std::vector<double> out;
  for (const NamelistValue& v : entry(group, key, KeyType::Real, true).values)
    out.push_back(std::get<double>(v));
  return out;
}

std::vector<long long> Deck::get_ints(const std::string& group, const std::string& key) const {
  std::vector<long long> out;
  for (const NamelistValue& v : entry(group, key, KeyType::Int, true).values)
    out.push_back(std::get<long long>(v));
  return out;
}

std::vector<std::string> Deck::get_strings(const std::string& group, const std::string& key) const {
  std::vector<std::string> out;
  for (const NamelistValue& v : entry(group, key, KeyType::String, true).values)
    out.push_back(std::get<std::string>(v));
  return out;
}

bool Deck::is_set(const std::string& group, const std::string& key) const {
  const int index = deck_key_index(group, key);
  if (index < 0) throw Error("'" + group + "%" + key + "' is not a deck key");
  return entries_[static_cast<std::size_t>(index)].order >= 0;
}

std::string Deck::origin(const std::string& group, const std::string& key) const {
  if (!is_set(group, key)) return "default";
  const Entry& e = entries_[static_cast<std::size_t>(deck_key_index(group, key))];
  return namelist_location(e.source, e.line);
}

std::string Deck::to_namelist() const {
  const std::vector<KeySpec>& schema = deck_schema();
  std::string out = "! torch-handle resolved deck: every key, defaults filled in\n";
  for (const std::string& group : deck_groups()) {
    std::size_t width = 0;
    for (const KeySpec& s : schema)
      if (s.group == group) width = std::max(width, s.key.size());
    out += "\n&" + group + "\n";
    for (std::size_t i = 0; i < schema.size(); ++i) {
      if (schema[i].group != group) continue;
      out += "  " + schema[i].key + std::string(width - schema[i].key.size(), ' ') + " = " +
             format_values(entries_[i].values) + "\n";
    }
    out += "/\n";
  }
  return out;
}

bool Deck::operator==(const Deck& other) const {
  for (std::size_t i = 0; i < entries_.size(); ++i)
    if (entries_[i].values != other.entries_[i].values) return false;
  return true;
}

}  // namespace th
