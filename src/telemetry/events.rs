//! Names of metrics and log targets, in one place so that dashboards can rely on them.

/// Metric names (counters get `_total` appended by the encoder).
pub mod metric {
    pub const REQUESTS: &str = "portcullis_requests";
    pub const REJECTIONS: &str = "portcullis_rejections";
    pub const UPSTREAM_LATENCY: &str = "portcullis_upstream_duration_seconds";
    pub const JWKS_FETCHES: &str = "portcullis_jwks_fetches";
    pub const JWKS_FAILURES: &str = "portcullis_jwks_fetch_failures";
    pub const CACHE_HITS: &str = "portcullis_verification_cache_hits";
    pub const CACHE_MISSES: &str = "portcullis_verification_cache_misses";
    pub const CONFIG_GENERATION: &str = "portcullis_config_generation";
    pub const CONFIG_RELOAD_FAILURES: &str = "portcullis_config_reload_failures";
    pub const CONFIG_LAST_LOAD: &str = "portcullis_config_last_load_timestamp_seconds";
    pub const LIMIT_HITS: &str = "portcullis_limit_hits";
    pub const INTROSPECTIONS: &str = "portcullis_introspections";
    pub const WEBHOOK_DELIVERIES: &str = "portcullis_webhook_deliveries";
    pub const WEBHOOK_EVENTS_ABANDONED: &str = "portcullis_webhook_events_abandoned";
    pub const REVOCATION_ENTRIES: &str = "portcullis_revocation_entries";
    pub const REVOCATIONS_EVICTED: &str = "portcullis_revocations_evicted";
}

/// The tracing target of the one-line-per-request access log.
pub const ACCESS_LOG: &str = "portcullis::access";

/// Renders an error and its sources as one line (`outer: inner: root`), for logs.
pub fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
