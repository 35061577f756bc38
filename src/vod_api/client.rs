//! The HTTP side of an API 3.0 call: `POST /` with a JSON body and the TC3 headers, one
//! timeout around the whole exchange, and the `Response` envelope unwrapped into a result.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Map, Value};

use super::error::{ApiError, ErrorClass};
use super::tc3::{self, ApiCredential, Tc3Request};

/// The API version every VOD action of this client belongs to.
pub(super) const VOD_VERSION: &str = "2018-07-17";
/// The service name in the credential scope.
pub(super) const VOD_SERVICE: &str = "vod";
/// Tencent's public VOD endpoint.
pub(crate) const DEFAULT_ENDPOINT: &str = "https://vod.tencentcloudapi.com";
/// Sent and signed as is; API 3.0 takes JSON bodies.
const CONTENT_TYPE_JSON: &str = "application/json";
/// Sixteen events are far below this; anything larger is not a VOD answer.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Where and as whom to call the VOD API.
#[derive(Clone)]
pub struct ApiSettings {
    /// `https://vod.tencentcloudapi.com`, or `http://127.0.0.1:PORT` for a local stand-in.
    pub endpoint: String,
    /// `X-TC-Region`, sent only when not empty.
    pub region: String,
    /// `SubAppId` in every body, sent only when not zero.
    pub sub_app_id: u64,
    pub credential: ApiCredential,
}

impl fmt::Debug for ApiSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiSettings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("sub_app_id", &self.sub_app_id)
            .field("credential", &self.credential)
            .finish()
    }
}

/// Why a client could not be built from its settings.
#[derive(Debug, thiserror::Error)]
pub enum ApiClientError {
    #[error("endpoint {endpoint:?}: {reason}")]
    Endpoint {
        endpoint: String,
        reason: &'static str,
    },
    #[error("cannot load the system's root certificates for {endpoint}: {detail}")]
    RootCertificates { endpoint: String, detail: String },
}

/// A VOD API 3.0 client. Cheap to clone; safe to share between tasks.
#[derive(Clone)]
pub struct ApiClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    uri: Uri,
    host: String,
    region: String,
    sub_app_id: u64,
    credential: ApiCredential,
}

impl fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiClient")
            .field("endpoint", &self.inner.uri)
            .field("secret_id", self.inner.credential.secret_id())
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    pub fn new(settings: ApiSettings) -> Result<ApiClient, ApiClientError> {
        let endpoint = settings.endpoint.clone();
        let bad = |reason| ApiClientError::Endpoint {
            endpoint: endpoint.clone(),
            reason,
        };
        let (uri, https, host) = parse_endpoint(&settings.endpoint).map_err(bad)?;
        let tls = tls_config(https).map_err(|detail| ApiClientError::RootCertificates {
            endpoint: endpoint.clone(),
            detail,
        })?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        let http = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(ApiClient {
            inner: Arc::new(Inner {
                http,
                uri,
                host,
                region: settings.region,
                sub_app_id: settings.sub_app_id,
                credential: settings.credential,
            }),
        })
    }

    /// The endpoint, for log lines.
    pub fn endpoint(&self) -> String {
        self.inner.uri.to_string()
    }

    /// Calls `action` with the fields of `body` (plus `SubAppId` when configured) and returns
    /// the `Response` object of a successful answer.
    pub async fn call(
        &self,
        action: &'static str,
        mut body: Map<String, Value>,
        timeout: Duration,
    ) -> Result<Map<String, Value>, ApiError> {
        let inner = &*self.inner;
        if inner.sub_app_id != 0 {
            body.insert("SubAppId".to_owned(), Value::from(inner.sub_app_id));
        }
        let payload = serde_json::to_vec(&body).expect("a JSON map always serializes");
        let timestamp = unix_now();
        let signature = tc3::sign(
            &inner.credential,
            &Tc3Request {
                service: VOD_SERVICE,
                host: &inner.host,
                content_type: CONTENT_TYPE_JSON,
                timestamp,
                payload: &payload,
            },
        );
        let mut request = Request::post(inner.uri.clone())
            .header(HOST, &inner.host)
            .header(CONTENT_TYPE, CONTENT_TYPE_JSON)
            .header("X-TC-Action", action)
            .header("X-TC-Version", VOD_VERSION)
            .header("X-TC-Timestamp", timestamp.to_string())
            .header(AUTHORIZATION, signature.authorization);
        if !inner.region.is_empty() {
            request = request.header("X-TC-Region", &inner.region);
        }
        let request =
            request
                .body(Full::new(Bytes::from(payload)))
                .map_err(|e| ApiError::BadResponse {
                    action,
                    detail: format!("cannot build the request: {e}"),
                })?;

        let exchange = async {
            let response = inner
                .http
                .request(request)
                .await
                .map_err(|e| ApiError::Transport {
                    action,
                    endpoint: inner.uri.to_string(),
                    detail: error_chain(&e),
                })?;
            let status = response.status();
            let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| ApiError::Transport {
                    action,
                    endpoint: inner.uri.to_string(),
                    detail: format!("reading the answer: {e}"),
                })?
                .to_bytes();
            Ok::<_, ApiError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| ApiError::Timeout {
                action,
                after: timeout,
            })??;
        unwrap_response(action, status, &bytes)
    }
}

