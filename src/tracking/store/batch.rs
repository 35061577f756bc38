//! Turning a group of received events into stored events and upload changes, inside one
//! transaction of either store.
//!
//! Correlation: `NewFileUpload` by its `SourceContext` (our upload id); `ProcedureStateChanged`
//! by its `SessionContext`, else by `FileId` or task id against the stored uploads' files. A
//! procedure event that matches nothing yet is stored with its FileId/task id and attached
//! when its upload arrives, so the result does not depend on arrival order.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::events::{self, Notification};
use crate::tracking::model::{Delivery, NewUpload, Receipt, ReceivedEvent, Upload};
use crate::tracking::state::{self, Fact, FactKind};
use crate::tracking::{TrackingError, UploadId};

use super::{BatchTx, EventRow, FileLink, Swept};

/// A received event, parsed and keyed, ready to be committed.
#[derive(Debug, Clone)]
pub(crate) struct Incoming {
    pub dedupe_key: String,
    pub received_at: i64,
    pub delivery: Delivery,
    pub raw: Vec<u8>,
    pub notification: Notification,
}

impl Incoming {
    /// Parses outside the store's transaction (pure, and the only step that can refuse the
    /// body).
    pub fn prepare(event: ReceivedEvent) -> Result<Incoming, TrackingError> {
        let (notification, dedupe_key) =
            events::parse_keyed(&event.raw).map_err(TrackingError::InvalidEvent)?;
        Ok(Incoming::parsed(event, notification, dedupe_key))
    }

    /// An event whose body was parsed already; `notification` and `dedupe_key` must be what
    /// `events::parse_keyed` makes of `event.raw`.
    pub fn parsed(
        event: ReceivedEvent,
        notification: Notification,
        dedupe_key: String,
    ) -> Incoming {
        Incoming {
            dedupe_key,
            received_at: event.received_at,
            delivery: event.delivery,
            raw: event.raw,
            notification,
        }
    }

    /// The upload id the event names itself, if it is a well-formed one.
    fn named_upload(&self) -> Option<&str> {
        let named = match &self.notification {
            Notification::NewFileUpload(f) => f.source_context.as_deref(),
            Notification::ProcedureStateChanged(p) => p.session_context.as_deref(),
            _ => None,
        }?;
        UploadId::parse(named).is_ok().then_some(named)
    }

    fn file_and_task(&self) -> (Option<&str>, Option<&str>) {
        match &self.notification {
            Notification::NewFileUpload(f) => {
                (Some(f.file_id.as_str()), f.procedure_task_id.as_deref())
            }
            Notification::ProcedureStateChanged(p) => {
                (p.file_id.as_deref(), Some(p.task_id.as_str()))
            }
            _ => (None, None),
        }
    }

    /// The event type its upload change reports.
    fn change_type(&self) -> &str {
        match self.delivery {
            Delivery::Reconciled => "Reconciled",
            Delivery::Push | Delivery::Pull => self.notification.event_type(),
        }
    }
}

/// Parses a stored body back into the fact it contributes (`None` for types never applied).
fn fact_of(raw: &[u8], received_at: i64) -> Result<Option<Fact>, TrackingError> {
    let notification = events::parse(raw)
        .map_err(|e| TrackingError::Corrupt(format!("stored event body: {e}")))?;
    Ok(fact_from(notification, received_at))
}

fn fact_from(notification: Notification, received_at: i64) -> Option<Fact> {
    match notification {
        Notification::NewFileUpload(f) => Some(Fact {
            kind: FactKind::Uploaded(f),
            received_at,
        }),
        Notification::ProcedureStateChanged(p) => Some(Fact {
            kind: FactKind::Procedure(p),
            received_at,
        }),
        _ => None,
    }
}

