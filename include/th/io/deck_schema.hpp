#pragma once
// The deck schema: every group and key the program reads, with type, default, allowed values and a
// one-line meaning, built from the key table th/config/deck_keys.def (where keys are declared, once).
// Validation (io/deck.cpp), the resolved echo (Deck::to_namelist) and the key tables of docs/deck.md
// (io/deck_doc.cpp) read it; th::Config's fields come from the same table.
#include <string>
#include <vector>

#include "th/io/namelist.hpp"

namespace th {

enum class KeyType { Int, Real, Bool, String };

// One side of a numeric range; `open` excludes the value itself (x > 0 rather than x >= 0).
struct Bound {
  bool set = false;
  double value = 0;
  bool open = false;
};

struct KeySpec {
  std::string group;
  std::string key;
  KeyType type = KeyType::Int;
  int length = 0;                            // 0: a scalar; n >= 1: an array of exactly n values
  bool list = false;                         // arrays: a list of 1 to `length` values instead
  std::vector<NamelistValue> default_value;  // one value, or `length` values
  Bound lo, hi;                              // numeric keys: applies to every element
  std::vector<std::string> choices;          // string keys: the allowed values (empty: any)
  bool non_empty = false;                    // string keys: '' is not allowed
  bool wide = false;  // integer keys: 64-bit (the others must fit a 32-bit int, as Config holds)
  std::string doc;
};

// Keys in schema order (groups in deck_groups() order, keys as documented).
const std::vector<KeySpec>& deck_schema();
const std::vector<std::string>& deck_groups();

// Position of group%key in deck_schema(), or -1.
int deck_key_index(const std::string& group, const std::string& key);

// "integer", "real", "logical", "string"; arrays read "real(2)".
std::string key_type_name(const KeySpec& spec);
// The allowed values in words: "0 to 3", ">= 0.0 and < 1.0", "'relu', 'gelu'", "non-empty", "".
std::string key_allowed(const KeySpec& spec);
// The default in deck syntax, e.g. "0.9, 0.98".
std::string key_default(const KeySpec& spec);

}  // namespace th
