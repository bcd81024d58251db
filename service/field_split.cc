#include "service/field_split.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace kvpack {
namespace {

enum WireType : uint32_t {
  kVarint = 0,
  kFixed64 = 1,
  kLengthDelimited = 2,
  kStartGroup = 3,
  kEndGroup = 4,
  kFixed32 = 5,
};

// Reads a message given as pieces, byte by byte where it must (tags, varints) and by skipping
// where it can (payloads). Every read is bounds-checked against the pieces.
class PieceReader {
 public:
  explicit PieceReader(absl::Span<const absl::Span<const uint8_t>> pieces) : pieces_(pieces) {
    for (const absl::Span<const uint8_t> piece : pieces) size_ += piece.size();
  }

  uint64_t position() const { return position_; }
  uint64_t remaining() const { return size_ - position_; }

  bool ReadByte(uint8_t* byte) {
    while (piece_ < pieces_.size() && offset_ == pieces_[piece_].size()) {
      ++piece_;
      offset_ = 0;
    }
    if (piece_ == pieces_.size()) return false;
    *byte = pieces_[piece_][offset_++];
    ++position_;
    return true;
  }

  // A base-128 varint of at most 10 bytes.
  bool ReadVarint(uint64_t* value) {
    *value = 0;
    for (int shift = 0; shift < 70; shift += 7) {
      uint8_t byte;
      if (!ReadByte(&byte)) return false;
      *value |= uint64_t{byte & 0x7fu} << shift;
      if ((byte & 0x80) == 0) return true;
    }
    return false;
  }

  bool Skip(uint64_t n) {
    if (n > remaining()) return false;
    position_ += n;
    while (n > 0) {
      const uint64_t here = std::min<uint64_t>(n, pieces_[piece_].size() - offset_);
      offset_ += here;
      n -= here;
      if (offset_ == pieces_[piece_].size() && n > 0) {
        ++piece_;
        offset_ = 0;
      }
    }
    return true;
  }

 private:
  const absl::Span<const absl::Span<const uint8_t>> pieces_;
  uint64_t size_ = 0;
  uint64_t position_ = 0;
  size_t piece_ = 0;
  uint64_t offset_ = 0;
};

}  // namespace

absl::Status SplitField(absl::Span<const absl::Span<const uint8_t>> pieces, int field_number,
                        SplitMessage* split) {
  *split = SplitMessage();
  PieceReader reader(pieces);
  while (reader.remaining() > 0) {
    const uint64_t field_start = reader.position();
    uint64_t tag;
    if (!reader.ReadVarint(&tag) || tag > UINT32_MAX || (tag >> 3) == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("malformed message: bad field tag at byte ", field_start));
    }
    const uint32_t wire_type = tag & 7;
    const bool is_field = (tag >> 3) == static_cast<uint64_t>(field_number);
    if (is_field && wire_type != kLengthDelimited) {
      return absl::InvalidArgumentError(absl::StrCat(
          "malformed message: field ", field_number, " has wire type ", wire_type,
          ", not length-delimited"));
    }
    bool ok = false;
    uint64_t value;
    switch (wire_type) {
      case kVarint:
        ok = reader.ReadVarint(&value);
        break;
      case kFixed64:
        ok = reader.Skip(8);
        break;
      case kFixed32:
        ok = reader.Skip(4);
        break;
      case kLengthDelimited:
        ok = reader.ReadVarint(&value);
        if (ok && is_field) {
          split->has_field = true;  // a later occurrence replaces an earlier one
          split->field_offset = reader.position();
          split->field_size = value;
        }
        ok = ok && reader.Skip(value);
        break;
      default:  // groups are not used by kvpack's messages; 6 and 7 do not exist
        return absl::InvalidArgumentError(absl::StrCat(
            "malformed message: wire type ", wire_type, " at byte ", field_start));
    }
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat("malformed message: the field at byte ", field_start, " is truncated"));
    }
    if (!is_field) {
      ForEachPart(pieces, field_start, reader.position(), [&](absl::Span<const uint8_t> part) {
        split->other_fields.append(reinterpret_cast<const char*>(part.data()), part.size());
      });
    }
  }
  return absl::OkStatus();
}

}  // namespace kvpack
