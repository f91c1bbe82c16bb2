//! The operations listener: `/healthz`, `/readyz`, `/metrics`. Read-only, and never
//! served on the public listener.

use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;

use crate::state::Snapshot;
use crate::telemetry::Metrics;

/// The admin service.
#[derive(Debug)]
pub struct Admin {
    snapshot: Arc<ArcSwap<Snapshot>>,
    metrics: Metrics,
}

impl Admin {
    /// An admin service reporting on `snapshot`.
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>, metrics: Metrics) -> Admin {
        Admin { snapshot, metrics }
    }

    /// Whether every issuer has a key set (the built-in one once its keys are
    /// installed).
    pub fn ready(&self) -> bool {
        self.snapshot
            .load()
            .verifier
            .issuers()
            .iter()
            .all(|i| i.is_ready())
    }

    /// Answers one admin request.
    pub fn handle<B>(&self, req: &Request<B>) -> Response<Full<Bytes>> {
        if req.method() != Method::GET && req.method() != Method::HEAD {
            return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        }
        match req.uri().path() {
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" => {
                if self.ready() {
                    text(StatusCode::OK, "ready\n")
                } else {
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "not ready: waiting for issuer keys\n",
                    )
                }
            }
            "/metrics" => {
                // OpenMetrics for a scraper that asks for it (Prometheus
                // does), the Prometheus text format for anyone else.
                let (text, kind) = if wants_openmetrics(req.headers()) {
                    (
                        self.metrics.encode(),
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )
                } else {
                    (
                        self.metrics.encode_prometheus(),
                        "text/plain; version=0.0.4; charset=utf-8",
                    )
                };
                let mut resp = Response::new(Full::new(Bytes::from(text)));
                resp.headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(kind));
                resp
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

/// Whether `Accept` names the OpenMetrics text format with a weight above 0.
fn wants_openmetrics(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| {
            let mut params = range.split(';').map(str::trim);
            let kind = params.next().unwrap_or_default();
            kind.eq_ignore_ascii_case("application/openmetrics-text")
                && !params.any(|p| {
                    p.strip_prefix("q=")
                        .and_then(|q| q.parse::<f32>().ok())
                        .is_some_and(|q| q <= 0.0)
                })
        })
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}
