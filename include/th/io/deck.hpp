#pragma once
// A validated input deck: every key of the schema (io/deck_schema.hpp) with a value, given in the
// deck, by a --set override, or by default. Building one checks everything a deck can get wrong
// (syntax, unknown names, types, ranges, cross-key rules) and throws th::InputError with one line
// "<file>:<line>: <what>" (or "--set group%key=...: <what>") for the first problem found.
#include <string>
#include <vector>

#include "th/io/deck_schema.hpp"
#include "th/io/namelist.hpp"

namespace th {

class Deck {
 public:
  // `overrides` are command-line `--set` strings, "group%key=value" with the deck's value syntax;
  // they are applied in order after the deck, so the last one wins.
  static Deck from_file(const std::string& path, const std::vector<std::string>& overrides = {});
  static Deck from_text(const std::string& text, const std::string& name,
                        const std::vector<std::string>& overrides = {});

  // Typed access. Asking for a key that is not in the schema, or with the wrong type or shape, is
  // a programming error (th::Error), not an input error.
  long long get_int(const std::string& group, const std::string& key) const;
  double get_real(const std::string& group, const std::string& key) const;
  bool get_bool(const std::string& group, const std::string& key) const;
  const std::string& get_string(const std::string& group, const std::string& key) const;
  std::vector<double> get_reals(const std::string& group, const std::string& key) const;
  std::vector<long long> get_ints(const std::string& group, const std::string& key) const;
  std::vector<std::string> get_strings(const std::string& group, const std::string& key) const;

  // Whether the value came from the deck or an override rather than the default.
  bool is_set(const std::string& group, const std::string& key) const;
  // Where the value came from: "run.nml:4", "--set optim%lr=3e-4" or "default".
  std::string origin(const std::string& group, const std::string& key) const;
  const std::string& name() const { return name_; }

  // The fully resolved deck: every group and key in schema order, defaults filled in, values
  // written so that from_text() of this text gives an identical deck.
  std::string to_namelist() const;

  // Same values for every key (where they came from is not compared).
  bool operator==(const Deck& other) const;
  bool operator!=(const Deck& other) const { return !(*this == other); }

 private:
  struct Entry {
    std::vector<NamelistValue> values;
    std::string source;  // "" for a default
    int line = 0;        // 0 for a default or an override
    int order = -1;      // assignment order (deck lines, then overrides); -1 for a default
  };

  explicit Deck(std::string name);
  void assign(const NamelistItem& item, const std::string& where);
  void apply_override(const std::string& text);
  void check_rules() const;  // io/deck_rules.cpp
  // Throws for a cross-key rule, located at whichever of `keys` (group%key) was set last.
  [[noreturn]] void fail_at(const std::vector<std::string>& keys, const std::string& what) const;
  const Entry& entry(const std::string& group, const std::string& key, KeyType type,
                     bool array) const;
  std::string show(const std::string& name) const;

  std::string name_;
  std::vector<Entry> entries_;  // parallel to deck_schema()
  int assignments_ = 0;
};

}  // namespace th
