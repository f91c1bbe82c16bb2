//! `/login`: the password form with its CSRF check, failures slowed down per
//! account and source address (`throttle`) and argon2 in the login budget
//! (`kdf`), and the organization chooser. `/logout` is `logout.rs`.

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;

use super::csrf;
use super::page;
use super::request::Params;
use super::session::{self, Authenticated, LoginTxn};
use super::{AuthorizeError, CSRF_COOKIE, Flow, SESSION_COOKIE, add_cookie};
use crate::issuer::body::{self, BodyError, RequestBody};
use crate::issuer::kdf::{Permit, Refusal};
use crate::issuer::store::{AuditEntry, StoreError, User, new_id};
use crate::issuer::throttle::{self, Keys, Source, Verdict};
use crate::issuer::token::random_token;

/// The largest login form read.
const MAX_FORM: usize = 16 * 1024;

/// A login or logout form body, or why it is not a readable urlencoded form.
pub(super) async fn read_form(req: Request<RequestBody>) -> Result<(Params, HeaderMap), BodyError> {
    let (parts, body) = req.into_parts();
    let form = body::read_form(&parts.headers, body, MAX_FORM).await?;
    Ok((Params::from(form), parts.headers))
}

/// The page for a form that could not be read: 408 when it stopped
/// arriving (`server.limits.body_timeout`), 400 otherwise.
pub(super) fn unreadable_form(e: BodyError) -> Response<Full<Bytes>> {
    match e {
        BodyError::Stalled => page::html(
            StatusCode::REQUEST_TIMEOUT,
            page::error_page("the form did not arrive in time; go back and try again"),
        ),
        BodyError::MediaType | BodyError::Unreadable => page::html(
            StatusCode::BAD_REQUEST,
            page::error_page("the form could not be read"),
        ),
    }
}

/// The login form again, with the email kept and a message.
fn form_again(
    id: &str,
    txn: &LoginTxn,
    email: &str,
    status: StatusCode,
    message: &str,
) -> Response<Full<Bytes>> {
    let form = page::login_form(
        id,
        &txn.csrf,
        &txn.request.client_name,
        email,
        Some(message),
    );
    form_page(status, form, txn)
}

/// A page with a form of login transaction `txn`: a successful submission
/// redirects to the client, which the CSP lets through.
fn form_page(status: StatusCode, body: String, txn: &LoginTxn) -> Response<Full<Bytes>> {
    page::html_with_form_target(status, body, Some(&txn.request.target.redirect_uri))
}

/// The login form again with `message`, `status` and `Retry-After`: the
/// attempt was not checked and may be made again after `retry_after` seconds.
fn wait_page(
    id: &str,
    txn: &LoginTxn,
    email: &str,
    status: StatusCode,
    message: &str,
    retry_after: u64,
) -> Response<Full<Bytes>> {
    let mut resp = form_again(id, txn, email, status, message);
    resp.headers_mut().insert(
        http::header::RETRY_AFTER,
        http::HeaderValue::from(retry_after.max(1)),
    );
    resp
}

/// The page for a transaction that expired or already finished.
pub(super) fn expired() -> Response<Full<Bytes>> {
    page::html(
        StatusCode::BAD_REQUEST,
        page::error_page(
            "this sign-in request has expired; go back to the application and try again",
        ),
    )
}

/// A failure of the login state store, as a page (ours; logged).
pub(super) fn server_error(err: &session::StateError) -> Response<Full<Bytes>> {
    let _ = AuthorizeError::state(err);
    page::html(
        StatusCode::INTERNAL_SERVER_ERROR,
        page::error_page("the server could not complete the request"),
    )
}

// === impl Flow ===

impl Flow {
    /// `GET /login?txn=…`: the form of a pending transaction.
    pub(super) async fn login_page(&self, req: &Request<RequestBody>) -> Response<Full<Bytes>> {
        let params = Params::parse(req.uri().query().unwrap_or_default().as_bytes());
        let Some(id) = params.get("txn").filter(|_| !params.malformed) else {
            return expired();
        };
        let txn = match self.state.txn(id, self.clock.now_unix()).await {
            Ok(Some(txn)) => txn,
            Ok(None) => return expired(),
            Err(e) => return server_error(&e),
        };
        match &txn.user {
            Some(user) => self.choose(id, &txn, user).await,
            None => {
                let hint = txn.request.login_hint.as_deref().unwrap_or_default();
                let form = page::login_form(id, &txn.csrf, &txn.request.client_name, hint, None);
                form_page(StatusCode::OK, form, &txn)
            }
        }
    }

