#include "service/codec_router.h"

#include <map>

#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "codec/block_format.h"
#include "gtest/gtest.h"
#include "service/codec_router_metrics.h"

namespace kvpack {
namespace {

// A real CPU codec that takes `delay` longer per call and answers to another device name;
// or, with `unimplemented`, has no implementation at all (as a GPU without a codec's kernel).
class TimedCodec : public BlockCodec {
 public:
  TimedCodec(std::string name, absl::Duration delay, bool unimplemented = false,
             absl::Duration first_call_delay = absl::ZeroDuration())
      : name_(std::move(name)), delay_(delay), first_call_delay_(first_call_delay),
        unimplemented_(unimplemented), cpu_(NewCpuBlockCodec()) {}
  absl::string_view device() const override { return name_; }
  absl::StatusOr<uint64_t> Encode(const BlockHeader& header, RawPieces raw,
                                  absl::Span<uint8_t> out, absl::string_view* ran_on) override {
    ++calls;
    if (unimplemented_) return absl::UnimplementedError("no kernel");
    if (!fail_with.ok()) return fail_with;
    absl::SleepFor(calls == 1 ? delay_ + first_call_delay_ : delay_);
    if (ran_on != nullptr) *ran_on = name_;
    return cpu_->Encode(header, raw, out);
  }
  absl::Status Decode(const BlockHeader& header, absl::Span<const uint8_t> encoded,
                      absl::Span<uint8_t> raw_out, absl::string_view* ran_on) override {
    ++calls;
    if (unimplemented_) return absl::UnimplementedError("no kernel");
    if (!fail_with.ok()) return fail_with;
    absl::SleepFor(delay_);
    if (ran_on != nullptr) *ran_on = name_;
    return cpu_->Decode(header, encoded, raw_out);
  }
  int calls = 0;
  absl::Status fail_with;  // when not OK, every call fails with it (a faulty device)

 private:
  std::string name_;
  absl::Duration delay_;
  absl::Duration first_call_delay_;
  bool unimplemented_;
  std::unique_ptr<BlockCodec> cpu_;
};

class CodecRouterTest : public ::testing::Test {
 protected:
  CodecRouterTest() {
    layout_.layers = 2;
    layout_.kv_heads = 2;
    layout_.head_dim = 32;
    layout_.tokens = 4;
    raw_.assign(layout_.RawBytes(), 0x3c);
    header_ = *PlanBlock(layout_, *CodecPolicy::Parse("int8"), 1);
  }

  absl::string_view EncodeOnce(CodecRouter& router) {
    absl::string_view ran_on;
    const absl::Span<const uint8_t> raw = raw_;
    std::vector<uint8_t> out(header_.total_size);
    auto hash = router.Encode(header_, {&raw, 1}, absl::MakeSpan(out), &ran_on);
    EXPECT_TRUE(hash.ok()) << hash.status();
    return ran_on;
  }

  // The block, encoded by the CPU codec: what a router decodes.
  std::string EncodeWithCpu() {
    auto encoded = EncodeBlock(layout_, header_.policy, raw_, 1);
    EXPECT_TRUE(encoded.ok()) << encoded.status();
    return encoded.value_or("");
  }

