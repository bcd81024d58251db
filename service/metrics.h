// The server's Prometheus metrics and the HTTP endpoint that serves them (/metrics in the
// text exposition format, on its own port). Counters and histograms are updated by the RPC
// handlers as they go; storage-tier figures are read from the store at scrape time, so they
// are never stale.
//
// Thread-safe: every Record* method may be called concurrently.
#ifndef KVPACK_SERVICE_METRICS_H_
#define KVPACK_SERVICE_METRICS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "storage/tiered_store.h"

namespace kvpack {

// Per-namespace series are exported for at most this many namespaces: those holding the most
// bytes (RAM plus disk); the rest are summed under namespace="_other".
inline constexpr size_t kMaxNamespaceSeries = 100;
inline constexpr absl::string_view kOtherNamespace = "_other";
// Per-policy byte counters are kept for at most this many distinct codec policies (a client may
// name any policy in a put); bytes of later ones are counted under policy="_other".
inline constexpr size_t kMaxPolicySeries = 32;

// `holdings` reduced to the `limit` namespaces holding the most bytes (ties by name), sorted by
// name, followed, when any were left out (or one was named "_other" already), by one entry
// named "_other" summing them.
std::vector<NamespaceHoldings> TopNamespaces(std::vector<NamespaceHoldings> holdings,
                                             size_t limit);

class ServiceMetrics {
 public:
  // `listen` is "host:port" for the HTTP endpoint ("" = no endpoint; port 0 = any free
  // port, see port()). `store` is read at scrape time and must outlive the metrics.
  // Unavailable if the endpoint cannot bind.
  static absl::StatusOr<std::unique_ptr<ServiceMetrics>> Create(const std::string& listen,
                                                                const TieredStore* store);
  ~ServiceMetrics();

  // One finished RPC: `method` is the RPC name ("PutBlocks"), `code` its final status.
  void RecordRequest(absl::string_view method, absl::StatusCode code, absl::Duration latency);
  // One block stored: its raw size and its encoded size, and the codec policy it was encoded
  // with (its canonical text, "k=int8,v=int8"; kvpack_policy_bytes_in_total keeps one pair of
  // series for each of the first kMaxPolicySeries policies and sums later ones as "_other").
  void RecordBlockIn(uint64_t raw_bytes, uint64_t encoded_bytes, absl::string_view policy = "");
  // One block served: bytes sent, and whether they were the encoded form.
  void RecordBlockOut(uint64_t bytes, bool encoded);
  // Time spent encoding / decoding one block on `device` ("cpu", "cuda:0").
  void RecordEncode(absl::string_view device, absl::Duration elapsed);
  void RecordDecode(absl::string_view device, absl::Duration elapsed);
  // A stored block failed its checksum and was dropped.
  void RecordCorruptBlock();
  // A put whose block the store refused or failed to write, with the store's status code
  // (RESOURCE_EXHAUSTED when no tier or quota had room, INTERNAL/UNAVAILABLE/DATA_LOSS for a
  // disk write that failed): kvpack_store_put_failures_total{code}.
  void RecordStorePutFailure(absl::StatusCode code);

  // A figure read at scrape time (bytes held by a budget, calls cancelled for idleness):
  // `read` is called on the scraping thread and must stay valid while the metrics exist.
  void AddReading(std::string name, std::string help, prometheus::MetricType type,
                  std::function<double()> read);

  // More families read at scrape time (served on /metrics and included in Scrape()).
  void AddCollectable(std::shared_ptr<prometheus::Collectable> collectable);

  struct Totals {
    uint64_t raw_bytes_in = 0;
    uint64_t encoded_bytes_in = 0;
  };
  // Bytes stored since start, raw and encoded.
  Totals totals() const;

  // Port of the HTTP endpoint, 0 when there is none.
  int port() const { return port_; }
  // The text a scrape of /metrics returns now.
  std::string Scrape() const;

 private:
  ServiceMetrics() = default;

  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<prometheus::Collectable> store_collector_;
  std::shared_ptr<class ReadingCollector> readings_;
  mutable absl::Mutex extra_mu_;
  std::vector<std::shared_ptr<prometheus::Collectable>> extra_ ABSL_GUARDED_BY(extra_mu_);
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;

  prometheus::Family<prometheus::Counter>* requests_ = nullptr;
  prometheus::Family<prometheus::Histogram>* latency_ = nullptr;
  prometheus::Counter* raw_bytes_in_ = nullptr;
  prometheus::Counter* encoded_bytes_in_ = nullptr;
  prometheus::Counter* blocks_in_ = nullptr;
  prometheus::Counter* decoded_bytes_out_ = nullptr;
  prometheus::Counter* encoded_bytes_out_ = nullptr;
  prometheus::Gauge* compression_ratio_ = nullptr;
  prometheus::Family<prometheus::Histogram>* encode_seconds_ = nullptr;
  prometheus::Family<prometheus::Histogram>* decode_seconds_ = nullptr;
  prometheus::Counter* corrupt_blocks_ = nullptr;
  prometheus::Family<prometheus::Counter>* store_put_failures_ = nullptr;

  // kvpack_policy_bytes_in_total: the raw and encoded counters of each policy seen so far.
  struct PolicyCounters {
    prometheus::Counter* raw = nullptr;
    prometheus::Counter* encoded = nullptr;
  };
  PolicyCounters PolicySeries(absl::string_view policy);
  prometheus::Family<prometheus::Counter>* policy_bytes_in_ = nullptr;
  absl::Mutex policy_mu_;
  absl::flat_hash_map<std::string, PolicyCounters> policy_series_ ABSL_GUARDED_BY(policy_mu_);
  std::shared_ptr<prometheus::Collectable> process_collector_;
};

}  // namespace kvpack

#endif  // KVPACK_SERVICE_METRICS_H_
