//! The successor a rotation issued, sealed for a replay inside the reuse
//! grace: AES-256-GCM under a key derived (SHA-256, domain-separated) from the
//! token the rotation replaced, with the family id and generation as associated
//! data. The store holds only the replaced token's hash, from which the key
//! cannot be derived; so the sealed successor is readable only by whoever
//! presents the replaced token, and the issuer opens it only inside the grace.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::digest::{SHA256, digest};

use crate::issuer::error::OAuthError;

/// The context of the key that seals a successor (domain separation).
const SEAL_CONTEXT: &[u8] = b"portcullis refresh successor v1\0";

/// The AES-256-GCM key only the holder of `replaced` can derive.
fn successor_key(replaced: &str) -> Result<LessSafeKey, OAuthError> {
    let mut material = Vec::with_capacity(SEAL_CONTEXT.len() + replaced.len());
    material.extend_from_slice(SEAL_CONTEXT);
    material.extend_from_slice(replaced.as_bytes());
    let key = digest(&SHA256, &material);
    let key = UnboundKey::new(&AES_256_GCM, key.as_ref()).map_err(|_| OAuthError::Server)?;
    Ok(LessSafeKey::new(key))
}

/// Associated data: the sealed successor opens only on its family's row, at
/// the generation it was made for.
fn successor_aad(family_id: &str, generation: i64) -> Vec<u8> {
    format!("{family_id}\0{generation}").into_bytes()
}

/// `successor` sealed under a key derived from `replaced`: nonce ‖ ciphertext ‖ tag.
pub(super) fn seal_successor(
    replaced: &str,
    family_id: &str,
    generation: i64,
    successor: &str,
) -> Result<Vec<u8>, OAuthError> {
    let key = successor_key(replaced)?;
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).map_err(|_| OAuthError::Server)?;
    let mut sealed = successor.as_bytes().to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(successor_aad(family_id, generation)),
        &mut sealed,
    )
    .map_err(|_| OAuthError::Server)?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens what [`seal_successor`] made; `None` for any other token, family or
/// generation.
pub(super) fn open_successor(
    replaced: &str,
    family_id: &str,
    generation: i64,
    sealed: &[u8],
) -> Option<String> {
    let key = successor_key(replaced).ok()?;
    let (nonce, ciphertext) = sealed.split_at_checked(NONCE_LEN)?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buf = ciphertext.to_vec();
    let plain = key
        .open_in_place(
            nonce,
            Aad::from(successor_aad(family_id, generation)),
            &mut buf,
        )
        .ok()?;
    String::from_utf8(plain.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_successor_opens_only_with_its_token_family_and_generation() {
        let sealed = seal_successor("old-token", "fam_1", 3, "new-token").unwrap();
        assert!(!sealed.windows(9).any(|w| w == b"new-token"));
        assert_eq!(
            open_successor("old-token", "fam_1", 3, &sealed).as_deref(),
            Some("new-token")
        );
        assert_eq!(open_successor("other", "fam_1", 3, &sealed), None);
        assert_eq!(open_successor("old-token", "fam_2", 3, &sealed), None);
        assert_eq!(open_successor("old-token", "fam_1", 4, &sealed), None);
        assert_eq!(open_successor("old-token", "fam_1", 3, &sealed[..5]), None);
    }
}
