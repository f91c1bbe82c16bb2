//! `keys rotate`: an unscheduled rotation through [`KeyRing::rotate`] with the
//! configured algorithms and rotation policy, and the report of what is
//! published afterwards and which key signs when.

use std::sync::Arc;

use serde_json::json;

use super::{Actor, ManageError, audit, event};
use crate::config::IssuerSection;
use crate::issuer::keyring::{JWKS_MAX_AGE, KeyRing};
use crate::issuer::signing::MasterKey;
use crate::issuer::signing::rotation::{self, KeyRecord, RotationPolicy};
use crate::issuer::store::{SigningKeyRecord, Store};

/// What the key set looks like after a rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyReport {
    /// Whether this rotation created keys (false: successors were already
    /// waiting, so nothing changed).
    pub rotated: bool,
    /// The keys in the JWKS now, by `activate_at`, then `kid`.
    pub keys: Vec<ReportedKey>,
}

/// One published key and its schedule (seconds since the Unix epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedKey {
    /// The JWS `kid`.
    pub kid: String,
    /// The JWS algorithm.
    pub alg: String,
    /// Whether it signs its algorithm's tokens now.
    pub signing: bool,
    /// Whether this rotation created it.
    pub new: bool,
    /// When it appeared in the JWKS.
    pub publish_at: i64,
    /// When it starts (or started) signing.
    pub activate_at: i64,
    /// When it stops signing, if scheduled.
    pub retire_at: Option<i64>,
    /// When it leaves the JWKS, if scheduled.
    pub expire_at: Option<i64>,
}

fn to_policy_record(r: SigningKeyRecord) -> KeyRecord {
    KeyRecord {
        kid: r.kid,
        alg: r.alg,
        private_key: r.private_key,
        public_jwk: r.public_jwk,
        created_at: r.created_at,
        publish_at: r.publish_at,
        activate_at: r.activate_at,
        retire_at: r.retire_at,
        expire_at: r.expire_at,
    }
}

async fn records(store: &dyn Store, now: i64) -> Result<Vec<KeyRecord>, ManageError> {
    Ok(store
        .list_signing_keys(now)
        .await?
        .into_iter()
        .map(to_policy_record)
        .collect())
}

/// Rotates the signing keys of `section` now: for each configured algorithm a
/// successor is published at once and signs after the JWKS cache age, when
/// the current key retires (it stays published until every token it signed
/// has expired). An algorithm without a key gets one that signs at once.
/// Records an audit entry and a `key.rotated` event when keys were created.
/// Fails with [`ManageError::RotationBusy`] when another replica holds the
/// rotation lease.
pub async fn rotate_keys(
    store: Arc<dyn Store>,
    section: &IssuerSection,
    master: Option<MasterKey>,
    actor: Actor<'_>,
) -> Result<KeyReport, ManageError> {
    let now = actor.now;
    let policy = RotationPolicy::from_section(section, JWKS_MAX_AGE);
    let before = records(store.as_ref(), now).await?;
    let wanted = !rotation::rotate_now(&before, &section.signing_algs, &policy, now).is_empty();
    let before: Vec<String> = before.into_iter().map(|r| r.kid).collect();
    let ring = KeyRing::new(store.clone(), section.signing_algs.clone(), policy, master);
    ring.rotate(now).await.map_err(ManageError::Keys)?;
    let after = records(store.as_ref(), now).await?;
    let report = report(&after, &before, &section.signing_algs, now);
    // Under the lease every rotation creates a key (ours, or a replica's that
    // wrote just before): none means another replica held the lease.
    if wanted && !report.rotated {
        return Err(ManageError::RotationBusy);
    }
    if report.rotated {
        let created: Vec<&str> = report
            .keys
            .iter()
            .filter(|k| k.new)
            .map(|k| k.kid.as_str())
            .collect();
        let published: Vec<&str> = report.keys.iter().map(|k| k.kid.as_str()).collect();
        let data = json!({ "created": created, "published": published });
        let mut tx = store.begin().await?;
        tx.insert_audit(&audit(
            actor,
            "key.rotated",
            &created.join(" "),
            data.clone(),
        ))
        .await?;
        tx.enqueue_event(&event("key.rotated", now, data)).await?;
        tx.commit().await?;
    }
    Ok(report)
}

/// The published keys of `records` at `now`; `before` lists the kids that
/// existed before the rotation.
fn report(
    records: &[KeyRecord],
    before: &[String],
    algs: &[crate::config::SigningAlg],
    now: i64,
) -> KeyReport {
    let signing: Vec<&str> = algs
        .iter()
        .filter_map(|&alg| rotation::active_key(records, alg, now))
        .map(|r| r.kid.as_str())
        .collect();
    let keys: Vec<ReportedKey> = rotation::published(records, now)
        .into_iter()
        .map(|r| ReportedKey {
            kid: r.kid.clone(),
            alg: r.alg.clone(),
            signing: signing.contains(&r.kid.as_str()),
            new: !before.contains(&r.kid),
            publish_at: r.publish_at,
            activate_at: r.activate_at,
            retire_at: r.retire_at,
            expire_at: r.expire_at,
        })
        .collect();
    KeyReport {
        rotated: keys.iter().any(|k| k.new),
        keys,
    }
}
