// Authenticator: per-call authentication of a server started with --auth_tokens=FILE. Holds
// the grants of the token file (auth_token_file.h), reloads them when the file changes (its
// modification time, size or inode, checked every poll_interval) or when asked (SIGHUP), and
// turns a call's credentials into its Permissions (auth_grants.h):
//
//   credentials                                     answer
//   ----------------------------------------------  ---------------------------------------
//   "authorization: Bearer <token>", token granted  the token's permissions
//   "authorization" metadata of another form        UNAUTHENTICATED
//   a token not in the file                         UNAUTHENTICATED ("unknown token")
//   no token, a verified client certificate whose   the union of those identities'
//     CN or a SAN has identity grants               permissions
//   no token, no certificate with a grant           UNAUTHENTICATED ("no token: ...")
//
// A reload that fails (the file is gone, unreadable or malformed) keeps the grants in force and
// is logged; the file is read again when it next changes.
//
// Thread-safe: Authenticate runs on any number of gRPC threads while a reload swaps the grants.
#ifndef KVPACK_SERVICE_AUTH_H_
#define KVPACK_SERVICE_AUTH_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <ctime>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "service/auth_grants.h"

namespace kvpack {

struct AuthOptions {
  std::string token_file;  // required
  // How often the file's modification time is checked; zero = never (only Reload()).
  absl::Duration poll_interval = absl::Seconds(2);
  // Receives one line per reload, failed or not; null = stderr.
  std::function<void(const std::string&)> log;
};

// The identities of the verified client certificate of `context` ("CN=...", and "SAN=..." for
// each subject alternative name); empty when the peer is not authenticated (no TLS, or TLS
// without a client certificate).
std::vector<PeerIdentity> PeerIdentities(const grpc::AuthContext& context);

class Authenticator {
 public:
  // Reads the token file; InvalidArgument naming the file and line for a malformed one, the
  // read error for one that cannot be read. Starts the poll thread.
  static absl::StatusOr<std::unique_ptr<Authenticator>> Open(const AuthOptions& options);
  ~Authenticator();  // stops the poll thread

  Authenticator(const Authenticator&) = delete;
  Authenticator& operator=(const Authenticator&) = delete;

  // The permissions of the call, from its "authorization" metadata or, without one, its
  // client certificate (see the table above).
  absl::StatusOr<Permissions> Authenticate(const grpc::ServerContextBase& call) const;

  // Reads the token file again and, if it parses, puts its grants in force; otherwise keeps the
  // old ones and returns why. Logs the outcome either way.
  absl::Status Reload();

  // Grant lines in force.
  size_t grants() const;
  // Reloads that failed and kept the old grants.
  uint64_t reload_failures() const { return reload_failures_.load(std::memory_order_relaxed); }
  const std::string& token_file() const { return options_.token_file; }

 private:
  // What identifies one version of the file.
  struct FileVersion {
    bool exists = false;
    dev_t device = 0;
    ino_t inode = 0;
    off_t size = 0;
    timespec modified{};
    bool operator==(const FileVersion& other) const;
  };
  static FileVersion Stat(const std::string& path);

  explicit Authenticator(const AuthOptions& options);
  void Log(const std::string& line) const;
  absl::Status ReloadLocked(const FileVersion& version) ABSL_EXCLUSIVE_LOCKS_REQUIRED(reload_mu_);
  void Poll();

  // Constant after construction.
  const AuthOptions options_;

  mutable absl::Mutex mu_;
  std::shared_ptr<const GrantTable> table_ ABSL_GUARDED_BY(mu_);

  // Serializes reloads (the poll thread's and Reload()'s).
  absl::Mutex reload_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  FileVersion seen_ ABSL_GUARDED_BY(reload_mu_);  // the version last read, good or bad

  std::atomic<uint64_t> reload_failures_{0};

  absl::Mutex stop_mu_;
  bool stop_ ABSL_GUARDED_BY(stop_mu_) = false;
  std::thread poller_;  // started last, joined first
};

}  // namespace kvpack

#endif  // KVPACK_SERVICE_AUTH_H_
