//! Logging setup, metric definitions and names, and redaction helpers.

pub mod access;
pub mod events;
pub mod redact;
pub mod writer;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteStatus {
    pub route: Arc<str>,
    pub status: u16,
}

/// `portcullis_requests_total`, kept per worker and summed when scraped: a
/// request adds one to a counter only its own worker writes (no cache line
/// the workers pass back and forth per request, no label hashing, no lock on
/// a shared family).
#[derive(Debug, Clone, Default)]
pub struct RequestTotals {
    workers: Arc<std::sync::Mutex<Vec<Arc<WorkerCells>>>>,
}

/// One worker's cells, by route name and status.
type WorkerCells = std::sync::Mutex<HashMap<(Arc<str>, u16), Arc<AtomicU64>>>;

impl RequestTotals {
    /// A new worker's counters, summed into these totals.
    pub fn worker(&self) -> RequestCounters {
        let cells = Arc::new(WorkerCells::default());
        lock(&self.workers).push(cells.clone());
        RequestCounters {
            cells,
            slots: std::sync::Mutex::new(vec![None; RequestCounters::SLOTS]),
        }
    }

    /// The sum over the workers of route and status.
    #[cfg(test)]
    fn get(&self, route: &str, status: u16) -> u64 {
        lock(&self.workers)
            .iter()
            .filter_map(|w| {
                lock(w)
                    .get(&(Arc::from(route), status))
                    .map(|c| c.load(Ordering::Relaxed))
            })
            .sum()
    }

    /// Every route and status seen, with the sum over the workers.
    fn totals(&self) -> std::collections::BTreeMap<(Arc<str>, u16), u64> {
        let mut totals = std::collections::BTreeMap::new();
        for worker in lock(&self.workers).iter() {
            for (key, cell) in lock(worker).iter() {
                *totals.entry(key.clone()).or_insert(0) += cell.load(Ordering::Relaxed);
            }
        }
        totals
    }
}

impl prometheus_client::collector::Collector for RequestTotals {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        let mut family = encoder.encode_descriptor(
            events::metric::REQUESTS,
            REQUESTS_HELP,
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for ((route, status), n) in self.totals() {
            let labels = RouteStatus { route, status };
            ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

const REQUESTS_HELP: &str = "Requests answered, by route and status";

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain bookkeeping: a panic elsewhere leaves it usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One worker's request counters: its cells ([`RequestTotals`]), and a small
/// direct-mapped table of the last ones used, by route (compared by pointer)
/// and status, so that counting is one atomic add on a cell of its own.
#[derive(Debug)]
pub struct RequestCounters {
    cells: Arc<WorkerCells>,
    slots: std::sync::Mutex<Vec<Option<CounterSlot>>>,
}

/// A cell in the table: its route, its status, the cell.
type CounterSlot = (Arc<str>, u16, Arc<AtomicU64>);

impl RequestCounters {
    const SLOTS: usize = 64;

    /// Counts one request of `route` answered with `status`.
    pub fn inc(&self, route: Arc<str>, status: u16) {
        let at = ((Arc::as_ptr(&route).cast::<u8>() as usize >> 4) ^ (usize::from(status) * 31))
            % Self::SLOTS;
        let mut slots = lock(&self.slots);
        if let Some(Some((r, s, cell))) = slots.get(at) {
            if *s == status && Arc::ptr_eq(r, &route) {
                cell.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        // By name: a reloaded configuration's route counts into the same cell.
        let cell = lock(&self.cells)
            .entry((route.clone(), status))
            .or_default()
            .clone();
        cell.fetch_add(1, Ordering::Relaxed);
        if let Some(slot) = slots.get_mut(at) {
            *slot = Some((route, status, cell));
        }
    }
}

/// A single `reason` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: &'static str,
}

/// A single `issuer` label (the issuer's configured id).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IssuerLabel {
    pub issuer: Arc<str>,
}

/// A single `outcome` label (`delivered`, `failed`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: &'static str,
}

/// A single `limit` label: which of `server.limits` (or a route's `max_body`)
/// refused or cut something.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabel {
    pub limit: &'static str,
}

impl LimitLabel {
    pub const MAX_HEADER_BYTES: LimitLabel = LimitLabel {
        limit: "max_header_bytes",
    };
    pub const MAX_CONNECTIONS: LimitLabel = LimitLabel {
        limit: "max_connections",
    };
    pub const HEADER_READ_TIMEOUT: LimitLabel = LimitLabel {
        limit: "header_read_timeout",
    };
    pub const IDLE_TIMEOUT: LimitLabel = LimitLabel {
        limit: "idle_timeout",
    };
    pub const MAX_BODY: LimitLabel = LimitLabel { limit: "max_body" };
    pub const BODY_TIMEOUT: LimitLabel = LimitLabel {
        limit: "body_timeout",
    };
    pub const INTROSPECTION_MAX_CONCURRENT: LimitLabel = LimitLabel {
        limit: "introspection_max_concurrent",
    };
}

/// Labels of the introspection counter: the issuer's id and the outcome
/// (`active`, `inactive`, `error`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct IntrospectionLabel {
    pub issuer: Arc<str>,
    pub outcome: &'static str,
}

