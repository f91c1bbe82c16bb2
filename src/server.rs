//! Listeners and connections: the public listener (cleartext or TLS, HTTP/1.1
//! and HTTP/2), the forward-auth and admin listeners, the request workers, the
//! built-in issuer's background tasks, reload, and graceful drain.
//!
//! Requests are served by `server.workers` threads (default: one per CPU), each
//! with its own single-threaded event loop, its own `SO_REUSEPORT` listening
//! socket and its own upstream connection pools: a connection and its requests
//! never change thread. Key refreshes, the issuer, reloads and the admin
//! listener run on the caller's runtime (the control runtime).

mod conn;
mod dispatch;
mod listen;
mod reload;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use http_body_util::Either;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

pub use reload::{ReloadError, Reloaded};

use crate::admin::Admin;
use crate::auth::jwks::IssuerKeys;
use crate::auth::revocation::RevocationSet;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::issuer::Issuer;
use crate::proxy::Proxy;
use crate::state::{BuildError, Deps, Snapshot};
use crate::telemetry::access::AccessLog;
use crate::telemetry::{LimitLabel, Metrics};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {0}")]
    Bind(SocketAddr, #[source] std::io::Error),
    #[error("cannot compile the configuration")]
    Build(#[from] BuildError),
    #[error("cannot set up TLS for the listener")]
    Tls(#[from] tls::TlsError),
    #[error("cannot start the built-in issuer")]
    Issuer(#[from] crate::issuer::endpoints::IssuerError),
    #[error("cannot start worker thread {0}")]
    Worker(usize, #[source] std::io::Error),
}

/// A started gateway.
#[derive(Debug)]
pub struct Running {
    /// Where the proxy listens (useful with port 0).
    pub proxy_addr: SocketAddr,
    /// Where the admin listener listens, when configured.
    pub admin_addr: Option<SocketAddr>,
    /// Where the forward-auth listener listens, when configured.
    pub forward_auth_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    workers: Vec<WorkerThread>,
    shared: Arc<Shared>,
    reloader: Arc<reload::Reloader>,
}

/// What [`start`] needs besides the configuration; tests inject a clock.
#[derive(Debug, Clone)]
pub struct Options {
    pub clock: Arc<dyn Clock>,
    /// Where the access log goes (default: `tracing` events).
    pub access_log: AccessLog,
    /// How often the configuration file (and the TLS files it names) is checked
    /// for changes; `None`: only SIGHUP and [`Running::reload`] reload.
    pub watch_interval: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clock: Arc::new(SystemClock),
            access_log: AccessLog::tracing(),
            watch_interval: None,
        }
    }
}

/// What the workers and the control runtime share.
pub(crate) struct Shared {
    pub snapshot: Arc<ArcSwap<Snapshot>>,
    /// The listener's TLS configuration in force (`None`: cleartext).
    pub tls: ArcSwapOption<rustls::ServerConfig>,
    pub metrics: Metrics,
    /// One permit per open connection of the public listener
    /// (`server.limits.max_connections`), tunnels included.
    pub connections: Arc<Semaphore>,
    /// The same for the forward-auth listener, apart: a flood on one listener
    /// cannot starve the other.
    pub forward_auth_connections: Arc<Semaphore>,
    /// Panics caught anywhere in the server: request handlers, connection
    /// tasks, background tasks, worker threads.
    pub panics: Arc<std::sync::atomic::AtomicUsize>,
}

/// How a gateway stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    /// Panics caught while it ran (each was logged; tests assert none).
    pub panics: usize,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// Binds the listeners, starts the key refreshers, and serves until
/// [`Running::shutdown`].
pub async fn start(config: Config, options: Options) -> Result<Running, StartError> {
    let config = Arc::new(config);
    let metrics = Metrics::new();
    // One revocation set for the life of the process: every snapshot's
    // verifier consults it, the issuer feeds it.
    let revocations = config
        .issuer
        .as_ref()
        .map(|s| Arc::new(RevocationSet::new(s.revocation.max_entries)));
    let deps = Deps {
        clock: options.clock.clone(),
        metrics: metrics.clone(),
        revocations: revocations.clone(),
    };
    let snapshot = Snapshot::build(config.clone(), None, 1, &deps)?;
    let tls_config = tls::server_config(&config.server)?;

    // The built-in issuer: its database and keys are ready before anything binds.
    if config.issuer.is_some() {
        for route in &config.routes {
            if crate::config::validate::partly_shadowed_by_issuer(&route.pattern) {
                tracing::warn!(
                    route = %route.pattern,
                    "Requests below /admin/v1/ go to the built-in issuer's admin API, not to this route"
                );
            }
        }
    }
    let issuer = match (&config.issuer, revocations) {
        (Some(section), Some(set)) => Some(
            Issuer::start(section.clone(), set, options.clock.clone(), &|n| {
                std::env::var(n).ok()
            })
            .await?,
        ),
        _ => None,
    };
    let control = tokio::runtime::Handle::current();

    let count = config.server.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let listen = config.server.listen;
    let proxy_listeners =
        listen::bind_group(listen, count).map_err(|e| StartError::Bind(listen, e))?;
    let proxy_addr = proxy_listeners
        .first()
        .and_then(|l| l.local_addr().ok())
        .unwrap_or(listen);
    let mut forward_auth_listeners: Vec<Option<std::net::TcpListener>> = match &config.forward_auth
    {
        Some(f) => listen::bind_group(f.listen, count)
            .map_err(|e| StartError::Bind(f.listen, e))?
            .into_iter()
            .map(Some)
            .collect(),
        None => (0..count).map(|_| None).collect(),
    };
    let forward_auth_addr = forward_auth_listeners
        .first()
        .and_then(|l| l.as_ref())
        .and_then(|l| l.local_addr().ok());
    let admin_listener = match &config.admin {
        Some(a) => Some(
            listen::bind_one(a.listen, false)
                .and_then(TcpListener::from_std)
                .map_err(|e| StartError::Bind(a.listen, e))?,
        ),
        None => None,
    };
    let admin_addr = admin_listener.as_ref().and_then(|l| l.local_addr().ok());

    let shared = Arc::new(Shared {
        snapshot: Arc::new(ArcSwap::from_pointee(snapshot)),
        tls: ArcSwapOption::new(tls_config),
        metrics: metrics.clone(),
        connections: Arc::new(Semaphore::new(config.server.limits.max_connections)),
        forward_auth_connections: Arc::new(Semaphore::new(config.server.limits.max_connections)),
        panics: Arc::default(),
    });
    metrics.config_generation.set(1);
    metrics.config_last_load.set(options.clock.now_unix());

    let (shutdown, rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for keys in shared.snapshot.load().verifier.issuers() {
        tasks.spawn(keys.clone().run_refresher(rx.clone()));
    }
    if let Some(issuer) = &issuer {
        start_issuer_tasks(issuer, &shared, &options, &mut tasks, &rx);
    }
    let reloader = Arc::new(reload::Reloader::new(
        shared.clone(),
        deps,
        issuer.as_ref().map(|i| i.keys().clone()),
        rx.clone(),
    ));
    if let Some(interval) = options.watch_interval {
        tasks.spawn(reloader.clone().watch(interval));
    }
    #[cfg(unix)]
    tasks.spawn(reloader.clone().on_sighup());

    let grace = config.server.shutdown_grace;
    let mut workers = Vec::with_capacity(count);
    for (n, listener) in proxy_listeners.into_iter().enumerate() {
        let worker = Arc::new(dispatch::Worker {
            proxy: Proxy::new(shared.snapshot.clone(), metrics.clone()),
            panics: shared.panics.clone(),
            issuer: issuer.clone().map(|i| (i, control.clone())),
            metrics: metrics.clone(),
            requests: metrics.requests.worker(),
            access_log: options.access_log.clone(),
            no_route: Arc::from(""),
        });
        workers.push(WorkerThread::spawn(
            n,
            listener,
            forward_auth_listeners.get_mut(n).and_then(Option::take),
            shared.clone(),
            worker,
            rx.clone(),
            grace,
        )?);
    }
    if let Some(listener) = admin_listener {
        let admin = Arc::new(Admin::new(shared.snapshot.clone(), metrics.clone()));
        let handler = move |req: http::Request<crate::net::Inbound>, _conn| {
            let resp = admin.handle(&req).map(Either::Right);
            async move { resp }
        };
        tasks.spawn(accept_loop(
            listener,
            false,
            Arc::new(Semaphore::new(1024)),
            metrics.clone(),
            shared.clone(),
            rx,
            grace,
            handler,
        ));
    }
    tracing::info!(
        proxy = %proxy_addr,
        admin = %admin_addr.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
        forward_auth = %forward_auth_addr.map(|a| a.to_string()).unwrap_or_else(|| "-".into()),
        tls = !config.server.tls.is_empty(),
        workers = count,
        "Listening"
    );
    Ok(Running {
        proxy_addr,
        admin_addr,
        forward_auth_addr,
        shutdown,
        tasks,
        workers,
        shared,
        reloader,
    })
}

/// The issuer's background work: key sync (publishing its JWKS to the
/// gateway's `builtin: true` issuer, whichever snapshot holds it), housekeeping,
/// webhook delivery.
fn start_issuer_tasks(
    issuer: &Arc<Issuer>,
    shared: &Arc<Shared>,
    options: &Options,
    tasks: &mut JoinSet<()>,
    rx: &watch::Receiver<bool>,
) {
    let snapshot = shared.snapshot.clone();
    let install = move |jwks: &[u8]| {
        if let Some(keys) = snapshot.load().builtin_keys() {
            install_builtin(&keys, jwks);
        }
    };
    install(&issuer.keys().current().jwks);
    tasks.spawn(issuer.clone().run_key_sync(rx.clone(), install));
    tasks.spawn(crate::issuer::purge::run(
        issuer.store().clone(),
        options.clock.clone(),
        rx.clone(),
    ));
    tasks.spawn(
        issuer
            .revocations()
            .clone()
            .run(shared.metrics.clone(), rx.clone()),
    );
    match issuer.deliverer(options.clock.clone(), shared.metrics.clone()) {
        Ok(deliverer) => {
            tasks.spawn(deliverer.run(rx.clone()));
        }
        Err(e) => {
            tracing::error!(error = %crate::telemetry::events::chain(&e), "Webhook delivery disabled")
        }
    }
}

/// Installs the built-in issuer's published JWKS into the gateway's key set.
pub(crate) fn install_builtin(keys: &IssuerKeys, jwks: &[u8]) {
    if let Err(e) = keys.install_jwks(jwks) {
        tracing::error!(error = %crate::telemetry::events::chain(&e), "Built-in keys refused");
    }
}

/// One request worker thread and the signal that it has finished.
#[derive(Debug)]
struct WorkerThread {
    done: tokio::sync::oneshot::Receiver<()>,
    thread: std::thread::JoinHandle<()>,
}

impl WorkerThread {
    fn spawn(
        n: usize,
        listener: std::net::TcpListener,
        forward_auth: Option<std::net::TcpListener>,
        shared: Arc<Shared>,
        worker: Arc<dispatch::Worker>,
        shutdown: watch::Receiver<bool>,
        grace: Duration,
    ) -> Result<WorkerThread, StartError> {
        let (tx, done) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("portcullis-worker-{n}"))
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(async move {
                        let public = async {
                            match TcpListener::from_std(listener) {
                                Ok(l) => {
                                    let w = worker.clone();
                                    let handler = move |req, conn| dispatch::public(w.clone(), req, conn);
                                    accept_loop(
                                        l,
                                        true,
                                        shared.connections.clone(),
                                        shared.metrics.clone(),
                                        shared.clone(),
                                        shutdown.clone(),
                                        grace,
                                        handler,
                                    )
                                    .await
                                }
                                Err(e) => tracing::error!(error = %e, "Worker cannot use the listener"),
                            }
                        };
                        let decisions = async {
                            let Some(l) = forward_auth else { return };
                            match TcpListener::from_std(l) {
                                Ok(l) => {
                                    let w = worker.clone();
                                    let handler =
                                        move |req, conn| dispatch::forward_auth(w.clone(), req, conn);
                                    accept_loop(
                                        l,
                                        false,
                                        shared.forward_auth_connections.clone(),
                                        shared.metrics.clone(),
                                        shared.clone(),
                                        shutdown.clone(),
                                        grace,
                                        handler,
                                    )
                                    .await
                                }
                                Err(e) => tracing::error!(error = %e, "Worker cannot use the forward-auth listener"),
                            }
                        };
                        tokio::select! {
                            _ = async { tokio::join!(public, decisions) } => {}
                            _ = timer_anchor() => {}
                        }
                    }),
                    Err(e) => tracing::error!(error = %e, "Worker cannot start its event loop"),
                }
                let _ = tx.send(());
            })
            .map_err(|e| StartError::Worker(n, e))?;
        Ok(WorkerThread { done, thread })
    }
}

