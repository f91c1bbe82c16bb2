//! Every list of the admin API by pages: `limit`, the `Next-Cursor` and
//! `Link` headers, walking a list to its end in its fixed order, the filters
//! (users by email; the audit log by time range, actor, organization and
//! action), and the 400s of a bad cursor or parameter. The gateway runs on a
//! manual clock, so that audit entries get the times the test chooses; every
//! case runs on a temporary SQLite file and on a fresh PostgreSQL schema.

use std::sync::Arc;

use portcullis::clock::ManualClock;
use portcullis::server::Options;

use super::*;

const OPS2: (&str, &str) = ("ops2", "ops2-secret-0123456789");
/// When the test's clock starts: 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600;

struct ListEnv {
    gw: Gateway,
    clock: Arc<ManualClock>,
    token: String,
    /// Last, so that the schema is dropped after the gateway stops using it.
    _db: TestDb,
}

async fn list_env(db: TestDb) -> ListEnv {
    let yaml = format!(
        r#"server:
  listen: "127.0.0.1:0"
  shutdown_grace: 5s
admin:
  listen: "127.0.0.1:0"
issuer:
  url: "http://issuer.test"
  database: "{db}"
  signing_algs: [ES256]
  access_token_ttl: 1h
  resources:
    - identifier: "{API}"
      scopes: [read:data]
  clients:
    - client_id: ops
      client_secret: "{ops}"
      grant_types: [client_credentials]
      scopes: {{ "{ADMIN_API}": ["portcullis:admin"] }}
    - client_id: ops2
      client_secret: "{ops2}"
      grant_types: [client_credentials]
      scopes: {{ "{ADMIN_API}": ["portcullis:admin"] }}
issuers:
  - id: local
    builtin: true
    audiences: ["{API}"]
"#,
        db = db.url(),
        ops = ADMIN.1,
        ops2 = OPS2.1,
    );
    let clock = Arc::new(ManualClock::new(T0));
    let options = Options {
        clock: clock.clone(),
        ..Options::default()
    };
    let gw = Gateway::start_with(&yaml, options).await;
    let token = admin_token(&gw).await;
    ListEnv {
        gw,
        clock,
        token,
        _db: db,
    }
}

impl ListEnv {
    async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, http::HeaderMap, Value) {
        call(&self.gw, method, path, Some(&self.token), body).await
    }

    async fn created(&self, path: &str, body: Value) -> Value {
        let (status, _, out) = self.call("POST", path, Some(body)).await;
        assert_eq!(status, 201, "{path}: {out}");
        out
    }

    /// Follows `Link` from `first` to the last page: every record, and the
    /// size of each page.
    async fn walk(&self, first: &str) -> (Vec<Value>, Vec<usize>) {
        let mut records = Vec::new();
        let mut sizes = Vec::new();
        let mut next = Some(first.to_owned());
        while let Some(path) = next.take() {
            assert!(sizes.len() < 100, "the walk does not end");
            let (status, headers, page) = self.call("GET", &path, None).await;
            assert_eq!(status, 200, "{path}: {page}");
            let page = page.as_array().expect("a page is an array").clone();
            sizes.push(page.len());
            records.extend(page);
            let cursor = headers
                .get("next-cursor")
                .map(|v| v.to_str().unwrap().to_owned());
            let link = headers.get("link").map(|v| v.to_str().unwrap().to_owned());
            assert_eq!(cursor.is_some(), link.is_some(), "{path}");
            if let (Some(cursor), Some(link)) = (cursor, link) {
                let target = link
                    .strip_prefix('<')
                    .and_then(|l| l.strip_suffix(">; rel=\"next\""))
                    .unwrap_or_else(|| panic!("a next link: {link}"));
                let query = target.split_once('?').expect("a query").1;
                let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
                    .into_owned()
                    .collect();
                assert!(pairs.contains(&("cursor".to_owned(), cursor)), "{link}");
                next = Some(target.to_owned());
            }
        }
        (records, sizes)
    }
}

