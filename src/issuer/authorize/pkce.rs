//! PKCE (RFC 7636), S256 only: the shape of a challenge and a verifier, and the
//! check that a verifier hashes to the challenge. `plain` is never accepted
//! (RFC 9700 §2.1.1); refusing it is the authorization request's job.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::csrf::ct_eq;

/// Whether `challenge` can be an S256 challenge: the base64url (unpadded)
/// encoding of a SHA-256 digest, so exactly 43 characters.
pub fn valid_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether `verifier` is a well-formed code verifier: 43 to 128 characters of
/// `[A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~"` (RFC 7636 §4.1).
pub fn valid_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// The S256 challenge of `verifier`: `BASE64URL(SHA256(verifier))`.
pub fn s256(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// Whether `verifier` is well formed and hashes to `challenge` (compared in
/// constant time).
pub fn verify(challenge: &str, verifier: &str) -> bool {
    valid_verifier(verifier) && ct_eq(&s256(verifier), challenge)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc_7636_example_verifies() {
        assert_eq!(s256(VERIFIER), CHALLENGE);
        assert!(valid_challenge(CHALLENGE));
        assert!(verify(CHALLENGE, VERIFIER));
    }

    #[test]
    fn wrong_or_malformed_verifiers_fail() {
        let other = "x".repeat(43);
        assert!(!verify(CHALLENGE, &other));
        // `plain`: the verifier presented as its own challenge.
        assert!(!verify(VERIFIER, VERIFIER));
        assert!(!verify(CHALLENGE, "short"));
        assert!(!verify(CHALLENGE, &"a".repeat(129)));
        assert!(!valid_verifier(&format!("{}!", "a".repeat(43))));
        assert!(valid_verifier(&"a~._-".repeat(20)));
    }

    #[test]
    fn challenges_must_look_like_s256() {
        assert!(!valid_challenge("abc"));
        assert!(!valid_challenge(&"a".repeat(44)));
        assert!(!valid_challenge(&format!("{}+", "a".repeat(42))));
    }
}
