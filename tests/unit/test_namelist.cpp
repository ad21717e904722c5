// The namelist reader on its own: every syntax form of docs/deck.md and every syntax error, with
// the exact message (file, line, key) a user sees.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "th/io/namelist.hpp"
#include "th/core/error.hpp"

namespace th {
namespace {

std::vector<NamelistItem> items(const std::string& text) {
  return namelist_items(parse_namelist(text, "run.nml"));
}

NamelistItem only_item(const std::string& text) {
  const std::vector<NamelistItem> all = items(text);
  EXPECT_EQ(all.size(), 1u) << text;
  return all.empty() ? NamelistItem{} : all[0];
}

std::vector<NamelistValue> values_of(const std::string& text) { return only_item(text).values; }

// The message of the InputError that parsing `text` throws; fails the test when none is thrown.
std::string error_of(const std::string& text) {
  try {
    parse_namelist(text, "run.nml");
  } catch (const InputError& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.find('\n'), std::string::npos) << "message is not one line: " << message;
    return message;
  }
  ADD_FAILURE() << "no InputError for:\n" << text;
  return "";
}

std::string value_error_of(const std::string& text) {
  try {
    parse_namelist_values(text, "--set model%d_model=" + text, "model", "d_model");
  } catch (const InputError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no InputError for value text: " << text;
  return "";
}

TEST(Namelist, GroupsAndKeysAreLowerCasedWithSourceAndLines) {
  const std::vector<NamelistGroup> groups = parse_namelist(
      "! header\n&MODEL\n  D_Model = 512\n  N_HEADS = 8\n/\n&Optim lr = 1e-3 /\n", "deck.nml");
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[0].name, "model");
  EXPECT_EQ(groups[0].line, 2);
  EXPECT_EQ(groups[0].source, "deck.nml");
  ASSERT_EQ(groups[0].items.size(), 2u);
  EXPECT_EQ(groups[0].items[0].group, "model");
  EXPECT_EQ(groups[0].items[0].key, "d_model");
  EXPECT_EQ(groups[0].items[0].line, 3);
  EXPECT_EQ(groups[0].items[0].source, "deck.nml");
  EXPECT_EQ(groups[0].items[1].key, "n_heads");
  EXPECT_EQ(groups[0].items[1].line, 4);
  EXPECT_EQ(groups[1].name, "optim");
  EXPECT_EQ(groups[1].line, 6);
  EXPECT_EQ(groups[1].items[0].line, 6);
  const std::vector<NamelistItem> all = namelist_items(groups);
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[2].key, "lr");
}

TEST(Namelist, SeparatorsAreCommaBlankOrNewline) {
  const std::vector<NamelistItem> all = items(
      "&model arch = 'encoder-decoder', d_model = 512 n_heads = 8\n d_ff = 2048,\n"
      "activation='relu'/\n");
  ASSERT_EQ(all.size(), 5u);
  EXPECT_EQ(all[0].key, "arch");
  EXPECT_EQ(all[1].key, "d_model");
  EXPECT_EQ(std::get<long long>(all[1].values[0]), 512);
  EXPECT_EQ(all[2].key, "n_heads");
  EXPECT_EQ(all[3].key, "d_ff");
  EXPECT_EQ(all[3].line, 2);
  EXPECT_EQ(all[4].key, "activation");
  EXPECT_EQ(std::get<std::string>(all[4].values[0]), "relu");
}

TEST(Namelist, AmpersandEndClosesAGroup) {
  const std::vector<NamelistGroup> groups =
      parse_namelist("&parallel zero_stage = 3 &END\n&log every_steps = 5 &end\n", "run.nml");
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[0].items[0].key, "zero_stage");
  EXPECT_EQ(groups[1].items[0].key, "every_steps");
}

TEST(Namelist, EmptyGroupsAndRepeatedGroupsAreKept) {
  const std::vector<NamelistGroup> groups =
      parse_namelist("&run /\n&model d_model = 8 /\n&model n_heads = 2 /\n", "run.nml");
  ASSERT_EQ(groups.size(), 3u);
  EXPECT_TRUE(groups[0].items.empty());
  EXPECT_EQ(groups[2].items[0].key, "n_heads");
}

