#include "service/metrics.h"

#include <algorithm>
#include <exception>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"
#include "prometheus/text_serializer.h"
#include "service/build_info.h"
#include "service/metric_family.h"
#include "service/process_metrics.h"

namespace kvpack {
namespace {

const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
      0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   5.0,  10.0};
  return *buckets;
}

prometheus::ClientMetric GaugeMetric(prometheus::ClientMetric::Label a,
                                     prometheus::ClientMetric::Label b, double value) {
  prometheus::ClientMetric metric;
  metric.label = {std::move(a), std::move(b)};
  metric.gauge.value = value;
  return metric;
}

prometheus::ClientMetric CounterMetric(std::vector<prometheus::ClientMetric::Label> labels,
                                       uint64_t value) {
  prometheus::ClientMetric metric;
  metric.label = std::move(labels);
  metric.counter.value = static_cast<double>(value);
  return metric;
}

prometheus::MetricFamily CounterFamily(const char* name, std::string help) {
  prometheus::MetricFamily family;
  family.name = name;
  family.help = std::move(help);
  family.type = prometheus::MetricType::Counter;
  return family;
}

// kvpack_namespace_bytes and kvpack_namespace_blocks, by namespace and tier, capped.
void AddNamespaceFamilies(const TieredStore& store,
                          std::vector<prometheus::MetricFamily>* families) {
  prometheus::MetricFamily bytes;
  bytes.name = "kvpack_namespace_bytes";
  bytes.help = absl::StrCat("Bytes each namespace holds in each tier (the ", kMaxNamespaceSeries,
                            " largest namespaces; the rest summed as namespace=\"_other\").");
  bytes.type = prometheus::MetricType::Gauge;
  prometheus::MetricFamily blocks;
  blocks.name = "kvpack_namespace_blocks";
  blocks.help = "Blocks each namespace holds in each tier (same namespaces as "
                "kvpack_namespace_bytes).";
  blocks.type = prometheus::MetricType::Gauge;
  const char* same = " (same namespaces as kvpack_namespace_bytes).";
  prometheus::MetricFamily hits =
      CounterFamily("kvpack_namespace_hits_total", absl::StrCat("Reads served", same));
  prometheus::MetricFamily evictions = CounterFamily(
      "kvpack_namespace_evictions_total",
      absl::StrCat("Blocks of each namespace evicted from each tier", same));
  prometheus::MetricFamily rejections = CounterFamily(
      "kvpack_namespace_rejections_total",
      absl::StrCat("Puts of each namespace refused by each tier's quota or fair share", same));
  for (const NamespaceHoldings& h : TopNamespaces(store.Holdings(), kMaxNamespaceSeries)) {
    for (const auto& [tier, usage] : {std::pair<const char*, NamespaceUsage>{"ram", h.ram},
                                      std::pair<const char*, NamespaceUsage>{"disk", h.disk}}) {
      bytes.metric.push_back(GaugeMetric({"namespace", h.ns}, {"tier", tier},
                                         static_cast<double>(usage.bytes)));
      blocks.metric.push_back(GaugeMetric({"namespace", h.ns}, {"tier", tier},
                                          static_cast<double>(usage.blocks)));
    }
    const NamespaceActivity& a = h.activity;
    hits.metric.push_back(CounterMetric({{"namespace", h.ns}}, a.hits));
    for (const auto& [tier, evicted, rejected] :
         {std::tuple<const char*, uint64_t, uint64_t>{"ram", a.ram_evictions, a.ram_rejections},
          std::tuple<const char*, uint64_t, uint64_t>{"disk", a.disk_evictions,
                                                      a.disk_rejections}}) {
      evictions.metric.push_back(CounterMetric({{"namespace", h.ns}, {"tier", tier}}, evicted));
      rejections.metric.push_back(CounterMetric({{"namespace", h.ns}, {"tier", tier}}, rejected));
    }
  }
  for (prometheus::MetricFamily* family : {&bytes, &blocks, &hits, &evictions, &rejections}) {
    families->push_back(std::move(*family));
  }
}