    /// `POST /login`: checks the CSRF token, then the password (or the chosen
    /// organization), then continues the authorization.
    pub(super) async fn login_submit(
        &self,
        req: Request<RequestBody>,
        source: &Source,
    ) -> Response<Full<Bytes>> {
        let (form, headers) = match read_form(req).await {
            Ok(read) => read,
            Err(e) => return unreadable_form(e),
        };
        let Some(id) = form
            .get("txn")
            .filter(|_| !form.malformed)
            .map(str::to_owned)
        else {
            return expired();
        };
        let txn = match self.state.txn(&id, self.clock.now_unix()).await {
            Ok(Some(txn)) => txn,
            Ok(None) => return expired(),
            Err(e) => return server_error(&e),
        };
        let cookie = csrf::cookie(&headers, &self.jar.name(CSRF_COOKIE));
        if form.malformed || !csrf::csrf_ok(&txn.csrf, cookie, form.get("csrf")) {
            tracing::debug!(reason = "csrf", "Login form refused");
            return page::html(
                StatusCode::FORBIDDEN,
                page::error_page(
                    "the form could not be verified; go back to the application and try again",
                ),
            );
        }
        if let Some(user) = &txn.user {
            let Some(org) = form.get("organization") else {
                return self.choose(&id, &txn, user).await;
            };
            return self
                .proceed(
                    txn.request.clone(),
                    user.clone(),
                    Some(org),
                    Some((&id, &txn)),
                )
                .await;
        }
        let previous = csrf::cookie(&headers, &self.jar.name(SESSION_COOKIE));
        self.check_password(&id, &txn, &form, previous, source)
            .await
    }

    async fn check_password(
        &self,
        id: &str,
        txn: &LoginTxn,
        form: &Params,
        previous: Option<&str>,
        source: &Source,
    ) -> Response<Full<Bytes>> {
        let email = form.get("email").unwrap_or_default();
        let account = email.to_lowercase();
        let now = self.clock.now_unix();
        // The attempt is counted before the password is checked, so guesses
        // sent at once cannot all pass a check made before any of them failed.
        // Unknown emails are counted like known ones: the throttle must not
        // tell them apart either.
        let keys = Keys::new(throttle::LOGIN, &account, source);
        let delays_begin = match self.throttle.attempt(&keys, now).await {
            Ok(Verdict::Check { delays_begin }) => delays_begin,
            Ok(Verdict::Wait { retry_after }) => {
                tracing::debug!(
                    source = source.as_str(),
                    reason = "throttled",
                    "Login refused"
                );
                let message = "too many failed sign-ins for this account from your network; wait a moment and try again";
                return wait_page(
                    id,
                    txn,
                    email,
                    StatusCode::TOO_MANY_REQUESTS,
                    message,
                    retry_after,
                );
            }
            Err(e) => return server_error(&e.into()),
        };
        let permit = match self.budget.admit(source).await {
            Ok(permit) => permit,
            Err(refusal) => {
                if let Err(e) = self.throttle.unchecked(&keys, now).await {
                    return server_error(&e.into());
                }
                let (status, message) = match refusal {
                    Refusal::Busy => (
                        StatusCode::SERVICE_UNAVAILABLE,
                        "the server is busy; try again in a moment",
                    ),
                    Refusal::SourceBusy => (
                        StatusCode::TOO_MANY_REQUESTS,
                        "another sign-in from your network is in progress; try again in a moment",
                    ),
                };
                return wait_page(id, txn, email, status, message, 1);
            }
        };
        let password = form.get("password").unwrap_or_default().to_owned();
        let checked = self.authenticate(&permit, email, password).await;
        drop(permit);
        let user = match checked {
            Ok(Some(user)) => user,
            Ok(None) => {
                tracing::debug!(reason = "bad_credentials", "Login refused");
                self.audit_login("login.failed", None, &account, &txn.request.client_id)
                    .await;
                if delays_begin {
                    // Once per run of failures, not once per refusal.
                    self.audit_login("login.throttled", None, &account, &txn.request.client_id)
                        .await;
                }
                let message = "wrong email or password";
                return form_again(id, txn, email, StatusCode::UNAUTHORIZED, message);
            }
            Err(e) => {
                tracing::error!(error = %crate::telemetry::events::chain(&e), "User lookup failed");
                return page::html(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    page::error_page("the server could not complete the request"),
                );
            }
        };
        let authenticated = Authenticated {
            user_id: user.id.clone(),
            auth_time: now,
        };
        let session_id = random_token(32);
        let started = async {
            self.throttle
                .succeeded(&keys, now)
                .await
                .map_err(session::StateError::from)?;
            // A new sign-in replaces the browser's session (prompt=login,
            // max_age, or another user on the same browser).
            if let Some(previous) = previous {
                self.state.end_session(previous).await?;
            }
            self.state
                .put_session(&session_id, &authenticated, now)
                .await
        };
        if let Err(e) = started.await {
            return server_error(&e);
        }
        tracing::debug!(sub = %user.id, "User signed in");
        self.audit_login(
            "login.succeeded",
            Some(&user.id),
            &account,
            &txn.request.client_id,
        )
        .await;
        let mut resp = self
            .proceed(txn.request.clone(), authenticated, None, Some((id, txn)))
            .await;
        let cookie = self.jar.set(
            SESSION_COOKIE,
            &session_id,
            "Lax",
            session::SESSION_TTL.as_secs(),
        );
        add_cookie(&mut resp, &cookie);
        resp
    }

