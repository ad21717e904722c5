// The emulated device catches what it is for (th/backend/emulated.hpp): a host access to device
// memory faults at once with the job's error message; a host read of a pinned buffer that an
// asynchronous copy is still filling, or a write to one being copied from, faults until the host
// waits for it; copies, views, fills and kernels give the CPU backend's bytes; kernels refuse host
// pointers and asynchronous copies refuse pageable host memory.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <vector>

#include "th/backend/backend.hpp"
#include "th/backend/emulated.hpp"
#include "th/core/error.hpp"
#include "th/kernels/cpu.hpp"

using namespace th;

namespace {

Backend& dev() { return emulated_backend(); }

std::vector<float> iota_floats(int n, float start) {
  std::vector<float> v(static_cast<std::size_t>(n));
  std::iota(v.begin(), v.end(), start);
  return v;
}

// A device tensor holding `values`.
Tensor on_device(const std::vector<float>& values) {
  Tensor d = dev().empty({static_cast<std::int64_t>(values.size())}, DType::F32, MemCategory::Workspace);
  copy_to_device(dev(), d.data<float>(), values.data(), static_cast<std::int64_t>(values.size()));
  return d;
}

class EmulatedDeathTest : public ::testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

}  // namespace

TEST(EmulatedDevice, CopiesViewsAndFillsRoundTrip) {
  const std::vector<float> src = iota_floats(1000, 1.0f);
  Tensor d = on_device(src);
  EXPECT_TRUE(is_emulated_device_address(d.raw()));
  EXPECT_EQ(d.device(), Device::Cuda);
  std::vector<float> back(src.size());
  copy_to_host(dev(), back.data(), d.data<float>(), 1000);
  EXPECT_EQ(back, src);
  copy_device(dev(), d.data<float>() + 1, d.data<float>(), 999);  // overlapping, in stream order
  Tensor staging;
  const float* v = host_view(dev(), d.data<float>(), 1000, staging);
  EXPECT_NE(static_cast<const void*>(v), d.raw());  // a host copy, not the device address
  EXPECT_EQ(v[0], 1.0f);
  EXPECT_EQ(v[999], 999.0f);
  dev().f32().fill(d.data<float>(), 2.5f, 1000);
  dev().zero(d.data<float>(), 10 * sizeof(float), MemorySpace::Device);
  const float* w = host_view(dev(), d.data<float>(), 1000, staging);
  EXPECT_EQ(w[9], 0.0f);
  EXPECT_EQ(w[10], 2.5f);
  // host_to_device takes its source when issued: changing it afterwards changes nothing.
  std::vector<float> changing(1000, 7.0f);
  copy_to_device(dev(), d.data<float>(), changing.data(), 1000);
  std::fill(changing.begin(), changing.end(), -1.0f);
  EXPECT_EQ(host_view(dev(), d.data<float>(), 1000, staging)[500], 7.0f);
  EXPECT_DOUBLE_EQ(dev().f32().sum_squares(d.data<float>(), 1000), 49.0 * 1000);
}

TEST(EmulatedDevice, AsyncCopiesThroughPinnedMemoryAfterAWait) {
  const std::vector<float> src = iota_floats(5000, 0.5f);
  Tensor d = on_device(src);
  Tensor pinned = dev().empty({5000}, DType::F32, MemCategory::Workspace, MemorySpace::Pinned);
  EXPECT_TRUE(is_emulated_pinned_address(pinned.raw()));
  dev().copy_to_host_async(pinned.raw(), d.raw(), d.bytes());
  dev().wait(dev().record());
  EXPECT_EQ(0, std::memcmp(pinned.raw(), src.data(), d.bytes()));
  float* p = pinned.data<float>();
  for (int i = 0; i < 5000; ++i) p[i] = static_cast<float>(-i);  // writable again after the wait
  dev().copy_to_device_async(d.raw(), pinned.raw(), d.bytes());
  EXPECT_EQ(p[4999], -4999.0f);  // reading a source in flight is allowed
  dev().sync();
  std::vector<float> back(5000);
  copy_to_host(dev(), back.data(), d.data<float>(), 5000);
  EXPECT_EQ(back[4999], -4999.0f);
  EXPECT_GE(emulated_stats().async_copies, 2);
}

TEST(EmulatedDevice, KernelsRefuseHostPointersAndCopiesRefusePageableStaging) {
  Tensor d = on_device(iota_floats(16, 0.0f));
  std::vector<float> host(16, 1.0f);
  EXPECT_THROW(dev().f32().add_inplace(d.data<float>(), host.data(), 16), Error);
  EXPECT_THROW(dev().copy_to_host_async(host.data(), d.raw(), 64), Error);
  EXPECT_THROW(dev().host_to_device(d.raw(), d.raw(), 64), Error);  // a device source is not host data
}