// Storage-tier figures, read from the store whenever /metrics is scraped.
class StoreCollector : public prometheus::Collectable {
 public:
  explicit StoreCollector(const TieredStore* store) : store_(store) {}

  std::vector<prometheus::MetricFamily> Collect() const override {
    const StorageTierStats ram = store_->RamStats();
    const StorageTierStats disk = store_->DiskStats();
    std::vector<prometheus::MetricFamily> families;
    auto add = [&families](const char* name, const char* help, prometheus::MetricType type,
                           double ram_value, double disk_value) {
      prometheus::MetricFamily family;
      family.name = name;
      family.help = help;
      family.type = type;
      for (const auto& [tier, value] : {std::pair<const char*, double>{"ram", ram_value},
                                        std::pair<const char*, double>{"disk", disk_value}}) {
        prometheus::ClientMetric metric;
        metric.label.push_back({"tier", tier});
        if (type == prometheus::MetricType::Counter) {
          metric.counter.value = value;
        } else {
          metric.gauge.value = value;
        }
        family.metric.push_back(std::move(metric));
      }
      families.push_back(std::move(family));
    };
    add("kvpack_tier_bytes", "Encoded bytes held by each storage tier.",
        prometheus::MetricType::Gauge, ram.bytes, disk.bytes);
    add("kvpack_tier_blocks", "Blocks held by each storage tier.", prometheus::MetricType::Gauge,
        ram.blocks, disk.blocks);
    add("kvpack_tier_capacity_bytes", "Configured byte capacity of each storage tier.",
        prometheus::MetricType::Gauge, ram.capacity_bytes, disk.capacity_bytes);
    add("kvpack_tier_hits_total", "Reads answered by each storage tier.",
        prometheus::MetricType::Counter, ram.hits, disk.hits);
    add("kvpack_tier_evictions_total",
        "Blocks evicted from each tier (RAM evictions spill to disk; disk evictions are lost).",
        prometheus::MetricType::Counter, ram.evictions, disk.evictions);

    add("kvpack_tier_corrupt_dropped_total",
        "Blocks a tier dropped because their bytes failed the checksum (never served).",
        prometheus::MetricType::Counter, ram.corrupt_dropped, disk.corrupt_dropped);
    families.push_back(SingleFamily("kvpack_store_misses_total", "Reads of keys that no tier holds.",
                                    prometheus::MetricType::Counter,
                                    static_cast<double>(store_->Misses())));
    families.push_back(SingleFamily(
        "kvpack_spill_failures_total",
        "Blocks evicted from RAM whose write to the disk tier failed (they were lost).",
        prometheus::MetricType::Counter, static_cast<double>(store_->SpillFailures())));
    families.push_back(SingleFamily(
        "kvpack_unreadable_dropped_total",
        "Blocks dropped because they passed their checksum but did not parse or decode.",
        prometheus::MetricType::Counter, static_cast<double>(store_->UnreadableDropped())));
    add("kvpack_quota_rejections_total",
        "Puts refused because their namespace was at its quota in that tier (--quotas).",
        prometheus::MetricType::Counter, store_->RamQuotaRejections(),
        store_->DiskQuotaRejections());
    add("kvpack_fair_share_rejections_total",
        "Blocks a tier refused because their namespace was over its fair share and only blocks "
        "of namespaces within theirs could have made room (puts refused, spills not written).",
        prometheus::MetricType::Counter, store_->RamFairShareRejections(),
        store_->DiskFairShareRejections());
    families.push_back(SingleFamily(
        "kvpack_fair_share_diversions_total",
        "Non-durable puts RAM refused for their namespace's fair share, stored on disk instead.",
        prometheus::MetricType::Counter, static_cast<double>(store_->RamFairShareDiversions())));
    families.push_back(SingleFamily(
        "kvpack_spill_quota_drops_total",
        "Blocks evicted from RAM and not spilled because their namespace was at its disk quota.",
        prometheus::MetricType::Counter, static_cast<double>(store_->SpillQuotaDrops())));
    AddNamespaceFamilies(*store_, &families);
    return families;
  }