  BlockLayout layout_;
  std::vector<uint8_t> raw_;
  BlockHeader header_;
};

TEST_F(CodecRouterTest, SendsBlocksToTheDeviceMeasuredFaster) {
  TimedCodec cpu("cpu", absl::Milliseconds(5));
  TimedCodec gpu("cuda:0", absl::ZeroDuration());
  CodecRouter router(&cpu, &gpu, CodecRouter::Mode::kFastest);
  int on_gpu = 0;
  for (int i = 0; i < 2 * CodecRouter::kExploreEvery; ++i) on_gpu += EncodeOnce(router) == "cuda:0";
  // The CPU gets its warm-up call, one measured call and two explorations.
  EXPECT_GE(on_gpu, 2 * CodecRouter::kExploreEvery - 4);
  EXPECT_GE(cpu.calls, 1) << "the slower device was never measured";
  EXPECT_EQ(router.PreferredDevice(header_.policy_text, /*encode=*/true), "cuda:0");
}

TEST_F(CodecRouterTest, ASlowFirstCallDoesNotPinTheChoice) {
  // A GPU's first call pays for its memory pools and first launches.
  TimedCodec cpu("cpu", absl::Milliseconds(3));
  TimedCodec gpu("cuda:0", absl::ZeroDuration(), false, absl::Milliseconds(100));
  CodecRouter router(&cpu, &gpu, CodecRouter::Mode::kFastest);
  int on_gpu = 0;
  for (int i = 0; i < CodecRouter::kExploreEvery; ++i) on_gpu += EncodeOnce(router) == "cuda:0";
  EXPECT_GE(on_gpu, CodecRouter::kExploreEvery - 4);
}

TEST_F(CodecRouterTest, FollowsTheCpuWhenItIsFaster) {
  TimedCodec cpu("cpu", absl::ZeroDuration());
  TimedCodec gpu("cuda:0", absl::Milliseconds(5));
  CodecRouter router(&cpu, &gpu, CodecRouter::Mode::kFastest);
  int on_cpu = 0;
  for (int i = 0; i < CodecRouter::kExploreEvery; ++i) on_cpu += EncodeOnce(router) == "cpu";
  EXPECT_GE(on_cpu, CodecRouter::kExploreEvery - 3);
}

TEST_F(CodecRouterTest, FallsBackToTheCpuForCodecsWithoutGpuKernels) {
  TimedCodec cpu("cpu", absl::ZeroDuration());
  TimedCodec gpu("cuda:0", absl::ZeroDuration(), /*unimplemented=*/true);
  CodecRouter router(&cpu, &gpu, CodecRouter::Mode::kGpuFirst);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(EncodeOnce(router), "cpu");
  EXPECT_EQ(gpu.calls, 1) << "the router should remember that the GPU cannot do this policy";
}

TEST_F(CodecRouterTest, GpuFirstModeNeverMeasures) {
  TimedCodec cpu("cpu", absl::ZeroDuration());
  TimedCodec gpu("cuda:0", absl::Milliseconds(1));
  CodecRouter router(&cpu, &gpu, CodecRouter::Mode::kGpuFirst);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(EncodeOnce(router), "cuda:0");
  EXPECT_EQ(cpu.calls, 0);
}

TEST_F(CodecRouterTest, DecodeIsRoutedLikeEncode) {
  TimedCodec cpu("cpu", absl::ZeroDuration());
  TimedCodec gpu("cuda:0", absl::ZeroDuration(), /*unimplemented=*/true);
  CodecRouter router(&cpu, &gpu, CodecRouter::Mode::kGpuFirst);
  const std::string encoded = EncodeWithCpu();
  const auto bytes = absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(encoded.data()),
                                         encoded.size());
  auto info = ParseBlock(bytes);
  ASSERT_TRUE(info.ok()) << info.status();
  absl::string_view ran_on;
  std::vector<uint8_t> decoded(layout_.RawBytes());
  const absl::Status status = router.Decode(*info, bytes, absl::MakeSpan(decoded), &ran_on);
  ASSERT_TRUE(status.ok()) << status;
  EXPECT_EQ(ran_on, "cpu");
  auto reference = DecodeBlock(bytes);
  ASSERT_TRUE(reference.ok());
  EXPECT_EQ(std::string(decoded.begin(), decoded.end()), *reference);
}

// A GPU fault used to reach the client as the block's error (DATA_LOSS on a get), and a get
// would then have dropped a good block as unreadable.
TEST_F(CodecRouterTest, GpuFailuresAreRedoneOnTheCpu) {
  TimedCodec cpu("cpu", absl::ZeroDuration());
  TimedCodec gpu("cuda:0", absl::ZeroDuration());
  CodecRouter router(&cpu, &gpu, CodecRouter::Mode::kGpuFirst);
  const std::string encoded = EncodeWithCpu();
  const auto bytes = absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(encoded.data()),
                                         encoded.size());
  auto info = ParseBlock(bytes);
  ASSERT_TRUE(info.ok()) << info.status();

