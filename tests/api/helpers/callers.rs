//! Typed callers: what an orchestrator and an administrator do, by name, instead of method and
//! path strings at each call. Paths are spelled here once.

use reqwest::Method;
use serde_json::{json, Value};

use super::TestApp;

/// `POST` here mints.
pub const MANDATES: &str = "/v1/mandates";
/// `POST` here introspects.
pub const INTROSPECT: &str = "/v1/introspect";

/// A mint request, built up: `Mint::new(jwt).scope("crm", &["read"])`.
#[derive(Debug, Clone)]
pub struct Mint {
    subject_token: String,
    description: String,
    scope: Vec<Value>,
    ttl_seconds: Option<i64>,
    holder_key: Option<Value>,
}

impl Mint {
    /// A mint for the principal of `subject_token`, with a task and no scope yet.
    pub fn new(subject_token: &str) -> Self {
        Self {
            subject_token: subject_token.to_owned(),
            description: "Summarise ACME tickets".to_owned(),
            scope: Vec::new(),
            ttl_seconds: None,
            holder_key: None,
        }
    }

    /// Binds the mandate to `key` (its public JWK).
    pub fn bound_to(mut self, key: &mandate::token::pop::HolderSecret) -> Self {
        self.holder_key = Some(key.public().to_jwk());
        self
    }

    /// Asks for `operations` of `tool` too.
    pub fn scope(mut self, tool: &str, operations: &[&str]) -> Self {
        self.scope
            .push(json!({"tool": tool, "operations": operations}));
        self
    }

    /// Asks for a lifetime of `seconds`.
    pub fn ttl(mut self, seconds: i64) -> Self {
        self.ttl_seconds = Some(seconds);
        self
    }

    /// The JSON body of `POST /v1/mandates`.
    pub fn body(&self) -> Value {
        let mut body = json!({"subject_token": self.subject_token,
                              "task": {"description": self.description}, "scope": self.scope});
        if let Some(ttl) = self.ttl_seconds {
            body["ttl_seconds"] = json!(ttl);
        }
        if let Some(key) = &self.holder_key {
            body["holder_key"] = key.clone();
        }
        body
    }
}

/// An orchestrator, calling with its agent secret.
pub struct AgentClient<'a> {
    app: &'a TestApp,
    secret: String,
}

impl AgentClient<'_> {
    /// Mints; returns the status and the body.
    pub async fn try_mint(&self, request: &Mint) -> (u16, Value) {
        self.mint_body(request.body()).await
    }

    /// Posts `body` as written to `/v1/mandates` (for bodies [`Mint`] does not build, such as
    /// malformed ones); returns the status and the body.
    pub async fn mint_body(&self, body: Value) -> (u16, Value) {
        self.app
            .as_token(&self.secret, Method::POST, MANDATES, Some(body))
            .await
    }

    /// Posts `body` as written to `/v1/mandates`; returns the whole response (for its headers).
    pub async fn mint_response(&self, body: &Value) -> reqwest::Response {
        self.app
            .call(Method::POST, MANDATES, Some(&self.secret), Some(body))
            .await
    }

    /// Mints, which must be answered 201; returns the issued mandate.
    pub async fn mint(&self, request: &Mint) -> Value {
        let (status, body) = self.try_mint(request).await;
        assert_eq!(status, 201, "mint refused: {body}");
        body
    }

    /// Revokes one of its own mandates; returns the status and the body.
    pub async fn revoke(&self, mandate_id: &str, reason: &str) -> (u16, Value) {
        let path = format!("{MANDATES}/{mandate_id}/revoke");
        let body = json!({ "reason": reason });
        self.app
            .as_token(&self.secret, Method::POST, &path, Some(body))
            .await
    }
}

/// An administrator, calling with an admin token.
pub struct AdminClient<'a> {
    app: &'a TestApp,
    token: String,
}

impl AdminClient<'_> {
    /// Any admin call; returns the status and the body.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.app.as_token(&self.token, method, path, body).await
    }

    /// Introspects `token`, which must be answered 200.
    pub async fn introspect(&self, token: &str) -> Value {
        let (status, body) = self
            .call(Method::POST, INTROSPECT, Some(json!({ "token": token })))
            .await;
        assert_eq!(status, 200, "introspection refused: {body}");
        body
    }

    /// Revokes a mandate; returns the status and the body.
    pub async fn revoke(&self, mandate_id: &str, reason: &str) -> (u16, Value) {
        let path = format!("{MANDATES}/{mandate_id}/revoke");
        self.call(Method::POST, &path, Some(json!({ "reason": reason })))
            .await
    }
}

impl TestApp {
    /// The orchestrator holding `secret`.
    pub fn agent(&self, secret: &str) -> AgentClient<'_> {
        AgentClient {
            app: self,
            secret: secret.to_owned(),
        }
    }

    /// The bootstrap administrator.
    pub fn administrator(&self) -> AdminClient<'_> {
        self.administrator_with(super::ADMIN_TOKEN)
    }

    /// The administrator holding `token`.
    pub fn administrator_with(&self, token: &str) -> AdminClient<'_> {
        AdminClient {
            app: self,
            token: token.to_owned(),
        }
    }

    /// A verifier of this app's mandates, as a downstream service runs it: the published keys,
    /// the app's clock, no revocation list.
    pub fn verifier(&self) -> mandate::verifier::Verifier {
        let clock: mandate::clock::SharedClock = self.clock.clone();
        mandate::verifier::Verifier::new(
            mandate::verifier::VerifierSettings::new(self.base.clone()),
            std::sync::Arc::new(mandate::verifier::NoRevocations),
            clock,
        )
        .unwrap()
    }

    /// Mints `request` as the orchestrator holding `secret` (answered 201); the one way tests
    /// mint.
    pub async fn mint(&self, secret: &str, request: &Mint) -> Value {
        self.agent(secret).mint(request).await
    }
}
