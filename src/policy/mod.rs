//! Who may call the service and what each caller may ask for.
//!
//! Transport-free on purpose: the gRPC adapter turns a bearer token into a [`Caller`] with
//! [`Callers::authenticate`] and asks [`Caller::apply`] whether an issuance is allowed; the
//! answers are plain Rust values that the adapter maps to status codes in one place.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::signature::{UploadParams, Validity};

/// Validity used when neither the request nor the caller's policy names one. An hour covers a
/// large upload on a slow link, yet a leaked signature goes stale the same day.
pub(crate) const DEFAULT_VALIDITY_SECONDS: u32 = 3600;

/// SHA-256 of a bearer token: what the configuration stores instead of the token.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// Hashes a presented or configured token.
    pub fn of(token: &[u8]) -> Self {
        TokenHash(Sha256::digest(token).into())
    }

    /// Parses the 64 hex digits of `token_sha256`.
    pub fn from_hex(hex_digits: &str) -> Option<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_digits, &mut bytes).ok()?;
        Some(TokenHash(bytes))
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hash is not the token, but there is no reason to spread it around either.
        f.write_str("TokenHash(<redacted>)")
    }
}

/// What a caller may do. Every restriction is optional; `None` means "any".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Task flows the caller may name in `procedure` (no procedure is always allowed).
    pub allowed_procedures: Option<Vec<String>>,
    /// `classId` values the caller may use; a request without one is class 0, VOD's default.
    pub allowed_class_ids: Option<Vec<u64>>,
    /// `vodSubAppId` values the caller may use; a request without one is 0, the primary app.
    pub allowed_sub_app_ids: Option<Vec<u64>>,
    pub max_validity: Validity,
    pub default_validity: Validity,
    /// Every signature this caller gets is one-time (`oneTimeValid=1`), whatever it asked for.
    pub force_one_time: bool,
    pub can_issue: bool,
    pub can_verify: bool,
    /// Every signature this caller gets creates an upload record (`upload_id`), and its
    /// `sourceContext`/`sessionContext` carry that id instead of the caller's own values.
    pub track_uploads: bool,
    /// The caller may use `UploadTracker` for the uploads it issued.
    pub can_track: bool,
    /// At most this many signatures per end user (`user_id`) in each one-minute window;
    /// `None` means no quota. Counted by [`crate::quota`].
    pub issue_per_user_per_minute: Option<NonZeroU32>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allowed_procedures: None,
            allowed_class_ids: None,
            allowed_sub_app_ids: None,
            max_validity: Validity::MAX,
            default_validity: Validity::from_secs(u64::from(DEFAULT_VALIDITY_SECONDS))
                .expect("the default validity is within VOD's limit"),
            force_one_time: false,
            can_issue: true,
            can_verify: true,
            track_uploads: false,
            can_track: false,
            issue_per_user_per_minute: None,
        }
    }
}

/// The policy rule a request broke; the names are the configuration keys, so an operator can
/// find the line to change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rule {
    CanIssue,
    CanVerify,
    CanTrack,
    AllowedProcedures,
    AllowedClassIds,
    AllowedSubAppIds,
    MaxValiditySeconds,
}

