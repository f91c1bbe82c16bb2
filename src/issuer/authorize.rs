//! The user login flow: `GET /oauth/authorize` (authorization code with PKCE,
//! RFC 6749 §4.1, RFC 7636, RFC 9207 `iss`), the hosted `/login` form with its
//! organization chooser, `/logout`, the `authorization_code` grant at the token
//! endpoint (`exchange`) and `/oauth/userinfo` (`userinfo`).
//!
//! Pages, cookies and the login state (kept in the store) live in the submodules; the token
//! endpoint's dispatch and client authentication stay in `endpoints`.

mod csrf;
mod error;
mod exchange;
mod login;
mod logout;
mod page;
pub mod pkce;
mod request;
mod session;
mod userinfo;

use std::sync::Arc;

use bytes::Bytes;
use http::header::{ALLOW, LOCATION, SET_COOKIE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;

pub use self::error::AuthorizeError;
pub(crate) use self::exchange::IdSubject;

use self::csrf::CookieJar;
use self::request::{AuthRequest, Params, Prompt, Target};
use self::session::{Authenticated, LoginState};
use super::body::RequestBody;
use super::hooks::Hooks;
use super::kdf::Budget;
use super::keyring::KeyRing;
use super::reserved::confine;
use super::revocation::Revocations;
use super::store::{AuthCode, Store, StoreError};
use super::throttle::{ClientIp, Source, Throttle};
use super::token::{Minter, random_token, token_hash};
use crate::clock::Clock;
use crate::config::IssuerSection;

/// The paths this module answers.
pub const PATHS: &[&str] = &["/oauth/authorize", "/oauth/userinfo", "/login", "/logout"];
/// How long an authorization code may be redeemed.
pub const CODE_TTL: i64 = 60;
/// The session cookie (SameSite=Lax, so a redirect from the client carries it).
const SESSION_COOKIE: &str = "portcullis_session";
/// The login CSRF cookie (SameSite=Strict: only our own form posts it).
const CSRF_COOKIE: &str = "portcullis_login";

/// The login flow's handlers and the state they share.
pub struct Flow {
    section: Arc<IssuerSection>,
    store: Arc<dyn Store>,
    keys: Arc<KeyRing>,
    minter: Minter,
    clock: Arc<dyn Clock>,
    state: LoginState,
    jar: CookieJar,
    /// Failed logins, slowed down per account and source.
    throttle: Throttle,
    /// The login budget of argon2 slots.
    budget: Arc<Budget>,
}

impl std::fmt::Debug for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flow").finish_non_exhaustive()
    }
}

/// `uri` with `params` appended to its query.
fn with_query(uri: &str, params: &[(&str, &str)]) -> String {
    let mut q = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        q.append_pair(k, v);
    }
    let sep = if uri.contains('?') { '&' } else { '?' };
    format!("{uri}{sep}{}", q.finish())
}

/// A 302 to `location`.
fn redirect(location: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::FOUND;
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(LOCATION, v);
    }
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    resp
}

fn add_cookie(resp: &mut Response<Full<Bytes>>, cookie: &str) {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        resp.headers_mut().append(SET_COOKIE, v);
    }
}

// === impl Flow ===

impl Flow {
    /// The flow over the issuer's store and keys.
    pub fn new(
        section: Arc<IssuerSection>,
        store: Arc<dyn Store>,
        keys: Arc<KeyRing>,
        hooks: Arc<Hooks>,
        revocations: Arc<Revocations>,
        clock: Arc<dyn Clock>,
        budget: Arc<Budget>,
    ) -> Flow {
        Flow {
            jar: CookieJar {
                secure: section.url.starts_with("https://"),
            },
            minter: Minter {
                section: section.clone(),
                keys: keys.clone(),
                store: store.clone(),
                hooks,
                revocations,
            },
            state: LoginState::new(store.clone()),
            throttle: Throttle::new(store.clone()),
            budget,
            section,
            store,
            keys,
            clock,
        }
    }

    /// Whether this module answers `path`.
    pub fn serves(path: &str) -> bool {
        PATHS.contains(&path)
    }

