// Fuzz target: PutStream (service/put_stream.h), the framing of a PutBlocks stream, on an
// arbitrary sequence of messages, each read as the server reads it: split by SplitField
// (service/field_split.h) into its data field, left in pieces, and its other fields. The input
// is a list of records [u16 little-endian length][serialized v1::PutBlocksRequest]; each record
// is cut into three pieces; records the splitter or protobuf refuse are skipped (the server
// answers those with InvalidArgument), the rest are consumed in order until the first error.
//
// Invariants:
//   - The splitter agrees with protobuf, the reference parser: when it accepts a record,
//     protobuf parses the record too, to the same data and the same other fields.
//   - The put budget holds exactly the raw size of the block being assembled (0 between
//     blocks), never more than its limit, and nothing once the stream is gone.
//   - A block handed out has exactly layout.RawBytes() bytes, which are the concatenation of
//     the data fields from the message that started it (with its key and layout) through the
//     message that completed it: no byte of another key or another block, ever.
//   - Blocks are numbered 0, 1, 2, ... in stream order; each layout is valid, within
//     max_block_bytes, and supported by the stream's policy.
//   - After an error the stream takes nothing more; Finish fails exactly when the stream had no
//     message or ended inside a block.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "codec/codec_policy.h"
#include "kvpack/v1/kvpack.pb.h"
#include "service/field_split.h"
#include "service/put_stream.h"
#include "tests/fuzz/fuzz_check.h"

namespace kvpack {
namespace {

constexpr uint64_t kMaxBlockBytes = 64 << 10;
constexpr uint64_t kBudgetBytes = 96 << 10;

struct Expected {
  std::string key;
  uint64_t raw_bytes;  // what the layout holds
  std::string data;
};

// Raw bytes of a wire layout the stream accepted (so its fields are in range).
uint64_t RawBytes(const v1::BlockLayout& layout) {
  const uint64_t element = layout.dtype() == v1::DTYPE_FLOAT32 ? 4 : 2;
  return uint64_t{layout.layers()} * 2 * layout.tokens() * layout.kv_heads() * layout.head_dim() *
         element;
}

void Run(const uint8_t* data, size_t size) {
  static const CodecPolicy* const policy = new CodecPolicy(*CodecPolicy::Parse("int8"));
  ByteBudget budget(kBudgetBytes);
  {
    PutStream stream(PutStreamLimits{policy, kMaxBlockBytes, &budget});
    std::optional<Expected> expected;  // the block being assembled, as the messages said
    uint32_t taken = 0;
    bool consumed_any = false;
    bool failed = false;
    size_t at = 0;
    while (at + 2 <= size && !failed) {
      const size_t length = data[at] | (size_t{data[at + 1]} << 8);
      at += 2;
      if (length > size - at) break;
      const uint8_t* record = data + at;
      at += length;
      v1::PutBlocksRequest request;
      const bool parsed = request.ParseFromArray(record, static_cast<int>(length));
      const absl::Span<const uint8_t> pieces[3] = {{record, length / 3},
                                                   {record + length / 3, length / 3},
                                                   {record + 2 * (length / 3),
                                                    length - 2 * (length / 3)}};
      SplitMessage split;
      v1::PutBlocksRequest fields;
      if (!SplitField(pieces, v1::PutBlocksRequest::kDataFieldNumber, &split).ok() ||
          !fields.ParseFromString(split.other_fields)) {
        continue;
      }
      FUZZ_CHECK(parsed) << "the splitter accepts a message protobuf rejects";
      std::string field;
      ForEachPart(pieces, split.field_offset, split.field_offset + split.field_size,
                  [&](absl::Span<const uint8_t> part) {
                    field.append(reinterpret_cast<const char*>(part.data()), part.size());
                  });
      FUZZ_CHECK(field == request.data()) << "the splitter found other data than protobuf";
      FUZZ_CHECK(fields.data().empty());
      fields.set_data(field);
      FUZZ_CHECK(fields.SerializeAsString() == request.SerializeAsString())
          << "the splitter's other fields differ from protobuf's";
      fields.clear_data();
      const v1::PutBlocksRequest copy = request;
      consumed_any = true;
      if (!stream.Consume(fields, MessageData::Copy(field)).ok()) {
        failed = true;
        break;
      }
      if (copy.has_layout()) expected = Expected{copy.key(), RawBytes(copy.layout()), ""};
      if (!copy.data().empty()) {
        FUZZ_CHECK(expected.has_value()) << "data accepted outside a block";
        expected->data += copy.data();
      }
      FUZZ_CHECK(budget.used() <= budget.limit());
      if (stream.has_complete_block()) {
        AssembledBlock block = stream.TakeBlock();
        FUZZ_CHECK(expected.has_value());
        FUZZ_CHECK(block.index == taken) << block.index << " != " << taken;
        FUZZ_CHECK(block.key == expected->key) << "a block took another key's bytes";
        const absl::Span<const uint8_t> raw = block.raw();
        FUZZ_CHECK(absl::string_view(reinterpret_cast<const char*>(raw.data()), raw.size()) ==
                   expected->data)
            << "the block's bytes are not its messages'";
        FUZZ_CHECK(raw.size() == block.layout.RawBytes());
        FUZZ_CHECK(block.header.layout == block.layout);
        FUZZ_CHECK(block.buffer->size() ==
                   (block.header.IsRaw() ? block.header.total_size : block.layout.RawBytes()));
        FUZZ_CHECK(block.layout.Validate().ok());
        FUZZ_CHECK(block.layout.RawBytes() <= kMaxBlockBytes);
        FUZZ_CHECK(stream.policy().Supports(block.layout).ok());
        FUZZ_CHECK(block.reservation.bytes() == block.layout.RawBytes());
        FUZZ_CHECK(budget.used() == block.layout.RawBytes());
        ++taken;
        expected.reset();
      }
      FUZZ_CHECK(stream.inside_block() == expected.has_value());
      FUZZ_CHECK(budget.used() == (expected.has_value() ? expected->raw_bytes : 0))
          << budget.used() << " bytes reserved";
    }
    if (!failed) {
      const bool finish_ok = stream.Finish().ok();
      FUZZ_CHECK(finish_ok == (consumed_any && !stream.inside_block()))
          << "Finish " << finish_ok << " with consumed_any " << consumed_any;
    }
  }
  FUZZ_CHECK(budget.used() == 0) << budget.used() << " bytes still reserved";
}

}  // namespace
}  // namespace kvpack

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  kvpack::Run(data, size);
  return 0;
}
