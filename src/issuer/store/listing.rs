//! How a listing is cut into pages and filtered: [`Page`] for the listings
//! ordered by a unique key (id, client id, name, identifier), and
//! [`AuditFilter`] with [`AuditPosition`] for the audit log, which is ordered
//! by time, newest first.
//!
//! A page starts after a position the previous page ended at (keyset
//! pagination), never at an offset, so that records created or deleted
//! meanwhile neither repeat nor hide records of later pages.

/// One page of a listing ordered by a unique key: the records whose key
/// follows `after` (from the first when `None`), at most `limit` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page<'a> {
    /// The key of the last record of the previous page.
    pub after: Option<&'a str>,
    /// The most records returned.
    pub limit: i64,
}

/// Which audit entries a listing returns; `None` fields do not filter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuditFilter<'a> {
    /// Entries at or after this time (seconds since the Unix epoch).
    pub since: Option<i64>,
    /// Entries before this time.
    pub until: Option<i64>,
    /// Entries by this actor.
    pub actor: Option<&'a str>,
    /// Entries of this action (`user.created`, `login.failed`, …).
    pub action: Option<&'a str>,
    /// Entries about this organization: its creation (target `org_…`) and
    /// its memberships (target `org_…/usr_…`).
    pub org_id: Option<&'a str>,
}

/// Where an audit entry stands in the log's order (newest first): its time,
/// then its insertion sequence number, which breaks ties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditPosition {
    /// When the entry was written.
    pub at: i64,
    /// The entry's sequence number, increasing with each insert.
    pub seq: i64,
}

// === impl Page ===

impl Page<'_> {
    /// Every record, from the first.
    pub const ALL: Page<'static> = Page {
        after: None,
        limit: i64::MAX,
    };
}