/// A single `upstream` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamLabel {
    pub upstream: Arc<str>,
}

/// Every metric portcullis exports; cheap to clone (shared handles).
#[derive(Clone, Debug)]
pub struct Metrics {
    pub requests: RequestTotals,
    pub rejections: Family<Reason, Counter>,
    pub upstream_latency: Family<UpstreamLabel, Histogram>,
    pub jwks_fetches: Family<IssuerLabel, Counter>,
    pub jwks_failures: Family<IssuerLabel, Counter>,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub config_generation: Gauge,
    pub config_reload_failures: Counter,
    /// Unix time of the last configuration that loaded (at start or by reload).
    pub config_last_load: Gauge,
    /// Limits that refused or cut a request or connection, by limit.
    pub limit_hits: Family<LimitLabel, Counter>,
    /// Calls to introspection endpoints, by issuer and outcome.
    pub introspections: Family<IntrospectionLabel, Counter>,
    /// Webhook POSTs, by outcome.
    pub webhook_deliveries: Family<Outcome, Counter>,
    /// Events given up on after the last attempt.
    pub webhook_events_abandoned: Counter,
    /// Entries in the built-in issuer's revocation set.
    pub revocation_entries: Gauge,
    /// Revocation-set entries dropped by `issuer.revocation.max_entries`.
    pub revocations_evicted: Counter,
    registry: Arc<Registry>,
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    ])
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Metrics {
        use events::metric as m;
        let mut registry = Registry::default();
        let requests = RequestTotals::default();
        let rejections = Family::<Reason, Counter>::default();
        let upstream_latency = Family::<UpstreamLabel, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let jwks_fetches = Family::<IssuerLabel, Counter>::default();
        let jwks_failures = Family::<IssuerLabel, Counter>::default();
        let cache_hits = Counter::default();
        let cache_misses = Counter::default();
        let config_generation = Gauge::default();
        let config_reload_failures = Counter::default();
        let config_last_load = Gauge::default();
        let limit_hits = Family::<LimitLabel, Counter>::default();
        let introspections = Family::<IntrospectionLabel, Counter>::default();
        let webhook_deliveries = Family::<Outcome, Counter>::default();
        let webhook_events_abandoned = Counter::default();
        let revocation_entries = Gauge::default();
        let revocations_evicted = Counter::default();
        registry.register_collector(Box::new(requests.clone()));
        registry.register(
            m::REJECTIONS,
            "Requests rejected, by reason",
            rejections.clone(),
        );
        registry.register(
            m::UPSTREAM_LATENCY,
            "Time until the upstream's response headers arrived",
            upstream_latency.clone(),
        );
        registry.register(
            m::JWKS_FETCHES,
            "JWKS fetches, by issuer",
            jwks_fetches.clone(),
        );
        registry.register(
            m::JWKS_FAILURES,
            "Failed JWKS fetches, by issuer",
            jwks_failures.clone(),
        );
        registry.register(
            m::CACHE_HITS,
            "Verified-token cache hits",
            cache_hits.clone(),
        );
        registry.register(
            m::CACHE_MISSES,
            "Verified-token cache misses",
            cache_misses.clone(),
        );
        registry.register(
            m::CONFIG_GENERATION,
            "Configuration generation in use",
            config_generation.clone(),
        );
        registry.register(
            m::CONFIG_RELOAD_FAILURES,
            "Configuration reloads refused",
            config_reload_failures.clone(),
        );
        registry.register(
            m::CONFIG_LAST_LOAD,
            "Unix time of the last configuration that loaded",
            config_last_load.clone(),
        );
        registry.register(
            m::LIMIT_HITS,
            "Requests or connections refused or cut by a limit, by limit",
            limit_hits.clone(),
        );
        registry.register(
            m::INTROSPECTIONS,
            "Calls to introspection endpoints, by issuer and outcome",
            introspections.clone(),
        );
        registry.register(
            m::WEBHOOK_DELIVERIES,
            "Webhook POSTs, by outcome",
            webhook_deliveries.clone(),
        );
        registry.register(
            m::WEBHOOK_EVENTS_ABANDONED,
            "Webhook events given up on after their last attempt",
            webhook_events_abandoned.clone(),
        );
        registry.register(
            m::REVOCATION_ENTRIES,
            "Entries in the built-in issuer's revocation set",
            revocation_entries.clone(),
        );
        registry.register(
            m::REVOCATIONS_EVICTED,
            "Revocation-set entries dropped at the cap (tokens issued before them are refused)",
            revocations_evicted.clone(),
        );
        config_generation.set(0);
        for l in [
            LimitLabel::MAX_HEADER_BYTES,
            LimitLabel::MAX_CONNECTIONS,
            LimitLabel::HEADER_READ_TIMEOUT,
            LimitLabel::IDLE_TIMEOUT,
            LimitLabel::MAX_BODY,
            LimitLabel::BODY_TIMEOUT,
        ] {
            // Exported at zero from the start, so that `increase()` sees the first.
            let _ = limit_hits.get_or_create(&l);
        }
        Metrics {
            requests,
            rejections,
            upstream_latency,
            jwks_fetches,
            jwks_failures,
            cache_hits,
            cache_misses,
            config_generation,
            config_reload_failures,
            config_last_load,
            limit_hits,
            introspections,
            webhook_deliveries,
            webhook_events_abandoned,
            revocation_entries,
            revocations_evicted,
            registry: Arc::new(registry),
        }
    }

    /// Counts one hit of `limit`.
    pub fn limit_hit(&self, limit: LimitLabel) {
        self.limit_hits.get_or_create(&limit).inc();
    }

    /// Every metric in the OpenMetrics text format
    /// (`application/openmetrics-text; version=1.0.0`).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Every metric in the Prometheus text format (`text/plain;
    /// version=0.0.4`), what a scraper that does not ask for OpenMetrics,
    /// and any tool reading that older format, understands.
    pub fn encode_prometheus(&self) -> String {
        openmetrics_to_prometheus(&self.encode())
    }
}