 private:
  const TieredStore* store_;
};

}  // namespace

std::vector<NamespaceHoldings> TopNamespaces(std::vector<NamespaceHoldings> holdings,
                                             size_t limit) {
  NamespaceHoldings other;
  other.ns = std::string(kOtherNamespace);
  bool any_other = false;
  auto add_to_other = [&other, &any_other](const NamespaceHoldings& h) {
    other.ram.bytes += h.ram.bytes;
    other.ram.blocks += h.ram.blocks;
    other.disk.bytes += h.disk.bytes;
    other.disk.blocks += h.disk.blocks;
    other.activity += h.activity;
    any_other = true;
  };
  // An entry already named "_other" (the activity counters' own overflow) is summed, never
  // ranked, so that the name appears once.
  auto named_other = std::partition(holdings.begin(), holdings.end(), [](const NamespaceHoldings& h) {
    return h.ns != kOtherNamespace;
  });
  for (auto it = named_other; it != holdings.end(); ++it) add_to_other(*it);
  holdings.erase(named_other, holdings.end());
  if (holdings.size() > limit) {
    auto total = [](const NamespaceHoldings& h) { return h.ram.bytes + h.disk.bytes; };
    std::nth_element(holdings.begin(), holdings.begin() + limit, holdings.end(),
                     [&total](const NamespaceHoldings& a, const NamespaceHoldings& b) {
                       return total(a) != total(b) ? total(a) > total(b) : a.ns < b.ns;
                     });
    for (auto it = holdings.begin() + limit; it != holdings.end(); ++it) add_to_other(*it);
    holdings.resize(limit);
  }
  std::sort(holdings.begin(), holdings.end(),
            [](const NamespaceHoldings& a, const NamespaceHoldings& b) { return a.ns < b.ns; });
  if (any_other) holdings.push_back(std::move(other));
  return holdings;
}

// Figures registered with AddReading, read whenever /metrics is scraped.
class ReadingCollector : public prometheus::Collectable {
 public:
  void Add(std::string name, std::string help, prometheus::MetricType type,
           std::function<double()> read) {
    absl::MutexLock lock(&mu_);
    readings_.push_back(Reading{std::move(name), std::move(help), type, std::move(read)});
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    absl::MutexLock lock(&mu_);
    std::vector<prometheus::MetricFamily> families;
    for (const Reading& r : readings_) {
      families.push_back(SingleFamily(r.name, r.help, r.type, r.read()));
    }
    return families;
  }

 private:
  struct Reading {
    std::string name;
    std::string help;
    prometheus::MetricType type;
    std::function<double()> read;
  };
  mutable absl::Mutex mu_;
  std::vector<Reading> readings_ ABSL_GUARDED_BY(mu_);
};

void ServiceMetrics::AddReading(std::string name, std::string help, prometheus::MetricType type,
                                std::function<double()> read) {
  readings_->Add(std::move(name), std::move(help), type, std::move(read));
}

