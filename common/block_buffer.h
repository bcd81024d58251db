// BlockBuffer: a fixed-size heap buffer whose bytes start uninitialized, for blocks that are
// always written in full before anything reads them (an encoded block, a decoded one).
// std::string has no way to allocate without writing every byte first (C++23's
// resize_and_overwrite is not available here), and zeroing a 2 MiB block before overwriting
// it, with the page faults of touching fresh memory twice, cost about a fifth of a put's
// server CPU (bench/RESULTS.md, stage profile). Reads like a string: data(), size(), and
// implicit conversion to absl::string_view.
//
// Not thread-safe to write; immutable and shareable once written (as a
// std::shared_ptr<const BlockBuffer>).
#ifndef KVPACK_COMMON_BLOCK_BUFFER_H_
#define KVPACK_COMMON_BLOCK_BUFFER_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <ostream>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace kvpack {

class BlockBuffer {
 public:
  // `size` bytes with unspecified contents.
  explicit BlockBuffer(size_t size) : data_(new char[size]), size_(size) {}
  BlockBuffer(const BlockBuffer&) = delete;
  BlockBuffer& operator=(const BlockBuffer&) = delete;

  static std::shared_ptr<BlockBuffer> Allocate(size_t size) {
    return std::make_shared<BlockBuffer>(size);
  }
  // A buffer holding a copy of `bytes`.
  static std::shared_ptr<BlockBuffer> Copy(absl::string_view bytes) {
    auto buffer = std::make_shared<BlockBuffer>(bytes.size());
    if (!bytes.empty()) std::memcpy(buffer->data(), bytes.data(), bytes.size());
    return buffer;
  }

  char* data() { return data_.get(); }
  const char* data() const { return data_.get(); }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  char& operator[](size_t i) { return data_[i]; }
  char operator[](size_t i) const { return data_[i]; }

  absl::string_view view() const { return absl::string_view(data(), size_); }
  operator absl::string_view() const { return view(); }  // NOLINT: reads like a string
  absl::Span<uint8_t> bytes() { return {reinterpret_cast<uint8_t*>(data()), size_}; }
  absl::Span<const uint8_t> bytes() const {
    return {reinterpret_cast<const uint8_t*>(data()), size_};
  }

  friend bool operator==(const BlockBuffer& a, const BlockBuffer& b) { return a.view() == b.view(); }
  friend bool operator!=(const BlockBuffer& a, const BlockBuffer& b) { return a.view() != b.view(); }
  friend bool operator==(const BlockBuffer& a, absl::string_view b) { return a.view() == b; }
  friend bool operator==(absl::string_view a, const BlockBuffer& b) { return a == b.view(); }
  friend bool operator!=(const BlockBuffer& a, absl::string_view b) { return a.view() != b; }
  friend bool operator!=(absl::string_view a, const BlockBuffer& b) { return a != b.view(); }
  // For test failure messages: the size, not the bytes.
  friend std::ostream& operator<<(std::ostream& out, const BlockBuffer& b) {
    return out << "BlockBuffer(" << b.size() << " bytes)";
  }

 private:
  std::unique_ptr<char[]> data_;  // new char[n]: default-initialized, i.e. not written
  size_t size_;
};

}  // namespace kvpack

#endif  // KVPACK_COMMON_BLOCK_BUFFER_H_