TEST(Namelist, Integers) {
  EXPECT_EQ(std::get<long long>(values_of("&g k = 42 /")[0]), 42);
  EXPECT_EQ(std::get<long long>(values_of("&g k = -7 /")[0]), -7);
  EXPECT_EQ(std::get<long long>(values_of("&g k = +7 /")[0]), 7);
  EXPECT_EQ(std::get<long long>(values_of("&g k = 9223372036854775807 /")[0]),
            std::numeric_limits<long long>::max());
}

TEST(Namelist, Reals) {
  const std::vector<std::pair<std::string, double>> cases = {
      {"1.", 1.0},    {".5", 0.5},        {"1e-4", 1e-4}, {"1.0d-4", 1e-4},
      {"1.0D4", 1e4}, {"-2.5E+3", -2500}, {"+.25", 0.25}, {"7.0e-4", 7e-4},
      {"3d0", 3.0},   {"-0.0", 0.0},      {"1E5", 1e5},   {"0.1", 0.1}};
  for (const auto& [text, expected] : cases) {
    const std::vector<NamelistValue> v = values_of("&g k = " + text + " /");
    ASSERT_EQ(v.size(), 1u) << text;
    ASSERT_TRUE(std::holds_alternative<double>(v[0])) << text;
    EXPECT_EQ(std::get<double>(v[0]), expected) << text;
  }
}

TEST(Namelist, Logicals) {
  const std::vector<std::pair<std::string, bool>> cases = {
      {".true.", true}, {".TRUE.", true}, {".t.", true},  {".T.", true},      {"T", true},
      {"t", true},      {"true", true},   {"True", true}, {".false.", false}, {".False.", false},
      {".f.", false},   {"F", false},     {"f", false},   {"false", false},   {"FALSE", false}};
  for (const auto& [text, expected] : cases) {
    const std::vector<NamelistValue> v = values_of("&g k = " + text + " /");
    ASSERT_EQ(v.size(), 1u) << text;
    ASSERT_TRUE(std::holds_alternative<bool>(v[0])) << text;
    EXPECT_EQ(std::get<bool>(v[0]), expected) << text;
  }
}

TEST(Namelist, BareLogicalBeforeTheNextKey) {
  const std::vector<NamelistItem> all = items("&g a = T b = F\nc = t, d = 1 /");
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(std::get<bool>(all[0].values[0]), true);
  EXPECT_EQ(std::get<bool>(all[1].values[0]), false);
  EXPECT_EQ(std::get<bool>(all[2].values[0]), true);
  EXPECT_EQ(all[3].key, "d");
}

TEST(Namelist, Strings) {
  EXPECT_EQ(std::get<std::string>(values_of("&g k = 'abc' /")[0]), "abc");
  EXPECT_EQ(std::get<std::string>(values_of("&g k = \"abc\" /")[0]), "abc");
  EXPECT_EQ(std::get<std::string>(values_of("&g k = 'it''s' /")[0]), "it's");
  EXPECT_EQ(std::get<std::string>(values_of("&g k = \"say \"\"hi\"\"\" /")[0]), "say \"hi\"");
  EXPECT_EQ(std::get<std::string>(values_of("&g k = \"it's\" /")[0]), "it's");
  EXPECT_EQ(std::get<std::string>(values_of("&g k = '' /")[0]), "");
  // Comment, group and terminator characters are plain text inside quotes.
  EXPECT_EQ(std::get<std::string>(values_of("&g k = 'a!b /c &d, e=f' /")[0]), "a!b /c &d, e=f");
  EXPECT_EQ(std::get<std::string>(values_of("&g k = 'Case Kept' /")[0]), "Case Kept");
}

TEST(Namelist, ArraysAndRepeats) {
  std::vector<NamelistValue> v = values_of("&optim betas = 0.9, 0.98 /");
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(std::get<double>(v[0]), 0.9);
  EXPECT_EQ(std::get<double>(v[1]), 0.98);

  v = values_of("&g k = 1 2\n  3, 4 /");
  ASSERT_EQ(v.size(), 4u);
  EXPECT_EQ(std::get<long long>(v[3]), 4);

  v = values_of("&g k = 3*1.0 /");
  ASSERT_EQ(v.size(), 3u);
  for (const NamelistValue& x : v) EXPECT_EQ(std::get<double>(x), 1.0);

  v = values_of("&g k = 2*'ab', 'c', 2*T /");
  ASSERT_EQ(v.size(), 5u);
  EXPECT_EQ(std::get<std::string>(v[1]), "ab");
  EXPECT_EQ(std::get<std::string>(v[2]), "c");
  EXPECT_EQ(std::get<bool>(v[4]), true);

  v = values_of("&g k = 0.5, 2*-3 /");
  ASSERT_EQ(v.size(), 3u);
  EXPECT_EQ(std::get<long long>(v[2]), -3);
}

