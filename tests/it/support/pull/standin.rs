//! A stand-in for VOD's API 3.0 endpoint, written from `../shared/docs/vod-event-notification.md`
//! §1.3 and Tencent's TC3 documentation, for the reliable-callback tests.
//!
//! - Checks every request's TC3-HMAC-SHA256 signature with its own implementation (not the
//!   crate's, so a bug in one is not mirrored by the other), the version, the service and the
//!   timestamp's age; a bad one gets `AuthFailure.*` as VOD would answer.
//! - `PullEvents`: long-polls (up to `long_poll`), returns at most 16 events, each with a fresh
//!   `EventHandle`; an event not confirmed within `confirm_window` is delivered again.
//! - `ConfirmEvents`: at most 16 handles; a handle past its window (or unknown) fails the whole
//!   call with `InvalidParameterValue` and message code 4000, and nothing of it is confirmed.
//! - `DescribeTaskDetail`: answers from tasks the test registered.
//! - Faults are injected per action for the next N calls.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

pub const STANDIN_SECRET_ID: &str = "AKIDstandinTestKey0001";
pub const STANDIN_SECRET_KEY: &str = "standin-test-secret-key";

/// Timings of the stand-in; the real service's are 5 s and 30 s.
#[derive(Debug, Clone, Copy)]
pub struct StandInTiming {
    pub long_poll: Duration,
    pub confirm_window: Duration,
}

impl Default for StandInTiming {
    fn default() -> Self {
        StandInTiming {
            long_poll: Duration::from_millis(300),
            confirm_window: Duration::from_secs(2),
        }
    }
}

/// A failure the next calls of one action get instead of an answer.
#[derive(Debug, Clone)]
pub enum Fault {
    /// `Response.Error` with this code.
    Error(&'static str),
    /// No answer for this long (longer than the client's timeout: a timeout).
    Hang(Duration),
    /// The call is handled normally, but only after this long (a confirm can come too late).
    Delay(Duration),
}

#[derive(Debug, Clone)]
struct Queued {
    id: u64,
    content: Map<String, Value>,
}

#[derive(Default)]
struct Queue {
    ready: VecDeque<Queued>,
    /// handle -> (event, confirm deadline)
    in_flight: HashMap<String, (Queued, Instant)>,
    next_id: u64,
    next_handle: u64,
    deliveries: u64,
    confirmed: Vec<u64>,
}

/// One request as the stand-in saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub action: String,
    pub at: Instant,
    /// `None` for an answer without error.
    pub error: Option<String>,
    pub region: Option<String>,
    pub body: Value,
}

struct Shared {
    timing: StandInTiming,
    secret_id: String,
    secret_key: String,
    queue: Mutex<Queue>,
    faults: Mutex<HashMap<String, VecDeque<Fault>>>,
    tasks: Mutex<HashMap<String, Value>>,
    seen: Mutex<Vec<Seen>>,
    wake: tokio::sync::Notify,
}

pub struct StandIn {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for StandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl StandIn {
    /// A stand-in on a free loopback port that accepts [`STANDIN_SECRET_ID`].
    pub async fn start(timing: StandInTiming) -> StandIn {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        StandIn::serve(listener, timing, STANDIN_SECRET_ID, STANDIN_SECRET_KEY)
    }