/// Rewrites an OpenMetrics exposition in the Prometheus text format: a
/// counter's `HELP` and `TYPE` name its samples' `_total` name, an `info`
/// metric becomes a gauge named `_info`, types the older format lacks become
/// their nearest kin, and `# UNIT` and `# EOF` go. Samples are the same in
/// both (no exemplars are recorded).
fn openmetrics_to_prometheus(text: &str) -> String {
    use std::collections::HashMap;
    // Family name → (the name its HELP and TYPE lines take, its type).
    let mut renamed: HashMap<&str, (String, &str)> = HashMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let Some((name, kind)) = rest.split_once(' ') else {
            continue;
        };
        let entry = match kind {
            "counter" => (format!("{name}_total"), "counter"),
            "info" => (format!("{name}_info"), "gauge"),
            "stateset" => (name.to_owned(), "gauge"),
            "gaugehistogram" => (name.to_owned(), "histogram"),
            "unknown" => (name.to_owned(), "untyped"),
            other => (name.to_owned(), other),
        };
        renamed.insert(name, entry);
    }
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let shown = renamed.get(name).map_or(name, |(n, _)| n.as_str());
            out.push_str("# HELP ");
            out.push_str(shown);
            out.push(' ');
            out.push_str(help);
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split_once(' ').map_or(rest, |(n, _)| n);
            match renamed.get(name) {
                Some((shown, kind)) => {
                    out.push_str("# TYPE ");
                    out.push_str(shown);
                    out.push(' ');
                    out.push_str(kind);
                }
                None => out.push_str(line),
            }
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// The installed logging: keep it alive until exit (dropping it writes what is
/// still buffered), and give [`Logging::access`] to the server.
pub struct Logging {
    _guard: writer::FlushGuard<std::io::Stdout>,
    pub access: access::AccessLog,
}

