//! The system's trust anchors, read once per process and shared by every
//! outbound TLS client (JWKS fetches, upstreams on every worker, webhooks).
//! Reading and parsing `/etc/ssl/certs` for each client cost a few hundred
//! kilobytes per copy and a burst of garbage at start-up.

use std::sync::{Arc, OnceLock};

use rustls::RootCertStore;

/// The system roots (`rustls-native-certs`), loaded on first use; certificates
/// that do not parse are skipped, as every TLS stack does.
pub fn native_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            Arc::new(roots)
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_roots_are_loaded_once_and_shared() {
        assert!(Arc::ptr_eq(&native_roots(), &native_roots()));
    }
}
