#include <cstring>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "codec/block_codec.h"
#include "common/status_macros.h"

namespace kvpack {
namespace {

uint64_t TotalSize(RawPieces raw) {
  uint64_t total = 0;
  for (const absl::Span<const uint8_t> piece : raw) total += piece.size();
  return total;
}

std::string Where(const BlockSegment& segment) {
  return absl::StrCat("layer ", segment.layer, " ", segment.is_key ? "K" : "V", ": ");
}

// Walks the pieces of a raw block segment by segment. A segment that lies inside one piece is
// handed out in place; one that straddles pieces is gathered into a scratch buffer.
class SegmentReader {
 public:
  explicit SegmentReader(RawPieces raw) : raw_(raw) {}

  // The bytes [begin, begin + size) of the raw block; begin never decreases between calls.
  absl::Span<const uint8_t> Read(uint64_t begin, uint64_t size) {
    while (piece_ < raw_.size() && piece_start_ + raw_[piece_].size() <= begin) {
      piece_start_ += raw_[piece_].size();
      ++piece_;
    }
    const absl::Span<const uint8_t> piece = raw_[piece_];
    if (begin + size <= piece_start_ + piece.size()) {
      return piece.subspan(begin - piece_start_, size);
    }
    scratch_.resize(size);
    uint8_t* out = scratch_.data();
    uint64_t at = begin;
    size_t index = piece_;
    uint64_t start = piece_start_;
    while (at < begin + size) {
      const absl::Span<const uint8_t> p = raw_[index];
      const uint64_t n = std::min<uint64_t>(start + p.size(), begin + size) - at;
      std::memcpy(out, p.data() + (at - start), n);
      out += n;
      at += n;
      start += p.size();
      ++index;
    }
    return absl::MakeConstSpan(scratch_.data(), size);
  }

 private:
  const RawPieces raw_;
  size_t piece_ = 0;
  uint64_t piece_start_ = 0;
  std::vector<uint8_t> scratch_;
};

class CpuBlockCodec : public BlockCodec {
 public:
  absl::string_view device() const override { return "cpu"; }

  absl::StatusOr<uint64_t> Encode(const BlockHeader& header, RawPieces raw,
                                  absl::Span<uint8_t> out, absl::string_view* ran_on) override {
    if (ran_on != nullptr) *ran_on = device();
    const uint64_t raw_size = header.layout.RawBytes();
    const uint64_t given = TotalSize(raw);
    if (given != raw_size) {
      return absl::InvalidArgumentError(absl::StrCat("raw block is ", given,
                                                     " bytes, the layout (",
                                                     header.layout.DebugString(), ") needs ",
                                                     raw_size));
    }
    RETURN_IF_ERROR(WriteBlockHeader(header, out));
    const uint64_t segment_raw = header.layout.SegmentRawBytes();
    SegmentReader reader(raw);
    for (const BlockSegment& segment : header.segments) {
      const absl::Span<uint8_t> payload = out.subspan(segment.offset, segment.length);
      if (segment.codec->id() == CodecId::kRaw) {  // the payload is the raw bytes: one copy
        CopyRawRange(raw, segment.raw_offset, segment.raw_offset + segment_raw, payload.data());
        continue;
      }
      const absl::Status status = segment.codec->Encode(
          segment.shape, segment.context, reader.Read(segment.raw_offset, segment_raw), payload);
      if (!status.ok()) {
        return absl::Status(status.code(), absl::StrCat(Where(segment), status.message()));
      }
    }
    return SealBlock(out);
  }

  absl::Status Decode(const BlockHeader& header, absl::Span<const uint8_t> encoded,
                      absl::Span<uint8_t> raw_out, absl::string_view* ran_on) override {
    if (ran_on != nullptr) *ran_on = device();
    if (raw_out.size() != header.layout.RawBytes()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "decode buffer is ", raw_out.size(), " bytes, the block (",
          header.layout.DebugString(), ") needs ", header.layout.RawBytes()));
    }
    if (encoded.size() != header.total_size) {
      return absl::InvalidArgumentError(absl::StrCat("encoded block is ", encoded.size(),
                                                     " bytes, its header says ",
                                                     header.total_size));
    }
    const uint64_t segment_raw = header.layout.SegmentRawBytes();
    for (size_t i = 0; i < header.segments.size(); ++i) {
      const BlockSegment& segment = header.segments[i];
      const absl::Status status = segment.codec->Decode(
          segment.shape, encoded.subspan(segment.offset, segment.length),
          raw_out.subspan(segment.raw_offset, segment_raw));
      if (!status.ok()) {
        return absl::DataLossError(absl::StrCat("encoded block: segment ", i, " (layer ",
                                                segment.layer, " ", segment.is_key ? "K" : "V",
                                                "): ", status.message()));
      }
    }
    return absl::OkStatus();
  }
};

}  // namespace

void CopyRawRange(RawPieces raw, uint64_t begin, uint64_t end, uint8_t* out) {
  uint64_t start = 0;
  for (const absl::Span<const uint8_t> piece : raw) {
    const uint64_t stop = start + piece.size();
    if (stop > begin && start < end) {
      const uint64_t from = std::max(begin, start), to = std::min(end, stop);
      std::memcpy(out + (from - begin), piece.data() + (from - start), to - from);
    }
    if (stop >= end) break;
    start = stop;
  }
}

std::unique_ptr<BlockCodec> NewCpuBlockCodec() { return std::make_unique<CpuBlockCodec>(); }

}  // namespace kvpack