TEST_F(EmulatedDeathTest, HostReadOfDeviceMemoryFaultsWithTheJobsMessage) {
  Tensor d = on_device(iota_floats(64, 3.0f));
  const volatile float* p = d.data<float>();
  EXPECT_DEATH({ [[maybe_unused]] float x = p[5]; }, "torch-handle: error: host access to emulated device memory");
}

TEST_F(EmulatedDeathTest, HostWriteOfDeviceMemoryFaults) {
  Tensor d = on_device(iota_floats(64, 3.0f));
  volatile float* p = d.data<float>();
  EXPECT_DEATH({ p[0] = 1.0f; }, "host access to emulated device memory");
}

TEST_F(EmulatedDeathTest, ReadingAPinnedBufferBeforeWaitingForItsCopyFaults) {
  Tensor d = on_device(iota_floats(4096, 1.0f));
  Tensor pinned = dev().empty({4096}, DType::F32, MemCategory::Workspace, MemorySpace::Pinned);
  EXPECT_DEATH(
      {
        dev().copy_to_host_async(pinned.raw(), d.raw(), d.bytes());
        [[maybe_unused]] const volatile float x = pinned.data<float>()[100];  // no wait: a race on a GPU
      },
      "pinned memory .* while an asynchronous copy is in flight: a missing synchronisation");
}

TEST_F(EmulatedDeathTest, WritingAPinnedSourceBeforeItsCopyFinishedFaults) {
  Tensor d = on_device(iota_floats(4096, 1.0f));
  Tensor pinned = dev().empty({4096}, DType::F32, MemCategory::Workspace, MemorySpace::Pinned);
  EXPECT_DEATH(
      {
        dev().copy_to_device_async(d.raw(), pinned.raw(), d.bytes());
        pinned.data<float>()[7] = 1.0f;
      },
      "while an asynchronous copy is in flight");
}

// The masked softmax with every index array the host hands it (key lengths per batch row, the
// document starts per query row): the emulated device copies them when the call is issued, all
// B*Tq of key_begin, and gives the CPU kernel's bytes.
TEST(EmulatedDevice, MaskedSoftmaxStagesItsIndexArraysWhole) {
  const int B = 2, H = 3, Tq = 5, Tk = 5;
  std::vector<float> scores(static_cast<std::size_t>(B * H * Tq * Tk));
  for (std::size_t i = 0; i < scores.size(); ++i) scores[i] = static_cast<float>((i * 37) % 11) * 0.25f - 1.0f;
  std::vector<int> key_len = {5, 4}, key_begin = {0, 0, 2, 2, 2, 0, 1, 1, 3, 3};  // B*Tq
  std::vector<float> ref = scores;
  cpu::attention_softmax_forward<float>(ref.data(), B, H, Tq, Tk, key_len.data(), true, 0, 0.5f, key_begin.data());
  Tensor d = on_device(scores);
  dev().f32().attention_softmax_forward(d.data<float>(), B, H, Tq, Tk, key_len.data(), true, 0, 0.5f,
                                        key_begin.data());
  std::fill(key_begin.begin(), key_begin.end(), 4);  // the host may reuse its arrays at once
  std::fill(key_len.begin(), key_len.end(), 1);
  std::vector<float> got(scores.size());
  copy_to_host(dev(), got.data(), d.data<float>(), static_cast<std::int64_t>(got.size()));
  EXPECT_EQ(0, std::memcmp(got.data(), ref.data(), sizeof(float) * got.size()));
}

// ---- reserved ranges (Backend::reserve: ZeRO 2-3's full-size ranges) and the copy stream -------

namespace {
std::vector<float> read_back(const float* d, std::int64_t n) {
  std::vector<float> v(static_cast<std::size_t>(n));
  copy_to_host(dev(), v.data(), d, n);
  return v;
}
}  // namespace

