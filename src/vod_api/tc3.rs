//! TC3-HMAC-SHA256, the request signature of Tencent Cloud API 3.0.
//!
//! Pure: no clock and no I/O, so the test can replay Tencent's published example exactly.
//! The canonical request signs `content-type` and `host` only, which is what Tencent's own
//! example signs; the other `X-TC-*` headers travel unsigned, as in that example.

use std::fmt;
use std::time::{Duration, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::signature::{SecretId, SecretKey};

/// The algorithm name, first word of every `Authorization` header.
pub(crate) const ALGORITHM: &str = "TC3-HMAC-SHA256";
/// The headers the canonical request covers, lowercase and sorted.
pub(crate) const SIGNED_HEADERS: &str = "content-type;host";

type HmacSha256 = Hmac<Sha256>;

/// A Tencent Cloud API key pair. The SecretKey is wiped on drop and never printed.
#[derive(Clone)]
pub struct ApiCredential {
    secret_id: SecretId,
    secret_key: SecretKey,
}

impl ApiCredential {
    pub fn new(secret_id: SecretId, secret_key: SecretKey) -> Self {
        ApiCredential {
            secret_id,
            secret_key,
        }
    }

    pub fn secret_id(&self) -> &SecretId {
        &self.secret_id
    }

    /// Whether both are the same key pair: a SecretKey rotated under the same SecretId is a
    /// different credential.
    pub(crate) fn same_as(&self, other: &ApiCredential) -> bool {
        self.secret_id == other.secret_id && self.secret_key.expose() == other.secret_key.expose()
    }
}

impl fmt::Debug for ApiCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiCredential")
            .field("secret_id", &self.secret_id)
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

/// What one request is signed over.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tc3Request<'a> {
    /// The product, e.g. `vod`; also the first label of its host name.
    pub service: &'a str,
    /// The `Host` header exactly as sent (with the port when it is not the default one).
    pub host: &'a str,
    /// The `Content-Type` header exactly as sent.
    pub content_type: &'a str,
    /// `X-TC-Timestamp`: Unix seconds.
    pub timestamp: i64,
    /// The request body (API 3.0 requests are `POST /` with a JSON body).
    pub payload: &'a [u8],
}

/// Every intermediate string of the algorithm, so a test can compare each step with Tencent's
/// published example; a request needs only [`Tc3Signature::authorization`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tc3Signature {
    pub canonical_request: String,
    pub string_to_sign: String,
    pub authorization: String,
}

/// Signs `request` with `credential`.
pub(crate) fn sign(credential: &ApiCredential, request: &Tc3Request<'_>) -> Tc3Signature {
    let canonical_request = format!(
        "POST\n/\n\ncontent-type:{}\nhost:{}\n\n{SIGNED_HEADERS}\n{}",
        request.content_type.trim().to_ascii_lowercase(),
        request.host.trim().to_ascii_lowercase(),
        hex::encode(Sha256::digest(request.payload)),
    );
    let date = utc_date(request.timestamp);
    let scope = format!("{date}/{}/tc3_request", request.service);
    let string_to_sign = format!(
        "{ALGORITHM}\n{}\n{scope}\n{}",
        request.timestamp,
        hex::encode(Sha256::digest(canonical_request.as_bytes())),
    );

    // Each derived key is as sensitive as the SecretKey itself: all are wiped when dropped.
    let mut first_key = Zeroizing::new(Vec::with_capacity(3 + 64));
    first_key.extend_from_slice(b"TC3");
    first_key.extend_from_slice(credential.secret_key.expose());
    let secret_date = hmac(&first_key, date.as_bytes());
    let secret_service = hmac(&secret_date[..], request.service.as_bytes());
    let secret_signing = hmac(&secret_service[..], b"tc3_request");
    let signature = hmac(&secret_signing[..], string_to_sign.as_bytes());

    let authorization = format!(
        "{ALGORITHM} Credential={}/{scope}, SignedHeaders={SIGNED_HEADERS}, Signature={}",
        credential.secret_id.as_str(),
        hex::encode(&signature[..]),
    );
    Tc3Signature {
        canonical_request,
        string_to_sign,
        authorization,
    }
}

