#include "codec/rans.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "codec/rans_avx2.h"
#include "codec/rans_internal.h"
#include "codec/segment_io.h"

namespace kvpack {
using rans_internal::EncSymbol;
using rans_internal::MakeEncSymbol;

RansTable NormalizeRansTable(absl::Span<const uint64_t> counts) {
  RansTable t;
  t.freq.assign(counts.size(), 0);
  uint64_t total = 0;
  for (uint64_t c : counts) total += c;
  uint64_t assigned = 0;
  size_t top = 0;
  for (size_t s = 0; s < counts.size(); ++s) {
    if (counts[s] == 0) continue;
    const uint64_t f = std::max<uint64_t>(
        1, static_cast<uint64_t>((static_cast<unsigned __int128>(counts[s]) * kRansTotal) / total));
    t.freq[s] = static_cast<uint32_t>(f);
    assigned += f;
    if (counts[s] > counts[top]) top = s;
  }
  if (assigned <= kRansTotal) {
    t.freq[top] += static_cast<uint32_t>(kRansTotal - assigned);
  } else {
    // Only possible with many rare symbols floored up to 1.
    for (uint64_t excess = assigned - kRansTotal; excess > 0; --excess) {
      size_t big = 0;
      for (size_t s = 0; s < t.freq.size(); ++s) {
        if (t.freq[s] >= t.freq[big]) big = s;
      }
      --t.freq[big];
    }
  }
  FinishRansTable(&t).IgnoreError();  // the sum is kRansTotal by construction
  return t;
}

absl::Status FinishRansTable(RansTable* table) {
  table->start.assign(table->freq.size(), 0);
  uint64_t sum = 0;
  for (size_t s = 0; s < table->freq.size(); ++s) {
    table->start[s] = static_cast<uint32_t>(std::min<uint64_t>(sum, kRansTotal));
    sum += table->freq[s];
  }
  if (sum != kRansTotal) {
    return absl::InvalidArgumentError(
        absl::StrCat("entropy table frequencies sum to ", sum, ", not ", kRansTotal));
  }
  return absl::OkStatus();
}

double RansCodedBits(const RansTable& table, absl::Span<const uint64_t> counts) {
  double bits = 0;
  for (size_t s = 0; s < counts.size(); ++s) {
    if (counts[s] != 0) {
      bits += static_cast<double>(counts[s]) *
              (kRansScaleBits - std::log2(static_cast<double>(table.freq[s])));
    }
  }
  return bits;
}

namespace rans_internal {

bool UseAvx2(RansPath path) {
  static const bool have = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi2") &&
                           __builtin_cpu_supports("fma");
  return path != RansPath::kScalar && have;
}

int DecodeGroupLanes(RansPath path) {
  static const bool avx512 = __builtin_cpu_supports("avx512f") &&
                             __builtin_cpu_supports("avx512bw") &&
                             __builtin_cpu_supports("avx512vl");
  if (!UseAvx2(path)) return 0;
  return path != RansPath::kAvx2 && avx512 ? 16 : 8;
}

}  // namespace rans_internal

namespace {

using rans_internal::UseAvx2;

// The reference encoder: one symbol at a time, lanes round robin, last symbol first.
// Codes symbols [begin, end), symbol i in lane i mod kRansLanes.
void EncodeScalar(const RansTable& table, const uint8_t* symbols, size_t begin, size_t end,
                  uint32_t x[kRansLanes], uint32_t pos[kRansLanes], uint16_t* scratch) {
  EncSymbol enc[256];
  for (size_t s = 0; s < table.freq.size(); ++s) {
    if (table.freq[s] != 0) enc[s] = MakeEncSymbol(table.start[s], table.freq[s]);
  }
  for (size_t i = end; i-- > begin;) {
    const int l = static_cast<int>(i % kRansLanes);
    rans_internal::EncodeSymbol(enc[symbols[i]], &x[l], scratch, &pos[l]);
  }
}


}  // namespace

bool RansEncode(const RansTable& table, absl::Span<const uint8_t> symbols,
                absl::Span<uint8_t> out, uint32_t lane_bytes[kRansLanes], RansPath path) {
  if (UseAvx2(path)) return rans_internal::EncodeAvx2(table, symbols, out, lane_bytes);
  const size_t n = symbols.size();
  const size_t cap = rans_internal::LaneCapacity(n);
  std::unique_ptr<uint16_t[]> scratch_words(new uint16_t[cap * kRansLanes]);  // uninitialized
  uint16_t* const scratch = scratch_words.get();
  uint32_t x[kRansLanes];
  uint32_t pos[kRansLanes];
  for (int l = 0; l < kRansLanes; ++l) {
    pos[l] = static_cast<uint32_t>(cap * (l + 1));
    x[l] = kRansLow;
  }
  // Symbols are coded last to first so that the decoder reads them first to last.
  EncodeScalar(table, symbols.data(), 0, n, x, pos, scratch);
  return rans_internal::WriteLanes(x, pos, cap, scratch, out, lane_bytes);
}

namespace rans_internal {

bool WriteLanes(const uint32_t x[kRansLanes], const uint32_t pos[kRansLanes], size_t cap,
                const uint16_t* scratch, absl::Span<uint8_t> out,
                uint32_t lane_bytes[kRansLanes]) {
  size_t out_pos = 0;
  for (int l = 0; l < kRansLanes; ++l) {
    const size_t words = cap * (l + 1) - pos[l];
    const size_t bytes = 4 + 2 * words;
    if (out_pos + bytes > out.size()) return false;
    StoreLE32(out.data() + out_pos, x[l]);
    std::memcpy(out.data() + out_pos + 4, scratch + pos[l], 2 * words);  // little-endian host (segment_io.h)
    lane_bytes[l] = static_cast<uint32_t>(bytes);
    out_pos += bytes;
  }
  return true;
}

void StartLanes(const uint8_t* streams, const uint32_t lane_bytes[kRansLanes],
                uint32_t state[kRansLanes], int32_t next[kRansLanes], int32_t end[kRansLanes]) {
  int32_t pos = 0;
  for (int l = 0; l < kRansLanes; ++l) {
    state[l] = LoadLE32(streams + pos);
    next[l] = pos + 4;
    end[l] = pos + static_cast<int32_t>(lane_bytes[l]);
    pos = end[l];
  }
}

absl::Status FinishLanes(const uint32_t state[kRansLanes], const int32_t next[kRansLanes],
                         const int32_t end[kRansLanes]) {
  for (int l = 0; l < kRansLanes; ++l) {
    if (state[l] != kRansLow || next[l] != end[l]) {
      return absl::DataLossError(
          absl::StrCat("entropy lane ", l, " does not end where its stream does"));
    }
  }
  return absl::OkStatus();
}

}  // namespace rans_internal

absl::Status RansDecoder::Check(absl::Span<const uint8_t> streams,
                                const uint32_t lane_bytes[kRansLanes]) {
  uint64_t pos = 0;
  for (int l = 0; l < kRansLanes; ++l) {
    const uint32_t b = lane_bytes[l];
    if (b < 4 || b % 2 != 0) {
      return absl::DataLossError(absl::StrCat("entropy lane ", l, " has ", b, " bytes"));
    }
    if (pos + b > streams.size()) {
      return absl::DataLossError(
          absl::StrCat("entropy lane ", l, " runs past the end of the segment"));
    }
    const uint32_t x = LoadLE32(streams.data() + pos);
    if (x < kRansLow || x >= (1u << 31)) {
      return absl::DataLossError(absl::StrCat("entropy lane ", l, " has an invalid state"));
    }
    pos += b;
  }
  return absl::OkStatus();
}

RansDecoder::RansDecoder(const RansTable& table, absl::Span<const uint8_t> streams,
                         const uint32_t lane_bytes[kRansLanes], RansPath path)
    : streams_(streams.data()), group_(rans_internal::DecodeGroupLanes(path)) {
  if (table.freq.size() > 128) std::abort();  // the slot's symbol field has 7 bits
  for (size_t s = 0; s < table.freq.size(); ++s) {
    const uint32_t f = table.freq[s];
    for (uint32_t k = 0; k < f; ++k) {
      slots_[table.start[s] + k] = f | k << 13 | static_cast<uint32_t>(s) << 25;
    }
  }
  rans_internal::StartLanes(streams_, lane_bytes, state_, next_, end_);
}

uint8_t RansDecoder::DecodeOne(bool* overrun) {
  const int l = lane_;
  lane_ = (l + 1) & (kRansLanes - 1);
  return rans_internal::DecodeStep(slots_[state_[l] & (kRansTotal - 1)], l, streams_, state_,
                                   next_, end_, overrun);
}

absl::Status RansDecoder::Decode(size_t count, uint8_t* out) {
  return rans_internal::DecodeInGroups(
      group_, lane_, count, out, [this](bool* overrun) { return DecodeOne(overrun); },
      [this](size_t n, uint8_t* to) {
        return group_ == 16 ? DecodeAvx512(n, to) : DecodeAvx2(n, to);
      });
}

absl::Status RansDecoder::Finish() const {
  return rans_internal::FinishLanes(state_, next_, end_);
}

}  // namespace kvpack