TEST(Namelist, Comments) {
  const std::vector<NamelistItem> all = items(
      "! leading comment\n\n&model ! after the name\n  d_model = 512 ! trailing\n"
      "! whole line\n  n_heads = 8, ! after a comma\n/ ! after the end\n! last\n");
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(std::get<long long>(all[0].values[0]), 512);
  EXPECT_EQ(all[1].line, 6);
  EXPECT_TRUE(items("").empty());
  EXPECT_TRUE(items("! only a comment").empty());
}

TEST(Namelist, WindowsLineEndingsAndByteOrderMark) {
  const std::vector<NamelistItem> all = items("\xEF\xBB\xBF&model\r\n d_model = 16\r\n/\r\n");
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].line, 2);
  EXPECT_EQ(std::get<long long>(all[0].values[0]), 16);
}

TEST(Namelist, ValuesOfAnOverride) {
  std::vector<NamelistValue> v = parse_namelist_values("0.9, 0.999", "--set", "optim", "betas");
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(std::get<double>(v[1]), 0.999);
  v = parse_namelist_values(" 'runs/x' ", "--set", "run", "output_dir");
  EXPECT_EQ(std::get<std::string>(v[0]), "runs/x");
  v = parse_namelist_values(".false.", "--set", "data", "shuffle");
  EXPECT_EQ(std::get<bool>(v[0]), false);
}

TEST(Namelist, FormattedValuesReadBackIdentically) {
  const std::vector<NamelistValue> values = {0.1,
                                             1.0 / 3.0,
                                             7e-4,
                                             1e-9,
                                             0.98,
                                             1e300,
                                             2.5e-308,
                                             123456789.125,
                                             -2.0,
                                             1e22,
                                             512.0,
                                             std::numeric_limits<double>::min(),
                                             std::numeric_limits<double>::max(),
                                             std::numeric_limits<double>::epsilon(),
                                             0LL,
                                             -5LL,
                                             std::numeric_limits<long long>::min(),
                                             true,
                                             false,
                                             std::string("it's \"quoted\" ! not a comment / & = ,"),
                                             std::string("")};
  for (const NamelistValue& v : values) {
    const std::string text = format_namelist_value(v);
    const std::vector<NamelistValue> back = values_of("&g k = " + text + " /");
    ASSERT_EQ(back.size(), 1u) << text;
    EXPECT_EQ(back[0].index(), v.index()) << text << " changed type";
    EXPECT_TRUE(back[0] == v) << text;
  }
  EXPECT_EQ(format_namelist_value(512.0), "512.0");
  EXPECT_EQ(format_namelist_value(0.1), "0.1");
  EXPECT_EQ(format_namelist_value(7e-4), "7e-4");
  EXPECT_EQ(format_namelist_value(1e-300), "1e-300");
  EXPECT_EQ(format_namelist_value(1e22), "1e22");
  EXPECT_EQ(format_namelist_value(-2.5e-10), "-2.5e-10");
  EXPECT_EQ(format_namelist_value(true), ".true.");
  EXPECT_EQ(format_namelist_value(std::string("it's")), "'it''s'");
}

TEST(Namelist, Location) {
  EXPECT_EQ(namelist_location("run.nml", 7), "run.nml:7");
  EXPECT_EQ(namelist_location("--set a%b=1", 0), "--set a%b=1");
}

// ---- errors: the whole message is checked, so file, line and key are all asserted ----

TEST(NamelistErrors, MissingSlashAtEndOfFile) {
  EXPECT_EQ(error_of("! deck\n&run task = 'train' /\n&model\n  d_model = 512\n  n_heads = 8\n"),
            "run.nml:5: &model: missing '/' to close the group (opened at line 3)");
}

TEST(NamelistErrors, MissingSlashBeforeTheNextGroup) {
  EXPECT_EQ(error_of("! deck\n\n&model\n  d_model = 512\n\n\n&optim lr = 1e-3 /\n"),
            "run.nml:7: &model: missing '/' to close the group (opened at line 3)");
}

