//! The client: endpoints, credentials, TLS, deadlines, retries and balancing.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Response, Status};
use zeroize::Zeroizing;

use crate::error::{Error, error_chain};
use crate::proto;
use crate::proto::upload_signer_client::UploadSignerClient;
use crate::request::IssueRequest;
use crate::response::{IssuedSignature, Verification};
use crate::retry::RetryPolicy;
use crate::token::{SharedTokenProvider, TokenProvider};

/// Deadline of a call that does not set its own: long enough for a few retries across a
/// server restart, short enough that an app waiting on a BFF does not give up first.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

/// Time allowed to open a TCP (and TLS) connection to one endpoint.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Least time worth starting another attempt with; with less left, the last error stands.
const LAST_ATTEMPT_MIN: Duration = Duration::from_millis(50);

/// Most signatures one [`SignerClient::issue_batch`] call may ask for (the service's limit).
pub const MAX_BATCH: u32 = 100;

/// A client of the `vod.signer.v1.UploadSigner` service. Cheap to clone: clones share the
/// connections, so build one per process and pass it around.
///
/// ```no_run
/// use std::time::Duration;
/// use vod_signer_client::{BearerToken, IssueRequest, SignerClient};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = SignerClient::builder()
///     .endpoint("http://10.0.0.5:50051")
///     .endpoint("http://10.0.0.6:50051")
///     .bearer_token(BearerToken::new(std::env::var("SIGNER_TOKEN")?)?)
///     .default_deadline(Duration::from_secs(3))
///     .build()?;
/// let issued = client
///     .issue(IssueRequest::for_user("u-1").source_context("order-42").one_time())
///     .await?;
/// println!("issued {} by {}", issued.fingerprint, issued.secret_id);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SignerClient {
    inner: Arc<Inner>,
}

struct Inner {
    endpoints: Vec<(String, Channel)>,
    next: AtomicUsize,
    token: SharedTokenProvider,
    default_deadline: Duration,
    retry: RetryPolicy,
}

impl fmt::Debug for SignerClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignerClient")
            .field(
                "endpoints",
                &self
                    .inner
                    .endpoints
                    .iter()
                    .map(|(uri, _)| uri)
                    .collect::<Vec<_>>(),
            )
            .field("default_deadline", &self.inner.default_deadline)
            .field("retry", &self.inner.retry)
            .finish_non_exhaustive()
    }
}

impl SignerClient {
    /// Starts configuring a client.
    pub fn builder() -> SignerClientBuilder {
        SignerClientBuilder::default()
    }

    /// Mints one fresh signature. Every call gives a new signature (a new `random`), so call it
    /// for every signature an uploader asks for; never cache the result.
    pub async fn issue(&self, request: IssueRequest) -> Result<IssuedSignature, Error> {
        let deadline = self.deadline(request.deadline_override());
        let message = request.to_proto()?;
        let response = self
            .call(message, deadline, |channel, request| async move {
                UploadSignerClient::new(channel)
                    .issue_signature(request)
                    .await
            })
            .await?;
        Ok(IssuedSignature::from_proto(response))
    }

    /// Mints `count` fresh signatures (1..=[`MAX_BATCH`]) with the same parameters in one round
    /// trip, e.g. one per file of a multi-file upload.
    pub async fn issue_batch(
        &self,
        request: IssueRequest,
        count: u32,
    ) -> Result<Vec<IssuedSignature>, Error> {
        let deadline = self.deadline(request.deadline_override());
        let message = proto::IssueSignatureBatchRequest {
            request: Some(request.to_proto()?),
            count,
        };
        let response = self
            .call(message, deadline, |channel, request| async move {
                UploadSignerClient::new(channel)
                    .issue_signature_batch(request)
                    .await
            })
            .await?;
        Ok(response
            .signatures
            .into_iter()
            .map(IssuedSignature::from_proto)
            .collect())
    }

