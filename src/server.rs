//! Listeners and connections: binding, HTTP/1.1 + h2c on one port, the admin
//! listener, and graceful drain on shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::admin::Admin;
use crate::auth::Verifier;
use crate::auth::jwks::{IssuerKeys, http_client};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::issuer::Issuer;
use crate::proxy::forward::Upstream;
use crate::proxy::{Proxy, ProxyBody};
use crate::state::Snapshot;
use crate::telemetry::Metrics;
use crate::telemetry::access::AccessLog;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {0}")]
    Bind(SocketAddr, #[source] std::io::Error),
    #[error("cannot set up upstream")]
    Upstream(#[from] crate::proxy::forward::UpstreamError),
    #[error("cannot set up key fetching for issuer `{0}`")]
    Keys(String, #[source] crate::auth::jwks::FetchError),
    #[error("cannot start the built-in issuer")]
    Issuer(#[from] crate::issuer::endpoints::IssuerError),
}

/// A started gateway.
#[derive(Debug)]
pub struct Running {
    /// Where the proxy listens (useful with port 0).
    pub proxy_addr: SocketAddr,
    /// Where the admin listener listens, when configured.
    pub admin_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    workers: Vec<Worker>,
    snapshot: Arc<ArcSwap<Snapshot>>,
}

/// What [`start`] needs besides the configuration; tests inject a clock.
#[derive(Debug, Clone)]
pub struct Options {
    pub clock: Arc<dyn Clock>,
    /// Where the access log goes (default: `tracing` events).
    pub access_log: AccessLog,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clock: Arc::new(SystemClock),
            access_log: AccessLog::tracing(),
        }
    }
}

/// Binds the listeners, starts the key refreshers, and serves until
/// [`Running::shutdown`].
///
/// Requests are served by `server.workers` threads (default: one per CPU), each
/// with its own single-threaded event loop accepting from the shared listener and
/// its own upstream connection pools: a request never hops between threads. Key
/// refreshes and the admin listener run on the caller's runtime.
pub async fn start(config: Config, options: Options) -> Result<Running, StartError> {
    let config = Arc::new(config);
    let metrics = Metrics::new();
    let mut issuers = Vec::with_capacity(config.issuers.len());
    for i in &config.issuers {
        let client =
            http_client(i.ca_file.as_deref()).map_err(|e| StartError::Keys(i.id.clone(), e))?;
        issuers.push(Arc::new(IssuerKeys::new(
            Arc::new(i.clone()),
            client,
            metrics.clone(),
        )));
    }
    let header_claims = config
        .identity_headers
        .iter()
        .map(|(c, _)| c.clone())
        .collect();
    let verifier = Arc::new(Verifier::new(
        issuers.clone(),
        header_claims,
        options.clock.clone(),
        metrics.clone(),
    ));
    let snapshot = Arc::new(ArcSwap::from_pointee(Snapshot::new(
        config.clone(),
        verifier,
    )));

    // The built-in issuer: its database and keys are ready before anything binds.
    let issuer = match &config.issuer {
        Some(section) => Some(
            Issuer::start(section.clone(), options.clock.clone(), &|n| {
                std::env::var(n).ok()
            })
            .await?,
        ),
        None => None,
    };
    let control = tokio::runtime::Handle::current();

    let proxy_listener = bind(config.server.listen).await?;
    let proxy_addr = local(&proxy_listener, config.server.listen);
    let admin_listener = match &config.admin {
        Some(a) => Some(bind(a.listen).await?),
        None => None,
    };
    let admin_addr = admin_listener
        .as_ref()
        .zip(config.admin.as_ref())
        .map(|(l, a)| local(l, a.listen));

    let (shutdown, rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    // The built-in issuer's keys are pushed in process: nothing to refresh.
    for keys in issuers.iter().filter(|i| !i.is_builtin()) {
        tasks.spawn(keys.clone().run_refresher(rx.clone()));
    }
    if let Some(issuer) = &issuer {
        // The gateway verifies the built-in issuer's tokens with the keys it
        // publishes, installed in process whenever they change.
        let builtin: Vec<Arc<IssuerKeys>> =
            issuers.iter().filter(|i| i.is_builtin()).cloned().collect();
        let install = move |jwks: &[u8]| {
            for keys in &builtin {
                if let Err(e) = keys.install_jwks(jwks) {
                    tracing::error!(error = %crate::telemetry::events::chain(&e), "Built-in keys refused");
                }
            }
        };
        install(&issuer.keys().current().jwks);
        tasks.spawn(issuer.clone().run_key_sync(rx.clone(), install));
        tasks.spawn(crate::issuer::purge::run(
            issuer.store().clone(),
            options.clock.clone(),
            rx.clone(),
        ));
        let deliverer = issuer.deliverer(options.clock.clone(), metrics.clone());
        match deliverer {
            Ok(deliverer) => {
                tasks.spawn(deliverer.run(rx.clone()));
            }
            Err(e) => {
                tracing::error!(error = %crate::telemetry::events::chain(&e), "Webhook delivery disabled")
            }
        }
    }
    let grace = config.server.shutdown_grace;
    let count = config.server.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let shared = proxy_listener
        .into_std()
        .map_err(|e| StartError::Bind(proxy_addr, e))?;
    let mut workers = Vec::with_capacity(count);
    for n in 0..count {
        let listener = shared
            .try_clone()
            .map_err(|e| StartError::Bind(proxy_addr, e))?;
        let upstreams: Arc<[Upstream]> = config
            .upstreams
            .iter()
            .map(Upstream::new)
            .collect::<Result<Vec<_>, _>>()?
            .into();
        let proxy = Arc::new(Proxy::new(
            snapshot.clone(),
            upstreams,
            metrics.clone(),
            options.access_log.clone(),
        ));
        let issuer = issuer.clone().map(|i| (i, control.clone()));
        workers.push(Worker::spawn(
            n,
            listener,
            proxy,
            issuer,
            rx.clone(),
            grace,
        )?);
    }
    drop(shared);
    if let Some(listener) = admin_listener {
        let admin = Arc::new(Admin::new(snapshot.clone(), metrics));
        tasks.spawn(serve(listener, rx, grace, move |req, _| {
            let admin = admin.clone();
            async move { Ok::<_, std::convert::Infallible>(admin.handle(&req)) }
        }));
    }
    match admin_addr {
        Some(admin) => tracing::info!(proxy = %proxy_addr, %admin, workers = count, "Listening"),
        None => tracing::info!(proxy = %proxy_addr, workers = count, "Listening"),
    }
    Ok(Running {
        proxy_addr,
        admin_addr,
        shutdown,
        tasks,
        workers,
        snapshot,
    })
}

/// One request worker thread and the signal that it has finished.
#[derive(Debug)]
struct Worker {
    done: tokio::sync::oneshot::Receiver<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Worker {
    fn spawn(
        n: usize,
        listener: std::net::TcpListener,
        proxy: Arc<Proxy>,
        issuer: Option<(Arc<Issuer>, tokio::runtime::Handle)>,
        shutdown: watch::Receiver<bool>,
        grace: Duration,
    ) -> Result<Worker, StartError> {
        let addr = listener
            .local_addr()
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
        let (tx, done) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("portcullis-worker-{n}"))
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(async move {
                        match TcpListener::from_std(listener) {
                            Ok(l) => {
                                serve(l, shutdown, grace, move |req, remote| {
                                    let proxy = proxy.clone();
                                    let issuer = issuer.clone();
                                    async move {
                                        Ok::<_, std::convert::Infallible>(match issuer {
                                            Some((issuer, control))
                                                if Issuer::serves(req.uri().path()) =>
                                            {
                                                issue(issuer, control, req, remote).await
                                            }
                                            _ => proxy.handle(req, remote).await,
                                        })
                                    }
                                })
                                .await
                            }
                            Err(e) => tracing::error!(error = %e, "Worker cannot use the listener"),
                        }
                    }),
                    Err(e) => tracing::error!(error = %e, "Worker cannot start its event loop"),
                }
                let _ = tx.send(());
            })
            .map_err(|e| StartError::Bind(addr, e))?;
        Ok(Worker { done, thread })
    }
}

