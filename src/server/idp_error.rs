//! The reasons a subject token is refused, each with its stable code.

/// Why a subject token was refused. Each has a stable reason code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdpError {
    /// Not a well-formed JWT (or larger than allowed).
    #[error("the subject token is malformed: {0}")]
    Malformed(&'static str),
    /// `iss` names no active trusted issuer.
    #[error("the subject token's issuer is not trusted")]
    UntrustedIssuer,
    /// The header's algorithm is not in the issuer's allowlist.
    #[error("algorithm `{0}` is not allowed for this issuer")]
    AlgorithmNotAllowed(String),
    /// The issuer publishes no key with the token's `kid`.
    #[error("the subject token is signed with a key the issuer does not publish")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the subject token's signature does not verify")]
    BadSignature,
    /// `aud` holds none of the issuer's accepted audiences.
    #[error("the subject token is not meant for mandate (audience)")]
    WrongAudience,
    /// `exp` has passed (beyond the leeway), or is missing.
    #[error("the subject token has expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("the subject token is not valid yet")]
    NotYetValid,
    /// The mapped subject claim is missing or unusable.
    #[error("the subject token has no usable subject claim")]
    MissingSubject,
    /// The issuer's keys cannot be fetched and none are cached.
    #[error("the issuer's keys are unavailable")]
    KeysUnavailable,
    /// The issuer binds its tokens to a client, and this one names another than the
    /// orchestrator presenting it.
    #[error("the subject token was issued to another client than this orchestrator")]
    WrongClient,
    /// The issuer's tokens mint once, and this one already has.
    #[error("the subject token was used already: its issuer's tokens mint once")]
    Replayed,
    /// The principal's mandates were revoked after this token was issued (or it states no
    /// `iat`): it mints nothing more; a new sign-in does.
    #[error("the principal's mandates were revoked after this subject token was issued")]
    IssuedBeforeRevocation,
}

impl IdpError {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            IdpError::Malformed(_) => "malformed_token",
            IdpError::UntrustedIssuer => "untrusted_issuer",
            IdpError::AlgorithmNotAllowed(_) => "algorithm_not_allowed",
            IdpError::UnknownKey => "unknown_key",
            IdpError::BadSignature => "bad_signature",
            IdpError::WrongAudience => "wrong_audience",
            IdpError::Expired => "expired",
            IdpError::NotYetValid => "not_yet_valid",
            IdpError::MissingSubject => "missing_subject",
            IdpError::KeysUnavailable => "issuer_keys_unavailable",
            IdpError::IssuedBeforeRevocation => "principal_revoked",
            IdpError::WrongClient => "wrong_client",
            IdpError::Replayed => "token_replayed",
        }
    }
}