    /// Asks the service whether `signature` is authentic and usable now, within the default
    /// deadline. A rejected signature is `Ok(Verification::Invalid { .. })`.
    pub async fn verify(&self, signature: &str) -> Result<Verification, Error> {
        self.verify_with_deadline(signature, self.inner.default_deadline)
            .await
    }

    /// [`verify`](Self::verify) with its own deadline.
    pub async fn verify_with_deadline(
        &self,
        signature: &str,
        deadline: Duration,
    ) -> Result<Verification, Error> {
        let message = proto::VerifySignatureRequest {
            signature: signature.to_owned(),
        };
        let response = self
            .call(message, deadline, |channel, request| async move {
                UploadSignerClient::new(channel)
                    .verify_signature(request)
                    .await
            })
            .await;
        Ok(Verification::from_proto(response?))
    }

    /// The endpoints calls are spread over, in the order given to the builder.
    pub fn endpoints(&self) -> impl Iterator<Item = &str> {
        self.inner.endpoints.iter().map(|(uri, _)| uri.as_str())
    }

    fn deadline(&self, requested: Option<Duration>) -> Duration {
        requested.unwrap_or(self.inner.default_deadline)
    }

    /// Round robin: consecutive attempts, retries included, go to consecutive endpoints, so a
    /// retry after one endpoint failed lands on another. (tonic's `balance_list` picks by
    /// load among endpoints it considers ready, which gives no such guarantee.)
    pub(crate) fn next_channel(&self) -> Channel {
        let endpoints = &self.inner.endpoints;
        let i = self.inner.next.fetch_add(1, Ordering::Relaxed) % endpoints.len();
        endpoints[i].1.clone()
    }

    pub(crate) fn retry_policy(&self) -> RetryPolicy {
        self.inner.retry
    }

    pub(crate) fn default_deadline(&self) -> Duration {
        self.inner.default_deadline
    }

    /// A request carrying the caller's token, or why there is none.
    pub(crate) fn authorized<M>(&self, message: M) -> Result<Request<M>, Error> {
        let token = self.inner.token.token().map_err(|e| Error::Credentials {
            message: e.to_string(),
        })?;
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", token.authorization_value());
        Ok(request)
    }

    /// One unary call with authentication, deadline and retries; `rpc` makes the call on the
    /// channel it is given (any service of the server).
    pub(crate) async fn call<M, R, F, Fut>(
        &self,
        message: M,
        deadline: Duration,
        rpc: F,
    ) -> Result<R, Error>
    where
        M: Clone,
        F: Fn(Channel, Request<M>) -> Fut,
        Fut: Future<Output = Result<Response<R>, Status>>,
    {
        let started = Instant::now();
        let give_up_at = started + deadline;
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let remaining = give_up_at.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(deadline_exceeded(deadline, attempt - 1));
            }
            let mut request = self.authorized(message.clone())?;
            // Sent as `grpc-timeout`, so the service stops working on a call nobody awaits.
            request.set_timeout(remaining);

            let client = self.next_channel();
            // tonic's channel enforces `grpc-timeout` too, but reports expiry as CANCELLED and
            // does not count time queued in front of the connection; this bounds the attempt.
            let error = match tokio::time::timeout(remaining, rpc(client, request)).await {
                Ok(Ok(response)) => return Ok(response.into_inner()),
                Ok(Err(status)) if ran_out(&status, give_up_at) => {
                    return Err(deadline_exceeded(deadline, attempt));
                }
                Ok(Err(status)) => Error::from_status(status),
                Err(_elapsed) => return Err(deadline_exceeded(deadline, attempt)),
            };
            if !error.is_retryable() {
                return Err(error);
            }
            let remaining = give_up_at.saturating_duration_since(Instant::now());
            if !self.inner.retry.allows_attempt(attempt + 1) || remaining <= LAST_ATTEMPT_MIN {
                return Err(with_attempts(error, attempt, started.elapsed()));
            }
            // Near the deadline the wait shrinks so that one last attempt still fits in it.
            let wait = self
                .inner
                .retry
                .backoff(attempt)
                .min(remaining - LAST_ATTEMPT_MIN);
            tokio::time::sleep(wait).await;
        }
    }
}

