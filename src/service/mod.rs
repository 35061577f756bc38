//! The `vod.signer.v1.UploadSigner` gRPC service: a thin adapter over the signing core.
//!
//! A call is authenticated (`crate::policy::Callers`), its fields are converted into core
//! types (`convert.rs`), the caller's policy is applied, and the core signs or verifies. Every
//! failure is a `ServiceError`, mapped to a status in one table (`impl From<ServiceError> for
//! Status`).

mod convert;
mod error;
mod random_slots;
mod tracked;
mod tracker;
mod upload_convert;

use std::sync::Arc;
#[cfg(feature = "testsuite")]
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

pub use error::ERROR_DOMAIN;
pub(crate) use error::{ServiceError, Violation};
pub(crate) use random_slots::{LeaseError, RandomSlots};
pub(crate) use tracker::TrackerService;

use crate::config::Config;
use crate::logging::{RateLimit, SinkHealth};
use crate::metrics::Metrics;
use crate::policy::{Caller, Callers};
use crate::proto::v1 as pb;
use crate::proto::v1::upload_signer_server::UploadSigner;
use crate::quota::{MemoryStore, OnStoreError, QuotaOutcome, QuotaStore, Quotas};
use crate::signature::{IssuedSignature, KeyRing, SignRequest, VerifyOptions};
use crate::tracking::Tracker;

/// Most signatures one `IssueSignatureBatch` call may ask for.
pub const MAX_BATCH: u32 = 100;

/// Where the service reads the time: the system clock. Builds with the `testsuite` feature can
/// pin it instead (`vod_signer::testing::ManualClock`), to verify signatures dated in the past
/// (the shared vectors) or to move past an expiry.
#[derive(Debug, Clone, Default)]
pub enum Clock {
    #[default]
    System,
    /// Unix seconds, set through the `ManualClock` that made it.
    #[cfg(feature = "testsuite")]
    Manual(Arc<AtomicI64>),
}

impl Clock {
    pub fn now(&self) -> i64 {
        match self {
            Clock::System => match SystemTime::now().duration_since(UNIX_EPOCH) {
                Ok(since) => since.as_secs() as i64,
                // Signing refuses times before 1970 (an Internal error), so the sign is kept.
                Err(before) => -(before.duration().as_secs() as i64),
            },
            #[cfg(feature = "testsuite")]
            Clock::Manual(now) => now.load(Ordering::Relaxed),
        }
    }
}

/// Runs at the start of every `IssueSignature` call, so a test can hold a call in flight (to
/// check graceful shutdown and deadlines) without timing tricks; `vod_signer::testing::IssueGate`
/// is the one implementation. The trait lives here, not in `testing`, so that the service does
/// not depend on the test harness that depends on it.
#[cfg(feature = "testsuite")]
pub trait IssueHook: std::fmt::Debug + Send + Sync {
    fn before_issue(&self) -> futures_util::future::BoxFuture<'_, ()>;
}

/// What a call needs to know, swapped as a whole if the configuration is reloaded, so a call
/// never sees the keys of one configuration with the callers of another.
#[derive(Debug)]
pub(crate) struct ConfigSnapshot {
    pub keys: KeyRing,
    pub callers: Callers,
    pub verify_options: VerifyOptions,
}

impl ConfigSnapshot {
    pub fn from_config(config: &Config) -> ConfigSnapshot {
        ConfigSnapshot {
            keys: config.keys.clone(),
            callers: config.callers.clone(),
            verify_options: VerifyOptions {
                clock_skew_seconds: config.clock_skew_seconds,
            },
        }
    }
}

/// The `UploadSigner` implementation.
#[derive(Debug)]
pub(crate) struct SignerService {
    shared: Arc<ArcSwap<ConfigSnapshot>>,
    // One slot source for the whole process: one-time signatures must never repeat `random`.
    random_slots: RandomSlots,
    clock: Clock,
    #[cfg(feature = "testsuite")]
    issue_hook: Option<Arc<dyn IssueHook>>,
    quotas: Arc<Quotas>,
    metrics: Arc<Metrics>,
    /// Where audit lines go; issuance stops while it fails (`None`: not ours to watch).
    audit_sink: Option<SinkHealth>,
    /// Refused callers are logged, but a client retrying a bad token in a loop must not get
    /// a log line per call: at most one per interval for each kind.
    unauthenticated_log: RateLimit,
    denied_log: RateLimit,
    /// Where tracked callers' upload records go; `None` without `[tracking]`.
    tracker: Option<Tracker>,
}

/// At most one line per this interval for failed authentications, and one for denials.
const REFUSAL_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

