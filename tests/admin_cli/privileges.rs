//! Privileges given with the CLI. The path to a first admin token: `admin
//! client create` for the admin API's resource (`{issuer.url}/admin/v1`,
//! declared by the issuer, so known before any gateway ran), a
//! `client_credentials` token for that resource, and `/admin/v1` answering
//! it; no other API may define the admin scope. Introspection of other
//! clients' tokens, granted per API with `--introspect`.

use super::*;

const ADMIN_API: &str = "http://issuer.test/admin/v1";

#[tokio::test]
async fn an_admin_client_made_with_the_cli_gets_into_the_admin_api() {
    let env = env().await;
    let ops = admin(
        &env,
        &[
            "client",
            "create",
            "--name",
            "ops",
            "--grant-type",
            "client_credentials",
            "--api",
            ADMIN_API,
            "--scope",
            "portcullis:admin",
        ],
    )
    .json();
    let (id, secret) = (
        ops["client_id"].as_str().unwrap(),
        ops["client_secret"].as_str().unwrap(),
    );
    let gw = Gateway::start(&env.yaml).await;
    let (status, body) = token(&gw, id, secret).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "portcullis:admin");
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(claims_of(access)["aud"], ADMIN_API);
    let (status, _, list) = get(&gw.url("/admin/v1/clients"), Some(access)).await;
    assert_eq!(status, 200, "{list}");
    assert!(list.contains(id), "{list}");
    gw.shutdown().await;

    // The scope belongs to the admin API alone.
    admin(
        &env,
        &[
            "api",
            "create",
            "--identifier",
            "https://admin.example.test",
            "--scope",
            "portcullis:admin",
        ],
    )
    .refused(1, "admin API's own resource");
    admin(
        &env,
        &[
            "api",
            "create",
            "--identifier",
            ADMIN_API,
            "--scope",
            "anything",
        ],
    )
    .refused(1, "api already exists");
}

#[tokio::test]
async fn introspection_of_other_clients_tokens_is_granted_per_api() {
    let env = env().await;
    let (billing, billing_secret) = m2m_client(&env);
    let create = |extra: &[&str]| {
        let base = [
            "client",
            "create",
            "--name",
            "rs",
            "--grant-type",
            "client_credentials",
        ];
        admin(&env, &[&base[..], extra].concat())
    };
    let rs = create(&["--introspect", API]).json();
    assert_eq!(rs["introspection"], serde_json::json!([API]), "{rs}");
    create(&["--introspect", "https://nowhere.test"]).refused(1, "unknown api");
    let plain = create(&[]).json();
    assert_eq!(plain["introspection"], serde_json::json!([]));

    let gw = Gateway::start(&env.yaml).await;
    let (status, body) = token(&gw, &billing, &billing_secret).await;
    assert_eq!(status, 200, "{body}");
    let access = body["access_token"].as_str().unwrap();
    let base = gw.url("");
    let base = base.trim_end_matches('/');
    let as_client = |c: &Value| {
        (
            c["client_id"].as_str().unwrap().to_owned(),
            c["client_secret"].as_str().unwrap().to_owned(),
        )
    };
    let (rs_id, rs_secret) = as_client(&rs);
    let (plain_id, plain_secret) = as_client(&plain);
    let seen = oauth::introspect(base, (&rs_id, &rs_secret), access).await;
    assert_eq!(seen["active"], true, "{seen}");
    let unseen = oauth::introspect(base, (&plain_id, &plain_secret), access).await;
    assert_eq!(unseen, serde_json::json!({ "active": false }));
    gw.shutdown().await;
}
