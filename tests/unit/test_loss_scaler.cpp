// The fp16 loss scaler's state machine against its specification (th/train/loss_scaler.hpp,
// DeepSpeed's DynamicLossScaler with scale factor 2): hysteresis before halving, the floor,
// doubling after a window of clean steps (which restores the hysteresis), the stop after
// max_skipped_steps consecutive overflows at the floor, static scaling, and no scaling.
#include <gtest/gtest.h>

#include <string>

#include "th/core/error.hpp"
#include "th/train/loss_scaler.hpp"

using namespace th;

namespace {
LossScalerOptions dynamic(int power, int window, int hysteresis, double floor, int max_skipped = 20) {
  LossScalerOptions o;
  o.initial_power = power;
  o.window = window;
  o.hysteresis = hysteresis;
  o.min_scale = floor;
  o.max_skipped_steps = max_skipped;
  return o;
}
}  // namespace

TEST(LossScaler, NoScalingIsScaleOne) {
  LossScaler s;
  EXPECT_FALSE(s.enabled());
  EXPECT_EQ(s.scale(), 1.0);
}

TEST(LossScaler, HalvesAfterHysteresisOverflowsNeverBelowTheFloor) {
  LossScaler s(dynamic(4, 1000, 2, 2.0));  // 16, tolerate 1 overflow, floor 2
  EXPECT_EQ(s.scale(), 16.0);
  EXPECT_TRUE(s.update(true, 1));  // first overflow: tolerated, skipped, scale kept
  EXPECT_EQ(s.scale(), 16.0);
  EXPECT_TRUE(s.update(true, 2));  // second: halves
  EXPECT_EQ(s.scale(), 8.0);
  EXPECT_FALSE(s.update(false, 3));  // a clean step does not restore the tolerance (window not full)
  EXPECT_TRUE(s.update(true, 4));
  EXPECT_EQ(s.scale(), 4.0);
  EXPECT_TRUE(s.update(true, 5));
  EXPECT_EQ(s.scale(), 2.0);
  EXPECT_TRUE(s.update(true, 6));  // at the floor: stays
  EXPECT_EQ(s.scale(), 2.0);
  EXPECT_EQ(s.state().skipped_steps, 5);
}

TEST(LossScaler, DoublesAfterAWindowOfCleanStepsAndRestoresHysteresis) {
  LossScaler s(dynamic(3, 3, 2, 1.0));  // 8, window 3
  for (int i = 1; i <= 2; ++i) EXPECT_FALSE(s.update(false, i));
  EXPECT_EQ(s.scale(), 8.0);
  EXPECT_FALSE(s.update(false, 3));
  EXPECT_EQ(s.scale(), 16.0);
  EXPECT_TRUE(s.update(true, 4));  // tolerated (hysteresis 2)
  EXPECT_EQ(s.scale(), 16.0);
  EXPECT_FALSE(s.update(false, 5));
  EXPECT_FALSE(s.update(false, 6));
  EXPECT_TRUE(s.update(true, 7));  // the window restarted at the overflow: still 1 tolerance used
  EXPECT_EQ(s.scale(), 8.0);
  for (int i = 8; i <= 10; ++i) EXPECT_FALSE(s.update(false, i));
  EXPECT_EQ(s.scale(), 16.0);  // doubled after 3 clean steps, hysteresis back to 2
  EXPECT_TRUE(s.update(true, 11));
  EXPECT_EQ(s.scale(), 16.0);
  EXPECT_EQ(s.state().skipped_steps, 3);
}

TEST(LossScaler, StopsAfterMaxSkippedStepsAtTheFloor) {
  LossScaler s(dynamic(1, 1000, 1, 1.0, 3));  // 2, no tolerance, floor 1, stop after 3 at the floor
  EXPECT_TRUE(s.update(true, 1));
  EXPECT_EQ(s.scale(), 1.0);  // reached the floor: this overflow was above it
  EXPECT_TRUE(s.update(true, 2));
  EXPECT_TRUE(s.update(true, 3));
  EXPECT_FALSE(s.update(false, 4));  // a clean step resets the count
  EXPECT_TRUE(s.update(true, 5));
  EXPECT_TRUE(s.update(true, 6));
  try {
    s.update(true, 7);
    FAIL() << "no error after 3 consecutive overflows at the floor";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("loss scale 1"), std::string::npos) << m;
    EXPECT_NE(m.find("3 consecutive steps up to step 7"), std::string::npos) << m;
    EXPECT_NE(m.find("precision%max_skipped_steps"), std::string::npos) << m;
    EXPECT_NE(m.find("bf16"), std::string::npos) << m;
  }
}

TEST(LossScaler, StaticScaleNeverChangesAndStopsOnPersistentOverflow) {
  LossScalerOptions o;
  o.static_scale = 128;
  o.window = 1;
  o.max_skipped_steps = 2;
  LossScaler s(o);
  EXPECT_FALSE(s.update(false, 1));
  EXPECT_EQ(s.scale(), 128.0);  // no doubling
  EXPECT_TRUE(s.update(true, 2));
  EXPECT_EQ(s.scale(), 128.0);  // no halving
  EXPECT_THROW(s.update(true, 3), Error);
}