fn field(records: &[Value], name: &str) -> Vec<String> {
    records
        .iter()
        .map(|r| r[name].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

async fn lists_walk_page_by_page_in_a_fixed_order(db: TestDb) {
    let env = list_env(db).await;
    let mut emails = Vec::new();
    for i in 0..7 {
        let email = format!("user{i}@example.test");
        let body =
            json!({ "email": email, "password": "long enough pw", "name": format!("User {i}") });
        env.created("/admin/v1/users", body).await;
        emails.push(email);
    }
    // Pages of 3: 3, 3, 1, by id, each user once.
    let (users, sizes) = env.walk("/admin/v1/users?limit=3").await;
    assert_eq!(sizes, [3, 3, 1]);
    let ids = field(&users, "id");
    assert_eq!(ids, sorted(ids.clone()), "by id");
    assert_eq!(sorted(field(&users, "email")), sorted(emails.clone()));
    // The same records as one page.
    let (all, sizes) = env.walk("/admin/v1/users?limit=1000").await;
    assert_eq!(sizes, [7]);
    assert_eq!(field(&all, "id"), ids);
    // Exactly a page's worth: no next page.
    let (_, sizes) = env.walk("/admin/v1/users?limit=7").await;
    assert_eq!(sizes, [7]);

    // By email, in any letter case: that one user.
    let (status, headers, one) = env
        .call("GET", "/admin/v1/users?email=USER3%40Example.TEST", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        field(one.as_array().unwrap(), "email"),
        ["user3@example.test"]
    );
    assert!(headers.get("next-cursor").is_none());
    let (_, _, none) = env
        .call("GET", "/admin/v1/users?email=nobody%40example.test", None)
        .await;
    assert_eq!(none, json!([]));

    // Organizations, their members, roles, clients, APIs and webhooks too.
    let org = env
        .created("/admin/v1/organizations", json!({ "name": "Acme" }))
        .await;
    let org_id = org["id"].as_str().unwrap().to_owned();
    for i in 0..2 {
        env.created(
            "/admin/v1/organizations",
            json!({ "name": format!("Other {i}") }),
        )
        .await;
    }
    for i in 0..3 {
        let body = json!({ "name": format!("role-{i}"), "api": API, "scopes": ["read:data"] });
        env.created("/admin/v1/roles", body).await;
    }
    for id in &ids[..5] {
        let body = json!({ "user_id": id, "roles": ["role-0"] });
        env.created(&format!("/admin/v1/organizations/{org_id}/members"), body)
            .await;
    }
    for i in 0..3 {
        let body = json!({ "name": format!("job {i}"), "grant_types": ["client_credentials"] });
        env.created("/admin/v1/clients", body).await;
        let body = json!({ "identifier": format!("https://api{i}.example.test"), "scopes": ["s"] });
        env.created("/admin/v1/apis", body).await;
        let body = json!({ "url": format!("https://hooks{i}.example.test/in") });
        env.created("/admin/v1/webhooks", body).await;
    }
    let members = format!("/admin/v1/organizations/{org_id}/members?limit=2");
    // (first page, key, records, whether in key order)
    let cases: [(&str, &str, usize, bool); 7] = [
        ("/admin/v1/organizations?limit=2", "id", 3, true),
        (&members, "user_id", 5, true),
        ("/admin/v1/roles?limit=2", "name", 3, true),
        // ops, ops2 and the three created.
        ("/admin/v1/clients?limit=2", "client_id", 5, true),
        // The configured API, the admin API's own, and the three created.
        ("/admin/v1/apis?limit=2", "identifier", 5, true),
        ("/admin/v1/webhooks?limit=2", "id", 3, true),
        // Every creation above, newest first.
        ("/admin/v1/audit?limit=4", "id", 7 + 3 + 3 + 5 + 9, false),
    ];
    for (first, key, count, in_key_order) in cases {
        let (records, sizes) = env.walk(first).await;
        assert_eq!(records.len(), count, "{first}");
        let limit: usize = first.rsplit('=').next().unwrap().parse().unwrap();
        assert!(sizes.iter().all(|&n| n <= limit), "{first}: {sizes:?}");
        assert_eq!(sizes.len(), count.div_ceil(limit), "{first}: {sizes:?}");
        let keys = field(&records, key);
        let mut unique = sorted(keys.clone());
        unique.dedup();
        assert_eq!(unique.len(), keys.len(), "{first}: a record twice");
        if in_key_order {
            assert_eq!(keys, sorted(keys.clone()), "{first}: in key order");
        }
    }
}

async fn audit_filters_combine_with_pages(db: TestDb) {
    let env = list_env(db).await;
    let ops2 = token(&env.gw, OPS2, ADMIN_API).await;
    // `secs` (under a day) after T0, as RFC 3339.
    let at = |secs: i64| {
        let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
        format!("2026-01-01T{h:02}:{m:02}:{s:02}Z")
    };
    // Minute 0: two organizations; minute 10: a user in each (by ops);
    // minute 20: a user by ops2; minute 30: a role.
    let a = env
        .created("/admin/v1/organizations", json!({ "name": "A" }))
        .await;
    let b = env
        .created("/admin/v1/organizations", json!({ "name": "B" }))
        .await;
    let (a, b) = (
        a["id"].as_str().unwrap().to_owned(),
        b["id"].as_str().unwrap().to_owned(),
    );
    env.clock.advance(600);
    let role = json!({ "name": "viewer", "api": API, "scopes": ["read:data"] });
    env.created("/admin/v1/roles", role).await;
    let mut users = Vec::new();
    for i in 0..4 {
        let body = json!({ "email": format!("m{i}@example.test"), "password": "long enough pw", "name": "M" });
        users.push(
            env.created("/admin/v1/users", body).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    for (i, user) in users.iter().enumerate() {
        let org = if i < 3 { &a } else { &b };
        let body = json!({ "user_id": user, "roles": ["viewer"] });
        env.created(&format!("/admin/v1/organizations/{org}/members"), body)
            .await;
    }
    env.clock.advance(600);
    let body = json!({ "email": "late@example.test", "password": "long enough pw", "name": "L" });
    let (status, _, late) = call(&env.gw, "POST", "/admin/v1/users", Some(&ops2), Some(body)).await;
    assert_eq!(status, 201, "{late}");
    env.clock.advance(600);

    // By organization: A's creation and its three memberships, newest first,
    // two per page.
    let (entries, sizes) = env
        .walk(&format!("/admin/v1/audit?org_id={a}&limit=2"))
        .await;
    assert_eq!(sizes, [2, 2]);
    let actions = field(&entries, "action");
    assert_eq!(
        actions,
        [
            "membership.created",
            "membership.created",
            "membership.created",
            "organization.created"
        ]
    );
    assert!(entries.iter().all(|e| {
        let target = e["target"].as_str().unwrap();
        target == a || target.starts_with(&format!("{a}/"))
    }));

    // By actor and action: the users ops created, not ops2's.
    let (entries, sizes) = env
        .walk("/admin/v1/audit?actor=ops&action=user.created&limit=3")
        .await;
    assert_eq!(sizes, [3, 1]);
    assert_eq!(sorted(field(&entries, "target")), sorted(users.clone()));
    let (entries, _) = env.walk("/admin/v1/audit?actor=ops2").await;
    assert_eq!(field(&entries, "target"), [late["id"].as_str().unwrap()]);

    // By time: [minute 10, minute 20) holds the role, the users and the
    // memberships of minute 10; `since` is inclusive, `until` exclusive.
    let window = format!(
        "/admin/v1/audit?since={}&until={}&limit=5",
        at(600),
        at(1200)
    );
    let (entries, sizes) = env.walk(&window).await;
    assert_eq!(entries.len(), 1 + 4 + 4, "{entries:?}");
    assert_eq!(sizes, [5, 4]);
    assert!(
        entries
            .iter()
            .all(|e| e["at"].as_str().unwrap().starts_with(&at(600)[..16]))
    );
    // Newest first, ties in the order of writing (the last written first).
    assert_eq!(entries[0]["action"], "membership.created");
    assert_eq!(entries.last().unwrap()["action"], "role.created");
    let since_late = format!("/admin/v1/audit?since={}", at(1200));
    let (entries, _) = env.walk(&since_late).await;
    assert_eq!(field(&entries, "action"), ["user.created"]);
    // An offset other than Z, and a fraction: the same instant rounded up.
    let (entries, _) = env
        .walk("/admin/v1/audit?until=2026-01-01T01:00:00.5%2B01:00")
        .await;
    assert_eq!(
        field(&entries, "action"),
        ["organization.created", "organization.created"]
    );
}

async fn bad_cursors_and_parameters_are_400s(db: TestDb) {
    let env = list_env(db).await;
    for i in 0..3 {
        env.created(
            "/admin/v1/organizations",
            json!({ "name": format!("O{i}") }),
        )
        .await;
    }
    let (_, headers, _) = env
        .call("GET", "/admin/v1/organizations?limit=1", None)
        .await;
    let cursor = headers["next-cursor"].to_str().unwrap().to_owned();
    let (status, _, page) = env
        .call(
            "GET",
            &format!("/admin/v1/organizations?cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page.as_array().unwrap().len(), 2);
    let bad = [
        // Another list's cursor, garbage, a cursor cut short.
        format!("/admin/v1/users?cursor={cursor}"),
        "/admin/v1/organizations?cursor=garbage!".to_owned(),
        format!("/admin/v1/organizations?cursor={}", &cursor[..4]),
        "/admin/v1/audit?cursor=YXVkaXQKbm90LWEtcG9zaXRpb24".to_owned(),
        "/admin/v1/users?limit=0".to_owned(),
        "/admin/v1/users?limit=1001".to_owned(),
        "/admin/v1/users?limit=1&limit=2".to_owned(),
        "/admin/v1/users?page=2".to_owned(),
        "/admin/v1/roles?email=a%40b".to_owned(),
        "/admin/v1/audit?since=yesterday".to_owned(),
        "/admin/v1/audit?until=2026-01-01".to_owned(),
        // A NUL character, which PostgreSQL cannot hold (was a 500 there).
        "/admin/v1/audit?action=user%00created".to_owned(),
        "/admin/v1/users?email=a%00%40b".to_owned(),
    ];
    for path in bad {
        let (status, _, body) = env.call("GET", &path, None).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"], "invalid_request", "{path}");
    }
    // NUL in a path id: the gateway refuses the path itself, as for any
    // route (400 invalid_request); in a body it is a 400 too.
    let (status, _, body) = env.call("GET", "/admin/v1/users/usr%00x", None).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_request", "{body}");
    let role =
        json!({ "name": "r", "api": "https://api.example.test\u{0}", "scopes": ["read:data"] });
    let (status, _, body) = env.call("POST", "/admin/v1/roles", Some(role)).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error_description"].as_str().unwrap().contains("NUL"));
}

on_both_databases!(
    lists_walk_page_by_page_in_a_fixed_order,
    audit_filters_combine_with_pages,
    bad_cursors_and_parameters_are_400s,
);
