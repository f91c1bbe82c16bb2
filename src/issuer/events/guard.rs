//! Where webhooks may be delivered: the address policy applied to the
//! addresses a delivery would connect to, after DNS resolution. The webhook
//! client resolves names through [`GuardedResolver`], which keeps only the
//! addresses the policy allows, and the connector connects only to those, so
//! a name that resolved to a public address for a check cannot resolve to a
//! private one for the connection (DNS rebinding): there is one resolution,
//! and it is the checked one. Literal addresses skip resolution in the
//! connector; [`Deliverer::post`](super::Deliverer) checks them itself.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;

use crate::config::WebhookAddressPolicy;

/// A delivery refused by the address policy; what the address is
/// (`loopback`, `private` …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the webhook address is {0}, which the address policy refuses")]
pub struct Refused(pub &'static str);

/// Resolves webhook hosts and drops the addresses the policy refuses; a host
/// with none left is an error carrying [`Refused`].
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    policy: Arc<WebhookAddressPolicy>,
}

// === impl GuardedResolver ===

impl GuardedResolver {
    /// A resolver applying `policy`.
    pub fn new(policy: Arc<WebhookAddressPolicy>) -> GuardedResolver {
        GuardedResolver { policy }
    }
}

impl tower_service::Service<Name> for GuardedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, io::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            allowed(&policy, resolved)
        })
    }
}

/// The addresses of `resolved` the policy allows; none allowed (of some) is
/// the refusal of the first.
fn allowed(
    policy: &WebhookAddressPolicy,
    resolved: Vec<SocketAddr>,
) -> Result<std::vec::IntoIter<SocketAddr>, io::Error> {
    let mut refused = None;
    let mut kept = Vec::with_capacity(resolved.len());
    for addr in resolved {
        match policy.check(addr.ip()) {
            Ok(()) => kept.push(addr),
            Err(what) => {
                refused.get_or_insert(what);
            }
        }
    }
    match (kept.is_empty(), refused) {
        (true, Some(what)) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            Refused(what),
        )),
        _ => Ok(kept.into_iter()),
    }
}

/// The policy's verdict on a URL host that is a literal address (brackets
/// removed); `None` for a name, which the resolver checks.
pub fn check_literal(policy: &WebhookAddressPolicy, host: &str) -> Option<Refused> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = host.parse().ok()?;
    policy.check(ip).err().map(Refused)
}

/// The [`Refused`] somewhere in `err`'s chain, if the policy is why it failed.
pub fn refusal_in(err: &(dyn std::error::Error + 'static)) -> Option<Refused> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(r) = e.downcast_ref::<Refused>() {
            return Some(*r);
        }
        // An io::Error's `source` skips the error it wraps: look inside.
        if let Some(r) = e
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<Refused>())
        {
            return Some(*r);
        }
        next = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        SocketAddr::new(s.parse().unwrap(), 0)
    }

    #[test]
    fn only_allowed_addresses_are_kept() {
        let policy = WebhookAddressPolicy::default();
        let kept: Vec<_> = allowed(&policy, vec![addr("10.0.0.1"), addr("93.184.216.34")])
            .unwrap()
            .collect();
        assert_eq!(kept, [addr("93.184.216.34")]);
        let err = allowed(&policy, vec![addr("127.0.0.1"), addr("::1")]).unwrap_err();
        assert_eq!(refusal_in(&err), Some(Refused("loopback")));
        // Nothing resolved is not a refusal (the connection fails as such).
        assert_eq!(allowed(&policy, vec![]).unwrap().count(), 0);
        let deny = WebhookAddressPolicy {
            allow_private: true,
            deny: vec!["93.184.216.0/24".parse().unwrap()],
            ..WebhookAddressPolicy::default()
        };
        let err = allowed(&deny, vec![addr("93.184.216.34")]).unwrap_err();
        assert!(refusal_in(&err).is_some());
    }

    #[test]
    fn literals_are_checked_and_names_left_to_the_resolver() {
        let policy = WebhookAddressPolicy::default();
        assert_eq!(check_literal(&policy, "[::1]"), Some(Refused("loopback")));
        assert_eq!(
            check_literal(&policy, "169.254.169.254"),
            Some(Refused("link-local"))
        );
        assert_eq!(check_literal(&policy, "93.184.216.34"), None);
        assert_eq!(check_literal(&policy, "localhost"), None);
    }

    #[tokio::test]
    async fn names_resolving_to_refused_addresses_are_refused() {
        use tower_service::Service as _;
        let mut resolver = GuardedResolver::new(Arc::new(WebhookAddressPolicy::default()));
        let name: Name = "localhost".parse().unwrap();
        let err = resolver.call(name).await.unwrap_err();
        assert_eq!(refusal_in(&err), Some(Refused("loopback")));
        let dev = WebhookAddressPolicy {
            allow_private: true,
            ..WebhookAddressPolicy::default()
        };
        let mut resolver = GuardedResolver::new(Arc::new(dev));
        let name: Name = "localhost".parse().unwrap();
        let found: Vec<_> = resolver.call(name).await.unwrap().collect();
        assert!(found.iter().all(|a| a.ip().is_loopback()) && !found.is_empty());
    }
}
