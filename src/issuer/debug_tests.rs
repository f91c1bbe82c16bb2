//! No `Debug` output of a secret: every issuer type that holds one (a
//! password, a client or webhook secret, a private key, a token, a CSRF
//! token, or a hash of a password or secret) is formatted with `{:?}` and
//! `{:#?}` here, and the secret material must not appear.

use super::manage::{CreatedClient, NewUser, NewWebhook, Promotion, UserChanges};
use super::signing::rotation::KeyRecord;
use super::store::{Client, LoginTransaction, ScopeMap, SigningKeyRecord, User, Webhook};
use super::token::TokenResponse;

const SECRET: &str = "s3cret-material-0123456789";

/// Asserts that neither `Debug` form of `value` shows [`SECRET`] (nor its
/// bytes, for binary fields), and that the type still says what it is.
fn hides<T: std::fmt::Debug>(value: &T, name: &str) {
    for shown in [format!("{value:?}"), format!("{value:#?}")] {
        assert!(!shown.contains(SECRET), "{name} shows its secret: {shown}");
        let bytes = format!("{:?}", SECRET.as_bytes());
        let inner = &bytes[1..bytes.len() - 1];
        assert!(!shown.contains(inner), "{name} shows its secret's bytes");
        assert!(shown.contains(name), "{shown}");
        assert!(shown.contains("<redacted>"), "{name}: {shown}");
    }
}

fn client() -> Client {
    Client {
        client_id: "billing".into(),
        name: "Billing".into(),
        secret_hash: Some(format!("$argon2id$v=19$m=7168,t=5,p=1${SECRET}")),
        public: false,
        require_pkce: true,
        grant_types: vec!["client_credentials".into()],
        redirect_uris: vec![],
        scopes: ScopeMap::new(),
        id_token_signed_response_alg: None,
        introspection: vec![],
        created_at: 0,
    }
}

#[test]
fn stored_records_hide_their_secrets() {
    hides(&client(), "Client");
    hides(
        &User {
            id: "usr_1".into(),
            email: Some("ann@example.test".into()),
            name: None,
            picture: None,
            email_verified: false,
            password_hash: Some(format!("$argon2id${SECRET}")),
            created_at: 0,
            updated_at: 0,
            anonymous: false,
            anonymized_at: None,
        },
        "User",
    );
    hides(
        &SigningKeyRecord {
            kid: "k1".into(),
            alg: "ES256".into(),
            private_key: SECRET.as_bytes().to_vec(),
            public_jwk: "{}".into(),
            created_at: 0,
            publish_at: 0,
            activate_at: 0,
            retire_at: None,
            expire_at: None,
        },
        "SigningKeyRecord",
    );
    hides(
        &KeyRecord {
            kid: "k1".into(),
            alg: "ES256".into(),
            private_key: SECRET.as_bytes().to_vec(),
            public_jwk: "{}".into(),
            created_at: 0,
            publish_at: 0,
            activate_at: 0,
            retire_at: None,
            expire_at: None,
        },
        "KeyRecord",
    );
    hides(
        &Webhook {
            id: "whk_1".into(),
            url: "https://hooks.example.test/".into(),
            secret: format!("whsec_{SECRET}"),
            events: None,
            created_at: 0,
            previous_secret: Some(format!("whsec_{SECRET}")),
            previous_secret_until: Some(1),
        },
        "Webhook",
    );
    hides(
        &LoginTransaction {
            id_hash: "h".into(),
            csrf: SECRET.into(),
            request: "{}".into(),
            user: None,
            expires_at: 0,
        },
        "LoginTransaction",
    );
}

#[test]
fn change_sets_and_answers_hide_their_secrets() {
    hides(
        &NewUser {
            email: "ann@example.test".into(),
            password: SECRET.into(),
            name: "Ann".into(),
        },
        "NewUser",
    );
    hides(
        &Promotion {
            email: "pat@example.test".into(),
            password: SECRET.into(),
            name: Some("Pat".into()),
        },
        "Promotion",
    );
    hides(
        &UserChanges {
            password: Some(SECRET.into()),
            ..UserChanges::default()
        },
        "UserChanges",
    );
    hides(
        &NewWebhook {
            url: "https://hooks.example.test/".into(),
            events: None,
            secret: Some(format!("whsec_{SECRET}")),
        },
        "NewWebhook",
    );
    hides(
        &CreatedClient {
            client: client(),
            secret: Some(SECRET.into()),
        },
        "CreatedClient",
    );
    hides(
        &TokenResponse {
            access_token: format!("eyJ.{SECRET}.sig"),
            token_type: "Bearer",
            expires_in: 900,
            scope: "read".into(),
            refresh_token: Some(format!("{SECRET}-refresh")),
            id_token: Some(format!("eyJ.{SECRET}-id.sig")),
        },
        "TokenResponse",
    );
}