/// How far ahead a worker's runtime always has a timer due.
const TIMER_ANCHOR: Duration = Duration::from_secs(1);

/// Keeps a timer due within [`TIMER_ANCHOR`] on the worker's runtime, for
/// ever (it ends with the worker). Tokio's timer driver wakes its own thread
/// through an `eventfd` write whenever a timer is registered that is due
/// before the driver's next planned wake-up — even from that same thread.
/// Every request registers timers (the next head's read timeout, the upstream
/// response timeout) due seconds later, and without an earlier timer each
/// one cost a system call. With this one due within a second, only timers
/// shorter than that still do; the price is one wake-up a second.
async fn timer_anchor() {
    loop {
        tokio::time::sleep(TIMER_ANCHOR).await;
    }
}

/// Accepts connections until shutdown (at most as many open at once as
/// `connections` has permits — this listener's own; the rest wait in the
/// kernel's accept queue), then waits up to `grace` for in-flight requests and
/// WebSocket tunnels: keep-alive connections are told to close after their
/// current request, and whatever is still open at the deadline is closed. With `use_tls`, each connection is
/// served with the listener's TLS configuration in force when it is accepted
/// (none configured: cleartext).
#[allow(clippy::too_many_arguments)]
async fn accept_loop<H, F>(
    listener: TcpListener,
    use_tls: bool,
    connections: Arc<Semaphore>,
    metrics: Metrics,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
    handler: H,
) where
    H: Fn(http::Request<crate::net::Inbound>, Arc<crate::net::ConnInfo>) -> F
        + Clone
        + Send
        + Sync
        + 'static,
    F: std::future::Future<Output = http::Response<crate::proxy::ProxyBody>> + Send + 'static,
{
    let mut open = JoinSet::new();
    loop {
        let permit = match connections.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                metrics.limit_hit(LimitLabel::MAX_CONNECTIONS);
                tokio::select! {
                    p = connections.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    _ = shutdown.changed() => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly.
                    tracing::warn!(error = %e, "Accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            Some(done) = open.join_next(), if !open.is_empty() => {
                if done.as_ref().is_err_and(|e| e.is_panic()) {
                    tracing::error!("A connection task panicked");
                    shared.panics.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                continue;
            }
            _ = shutdown.changed() => break,
        };
        let config = if use_tls {
            shared.tls.load_full()
        } else {
            None
        };
        let limits = shared.snapshot.load().config.server.limits;
        let handler = handler.clone();
        let metrics = metrics.clone();
        let shutdown = shutdown.clone();
        open.spawn(async move {
            conn::serve(stream, peer, config, limits, metrics, shutdown, handler).await;
            drop(permit);
        });
    }
    drop(listener);
    let drain = async {
        while let Some(done) = open.join_next().await {
            if done.is_err_and(|e| e.is_panic()) {
                tracing::error!("A connection task panicked");
                shared
                    .panics
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    };
    if tokio::time::timeout(grace, drain).await.is_err() {
        tracing::warn!(
            grace_ms = grace.as_millis() as u64,
            "Shutdown grace elapsed with requests in flight"
        );
    }
}

// === impl Running ===

impl Running {
    /// Stops accepting, drains in-flight requests (up to the grace period), stops
    /// the background tasks, and returns when everything has finished, with the
    /// number of panics caught while it ran.
    pub async fn shutdown(mut self) -> Stopped {
        use std::sync::atomic::Ordering;
        let _ = self.shutdown.send(true);
        for w in std::mem::take(&mut self.workers) {
            let _ = w.done.await;
            // The thread has sent its last word; joining only reaps it.
            let joined = tokio::task::spawn_blocking(move || w.thread.join()).await;
            if !matches!(joined, Ok(Ok(()))) {
                tracing::error!("A worker thread panicked");
                self.shared.panics.fetch_add(1, Ordering::Relaxed);
            }
        }
        while let Some(res) = self.tasks.join_next().await {
            if res.is_err_and(|e| e.is_panic()) {
                tracing::error!("A server task panicked");
                self.shared.panics.fetch_add(1, Ordering::Relaxed);
            }
        }
        Stopped {
            panics: self.shared.panics.load(Ordering::Relaxed),
        }
    }

    /// The snapshot in force (for tests and reload).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.shared.snapshot.load_full()
    }

    /// Reloads the configuration file now (as SIGHUP does): the new
    /// configuration is built completely, then swapped in; on any error the
    /// one in force stays and the error is returned (and logged, and counted).
    pub async fn reload(&self) -> Result<Reloaded, ReloadError> {
        self.reloader.reload().await
    }

    /// The key set of the `builtin: true` issuer, if one is configured: the
    /// built-in issuer installs its published JWKS there
    /// ([`IssuerKeys::install_jwks`]) whenever it changes, and the gateway
    /// verifies its tokens with those keys without any HTTP fetch.
    pub fn builtin_keys(&self) -> Option<Arc<IssuerKeys>> {
        self.shared.snapshot.load().builtin_keys()
    }
}