impl SignerService {
    pub fn new(shared: Arc<ArcSwap<ConfigSnapshot>>, clock: Clock) -> Self {
        let metrics = Arc::new(Metrics::new());
        let quotas = Quotas::new(
            QuotaStore::Memory(MemoryStore::default()),
            OnStoreError::default(),
        );
        SignerService {
            shared,
            random_slots: RandomSlots::process(),
            clock,
            #[cfg(feature = "testsuite")]
            issue_hook: None,
            quotas: Arc::new(quotas),
            metrics,
            audit_sink: None,
            unauthenticated_log: RateLimit::new(REFUSAL_LOG_INTERVAL),
            denied_log: RateLimit::new(REFUSAL_LOG_INTERVAL),
            tracker: None,
        }
    }

    /// Logs an authentication failure or a policy denial (rate-limited; never the token).
    /// Other errors are the caller's own business and are only counted.
    fn log_refusal(&self, method: &'static str, error: &ServiceError) {
        match error {
            ServiceError::Unauthenticated(reason) => {
                if let Some(suppressed) = self.unauthenticated_log.due() {
                    tracing::warn!(
                        method,
                        reason = %reason,
                        similar_not_logged = suppressed,
                        "call refused: authentication failed"
                    );
                }
            }
            ServiceError::PermissionDenied(denied) => {
                if let Some(suppressed) = self.denied_log.due() {
                    tracing::warn!(
                        method,
                        caller = &*denied.caller,
                        rule = denied.rule.as_str(),
                        // Debug-quoted: it may quote request text (a procedure name).
                        refused = ?denied.what,
                        similar_not_logged = suppressed,
                        "call refused: outside the caller's policy"
                    );
                }
            }
            _ => {}
        }
    }

    /// Takes the slots behind `random` from `slots` (by default: unique within this process).
    pub fn with_random_slots(mut self, slots: RandomSlots) -> Self {
        self.random_slots = slots;
        self
    }

    /// Refuses issuance while `sink`, where audit lines are written, fails: a signature
    /// whose audit line cannot be written is not issued.
    pub fn with_audit_sink(mut self, sink: Option<SinkHealth>) -> Self {
        self.audit_sink = sink;
        self
    }

    fn check_audit_sink(&self) -> Result<(), ServiceError> {
        match &self.audit_sink {
            Some(sink) if !sink.is_healthy() => Err(ServiceError::AuditUnavailable),
            _ => Ok(()),
        }
    }

    /// Records an upload for every signature issued to a caller with `track_uploads`.
    pub fn with_tracker(mut self, tracker: Tracker) -> Self {
        self.tracker = Some(tracker);
        self
    }

    /// Runs `hook` at the start of every `IssueSignature` call (the test harness's gate).
    #[cfg(feature = "testsuite")]
    pub fn with_issue_hook(mut self, hook: Option<Arc<dyn IssueHook>>) -> Self {
        self.issue_hook = hook;
        self
    }

    /// Checks per-user quotas with `quotas` (by default: an in-process store).
    pub fn with_quotas(mut self, quotas: Arc<Quotas>) -> Self {
        self.quotas = quotas;
        self
    }

    /// Counts issuances, quota outcomes and verifications into `metrics` (by default: metrics
    /// nobody reads).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Takes `count` signatures from the caller's per-user quota, if it has one.
    async fn admit(
        &self,
        caller: &Caller,
        user_id: &str,
        count: u32,
        now: i64,
    ) -> Result<(), ServiceError> {
        let Some(limit) = caller.policy().issue_per_user_per_minute else {
            return Ok(());
        };
        let outcome = self
            .quotas
            .admit(caller.name(), user_id, count, limit.get(), now)
            .await;
        if outcome.store_failed() {
            self.metrics.quota_store_error(
                self.quotas.store().kind(),
                self.quotas.on_store_error().as_str(),
            );
        }
        match outcome {
            QuotaOutcome::Allowed | QuotaOutcome::AllowedWithoutStore => Ok(()),
            QuotaOutcome::Exhausted { retry_after } => {
                self.metrics.quota_rejected(caller.shared_name());
                Err(ServiceError::QuotaExhausted {
                    caller: caller.name().into(),
                    limit,
                    retry_after,
                })
            }
            QuotaOutcome::StoreUnavailable => Err(ServiceError::QuotaUnavailable),
        }
    }

