//! Issuers: the OIDC identity providers whose tokens prove a human principal.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{nullable, text_enum, Invalid, Validation};

/// Signature algorithms an issuer may be allowed. Never `none`, never an HMAC algorithm: a
/// public-key issuer's tokens are verified with public keys only.
pub const SUPPORTED_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// Whether an issuer's tokens are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IssuerStatus {
    /// Tokens are accepted.
    Active,
    /// Tokens are refused.
    Disabled,
}
text_enum!(IssuerStatus { Active => "active", Disabled => "disabled" });

/// A trusted OIDC identity provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Issuer {
    /// Slug id.
    #[schema(example = "corp-idp")]
    pub id: String,
    /// The exact `iss` of its tokens.
    #[schema(example = "https://login.example.com/")]
    pub issuer_url: String,
    /// Accepted `aud` values: a token must carry at least one.
    #[schema(example = json!(["mandate"]))]
    pub audiences: Vec<String>,
    /// Where its signing keys are published; absent when found by discovery.
    pub jwks_uri: Option<String>,
    /// Find `jwks_uri` through `/.well-known/openid-configuration`.
    pub discovery: bool,
    /// Accepted signature algorithms.
    #[schema(example = json!(["RS256"]))]
    pub allowed_algorithms: Vec<String>,
    /// The claim naming the principal (default `sub`).
    pub subject_claim: String,
    /// The claim listing the principal's groups, if any.
    pub groups_claim: Option<String>,
    /// The claim naming the OAuth client a token was issued to (`azp` or `client_id`): when
    /// set, it must name the orchestrator presenting the token.
    pub client_claim: Option<String>,
    /// Each token mints once: it must carry a `jti`, remembered until it expires.
    pub single_use_tokens: bool,
    /// Lifecycle state.
    pub status: IssuerStatus,
    /// Increases with every change.
    pub version: i64,
    /// When it was registered.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// `POST /v1/admin/issuers`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewIssuer {
    /// Slug id.
    pub id: String,
    /// The exact `iss`: an https URL (http only on loopback hosts).
    pub issuer_url: String,
    /// Accepted audiences (at least one).
    pub audiences: Vec<String>,
    /// JWKS URL; give this or `discovery: true`, not both.
    #[serde(default)]
    pub jwks_uri: Option<String>,
    /// Use OIDC discovery to find the JWKS.
    #[serde(default)]
    pub discovery: bool,
    /// Accepted algorithms, from RS256/384/512, PS256/384/512, ES256/384, EdDSA.
    pub allowed_algorithms: Vec<String>,
    /// Claim naming the principal (default `sub`).
    #[serde(default)]
    pub subject_claim: Option<String>,
    /// Claim listing groups.
    #[serde(default)]
    pub groups_claim: Option<String>,
    /// Claim naming the client the token was issued to, which must be the presenting
    /// orchestrator's id (`azp` or `client_id`).
    #[serde(default)]
    pub client_claim: Option<String>,
    /// Each token (by `jti`) mints once.
    #[serde(default)]
    pub single_use_tokens: bool,
}

/// `PATCH /v1/admin/issuers/{id}`.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssuerPatch {
    /// New audiences.
    pub audiences: Option<Vec<String>>,
    /// New JWKS URL, or `null` to use discovery.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub jwks_uri: Option<Option<String>>,
    /// Use discovery.
    pub discovery: Option<bool>,
    /// New algorithms.
    pub allowed_algorithms: Option<Vec<String>>,
    /// New subject claim.
    pub subject_claim: Option<String>,
    /// New groups claim, or `null` for none.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub groups_claim: Option<Option<String>>,
    /// New client claim, or `null` for none.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    pub client_claim: Option<Option<String>>,
    /// Whether each token mints once.
    pub single_use_tokens: Option<bool>,
}

/// An https URL, or http on a loopback host; no credentials, query or fragment.
fn check_url(check: &mut Validation, field: &str, value: &str) {
    if value.len() > 2048 {
        check.fail(field, "must be at most 2048 characters");
        return;
    }
    let Ok(url) = url::Url::parse(value) else {
        check.fail(field, "must be an absolute URL");
        return;
    };
    let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && loopback);
    if !scheme_ok {
        check.fail(field, "must use https (http only on loopback hosts)");
    } else if url.host_str().is_none_or(str::is_empty) {
        check.fail(field, "must name a host");
    } else if !url.username().is_empty() || url.password().is_some() {
        check.fail(field, "must not carry credentials");
    } else if url.query().is_some() || url.fragment().is_some() {
        check.fail(field, "must not have a query or fragment");
    }
}

fn check_claim(check: &mut Validation, field: &str, value: &str) {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:/".contains(&b));
    if !ok {
        check.fail(field, "must be 1 to 128 characters of [A-Za-z0-9_-.:/]");
    }
}

