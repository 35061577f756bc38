//! The statements of a batch on the SQLite writer. Each runs synchronously (the futures are
//! ready at once; see `writer`), one prepared statement per row: in-process, a row costs a
//! step of a cached statement, so nothing is gained by building one statement per list.

use rusqlite::types::Type;
use rusqlite::{OptionalExtension, params};

use super::super::{AppliedEvent, BatchTx, EventRow, FileLink, encode_upload};
use super::writer::WriteTx;
use crate::tracking::model::{NewUpload, Upload};
use crate::tracking::{TrackingError, UploadId};

impl BatchTx for WriteTx<'_> {
    async fn uploads_of_files(
        &mut self,
        file_ids: &[String],
        task_ids: &[String],
    ) -> Result<Vec<FileLink>, TrackingError> {
        let mut links = Vec::new();
        for (sql, values) in [
            (
                "SELECT file_id, task_id, upload_id FROM events
                 WHERE event_type = 'NewFileUpload' AND upload_id IS NOT NULL AND file_id = ?1",
                file_ids,
            ),
            (
                "SELECT file_id, task_id, upload_id FROM events
                 WHERE event_type = 'NewFileUpload' AND upload_id IS NOT NULL AND task_id = ?1",
                task_ids,
            ),
        ] {
            let mut query = self.connection.prepare_cached(sql)?;
            for value in values {
                let rows = query.query_map([value], |row| {
                    Ok(FileLink {
                        file_id: row.get("file_id")?,
                        task_id: row.get("task_id")?,
                        upload_id: row.get("upload_id")?,
                    })
                })?;
                for link in rows {
                    links.push(link?);
                }
            }
        }
        Ok(links)
    }

    async fn insert_events(&mut self, rows: &[EventRow<'_>]) -> Result<Vec<String>, TrackingError> {
        let mut insert = self.connection.prepare_cached(
            "INSERT INTO events (dedupe_key, received_at, delivery, event_type, raw, upload_id,
                file_id, task_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (dedupe_key) DO NOTHING",
        )?;
        let mut inserted = Vec::with_capacity(rows.len());
        for event in rows {
            let count = insert.execute(params![
                event.dedupe_key,
                event.received_at,
                event.delivery,
                event.event_type,
                event.raw,
                event.upload_id,
                event.file_id,
                event.task_id,
            ])?;
            if count == 1 {
                inserted.push(event.dedupe_key.to_owned());
            }
        }
        Ok(inserted)
    }

    async fn link_waiting(&mut self, links: &[FileLink]) -> Result<Vec<String>, TrackingError> {
        // Without statistics SQLite would search `events_by_upload` for NULL, that is every
        // unmatched event, once per link; the waiting indexes are named instead. Almost no
        // upload has events waiting, so two index probes decide whether to run the update.
        let mut by_file = self.connection.prepare_cached(
            "SELECT 1 FROM events INDEXED BY waiting_by_file
             WHERE upload_id IS NULL AND event_type = 'ProcedureStateChanged' AND file_id = ?1",
        )?;
        let mut by_task = self.connection.prepare_cached(
            "SELECT 1 FROM events INDEXED BY waiting_by_task
             WHERE upload_id IS NULL AND event_type = 'ProcedureStateChanged' AND task_id = ?1",
        )?;
        let mut waiting = Vec::new();
        for link in links {
            let found = by_file.exists([&link.file_id])?
                || match &link.task_id {
                    Some(task) => by_task.exists([task])?,
                    None => false,
                };
            if found {
                waiting.push(link);
            }
        }
        drop((by_file, by_task));
        if waiting.is_empty() {
            return Ok(Vec::new());
        }
        let mut update = self.connection.prepare_cached(
            "UPDATE events SET upload_id = ?1
             WHERE rowid IN (
               SELECT rowid FROM events INDEXED BY waiting_by_file
                WHERE upload_id IS NULL AND event_type = 'ProcedureStateChanged'
                  AND file_id = ?2
               UNION
               SELECT rowid FROM events INDEXED BY waiting_by_task
                WHERE upload_id IS NULL AND event_type = 'ProcedureStateChanged'
                  AND task_id = ?3)
             RETURNING upload_id",
        )?;
        let mut touched = Vec::new();
        for link in waiting {
            let rows = update
                .query_map(params![link.upload_id, link.file_id, link.task_id], |row| {
                    row.get::<_, String>(0)
                })?;
            for upload_id in rows {
                touched.push(upload_id?);
            }
        }
        Ok(touched)
    }

    async fn issued(
        &mut self,
        upload_ids: &[String],
    ) -> Result<Vec<(NewUpload, Option<i64>)>, TrackingError> {
        let mut query = self.connection.prepare_cached(
            "SELECT upload_id, caller, user_id, issued_at, expires_at, procedure,
                source_context, session_context, one_time, expired_at
             FROM uploads WHERE upload_id = ?1",
        )?;
        let mut found = Vec::with_capacity(upload_ids.len());
        for id in upload_ids {
            let row = query
                .query_row([id], |row| {
                    let upload_id: String = row.get("upload_id")?;
                    // A stored id that no longer parses is corrupt data (see `TrackingError`).
                    let upload_id = UploadId::parse(&upload_id).map_err(|e| {
                        rusqlite::Error::FromSqlConversionFailure(0, Type::Text, Box::new(e))
                    })?;
                    Ok((
                        NewUpload {
                            upload_id,
                            caller: row.get("caller")?,
                            user_id: row.get("user_id")?,
                            issued_at: row.get("issued_at")?,
                            expires_at: row.get("expires_at")?,
                            procedure: row.get("procedure")?,
                            source_context: row.get("source_context")?,
                            session_context: row.get("session_context")?,
                            one_time: row.get("one_time")?,
                        },
                        row.get::<_, Option<i64>>("expired_at")?,
                    ))
                })
                .optional()?;
            found.extend(row);
        }
        Ok(found)
    }

    async fn applied_events(
        &mut self,
        upload_ids: &[String],
    ) -> Result<Vec<AppliedEvent>, TrackingError> {
        let mut query = self.connection.prepare_cached(
            "SELECT upload_id, dedupe_key, raw, received_at FROM events WHERE upload_id = ?1",
        )?;
        let mut found = Vec::new();
        for id in upload_ids {
            let rows = query.query_map([id], |row| {
                Ok(AppliedEvent {
                    upload_id: row.get("upload_id")?,
                    dedupe_key: row.get("dedupe_key")?,
                    raw: row.get("raw")?,
                    received_at: row.get("received_at")?,
                })
            })?;
            for event in rows {
                found.push(event?);
            }
        }
        Ok(found)
    }

    async fn mark_expired(
        &mut self,
        now: i64,
        limit: u32,
    ) -> Result<(Vec<String>, bool), TrackingError> {
        let mut update = self.connection.prepare_cached(
            "UPDATE uploads SET expired_at = ?1
             WHERE upload_id IN (SELECT upload_id FROM uploads
                                 WHERE state = 'issued' AND expires_at < ?1 AND expired_at IS NULL
                                 LIMIT ?2)
             RETURNING upload_id",
        )?;
        let rows = update.query_map(params![now, i64::from(limit)], |row| row.get(0))?;
        let ids: Vec<String> = rows.collect::<Result<_, _>>()?;
        let more = ids.len() as u64 == u64::from(limit);
        Ok((ids, more))
    }

    async fn save(&mut self, changes: &[(Upload, String, i64)]) -> Result<(), TrackingError> {
        let mut update = self.connection.prepare_cached(
            "UPDATE uploads SET state = ?2, updated_at = ?3, snapshot = ?4 WHERE upload_id = ?1",
        )?;
        let mut append = self.connection.prepare_cached(
            "INSERT INTO changes (upload_id, caller, user_id, event_type, received_at, snapshot)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for (upload, event_type, received_at) in changes {
            let snapshot = encode_upload(upload);
            update.execute(params![
                upload.upload_id.as_str(),
                upload.state.as_str(),
                upload.updated_at,
                snapshot,
            ])?;
            append.execute(params![
                upload.upload_id.as_str(),
                upload.caller,
                upload.user_id,
                event_type,
                received_at,
                snapshot,
            ])?;
        }
        Ok(())
    }
}