    fn caller<'a>(
        callers: &'a Callers,
        metadata: &MetadataMap,
    ) -> Result<&'a Arc<Caller>, ServiceError> {
        authenticate(callers, metadata)
    }

    /// [`Self::check_issue`], with refusals logged.
    fn prepare_issue<'a>(
        &self,
        shared: &'a ConfigSnapshot,
        metadata: &MetadataMap,
        message: Option<pb::IssueSignatureRequest>,
        batch_count: Option<u32>,
    ) -> Result<(&'a Caller, String, SignRequest), ServiceError> {
        let method = match batch_count {
            None => "IssueSignature",
            Some(_) => "IssueSignatureBatch",
        };
        self.check_issue(shared, metadata, message, batch_count)
            .inspect_err(|e| self.log_refusal(method, e))
    }

    /// Everything before signing, in this order: who is calling, may they issue at all, are
    /// the arguments valid, does their policy allow them. An unknown caller learns nothing
    /// about its arguments.
    fn check_issue<'a>(
        &self,
        shared: &'a ConfigSnapshot,
        metadata: &MetadataMap,
        message: Option<pb::IssueSignatureRequest>,
        batch_count: Option<u32>,
    ) -> Result<(&'a Caller, String, SignRequest), ServiceError> {
        let caller = Self::caller(&shared.callers, metadata)?;
        caller.check_can_issue()?;
        let mut violations = Vec::new();
        if let Some(count) = batch_count
            && !(1..=MAX_BATCH).contains(&count)
        {
            violations.push(Violation::new(
                "count",
                format!("must be between 1 and {MAX_BATCH}, got {count}"),
            ));
        }
        let input = match convert::issue_input(message.unwrap_or_default()) {
            Ok(input) if violations.is_empty() => input,
            Ok(_) => return Err(ServiceError::InvalidArgument(violations)),
            Err(ServiceError::InvalidArgument(fields)) => {
                let nested = batch_count.is_some();
                violations.extend(
                    fields
                        .into_iter()
                        .map(|v| if nested { v.nested_in("request.") } else { v }),
                );
                return Err(ServiceError::InvalidArgument(violations));
            }
            Err(other) => return Err(other),
        };
        let (validity, params) = caller.apply(input.validity, input.params)?;
        // `issue_input` checked the rules between fields and the policy only adds
        // `oneTimeValid`, so this holds; if it ever does not, the request is refused, not signed.
        let sign_request = SignRequest::new(validity, params)
            .map_err(|e| ServiceError::InvalidArgument(vec![convert::violation(&e)]))?;
        Ok((caller, input.user_id, sign_request))
    }

    /// `count` signatures for one request, each with a `random` of its own. For a caller with
    /// `track_uploads`, each also gets its own upload record (its id in place of the contexts),
    /// durably stored before any signature is returned: a signature whose record could not be
    /// stored is never handed out.
    async fn mint_all(
        &self,
        keys: &KeyRing,
        caller: &Caller,
        user_id: &str,
        request: &SignRequest,
        count: u32,
        now: i64,
    ) -> Result<Vec<pb::IssueSignatureResponse>, ServiceError> {
        let tracker = match (caller.policy().track_uploads, &self.tracker) {
            (false, _) => None,
            (true, Some(tracker)) => Some(tracker),
            (true, None) => return Err(ServiceError::TrackingNotConfigured),
        };
        let one_time = request.params().one_time_valid == Some(true);
        let slots = self.random_slots.take(count, one_time).await?;
        let key = keys.active();
        let sign = |request: &SignRequest, slot| {
            let issued: IssuedSignature = key
                .sign(request, now, key.random_for_slot(slot))
                .map_err(|e| ServiceError::Internal(e.to_string()))?;
            Ok::<_, ServiceError>(convert::issued_response(issued))
        };
        let Some(tracker) = tracker else {
            return slots.into_iter().map(|slot| sign(request, slot)).collect();
        };
        let mut responses = Vec::with_capacity(count as usize);
        let mut uploads = Vec::with_capacity(count as usize);
        for (signature, slot) in tracked::prepare(request, count)?.into_iter().zip(slots) {
            let mut response = sign(&signature.request, slot)?;
            response.upload_id = signature.upload_id.as_str().to_owned();
            uploads.push(tracked::new_upload(
                signature.upload_id,
                caller.name(),
                user_id,
                request,
                response.issued_at,
                response.expires_at,
            ));
            responses.push(response);
        }
        tracker.record_issued(uploads).await?;
        Ok(responses)
    }
}

/// The caller a call's `authorization: Bearer <token>` metadata names.
fn authenticate<'a>(
    callers: &'a Callers,
    metadata: &MetadataMap,
) -> Result<&'a Arc<Caller>, ServiceError> {
    let authorization = metadata.get("authorization").map(|v| v.as_bytes());
    Ok(callers.authenticate(authorization)?)
}

