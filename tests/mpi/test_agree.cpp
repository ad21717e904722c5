// Agreeing on an error (th/parallel/agree.hpp), at 1, 2 and 4 ranks: nothing happens when no rank
// has a problem; otherwise every rank throws the lowest failing rank's message, as an InputError
// (kind Input, or an InputError thrown inside agree_each / agree_root) or a CollectiveError that
// names that rank (anything else).
#include <gtest/gtest.h>

#include <stdexcept>

#include "th/core/error.hpp"
#include "th/parallel/agree.hpp"
#include "training_support.hpp"

using namespace th;
using testing_support::world;

namespace {
struct Outcome {
  std::string what;
  bool input = false, collective = false;
  int origin = -1;
};

Outcome outcome_of(const std::function<void()>& f) {
  Outcome o;
  try {
    f();
  } catch (const InputError& e) {
    o.what = e.what();
    o.input = true;
  } catch (const CollectiveError& e) {
    o.what = e.what();
    o.collective = true;
    o.origin = e.origin();
  }
  return o;
}
}  // namespace

TEST(Agree, NoProblemNoThrow) {
  Comm& w = world();
  EXPECT_NO_THROW(agree_on_error(w, "", ErrorKind::Failure));
  EXPECT_NO_THROW(agree_each(w, [] {}));
  EXPECT_NO_THROW(agree_root(w, [] { return std::string(); }, ErrorKind::Input));
}

TEST(Agree, OneRanksProblemReachesEveryRank) {
  Comm& w = world();
  const int last = w.size() - 1;
  const std::string mine = w.rank() == last ? "disk of rank " + std::to_string(last) + " is full" : "";
  Outcome o = outcome_of([&] { agree_on_error(w, mine, ErrorKind::Failure); });
  EXPECT_TRUE(o.collective);
  EXPECT_EQ(o.what, "disk of rank " + std::to_string(last) + " is full");
  EXPECT_EQ(o.origin, last);  // world == w here

  o = outcome_of([&] { agree_on_error(w, mine, ErrorKind::Input); });
  EXPECT_TRUE(o.input);
  EXPECT_EQ(o.what, "disk of rank " + std::to_string(last) + " is full");
}

TEST(Agree, LowestFailingRankWins) {
  Comm& w = world();
  const Outcome o = outcome_of([&] {
    agree_on_error(w, w.rank() >= w.size() / 2 ? "rank " + std::to_string(w.rank()) : "", ErrorKind::Failure);
  });
  EXPECT_EQ(o.what, "rank " + std::to_string(w.size() / 2));
  EXPECT_EQ(o.origin, w.size() / 2);
}

TEST(Agree, EachTurnsExceptionsIntoTheirKind) {
  Comm& w = world();
  const int last = w.size() - 1;
  Outcome o = outcome_of([&] {
    agree_each(w, [&] {
      if (w.rank() == last) throw InputError("line 3: no TAB");
    });
  });
  EXPECT_TRUE(o.input);
  EXPECT_EQ(o.what, "line 3: no TAB");
  o = outcome_of([&] {
    agree_each(w, [&] {
      if (w.rank() == last) throw std::runtime_error("short read");
    });
  });
  EXPECT_TRUE(o.collective);
  EXPECT_EQ(o.what, "short read");
  EXPECT_EQ(o.origin, last);
  o = outcome_of([&] {
    agree_each(w, [&] {
      if (w.rank() == last) throw Error("");
    });
  });
  EXPECT_EQ(o.what, "an error without a message");  // still a problem
}

TEST(Agree, RootDecides) {
  Comm& w = world();
  Outcome o = outcome_of([&] { agree_root(w, [] { return std::string("bad deck"); }, ErrorKind::Input); });
  EXPECT_TRUE(o.input);
  EXPECT_EQ(o.what, "bad deck");
  o = outcome_of([&] {
    agree_root(w, []() -> std::string { throw std::runtime_error("cannot rename"); }, ErrorKind::Input);
  });
  EXPECT_TRUE(o.collective);  // an exception other than InputError is a failure, whatever the kind
  EXPECT_EQ(o.what, "cannot rename");
  EXPECT_EQ(o.origin, 0);
}