/// When `grpc-timeout` expires, tonic (in this client's channel or in the server) ends the call
/// with CANCELLED ("Timeout expired"), possibly a hair before the timer in [`SignerClient::call`]
/// fires. That is this call's deadline running out, not a cancellation.
fn ran_out(status: &Status, give_up_at: Instant) -> bool {
    const SLACK: Duration = Duration::from_millis(25);
    status.code() == tonic::Code::Cancelled && Instant::now() + SLACK >= give_up_at
}

fn deadline_exceeded(deadline: Duration, attempts: u32) -> Error {
    Error::DeadlineExceeded {
        message: format!(
            "no answer within the {deadline:?} deadline ({attempts} attempt{})",
            if attempts == 1 { "" } else { "s" }
        ),
    }
}

fn with_attempts(error: Error, attempts: u32, elapsed: Duration) -> Error {
    match error {
        Error::Unavailable { message } if attempts > 1 => Error::Unavailable {
            message: format!("{message} (gave up after {attempts} attempts in {elapsed:.1?})"),
        },
        other => other,
    }
}

/// Configures a [`SignerClient`]; see [`SignerClient::builder`].
///
/// Needs at least one endpoint and a token. Building never contacts the service: connections
/// are opened on first use, so a client can be built before the service is up.
#[derive(Default)]
pub struct SignerClientBuilder {
    endpoints: Vec<String>,
    token: Option<SharedTokenProvider>,
    ca_pems: Vec<Vec<u8>>,
    identity: Option<(Vec<u8>, Zeroizing<Vec<u8>>)>,
    domain_name: Option<String>,
    connect_timeout: Option<Duration>,
    default_deadline: Option<Duration>,
    retry: Option<RetryPolicy>,
}

impl fmt::Debug for SignerClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignerClientBuilder")
            .field("endpoints", &self.endpoints)
            .field("token", &self.token.as_ref().map(|_| "<provider>"))
            .field("ca_pems", &self.ca_pems.len())
            .field("client_identity", &self.identity.is_some())
            .field("domain_name", &self.domain_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("default_deadline", &self.default_deadline)
            .field("retry", &self.retry)
            .finish()
    }
}

impl SignerClientBuilder {
    /// Adds an endpoint, `http://host:port` or `https://host:port`. With several, calls are
    /// spread over them round robin and a retry goes to the next one.
    pub fn endpoint(mut self, uri: impl Into<String>) -> Self {
        self.endpoints.push(uri.into());
        self
    }

    /// Adds several endpoints (see [`endpoint`](Self::endpoint)).
    pub fn endpoints<I, S>(mut self, uris: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.endpoints.extend(uris.into_iter().map(Into::into));
        self
    }

    /// Sends this fixed token on every call.
    pub fn bearer_token(self, token: crate::BearerToken) -> Self {
        self.token_provider(token)
    }

    /// Asks `provider` for the token on every attempt, so tokens can rotate.
    pub fn token_provider(mut self, provider: impl TokenProvider) -> Self {
        self.token = Some(Arc::new(provider));
        self
    }