    /// Records a login outcome in the audit log (a failure to record is
    /// logged, and does not change the outcome). `account` is the lowercased
    /// email as typed, kept only when no user is known.
    async fn audit_login(&self, action: &str, user: Option<&str>, account: &str, client: &str) {
        let detail = match user {
            Some(_) => serde_json::json!({ "client_id": client }),
            None => {
                let account: String = account.chars().take(320).collect();
                serde_json::json!({ "client_id": client, "account": account })
            }
        };
        let entry = AuditEntry {
            id: new_id("aud"),
            at: self.clock.now_unix(),
            actor: user.unwrap_or("anonymous").to_owned(),
            action: action.to_owned(),
            target: user.map(str::to_owned),
            detail: detail.to_string(),
        };
        if let Err(e) = self.store.insert_audit(&entry).await {
            tracing::error!(error = %crate::telemetry::events::chain(&e), "Audit entry lost");
        }
    }

    /// The user with this email and password, checked in `permit`'s argon2
    /// slot. An unknown email (or a user without a password) holds the slot
    /// as long as a verification takes, computing nothing (see
    /// [`Permit::imitate`]), so timing does not tell which accounts exist.
    async fn authenticate(
        &self,
        permit: &Permit<'_>,
        email: &str,
        password: String,
    ) -> Result<Option<User>, StoreError> {
        let user = self.store.get_user_by_email(email).await?;
        match user.as_ref().and_then(|u| u.password_hash.clone()) {
            Some(hash) => {
                let ok = permit.verify(password, hash).await;
                Ok(user.filter(|_| ok))
            }
            None => {
                permit.imitate().await;
                Ok(None)
            }
        }
    }

    /// The organization chooser for a signed-in user with several
    /// memberships, the organizations in the order of their names.
    pub(super) async fn choose(
        &self,
        id: &str,
        txn: &LoginTxn,
        user: &Authenticated,
    ) -> Response<Full<Bytes>> {
        let memberships = self
            .store
            .list_memberships_of_user(&user.user_id)
            .await
            .unwrap_or_default();
        let mut orgs = Vec::with_capacity(memberships.len());
        for m in memberships {
            let name = match self.store.get_organization(&m.org_id).await {
                Ok(Some(o)) => o.name,
                _ => m.org_id.clone(),
            };
            orgs.push((m.org_id, name));
        }
        // By name, as a person looks for one (the store lists them by id).
        orgs.sort_by_cached_key(|(id, name)| (name.to_lowercase(), id.clone()));
        form_page(StatusCode::OK, page::org_chooser(id, &txn.csrf, &orgs), txn)
    }
}