/// Whether `endpoint` can be called: an `https://` (or, for a local stand-in, `http://`)
/// origin without a path. Checked when the configuration is read, so a typo fails start-up.
pub(crate) fn check_endpoint(endpoint: &str) -> Result<(), &'static str> {
    parse_endpoint(endpoint).map(drop)
}

/// The URI, whether it is HTTPS, and the `Host` header (with the port when one is given).
fn parse_endpoint(endpoint: &str) -> Result<(Uri, bool, String), &'static str> {
    let uri: Uri = endpoint.parse().map_err(|_| "not a URL")?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err("must start with https:// (or http:// for a local stand-in)"),
    };
    if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
        return Err("API 3.0 calls go to the root path: give scheme and host only");
    }
    let host = match uri.authority() {
        Some(authority) if !authority.host().is_empty() => authority.as_str().to_owned(),
        _ => return Err("has no host"),
    };
    Ok((uri, https, host))
}

/// Turns an API 3.0 answer into the `Response` object or a typed error.
fn unwrap_response(
    action: &'static str,
    status: http::StatusCode,
    bytes: &[u8],
) -> Result<Map<String, Value>, ApiError> {
    let bad = |detail: String| ApiError::BadResponse { action, detail };
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| bad(format!("HTTP {status}, body is not JSON: {e}")))?;
    let Some(Value::Object(mut response)) = value.get("Response").cloned() else {
        return Err(bad(format!("HTTP {status}, no \"Response\" object")));
    };
    let request_id = response
        .get("RequestId")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if let Some(error) = response.remove("Error") {
        let code = error
            .get("Code")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let message = error
            .get("Message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        return Err(ApiError::Refused {
            action,
            class: ErrorClass::of_code(&code),
            code,
            message,
            request_id,
        });
    }
    if !status.is_success() {
        return Err(bad(format!("HTTP {status} without an error object")));
    }
    Ok(response)
}

fn tls_config(https: bool) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    // A plain-HTTP endpoint (a local stand-in) never handshakes, so it needs no roots.
    if https {
        let found = rustls_native_certs::load_native_certs();
        for cert in found.certs {
            // One unparsable certificate in the system store should not disable TLS.
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            return Err(match found.errors.first() {
                Some(e) => e.to_string(),
                None => "the system trust store is empty".to_owned(),
            });
        }
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        .map_err(|e| e.to_string())
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_object_becomes_a_typed_refusal() {
        let body = br#"{"Response":{"Error":{"Code":"AuthFailure.SignatureFailure","Message":"bad"},"RequestId":"r1"}}"#;
        match unwrap_response("PullEvents", http::StatusCode::OK, body) {
            Err(ApiError::Refused {
                class,
                code,
                request_id,
                ..
            }) => {
                assert_eq!(class, ErrorClass::AuthFailure);
                assert_eq!(code, "AuthFailure.SignatureFailure");
                assert_eq!(request_id, "r1");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_success_returns_the_response_object() {
        let body = br#"{"Response":{"EventSet":null,"RequestId":"r2"}}"#;
        let response = unwrap_response("PullEvents", http::StatusCode::OK, body).unwrap();
        assert_eq!(response["RequestId"], "r2");
    }

    #[test]
    fn non_json_and_missing_envelopes_are_bad_responses() {
        for body in [&b"<html>"[..], br#"{"Other":1}"#, br#"{"Response":[]}"#] {
            let err = unwrap_response("PullEvents", http::StatusCode::BAD_GATEWAY, body)
                .expect_err("not an API answer");
            assert_eq!(err.class(), ErrorClass::BadResponse, "{err}");
        }
    }

    fn settings(endpoint: &str) -> ApiSettings {
        ApiSettings {
            endpoint: endpoint.to_owned(),
            region: String::new(),
            sub_app_id: 0,
            credential: ApiCredential::new(
                crate::signature::SecretId::new("AKIDtest").unwrap(),
                crate::signature::SecretKey::from_string("k".to_owned()).unwrap(),
            ),
        }
    }

    #[tokio::test]
    async fn endpoints_must_be_a_bare_http_or_https_origin() {
        for bad in [
            "ftp://x",
            "vod.tencentcloudapi.com",
            "http://x/path",
            "http://x/?a=1",
        ] {
            let err = ApiClient::new(settings(bad)).expect_err(bad);
            assert!(
                matches!(err, ApiClientError::Endpoint { .. }),
                "{bad}: {err}"
            );
        }
        ApiClient::new(settings("http://127.0.0.1:9")).expect("a local stand-in");
    }
}
