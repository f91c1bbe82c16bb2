//! Secrets at rest: signing keys and webhook secrets, sealed with AES-256-GCM
//! under keys derived (HKDF-SHA256, one per purpose) from
//! `PORTCULLIS_MASTER_KEY`, or stored as they are when it is unset.
//!
//! A sealed signing key is `pcsk1:` ‖ 12-byte nonce ‖ ciphertext ‖ tag, with the
//! key's `kid` as associated data (a sealed key copied onto another row does not
//! open). Plain PKCS#8 DER starts with a SEQUENCE tag (0x30), so the two never
//! collide. A sealed text secret (a webhook's `whsec_…`) is `pcws1:` and the
//! base64url of nonce ‖ ciphertext ‖ tag, bound to its record the same way
//! (`webhook:<id>`); a plain one starts with `whsec_`, so old rows still read.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;

use super::SigningError;

/// The environment variable holding the master key.
pub const MASTER_KEY_ENV: &str = "PORTCULLIS_MASTER_KEY";
/// The prefix of a sealed key, version 1.
pub const SEALED_PREFIX: &[u8] = b"pcsk1:";
/// The shortest master key accepted, in bytes.
pub const MIN_MASTER_KEY_LEN: usize = 16;

/// The prefix of a sealed text secret, version 1.
pub const SECRET_PREFIX: &str = "pcws1:";

const HKDF_SALT: &[u8] = b"portcullis signing keys";
const HKDF_INFO: &[u8] = b"portcullis/signing-key/aes-256-gcm/v1";
const HKDF_INFO_SECRETS: &[u8] = b"portcullis/text-secret/aes-256-gcm/v1";

/// The keys that seal signing keys and text secrets, derived from the master
/// key. Its `Debug` shows nothing.
pub struct MasterKey {
    keys: LessSafeKey,
    secrets: LessSafeKey,
}

/// Why a sealed text secret could not be sealed or opened. `what` names the
/// secret (`the secret of webhook whk_…`), never its value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{0} is encrypted but PORTCULLIS_MASTER_KEY is not set")]
    MasterKeyMissing(String),
    #[error("{0} cannot be decrypted: PORTCULLIS_MASTER_KEY is not the key it was encrypted with")]
    WrongMasterKey(String),
    #[error("could not encrypt {0}")]
    Seal(String),
}

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
        let derive = |info: &[u8]| {
            let mut key = [0u8; 32];
            prk.expand(&[info], &AES_256_GCM)
                .and_then(|okm| okm.fill(&mut key))
                .map_err(|_| SigningError::Seal)?;
            let unbound = UnboundKey::new(&AES_256_GCM, &key).map_err(|_| SigningError::Seal)?;
            Ok::<_, SigningError>(LessSafeKey::new(unbound))
        };
        Ok(MasterKey {
            keys: derive(HKDF_INFO)?,
            secrets: derive(HKDF_INFO_SECRETS)?,
        })
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
        .keys
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
        .keys
        .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut body)
        .map_err(|_| wrong())?;
    Ok(plain.to_vec())
}

/// Whether a stored text secret is sealed.
pub fn is_sealed_secret(stored: &str) -> bool {
    stored.starts_with(SECRET_PREFIX)
}

/// The form of the text secret `plain` to store, bound to `context` (say
/// `webhook:whk_…`): sealed under `master`, or as it is without one. `what`
/// names it in errors.
pub fn seal_secret(
    master: Option<&MasterKey>,
    context: &str,
    plain: &str,
    what: &str,
) -> Result<String, SecretError> {
    let Some(master) = master else {
        return Ok(plain.to_owned());
    };
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| SecretError::Seal(what.to_owned()))?;
    let mut body = plain.as_bytes().to_vec();
    master
        .secrets
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(context.as_bytes()),
            &mut body,
        )
        .map_err(|_| SecretError::Seal(what.to_owned()))?;
    let mut sealed = nonce.to_vec();
    sealed.extend_from_slice(&body);
    Ok(format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sealed)
    ))
}

/// The text secret stored as `stored` for `context`: a plain one as it is
/// (rows from before a master key was set), a sealed one opened with `master`.
pub fn open_secret(
    master: Option<&MasterKey>,
    context: &str,
    stored: &str,
    what: &str,
) -> Result<String, SecretError> {
    let Some(sealed) = stored.strip_prefix(SECRET_PREFIX) else {
        return Ok(stored.to_owned());
    };
    let Some(master) = master else {
        return Err(SecretError::MasterKeyMissing(what.to_owned()));
    };
    let wrong = || SecretError::WrongMasterKey(what.to_owned());
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sealed)
        .map_err(|_| wrong())?;
    if bytes.len() < NONCE_LEN {
        return Err(wrong());
    }
    let (nonce, body) = bytes.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| wrong())?;
    let mut body = body.to_vec();
    let plain = master
        .secrets
        .open_in_place(nonce, Aad::from(context.as_bytes()), &mut body)
        .map_err(|_| wrong())?;
    String::from_utf8(plain.to_vec()).map_err(|_| wrong())
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

    #[test]
    fn text_secrets_seal_bound_to_their_record_and_plain_ones_still_read() {
        let m = master("correct horse battery staple");
        let plain = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let sealed = seal_secret(Some(&m), "webhook:whk_1", plain, "w").expect("seal");
        assert!(is_sealed_secret(&sealed) && !sealed.contains("MfKQ9r8"));
        assert_ne!(
            sealed,
            seal_secret(Some(&m), "webhook:whk_1", plain, "w").unwrap()
        );
        assert_eq!(
            open_secret(Some(&m), "webhook:whk_1", &sealed, "w").unwrap(),
            plain
        );
        // Another record, another key, no key: refused, naming the secret only.
        assert!(open_secret(Some(&m), "webhook:whk_2", &sealed, "w").is_err());
        let other = master("incorrect horse battery");
        let err = open_secret(
            Some(&other),
            "webhook:whk_1",
            &sealed,
            "the secret of webhook whk_1",
        )
        .unwrap_err();
        assert!(matches!(err, SecretError::WrongMasterKey(_)), "{err}");
        assert!(err.to_string().contains("whk_1") && !err.to_string().contains("whsec"));
        let err = open_secret(None, "webhook:whk_1", &sealed, "w").unwrap_err();
        assert!(matches!(err, SecretError::MasterKeyMissing(_)));
        // Plain rows read as they are, with or without a master key.
        assert_eq!(
            open_secret(Some(&m), "webhook:whk_1", plain, "w").unwrap(),
            plain
        );
        assert_eq!(
            open_secret(None, "webhook:whk_1", plain, "w").unwrap(),
            plain
        );
        assert_eq!(
            seal_secret(None, "webhook:whk_1", plain, "w").unwrap(),
            plain
        );
        // The two purposes use different keys: a signing key's seal is no
        // text secret's.
        let key_sealed = seal(Some(&m), "webhook:whk_1", plain.as_bytes()).unwrap();
        let forged = format!(
            "{SECRET_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(&key_sealed[SEALED_PREFIX.len()..])
        );
        assert!(open_secret(Some(&m), "webhook:whk_1", &forged, "w").is_err());
    }
}