/// The audit record of one issuance. The signature itself is a bearer credential and never
/// logged; its fingerprint identifies it.
fn audit(
    caller: &Caller,
    user_id: &str,
    request: &SignRequest,
    issued: &pb::IssueSignatureResponse,
) {
    let params = request.params();
    tracing::info!(
        target: "audit",
        caller = caller.name(),
        user_id,
        secret_id = issued.secret_id.as_str(),
        issued_at = issued.issued_at,
        expires_at = issued.expires_at,
        procedure = params.procedure.as_ref().map_or("", |p| p.as_str()),
        one_time = params.one_time_valid == Some(true),
        fingerprint = issued.fingerprint.as_str(),
        "signature issued"
    );
}

/// The audit record of one batch: the same fields once (every signature of a batch shares
/// them but `random`) and every signature's fingerprint. One event per call rather than per
/// signature: formatting a log line costs more than signing, and was what limited batches.
fn audit_batch(
    caller: &Caller,
    user_id: &str,
    request: &SignRequest,
    issued: &[pb::IssueSignatureResponse],
) {
    let Some(first) = issued.first() else {
        return;
    };
    let mut fingerprints = String::with_capacity(issued.len() * (first.fingerprint.len() + 1));
    for (i, signature) in issued.iter().enumerate() {
        if i > 0 {
            fingerprints.push(',');
        }
        fingerprints.push_str(&signature.fingerprint);
    }
    let params = request.params();
    tracing::info!(
        target: "audit",
        caller = caller.name(),
        user_id,
        secret_id = first.secret_id.as_str(),
        issued_at = first.issued_at,
        expires_at = first.expires_at,
        procedure = params.procedure.as_ref().map_or("", |p| p.as_str()),
        one_time = params.one_time_valid == Some(true),
        count = issued.len(),
        fingerprints = fingerprints.as_str(),
        "signature batch issued"
    );
}

#[tonic::async_trait]
impl UploadSigner for SignerService {
    async fn issue_signature(
        &self,
        request: Request<pb::IssueSignatureRequest>,
    ) -> Result<Response<pb::IssueSignatureResponse>, Status> {
        #[cfg(feature = "testsuite")]
        if let Some(hook) = &self.issue_hook {
            hook.before_issue().await;
        }
        // An owned snapshot, not a guard: the quota check may wait on Redis.
        let shared = self.shared.load_full();
        let (metadata, _, message) = request.into_parts();
        let (caller, user_id, sign_request) =
            self.prepare_issue(&shared, &metadata, Some(message), None)?;
        self.check_audit_sink()?;
        let now = self.clock.now();
        self.admit(caller, &user_id, 1, now).await?;
        let response = self
            .mint_all(&shared.keys, caller, &user_id, &sign_request, 1, now)
            .await?
            .pop()
            .ok_or_else(|| ServiceError::Internal("no signature was minted".into()))?;
        audit(caller, &user_id, &sign_request, &response);
        self.metrics.signatures_issued(caller.shared_name(), 1);
        Ok(Response::new(response))
    }

    async fn verify_signature(
        &self,
        request: Request<pb::VerifySignatureRequest>,
    ) -> Result<Response<pb::VerifySignatureResponse>, Status> {
        let shared = self.shared.load();
        let caller = Self::caller(&shared.callers, request.metadata())
            .and_then(|caller| {
                caller.check_can_verify()?;
                Ok(caller)
            })
            .inspect_err(|e| self.log_refusal("VerifySignature", e))?;
        let signature = &request.get_ref().signature;
        let result = shared
            .keys
            .verify(signature, self.clock.now(), shared.verify_options);
        self.metrics
            .verified(result.as_ref().err().map(|e| e.failure));
        if let Err(e) = &result {
            tracing::debug!(
                caller = caller.name(),
                failure = e.failure.as_str(),
                fingerprint = %crate::signature::fingerprint(signature),
                "signature rejected"
            );
        }
        Ok(Response::new(convert::verify_response(&result)))
    }

    async fn issue_signature_batch(
        &self,
        request: Request<pb::IssueSignatureBatchRequest>,
    ) -> Result<Response<pb::IssueSignatureBatchResponse>, Status> {
        let shared = self.shared.load_full();
        let (metadata, _, message) = request.into_parts();
        let (caller, user_id, sign_request) =
            self.prepare_issue(&shared, &metadata, message.request, Some(message.count))?;
        self.check_audit_sink()?;
        // One timestamp for the batch: the signatures differ by `random` alone.
        let now = self.clock.now();
        // A batch takes its whole count from the quota, or nothing.
        self.admit(caller, &user_id, message.count, now).await?;
        let signatures = self
            .mint_all(
                &shared.keys,
                caller,
                &user_id,
                &sign_request,
                message.count,
                now,
            )
            .await?;
        audit_batch(caller, &user_id, &sign_request, &signatures);
        self.metrics
            .signatures_issued(caller.shared_name(), u64::from(message.count));
        Ok(Response::new(pb::IssueSignatureBatchResponse {
            signatures,
        }))
    }
}