TEST(NamelistErrors, UnterminatedString) {
  EXPECT_EQ(error_of("&run\n  task = 'train'\n\n  output_dir = 'runs/x\n/\n"),
            "run.nml:4: unterminated string for key 'run%output_dir'");
  EXPECT_EQ(error_of("&run output_dir = \"runs/x'' /"),
            "run.nml:1: unterminated string for key 'run%output_dir'");
  EXPECT_EQ(error_of("&run output_dir = 'a', 2*'b"),
            "run.nml:1: unterminated string for key 'run%output_dir'");
}

TEST(NamelistErrors, TextOutsideAGroup) {
  EXPECT_EQ(error_of("! deck\nd_model = 512 ! comment\n"),
            "run.nml:2: text outside a group: 'd_model = 512' (a group starts with '&name' and "
            "ends with '/')");
  EXPECT_EQ(error_of("&run /\n junk\n"),
            "run.nml:2: text outside a group: 'junk' (a group starts with '&name' and ends with "
            "'/')");
  EXPECT_EQ(error_of("&run / /"), "run.nml:1: '/' outside a group (a group starts with '&name')");
  EXPECT_EQ(error_of("\n&end\n"), "run.nml:2: '&end' outside a group");
  EXPECT_EQ(error_of("& model /"), "run.nml:1: '&' must be followed by a group name");
}

TEST(NamelistErrors, DuplicateKeyNamesBothLines) {
  EXPECT_EQ(error_of("&model\n  d_model = 512\n  n_heads = 8\n  D_MODEL = 256\n/\n"),
            "run.nml:4: 'model%d_model' is set twice (lines 2 and 4)");
  EXPECT_EQ(error_of("&model d_model = 512 /\n&optim lr = 1e-3 /\n&model d_model = 256 /\n"),
            "run.nml:3: 'model%d_model' is set twice (lines 1 and 3)");
}

TEST(NamelistErrors, KeyWithoutEquals) {
  EXPECT_EQ(error_of("&model\n  d_model 512\n/"), "run.nml:2: expected '=' after 'model%d_model'");
  EXPECT_EQ(error_of("&model d_model /"), "run.nml:1: expected '=' after 'model%d_model'");
  EXPECT_EQ(error_of("&optim betas(1) = 0.9 /"),
            "run.nml:1: expected '=' after 'optim%betas' (elements cannot be set one by one; "
            "give the whole list)");
}

TEST(NamelistErrors, NotAKeyName) {
  EXPECT_EQ(error_of("&model\n 512 = 3 /"),
            "run.nml:2: &model: expected a key name or '/', got '512'");
  EXPECT_EQ(error_of("&model = 3 /"), "run.nml:1: &model: expected a key name or '/', got '='");
  EXPECT_EQ(error_of("&model 'x' /"), "run.nml:1: &model: expected a key name or '/', got '''");
}

TEST(NamelistErrors, KeyWithoutValue) {
  EXPECT_EQ(error_of("&model\n d_model =\n/"), "run.nml:2: 'model%d_model' has no value");
  EXPECT_EQ(error_of("&model d_model = , n_heads = 8 /"),
            "run.nml:1: 'model%d_model' has no value");
  EXPECT_EQ(error_of("&model d_model = n_heads = 8 /"), "run.nml:1: 'model%d_model' has no value");
  EXPECT_EQ(error_of("&model d_model = &end"), "run.nml:1: 'model%d_model' has no value");
  EXPECT_EQ(error_of("&optim\n betas = 0.9,\n ,0.98 /"),
            "run.nml:3: empty value in the list of 'optim%betas' (',,')");
}

TEST(NamelistErrors, UnquotedWordsAndBadNumbers) {
  EXPECT_EQ(error_of("&run\n task = train\n/"),
            "run.nml:2: cannot read 'train' as a value of 'run%task' (a string needs quotes: "
            "'train')");
  EXPECT_EQ(error_of("&model d_model = abc /"),
            "run.nml:1: cannot read 'abc' as a value of 'model%d_model' (a string needs quotes: "
            "'abc')");
  for (const std::string bad :
       {"1.2.3", "1e", "--5", "1e+", ".", "+", "5x", ".true", "1.0q3", "0x10"})
    EXPECT_EQ(error_of("&optim\n\n lr = " + bad + " /"),
              "run.nml:3: cannot read '" + bad + "' as a value of 'optim%lr'")
        << bad;
  EXPECT_EQ(error_of("&optim lr = 1 = 2 /"),
            "run.nml:1: unexpected '=' among the values of 'optim%lr'");
}