    /// A stand-in on `listener` that accepts one API key.
    pub fn serve(
        listener: tokio::net::TcpListener,
        timing: StandInTiming,
        secret_id: &str,
        secret_key: &str,
    ) -> StandIn {
        let shared = Arc::new(Shared {
            timing,
            secret_id: secret_id.to_owned(),
            secret_key: secret_key.to_owned(),
            queue: Mutex::new(Queue::default()),
            faults: Mutex::new(HashMap::new()),
            tasks: Mutex::new(HashMap::new()),
            seen: Mutex::new(Vec::new()),
            wake: tokio::sync::Notify::new(),
        });
        let app = Router::new()
            .route("/", post(handle))
            .with_state(shared.clone());
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        StandIn {
            addr,
            shared,
            server,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Queues an event (an `EventContent` object without `EventHandle`); returns its id.
    pub fn push_event(&self, content: Value) -> u64 {
        let Value::Object(content) = content else {
            panic!("an event is a JSON object")
        };
        let id = {
            let mut queue = self.shared.queue.lock().unwrap();
            queue.next_id += 1;
            let id = queue.next_id;
            queue.ready.push_back(Queued { id, content });
            id
        };
        self.shared.wake.notify_waiters();
        id
    }

    /// The next `times` calls of `action` fail with `fault`.
    pub fn inject(&self, action: &str, fault: Fault, times: usize) {
        let mut faults = self.shared.faults.lock().unwrap();
        let queue = faults.entry(action.to_owned()).or_default();
        queue.extend(std::iter::repeat_n(fault, times));
    }

    pub fn clear_faults(&self) {
        self.shared.faults.lock().unwrap().clear();
    }

    /// `DescribeTaskDetail` for `task_id` answers with this `Response` content.
    pub fn set_task(&self, task_id: &str, response: Value) {
        self.shared
            .tasks
            .lock()
            .unwrap()
            .insert(task_id.to_owned(), response);
    }

    /// Events neither confirmed nor dropped: waiting, or delivered and not yet confirmed.
    pub fn unconfirmed(&self) -> usize {
        let queue = self.shared.queue.lock().unwrap();
        queue.ready.len() + queue.in_flight.len()
    }

    /// Events delivered and not confirmed yet (their window may have passed).
    pub fn in_flight(&self) -> usize {
        self.shared.queue.lock().unwrap().in_flight.len()
    }

    /// Ids of the confirmed events, in confirmation order (an id twice would be a bug of
    /// the stand-in: a confirmed event is gone).
    pub fn confirmed(&self) -> Vec<u64> {
        self.shared.queue.lock().unwrap().confirmed.clone()
    }

    /// How many times events were handed out (redeliveries included).
    pub fn deliveries(&self) -> u64 {
        self.shared.queue.lock().unwrap().deliveries
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }

    pub fn seen_action(&self, action: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.action == action)
            .collect()
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn answer(body: Value) -> (axum::http::StatusCode, String) {
    (axum::http::StatusCode::OK, body.to_string())
}

fn error_answer(code: &str, message: &str) -> Value {
    json!({"Response": {"Error": {"Code": code, "Message": message}, "RequestId": "standin-error"}})
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> (axum::http::StatusCode, String) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let action = header("x-tc-action").unwrap_or_default();
    let region = header("x-tc-region");
    let body_value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let record = |error: Option<String>| {
        shared.seen.lock().unwrap().push(Seen {
            action: action.clone(),
            at: Instant::now(),
            error,
            region: region.clone(),
            body: body_value.clone(),
        });
    };

    if let Err((code, message)) = check_request(&shared, &headers, &body) {
        record(Some(code.to_owned()));
        return answer(error_answer(code, &message));
    }
    let fault = shared
        .faults
        .lock()
        .unwrap()
        .get_mut(&action)
        .and_then(VecDeque::pop_front);
    match fault {
        Some(Fault::Error(code)) => {
            record(Some(code.to_owned()));
            return answer(error_answer(code, "injected by the test"));
        }
        Some(Fault::Hang(how_long)) => {
            record(Some("Hang".to_owned()));
            tokio::time::sleep(how_long).await;
            return answer(error_answer("InternalError", "answered after a hang"));
        }
        Some(Fault::Delay(how_long)) => tokio::time::sleep(how_long).await,
        None => {}
    }
    let Value::Object(fields) = body_value.clone() else {
        record(Some("InvalidParameter".to_owned()));
        return answer(error_answer(
            "InvalidParameter",
            "the body is not a JSON object",
        ));
    };
    let result = match action.as_str() {
        "PullEvents" => Ok(pull_events(&shared).await),
        "ConfirmEvents" => confirm_events(&shared, &fields),
        "DescribeTaskDetail" => describe_task_detail(&shared, &fields),
        _ => Err(("InvalidAction", format!("unknown action {action:?}"))),
    };
    match result {
        Ok(mut response) => {
            record(None);
            response.insert("RequestId".to_owned(), Value::from("standin-ok"));
            answer(json!({ "Response": response }))
        }
        Err((code, message)) => {
            record(Some(code.to_owned()));
            answer(error_answer(code, &message))
        }
    }
}

/// Redelivers expired in-flight events and takes up to 16, waiting up to the long poll.
async fn pull_events(shared: &Shared) -> Map<String, Value> {
    let deadline = Instant::now() + shared.timing.long_poll;
    loop {
        let notified = shared.wake.notified();
        let batch = take_batch(shared);
        if !batch.is_empty() || Instant::now() >= deadline {
            let mut response = Map::new();
            response.insert(
                "EventSet".to_owned(),
                if batch.is_empty() {
                    Value::Null
                } else {
                    Value::Array(batch)
                },
            );
            return response;
        }
        // Wake for a new event, or soon enough to see an in-flight event expire.
        let nap = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(50));
        let _ = tokio::time::timeout(nap, notified).await;
    }
}

fn take_batch(shared: &Shared) -> Vec<Value> {
    let mut queue = shared.queue.lock().unwrap();
    let now = Instant::now();
    let expired: Vec<String> = queue
        .in_flight
        .iter()
        .filter(|(_, (_, deadline))| *deadline <= now)
        .map(|(handle, _)| handle.clone())
        .collect();
    let mut redeliver: Vec<Queued> = expired
        .into_iter()
        .filter_map(|handle| queue.in_flight.remove(&handle).map(|(event, _)| event))
        .collect();
    redeliver.sort_by_key(|event| event.id);
    for event in redeliver.into_iter().rev() {
        queue.ready.push_front(event);
    }
    let mut batch = Vec::new();
    while batch.len() < 16 {
        let Some(event) = queue.ready.pop_front() else {
            break;
        };
        queue.next_handle += 1;
        queue.deliveries += 1;
        let handle = format!("EventHandle-{}-{}", event.id, queue.next_handle);
        let mut content = Map::new();
        content.insert("EventHandle".to_owned(), Value::from(handle.as_str()));
        content.extend(event.content.clone());
        batch.push(Value::Object(content));
        queue
            .in_flight
            .insert(handle, (event, now + shared.timing.confirm_window));
    }
    batch
}

fn confirm_events(
    shared: &Shared,
    fields: &Map<String, Value>,
) -> Result<Map<String, Value>, (&'static str, String)> {
    let handles: Vec<String> = match fields.get("EventHandles") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|h| h.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or((
                "InvalidParameterValue",
                "EventHandles must be strings".to_owned(),
            ))?,
        _ => {
            return Err(("MissingParameter", "EventHandles is required".to_owned()));
        }
    };
    if handles.is_empty() || handles.len() > 16 {
        return Err((
            "InvalidParameterValue",
            format!("EventHandles takes 1 to 16 handles, got {}", handles.len()),
        ));
    }
    let mut queue = shared.queue.lock().unwrap();
    let now = Instant::now();
    for handle in &handles {
        match queue.in_flight.get(handle) {
            Some((_, deadline)) if *deadline > now => {}
            _ => {
                return Err((
                    "InvalidParameterValue",
                    format!("4000: event handle {handle} is past its confirm window or unknown"),
                ));
            }
        }
    }
    for handle in &handles {
        let (event, _) = queue.in_flight.remove(handle).unwrap();
        queue.confirmed.push(event.id);
    }
    Ok(Map::new())
}

fn describe_task_detail(
    shared: &Shared,
    fields: &Map<String, Value>,
) -> Result<Map<String, Value>, (&'static str, String)> {
    let task_id = fields
        .get("TaskId")
        .and_then(Value::as_str)
        .ok_or(("MissingParameter", "TaskId is required".to_owned()))?;
    match shared.tasks.lock().unwrap().get(task_id) {
        Some(Value::Object(response)) => Ok(response.clone()),
        _ => Err(("ResourceNotFound", format!("no task {task_id}"))),
    }
}

/// The TC3 check, from Tencent's description of the algorithm.
fn check_request(
    shared: &Shared,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), (&'static str, String)> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    if header("x-tc-version") != "2018-07-17" {
        return Err(("InvalidParameter", "X-TC-Version must be 2018-07-17".into()));
    }
    if !header("content-type").starts_with("application/json") {
        return Err(("InvalidParameter", "Content-Type must be JSON".into()));
    }
    let timestamp: i64 = header("x-tc-timestamp")
        .parse()
        .map_err(|_| ("MissingParameter", "X-TC-Timestamp".to_owned()))?;
    if (unix_now() - timestamp).abs() > 300 {
        return Err((
            "AuthFailure.SignatureExpire",
            "timestamp too far off".into(),
        ));
    }
    let authorization = header("authorization");
    let rest = authorization
        .strip_prefix("TC3-HMAC-SHA256 ")
        .ok_or(("AuthFailure.InvalidAuthorization", "not TC3".to_owned()))?;
    let mut credential = "";
    let mut signed_headers = "";
    let mut signature = "";
    for part in rest.split(", ") {
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = v;
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed_headers = v;
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = v;
        }
    }
    let scope: Vec<&str> = credential.split('/').collect();
    let [secret_id, date, service, "tc3_request"] = scope[..] else {
        return Err((
            "AuthFailure.InvalidAuthorization",
            "bad credential scope".into(),
        ));
    };
    if secret_id != shared.secret_id {
        return Err(("AuthFailure.SecretIdNotFound", "unknown SecretId".into()));
    }
    if service != "vod" {
        return Err((
            "AuthFailure.InvalidAuthorization",
            "service must be vod".into(),
        ));
    }
    let expected_date =
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(timestamp as u64))
            .to_string()[..10]
            .to_owned();
    if date != expected_date {
        return Err((
            "AuthFailure.InvalidAuthorization",
            "the scope's date is not the UTC date of X-TC-Timestamp".into(),
        ));
    }
    let names: Vec<&str> = signed_headers.split(';').collect();
    if !names.contains(&"content-type") || !names.contains(&"host") {
        return Err((
            "AuthFailure.InvalidAuthorization",
            "content-type and host must be signed".into(),
        ));
    }
    let mut canonical_headers = String::new();
    for name in &names {
        canonical_headers.push_str(name);
        canonical_headers.push(':');
        canonical_headers.push_str(header(name).trim().to_ascii_lowercase().as_str());
        canonical_headers.push('\n');
    }
    let canonical_request = [
        "POST",
        "/",
        "",
        &canonical_headers,
        signed_headers,
        &hex::encode(Sha256::digest(body)),
    ]
    .join("\n");
    let string_to_sign = format!(
        "TC3-HMAC-SHA256\n{timestamp}\n{date}/{service}/tc3_request\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let mac = |key: &[u8], data: &str| {
        let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
        m.update(data.as_bytes());
        m.finalize().into_bytes().to_vec()
    };
    let k_date = mac(format!("TC3{}", shared.secret_key).as_bytes(), date);
    let k_service = mac(&k_date, service);
    let k_signing = mac(&k_service, "tc3_request");
    let expected = hex::encode(mac(&k_signing, &string_to_sign));
    if expected != signature {
        return Err(("AuthFailure.SignatureFailure", "signature mismatch".into()));
    }
    Ok(())
}
