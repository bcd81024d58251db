// KeyModel: what the crash loop knows about one key, and which answers a server may give for
// it — while it runs, and after a kill -9 and a restart. The second is kvpack's durability
// contract (storage/FORMAT.md, "Durability"), per key, with L the last acknowledged
// operation and F the operation in flight when the server died, if any:
//
//   L                                         a Get after the restart may return
//   ----------------------------------------  -----------------------------------------------
//   none, or a delete that returned           not found
//   put with durable=true                     exactly L's bytes
//   non-durable put acknowledged TIER_DISK    exactly L's bytes (it went through the WAL)
//   non-durable put acknowledged TIER_RAM     L's bytes or not found
//   any of the above, with F a put            also F's bytes, or not found
//   any of the above, with F a delete         also not found
//
// Nothing else, ever: no older version (an overwrite never reverts), no bytes of another key,
// no corrupt bytes, no DATA_LOSS. While the server runs, a Get returns exactly L's bytes (or
// not found after a delete).
//
// After each restart the crash loop reads every key and Settle()s it: what the restarted server
// served becomes the key's state, as durable as a durable put. A restarted server's blocks all
// come from disk, so a block it served must stay (and one it did not serve must stay away) until
// the next operation on its key, across any number of further crashes.
//
// Operations go Send() -> Acknowledge() when the call returns OK. A call that does not return
// OK (the server died, the deadline passed, any error) leaves its operation in flight: its
// outcome is unknown until the next restart, and the key takes no more operations until it is
// settled.
//
// Not thread-safe: each key belongs to one driver thread, so its operations are sequential.
#ifndef KVPACK_TESTS_CRASH_KEY_MODEL_H_
#define KVPACK_TESTS_CRASH_KEY_MODEL_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "client/kvpack_types.h"

namespace kvpack {
namespace crash {

// One operation on a key, as sent.
struct KeyOp {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  bool durable = false;  // puts: PutOptions::durable
  uint64_t version = 0;  // puts: the block is BlockContent::Bytes(key, version)
};

// The answers a Get may give: one of `versions` of the key, or not found if absent_ok.
struct Expectation {
  std::vector<uint64_t> versions;
  bool absent_ok = false;

  // nullopt = not found.
  bool Allows(std::optional<uint64_t> version) const;
  // "{v12, not found}"
  std::string ToString() const;
};

class KeyModel {
 public:
  enum class State {
    kAbsent,    // never stored, deleted, or not found after a restart
    kDurable,   // durable put, non-durable put acknowledged TIER_DISK, or served after a restart
    kVolatile,  // non-durable put acknowledged TIER_RAM: a crash may lose it
  };

  // A fresh version number for the next put of this key (versions only grow).
  uint64_t NextVersion() { return ++last_version_; }

  // Records `op` as sent. Precondition: !in_flight().
  void Send(const KeyOp& op);
  // The operation sent last returned OK; `tier` is where a put was acknowledged (ignored for a
  // delete). Precondition: in_flight().
  void Acknowledge(Tier tier);
  // True from Send() until Acknowledge() or Settle().
  bool in_flight() const { return sent_.has_value(); }

  // What a Get may return while the server that acknowledged everything is still up.
  // Precondition: !in_flight().
  Expectation Live() const;
  // What a Get may return after a kill -9 and a restart.
  Expectation AfterCrash() const;

  // After a restart: the key now holds what the restarted server served (nullopt = not found);
  // any operation in flight is resolved by it.
  void Settle(std::optional<uint64_t> served_version);

  // A key whose stored bytes can no longer be modelled (the server served foreign or corrupt
  // bytes for it) is retired: reported once, then neither operated on nor checked again.
  void Retire() { retired_ = true; }
  bool retired() const { return retired_; }

  State state() const { return state_; }
  uint64_t version() const { return version_; }  // kDurable, kVolatile: the stored version

  // "durable put v12, in flight: put v13"
  std::string ToString() const;

 private:
  State state_ = State::kAbsent;
  uint64_t version_ = 0;
  const char* how_ = "never written";  // how the key got into state_
  std::optional<KeyOp> sent_;
  uint64_t last_version_ = 0;
  bool retired_ = false;
};

}  // namespace crash
}  // namespace kvpack

#endif  // KVPACK_TESTS_CRASH_KEY_MODEL_H_