/// Runs an issuer request on the control runtime, where the database pool and
/// the key ring live, and hands the answer back to the worker's connection.
/// The peer's address goes along in the request's extensions: the issuer
/// throttles failed authentications per source address.
async fn issue(
    issuer: Arc<Issuer>,
    control: tokio::runtime::Handle,
    mut req: http::Request<hyper::body::Incoming>,
    remote: SocketAddr,
) -> http::Response<ProxyBody> {
    req.extensions_mut()
        .insert(crate::issuer::throttle::ClientAddr(remote));
    let resp = match control.spawn(async move { issuer.handle(req).await }).await {
        Ok(resp) => resp,
        Err(_) => crate::issuer::error::OAuthError::Server.into_response(),
    };
    resp.map(http_body_util::Either::Right)
}

/// Pending connections the kernel may queue before `accept` (capped by
/// `net.core.somaxconn`): bursts of new connections wait instead of being refused.
const BACKLOG: u32 = 4096;

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| StartError::Bind(addr, e))?;
    socket
        .set_reuseaddr(true)
        .map_err(|e| StartError::Bind(addr, e))?;
    socket.bind(addr).map_err(|e| StartError::Bind(addr, e))?;
    socket
        .listen(BACKLOG)
        .map_err(|e| StartError::Bind(addr, e))
}

fn local(l: &TcpListener, fallback: SocketAddr) -> SocketAddr {
    l.local_addr().unwrap_or(fallback)
}

/// Accepts connections until shutdown, then waits up to `grace` for in-flight
/// requests; keep-alive connections are told to close after their current request.
async fn serve<F, Fut, B>(
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
    handler: F,
) where
    F: Fn(http::Request<hyper::body::Incoming>, SocketAddr) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<http::Response<B>, std::convert::Infallible>>
        + Send
        + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        // One flattened write per response instead of a vectored one: cheaper
        // for the small heads and bodies an API gateway mostly carries.
        .writev(false);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly.
                    tracing::warn!(error = %e, "Accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = service_fn(move |req| handler(req, remote));
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "Connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(grace, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            grace_ms = grace.as_millis() as u64,
            "Shutdown grace elapsed with requests in flight"
        );
    }
}

// === impl Running ===

impl Running {
    /// Stops accepting, drains in-flight requests (up to the grace period), stops
    /// the background tasks, and returns when everything has finished.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for w in std::mem::take(&mut self.workers) {
            let _ = w.done.await;
            // The thread has sent its last word; joining only reaps it.
            let _ = tokio::task::spawn_blocking(move || w.thread.join()).await;
        }
        while let Some(res) = self.tasks.join_next().await {
            if let Err(e) = res {
                if e.is_panic() {
                    tracing::error!("A server task panicked");
                }
            }
        }
    }

    /// The snapshot in force (for tests and reload).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// The key set of the `builtin: true` issuer, if one is configured: the
    /// built-in issuer installs its published JWKS there
    /// ([`IssuerKeys::install_jwks`]) whenever it changes, and the gateway
    /// verifies its tokens with those keys without any HTTP fetch.
    pub fn builtin_keys(&self) -> Option<Arc<IssuerKeys>> {
        self.snapshot
            .load()
            .verifier
            .issuers()
            .iter()
            .find(|i| i.is_builtin())
            .cloned()
    }
}
