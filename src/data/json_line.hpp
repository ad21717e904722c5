#pragma once
// One line of a JSON Lines file (https://jsonlines.org): an object whose member FIELD holds a
// string. The whole line is parsed (RFC 8259: objects, arrays, strings with every escape
// including surrogate pairs, numbers, true/false/null), so a malformed line is reported even
// when the field came before the damage. Internal to src/data.
#include <cstddef>
#include <string>

namespace th {

struct JsonFieldResult {
  enum class Status { Ok, Malformed, NotObject, Missing, NotString } status = Status::Ok;
  std::string value;    // the field's string, unescaped to UTF-8 (Ok)
  std::string message;  // what is wrong, with the 1-based column (Malformed)
};

JsonFieldResult json_string_field(const std::string& line, const std::string& field);

}  // namespace th
