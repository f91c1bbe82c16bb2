//! The policy that keeps webhook deliveries off private networks
//! ([`WebhookAddressPolicy`]): by default every special-purpose range of the
//! IANA registries (loopback, private, link-local, shared, documentation,
//! multicast, reserved …) is refused, so that whoever may create a webhook
//! cannot make the issuer POST to services inside its network.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Which addresses webhooks may be delivered to (`issuer.webhook_address_policy`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookAddressPolicy {
    /// Deliver to the special-purpose ranges too (development: receivers on
    /// localhost or a private network). Off by default.
    pub allow_private: bool,
    /// Ranges exempt from the special-purpose ranges (a receiver on a
    /// private network you trust), when `allow_private` is off.
    pub allow: Vec<ipnet::IpNet>,
    /// Ranges always refused, `allow_private` or not.
    pub deny: Vec<ipnet::IpNet>,
}

/// The special-purpose IPv4 ranges refused by default, with what they are.
const SPECIAL_V4: &[([u8; 4], u8, &str)] = &[
    ([0, 0, 0, 0], 8, "this-network"),
    ([10, 0, 0, 0], 8, "private"),
    ([100, 64, 0, 0], 10, "shared (carrier-grade NAT)"),
    ([127, 0, 0, 0], 8, "loopback"),
    ([169, 254, 0, 0], 16, "link-local"),
    ([172, 16, 0, 0], 12, "private"),
    ([192, 0, 0, 0], 24, "IETF protocol assignments"),
    ([192, 0, 2, 0], 24, "documentation"),
    ([192, 88, 99, 0], 24, "6to4 relay anycast"),
    ([192, 168, 0, 0], 16, "private"),
    ([198, 18, 0, 0], 15, "benchmarking"),
    ([198, 51, 100, 0], 24, "documentation"),
    ([203, 0, 113, 0], 24, "documentation"),
    ([224, 0, 0, 0], 4, "multicast"),
    ([240, 0, 0, 0], 4, "reserved or broadcast"),
];

/// The special-purpose IPv6 ranges refused by default. Ranges that embed an
/// IPv4 address (mapped, compatible, NAT64, 6to4) are judged by it instead.
const SPECIAL_V6: &[([u16; 8], u8, &str)] = &[
    ([0, 0, 0, 0, 0, 0, 0, 0], 128, "unspecified"),
    ([0, 0, 0, 0, 0, 0, 0, 1], 128, "loopback"),
    ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, "local-use NAT64"),
    ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only"),
    ([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, "Teredo"),
    ([0x2001, 0x2, 0, 0, 0, 0, 0, 0], 48, "benchmarking"),
    ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, "documentation"),
    ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique local (private)"),
    ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local"),
    ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "site-local"),
    ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast"),
];

fn prefix_eq(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let full = usize::from(prefix / 8);
    let rest = prefix % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (a[full] & mask) == (b[full] & mask)
}

// === impl WebhookAddressPolicy ===

impl WebhookAddressPolicy {
    /// `Ok` when webhooks may be delivered to `ip`; else what the address is
    /// (`loopback`, `private`, `denied by issuer.webhook_address_policy.deny` …).
    pub fn check(&self, ip: IpAddr) -> Result<(), &'static str> {
        let ip = ip.to_canonical();
        if self.deny.iter().any(|c| c.contains(&ip)) {
            return Err("denied by webhook_address_policy.deny");
        }
        if self.allow_private || self.allow.iter().any(|c| c.contains(&ip)) {
            return Ok(());
        }
        match special(ip) {
            Some(what) => Err(what),
            None => Ok(()),
        }
    }

    /// Whether `host` (a URL's host, brackets removed) is obviously refused
    /// without resolving it: a literal address the policy refuses, or
    /// `localhost` and its subdomains (unless private addresses are allowed).
    /// The delivery checks the resolved addresses again, every time.
    pub fn refuses_host(&self, host: &str) -> Option<&'static str> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            return self.check(ip).err();
        }
        let lower = host.trim_end_matches('.').to_ascii_lowercase();
        let local = lower == "localhost" || lower.ends_with(".localhost");
        (local && !self.allow_private).then_some("loopback")
    }
}

