//! The checks of one declared client (`issuer.clients[i]`): its kind (public
//! or confidential) and grants, redirect URIs, ID-token algorithm, scopes on
//! declared resources (the admin scope only on the admin API), and the
//! resources whose tokens it may introspect.

use super::{has_duplicates, scopes};
use crate::config::raw::RawClient;
use crate::config::validate::Checker;
use crate::config::value::{ADMIN_SCOPE, absolute_uri, scope_token};
use crate::config::{ClientConfig, GrantType, ResourceConfig, Secret, SigningAlg};

/// The ID-token algorithm when a client names none (OIDC Discovery requires RS256).
const DEFAULT_ID_TOKEN_ALG: SigningAlg = SigningAlg::RS256;

pub(super) fn client(
    c: &mut Checker<'_>,
    i: usize,
    r: RawClient,
    resources: &[ResourceConfig],
    signing_algs: &[SigningAlg],
    admin: &str,
) -> ClientConfig {
    let key = format!("issuer.clients[{i}]");
    if r.client_id.is_empty() {
        c.error(&format!("{key}.client_id"), "a client id must not be empty");
    }
    let public = r.public.unwrap_or(false);
    let grant_types: Vec<GrantType> = r
        .grant_types
        .map(|g| g.into_iter().map(|g| g.0).collect())
        .unwrap_or_default();
    let client_secret = match (public, r.client_secret) {
        (true, Some(_)) => {
            c.error(
                &format!("{key}.client_secret"),
                "a public client has no secret",
            );
            None
        }
        (true, None) => None,
        (false, Some(s)) if !s.is_empty() => Some(Secret::new(s)),
        (false, _) => {
            c.error(
                &key,
                "a confidential client needs a `client_secret` (or `public: true`)",
            );
            None
        }
    };
    if public && r.require_pkce == Some(false) {
        c.error(
            &format!("{key}.require_pkce"),
            "a public client always needs PKCE",
        );
    }
    grants(c, &key, &grant_types, public);
    for (j, uri) in r.redirect_uris.iter().enumerate() {
        if let Err(e) = absolute_uri(uri) {
            c.error(
                &format!("{key}.redirect_uris[{j}]"),
                format!("a redirect URI must be absolute: {e}"),
            );
        }
    }
    let id_alg = match r.id_token_signed_response_alg {
        Some(a) => {
            if !signing_algs.contains(&a.0) {
                c.error(
                    &format!("{key}.id_token_signed_response_alg"),
                    format!("`{}` is not in `issuer.signing_algs`", a.0),
                );
            }
            a.0
        }
        None => {
            let issues_id_tokens = grant_types.contains(&GrantType::AuthorizationCode);
            // An empty list is reported on its own.
            if issues_id_tokens
                && !signing_algs.is_empty()
                && !signing_algs.contains(&DEFAULT_ID_TOKEN_ALG)
            {
                c.error(&key, "this client gets ID tokens, signed with RS256 unless `id_token_signed_response_alg` names another, but `issuer.signing_algs` lacks RS256");
            }
            DEFAULT_ID_TOKEN_ALG
        }
    };
    for (resource, list) in &r.scopes {
        let skey = format!("{key}.scopes.{resource}");
        scopes(c, &skey, list);
        if resource == admin {
            if grant_types.contains(&GrantType::Anonymous) {
                c.error(
                    &skey,
                    "a client with the `anonymous` grant cannot obtain admin API scopes: anyone could create a user holding them",
                );
            }
            // The issuer declares this resource, with its one scope.
            for (j, s) in list.iter().enumerate() {
                if s != ADMIN_SCOPE {
                    c.error(
                        &format!("{skey}[{j}]"),
                        format!("the admin API `{admin}` has one scope, `{ADMIN_SCOPE}`"),
                    );
                }
            }
            continue;
        }
        if let Some(j) = list.iter().position(|s| s == ADMIN_SCOPE) {
            c.error(
                &format!("{skey}[{j}]"),
                format!("`{ADMIN_SCOPE}` exists only on the admin API's resource `{admin}`"),
            );
            continue;
        }
        if resources.is_empty() {
            // Resources live in the database only: checked when tokens are asked for.
            continue;
        }
        let Some(declared) = resources.iter().find(|d| &d.identifier == resource) else {
            c.error(
                &skey,
                format!("`{resource}` is not a resource declared in `issuer.resources`"),
            );
            continue;
        };
        for (j, s) in list.iter().enumerate() {
            // An invalid token is reported once, above.
            if scope_token(s) && !declared.scopes.contains(s) {
                c.error(
                    &format!("{skey}[{j}]"),
                    format!("`{s}` is not a scope of resource `{resource}`"),
                );
            }
        }
    }
    introspection(c, &key, &r.introspection, public, resources, admin);
    ClientConfig {
        client_id: r.client_id,
        client_secret,
        public,
        redirect_uris: r.redirect_uris,
        grant_types,
        scopes: r.scopes.into_iter().collect(),
        require_pkce: public || r.require_pkce.unwrap_or(true),
        id_token_signed_response_alg: id_alg,
        introspection: r.introspection,
    }
}

