#pragma once
// The deck as plain typed data: one struct per group, one field per key, named exactly as in the
// deck (cfg.model.d_model is `&model d_model`). The fields, their types, defaults, ranges and
// meanings are declared once, in th/config/deck_keys.def (also docs/deck.md, "Keys").
// Built once from a validated Deck, so every value here has passed the deck's checks.
#include <array>
#include <string>
#include <vector>

namespace th {

class Deck;

struct Config {
  using Reals2 = std::array<double, 2>;
  using Ints = std::vector<int>;
  using Strings = std::vector<std::string>;

  // One struct per group (Config::Run run; ...), one field per key, from the key table. Fields
  // start zero/empty, not at the deck's defaults: only make_config() fills a Config, and it sets
  // every field from a validated deck, defaults included.
#define TH_DECK_GROUP(Type, group) struct Type {
#define TH_DECK_KEY(group, key, type, default_value, allowed, doc) type key{};
#define TH_DECK_GROUP_END(Type, group) }; Type group;
#include "th/config/deck_keys.def"

  // Deck::to_namelist() of the deck this came from, echoed into every output of the run.
  std::string resolved_deck;
};

// Every field from the deck (io/config.cpp).
Config make_config(const Deck& deck);

// Where a run's checkpoints live: checkpoint%dir, or <run%output_dir>/checkpoints when empty.
std::string checkpoint_folder(const Config& cfg);

}  // namespace th
