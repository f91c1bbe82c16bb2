//! Blocking hooks (`issuer.hooks`): endpoints the issuer calls, and waits
//! for, before it signs an access token (`token.pre_issue`, every grant) or
//! creates a user (`user.pre_create`, every way of creating one). A call is a
//! POST of the webhook payload `{"id","event","created_at","data"}`, signed
//! exactly as webhooks are (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature`), sent with the webhooks' client, so only to the
//! addresses `issuer.webhook_address_policy` allows. The answer
//! (`answer`) allows, possibly with claims for the access token (never a
//! reserved one: [`HOOK_RESERVED_CLAIMS`](super::reserved::HOOK_RESERVED_CLAIMS)),
//! or denies with a reason shown to the caller. A call that times out, cannot
//! connect, answers non-2xx or answers anything else has failed: the
//! operation is refused unless the hook says `on_failure: allow`.
//! Non-blocking events stay on the outbox (`events`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::Full;
use serde::Serialize;
use serde_json::{Value, json};

use super::events::guard::{self, Refused};
use super::events::{WebhookClient, client, shown, sign};
use super::store::new_id;
use crate::clock::Clock;
use crate::config::{HookConfig, HookEvent, IssuerSection, OnFailure, WebhookAddressPolicy};
use crate::telemetry::events::chain;

mod answer;

pub use answer::{AddedClaims, Reason};

use answer::Answer;

/// The largest answer read from a hook; a longer one is a failure.
const MAX_ANSWER: usize = 16 * 1024;

/// The configured blocking hooks and the client that calls them.
pub struct Hooks {
    pre_issue: Vec<Hook>,
    pre_create: Vec<Hook>,
    /// `None` when no hook is configured.
    client: Option<WebhookClient>,
    policy: Arc<WebhookAddressPolicy>,
    clock: Arc<dyn Clock>,
}

/// One configured hook.
struct Hook {
    url: Uri,
    key: Vec<u8>,
    timeout: Duration,
    on_failure: OnFailure,
}

/// What a `token.pre_issue` hook is told about the token about to be signed.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PreIssue<'a> {
    /// `client_credentials`, `authorization_code`, `refresh_token` …
    pub grant_type: &'a str,
    pub client_id: &'a str,
    pub sub: &'a str,
    pub aud: &'a str,
    /// Space-separated, as in the token.
    pub scope: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub org_id: Option<&'a str>,
}

/// What a `user.pre_create` hook is told about the user about to be created:
/// `email` and `name` (both `null` for an anonymous user, who has neither),
/// `anonymous: true` for a user the anonymous grant creates, and `user_id`
/// for the promotion of anonymous user `user_id` to a normal user — which
/// gives a user an email and a password as a creation does, and so is asked
/// about likewise.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PreCreate<'a> {
    pub email: Option<&'a str>,
    pub name: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub anonymous: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<&'a str>,
}

/// Why a blocking hook stopped an operation. Never carries the hook's URL or
/// secret.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// A hook answered `{"allow": false}`: the reason is for the caller.
    #[error("denied by the {event} hook: {reason}")]
    Denied { event: &'static str, reason: Reason },
    /// A hook with `on_failure: deny` failed (logged where it happened).
    #[error("the {event} hook failed")]
    Failed {
        event: &'static str,
        #[source]
        cause: CallError,
    },
}

