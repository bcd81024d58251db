#include "service/codec_router.h"

#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"

namespace kvpack {
namespace {

constexpr double kEwmaWeight = 0.2;  // weight of the newest sample

}  // namespace

CodecRouter::CodecRouter(BlockCodec* cpu, BlockCodec* gpu, Mode mode)
    : codecs_{cpu, gpu},
      mode_(mode),
      name_(mode == Mode::kFastest
                ? absl::StrCat("auto(", cpu->device(), ",", gpu->device(), ")")
                : absl::StrCat(gpu->device(), "(", cpu->device(), " fallback)")) {}

std::string CodecRouter::Key(bool encode, const std::string& policy) {
  std::string key = absl::StrCat(encode ? "e:" : "d:", policy);
  absl::MutexLock lock(&mu_);
  if (speeds_.contains(key)) return key;
  if (keys_[encode] >= kMaxPolicies) return absl::StrCat(encode ? "e:" : "d:", kOtherPolicies);
  ++keys_[encode];
  speeds_.try_emplace(key);
  return key;
}

bool CodecRouter::PrefersCpu(const Speeds& s) const {
  if (s.gpu_unsupported) return true;
  if (mode_ == Mode::kGpuFirst) return false;
  return s.seconds_per_byte[0] != 0 && s.seconds_per_byte[1] != 0 &&
         s.seconds_per_byte[0] < s.seconds_per_byte[1];
}

int CodecRouter::Choose(const std::string& key) {
  absl::MutexLock lock(&mu_);
  Speeds& s = speeds_[key];
  ++s.calls;
  if (s.gpu_unsupported) return 0;
  if (mode_ == Mode::kGpuFirst) return 1;
  if (s.seconds_per_byte[1] == 0) return 1;  // measure the GPU first (after its warm-up)
  if (s.seconds_per_byte[0] == 0) return 0;
  const int preferred = s.seconds_per_byte[1] <= s.seconds_per_byte[0] ? 1 : 0;
  return s.calls % kExploreEvery == 0 ? 1 - preferred : preferred;
}

void CodecRouter::Record(const std::string& key, int device, double seconds, uint64_t bytes) {
  if (bytes == 0) return;
  absl::MutexLock lock(&mu_);
  Speeds& s = speeds_[key];
  if (s.runs[device]++ == 0) return;  // the warm-up call: not representative
  double& average = s.seconds_per_byte[device];
  const double sample = seconds / static_cast<double>(bytes);
  average = average == 0 ? sample : (1 - kEwmaWeight) * average + kEwmaWeight * sample;
}

absl::string_view CodecRouter::PreferredDevice(const std::string& policy, bool encode) {
  const std::string key = absl::StrCat(encode ? "e:" : "d:", policy);
  absl::MutexLock lock(&mu_);
  const auto it = speeds_.find(key);
  return codecs_[it != speeds_.end() && PrefersCpu(it->second) ? 0 : 1]->device();
}

std::vector<CodecRouter::Reading> CodecRouter::Readings() const {
  std::vector<Reading> readings;
  absl::MutexLock lock(&mu_);
  readings.reserve(speeds_.size());
  for (const auto& [key, s] : speeds_) {
    Reading r;
    r.encode = key[0] == 'e';
    r.policy = key.substr(2);
    for (int d = 0; d < 2; ++d) {
      r.bytes_per_second[d] = s.seconds_per_byte[d] > 0 ? 1 / s.seconds_per_byte[d] : 0;
    }
    r.preferred = std::string(codecs_[PrefersCpu(s) ? 0 : 1]->device());
    readings.push_back(std::move(r));
  }
  return readings;
}

absl::Status CodecRouter::Route(const std::string& key, uint64_t raw_bytes,
                                absl::string_view* ran_on, const Run& run) {
  int device = Choose(key);
  while (true) {
    const absl::Time start = absl::Now();
    const absl::Status result = run(codecs_[device]);
    if (device == 1 && result.code() == absl::StatusCode::kUnimplemented) {
      absl::MutexLock lock(&mu_);
      speeds_[key].gpu_unsupported = true;
      device = 0;
      continue;
    }
    if (device == 1 && !result.ok()) {
      // Out of memory, a failed launch, a lost device — or input that no device accepts. The
      // CPU codec is the reference: its answer is final, so a GPU fault never turns into a
      // wrong block or a block reported corrupt.
      const uint64_t failures = gpu_failures_.fetch_add(1, std::memory_order_relaxed) + 1;
      if (failures <= 10 || failures % 1000 == 0) {
        std::fprintf(stderr, "kvpack_server: %s failed (%s); the CPU takes the block (%llu so far)\n",
                     std::string(codecs_[1]->device()).c_str(),
                     std::string(result.message().substr(0, 300)).c_str(),
                     static_cast<unsigned long long>(failures));
      }
      device = 0;
      continue;
    }
    if (result.ok()) Record(key, device, absl::ToDoubleSeconds(absl::Now() - start), raw_bytes);
    if (ran_on != nullptr) *ran_on = codecs_[device]->device();
    return result;
  }
}

absl::StatusOr<uint64_t> CodecRouter::Encode(const BlockHeader& header, RawPieces raw,
                                             absl::Span<uint8_t> out,
                                             absl::string_view* ran_on) {
  uint64_t hash = 0;
  RETURN_IF_ERROR(Route(Key(/*encode=*/true, header.policy_text), header.layout.RawBytes(), ran_on,
                        [&](BlockCodec* codec) {
                          absl::StatusOr<uint64_t> sealed = codec->Encode(header, raw, out);
                          if (sealed.ok()) hash = *sealed;
                          return sealed.status();
                        }));
  return hash;
}

absl::Status CodecRouter::Decode(const BlockHeader& header, absl::Span<const uint8_t> encoded,
                                 absl::Span<uint8_t> raw_out, absl::string_view* ran_on) {
  return Route(Key(/*encode=*/false, header.policy_text), header.layout.RawBytes(), ran_on,
               [&](BlockCodec* codec) { return codec->Decode(header, encoded, raw_out); });
}

}  // namespace kvpack