absl::StatusOr<std::unique_ptr<ServiceMetrics>> ServiceMetrics::Create(
    const std::string& listen, const TieredStore* store) {
  std::unique_ptr<ServiceMetrics> m(new ServiceMetrics());
  m->registry_ = std::make_shared<prometheus::Registry>();
  prometheus::Registry& r = *m->registry_;

  m->requests_ = &prometheus::BuildCounter()
                      .Name("kvpack_requests_total")
                      .Help("Finished RPCs by method and gRPC status code.")
                      .Register(r);
  m->latency_ = &prometheus::BuildHistogram()
                     .Name("kvpack_request_duration_seconds")
                     .Help("RPC latency from start to final status, by method and status code.")
                     .Register(r);
  auto& bytes_in = prometheus::BuildCounter()
                       .Name("kvpack_block_bytes_in_total")
                       .Help("Bytes of blocks stored, raw (as received) and encoded (as kept).")
                       .Register(r);
  m->raw_bytes_in_ = &bytes_in.Add({{"form", "raw"}});
  m->encoded_bytes_in_ = &bytes_in.Add({{"form", "encoded"}});
  m->blocks_in_ = &prometheus::BuildCounter()
                       .Name("kvpack_blocks_in_total")
                       .Help("Blocks stored.")
                       .Register(r)
                       .Add({});
  auto& bytes_out = prometheus::BuildCounter()
                        .Name("kvpack_block_bytes_out_total")
                        .Help("Bytes of blocks served, decoded or still encoded.")
                        .Register(r);
  m->decoded_bytes_out_ = &bytes_out.Add({{"form", "decoded"}});
  m->encoded_bytes_out_ = &bytes_out.Add({{"form", "encoded"}});
  m->compression_ratio_ = &prometheus::BuildGauge()
                               .Name("kvpack_compression_ratio")
                               .Help("Raw bytes stored divided by encoded bytes stored, since start.")
                               .Register(r)
                               .Add({});
  m->encode_seconds_ = &prometheus::BuildHistogram()
                            .Name("kvpack_codec_encode_seconds")
                            .Help("Time to encode one block, by device.")
                            .Register(r);
  m->decode_seconds_ = &prometheus::BuildHistogram()
                            .Name("kvpack_codec_decode_seconds")
                            .Help("Time to decode one block, by device.")
                            .Register(r);
  m->corrupt_blocks_ = &prometheus::BuildCounter()
                            .Name("kvpack_corrupt_blocks_total")
                            .Help("Stored blocks that failed their checksum and were dropped.")
                            .Register(r)
                            .Add({});
  m->policy_bytes_in_ = &prometheus::BuildCounter()
                            .Name("kvpack_policy_bytes_in_total")
                            .Help("Bytes of blocks stored by codec policy, raw (as received) and "
                                  "encoded (as kept): the compression ratio of a policy is "
                                  "rate(raw) / rate(encoded).")
                            .Register(r);
  m->store_put_failures_ = &prometheus::BuildCounter()
                                .Name("kvpack_store_put_failures_total")
                                .Help("Blocks the store refused or failed to write, by status "
                                      "code (INTERNAL, UNAVAILABLE: a disk write failed).")
                                .Register(r);
  // The codes an alert watches start at zero, so that increase() sees the first failure.
  for (absl::StatusCode code : {absl::StatusCode::kInternal, absl::StatusCode::kUnavailable,
                                absl::StatusCode::kDataLoss, absl::StatusCode::kResourceExhausted}) {
    m->store_put_failures_->Add({{"code", absl::StatusCodeToString(code)}});
  }
  const BuildInfo& build = GetBuildInfo();
  prometheus::BuildGauge()
      .Name("kvpack_build_info")
      .Help("Always 1; the labels say which kvpack build this is.")
      .Register(r)
      .Add({{"version", build.version},
            {"compiler", build.compiler},
            {"mode", build.mode},
            {"gpu", build.gpu}})
      .Set(1);
  m->process_collector_ = std::make_shared<ProcessCollector>();
  m->store_collector_ = std::make_shared<StoreCollector>(store);
  m->readings_ = std::make_shared<ReadingCollector>();

  if (!listen.empty()) {
    try {
      m->exposer_ = std::make_unique<prometheus::Exposer>(listen, 2);
    } catch (const std::exception& e) {
      return absl::UnavailableError(
          absl::StrCat("cannot serve /metrics on ", listen, ": ", e.what()));
    }
    m->exposer_->RegisterCollectable(m->registry_);
    m->exposer_->RegisterCollectable(m->store_collector_);
    m->exposer_->RegisterCollectable(m->readings_);
    m->exposer_->RegisterCollectable(m->process_collector_);
    const std::vector<int> ports = m->exposer_->GetListeningPorts();
    m->port_ = ports.empty() ? 0 : ports[0];
  }
  return m;
}

ServiceMetrics::~ServiceMetrics() = default;