/// A client's `introspection` list: resources (declared ones, when any are,
/// or the admin API's), none twice, and only for a confidential client.
fn introspection(
    c: &mut Checker<'_>,
    key: &str,
    list: &[String],
    public: bool,
    resources: &[ResourceConfig],
    admin: &str,
) {
    let ikey = format!("{key}.introspection");
    if public && !list.is_empty() {
        c.error(
            &ikey,
            "a public client cannot introspect: introspection needs client authentication",
        );
    }
    if has_duplicates(list) {
        c.error(&ikey, "`introspection` names a resource twice");
    }
    for (j, resource) in list.iter().enumerate() {
        let declared = resources.is_empty()
            || resource == admin
            || resources.iter().any(|r| &r.identifier == resource);
        if let Err(e) = absolute_uri(resource) {
            c.error(
                &format!("{ikey}[{j}]"),
                format!("a resource identifier must be an absolute URI: {e}"),
            );
        } else if !declared {
            c.error(
                &format!("{ikey}[{j}]"),
                format!("`{resource}` is not a resource declared in `issuer.resources`"),
            );
        }
    }
}

fn grants(c: &mut Checker<'_>, key: &str, grants: &[GrantType], public: bool) {
    let gkey = format!("{key}.grant_types");
    if grants.is_empty() {
        c.error(
            &gkey,
            "`grant_types` is required: at least one of client_credentials, authorization_code, refresh_token, anonymous",
        );
    }
    if has_duplicates(grants) {
        c.error(&gkey, "`grant_types` names a grant twice");
    }
    if public && grants.contains(&GrantType::ClientCredentials) {
        c.error(
            &gkey,
            "a public client cannot use `client_credentials`: it has no secret to authenticate with",
        );
    }
    let code = grants.contains(&GrantType::AuthorizationCode);
    let anonymous = grants.contains(&GrantType::Anonymous);
    let refresh = grants.contains(&GrantType::RefreshToken);
    if refresh && !code && !anonymous {
        c.error(
            &gkey,
            "`refresh_token` needs `authorization_code` or `anonymous`, the grants that issue refresh tokens",
        );
    }
    if anonymous && !public {
        c.error(
            &gkey,
            "`anonymous` is for public clients (`public: true`): apps on users' devices that create a user without credentials",
        );
    }
    if anonymous && !refresh {
        c.error(
            &gkey,
            "`anonymous` needs `refresh_token`: an anonymous user has no credentials, so its refresh token is the only way back to the same user",
        );
    }
    // `authorization_code` without `redirect_uris` is valid: no sign-in can
    // complete until one is registered (an authorization request must name
    // a registered URI exactly), and the client's other grants work.
}
