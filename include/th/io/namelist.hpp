#pragma once
// Reader of the Fortran-namelist subset that input decks are written in (docs/deck.md, "Syntax").
// It knows the syntax only; which groups and keys exist, and their types, is the schema's business
// (io/deck_schema.hpp). Every error is a th::InputError with one line "<source>:<line>: <what>".
#include <string>
#include <variant>
#include <vector>

namespace th {

// One scalar as written in the deck. Integers stay integers so that the schema can reject
// `d_model = 512.0`; it widens them to reals where a real is expected.
using NamelistValue = std::variant<long long, double, bool, std::string>;

struct NamelistItem {
  std::string group;                  // lower case
  std::string key;                    // lower case
  std::vector<NamelistValue> values;  // `n*v` repeats already expanded
  std::string source;
  int line = 0;  // of the key; 0 when the source has no lines (a --set override)
};

struct NamelistGroup {
  std::string name;  // lower case
  std::string source;
  int line = 0;  // of the '&name'
  std::vector<NamelistItem> items;
};

// Parses a whole deck. Groups are returned in the order written; a group name may appear more than
// once, but a key may be set only once per deck.
std::vector<NamelistGroup> parse_namelist(const std::string& text, const std::string& source);

// All items of all groups, in the order written.
std::vector<NamelistItem> namelist_items(const std::vector<NamelistGroup>& groups);

// Parses the value list of one key given outside a deck (the text after '=' of a --set override).
// Errors read "<source>: <what>" and name the key as group%key.
std::vector<NamelistValue> parse_namelist_values(const std::string& text, const std::string& source,
                                                 const std::string& group, const std::string& key);

// Writes a value in deck syntax such that parsing it gives the identical value (reals in the
// shortest form that round-trips, always with a '.' or exponent so they stay reals).
std::string format_namelist_value(const NamelistValue& value);

// "<source>:<line>" or, for line 0, "<source>": the prefix of every error message.
std::string namelist_location(const std::string& source, int line);

}  // namespace th