/// Why one call failed: the phrases name neither the URL nor the secret.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("request failed")]
    Request(#[source] hyper_util::client::legacy::Error),
    #[error("answer body failed or too large")]
    Body,
    #[error("timed out")]
    Timeout,
    #[error("answered {0}")]
    Status(http::StatusCode),
    #[error("cannot build the request")]
    Build(#[source] http::Error),
    #[error("refused")]
    Refused(#[source] Refused),
    #[error("the answer is not {{\"allow\": true|false, …}}")]
    Answer(#[source] serde_json::Error),
    #[error("no client is set up for hooks")]
    NoClient,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("pre_issue", &self.pre_issue.len())
            .field("pre_create", &self.pre_create.len())
            .finish_non_exhaustive()
    }
}

// === impl Hooks ===

impl Hooks {
    /// The hooks of `section`. Fails only if TLS cannot be set up.
    pub fn new(section: &IssuerSection, clock: Arc<dyn Clock>) -> Result<Hooks, rustls::Error> {
        let policy = Arc::new(section.webhook_address_policy.clone());
        let of = |event: HookEvent| -> Vec<Hook> {
            section
                .hooks
                .iter()
                .filter(|h| h.event == event)
                .map(Hook::from_config)
                .collect()
        };
        let client = match section.hooks.is_empty() {
            true => None,
            false => Some(client(policy.clone())?),
        };
        Ok(Hooks {
            pre_issue: of(HookEvent::TokenPreIssue),
            pre_create: of(HookEvent::UserPreCreate),
            client,
            policy,
            clock,
        })
    }

    /// No hooks at all: every operation is allowed as it is.
    pub fn none(clock: Arc<dyn Clock>) -> Hooks {
        Hooks {
            pre_issue: Vec::new(),
            pre_create: Vec::new(),
            client: None,
            policy: Arc::new(WebhookAddressPolicy::default()),
            clock,
        }
    }

    /// Asks every `token.pre_issue` hook, in order, about the token `about`
    /// describes; the claims they add (a later hook's value wins), or why
    /// the token must not be issued. Without hooks: nothing to add, at once.
    pub async fn pre_issue(&self, about: &PreIssue<'_>) -> Result<AddedClaims, Refusal> {
        if self.pre_issue.is_empty() {
            return Ok(AddedClaims::default());
        }
        let data = serde_json::to_value(about).unwrap_or(Value::Null);
        self.run(&self.pre_issue, HookEvent::TokenPreIssue, data)
            .await
    }

    /// Asks every `user.pre_create` hook, in order, whether the user `about`
    /// describes may be created.
    pub async fn pre_create(&self, about: &PreCreate<'_>) -> Result<(), Refusal> {
        if self.pre_create.is_empty() {
            return Ok(());
        }
        let data = serde_json::to_value(about).unwrap_or(Value::Null);
        self.run(&self.pre_create, HookEvent::UserPreCreate, data)
            .await
            .map(|_| ())
    }

    /// Calls `hooks` one after the other with one payload (one `webhook-id`).
    async fn run(
        &self,
        hooks: &[Hook],
        event: HookEvent,
        data: Value,
    ) -> Result<AddedClaims, Refusal> {
        let name = event.as_str();
        let id = new_id("evt");
        let mut created_at = String::with_capacity(27);
        crate::telemetry::access::rfc3339(&mut created_at, self.clock.now_unix(), 0);
        let body = Bytes::from(
            json!({ "id": id, "event": name, "created_at": created_at, "data": data }).to_string(),
        );
        let mut added = AddedClaims::default();
        for hook in hooks {
            match self.call(hook, &id, body.clone()).await {
                Ok(Answer::Allow(claims)) => {
                    if event == HookEvent::TokenPreIssue {
                        added.merge(claims, name, &hook.url);
                    }
                }
                Ok(Answer::Deny(reason)) => {
                    tracing::debug!(hook = %shown(&hook.url), event = name, event_id = %id, "Blocking hook denied the operation");
                    return Err(Refusal::Denied {
                        event: name,
                        reason,
                    });
                }
                Err(e) => match hook.on_failure {
                    OnFailure::Deny => {
                        tracing::warn!(hook = %shown(&hook.url), event = name, event_id = %id, error = %chain(&e), "Blocking hook failed; operation refused (on_failure: deny)");
                        return Err(Refusal::Failed {
                            event: name,
                            cause: e,
                        });
                    }
                    OnFailure::Allow => {
                        tracing::warn!(hook = %shown(&hook.url), event = name, event_id = %id, error = %chain(&e), "Blocking hook failed; operation allowed (on_failure: allow)");
                    }
                },
            }
        }
        Ok(added)
    }

    /// One signed POST and its answer, within the hook's timeout (connection,
    /// request and answer together).
    async fn call(&self, hook: &Hook, id: &str, body: Bytes) -> Result<Answer, CallError> {
        let Some(client) = &self.client else {
            // Not reached: a configured hook comes with a client.
            return Err(CallError::NoClient);
        };
        // A literal address skips resolution, and with it the resolver's
        // check: checked here.
        if let Some(refused) = hook
            .url
            .host()
            .and_then(|h| guard::check_literal(&self.policy, h))
        {
            return Err(CallError::Refused(refused));
        }
        let timestamp = self.clock.now_unix();
        let signature = sign(&hook.key, id, timestamp, &body);
        let req = Request::post(hook.url.clone())
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(Full::new(body))
            .map_err(CallError::Build)?;
        let exchange = async {
            let resp = client
                .request(req)
                .await
                .map_err(|e| match guard::refusal_in(&e) {
                    Some(refused) => CallError::Refused(refused),
                    None => CallError::Request(e),
                })?;
            let status = resp.status();
            // Read (and so drain) the answer, so that the connection can be
            // reused, whatever the status.
            let bytes = super::body::read_capped(resp.into_body(), MAX_ANSWER)
                .await
                .map_err(|_| CallError::Body)?;
            if !status.is_success() {
                return Err(CallError::Status(status));
            }
            Answer::parse(&bytes).map_err(CallError::Answer)
        };
        tokio::time::timeout(hook.timeout, exchange)
            .await
            .map_err(|_| CallError::Timeout)?
    }
}

// === impl Hook ===

impl Hook {
    fn from_config(c: &HookConfig) -> Hook {
        Hook {
            url: c.url.clone(),
            key: c.secret.key().to_vec(),
            timeout: c.timeout,
            on_failure: c.on_failure,
        }
    }
}

// === impl Refusal ===

impl Refusal {
    /// The hook's reason, for a denial.
    pub fn reason(&self) -> Option<&Reason> {
        match self {
            Refusal::Denied { reason, .. } => Some(reason),
            Refusal::Failed { .. } => None,
        }
    }
}