/// Stores and applies `batch` through `tx`; the caller commits.
pub(crate) async fn apply<T: BatchTx>(
    tx: &mut T,
    batch: &[Incoming],
) -> Result<Vec<Receipt>, TrackingError> {
    // 1. Which upload each event belongs to, as far as is known now.
    let mut named: Vec<String> = batch
        .iter()
        .filter_map(|e| e.named_upload().map(str::to_owned))
        .collect();
    named.sort();
    named.dedup();
    // The records are read whole here rather than probed: both stores run one writing
    // transaction at a time, so nothing changes them before re-deriving, which reuses them.
    let issued: Issued = tx.issued(&named).await?.into_iter().map(by_id).collect();
    let mut owner: Vec<Option<String>> = batch
        .iter()
        .map(|e| {
            e.named_upload()
                .filter(|id| issued.contains_key(*id))
                .map(str::to_owned)
        })
        .collect();

    // Procedure events that do not name a tracked upload: by FileId or task id, against the
    // files stored before and the uploads of this batch.
    let mut by_file: HashMap<String, String> = HashMap::new();
    let mut by_task: HashMap<String, String> = HashMap::new();
    for (event, owner) in batch.iter().zip(&owner) {
        if let (Notification::NewFileUpload(f), Some(upload)) = (&event.notification, owner) {
            by_file.insert(f.file_id.clone(), upload.clone());
            if let Some(task) = &f.procedure_task_id {
                by_task.insert(task.clone(), upload.clone());
            }
        }
    }
    let (mut files, mut tasks) = (Vec::new(), Vec::new());
    for (event, owner) in batch.iter().zip(&owner) {
        if let (Notification::ProcedureStateChanged(p), None) = (&event.notification, owner) {
            files.extend(p.file_id.clone());
            tasks.push(p.task_id.clone());
        }
    }
    if !files.is_empty() || !tasks.is_empty() {
        for link in tx.uploads_of_files(&files, &tasks).await? {
            if let Some(task) = link.task_id {
                by_task
                    .entry(task)
                    .or_insert_with(|| link.upload_id.clone());
            }
            by_file.entry(link.file_id).or_insert(link.upload_id);
        }
    }
    for (event, owner) in batch.iter().zip(owner.iter_mut()) {
        if let (Notification::ProcedureStateChanged(p), None) = (&event.notification, &*owner) {
            *owner = p
                .file_id
                .as_ref()
                .and_then(|f| by_file.get(f))
                .or_else(|| by_task.get(&p.task_id))
                .cloned();
        }
    }

    // 2. Store the events whose key is new (the first of equal keys within the batch).
    let mut seen = HashSet::new();
    let rows: Vec<EventRow<'_>> = batch
        .iter()
        .zip(&owner)
        .filter(|(e, _)| seen.insert(e.dedupe_key.as_str()))
        .map(|(e, owner)| {
            let (file_id, task_id) = e.file_and_task();
            EventRow {
                dedupe_key: &e.dedupe_key,
                received_at: e.received_at,
                delivery: e.delivery.as_str(),
                event_type: e.notification.event_type(),
                raw: &e.raw,
                upload_id: owner.as_deref(),
                file_id,
                task_id,
            }
        })
        .collect();
    let inserted: HashSet<String> = tx.insert_events(&rows).await?.into_iter().collect();

    // 3. Receipts, and the uploads this batch changes with the event that changed them last.
    let mut first_of_key: HashSet<&str> = HashSet::new();
    let mut receipts = Vec::with_capacity(batch.len());
    let mut changed: BTreeMap<String, (String, i64)> = BTreeMap::new();
    let mut links = Vec::new();
    for (event, owner) in batch.iter().zip(&owner) {
        let new =
            inserted.contains(&event.dedupe_key) && first_of_key.insert(event.dedupe_key.as_str());
        let receipt = if !new {
            Receipt::Duplicate
        } else {
            match (&event.notification, owner) {
                (Notification::Legacy { .. }, _) => Receipt::Legacy,
                (Notification::Other { event_type }, _) => Receipt::Ignored {
                    event_type: event_type.clone(),
                },
                (_, None) => Receipt::Unmatched,
                (notification, Some(upload)) => {
                    changed.insert(
                        upload.clone(),
                        (event.change_type().to_owned(), event.received_at),
                    );
                    if let Notification::NewFileUpload(f) = notification {
                        links.push(FileLink {
                            file_id: f.file_id.clone(),
                            task_id: f.procedure_task_id.clone(),
                            upload_id: upload.clone(),
                        });
                    }
                    Receipt::Applied
                }
            }
        };
        receipts.push(receipt);
    }
    // Procedure events stored earlier, before their upload arrived.
    if !links.is_empty() {
        tx.link_waiting(&links).await?;
    }
    // The bodies of this batch are parsed already; only older ones are parsed again.
    let parsed: HashMap<&str, &Notification> = batch
        .iter()
        .map(|e| (e.dedupe_key.as_str(), &e.notification))
        .collect();
    rederive(tx, changed, &parsed, issued).await?;
    Ok(receipts)
}

/// Moves uploads still ISSUED past their `expires_at` to EXPIRED, with an `Expired` change.
pub(crate) async fn expire<T: BatchTx>(
    tx: &mut T,
    now: i64,
    limit: u32,
) -> Result<Swept, TrackingError> {
    let (ids, more) = tx.mark_expired(now, limit).await?;
    let expired = ids.len() as u64;
    let changed = ids
        .into_iter()
        .map(|id| (id, ("Expired".to_owned(), now)))
        .collect();
    rederive(tx, changed, &HashMap::new(), Issued::new()).await?;
    Ok(Swept { expired, more })
}

/// Issued records (with the sweeper's expiry time) by upload id, as read in this transaction.
type Issued = HashMap<String, (NewUpload, Option<i64>)>;

fn by_id(record: (NewUpload, Option<i64>)) -> (String, (NewUpload, Option<i64>)) {
    (record.0.upload_id.as_str().to_owned(), record)
}

/// Derives each changed upload again from all its facts, saves it, and records the change
/// (`event_type`, `received_at`) that caused it. `issued` holds records already read.
async fn rederive<T: BatchTx>(
    tx: &mut T,
    mut changed: BTreeMap<String, (String, i64)>,
    parsed: &HashMap<&str, &Notification>,
    mut issued: Issued,
) -> Result<(), TrackingError> {
    if changed.is_empty() {
        return Ok(());
    }
    let ids: Vec<String> = changed.keys().cloned().collect();
    let mut facts: HashMap<String, Vec<Fact>> = HashMap::new();
    for event in tx.applied_events(&ids).await? {
        let fact = match parsed.get(event.dedupe_key.as_str()) {
            Some(notification) => fact_from((*notification).clone(), event.received_at),
            None => fact_of(&event.raw, event.received_at)?,
        };
        if let Some(fact) = fact {
            facts.entry(event.upload_id).or_default().push(fact);
        }
    }
    let unread: Vec<String> = ids
        .iter()
        .filter(|id| !issued.contains_key(id.as_str()))
        .cloned()
        .collect();
    if !unread.is_empty() {
        issued.extend(tx.issued(&unread).await?.into_iter().map(by_id));
    }
    let mut saved: Vec<(Upload, String, i64)> = Vec::with_capacity(ids.len());
    let records = ids.iter().filter_map(|id| issued.remove(id.as_str()));
    for (issued, expired_at) in records {
        let facts = facts.remove(issued.upload_id.as_str()).unwrap_or_default();
        let upload = state::derive(&issued, expired_at, &facts);
        let (event_type, received_at) = changed
            .remove(issued.upload_id.as_str())
            .expect("only changed uploads are loaded");
        saved.push((upload, event_type, received_at));
    }
    tx.save(&saved).await
}
