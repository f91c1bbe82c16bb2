//! Signing keys at rest: sealed with AES-256-GCM under a key derived (HKDF-SHA256)
//! from `PORTCULLIS_MASTER_KEY`, or stored as plain PKCS#8 when it is unset.
//!
//! A sealed key is `pcsk1:` ‖ 12-byte nonce ‖ ciphertext ‖ tag, with the key's
//! `kid` as associated data (a sealed key copied onto another row does not open).
//! Plain PKCS#8 DER starts with a SEQUENCE tag (0x30), so the two never collide.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use super::SigningError;

/// The environment variable holding the master key.
pub const MASTER_KEY_ENV: &str = "PORTCULLIS_MASTER_KEY";
/// The prefix of a sealed key, version 1.
pub const SEALED_PREFIX: &[u8] = b"pcsk1:";
/// The shortest master key accepted, in bytes.
pub const MIN_MASTER_KEY_LEN: usize = 16;

const HKDF_SALT: &[u8] = b"portcullis signing keys";
const HKDF_INFO: &[u8] = b"portcullis/signing-key/aes-256-gcm/v1";

/// The key that seals signing keys. Its `Debug` shows nothing.
pub struct MasterKey(LessSafeKey);

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(redacted)")
    }
}

// === impl MasterKey ===

impl MasterKey {
    /// Derives the sealing key from the master key's text (at least
    /// [`MIN_MASTER_KEY_LEN`] bytes).
    pub fn derive(secret: &str) -> Result<MasterKey, SigningError> {
        if secret.len() < MIN_MASTER_KEY_LEN {
            return Err(SigningError::WeakMasterKey);
        }
        let prk = Salt::new(HKDF_SHA256, HKDF_SALT).extract(secret.as_bytes());
        let mut key = [0u8; 32];
        prk.expand(&[HKDF_INFO], &AES_256_GCM)
            .and_then(|okm| okm.fill(&mut key))
            .map_err(|_| SigningError::Seal)?;
        let unbound = UnboundKey::new(&AES_256_GCM, &key).map_err(|_| SigningError::Seal)?;
        Ok(MasterKey(LessSafeKey::new(unbound)))
    }

    /// The master key named by `PORTCULLIS_MASTER_KEY` in `lookup` (the process
    /// environment, injected), or `None` when it is unset or empty.
    pub fn from_env(
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<MasterKey>, SigningError> {
        match lookup(MASTER_KEY_ENV) {
            Some(v) if !v.is_empty() => MasterKey::derive(&v).map(Some),
            _ => Ok(None),
        }
    }
}

/// Whether a stored key is sealed (as opposed to plain PKCS#8).
pub fn is_sealed(stored: &[u8]) -> bool {
    stored.starts_with(SEALED_PREFIX)
}

/// The form of `pkcs8` to store: sealed under `master`, or as it is without one.
pub fn seal(master: Option<&MasterKey>, kid: &str, pkcs8: &[u8]) -> Result<Vec<u8>, SigningError> {
    let Some(master) = master else {
        return Ok(pkcs8.to_vec());
    };
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| SigningError::Seal)?;
    let mut body = pkcs8.to_vec();
    master
        .0
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(kid.as_bytes()),
            &mut body,
        )
        .map_err(|_| SigningError::Seal)?;
    let mut out = Vec::with_capacity(SEALED_PREFIX.len() + NONCE_LEN + body.len());
    out.extend_from_slice(SEALED_PREFIX);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&body);
    Ok(out)
}

/// The PKCS#8 document of a stored key. A plain key is returned as it is (also
/// when a master key is set, so that existing keys keep working after one is
/// introduced); a sealed one needs the master key it was sealed with.
pub fn open(master: Option<&MasterKey>, kid: &str, stored: &[u8]) -> Result<Vec<u8>, SigningError> {
    let Some(sealed) = stored.strip_prefix(SEALED_PREFIX) else {
        return Ok(stored.to_vec());
    };
    let Some(master) = master else {
        return Err(SigningError::MasterKeyMissing {
            kid: kid.to_owned(),
        });
    };
    let wrong = || SigningError::WrongMasterKey {
        kid: kid.to_owned(),
    };
    if sealed.len() < NONCE_LEN {
        return Err(wrong());
    }
    let (nonce, body) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| wrong())?;
    let mut body = body.to_vec();
    let plain = master
        .0
        .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut body)
        .map_err(|_| wrong())?;
    Ok(plain.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PKCS8: &[u8] = &[0x30, 0x03, 0x02, 0x01, 0x00];

    fn master(s: &str) -> MasterKey {
        MasterKey::derive(s).expect("master key")
    }

    #[test]
    fn without_a_master_key_keys_are_stored_plain() {
        let stored = seal(None, "k1", PKCS8).expect("seal");
        assert_eq!(stored, PKCS8);
        assert!(!is_sealed(&stored));
        assert_eq!(open(None, "k1", &stored).expect("open"), PKCS8);
    }

    #[test]
    fn sealed_keys_round_trip_and_are_distinguishable() {
        let m = master("correct horse battery staple");
        let stored = seal(Some(&m), "k1", PKCS8).expect("seal");
        assert!(is_sealed(&stored));
        assert!(!stored.windows(PKCS8.len()).any(|w| w == PKCS8));
        assert_eq!(open(Some(&m), "k1", &stored).expect("open"), PKCS8);
        // Two seals of one key differ (fresh nonce).
        assert_ne!(stored, seal(Some(&m), "k1", PKCS8).expect("seal"));
        // Plain keys still open when a master key is set.
        assert_eq!(open(Some(&m), "k0", PKCS8).expect("open"), PKCS8);
    }

    #[test]
    fn wrong_missing_or_weak_master_keys_are_clear_errors() {
        let stored =
            seal(Some(&master("correct horse battery staple")), "k1", PKCS8).expect("seal");
        let err =
            open(Some(&master("incorrect horse battery")), "k1", &stored).expect_err("wrong key");
        assert!(matches!(err, SigningError::WrongMasterKey { .. }));
        assert!(err.to_string().contains("PORTCULLIS_MASTER_KEY"), "{err}");
        let err = open(None, "k1", &stored).expect_err("no key");
        assert!(matches!(err, SigningError::MasterKeyMissing { .. }));
        assert!(err.to_string().contains("not set"), "{err}");
        // The kid is bound: a sealed key moved to another row does not open.
        let m = master("correct horse battery staple");
        assert!(open(Some(&m), "k2", &stored).is_err());
        assert!(open(Some(&m), "k1", b"pcsk1:short").is_err());
        assert!(matches!(
            MasterKey::derive("short"),
            Err(SigningError::WeakMasterKey)
        ));
    }

    #[test]
    fn the_master_key_comes_from_the_injected_environment() {
        let none = MasterKey::from_env(&|_| None).expect("ok");
        assert!(none.is_none());
        let empty = MasterKey::from_env(&|_| Some(String::new())).expect("ok");
        assert!(empty.is_none());
        let set = MasterKey::from_env(&|n| {
            (n == MASTER_KEY_ENV).then(|| "correct horse battery staple".to_owned())
        })
        .expect("ok");
        assert!(set.is_some());
        assert!(MasterKey::from_env(&|_| Some("weak".to_owned())).is_err());
    }
}
