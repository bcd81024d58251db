// MessageData: the data field of one message as it arrived — pieces of the buffers gRPC
// received it in, with the owners that keep those buffers alive — until PutStream copies it
// into its block (service/block_wire.h says why the copy is made at once). Independent of gRPC:
// an owner is anything held by a shared_ptr.
//
// Not thread-safe; lives for one message.
#ifndef KVPACK_SERVICE_MESSAGE_DATA_H_
#define KVPACK_SERVICE_MESSAGE_DATA_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/types/span.h"

namespace kvpack {

class MessageData {
 public:
  MessageData() = default;

  // Bytes that stay valid while `owner` lives.
  void AddOwner(std::shared_ptr<const void> owner) { owners_.push_back(std::move(owner)); }
  // A piece of a buffer that an owner added before keeps alive. Empty pieces are dropped.
  void AddPiece(absl::Span<const uint8_t> piece) {
    if (piece.empty()) return;
    pieces_.push_back(piece);
    size_ += piece.size();
  }
  // A copy of `bytes` (tests, tools).
  static MessageData Copy(std::string bytes) {
    auto owner = std::make_shared<const std::string>(std::move(bytes));
    MessageData data;
    data.AddPiece(absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(owner->data()),
                                      owner->size()));
    data.AddOwner(std::move(owner));
    return data;
  }

  uint64_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  absl::Span<const absl::Span<const uint8_t>> pieces() const { return pieces_; }

  // All bytes in one string (tests, messages).
  std::string ToString() const {
    std::string out;
    out.reserve(size_);
    for (const absl::Span<const uint8_t> piece : pieces_) {
      out.append(reinterpret_cast<const char*>(piece.data()), piece.size());
    }
    return out;
  }

 private:
  std::vector<absl::Span<const uint8_t>> pieces_;
  std::vector<std::shared_ptr<const void>> owners_;
  uint64_t size_ = 0;
};

}  // namespace kvpack

#endif  // KVPACK_SERVICE_MESSAGE_DATA_H_
