#pragma once
// The key tables of docs/deck.md, generated from the schema (th/config/deck_keys.def), so that the
// documentation of a key cannot drift from its declaration. Each group's table sits between
//   <!-- deck-keys GROUP -->  and  <!-- end deck-keys -->
// in docs/deck.md; prose around the markers is the author's. `torch-handle --deck-keys=docs/deck.md`
// prints the file with the tables regenerated; the test deck_docs fails when the file differs.
#include <string>

namespace th {

// One group's table: header row, separator, one row per key in schema order:
// | `key` | type | `default` | allowed | meaning |
std::string deck_doc_table(const std::string& group);

// Every group's table under a "### `&group`" heading (what `torch-handle --deck-keys` prints).
std::string deck_doc_tables();

// `markdown` with the text between each group's markers replaced by deck_doc_table(group).
// Throws th::InputError naming `source` and the line for a marker of an unknown group, a group
// marked twice, a marker left open, or a schema group with no markers.
std::string deck_doc_update(const std::string& markdown, const std::string& source);
// The same for the file at `path` (th::InputError "<path>: cannot open: <reason>" if unreadable).
std::string deck_doc_update_file(const std::string& path);

}  // namespace th