TEST(NamelistErrors, NumbersOutOfRange) {
  EXPECT_EQ(error_of("&run\n seed = 99999999999999999999 /"),
            "run.nml:2: 'run%seed' = 99999999999999999999 does not fit in a 64-bit integer");
  EXPECT_EQ(error_of("&optim lr = 1e999 /"),
            "run.nml:1: 'optim%lr' = 1e999 is out of the range of a double");
}

TEST(NamelistErrors, BadRepeats) {
  EXPECT_EQ(error_of("&optim betas = 0*0.9 /"),
            "run.nml:1: bad repeat count in '0*0.9' for 'optim%betas' (write n*value with n from "
            "1 to 1000000)");
  EXPECT_EQ(error_of("&optim betas = x*0.9 /"),
            "run.nml:1: bad repeat count in 'x*0.9' for 'optim%betas' (write n*value with n from "
            "1 to 1000000)");
  EXPECT_EQ(error_of("&optim betas = 2* 0.9 /"),
            "run.nml:1: '2*' repeats nothing in the values of 'optim%betas' (null values are not "
            "supported)");
  EXPECT_EQ(error_of("&optim betas = 2*abc /"),
            "run.nml:1: cannot read 'abc' as a value of 'optim%betas' (a string needs quotes: "
            "'abc')");
}

TEST(NamelistErrors, NonPrintableTextIsShownSafely) {
  const std::string message = error_of("&model d_model = 5\x01 /");
  EXPECT_EQ(message, "run.nml:1: cannot read '5?' as a value of 'model%d_model'");
}

TEST(NamelistErrors, OverrideValuesHaveNoLineNumber) {
  EXPECT_EQ(value_error_of("abc"),
            "--set model%d_model=abc: cannot read 'abc' as a value of 'model%d_model' (a string "
            "needs quotes: 'abc')");
  EXPECT_EQ(value_error_of(""), "--set model%d_model=: 'model%d_model' has no value");
  EXPECT_EQ(value_error_of("5 /"),
            "--set model%d_model=5 /: unexpected '/' after the value of "
            "'model%d_model'");
  EXPECT_EQ(value_error_of("5 n_heads = 3"),
            "--set model%d_model=5 n_heads = 3: unexpected 'n_heads' after the value of "
            "'model%d_model'");
  EXPECT_EQ(value_error_of("'5"),
            "--set model%d_model='5: unterminated string for key "
            "'model%d_model'");
}

// Issue 15: a key with a non-ASCII character is named as a bad key (it used to be read as a value
// of the key before it), wherever it stands; non-ASCII text in a quoted value stays fine.
TEST(NamelistErrors, NonAsciiKeyName) {
  EXPECT_EQ(error_of("&model d_model = 32, n_heads = 4, d_f\xC3\xA9 = 64 /\n"),
            "run.nml:1: &model: key name 'd_f\xC3\xA9' has a non-ASCII character (after 'd_f'); key names are "
            "ASCII letters, digits and '_'");
  EXPECT_EQ(error_of("&model d_model = 32\n  \xC3\xBCnits = 64 /\n"),
            "run.nml:2: &model: key name '\xC3\xBCnits' has a non-ASCII character (its first); key names are "
            "ASCII letters, digits and '_'");
  EXPECT_EQ(std::get<std::string>(values_of("&run output_dir = 'r\xC3\xA9sultats' /")[0]), "r\xC3\xA9sultats");
}

// Issue 15: NaN and infinities are not "a string that needs quotes".
TEST(NamelistErrors, NonFiniteReals) {
  EXPECT_EQ(error_of("&optim lr = nan /"), "run.nml:1: 'optim%lr' = nan is not a finite number (deck values are finite)");
  EXPECT_EQ(error_of("&optim lr = -Infinity /"),
            "run.nml:1: 'optim%lr' = -Infinity is not a finite number (deck values are finite)");
  EXPECT_EQ(value_error_of("+inf"),
            "--set model%d_model=+inf: 'model%d_model' = +inf is not a finite number (deck values are finite)");
  EXPECT_EQ(error_of("&optim lr = nanny /"),
            "run.nml:1: cannot read 'nanny' as a value of 'optim%lr' (a string needs quotes: 'nanny')");
}

}  // namespace
}  // namespace th