fn check_common(
    check: &mut Validation,
    audiences: &[String],
    algorithms: &[String],
    jwks_uri: Option<&str>,
    discovery: bool,
) {
    if audiences.is_empty() || audiences.len() > 16 {
        check.fail("audiences", "must list 1 to 16 audiences");
    }
    for (i, audience) in audiences.iter().enumerate() {
        check.text(&format!("audiences[{i}]"), audience, 256, true);
    }
    if algorithms.is_empty() {
        check.fail("allowed_algorithms", "must list at least one algorithm");
    }
    for (i, alg) in algorithms.iter().enumerate() {
        if !SUPPORTED_ALGORITHMS.contains(&alg.as_str()) {
            check.fail(
                format!("allowed_algorithms[{i}]"),
                format!("`{alg}` is not one of {}", SUPPORTED_ALGORITHMS.join(", ")),
            );
        }
    }
    match (jwks_uri, discovery) {
        (Some(uri), false) => check_url(check, "jwks_uri", uri),
        (None, true) => {}
        (Some(_), true) => check.fail("jwks_uri", "give jwks_uri or discovery, not both"),
        (None, false) => check.fail("jwks_uri", "give jwks_uri or set discovery to true"),
    }
}

impl NewIssuer {
    /// Field checks.
    pub fn check(&self) -> Result<(), Invalid> {
        let mut check = Validation::new();
        check.id("id", &self.id);
        check_url(&mut check, "issuer_url", &self.issuer_url);
        check_common(
            &mut check,
            &self.audiences,
            &self.allowed_algorithms,
            self.jwks_uri.as_deref(),
            self.discovery,
        );
        if let Some(claim) = &self.subject_claim {
            check_claim(&mut check, "subject_claim", claim);
        }
        if let Some(claim) = &self.groups_claim {
            check_claim(&mut check, "groups_claim", claim);
        }
        if let Some(claim) = &self.client_claim {
            check_claim(&mut check, "client_claim", claim);
        }
        check.finish()
    }

    /// The issuer this request registers.
    pub fn into_issuer(self, now: DateTime<Utc>) -> Issuer {
        Issuer {
            id: self.id,
            issuer_url: self.issuer_url,
            audiences: self.audiences,
            jwks_uri: self.jwks_uri,
            discovery: self.discovery,
            allowed_algorithms: self.allowed_algorithms,
            subject_claim: self.subject_claim.unwrap_or_else(|| "sub".to_owned()),
            groups_claim: self.groups_claim,
            client_claim: self.client_claim,
            single_use_tokens: self.single_use_tokens,
            status: IssuerStatus::Active,
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }
}

impl IssuerPatch {
    /// `issuer` with this patch applied, checked as a whole.
    pub fn apply(self, mut issuer: Issuer) -> Result<Issuer, Invalid> {
        if let Some(v) = self.audiences {
            issuer.audiences = v;
        }
        if let Some(v) = self.jwks_uri {
            issuer.jwks_uri = v;
        }
        if let Some(v) = self.discovery {
            issuer.discovery = v;
        }
        if let Some(v) = self.allowed_algorithms {
            issuer.allowed_algorithms = v;
        }
        if let Some(v) = self.subject_claim {
            issuer.subject_claim = v;
        }
        if let Some(v) = self.groups_claim {
            issuer.groups_claim = v;
        }
        if let Some(v) = self.client_claim {
            issuer.client_claim = v;
        }
        if let Some(v) = self.single_use_tokens {
            issuer.single_use_tokens = v;
        }
        let mut check = Validation::new();
        check_common(
            &mut check,
            &issuer.audiences,
            &issuer.allowed_algorithms,
            issuer.jwks_uri.as_deref(),
            issuer.discovery,
        );
        check_claim(&mut check, "subject_claim", &issuer.subject_claim);
        if let Some(claim) = &issuer.groups_claim {
            check_claim(&mut check, "groups_claim", claim);
        }
        if let Some(claim) = &issuer.client_claim {
            check_claim(&mut check, "client_claim", claim);
        }
        check.finish()?;
        Ok(issuer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(url: &str) -> NewIssuer {
        NewIssuer {
            id: "idp".into(),
            issuer_url: url.into(),
            audiences: vec!["mandate".into()],
            jwks_uri: None,
            discovery: true,
            allowed_algorithms: vec!["RS256".into()],
            subject_claim: None,
            groups_claim: None,
            client_claim: None,
            single_use_tokens: false,
        }
    }

    #[test]
    fn issuer_urls_must_be_https_or_loopback_http() {
        for good in [
            "https://login.example.com/",
            "http://127.0.0.1:9000",
            "http://localhost/x",
        ] {
            assert!(new(good).check().is_ok(), "{good}");
        }
        for bad in [
            "login.example.com",
            "http://login.example.com",
            "ftp://x",
            "https://u:p@login.example.com",
            "https://login.example.com/?a=b",
            "https://",
        ] {
            assert!(new(bad).check().is_err(), "{bad}");
        }
    }

    #[test]
    fn hmac_and_none_algorithms_are_refused() {
        for alg in ["none", "HS256", "rs256"] {
            let mut issuer = new("https://idp.example.com");
            issuer.allowed_algorithms = vec![alg.into()];
            assert!(issuer.check().is_err(), "{alg}");
        }
    }
}
