#include "tests/crash/key_model.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace kvpack {
namespace crash {

bool Expectation::Allows(std::optional<uint64_t> version) const {
  if (!version.has_value()) return absent_ok;
  return std::find(versions.begin(), versions.end(), *version) != versions.end();
}

std::string Expectation::ToString() const {
  std::string text = "{";
  for (uint64_t version : versions) {
    absl::StrAppend(&text, text.size() > 1 ? ", " : "", "v", version);
  }
  if (absent_ok) absl::StrAppend(&text, text.size() > 1 ? ", " : "", "not found");
  return absl::StrCat(text, "}");
}

void KeyModel::Send(const KeyOp& op) { sent_ = op; }

void KeyModel::Acknowledge(Tier tier) {
  const KeyOp op = *sent_;
  sent_.reset();
  if (op.type == KeyOp::Type::kDelete) {
    state_ = State::kAbsent;
    version_ = 0;
    how_ = "delete";
    return;
  }
  version_ = op.version;
  if (op.durable) {
    state_ = State::kDurable;
    how_ = "durable put";
  } else if (tier == Tier::kDisk) {
    state_ = State::kDurable;
    how_ = "put acked TIER_DISK";
  } else {
    // TIER_RAM (or, from a server that does not say, unspecified: the weaker promise).
    state_ = State::kVolatile;
    how_ = "put acked TIER_RAM";
  }
}

Expectation KeyModel::Live() const {
  Expectation expected;
  if (state_ == State::kAbsent) {
    expected.absent_ok = true;
  } else {
    expected.versions.push_back(version_);
  }
  return expected;
}

Expectation KeyModel::AfterCrash() const {
  Expectation expected = Live();
  if (state_ == State::kVolatile) expected.absent_ok = true;
  if (sent_.has_value()) {
    expected.absent_ok = true;
    if (sent_->type == KeyOp::Type::kPut) expected.versions.push_back(sent_->version);
  }
  return expected;
}

void KeyModel::Settle(std::optional<uint64_t> served_version) {
  sent_.reset();
  if (served_version.has_value()) {
    state_ = State::kDurable;
    version_ = *served_version;
    how_ = "served after restart";
  } else {
    state_ = State::kAbsent;
    version_ = 0;
    how_ = "not found after restart";
  }
}

std::string KeyModel::ToString() const {
  std::string text = how_;
  if (state_ != State::kAbsent) absl::StrAppend(&text, " v", version_);
  if (sent_.has_value()) {
    absl::StrAppend(&text, ", in flight: ",
                    sent_->type == KeyOp::Type::kDelete
                        ? std::string("delete")
                        : absl::StrCat(sent_->durable ? "durable " : "", "put v", sent_->version));
  }
  return text;
}

}  // namespace crash
}  // namespace kvpack
