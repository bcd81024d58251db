#include "service/auth.h"

#include <sys/stat.h>

#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "service/auth_token_file.h"

namespace kvpack {

std::vector<PeerIdentity> PeerIdentities(const grpc::AuthContext& context) {
  std::vector<PeerIdentity> identities;
  if (!context.IsPeerAuthenticated()) return identities;
  for (const grpc::string_ref& cn : context.FindPropertyValues(GRPC_X509_CN_PROPERTY_NAME)) {
    identities.push_back({"CN", std::string(cn.data(), cn.size())});
  }
  for (const grpc::string_ref& san : context.FindPropertyValues(GRPC_X509_SAN_PROPERTY_NAME)) {
    identities.push_back({"SAN", std::string(san.data(), san.size())});
  }
  return identities;
}

bool Authenticator::FileVersion::operator==(const FileVersion& other) const {
  return exists == other.exists && device == other.device && inode == other.inode &&
         size == other.size && modified.tv_sec == other.modified.tv_sec &&
         modified.tv_nsec == other.modified.tv_nsec;
}

Authenticator::FileVersion Authenticator::Stat(const std::string& path) {
  FileVersion version;
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return version;
  version.exists = true;
  version.device = st.st_dev;
  version.inode = st.st_ino;
  version.size = st.st_size;
  version.modified = st.st_mtim;
  return version;
}

absl::StatusOr<std::unique_ptr<Authenticator>> Authenticator::Open(const AuthOptions& options) {
  if (options.token_file.empty()) return absl::InvalidArgumentError("no token file given");
  if (options.poll_interval < absl::ZeroDuration()) {
    return absl::InvalidArgumentError("the token file's poll interval must not be negative");
  }
  std::unique_ptr<Authenticator> auth(new Authenticator(options));
  {
    absl::MutexLock lock(&auth->reload_mu_);
    auth->seen_ = Stat(options.token_file);
    ASSIGN_OR_RETURN(std::shared_ptr<const GrantTable> table, ReadTokenFile(options.token_file));
    absl::MutexLock table_lock(&auth->mu_);
    auth->table_ = std::move(table);
  }
  if (options.poll_interval > absl::ZeroDuration()) {
    auth->poller_ = std::thread([a = auth.get()] { a->Poll(); });
  }
  return auth;
}

Authenticator::Authenticator(const AuthOptions& options) : options_(options) {}

Authenticator::~Authenticator() {
  {
    absl::MutexLock lock(&stop_mu_);
    stop_ = true;
  }
  if (poller_.joinable()) poller_.join();
}

absl::StatusOr<Permissions> Authenticator::Authenticate(const grpc::ServerContextBase& call) const {
  std::shared_ptr<const GrantTable> table;
  {
    absl::ReaderMutexLock lock(&mu_);
    table = table_;
  }
  const auto& metadata = call.client_metadata();
  auto it = metadata.find("authorization");
  if (it != metadata.end()) {
    return GrantTable::Authenticate(table, absl::string_view(it->second.data(), it->second.size()),
                                    {});
  }
  // Only a call without a token pays for the transport's auth context.
  const std::shared_ptr<const grpc::AuthContext> context = call.auth_context();
  const std::vector<PeerIdentity> peer =
      context != nullptr ? PeerIdentities(*context) : std::vector<PeerIdentity>();
  return GrantTable::Authenticate(table, "", peer);
}

absl::Status Authenticator::Reload() {
  absl::MutexLock lock(&reload_mu_);
  return ReloadLocked(Stat(options_.token_file));
}

absl::Status Authenticator::ReloadLocked(const FileVersion& version) {
  seen_ = version;
  absl::StatusOr<std::shared_ptr<const GrantTable>> table = ReadTokenFile(options_.token_file);
  if (!table.ok()) {
    reload_failures_.fetch_add(1, std::memory_order_relaxed);
    Log(absl::StrCat("--auth_tokens: kept the grants in force (", grants(),
                     "): ", table.status().message()));
    return table.status();
  }
  const size_t size = (*table)->size();
  {
    absl::MutexLock table_lock(&mu_);
    table_ = *std::move(table);
  }
  Log(absl::StrCat("--auth_tokens: reloaded ", options_.token_file, ", ", size, " grants"));
  return absl::OkStatus();
}

size_t Authenticator::grants() const {
  absl::ReaderMutexLock lock(&mu_);
  return table_->size();
}

void Authenticator::Log(const std::string& line) const {
  if (options_.log) {
    options_.log(line);
  } else {
    std::fprintf(stderr, "kvpack_server: %s\n", line.c_str());
  }
}

void Authenticator::Poll() {
  absl::MutexLock stop_lock(&stop_mu_);
  while (!stop_mu_.AwaitWithTimeout(absl::Condition(&stop_), options_.poll_interval)) {
    stop_mu_.Unlock();
    {
      const FileVersion version = Stat(options_.token_file);
      absl::MutexLock lock(&reload_mu_);
      if (!(version == seen_)) ReloadLocked(version).IgnoreError();  // logged; old grants kept
    }
    stop_mu_.Lock();
  }
}

}  // namespace kvpack
