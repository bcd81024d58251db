#include "service/device_channel_registry.h"

#include <algorithm>
#include <random>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace kvpack {

// One channel as the registry holds it. The last owner (the map or a lease) to drop it
// destroys the channel's endpoint and gives its slot and bytes back.
struct DeviceChannelRegistry::Entry {
  DeviceChannelRegistry* registry = nullptr;
  Channel channel;
  int leases = 0;          // guarded by registry->mu_
  absl::Time last_used;    // guarded by registry->mu_
  ~Entry() {
    channel.endpoint.reset();
    if (registry != nullptr) registry->Release(channel.max_call_bytes);
  }
};

DeviceChannelRegistry::Lease& DeviceChannelRegistry::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    Reset();
    registry_ = other.registry_;
    entry_ = std::move(other.entry_);
    channel_ = other.channel_;
    other.registry_ = nullptr;
    other.channel_ = nullptr;
  }
  return *this;
}

void DeviceChannelRegistry::Lease::Reset() {
  if (entry_ == nullptr) return;
  {
    absl::MutexLock lock(&registry_->mu_);
    --entry_->leases;
    entry_->last_used = absl::Now();
  }
  entry_.reset();  // may destroy the channel, outside the lock
  registry_ = nullptr;
  channel_ = nullptr;
}

DeviceChannelRegistry::DeviceChannelRegistry(const DeviceChannelLimits& limits)
    : limits_(limits), teardown_([this] { TeardownLoop(); }) {}

DeviceChannelRegistry::~DeviceChannelRegistry() {
  stop_.Notify();
  teardown_.join();
  std::vector<std::shared_ptr<Entry>> entries;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [id, entry] : channels_) entries.push_back(std::move(entry));
    channels_.clear();
  }
  for (auto& entry : entries) {
    if (entry->channel.endpoint != nullptr) entry->channel.endpoint->Abort();
    entry->registry = nullptr;  // nothing to give back to a registry that is going
  }
}

void DeviceChannelRegistry::TeardownLoop() {
  const absl::Duration period =
      std::clamp(limits_.idle_timeout / 4, absl::Milliseconds(10), absl::Seconds(1));
  while (!stop_.WaitForNotificationWithTimeout(period)) CloseIdle(absl::Now());
}

absl::StatusOr<DeviceChannelRegistry::Lease> DeviceChannelRegistry::Open(
    const std::string& ns, int transport, uint64_t max_call_bytes, const EndpointFactory& make) {
  if (max_call_bytes == 0) max_call_bytes = std::min(limits_.default_call_bytes, limits_.max_bytes);
  if (max_call_bytes > limits_.max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_call_bytes ", max_call_bytes, " is above the server's limit of ",
                     limits_.max_bytes, " bytes for all device channels (--device_channel_bytes)"));
  }
  uint64_t id = 0;
  {
    absl::MutexLock lock(&mu_);
    if (slots_ >= limits_.max_channels) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the server has ", slots_, " device channels open (limit ", limits_.max_channels,
          ", --device_channels); close one or retry later"));
    }
    if (bytes_ + max_call_bytes > limits_.max_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "device channels hold ", bytes_, " of ", limits_.max_bytes,
          " bytes (--device_channel_bytes); ", max_call_bytes, " more do not fit"));
    }
    ++slots_;
    bytes_ += max_call_bytes;
    static thread_local std::mt19937_64 random{std::random_device{}()};
    do {
      id = random();
    } while (id == 0 || channels_.contains(id));
  }
  auto entry = std::make_shared<Entry>();
  entry->channel.id = id;
  entry->channel.ns = ns;
  entry->channel.transport = transport;
  entry->channel.max_call_bytes = max_call_bytes;
  entry->registry = this;  // from here on, destroying the entry gives the reservation back
  absl::StatusOr<std::unique_ptr<ChannelEndpoint>> endpoint = make(id, max_call_bytes);
  if (!endpoint.ok()) return endpoint.status();
  entry->channel.endpoint = *std::move(endpoint);
  Lease lease;
  {
    absl::MutexLock lock(&mu_);
    entry->leases = 1;
    entry->last_used = absl::Now();
    channels_[id] = entry;
  }
  opened_.fetch_add(1, std::memory_order_relaxed);
  lease.registry_ = this;
  lease.channel_ = &entry->channel;
  lease.entry_ = std::move(entry);
  return lease;
}

absl::StatusOr<DeviceChannelRegistry::Lease> DeviceChannelRegistry::Acquire(uint64_t id) {
  Lease lease;
  absl::MutexLock lock(&mu_);
  auto it = channels_.find(id);
  if (it == channels_.end()) {
    return absl::NotFoundError(absl::StrCat(
        "no open device channel ", id, " (closed, or torn down after ",
        absl::FormatDuration(limits_.idle_timeout), " idle); open a new one"));
  }
  ++it->second->leases;
  lease.registry_ = this;
  lease.entry_ = it->second;
  lease.channel_ = &it->second->channel;
  return lease;
}

absl::Status DeviceChannelRegistry::Close(uint64_t id, bool abort) {
  std::shared_ptr<Entry> entry;
  {
    absl::MutexLock lock(&mu_);
    auto it = channels_.find(id);
    if (it == channels_.end()) {
      return absl::NotFoundError(absl::StrCat("no open device channel ", id));
    }
    entry = std::move(it->second);
    channels_.erase(it);
  }
  if (abort && entry->channel.endpoint != nullptr) {
    entry->channel.endpoint->Abort();
    aborted_.fetch_add(1, std::memory_order_relaxed);
  }
  return absl::OkStatus();  // `entry` goes here unless a call still holds it
}

int DeviceChannelRegistry::CloseIdle(absl::Time now) {
  std::vector<std::shared_ptr<Entry>> idle;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = channels_.begin(); it != channels_.end();) {
      auto next = std::next(it);
      if (it->second->leases == 0 && now - it->second->last_used >= limits_.idle_timeout) {
        idle.push_back(std::move(it->second));
        channels_.erase(it);
      }
      it = next;
    }
  }
  idle_closed_.fetch_add(idle.size(), std::memory_order_relaxed);
  return static_cast<int>(idle.size());  // destroyed here, outside the lock
}

void DeviceChannelRegistry::Release(uint64_t bytes) {
  absl::MutexLock lock(&mu_);
  --slots_;
  bytes_ -= bytes;
}

int DeviceChannelRegistry::open_channels() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(channels_.size());
}

uint64_t DeviceChannelRegistry::reserved_bytes() const {
  absl::MutexLock lock(&mu_);
  return bytes_;
}

}  // namespace kvpack
