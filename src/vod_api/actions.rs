//! The VOD actions the event receiver uses: `PullEvents`, `ConfirmEvents` (the reliable
//! callback queue) and `DescribeTaskDetail` (reconciliation).

use std::time::Duration;

use serde_json::{Map, Value};

use super::client::ApiClient;
use super::error::ApiError;

/// At most this many events come back from one `PullEvents`, and at most this many handles
/// go into one `ConfirmEvents`.
pub(super) const MAX_EVENTS_PER_CALL: usize = 16;

/// The receipt of one pulled event, valid for `ConfirmEvents` during the confirm window.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventHandle(String);

impl EventHandle {
    pub fn new(value: impl Into<String>) -> Self {
        EventHandle(value.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One event from the queue: its handle and its `EventContent` object, serialized again as
/// the body a PUSH would have carried (plus `EventHandle`, a delivery-only field the store's
/// deduplication ignores).
#[derive(Debug, Clone)]
pub struct PulledEvent {
    /// `None` when VOD sent no handle: such an event can be stored but never confirmed.
    pub handle: Option<EventHandle>,
    pub event_type: String,
    pub raw: Vec<u8>,
}

/// Up to [`MAX_EVENTS_PER_CALL`] handles: one `ConfirmEvents` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandleBatch(Vec<EventHandle>);

impl HandleBatch {
    /// Splits any number of handles into calls of at most [`MAX_EVENTS_PER_CALL`].
    pub fn split(handles: Vec<EventHandle>) -> Vec<HandleBatch> {
        handles
            .chunks(MAX_EVENTS_PER_CALL)
            .map(|chunk| HandleBatch(chunk.to_vec()))
            .collect()
    }

    pub fn handles(&self) -> &[EventHandle] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What `DescribeTaskDetail` says about a task.
#[derive(Debug, Clone)]
pub struct TaskDetail {
    /// `Procedure` for a task flow started by an upload.
    pub task_type: String,
    /// `WAITING`, `PROCESSING` or `FINISH`.
    pub status: String,
    /// The `ProcedureTask` object: the same shape as a `ProcedureStateChangeEvent`.
    pub procedure_task: Option<Map<String, Value>>,
}

impl ApiClient {
    /// One long poll of the reliable-callback queue (`PullEvents`). VOD holds the call for up
    /// to 5 s when the queue is empty; `timeout` should be longer (Tencent says 10 s).
    pub async fn pull_events(&self, timeout: Duration) -> Result<Vec<PulledEvent>, ApiError> {
        const ACTION: &str = "PullEvents";
        let response = self.call(ACTION, Map::new(), timeout).await?;
        let events = match response.get("EventSet") {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(events)) => events,
            Some(_) => {
                return Err(ApiError::BadResponse {
                    action: ACTION,
                    detail: "EventSet is not an array".to_owned(),
                });
            }
        };
        let mut pulled = Vec::with_capacity(events.len());
        for event in events {
            let Value::Object(fields) = event else {
                return Err(ApiError::BadResponse {
                    action: ACTION,
                    detail: "an EventSet item is not an object".to_owned(),
                });
            };
            let handle = fields
                .get("EventHandle")
                .and_then(Value::as_str)
                .filter(|h| !h.is_empty())
                .map(EventHandle::new);
            let event_type = fields
                .get("EventType")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            pulled.push(PulledEvent {
                handle,
                event_type,
                raw: serde_json::to_vec(event).expect("a JSON value always serializes"),
            });
        }
        Ok(pulled)
    }

    /// Acknowledges the events of `batch` (`ConfirmEvents`); VOD then deletes them.
    pub async fn confirm_events(
        &self,
        batch: &HandleBatch,
        timeout: Duration,
    ) -> Result<(), ApiError> {
        let mut body = Map::new();
        body.insert(
            "EventHandles".to_owned(),
            Value::Array(
                batch
                    .handles()
                    .iter()
                    .map(|h| Value::from(h.as_str()))
                    .collect(),
            ),
        );
        self.call("ConfirmEvents", body, timeout).await.map(drop)
    }

    /// The state of one task (`DescribeTaskDetail`).
    pub async fn describe_task_detail(
        &self,
        task_id: &str,
        timeout: Duration,
    ) -> Result<TaskDetail, ApiError> {
        let mut body = Map::new();
        body.insert("TaskId".to_owned(), Value::from(task_id));
        let mut response = self.call("DescribeTaskDetail", body, timeout).await?;
        let text = |response: &Map<String, Value>, key: &str| {
            response
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned()
        };
        Ok(TaskDetail {
            task_type: text(&response, "TaskType"),
            status: text(&response, "Status"),
            procedure_task: match response.remove("ProcedureTask") {
                Some(Value::Object(task)) => Some(task),
                _ => None,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_confirmed_sixteen_at_a_time() {
        let handles: Vec<_> = (0..35).map(|i| EventHandle::new(format!("h{i}"))).collect();
        let batches = HandleBatch::split(handles.clone());
        assert_eq!(
            batches.iter().map(HandleBatch::len).collect::<Vec<_>>(),
            [16, 16, 3]
        );
        let rejoined: Vec<_> = batches
            .iter()
            .flat_map(|b| b.handles().iter().cloned())
            .collect();
        assert_eq!(rejoined, handles);
        assert!(HandleBatch::split(Vec::new()).is_empty());
    }
}
