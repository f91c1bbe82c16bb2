//! What list requests carry in their query strings — `limit`, `cursor` and
//! each list's filters — and the opaque cursors that lead to the next page.
//!
//! Every list answers a JSON array of one page, in a fixed order (by id,
//! client id, name or identifier; the audit log newest first), and when more
//! follow, the next page's `cursor` in the `Next-Cursor` header and its whole
//! URL in `Link: <…>; rel="next"`. A cursor is the position of the page's last
//! record (keyset pagination), base64url-encoded with the name of its list: a
//! cursor of another list, or one that is not a cursor, is a 400. A query
//! parameter that the list does not take, one given twice, or one holding a
//! NUL character, is a 400 too.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use utoipa::IntoParams;

use super::ApiError;
use crate::issuer::manage::views::EventStatusView;
use crate::issuer::store::{AuditFilter, AuditPosition, EventPosition, EventStatus, Page};

mod time;

/// The most records a page holds.
pub(super) const MAX_LIMIT: i64 = 1000;
/// The records a page holds when `limit` is absent.
pub(super) const DEFAULT_LIMIT: i64 = 100;
/// The audit entries a page holds when `limit` is absent.
pub(super) const AUDIT_DEFAULT_LIMIT: i64 = 50;

/// The list a cursor belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Listing {
    Apis,
    Clients,
    Organizations,
    Members,
    Users,
    Roles,
    Webhooks,
    Audit,
    Events,
}

/// The paging parameters every list takes.
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct PageQuery {
    /// The most records to return: 1 to 1000; 100 by default (50 for the
    /// audit log).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// Where to start: the `Next-Cursor` of the previous page (opaque).
    #[param(min_length = 1)]
    cursor: Option<String>,
}

/// The filter of `GET /users`.
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct UserQuery {
    /// Only the user with this email address, in any letter case.
    pub email: Option<String>,
}

/// The filters of `GET /audit`; entries pass when they match every filter
/// given.
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditQuery {
    /// Entries at or after this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<i64>,
    /// Entries before this time (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    until: Option<i64>,
    /// Entries by this actor: a client id (admin API), `cli`, a user id
    /// (sign-ins), `system`.
    actor: Option<String>,
    /// Entries of this action: `user.created`, `login.failed`,
    /// `token.revoked`, …
    action: Option<String>,
    /// Entries about this organization: its creation and its memberships.
    org_id: Option<String>,
}

/// The filter of `GET /events`.
#[derive(Debug, Default, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct EventQuery {
    /// Only the events in this state: `failed` for the dead letters.
    #[param(inline)]
    status: Option<EventStatusView>,
}

/// The parameters of a query string, each given at most once.
pub(super) struct Params {
    pairs: Vec<(String, String)>,
}

/// A page to read: where it starts, how many records, and of which list.
#[derive(Debug)]
pub(super) struct Cut {
    listing: Listing,
    after: Option<String>,
    limit: i64,
}

// === impl Params ===

impl Params {
    /// Parses `query`; a parameter given twice is refused.
    pub(super) fn parse(query: Option<&str>) -> Result<Params, ApiError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            if pairs.iter().any(|(seen, _)| *seen == k) {
                return Err(ApiError::Request("a query parameter is given twice"));
            }
            // Nothing stored holds a NUL, and PostgreSQL refuses to compare one.
            if k.contains('\0') || v.contains('\0') {
                return Err(ApiError::Request("a query parameter holds a NUL character"));
            }
            pairs.push((k.into_owned(), v.into_owned()));
        }
        Ok(Params { pairs })
    }

    fn take(&mut self, name: &str) -> Option<String> {
        let at = self.pairs.iter().position(|(k, _)| k == name)?;
        Some(self.pairs.remove(at).1)
    }

    /// Refuses the parameters no one took.
    pub(super) fn finish(self) -> Result<(), ApiError> {
        match self.pairs.is_empty() {
            true => Ok(()),
            false => Err(ApiError::Request(
                "the list does not take this query parameter",
            )),
        }
    }
}

// === impl PageQuery ===

impl PageQuery {
    /// Takes `limit` and `cursor` from `params`.
    pub(super) fn take(params: &mut Params) -> Result<PageQuery, ApiError> {
        let limit = params
            .take("limit")
            .map(|v| {
                v.parse::<i64>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or(ApiError::Request("limit must be a number from 1 to 1000"))
            })
            .transpose()?;
        Ok(PageQuery {
            limit,
            cursor: params.take("cursor"),
        })
    }
}

// === impl UserQuery ===

impl UserQuery {
    /// Takes `email` from `params`.
    pub(super) fn take(params: &mut Params) -> UserQuery {
        UserQuery {
            email: params.take("email"),
        }
    }
}

// === impl EventQuery ===

impl EventQuery {
    /// Takes `status` from `params`; an unknown status is refused.
    pub(super) fn take(params: &mut Params) -> Result<EventQuery, ApiError> {
        let status = params
            .take("status")
            .map(|v| {
                EventStatus::from_name(&v)
                    .map(EventStatusView::from)
                    .ok_or(ApiError::Request(
                        "status must be pending, delivered or failed",
                    ))
            })
            .transpose()?;
        Ok(EventQuery { status })
    }

