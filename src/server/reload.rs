//! Reload: on SIGHUP, on a change of the configuration file or of a TLS file it
//! names, or when asked ([`super::Running::reload`]), the file is read and
//! checked exactly as `portcullis check` does, the listener's TLS configuration
//! and the whole [`Snapshot`] are built, and only then swapped in, in one step.
//! Any error leaves the configuration in force untouched: it is logged with its
//! file, line and key, and counted in `portcullis_config_reload_failures_total`.
//!
//! What a reload cannot change on a running process (listen addresses, the
//! worker count, `max_connections`, the built-in issuer's section) is reported
//! as needing a restart; everything else applies to new requests at once, while
//! requests in flight finish on the configuration they started with.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{Mutex, watch};

use super::Shared;
use super::tls::{self, TlsError};
use crate::config::{Config, ConfigErrors};
use crate::issuer::keyring::KeyRing;
use crate::state::{BuildError, Deps, Snapshot};

/// Why a reload was refused; the configuration in force stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the configuration is invalid")]
    Config(#[source] ConfigErrors),
    #[error("the configuration cannot be compiled")]
    Build(#[source] BuildError),
    #[error("the listener's TLS configuration cannot be built")]
    Tls(#[source] TlsError),
}

/// A reload that took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reloaded {
    /// The generation now in force.
    pub generation: u64,
}

/// Reloads, one at a time.
pub struct Reloader {
    shared: Arc<Shared>,
    deps: Deps,
    /// The built-in issuer's keys, installed into a new `builtin: true` key set.
    issuer_keys: Option<Arc<KeyRing>>,
    shutdown: watch::Receiver<bool>,
    /// Held for the whole of a reload: reloads never interleave.
    lock: Mutex<()>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader").finish_non_exhaustive()
    }
}

/// What the watcher compares: for each watched file, its size, modification
/// time and inode (a Kubernetes ConfigMap update swaps a symlink, which changes
/// the inode behind the same path).
type Fingerprint = Vec<Option<(u64, Option<SystemTime>, u64)>>;

impl Reloader {
    pub(super) fn new(
        shared: Arc<Shared>,
        deps: Deps,
        issuer_keys: Option<Arc<KeyRing>>,
        shutdown: watch::Receiver<bool>,
    ) -> Reloader {
        Reloader {
            shared,
            deps,
            issuer_keys,
            shutdown,
            lock: Mutex::new(()),
        }
    }

    /// Reloads now; see the module documentation.
    pub async fn reload(&self) -> Result<super::Reloaded, ReloadError> {
        let _one_at_a_time = self.lock.lock().await;
        let old = self.shared.snapshot.load_full();
        let path = old.config.source.clone();
        match self.build(&old, &path).await {
            Ok((snapshot, tls_config)) => Ok(self.swap(&old, snapshot, tls_config)),
            Err(e) => {
                self.shared.metrics.config_reload_failures.inc();
                match &e {
                    ReloadError::Config(errors) => {
                        for err in errors.errors() {
                            tracing::error!(error = %err, "Configuration reload refused");
                        }
                    }
                    ReloadError::Build(_) | ReloadError::Tls(_) => {
                        tracing::error!(
                            file = %path.display(),
                            error = %crate::telemetry::events::chain(&e),
                            "Configuration reload refused"
                        );
                    }
                }
                Err(e)
            }
        }
    }

    async fn build(
        &self,
        old: &Snapshot,
        path: &std::path::Path,
    ) -> Result<(Snapshot, Option<Arc<rustls::ServerConfig>>), ReloadError> {
        let p = path.to_owned();
        // Reading and parsing may touch the disk: off the event loop.
        let config = tokio::task::spawn_blocking(move || Config::load(&p))
            .await
            .map_err(|_| {
                ReloadError::Config(ConfigErrors::single(crate::config::ConfigError::io(
                    path,
                    &std::io::Error::other("the configuration reader stopped"),
                )))
            })?
            .map_err(ReloadError::Config)?;
        let tls_config = tls::server_config(&config.server).map_err(ReloadError::Tls)?;
        restart_needed(&old.config, &config);
        let snapshot = Snapshot::build(Arc::new(config), Some(old), old.generation + 1, &self.deps)
            .map_err(ReloadError::Build)?;
        Ok((snapshot, tls_config))
    }

