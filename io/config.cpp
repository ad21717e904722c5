#include "th/config/config.hpp"

#include <vector>

#include "th/io/deck.hpp"
#include "th/io/deck_schema.hpp"
#include "th/core/error.hpp"

namespace th {
namespace {

// One overload per field type of th/config/deck_keys.def. The deck has checked type, shape and
// range, so the narrowing casts cannot lose anything (integer keys other than long long ones are
// checked to fit 32 bits).
void read(const Deck& d, const char* g, const char* k, int& out) { out = static_cast<int>(d.get_int(g, k)); }
void read(const Deck& d, const char* g, const char* k, long long& out) { out = d.get_int(g, k); }
void read(const Deck& d, const char* g, const char* k, double& out) { out = d.get_real(g, k); }
void read(const Deck& d, const char* g, const char* k, bool& out) { out = d.get_bool(g, k); }
void read(const Deck& d, const char* g, const char* k, std::string& out) { out = d.get_string(g, k); }
void read(const Deck& d, const char* g, const char* k, Config::Ints& out) {
  out.clear();
  for (long long v : d.get_ints(g, k)) out.push_back(static_cast<int>(v));
}
void read(const Deck& d, const char* g, const char* k, Config::Strings& out) { out = d.get_strings(g, k); }
void read(const Deck& d, const char* g, const char* k, Config::Reals2& out) {
  const std::vector<double> v = d.get_reals(g, k);
  if (v.size() != out.size())
    throw Error(std::string(g) + "%" + k + " does not have " + std::to_string(out.size()) + " values");
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = v[i];
}

}  // namespace

Config make_config(const Deck& deck) {
  Config c;
#define TH_DECK_GROUP(Type, group)
#define TH_DECK_KEY(group, key, type, default_value, allowed, doc) read(deck, #group, #key, c.group.key);
#define TH_DECK_GROUP_END(Type, group)
#include "th/config/deck_keys.def"
  c.resolved_deck = deck.to_namelist();
  return c;
}

std::string checkpoint_folder(const Config& cfg) {
  return cfg.checkpoint.dir.empty() ? cfg.run.output_dir + "/checkpoints" : cfg.checkpoint.dir;
}

}  // namespace th
