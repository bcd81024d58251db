#include "service/block_wire.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpcpp/support/proto_buffer_reader.h"
#include "grpcpp/support/slice.h"

namespace kvpack {
namespace {

void AppendVarint(uint64_t value, std::string* out) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>(value | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

void ReleaseOwner(void* owner) { delete static_cast<std::shared_ptr<const void>*>(owner); }

}  // namespace

absl::Status ReadPutRequest(const grpc::ByteBuffer& message, v1::PutBlocksRequest* fields,
                            MessageData* data) {
  auto slices = std::make_shared<std::vector<grpc::Slice>>();
  const grpc::Status dumped = message.Dump(slices.get());
  if (!dumped.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read the message: ", dumped.error_message()));
  }
  std::vector<absl::Span<const uint8_t>> pieces;
  pieces.reserve(slices->size());
  for (const grpc::Slice& slice : *slices) pieces.emplace_back(slice.begin(), slice.size());
  SplitMessage split;
  absl::Status status = SplitField(pieces, v1::PutBlocksRequest::kDataFieldNumber, &split);
  if (!status.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("PutBlocksRequest: ", status.message()));
  }
  if (!fields->ParseFromString(split.other_fields)) {
    return absl::InvalidArgumentError("PutBlocksRequest: the message does not parse");
  }
  *data = MessageData();
  if (split.has_field && split.field_size > 0) {
    ForEachPart(pieces, split.field_offset, split.field_offset + split.field_size,
                [&](absl::Span<const uint8_t> part) { data->AddPiece(part); });
    data->AddOwner(std::move(slices));
  }
  return absl::OkStatus();
}

grpc::ByteBuffer GetResponseBuffer(const v1::GetBlocksResponse& fields,
                                   absl::Span<const uint8_t> data,
                                   std::shared_ptr<const void> owner) {
  std::string head = fields.SerializeAsString();
  if (data.empty()) {
    grpc::Slice slice(head);
    return grpc::ByteBuffer(&slice, 1);
  }
  AppendVarint(uint64_t{v1::GetBlocksResponse::kDataFieldNumber} << 3 | 2 /* length-delimited */, &head);
  AppendVarint(data.size(), &head);
  grpc::Slice slices[2] = {
      grpc::Slice(head),
      grpc::Slice(const_cast<uint8_t*>(data.data()), data.size(), &ReleaseOwner,
                  new std::shared_ptr<const void>(std::move(owner))),
  };
  return grpc::ByteBuffer(slices, 2);
}

grpc::ByteBuffer SerializeToBuffer(const google::protobuf::MessageLite& message) {
  grpc::Slice slice(message.SerializeAsString());
  return grpc::ByteBuffer(&slice, 1);
}

absl::Status ParseFromBuffer(const grpc::ByteBuffer& buffer,
                             google::protobuf::MessageLite* message) {
  grpc::ByteBuffer copy(buffer);  // shares the slices; the reader needs a mutable buffer
  grpc::ProtoBufferReader reader(&copy);
  if (!reader.status().ok() || !message->ParseFromZeroCopyStream(&reader)) {
    return absl::InvalidArgumentError(
        absl::StrCat(message->GetTypeName(), ": the message does not parse"));
  }
  return absl::OkStatus();
}

}  // namespace kvpack