  for (const absl::Status& fault :
       {absl::ResourceExhaustedError("cudaErrorMemoryAllocation"),
        absl::InternalError("cudaErrorLaunchFailure"), absl::DataLossError("bad payload?")}) {
    gpu.fail_with = fault;
    EXPECT_EQ(EncodeOnce(router), "cpu") << fault;
    absl::string_view ran_on;
    std::vector<uint8_t> decoded(layout_.RawBytes());
    const absl::Status status = router.Decode(*info, bytes, absl::MakeSpan(decoded), &ran_on);
    ASSERT_TRUE(status.ok()) << fault << " -> " << status;
    EXPECT_EQ(ran_on, "cpu");
  }
  EXPECT_EQ(router.gpu_failures(), 6u);
  gpu.fail_with = absl::OkStatus();
  EXPECT_EQ(EncodeOnce(router), "cuda:0") << "a recovered GPU is used again";
}

// What --device=auto measured and chose is on /metrics: a speed per device once measured, and
// the preferred device.
TEST_F(CodecRouterTest, MetricsShowMeasuredSpeedsAndTheChoice) {
  TimedCodec cpu("cpu", absl::Milliseconds(4));
  TimedCodec gpu("cuda:0", absl::ZeroDuration());
  CodecRouter router(&cpu, &gpu, CodecRouter::Mode::kFastest);
  for (int i = 0; i < 8; ++i) EncodeOnce(router);
  std::map<std::string, double> speed, preferred;
  for (const auto& family : CodecRouterCollector(&router).Collect()) {
    for (const auto& m : family.metric) {
      std::string key;
      for (const auto& l : m.label) key += l.name + "=" + l.value + ",";
      (family.name == "kvpack_codec_measured_bytes_per_second" ? speed : preferred)[key] =
          m.gauge.value;
    }
  }
  const std::string policy = header_.policy_text;
  const std::string cpu_key = "device=cpu,direction=encode,policy=" + policy + ",";
  const std::string gpu_key = "device=cuda:0,direction=encode,policy=" + policy + ",";
  ASSERT_EQ(speed.count(cpu_key), 1u) << "the CPU was measured";
  ASSERT_EQ(speed.count(gpu_key), 1u);
  // At least 4 ms per block on the CPU; the GPU stand-in has no delay.
  EXPECT_LE(speed[cpu_key], layout_.RawBytes() / 0.004);
  EXPECT_GT(speed[gpu_key], speed[cpu_key]);
  EXPECT_EQ(preferred[gpu_key], 1);
  EXPECT_EQ(preferred[cpu_key], 0);
  EXPECT_EQ(speed.count("device=cpu,direction=decode,policy=" + policy + ","), 0u)
      << "nothing decoded";
}

// A client sending ever new policy texts cannot grow the router's table: past kMaxPolicies
// they share one entry, and are still routed and encoded correctly.
TEST_F(CodecRouterTest, TheTableOfPoliciesIsBounded) {
  TimedCodec cpu("cpu", absl::ZeroDuration());
  TimedCodec gpu("cuda:0", absl::ZeroDuration());
  CodecRouter router(&cpu, &gpu, CodecRouter::Mode::kFastest);
  const std::string text = header_.policy_text;
  for (size_t i = 0; i < CodecRouter::kMaxPolicies + 50; ++i) {
    // The router keys on the policy text; one of the same length keeps the header's sizes.
    const std::string digits = absl::StrCat(1000 + i);
    header_.policy_text = text.substr(0, text.size() - digits.size()) + digits;
    EXPECT_FALSE(EncodeOnce(router).empty());
  }
  const auto readings = router.Readings();
  EXPECT_EQ(readings.size(), CodecRouter::kMaxPolicies + 1);
  bool other = false;
  for (const auto& r : readings) other |= r.policy == CodecRouter::kOtherPolicies;
  EXPECT_TRUE(other);
}

}  // namespace
}  // namespace kvpack
