//! The tables and indexes of the SQLite store, created (if missing) when it opens.

pub(super) const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS uploads (
        upload_id TEXT PRIMARY KEY,
        caller TEXT NOT NULL,
        user_id TEXT NOT NULL,
        issued_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        procedure TEXT,
        source_context TEXT,
        session_context TEXT,
        one_time INTEGER NOT NULL,
        expired_at INTEGER,
        state TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        snapshot TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS uploads_by_user
        ON uploads (caller, user_id, issued_at DESC, upload_id DESC)",
    "CREATE INDEX IF NOT EXISTS uploads_by_state ON uploads (state, expires_at)",
    "CREATE INDEX IF NOT EXISTS uploads_by_updated ON uploads (updated_at)",
    "CREATE TABLE IF NOT EXISTS events (
        dedupe_key TEXT PRIMARY KEY,
        received_at INTEGER NOT NULL,
        delivery TEXT NOT NULL,
        event_type TEXT NOT NULL,
        raw BLOB NOT NULL,
        upload_id TEXT,
        file_id TEXT,
        task_id TEXT)",
    "CREATE INDEX IF NOT EXISTS events_by_upload ON events (upload_id)",
    // Uploads' files, found by FileId or procedure task id when a ProcedureStateChanged does
    // not name its upload. Only matched NewFileUpload events are ever looked up this way, so
    // only they are indexed: every other event costs no index page.
    "DROP INDEX IF EXISTS events_by_file",
    "DROP INDEX IF EXISTS events_by_task",
    "CREATE INDEX IF NOT EXISTS matched_by_file ON events (file_id)
        WHERE event_type = 'NewFileUpload' AND upload_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS matched_by_task ON events (task_id)
        WHERE event_type = 'NewFileUpload' AND upload_id IS NOT NULL AND task_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS events_by_received ON events (received_at)",
    // Procedure events still waiting for their upload. Most stored events never match an
    // upload (untracked uploads, other event types), so linking must not search all of those.
    "CREATE INDEX IF NOT EXISTS waiting_by_file ON events (file_id)
        WHERE upload_id IS NULL AND event_type = 'ProcedureStateChanged'",
    "CREATE INDEX IF NOT EXISTS waiting_by_task ON events (task_id)
        WHERE upload_id IS NULL AND event_type = 'ProcedureStateChanged'",
    "CREATE TABLE IF NOT EXISTS changes (
        position INTEGER PRIMARY KEY AUTOINCREMENT,
        upload_id TEXT NOT NULL,
        caller TEXT NOT NULL,
        user_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        snapshot TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS changes_by_caller ON changes (caller, position)",
    "CREATE TABLE IF NOT EXISTS feed (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        pruned_through INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO feed (id, pruned_through) VALUES (1, 0)",
];
