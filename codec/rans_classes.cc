#include "codec/rans_classes.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "codec/rans_avx2.h"
#include "codec/rans_internal.h"
#include "codec/segment_io.h"

namespace kvpack {

bool RansEncodeClasses(absl::Span<const RansTable> tables, absl::Span<const uint8_t> classes,
                       absl::Span<const uint8_t> symbols, absl::Span<uint8_t> out,
                       uint32_t lane_bytes[kRansLanes], RansPath path) {
  if (rans_internal::UseAvx2(path) && classes.size() % 8 == 0) {
    return rans_internal::EncodeClassesAvx2(tables, classes, symbols, out, lane_bytes);
  }
  using rans_internal::EncSymbol;
  // Constants of the tables the pattern uses, 256 symbols a table.
  int rows = 0;
  const std::vector<int> row = rans_internal::TableRows(tables.size(), classes, &rows);
  std::unique_ptr<EncSymbol[]> enc(new EncSymbol[size_t{256} * rows]);
  for (size_t t = 0; t < tables.size(); ++t) {
    if (row[t] < 0) continue;
    for (size_t s = 0; s < tables[t].freq.size(); ++s) {
      if (tables[t].freq[s] != 0) {
        enc[size_t{256} * row[t] + s] =
            rans_internal::MakeEncSymbol(tables[t].start[s], tables[t].freq[s]);
      }
    }
  }
  const size_t n = symbols.size(), period = classes.size();
  const size_t cap = rans_internal::LaneCapacity(n);
  std::unique_ptr<uint16_t[]> scratch(new uint16_t[cap * kRansLanes]);  // uninitialized
  uint32_t x[kRansLanes], pos[kRansLanes];
  for (int l = 0; l < kRansLanes; ++l) {
    pos[l] = static_cast<uint32_t>(cap * (l + 1));
    x[l] = kRansLow;
  }
  // Last symbol first, so that the decoder reads them first to last.
  size_t at = n % period;
  for (size_t i = n; i-- > 0;) {
    at = at == 0 ? period - 1 : at - 1;
    const int l = static_cast<int>(i % kRansLanes);
    rans_internal::EncodeSymbol(enc[size_t{256} * row[classes[at]] + symbols[i]], &x[l],
                                scratch.get(), &pos[l]);
  }
  return rans_internal::WriteLanes(x, pos, cap, scratch.get(), out, lane_bytes);
}

RansClassDecoder::RansClassDecoder(absl::Span<const RansTable> tables,
                                   absl::Span<const uint8_t> classes,
                                   absl::Span<const uint8_t> streams,
                                   const uint32_t lane_bytes[kRansLanes], RansPath path)
    : offset_(new uint32_t[classes.size()]),
      streams_(streams.data()),
      period_(classes.size()),
      group_(classes.size() % 8 == 0 ? rans_internal::DecodeGroupLanes(path) : 0) {
  // Slots only for the tables the pattern names.
  std::vector<int> slot_of(tables.size(), -1);
  int used = 0;
  for (uint8_t c : classes) {
    if (slot_of[c] < 0) slot_of[c] = used++;
  }
  slots_.reset(new uint32_t[size_t{kRansTotal} * used]);
  for (size_t t = 0; t < tables.size(); ++t) {
    if (slot_of[t] < 0) continue;
    uint32_t* slots = &slots_[size_t{kRansTotal} * slot_of[t]];
    for (size_t s = 0; s < tables[t].freq.size(); ++s) {
      const uint32_t f = tables[t].freq[s];
      for (uint32_t k = 0; k < f; ++k) {
        slots[tables[t].start[s] + k] = f | k << 13 | static_cast<uint32_t>(s) << 25;
      }
    }
  }
  for (size_t i = 0; i < period_; ++i) offset_[i] = kRansTotal * slot_of[classes[i]];
  rans_internal::StartLanes(streams_, lane_bytes, state_, next_, end_);
}

uint8_t RansClassDecoder::DecodeOne(bool* overrun) {
  const int l = lane_;
  const uint32_t e = slots_[offset_[at_] + (state_[l] & (kRansTotal - 1))];
  lane_ = (l + 1) & (kRansLanes - 1);
  at_ = at_ + 1 == period_ ? 0 : at_ + 1;
  return rans_internal::DecodeStep(e, l, streams_, state_, next_, end_, overrun);
}

// Groups start where lane_ is a multiple of 8, and with it at_ (the pattern's length is one).
absl::Status RansClassDecoder::Decode(size_t count, uint8_t* out) {
  return rans_internal::DecodeInGroups(
      group_, lane_, count, out, [this](bool* overrun) { return DecodeOne(overrun); },
      [this](size_t n, uint8_t* to) {
        return group_ == 16 ? DecodeAvx512(n, to) : DecodeAvx2(n, to);
      });
}

absl::Status RansClassDecoder::Finish() const {
  return rans_internal::FinishLanes(state_, next_, end_);
}

}  // namespace kvpack