    /// Answers one request for a path in [`PATHS`].
    pub async fn handle(&self, req: Request<RequestBody>) -> Response<Full<Bytes>> {
        let source = Source::of(req.extensions().get::<ClientIp>().copied());
        let method = req.method().clone();
        let get = method == Method::GET || method == Method::HEAD;
        let post = method == Method::POST;
        match req.uri().path() {
            "/oauth/authorize" if get => self.authorize(&req).await,
            "/login" if get => self.login_page(&req).await,
            "/login" if post => self.login_submit(req, &source).await,
            "/logout" if get || post => self.logout(req).await,
            "/oauth/userinfo" if get || post => self.userinfo(&req).await,
            path => {
                let allow = match path {
                    "/oauth/authorize" => "GET, HEAD",
                    _ => "GET, HEAD, POST",
                };
                let mut resp = page::html(
                    StatusCode::METHOD_NOT_ALLOWED,
                    page::error_page("this method is not allowed here"),
                );
                resp.headers_mut()
                    .insert(ALLOW, HeaderValue::from_static(allow));
                resp
            }
        }
    }

    /// `GET /oauth/authorize`.
    async fn authorize(&self, req: &Request<RequestBody>) -> Response<Full<Bytes>> {
        let params = Params::parse(req.uri().query().unwrap_or_default().as_bytes());
        let (client, target) = match request::client_and_target(self.store.as_ref(), &params).await
        {
            Ok(found) => found,
            Err(e) => return self.fail(None, e),
        };
        let checked = request::validate(self.store.as_ref(), &params, client, target.clone());
        let request = match checked.await {
            Ok(r) => r,
            Err(e) => return self.fail(Some(&target), e),
        };
        let now = self.clock.now_unix();
        let session = match csrf::cookie(req.headers(), &self.jar.name(SESSION_COOKIE)) {
            Some(id) => match self.state.session(id, now).await {
                Ok(found) => found,
                Err(e) => return self.fail(Some(&target), AuthorizeError::state(&e)),
            },
            None => None,
        };
        // A session is good enough unless the request asks for a fresh login
        // (`prompt=login`) or a recent one (`max_age`).
        let fresh_enough = |user: &Authenticated| match request.max_age {
            Some(max) => now.saturating_sub(user.auth_time) <= max,
            None => true,
        };
        let session = session.filter(|u| request.prompt != Prompt::Login && fresh_enough(u));
        match (session, request.prompt) {
            (Some(user), _) => self.proceed(request, user, None, None).await,
            (None, Prompt::None) => self.fail(Some(&target), AuthorizeError::LoginRequired),
            (None, _) => self.start_login(request, None).await,
        }
    }

    /// Opens a login transaction and sends the browser to its form (or, with
    /// `user`, to its organization chooser).
    async fn start_login(
        &self,
        request: AuthRequest,
        user: Option<Authenticated>,
    ) -> Response<Full<Bytes>> {
        let target = request.target.clone();
        let id = random_token(32);
        let csrf = random_token(32);
        let cookie = self.jar.set(
            CSRF_COOKIE,
            &csrf,
            "Strict",
            session::TRANSACTION_TTL.as_secs(),
        );
        let txn = session::LoginTxn {
            request,
            csrf,
            user,
        };
        if let Err(e) = self.state.put_txn(&id, &txn, self.clock.now_unix()).await {
            return self.fail(Some(&target), AuthorizeError::state(&e));
        }
        let mut resp = redirect(&with_query("/login", &[("txn", &id)]));
        add_cookie(&mut resp, &cookie);
        resp
    }

    /// An error: on a page when there is no trusted target, else back to the
    /// client with `error`, `state` and `iss`.
    fn fail(&self, target: Option<&Target>, err: AuthorizeError) -> Response<Full<Bytes>> {
        tracing::debug!(reason = %err, "Authorization request refused");
        let (code, description) = err.code();
        match target {
            None => {
                let status = match err {
                    AuthorizeError::Server => StatusCode::INTERNAL_SERVER_ERROR,
                    _ => StatusCode::BAD_REQUEST,
                };
                page::html(status, page::error_page(description))
            }
            Some(t) => {
                let mut params = vec![("error", code), ("error_description", description)];
                if let Some(s) = &t.state {
                    params.push(("state", s));
                }
                params.push(("iss", &self.section.url));
                redirect(&with_query(&t.redirect_uri, &params))
            }
        }
    }