    /// The store's filter.
    pub(super) fn status(&self) -> Option<EventStatus> {
        self.status.map(EventStatus::from)
    }
}

// === impl AuditQuery ===

impl AuditQuery {
    /// Takes the filters from `params`; a time that is not RFC 3339 is
    /// refused.
    pub(super) fn take(params: &mut Params) -> Result<AuditQuery, ApiError> {
        let instant = |v: String| {
            time::parse_rfc3339(&v).ok_or(ApiError::Request(
                "since and until must be RFC 3339 date-times",
            ))
        };
        Ok(AuditQuery {
            since: params.take("since").map(instant).transpose()?,
            until: params.take("until").map(instant).transpose()?,
            actor: params.take("actor"),
            action: params.take("action"),
            org_id: params.take("org_id"),
        })
    }

    /// The store's filter.
    pub(super) fn filter(&self) -> AuditFilter<'_> {
        AuditFilter {
            since: self.since,
            until: self.until,
            actor: self.actor.as_deref(),
            action: self.action.as_deref(),
            org_id: self.org_id.as_deref(),
        }
    }
}

// === impl Listing ===

impl Listing {
    fn tag(self) -> &'static str {
        match self {
            Listing::Apis => "apis",
            Listing::Clients => "clients",
            Listing::Organizations => "organizations",
            Listing::Members => "members",
            Listing::Users => "users",
            Listing::Roles => "roles",
            Listing::Webhooks => "webhooks",
            Listing::Audit => "audit",
            Listing::Events => "events",
        }
    }
}

// === impl Cut ===

impl Cut {
    /// The page of `listing` that `query` asks for; `default` records when it
    /// names no limit. A cursor of another list, or no cursor at all, is
    /// refused.
    pub(super) fn new(listing: Listing, query: PageQuery, default: i64) -> Result<Cut, ApiError> {
        let bad = || ApiError::Request("cursor is not one this list gave");
        let after = match query.cursor {
            None => None,
            Some(cursor) => {
                let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| bad())?;
                let text = String::from_utf8(bytes).map_err(|_| bad())?;
                let key = text
                    .strip_prefix(listing.tag())
                    .and_then(|rest| rest.strip_prefix('\n'))
                    .filter(|key| !key.is_empty())
                    .ok_or_else(bad)?;
                if listing == Listing::Audit && audit_position(key).is_none() {
                    return Err(bad());
                }
                if listing == Listing::Events && event_position(key).is_none() {
                    return Err(bad());
                }
                Some(key.to_owned())
            }
        };
        Ok(Cut {
            listing,
            after,
            limit: query.limit.unwrap_or(default),
        })
    }

    /// The store's page: one record more than the page holds, which tells
    /// whether another page follows.
    pub(super) fn page(&self) -> Page<'_> {
        Page {
            after: self.after.as_deref(),
            limit: self.limit + 1,
        }
    }

    /// The position of the event the page starts after.
    pub(super) fn event_after(&self) -> Option<EventPosition> {
        self.after.as_deref().and_then(event_position)
    }

    /// The position of the audit entry the page starts after.
    pub(super) fn audit_after(&self) -> Option<AuditPosition> {
        self.after.as_deref().and_then(audit_position)
    }

    /// Cuts what the store returned for [`Cut::page`] to the page, with the
    /// cursor of the next page when one follows; `key` is a record's
    /// position (its key, or for the audit log [`audit_key`]).
    pub(super) fn finish<T>(&self, mut rows: Vec<T>, key: impl Fn(&T) -> String) -> Paged<T> {
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        if rows.len() <= limit {
            return Paged { rows, next: None };
        }
        rows.truncate(limit);
        let next = rows.last().map(|last| {
            let text = format!("{}\n{}", self.listing.tag(), key(last));
            URL_SAFE_NO_PAD.encode(text)
        });
        Paged { rows, next }
    }
}

/// One page of records, and the cursor of the next when one follows.
pub(super) struct Paged<T> {
    /// The page's records.
    pub rows: Vec<T>,
    /// The next page's cursor.
    pub next: Option<String>,
}

/// The cursor key of an event: when it was enqueued, and its id.
pub(super) fn event_key(position: &EventPosition) -> String {
    format!("{}.{}", position.enqueued_at, position.id)
}

fn event_position(key: &str) -> Option<EventPosition> {
    let (at, id) = key.split_once('.')?;
    Some(EventPosition {
        enqueued_at: at.parse().ok()?,
        id: id.to_owned(),
    })
    .filter(|p| !p.id.is_empty())
}

/// The cursor key of an audit entry at `position`.
pub(super) fn audit_key(position: &AuditPosition) -> String {
    format!("{}.{}", position.at, position.seq)
}

fn audit_position(key: &str) -> Option<AuditPosition> {
    let (at, seq) = key.split_once('.')?;
    Some(AuditPosition {
        at: at.parse().ok()?,
        seq: seq.parse().ok()?,
    })
}

#[cfg(test)]
mod tests;