    fn swap(
        &self,
        old: &Snapshot,
        snapshot: Snapshot,
        tls_config: Option<Arc<rustls::ServerConfig>>,
    ) -> super::Reloaded {
        let generation = snapshot.generation;
        let old_issuers = old.verifier.issuers();
        let new_issuers = snapshot.verifier.issuers().to_vec();
        // A new `builtin: true` key set starts with the keys the issuer publishes.
        if let (Some(keys), Some(ring)) = (snapshot.builtin_keys(), &self.issuer_keys) {
            if !old_issuers.iter().any(|o| Arc::ptr_eq(o, &keys)) {
                super::install_builtin(&keys, &ring.current().jwks);
            }
        }
        self.shared.tls.store(tls_config);
        self.shared.snapshot.store(Arc::new(snapshot));
        for keys in &new_issuers {
            if !old_issuers.iter().any(|o| Arc::ptr_eq(o, keys)) {
                tokio::spawn(keys.clone().run_refresher(self.shutdown.clone()));
            }
        }
        for keys in old_issuers {
            if !new_issuers.iter().any(|n| Arc::ptr_eq(n, keys)) {
                keys.retire();
            }
        }
        let metrics = &self.shared.metrics;
        metrics.config_generation.set(generation as i64);
        metrics.config_last_load.set(self.deps.clock.now_unix());
        tracing::info!(generation, "Configuration reloaded");
        super::Reloaded { generation }
    }

    /// Reloads whenever the configuration file or a TLS file it names (the
    /// listener's, an upstream's, an issuer's) changes
    /// (checked every `interval`), once the change has held still for one more
    /// check: a file caught half-written (a truncated file can be valid YAML) is
    /// read again when its writer is done. A broken file is reported once; the
    /// next change is tried again.
    pub(super) async fn watch(self: Arc<Self>, interval: Duration) {
        let mut shutdown = self.shutdown.clone();
        let mut last = self.fingerprint();
        let mut pending: Option<Fingerprint> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => return,
            }
            let now = self.fingerprint();
            if now == last {
                pending = None;
                continue;
            }
            if pending.as_ref() == Some(&now) {
                last = now;
                pending = None;
                let _ = self.reload().await;
            } else {
                pending = Some(now);
            }
        }
    }

    fn fingerprint(&self) -> Fingerprint {
        let config = self.shared.snapshot.load().config.clone();
        let mut files: Vec<PathBuf> = vec![config.source.clone()];
        files.extend(tls::files(&config.server));
        // The upstreams' and issuers' TLS files: a rotated client certificate
        // or a CA bundle with a root removed is picked up like the listener's.
        for u in &config.upstreams {
            files.extend(u.ca_file.clone());
            files.extend(
                u.client_cert
                    .iter()
                    .flat_map(|c| [c.cert.clone(), c.key.clone()]),
            );
        }
        files.extend(config.issuers.iter().filter_map(|i| i.ca_file.clone()));
        files
            .iter()
            .map(|f| {
                let m = std::fs::metadata(f).ok()?;
                #[cfg(unix)]
                let inode = std::os::unix::fs::MetadataExt::ino(&m);
                #[cfg(not(unix))]
                let inode = 0;
                Some((m.len(), m.modified().ok(), inode))
            })
            .collect()
    }

    /// Reloads on every SIGHUP until shutdown.
    #[cfg(unix)]
    pub(super) async fn on_sighup(self: Arc<Self>) {
        use tokio::signal::unix::{SignalKind, signal};
        let mut shutdown = self.shutdown.clone();
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("SIGHUP cannot be watched: reload only on file changes");
            return;
        };
        loop {
            tokio::select! {
                got = hup.recv() => {
                    if got.is_none() {
                        return;
                    }
                    let _ = self.reload().await;
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// Logs what the new configuration changes that only a restart applies.
fn restart_needed(old: &Config, new: &Config) {
    let mut changed = Vec::new();
    if old.server.listen != new.server.listen {
        changed.push("server.listen");
    }
    if old.server.workers != new.server.workers {
        changed.push("server.workers");
    }
    if old.server.limits.max_connections != new.server.limits.max_connections {
        changed.push("server.limits.max_connections");
    }
    if old.admin != new.admin {
        changed.push("admin");
    }
    // `trust_request_line` is read from the snapshot, request by request.
    let listen = |c: &Config| c.forward_auth.as_ref().map(|f| f.listen);
    if listen(old) != listen(new) {
        changed.push("forward_auth");
    }
    if old.issuer != new.issuer {
        changed.push("issuer");
    }
    if !changed.is_empty() {
        tracing::warn!(
            keys = %changed.join(", "),
            "Configuration reloaded, but these changes need a restart to apply"
        );
    }
}