    /// Trusts this CA (PEM, one or more certificates) for `https://` endpoints. May be called
    /// more than once.
    pub fn tls_ca_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_pems.push(pem.into());
        self
    }

    /// Presents this client certificate (PEM chain) and private key (PEM) to `https://`
    /// endpoints that require mutual TLS. The builder's copy of the key is zeroized on drop;
    /// the TLS library keeps its own for the connection's lifetime.
    pub fn tls_client_identity(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.identity = Some((cert_pem.into(), Zeroizing::new(key_pem.into())));
        self
    }

    /// The name to expect in the server certificate, when it differs from the endpoint's host
    /// (e.g. endpoints given as IP addresses).
    pub fn tls_domain_name(mut self, name: impl Into<String>) -> Self {
        self.domain_name = Some(name.into());
        self
    }

    /// Time allowed to open a connection to one endpoint (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Deadline of calls that do not set their own, retries included (default
    /// [`DEFAULT_DEADLINE`]). Sent to the service as `grpc-timeout`.
    pub fn default_deadline(mut self, deadline: Duration) -> Self {
        self.default_deadline = Some(deadline);
        self
    }

    /// How UNAVAILABLE failures are retried (default [`RetryPolicy::default`]).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = Some(policy);
        self
    }

    /// Checks the configuration and builds the client. Must run inside a Tokio runtime (each
    /// endpoint gets a background task that owns its connection); does not connect.
    pub fn build(self) -> Result<SignerClient, Error> {
        if self.endpoints.is_empty() {
            return Err(Error::config("no endpoint given"));
        }
        let token = self
            .token
            .clone()
            .ok_or_else(|| Error::config("no bearer token or token provider given"))?;
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::config(
                "SignerClientBuilder::build must be called inside a Tokio runtime",
            ));
        }
        self.check_pems()?;
        let tls_options = !self.ca_pems.is_empty() || self.identity.is_some();
        let mut any_https = false;
        let mut endpoints = Vec::with_capacity(self.endpoints.len());
        for uri in &self.endpoints {
            let (endpoint, https) = self.endpoint_for(uri)?;
            any_https |= https;
            endpoints.push((uri.clone(), endpoint.connect_lazy()));
        }
        if tls_options && !any_https {
            // Silently sending in the clear what was meant to go over TLS would be worse.
            return Err(Error::config(
                "TLS settings given but no endpoint is https://",
            ));
        }
        Ok(SignerClient {
            inner: Arc::new(Inner {
                endpoints,
                next: AtomicUsize::new(0),
                token,
                default_deadline: self.default_deadline.unwrap_or(DEFAULT_DEADLINE),
                retry: self.retry.unwrap_or_default(),
            }),
        })
    }

    /// tonic skips PEM blocks it cannot use, so a wrong file would otherwise show up only as a
    /// failed handshake; these checks name the culprit at build time instead.
    fn check_pems(&self) -> Result<(), Error> {
        const CERT: &[u8] = b"-----BEGIN CERTIFICATE-----";
        const KEY: &[u8] = b"PRIVATE KEY-----";
        let has = |pem: &[u8], marker: &[u8]| pem.windows(marker.len()).any(|w| w == marker);
        for (i, pem) in self.ca_pems.iter().enumerate() {
            if !has(pem, CERT) {
                return Err(Error::config(format!(
                    "CA PEM #{} holds no certificate",
                    i + 1
                )));
            }
        }
        if let Some((cert, key)) = &self.identity {
            if !has(cert, CERT) {
                return Err(Error::config("client certificate PEM holds no certificate"));
            }
            if !has(key, KEY) {
                return Err(Error::config("client key PEM holds no private key"));
            }
        }
        Ok(())
    }

    fn endpoint_for(&self, uri: &str) -> Result<(Endpoint, bool), Error> {
        let endpoint = Endpoint::from_shared(uri.to_owned())
            .map_err(|e| Error::config(format!("endpoint {uri:?}: {e}")))?;
        let https = match endpoint.uri().scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => {
                return Err(Error::config(format!(
                    "endpoint {uri:?}: must start with http:// or https://"
                )));
            }
        };
        if endpoint.uri().host().is_none() {
            return Err(Error::config(format!("endpoint {uri:?}: no host")));
        }
        let mut endpoint = endpoint
            .connect_timeout(self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT))
            .tcp_nodelay(true);
        if https {
            endpoint = endpoint
                .tls_config(self.tls_config(uri)?)
                .map_err(|e| Error::config(format!("endpoint {uri:?}: {}", error_chain(&e))))?;
        }
        Ok((endpoint, https))
    }

    fn tls_config(&self, uri: &str) -> Result<ClientTlsConfig, Error> {
        let mut tls = ClientTlsConfig::new();
        if self.ca_pems.is_empty() && !cfg!(feature = "native-roots") {
            return Err(Error::config(format!(
                "endpoint {uri:?}: https needs a CA certificate (tls_ca_pem) \
                 or the crate's native-roots feature"
            )));
        }
        #[cfg(feature = "native-roots")]
        {
            tls = tls.with_native_roots();
        }
        for pem in &self.ca_pems {
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        if let Some((cert, key)) = &self.identity {
            tls = tls.identity(Identity::from_pem(cert, key.as_slice()));
        }
        if let Some(name) = &self.domain_name {
            tls = tls.domain_name(name.clone());
        }
        Ok(tls)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BearerToken;

    fn token() -> BearerToken {
        BearerToken::new("t").unwrap()
    }

    #[tokio::test]
    async fn build_checks_the_configuration() {
        let err = SignerClient::builder()
            .bearer_token(token())
            .build()
            .unwrap_err();
        assert_eq!(err.to_string(), "config: no endpoint given");

        let err = SignerClient::builder()
            .endpoint("http://127.0.0.1:1")
            .build()
            .unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{err}");

        for bad in ["ftp://host:1", "127.0.0.1:50051", "http://", "not a uri"] {
            let err = SignerClient::builder()
                .endpoint(bad)
                .bearer_token(token())
                .build()
                .unwrap_err();
            assert!(matches!(err, Error::Config { .. }), "{bad}: {err}");
        }

        let err = SignerClient::builder()
            .endpoint("http://127.0.0.1:1")
            .tls_ca_pem(b"-----BEGIN CERTIFICATE-----".to_vec())
            .bearer_token(token())
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("no endpoint is https"), "{err}");
    }

    #[cfg(not(feature = "native-roots"))]
    #[tokio::test]
    async fn https_without_a_ca_is_refused() {
        let err = SignerClient::builder()
            .endpoint("https://signer.internal:443")
            .bearer_token(token())
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("CA certificate"), "{err}");
    }

    #[tokio::test]
    async fn building_does_not_connect() {
        // Port 1 on loopback: nothing listens, yet building succeeds.
        let client = SignerClient::builder()
            .endpoints(["http://127.0.0.1:1", "http://127.0.0.1:2"])
            .bearer_token(token())
            .build()
            .unwrap();
        assert_eq!(
            client.endpoints().collect::<Vec<_>>(),
            ["http://127.0.0.1:1", "http://127.0.0.1:2"]
        );
        let shown = format!("{client:?}");
        assert!(shown.contains("127.0.0.1:2"), "{shown}");
    }

    #[test]
    fn build_outside_a_runtime_is_an_error_not_a_panic() {
        let err = SignerClient::builder()
            .endpoint("http://127.0.0.1:1")
            .bearer_token(token())
            .build()
            .unwrap_err();
        assert!(err.to_string().contains("Tokio runtime"), "{err}");
    }

    #[tokio::test]
    async fn local_validation_fails_before_any_network_use() {
        let client = SignerClient::builder()
            .endpoint("http://127.0.0.1:1")
            .bearer_token(token())
            .build()
            .unwrap();
        let err = client
            .issue(IssueRequest::for_user("u").validity(Duration::from_millis(10)))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_failing_token_provider_is_a_credentials_error() {
        let client = SignerClient::builder()
            .endpoint("http://127.0.0.1:1")
            .token_provider(|| Err(crate::TokenError::new("vault sealed")))
            .build()
            .unwrap();
        let err = client.verify("x").await.unwrap_err();
        assert_eq!(err.to_string(), "credentials: vault sealed");
    }
}