// Granules are backed by commit and given back by release once the stream has passed it; a
// granule backed again reads zero; the partial granules at the edges of a zeroing release are
// zeroed and stay backed; committed() counts backed and pending granules.
TEST(EmulatedDevice, ReservedRangesCommitAndGiveBackGranules) {
  auto r = dev().reserve(5 * 65536 + 100);
  const std::size_t g = r->granularity();
  ASSERT_EQ(g, 65536u);
  EXPECT_EQ(r->bytes(), 6 * g);
  EXPECT_EQ(r->committed(), 0u);
  auto* f = reinterpret_cast<float*>(r->data());
  const std::int64_t per = static_cast<std::int64_t>(g / sizeof(float));
  r->commit(g / 2, 2 * g, Backing::Now);  // overlaps granules 0, 1 and 2
  EXPECT_EQ(r->committed(), 3 * g);
  dev().f32().fill(f, 7.0f, 3 * per);
  EXPECT_EQ(read_back(f + 3 * per - 1, 1)[0], 7.0f);
  // Release [g/2, 3g) with zero: granules 1 and 2 go, the second half of granule 0 reads zero.
  r->release(g / 2, 3 * g - g / 2, true);
  dev().sync();
  r->commit(5 * g, 1, Backing::Now);  // polls: the release has completed
  EXPECT_EQ(r->committed(), 2 * g);  // granules 0 and 5
  const std::vector<float> g0 = read_back(f, per);
  EXPECT_EQ(g0[0], 7.0f);
  EXPECT_EQ(g0[static_cast<std::size_t>(per / 2)], 0.0f);
  r->commit(g, g, Backing::Now);  // granule 1 again: fresh, zero
  const std::vector<float> g1 = read_back(f + per, per);
  EXPECT_EQ(*std::max_element(g1.begin(), g1.end()), 0.0f);
  EXPECT_EQ(*std::min_element(g1.begin(), g1.end()), 0.0f);
}

TEST_F(EmulatedDeathTest, AKernelOnAnUncommittedGranuleFaults) {
  auto r = dev().reserve(4 * 65536);
  auto* f = reinterpret_cast<float*>(r->data());
  r->commit(0, 65536, Backing::Now);
  EXPECT_DEATH(
      {
        dev().f32().fill(f, 1.0f, 65536 / 4 + 1);  // one float past the committed granule
        dev().sync();
      },
      "a device operation touched emulated device memory that is not committed");
}

TEST_F(EmulatedDeathTest, AKernelAfterTheReleaseFaults) {
  auto r = dev().reserve(2 * 65536);
  auto* f = reinterpret_cast<float*>(r->data());
  r->commit(0, 2 * 65536, Backing::Now);
  r->release(0, 2 * 65536, false);
  EXPECT_DEATH(
      {
        dev().sync();
        r->committed();  // completes the release
        dev().f32().fill(f, 1.0f, 4);
        dev().sync();
      },
      "not committed");
}

// The copy stream runs in its own order: a copy up on it, ordered by stream_wait after the compute
// stream's initialisation of the destination and before a kernel on the compute stream that reads
// it, gives that kernel the new values.
TEST(EmulatedDevice, CopyStreamIsOrderedByStreamWait) {
  const std::vector<float> src = iota_floats(4096, 3.0f);
  Tensor pinned = dev().empty({4096}, DType::F32, MemCategory::Workspace, MemorySpace::Pinned);
  std::memcpy(pinned.raw(), src.data(), pinned.bytes());
  Tensor d = on_device(std::vector<float>(4096, 0.0f));
  Tensor out = on_device(std::vector<float>(4096, 0.0f));
  // d was zeroed on the compute stream: the copy stream must not overwrite it before that.
  dev().stream_wait(Backend::Stream::Copy, dev().record(Backend::Stream::Compute));
  dev().copy_to_device_async(d.raw(), pinned.raw(), d.bytes(), Backend::Stream::Copy);
  const Backend::Event up = dev().record(Backend::Stream::Copy);
  dev().stream_wait(Backend::Stream::Compute, up);
  dev().f32().add(out.data<float>(), d.data<float>(), d.data<float>(), 4096);
  const std::vector<float> got = read_back(out.data<float>(), 4096);
  EXPECT_EQ(got[0], 6.0f);
  EXPECT_EQ(got[4095], 2 * src[4095]);
  EXPECT_TRUE(dev().query(up));
  dev().wait(up);  // lifts the pinned source's protection
  static_cast<float*>(pinned.raw())[0] = 1.0f;
}

// The host runs at most one release ahead of the device: with the stream busy (a long queue of
// fills first), committing, using and releasing one granule after another must not let released
// granules pile up behind the queue (a GPU's queue would otherwise hold every unit's memory).
TEST(EmulatedDevice, ReleasesDoNotPileUpBehindABusyStream) {
  Tensor big = dev().empty({8 << 20}, DType::F32, MemCategory::Workspace);
  for (int i = 0; i < 20; ++i) dev().f32().fill(big.data<float>(), 1.0f, big.numel());  // ~0.6 GB of writes
  auto r = dev().reserve(20 * 65536);
  const std::size_t g = r->granularity();
  auto* f = reinterpret_cast<float*>(r->data());
  std::size_t most = 0;
  for (std::size_t u = 0; u < 20; ++u) {
    r->commit(u * g, g, Backing::Now);
    dev().f32().fill(f + u * (g / 4), 2.0f, static_cast<std::int64_t>(g / 4));
    r->release(u * g, g, false);
    most = std::max(most, r->committed());
  }
  EXPECT_LE(most, 3 * g) << "released granules piled up: " << most / g << " granules backed at once";
  dev().sync();
}