impl Rule {
    /// The configuration key of the rule.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::CanIssue => "can_issue",
            Rule::CanVerify => "can_verify",
            Rule::CanTrack => "can_track",
            Rule::AllowedProcedures => "allowed_procedures",
            Rule::AllowedClassIds => "allowed_class_ids",
            Rule::AllowedSubAppIds => "allowed_sub_app_ids",
            Rule::MaxValiditySeconds => "max_validity_seconds",
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request the caller's policy does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("caller {caller:?} may not {what} (rule {rule})")]
pub struct Denied {
    pub rule: Rule,
    pub caller: Arc<str>,
    /// What was refused, phrased to follow "may not".
    pub what: String,
}

/// A configured caller.
pub struct Caller {
    name: Arc<str>,
    token_hash: TokenHash,
    policy: Policy,
}

impl Caller {
    pub fn new(name: impl Into<Arc<str>>, token_hash: TokenHash, policy: Policy) -> Self {
        Caller {
            name: name.into(),
            token_hash,
            policy,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name as the configuration holds it, for a metric label: cloning it takes a
    /// reference, not a copy.
    pub fn shared_name(&self) -> &Arc<str> {
        &self.name
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    fn denied(&self, rule: Rule, what: String) -> Denied {
        Denied {
            rule,
            caller: self.name.clone(),
            what,
        }
    }

    /// Refuses a caller that may not issue signatures.
    pub fn check_can_issue(&self) -> Result<(), Denied> {
        if self.policy.can_issue {
            Ok(())
        } else {
            Err(self.denied(Rule::CanIssue, "issue signatures".into()))
        }
    }

    /// Refuses a caller that may not verify signatures.
    pub fn check_can_verify(&self) -> Result<(), Denied> {
        if self.policy.can_verify {
            Ok(())
        } else {
            Err(self.denied(Rule::CanVerify, "verify signatures".into()))
        }
    }

    /// Refuses a caller that may not ask about uploads.
    pub fn check_can_track(&self) -> Result<(), Denied> {
        if self.policy.can_track {
            Ok(())
        } else {
            Err(self.denied(Rule::CanTrack, "track uploads".into()))
        }
    }

    /// The validity and parameters to sign for validated request values, or the rule that
    /// forbids them.
    ///
    /// `validity` is `None` when the request left it to the caller's default. The caller's
    /// `can_issue` is checked by [`Caller::check_can_issue`] first, before arguments are parsed.
    pub fn apply(
        &self,
        validity: Option<Validity>,
        mut params: UploadParams,
    ) -> Result<(Validity, UploadParams), Denied> {
        let policy = &self.policy;
        if let (Some(allowed), Some(procedure)) = (&policy.allowed_procedures, &params.procedure) {
            let procedure = procedure.as_str();
            // An empty procedure starts no task flow, like an absent one.
            if !procedure.is_empty() && !allowed.iter().any(|p| p == procedure) {
                return Err(self.denied(
                    Rule::AllowedProcedures,
                    format!("start task flow {:?}", clip(procedure)),
                ));
            }
        }
        if let Some(allowed) = &policy.allowed_class_ids {
            let class_id = params.class_id.unwrap_or(0);
            if !allowed.contains(&class_id) {
                return Err(self.denied(
                    Rule::AllowedClassIds,
                    format!("upload into class {class_id}"),
                ));
            }
        }
        if let Some(allowed) = &policy.allowed_sub_app_ids {
            let sub_app_id = params.vod_sub_app_id.unwrap_or(0);
            if !allowed.contains(&sub_app_id) {
                return Err(self.denied(
                    Rule::AllowedSubAppIds,
                    format!("upload into sub-application {sub_app_id}"),
                ));
            }
        }
        let validity = validity.unwrap_or(policy.default_validity);
        if validity > policy.max_validity {
            return Err(self.denied(
                Rule::MaxValiditySeconds,
                format!(
                    "issue a signature valid for {} s; its limit is {} s",
                    validity.as_secs(),
                    policy.max_validity.as_secs()
                ),
            ));
        }
        if policy.force_one_time {
            params.one_time_valid = Some(true);
        }
        Ok((validity, params))
    }
}

impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caller")
            .field("name", &self.name)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// Why a request could not be tied to a caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing authorization metadata (expected \"authorization: Bearer <token>\")")]
    Missing,
    #[error("malformed authorization metadata (expected \"Bearer <token>\")")]
    Malformed,
    #[error("unknown bearer token")]
    UnknownToken,
}

/// All configured callers, looked up by token.
#[derive(Debug, Clone, Default)]
pub struct Callers {
    callers: Vec<Arc<Caller>>,
}

/// Why a set of callers is inconsistent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallersError {
    #[error("caller name {0:?} is used more than once")]
    DuplicateName(String),
    #[error("callers {0:?} and {1:?} have the same token")]
    DuplicateToken(String, String),
}

impl Callers {
    pub fn new(callers: Vec<Caller>) -> Result<Self, CallersError> {
        for (i, caller) in callers.iter().enumerate() {
            for earlier in &callers[..i] {
                if earlier.name == caller.name {
                    return Err(CallersError::DuplicateName(caller.name.to_string()));
                }
                // Two callers with one token would make the second unreachable and its
                // audit trail a lie.
                if earlier.token_hash == caller.token_hash {
                    return Err(CallersError::DuplicateToken(
                        earlier.name.to_string(),
                        caller.name.to_string(),
                    ));
                }
            }
        }
        Ok(Callers {
            callers: callers.into_iter().map(Arc::new).collect(),
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Caller>> {
        self.callers.iter()
    }

    pub fn len(&self) -> usize {
        self.callers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.callers.is_empty()
    }

    /// Finds the caller of an `authorization` metadata value (`None` if the request had none).
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Result<&Arc<Caller>, AuthError> {
        let value = authorization.ok_or(AuthError::Missing)?;
        let token = bearer_token(value).ok_or(AuthError::Malformed)?;
        self.by_token(token).ok_or(AuthError::UnknownToken)
    }

    /// The caller whose token hashes to the same value, compared in constant time.
    ///
    /// Every configured hash is compared and the match is selected without branching, so the
    /// time taken says nothing about which caller (if any) matched or how many bytes agreed.
    pub fn by_token(&self, token: &[u8]) -> Option<&Arc<Caller>> {
        let presented = TokenHash::of(token);
        let mut found = subtle::Choice::from(0);
        let mut index = 0u32;
        for (i, caller) in self.callers.iter().enumerate() {
            let is_match = caller.token_hash.0.ct_eq(&presented.0);
            index.conditional_assign(&(i as u32), is_match);
            found |= is_match;
        }
        if bool::from(found) {
            self.callers.get(index as usize)
        } else {
            None
        }
    }
}

/// The token of `Bearer <token>`. The scheme is case-insensitive (RFC 7235); the token must be
/// non-empty visible ASCII, so stray whitespace or a second word is refused, not trimmed.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"bearer ";
    if value.len() <= SCHEME.len() || !value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let token = &value[SCHEME.len()..];
    token.iter().all(u8::is_ascii_graphic).then_some(token)
}

/// Shortens a requester-supplied value before it is echoed in an error.
fn clip(value: &str) -> String {
    const MAX: usize = 64;
    match value.char_indices().nth(MAX) {
        None => value.to_owned(),
        Some((at, _)) => format!("{}…", &value[..at]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::Procedure;

    fn caller(name: &str, token: &str, policy: Policy) -> Caller {
        Caller::new(name, TokenHash::of(token.as_bytes()), policy)
    }

    #[test]
    fn bearer_token_requires_the_scheme_and_one_visible_word() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Bearer "), None);
        assert_eq!(bearer_token(b"Bearer"), None);
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bearer a b"), None);
        assert_eq!(bearer_token(b"Bearer  abc"), None);
    }

    #[test]
    fn authenticate_finds_each_caller_by_its_own_token_only() {
        let callers = Callers::new(vec![
            caller("a", "token-a", Policy::default()),
            caller("b", "token-b", Policy::default()),
            caller("c", "token-c", Policy::default()),
        ])
        .unwrap();
        for name in ["a", "b", "c"] {
            let header = format!("Bearer token-{name}");
            let found = callers.authenticate(Some(header.as_bytes())).unwrap();
            assert_eq!(found.name(), name);
        }
        assert_eq!(
            callers.authenticate(Some(b"Bearer token-d")).unwrap_err(),
            AuthError::UnknownToken
        );
        assert_eq!(callers.authenticate(None).unwrap_err(), AuthError::Missing);
        assert_eq!(
            callers.authenticate(Some(b"token-a")).unwrap_err(),
            AuthError::Malformed
        );
    }

    #[test]
    fn duplicate_names_and_tokens_are_refused() {
        let err = Callers::new(vec![
            caller("a", "t1", Policy::default()),
            caller("a", "t2", Policy::default()),
        ])
        .unwrap_err();
        assert_eq!(err, CallersError::DuplicateName("a".into()));
        let err = Callers::new(vec![
            caller("a", "t1", Policy::default()),
            caller("b", "t1", Policy::default()),
        ])
        .unwrap_err();
        assert_eq!(err, CallersError::DuplicateToken("a".into(), "b".into()));
    }

    #[test]
    fn token_hash_parses_only_64_hex_digits() {
        let hex_digits = hex::encode(Sha256::digest(b"x"));
        assert_eq!(TokenHash::from_hex(&hex_digits), Some(TokenHash::of(b"x")));
        assert_eq!(TokenHash::from_hex(&hex_digits[..62]), None);
        assert_eq!(TokenHash::from_hex("x"), None);
    }

    #[test]
    fn absent_class_and_sub_app_count_as_zero() {
        let policy = Policy {
            allowed_class_ids: Some(vec![0, 5]),
            allowed_sub_app_ids: Some(vec![7]),
            ..Policy::default()
        };
        let c = caller("a", "t", policy);
        let params = UploadParams {
            vod_sub_app_id: Some(7),
            ..UploadParams::default()
        };
        assert!(c.apply(None, params).is_ok());
        let denied = c.apply(None, UploadParams::default()).unwrap_err();
        assert_eq!(denied.rule, Rule::AllowedSubAppIds);
    }

    #[test]
    fn empty_procedure_is_not_a_task_flow() {
        let policy = Policy {
            allowed_procedures: Some(vec!["review".into()]),
            ..Policy::default()
        };
        let c = caller("a", "t", policy);
        let params = |p: &str| UploadParams {
            procedure: Some(Procedure::new(p).unwrap()),
            ..UploadParams::default()
        };
        assert!(c.apply(None, params("")).is_ok());
        assert!(c.apply(None, params("review")).is_ok());
        let denied = c.apply(None, params("transcode")).unwrap_err();
        assert_eq!(denied.rule, Rule::AllowedProcedures);
        assert!(
            denied.to_string().contains("allowed_procedures"),
            "{denied}"
        );
    }

    #[test]
    fn default_and_max_validity_and_force_one_time() {
        let policy = Policy {
            max_validity: Validity::from_secs(600).unwrap(),
            default_validity: Validity::from_secs(60).unwrap(),
            force_one_time: true,
            ..Policy::default()
        };
        let c = caller("a", "t", policy);
        let (validity, params) = c.apply(None, UploadParams::default()).unwrap();
        assert_eq!(validity.as_secs(), 60);
        assert_eq!(params.one_time_valid, Some(true));
        assert!(
            c.apply(
                Some(Validity::from_secs(600).unwrap()),
                UploadParams::default()
            )
            .is_ok()
        );
        let denied = c
            .apply(
                Some(Validity::from_secs(601).unwrap()),
                UploadParams::default(),
            )
            .unwrap_err();
        assert_eq!(denied.rule, Rule::MaxValiditySeconds);
    }
}