void ServiceMetrics::RecordRequest(absl::string_view method, absl::StatusCode code,
                                   absl::Duration latency) {
  const prometheus::Labels labels = {{"method", std::string(method)},
                                     {"code", absl::StatusCodeToString(code)}};
  requests_->Add(labels).Increment();
  latency_->Add(labels, LatencyBuckets()).Observe(absl::ToDoubleSeconds(latency));
}

ServiceMetrics::PolicyCounters ServiceMetrics::PolicySeries(absl::string_view policy) {
  if (policy.empty()) policy = "unknown";
  absl::MutexLock lock(&policy_mu_);
  auto it = policy_series_.find(policy);
  if (it != policy_series_.end()) return it->second;
  // One slot stays free for "_other" itself.
  const std::string label =
      policy_series_.size() + 1 < kMaxPolicySeries ? std::string(policy) : "_other";
  it = policy_series_.find(label);
  if (it != policy_series_.end()) return it->second;
  PolicyCounters counters;
  counters.raw = &policy_bytes_in_->Add({{"policy", label}, {"form", "raw"}});
  counters.encoded = &policy_bytes_in_->Add({{"policy", label}, {"form", "encoded"}});
  policy_series_.emplace(label, counters);
  return counters;
}

void ServiceMetrics::RecordBlockIn(uint64_t raw_bytes, uint64_t encoded_bytes,
                                   absl::string_view policy) {
  raw_bytes_in_->Increment(static_cast<double>(raw_bytes));
  encoded_bytes_in_->Increment(static_cast<double>(encoded_bytes));
  const PolicyCounters series = PolicySeries(policy);
  series.raw->Increment(static_cast<double>(raw_bytes));
  series.encoded->Increment(static_cast<double>(encoded_bytes));
  blocks_in_->Increment();
  const double encoded = encoded_bytes_in_->Value();
  if (encoded > 0) compression_ratio_->Set(raw_bytes_in_->Value() / encoded);
}

ServiceMetrics::Totals ServiceMetrics::totals() const {
  Totals totals;
  totals.raw_bytes_in = static_cast<uint64_t>(raw_bytes_in_->Value());
  totals.encoded_bytes_in = static_cast<uint64_t>(encoded_bytes_in_->Value());
  return totals;
}

void ServiceMetrics::RecordBlockOut(uint64_t bytes, bool encoded) {
  (encoded ? encoded_bytes_out_ : decoded_bytes_out_)->Increment(static_cast<double>(bytes));
}

void ServiceMetrics::RecordEncode(absl::string_view device, absl::Duration elapsed) {
  encode_seconds_->Add({{"device", std::string(device)}}, LatencyBuckets())
      .Observe(absl::ToDoubleSeconds(elapsed));
}

void ServiceMetrics::RecordDecode(absl::string_view device, absl::Duration elapsed) {
  decode_seconds_->Add({{"device", std::string(device)}}, LatencyBuckets())
      .Observe(absl::ToDoubleSeconds(elapsed));
}

void ServiceMetrics::RecordCorruptBlock() { corrupt_blocks_->Increment(); }

void ServiceMetrics::RecordStorePutFailure(absl::StatusCode code) {
  store_put_failures_->Add({{"code", absl::StatusCodeToString(code)}}).Increment();
}

void ServiceMetrics::AddCollectable(std::shared_ptr<prometheus::Collectable> collectable) {
  if (exposer_ != nullptr) exposer_->RegisterCollectable(collectable);
  absl::MutexLock lock(&extra_mu_);
  extra_.push_back(std::move(collectable));
}

std::string ServiceMetrics::Scrape() const {
  std::vector<prometheus::MetricFamily> families = registry_->Collect();
  {
    absl::MutexLock lock(&extra_mu_);
    for (const auto& collectable : extra_) {
      for (auto& family : collectable->Collect()) families.push_back(std::move(family));
    }
  }
  for (auto& family : store_collector_->Collect()) families.push_back(std::move(family));
  for (auto& family : readings_->Collect()) families.push_back(std::move(family));
  for (auto& family : process_collector_->Collect()) families.push_back(std::move(family));
  return prometheus::TextSerializer().Serialize(families);
}

}  // namespace kvpack
