use super::*;

fn query(text: &str) -> Result<(PageQuery, Params), ApiError> {
    let mut params = Params::parse(Some(text))?;
    let page = PageQuery::take(&mut params)?;
    Ok((page, params))
}

fn cut(listing: Listing, text: &str) -> Result<Cut, ApiError> {
    let (page, params) = query(text)?;
    params.finish()?;
    Cut::new(listing, page, DEFAULT_LIMIT)
}

fn refused(result: Result<Cut, ApiError>) -> &'static str {
    match result {
        Err(ApiError::Request(why)) => why,
        other => panic!("not a 400: {other:?}"),
    }
}

#[test]
fn limits_default_and_are_bounded() {
    assert_eq!(cut(Listing::Users, "").unwrap().limit, DEFAULT_LIMIT);
    assert_eq!(cut(Listing::Users, "limit=1").unwrap().limit, 1);
    assert_eq!(cut(Listing::Users, "limit=1000").unwrap().limit, 1000);
    let audit = query("").unwrap().0;
    assert_eq!(
        Cut::new(Listing::Audit, audit, AUDIT_DEFAULT_LIMIT)
            .unwrap()
            .limit,
        50
    );
    for bad in [
        "limit=0",
        "limit=1001",
        "limit=-1",
        "limit=",
        "limit=ten",
        "limit=1.5",
    ] {
        assert!(refused(cut(Listing::Users, bad)).contains("limit"), "{bad}");
    }
}

#[test]
fn unknown_and_repeated_parameters_are_refused() {
    assert!(refused(cut(Listing::Users, "limt=5")).contains("does not take"));
    assert!(refused(cut(Listing::Users, "limit=5&limit=6")).contains("twice"));
    assert!(refused(cut(Listing::Users, "cursor=a&cursor=b")).contains("twice"));
    assert!(refused(cut(Listing::Users, "cursor=a%00")).contains("NUL"));
    assert!(refused(cut(Listing::Users, "lim%00it=1")).contains("NUL"));
}

#[test]
fn a_page_asks_for_one_more_and_cuts_it_off() {
    let first = cut(Listing::Users, "limit=2").unwrap();
    assert_eq!(
        first.page(),
        Page {
            after: None,
            limit: 3
        }
    );
    let paged = first.finish(vec!["a", "b", "c"], |s| (*s).to_owned());
    assert_eq!(paged.rows, ["a", "b"]);
    let next = paged.next.expect("a next page");

    let second = cut(Listing::Users, &format!("limit=2&cursor={next}")).unwrap();
    assert_eq!(
        second.page(),
        Page {
            after: Some("b"),
            limit: 3
        }
    );
    let last = second.finish(vec!["c"], |s| (*s).to_owned());
    assert_eq!(last.rows, ["c"]);
    assert!(last.next.is_none());

    // Exactly a page's worth: no next page.
    let full = cut(Listing::Users, "limit=2")
        .unwrap()
        .finish(vec![1, 2], i32::to_string);
    assert!(full.next.is_none());
}

#[test]
fn cursors_are_opaque_and_belong_to_their_list() {
    let paged = cut(Listing::Clients, "limit=1")
        .unwrap()
        .finish(vec!["billing", "web"], |s| (*s).to_owned());
    let cursor = paged.next.expect("a next page");
    assert!(!cursor.contains("billing"), "{cursor}");
    assert!(
        cursor
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    let elsewhere = refused(cut(Listing::Users, &format!("cursor={cursor}")));
    assert!(elsewhere.contains("cursor"));
    for bad in [
        "cursor=",
        "cursor=%%%",
        "cursor=not-base64!",
        "cursor=dXNlcnM",      // "users": no key
        "cursor=dXNlcnMK",     // "users\n": an empty key
        "cursor=__8",          // not UTF-8
        "cursor=YXVkaXQKMTIz", // "audit\n123": not a position, for the audit log
    ] {
        let listing = if bad.starts_with("cursor=YXVk") {
            Listing::Audit
        } else {
            Listing::Users
        };
        assert!(refused(cut(listing, bad)).contains("cursor"), "{bad}");
    }
}

#[test]
fn audit_cursors_hold_a_position() {
    let position = AuditPosition {
        at: 1_700_000_000,
        seq: 42,
    };
    let paged = cut(Listing::Audit, "limit=1")
        .unwrap()
        .finish(vec![position, AuditPosition { at: 1, seq: 1 }], audit_key);
    let next = paged.next.expect("a next page");
    let again = cut(Listing::Audit, &format!("cursor={next}")).unwrap();
    assert_eq!(again.audit_after(), Some(position));
}

#[test]
fn audit_filters_are_parsed() {
    let mut params = Params::parse(Some(
        "since=1970-01-01T00:01:00Z&until=1970-01-01T00:02:00.5%2B00:00&actor=ops\
         &action=user.created&org_id=org_1&limit=5",
    ))
    .unwrap();
    let q = AuditQuery::take(&mut params).unwrap();
    let filter = q.filter();
    assert_eq!(filter.since, Some(60));
    assert_eq!(filter.until, Some(121));
    assert_eq!(filter.actor, Some("ops"));
    assert_eq!(filter.action, Some("user.created"));
    assert_eq!(filter.org_id, Some("org_1"));
    PageQuery::take(&mut params).unwrap();
    params.finish().unwrap();

    for bad in ["since=yesterday", "until=1700000000", "since=2024-01-01"] {
        let mut params = Params::parse(Some(bad)).unwrap();
        match AuditQuery::take(&mut params) {
            Err(ApiError::Request(why)) => assert!(why.contains("RFC 3339"), "{bad}"),
            other => panic!("{bad}: {other:?}"),
        }
    }
}

#[test]
fn event_cursors_are_the_clis_and_hold_a_position() {
    use crate::issuer::store::EventPosition;
    let position = EventPosition {
        enqueued_at: 1_700_000_000,
        id: "evt_1".into(),
    };
    let paged = Cut::new(Listing::Events, PageQuery::default(), 1)
        .unwrap()
        .finish(vec![1, 2], |_| event_key(&position));
    let cursor = paged.next.unwrap();
    assert_eq!(cursor, crate::issuer::manage::event_cursor(&position));
    assert_eq!(
        crate::issuer::manage::parse_event_cursor(&cursor),
        Some(position.clone())
    );
    let cut = cut(Listing::Events, &format!("cursor={cursor}")).unwrap();
    assert_eq!(cut.event_after(), Some(position));
    // Another list's cursor, or a position without an id, is refused.
    let users = URL_SAFE_NO_PAD.encode("users\nusr_1");
    assert!(cut_refused(Listing::Events, &users));
    for key in ["events\n1700000000.", "events\nsoon.evt_1", "events\nevt_1"] {
        assert!(
            cut_refused(Listing::Events, &URL_SAFE_NO_PAD.encode(key)),
            "{key}"
        );
        assert_eq!(
            crate::issuer::manage::parse_event_cursor(&URL_SAFE_NO_PAD.encode(key)),
            None
        );
    }
}

fn cut_refused(listing: Listing, cursor: &str) -> bool {
    matches!(
        cut(listing, &format!("cursor={cursor}")),
        Err(ApiError::Request(_))
    )
}
