#include "th/io/deck_schema.hpp"

#include <array>

#include "th/core/error.hpp"

namespace th {
namespace {

// The vocabulary of th/config/deck_keys.def: a key's allowed values.
struct Allowed {
  Bound lo, hi;
  std::vector<std::string> choices;
  bool non_empty = false;
  int list_max = 0;  // Ints / Strings keys: 1 to list_max values
};

Bound ge(double v) { return {true, v, false}; }
Bound gt(double v) { return {true, v, true}; }
Bound le(double v) { return {true, v, false}; }
Bound lt(double v) { return {true, v, true}; }

Allowed any() { return {}; }
Allowed range(Bound lo, Bound hi = {}) {
  Allowed a;
  a.lo = lo;
  a.hi = hi;
  return a;
}
Allowed one_of(std::vector<std::string> choices) {
  Allowed a;
  a.choices = std::move(choices);
  return a;
}
Allowed non_empty() {
  Allowed a;
  a.non_empty = true;
  return a;
}
Allowed list_of(int max, Allowed a) {
  a.list_max = max;
  return a;
}

// The field types of deck_keys.def (the same as th::Config's, spelled without including it).
using Reals2 = std::array<double, 2>;
using Ints = std::vector<int>;
using Strings = std::vector<std::string>;
// `long long{1234}` is not C++; `Id<long long>{1234}` is.
template <typename T>
using Id = T;

// Type, shape and default of a key, from the C++ type of its field.
void set_default(KeySpec& s, int v) {
  s.type = KeyType::Int;
  s.default_value = {static_cast<long long>(v)};
}
void set_default(KeySpec& s, long long v) {
  s.type = KeyType::Int;
  s.wide = true;
  s.default_value = {v};
}
void set_default(KeySpec& s, double v) {
  s.type = KeyType::Real;
  s.default_value = {v};
}
void set_default(KeySpec& s, bool v) {
  s.type = KeyType::Bool;
  s.default_value = {v};
}
void set_default(KeySpec& s, const std::string& v) {
  s.type = KeyType::String;
  s.default_value = {v};
}
void set_default(KeySpec& s, const Reals2& v) {
  s.type = KeyType::Real;
  s.length = static_cast<int>(v.size());
  s.default_value.assign(v.begin(), v.end());
}
void set_default(KeySpec& s, const Ints& v) {
  s.type = KeyType::Int;
  s.list = true;
  const std::vector<long long> wide_values(v.begin(), v.end());
  s.default_value.assign(wide_values.begin(), wide_values.end());
}
void set_default(KeySpec& s, const Strings& v) {
  s.type = KeyType::String;
  s.list = true;
  s.default_value.assign(v.begin(), v.end());
}

template <typename T>
KeySpec make_key(const char* group, const char* key, const T& def, Allowed allowed, const char* doc) {
  KeySpec s;
  s.group = group;
  s.key = key;
  set_default(s, def);
  s.lo = allowed.lo;
  s.hi = allowed.hi;
  s.choices = std::move(allowed.choices);
  s.non_empty = allowed.non_empty;
  s.doc = doc;
  // A table entry that mixes kinds is a programming error, caught by any test that reads a deck.
  const std::string name = s.group + "%" + s.key;
  if (s.list != (allowed.list_max > 0))
    throw Error("deck_keys.def: " + name + ": list_of(n, ...) goes with the types Ints and Strings");
  if (s.list) {
    s.length = allowed.list_max;
    if (s.default_value.empty() || static_cast<int>(s.default_value.size()) > s.length)
      throw Error("deck_keys.def: " + name + ": the default needs 1 to " + std::to_string(s.length) +
                  " values");
  }
  const bool numeric = s.type == KeyType::Int || s.type == KeyType::Real;
  if ((s.lo.set || s.hi.set) && !numeric)
    throw Error("deck_keys.def: " + name + ": range() is for integer and real keys");
  if ((!s.choices.empty() || s.non_empty) && s.type != KeyType::String)
    throw Error("deck_keys.def: " + name + ": one_of() and non_empty() are for string keys");
  return s;
}

#define TH_DECK_VALUES(...) __VA_ARGS__
std::vector<KeySpec> build_schema() {
  return {
#define TH_DECK_GROUP(Type, group)
#define TH_DECK_KEY(group, key, type, default_value, allowed, doc) \
  make_key(#group, #key, Id<type>{TH_DECK_VALUES default_value}, allowed, doc),
#define TH_DECK_GROUP_END(Type, group)
#include "th/config/deck_keys.def"
  };
}
#undef TH_DECK_VALUES

std::string format_bound(const KeySpec& spec, double v) {
  if (spec.type == KeyType::Int) return format_namelist_value(static_cast<long long>(v));
  return format_namelist_value(v);
}

}  // namespace

const std::vector<KeySpec>& deck_schema() {
  static const std::vector<KeySpec> schema = build_schema();
  return schema;
}

const std::vector<std::string>& deck_groups() {
  static const std::vector<std::string> groups = [] {
    std::vector<std::string> g;
    for (const KeySpec& s : deck_schema())
      if (g.empty() || g.back() != s.group) g.push_back(s.group);
    return g;
  }();
  return groups;
}

int deck_key_index(const std::string& group, const std::string& key) {
  const std::vector<KeySpec>& schema = deck_schema();
  for (std::size_t i = 0; i < schema.size(); ++i)
    if (schema[i].group == group && schema[i].key == key) return static_cast<int>(i);
  return -1;
}

std::string key_type_name(const KeySpec& spec) {
  std::string name;
  switch (spec.type) {
    case KeyType::Int:
      name = "integer";
      break;
    case KeyType::Real:
      name = "real";
      break;
    case KeyType::Bool:
      name = "logical";
      break;
    case KeyType::String:
      name = "string";
      break;
  }
  if (spec.list) return name + " list";
  return spec.length > 0 ? name + "(" + std::to_string(spec.length) + ")" : name;
}

std::string key_allowed(const KeySpec& spec) {
  if (!spec.choices.empty()) {
    std::string out;
    for (const std::string& c : spec.choices)
      out += (out.empty() ? "" : ", ") + format_namelist_value(c);
    return out;
  }
  if (spec.non_empty) return "non-empty";
  if (spec.lo.set && spec.hi.set && !spec.lo.open && !spec.hi.open)
    return format_bound(spec, spec.lo.value) + " to " + format_bound(spec, spec.hi.value);
  std::string out;
  if (spec.lo.set) out = (spec.lo.open ? "> " : ">= ") + format_bound(spec, spec.lo.value);
  if (spec.hi.set)
    out += (out.empty() ? "" : " and ") + std::string(spec.hi.open ? "< " : "<= ") +
           format_bound(spec, spec.hi.value);
  return out;
}

std::string key_default(const KeySpec& spec) {
  std::string out;
  for (const NamelistValue& v : spec.default_value)
    out += (out.empty() ? "" : ", ") + format_namelist_value(v);
  return out;
}

}  // namespace th
