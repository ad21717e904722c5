#pragma once
// The Bible as a parallel corpus: two SWORD modules (Debian: sword-text-web = engWEB2015eb,
// sword-text-sparv = spaRV1909eb) read with `diatheke -f internal` (OSIS markup, one verse entry
// per line), markup stripped, verses aligned by reference ("Genesis 1:1"). Verses empty in
// either module, or present in only one, are skipped and counted.
#include <string>
#include <vector>

#include "th/data/corpus.hpp"

namespace th {

// Every book of both testaments (and, in modules that have them, the deuterocanonical books
// that their versification places in between).
extern const char* const kWholeBible;

struct Verse {
  std::string ref;   // "Genesis 1:1" (diatheke's English book names, the same for every module)
  std::string text;  // plain text, whitespace normalized; may be empty
};

// OSIS markup (diatheke's internal format) to plain text: headings (<title>), notes and speaker
// labels are dropped with their content; text after the end of a book division (the WEB module
// appends its glossary to Revelation 22:21) is dropped; word elements that touch
// (`<w>God</w><w>created</w>`) are separated by a space; structural tags (line, line group,
// paragraph, milestone, ...) become spaces, inline ones (w, q, transChange, ...) vanish.
std::string strip_osis_markup(const std::string& osis);

// One line of `diatheke -f internal` output: "[pre-verse markup]Book C:V: text". False if the
// line holds no verse header (diatheke's trailing "(MODULE)" line, blank lines).
bool parse_diatheke_line(const std::string& line, Verse& out);

// Runs diatheke for one module over `range` (a diatheke key such as "Genesis 1" or kWholeBible).
// The module name must be letters, digits and underscores. InputError if diatheke is missing or
// the module gives no verse (not installed).
std::vector<Verse> read_bible_module(const std::string& module, const std::string& range);

// Pairs in the order of the source module; key = the verse reference.
Corpus read_bible(const std::string& src_module, const std::string& tgt_module,
                  const std::string& range = kWholeBible);

}  // namespace th
