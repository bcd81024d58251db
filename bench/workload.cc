#include "bench/workload.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <malloc.h>
#include <thread>

#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "codec/float_convert.h"
#include "codec/random.h"
#include "common/malloc_tuning.h"

namespace kvpack {
namespace bench {
namespace {

// Uniform in (0, 1].
double UnitOpen(uint64_t* state) {
  return (static_cast<double>(SplitMix64Next(state) >> 11) + 1.0) * 0x1.0p-53;
}

// Standard normal pairs by Box-Muller.
class Gaussian {
 public:
  explicit Gaussian(uint64_t seed) : state_(seed) {}
  float Next() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    const double r = std::sqrt(-2.0 * std::log(UnitOpen(&state_)));
    const double theta = 2.0 * M_PI * UnitOpen(&state_);
    spare_ = static_cast<float>(r * std::sin(theta));
    has_spare_ = true;
    return static_cast<float>(r * std::cos(theta));
  }

 private:
  uint64_t state_;
  float spare_ = 0;
  bool has_spare_ = false;
};

void StoreElement(float value, DType dtype, uint8_t* out) {
  switch (dtype) {
    case DType::kBFloat16: {
      const uint16_t bits = FloatToBFloat16(value);
      std::memcpy(out, &bits, 2);
      return;
    }
    case DType::kFloat16: {
      const uint16_t bits = FloatToHalf(value);
      std::memcpy(out, &bits, 2);
      return;
    }
    case DType::kFloat32:
      std::memcpy(out, &value, 4);
      return;
  }
}

}  // namespace

std::vector<uint8_t> MakeKvBlock(const BlockLayout& layout, uint64_t seed) {
  const size_t element_bytes = DTypeSize(layout.dtype);
  std::vector<uint8_t> bytes(layout.RawBytes());
  Gaussian gaussian(SplitMix64(seed));
  const uint32_t channels = layout.kv_heads * layout.head_dim;
  std::vector<float> scale(channels);
  std::vector<float> bias(channels);
  uint8_t* out = bytes.data();
  for (uint32_t layer = 0; layer < layout.layers; ++layer) {
    for (uint32_t kv = 0; kv < 2; ++kv) {
      // Per-channel magnitudes spread log-normally; one key channel in 16 is an outlier
      // with a large scale and offset, as in real key caches.
      for (uint32_t c = 0; c < channels; ++c) {
        scale[c] = std::exp(0.5f * gaussian.Next());
        bias[c] = 0.1f * gaussian.Next();
        if (kv == 0 && (SplitMix64(seed ^ (uint64_t{layer} << 32) ^ c) & 15) == 0) {
          scale[c] *= 8.0f;
          bias[c] = 4.0f * gaussian.Next();
        }
      }
      for (uint32_t token = 0; token < layout.tokens; ++token) {
        for (uint32_t c = 0; c < channels; ++c) {
          StoreElement(bias[c] + scale[c] * gaussian.Next(), layout.dtype, out);
          out += element_bytes;
        }
      }
    }
  }
  return bytes;
}

BlockLayout DefaultBlockLayout() {
  BlockLayout layout;
  layout.layers = 32;
  layout.kv_heads = 8;
  layout.head_dim = 128;
  layout.tokens = 16;
  layout.dtype = DType::kBFloat16;
  return layout;
}

BlockPool::BlockPool(const BlockLayout& layout, uint32_t distinct, uint64_t seed)
    : layout_(layout) {
  blocks_.reserve(distinct);
  for (uint32_t i = 0; i < distinct; ++i) {
    blocks_.push_back(MakeKvBlock(layout, seed + i * 0x9E3779B97F4A7C15ull));
  }
}

absl::Span<const uint8_t> BlockPool::Block(uint64_t index) const {
  return blocks_[index % blocks_.size()];
}

std::string WorkloadKey(uint64_t run_id, uint64_t index) {
  std::string key(16, '\0');
  for (int i = 0; i < 8; ++i) {
    key[i] = static_cast<char>((run_id >> (8 * i)) & 0xff);
    key[8 + i] = static_cast<char>((index >> (8 * i)) & 0xff);
  }
  return key;
}

double PhaseStats::GigabytesPerSecond() const {
  return seconds > 0 ? static_cast<double>(raw_bytes) / seconds / 1e9 : 0;
}

double PhaseStats::PercentileMicros(double p) const {
  if (latencies_us.empty()) return 0;
  const double clamped = std::min(100.0, std::max(0.0, p));
  // Nearest rank: the smallest value with at least p% of the values at or below it.
  size_t rank = static_cast<size_t>(std::ceil(clamped / 100.0 * latencies_us.size()));
  rank = std::max<size_t>(rank, 1);
  return latencies_us[rank - 1];
}

absl::StatusOr<PhaseStats> RunPhase(
    uint64_t operations, uint32_t concurrency, uint64_t bytes_per_operation,
    const std::function<absl::Status(uint64_t index, uint32_t worker)>& op) {
  concurrency = std::max<uint32_t>(concurrency, 1);
  std::atomic<uint64_t> next{0};
  std::atomic<bool> failed{false};
  absl::Mutex mu;
  absl::Status first_error;
  std::vector<std::vector<double>> latencies(concurrency);

  const absl::Time start = absl::Now();
  std::vector<std::thread> threads;
  threads.reserve(concurrency);
  for (uint32_t worker = 0; worker < concurrency; ++worker) {
    threads.emplace_back([&, worker] {
      std::vector<double>& mine = latencies[worker];
      while (!failed.load(std::memory_order_relaxed)) {
        const uint64_t index = next.fetch_add(1, std::memory_order_relaxed);
        if (index >= operations) break;
        const absl::Time op_start = absl::Now();
        absl::Status status = op(index, worker);
        mine.push_back(absl::ToDoubleMicroseconds(absl::Now() - op_start));
        if (!status.ok()) {
          absl::MutexLock lock(&mu);
          if (first_error.ok()) first_error = std::move(status);
          failed.store(true, std::memory_order_relaxed);
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  const absl::Duration elapsed = absl::Now() - start;
  if (!first_error.ok()) return first_error;

  PhaseStats stats;
  stats.operations = operations;
  stats.raw_bytes = operations * bytes_per_operation;
  stats.seconds = absl::ToDoubleSeconds(elapsed);
  for (const std::vector<double>& mine : latencies) {
    stats.latencies_us.insert(stats.latencies_us.end(), mine.begin(), mine.end());
  }
  std::sort(stats.latencies_us.begin(), stats.latencies_us.end());
  return stats;
}

std::string FormatPhase(absl::string_view name, const PhaseStats& stats) {
  return absl::StrFormat("%s: %.3f GB/s  p50 %.3f ms  p99 %.3f ms  (%d ops, %.3f s)", name,
                         stats.GigabytesPerSecond(), stats.PercentileMicros(50) / 1e3,
                         stats.PercentileMicros(99) / 1e3, stats.operations, stats.seconds);
}

void KeepLargeBuffersOnHeap() {
  TuneMallocForBlocks();
  mallopt(M_TOP_PAD, 64 << 20);
}

std::string DescribeBlocks(uint64_t blocks, const BlockLayout& layout) {
  return absl::StrFormat("%d blocks of %s (%.2f MiB each)", blocks, layout.DebugString(),
                         static_cast<double>(layout.RawBytes()) / (1 << 20));
}

}  // namespace bench
}  // namespace kvpack