/// Installs the global subscriber: `RUST_LOG` filter (default `info`), JSON or
/// text lines on stdout, written in batches (see [`writer`]).
pub fn init(format: LogFormat) -> Logging {
    use tracing_subscriber::EnvFilter;
    let (writer, guard) = writer::BatchWriter::new(std::io::stdout());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer.clone());
    let (result, access) = match format {
        LogFormat::Json => (
            builder
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .try_init(),
            access::AccessLog::json(writer),
        ),
        LogFormat::Text => (builder.try_init(), access::AccessLog::tracing()),
    };
    if let Err(e) = result {
        eprintln!("portcullis: logging was already initialised: {e}");
    }
    Logging {
        _guard: guard,
        access,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_counters_of_every_worker_are_summed() {
        let totals = RequestTotals::default();
        let (one, two) = (totals.worker(), totals.worker());
        let a: Arc<str> = Arc::from("/a/*");
        // A reloaded configuration's route: another pointer, the same series.
        let a_again: Arc<str> = Arc::from("/a/*");
        let routes: Vec<Arc<str>> = (0..200).map(|i| Arc::from(format!("/r{i}"))).collect();
        for _ in 0..3 {
            one.inc(a.clone(), 200);
            two.inc(a_again.clone(), 200);
            one.inc(a.clone(), 401);
            // More cells than slots: collisions fall back to the worker's map.
            for r in &routes {
                two.inc(r.clone(), 200);
            }
        }
        assert_eq!(totals.get("/a/*", 200), 6);
        assert_eq!(totals.get("/a/*", 401), 3);
        assert_eq!(totals.get("/a/*", 404), 0);
        assert!(routes.iter().all(|r| totals.get(r, 200) == 3));
        // What a scrape shows.
        let metrics = Metrics::new();
        let w = metrics.requests.worker();
        w.inc(a.clone(), 200);
        metrics.requests.worker().inc(a_again, 200);
        w.inc(Arc::from("/b"), 503);
        let text = metrics.encode();
        assert!(
            text.contains("portcullis_requests_total{route=\"/a/*\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(text.contains("portcullis_requests_total{route=\"/b\",status=\"503\"} 1"));
        assert!(text.contains("# TYPE portcullis_requests counter"));
        let old = metrics.encode_prometheus();
        assert!(
            old.contains("# TYPE portcullis_requests_total counter"),
            "{old}"
        );
        assert!(old.contains("# HELP portcullis_requests_total Requests answered"));
        assert!(old.contains("portcullis_requests_total{route=\"/b\",status=\"503\"} 1"));
        assert!(!old.contains("# EOF"));
    }

    #[test]
    fn openmetrics_becomes_the_prometheus_text_format() {
        let text = "# HELP a_seconds Time.\n# TYPE a_seconds histogram\n# UNIT a_seconds seconds\n\
                    a_seconds_bucket{le=\"+Inf\"} 1\na_seconds_sum 0.5\na_seconds_count 1\n\
                    # HELP b Things.\n# TYPE b counter\nb_total{x=\"1\"} 3\n\
                    # HELP c Build.\n# TYPE c info\nc_info{v=\"1\"} 1\n\
                    # HELP d Now.\n# TYPE d gauge\nd 2\n# EOF\n";
        assert_eq!(
            openmetrics_to_prometheus(text),
            "# HELP a_seconds Time.\n# TYPE a_seconds histogram\n\
             a_seconds_bucket{le=\"+Inf\"} 1\na_seconds_sum 0.5\na_seconds_count 1\n\
             # HELP b_total Things.\n# TYPE b_total counter\nb_total{x=\"1\"} 3\n\
             # HELP c_info Build.\n# TYPE c_info gauge\nc_info{v=\"1\"} 1\n\
             # HELP d Now.\n# TYPE d gauge\nd 2\n"
        );
    }
}