    /// The user is known: pick the organization (asking when they have several
    /// and the request names none), then issue the code. `txn` is the login
    /// transaction this happens in, if any: it ends here unless the user must
    /// still choose.
    async fn proceed(
        &self,
        request: AuthRequest,
        user: Authenticated,
        chosen: Option<&str>,
        txn: Option<(&str, &session::LoginTxn)>,
    ) -> Response<Full<Bytes>> {
        let target = request.target.clone();
        let memberships = match self.store.list_memberships_of_user(&user.user_id).await {
            Ok(m) => m,
            Err(e) => return self.fail(Some(&target), AuthorizeError::store(&e)),
        };
        let wanted = request.organization.as_deref().or(chosen);
        let membership = match wanted {
            Some(org) => match memberships.iter().find(|m| m.org_id == org) {
                Some(m) => Some(m),
                None => {
                    return self.fail(
                        Some(&target),
                        AuthorizeError::AccessDenied(
                            "the user is not a member of the organization",
                        ),
                    );
                }
            },
            None if memberships.len() > 1 => {
                return match txn {
                    Some((id, txn)) => {
                        let mut txn = txn.clone();
                        txn.user = Some(user.clone());
                        let now = self.clock.now_unix();
                        if let Err(e) = self.state.put_txn(id, &txn, now).await {
                            return self.fail(Some(&target), AuthorizeError::state(&e));
                        }
                        self.choose(id, &txn, &user).await
                    }
                    None if request.prompt == Prompt::None => {
                        self.fail(Some(&target), AuthorizeError::AccountSelectionRequired)
                    }
                    None => self.start_login(request, Some(user)).await,
                };
            }
            None => memberships.first(),
        };
        if let Some((id, _)) = txn {
            // Single-use: of two submissions of one form, one gets the code.
            match self.state.finish_txn(id, self.clock.now_unix()).await {
                Ok(true) => {}
                Ok(false) => return login::expired(),
                Err(e) => return self.fail(Some(&target), AuthorizeError::state(&e)),
            }
        }
        match self.issue_code(&request, &user, membership).await {
            Ok(code) => {
                let mut params = vec![("code", code.as_str())];
                if let Some(s) = &target.state {
                    params.push(("state", s));
                }
                params.push(("iss", &self.section.url));
                redirect(&with_query(&target.redirect_uri, &params))
            }
            Err(e) => self.fail(Some(&target), e),
        }
    }

    /// Stores a fresh single-use code (by its hash) and returns it.
    async fn issue_code(
        &self,
        request: &AuthRequest,
        user: &Authenticated,
        membership: Option<&super::store::Membership>,
    ) -> Result<String, AuthorizeError> {
        let role_grants = match (membership, &request.resource) {
            (Some(m), Some(resource)) => self
                .role_scopes(&m.roles, resource)
                .await
                .map_err(|e| AuthorizeError::store(&e))?,
            _ => Vec::new(),
        };
        let granted = request::granted_scope(request, &role_grants);
        let scope = confine(&self.section.url, request.resource.as_deref(), &granted).join(" ");
        let code = random_token(32);
        let now = self.clock.now_unix();
        let record = AuthCode {
            code_hash: token_hash(&code),
            client_id: request.client_id.clone(),
            user_id: user.user_id.clone(),
            org_id: membership.map(|m| m.org_id.clone()),
            redirect_uri: request.target.redirect_uri.clone(),
            scope,
            resource: request.resource.clone(),
            code_challenge: request.code_challenge.clone(),
            nonce: request.nonce.clone(),
            auth_time: user.auth_time,
            expires_at: now + CODE_TTL,
        };
        self.store
            .insert_code(&record)
            .await
            .map_err(|e| AuthorizeError::store(&e))?;
        tracing::debug!(client = %request.client_id, sub = %user.user_id, "Authorization code issued");
        Ok(code)
    }

    /// The scopes of `resource` that `roles` grant together.
    async fn role_scopes(
        &self,
        roles: &[String],
        resource: &str,
    ) -> Result<Vec<String>, StoreError> {
        let mut out: Vec<String> = Vec::new();
        for name in roles {
            if let Some(role) = self.store.get_role(name).await? {
                for s in role.grants.get(resource).into_iter().flatten() {
                    if !out.contains(s) {
                        out.push(s.clone());
                    }
                }
            }
        }
        Ok(out)
    }
}