fn hmac(key: &[u8], message: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(message);
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

/// `YYYY-MM-DD` of a Unix time in UTC: the credential scope's date must be the UTC date of
/// `X-TC-Timestamp`, never the local one (Tencent's doc warns calls fail around midnight).
fn utc_date(timestamp: i64) -> String {
    let secs = u64::try_from(timestamp).unwrap_or(0);
    let rfc3339 = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs));
    rfc3339.to_string()[..10].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Tencent's published TC3 walk-through ("签名方法 v3", CVM DescribeInstances), whose
    // SecretId and SecretKey are printed masked with asterisks; the published signature is
    // computed over those masked strings, which is what makes it reproducible.
    const DOC_SECRET_ID: &str = "AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******";
    const DOC_SECRET_KEY: &str = "Gu5t9xGARNpq86cd98joQYCN3*******";
    const DOC_PAYLOAD: &str =
        r#"{"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}"#;

    fn doc_credential() -> ApiCredential {
        ApiCredential::new(
            SecretId::new(DOC_SECRET_ID).expect("the documented SecretId is accepted"),
            SecretKey::from_string(DOC_SECRET_KEY.to_owned()).expect("not empty"),
        )
    }

    fn doc_request() -> Tc3Request<'static> {
        Tc3Request {
            service: "cvm",
            host: "cvm.tencentcloudapi.com",
            content_type: "application/json; charset=utf-8",
            timestamp: 1_551_113_065,
            payload: DOC_PAYLOAD.as_bytes(),
        }
    }

    #[test]
    fn reproduces_tencents_published_example_byte_for_byte() {
        let signed = sign(&doc_credential(), &doc_request());
        assert_eq!(
            signed.canonical_request,
            "POST\n/\n\ncontent-type:application/json; charset=utf-8\nhost:cvm.tencentcloudapi.com\n\ncontent-type;host\n35e9c5b0e3ae67532d3c9f17ead6c90222632e5b1ff7f6e89887f1398934f064"
        );
        assert_eq!(
            signed.string_to_sign,
            "TC3-HMAC-SHA256\n1551113065\n2019-02-25/cvm/tc3_request\n5ffe6a04c0664d6b969fab9a13bdab201d63ee709638e2749d62a09ca18d7031"
        );
        assert_eq!(
            signed.authorization,
            "TC3-HMAC-SHA256 Credential=AKIDz8krbsJ5yKBZQpn74WFkmLPx3*******/2019-02-25/cvm/tc3_request, SignedHeaders=content-type;host, Signature=2230eefd229f582d8b1b891af7107b91597240707d778ab3738f756258d7652c"
        );
    }

    #[test]
    fn the_scope_date_is_the_utc_date_not_the_local_one() {
        // 1551113065 is 2019-02-26 00:44:25 in UTC+8 and still the 25th in UTC.
        assert_eq!(utc_date(1_551_113_065), "2019-02-25");
        assert_eq!(utc_date(1_551_139_200), "2019-02-26");
        assert_eq!(utc_date(1_551_139_199), "2019-02-25");
    }

    #[test]
    fn every_input_changes_the_signature() {
        let base = sign(&doc_credential(), &doc_request()).authorization;
        let mut other = doc_request();
        other.payload = b"{}";
        assert_ne!(sign(&doc_credential(), &other).authorization, base);
        let mut other = doc_request();
        other.timestamp += 1;
        assert_ne!(sign(&doc_credential(), &other).authorization, base);
        let mut other = doc_request();
        other.host = "vod.tencentcloudapi.com";
        assert_ne!(sign(&doc_credential(), &other).authorization, base);
        let other_key = ApiCredential::new(
            SecretId::new(DOC_SECRET_ID).unwrap(),
            SecretKey::from_string("another-key".to_owned()).unwrap(),
        );
        assert_ne!(sign(&other_key, &doc_request()).authorization, base);
    }

    #[test]
    fn debug_never_shows_the_secret_key() {
        let shown = format!("{:?}", doc_credential());
        assert!(!shown.contains(DOC_SECRET_KEY), "{shown}");
        assert!(shown.contains("<redacted>"));
    }
}