/// What a special-purpose address is, or `None` for a global one.
fn special(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => SPECIAL_V4
            .iter()
            .find(|(net, prefix, _)| prefix_eq(net, &v4.octets(), *prefix))
            .map(|(_, _, what)| *what),
        IpAddr::V6(v6) => {
            if let Some(embedded) = embedded_v4(v6) {
                return special(IpAddr::V4(embedded));
            }
            let octets = v6.octets();
            SPECIAL_V6
                .iter()
                .find(|(net, prefix, _)| {
                    prefix_eq(&Ipv6Addr::from(*net).octets(), &octets, *prefix)
                })
                .map(|(_, _, what)| *what)
        }
    }
}

/// The IPv4 address an IPv6 one carries: IPv4-compatible (`::a.b.c.d`, not
/// `::` or `::1`), NAT64 (`64:ff9b::/96`) or 6to4 (`2002::/16`).
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 || lo > 1 => Some(low),
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        [0x2002, a, b, ..] => Some(Ipv4Addr::new(
            (a >> 8) as u8,
            a as u8,
            (b >> 8) as u8,
            b as u8,
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> ipnet::IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn special_ranges_are_refused_by_default() {
        let p = WebhookAddressPolicy::default();
        for (addr, what) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("192.168.1.1", "private"),
            ("172.20.0.1", "private"),
            ("169.254.169.254", "link-local"),
            ("100.100.0.1", "shared (carrier-grade NAT)"),
            ("0.0.0.0", "this-network"),
            ("255.255.255.255", "reserved or broadcast"),
            ("224.0.0.1", "multicast"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::127.0.0.1", "loopback"),
            ("64:ff9b::10.0.0.1", "private"),
            ("2002:c0a8:0101::1", "private"),
            ("fd00::1", "unique local (private)"),
            ("fe80::1", "link-local"),
            ("ff02::1", "multicast"),
        ] {
            assert_eq!(p.check(ip(addr)), Err(what), "{addr}");
        }
        for addr in ["93.184.216.34", "2606:2800:220:1::1", "64:ff9b::5db8:d822"] {
            assert_eq!(p.check(ip(addr)), Ok(()), "{addr}");
        }
    }

    #[test]
    fn allow_private_allow_and_deny() {
        let dev = WebhookAddressPolicy {
            allow_private: true,
            deny: vec![cidr("192.168.0.0/16")],
            ..WebhookAddressPolicy::default()
        };
        assert_eq!(dev.check(ip("127.0.0.1")), Ok(()));
        assert!(dev.check(ip("192.168.1.1")).is_err(), "deny wins");
        let trusted = WebhookAddressPolicy {
            allow: vec![cidr("10.5.0.0/16")],
            deny: vec![cidr("93.184.216.0/24")],
            ..WebhookAddressPolicy::default()
        };
        assert_eq!(trusted.check(ip("10.5.1.1")), Ok(()));
        assert_eq!(trusted.check(ip("10.6.1.1")), Err("private"));
        assert!(trusted.check(ip("93.184.216.34")).is_err());
    }

    #[test]
    fn obviously_refused_hosts() {
        let p = WebhookAddressPolicy::default();
        assert_eq!(p.refuses_host("127.0.0.1"), Some("loopback"));
        assert_eq!(p.refuses_host("[::1]"), Some("loopback"));
        assert_eq!(p.refuses_host("LocalHost."), Some("loopback"));
        assert_eq!(p.refuses_host("api.localhost"), Some("loopback"));
        assert_eq!(p.refuses_host("hooks.example.test"), None);
        let dev = WebhookAddressPolicy {
            allow_private: true,
            ..WebhookAddressPolicy::default()
        };
        assert_eq!(dev.refuses_host("localhost"), None);
        assert_eq!(dev.refuses_host("127.0.0.1"), None);
    }
}
