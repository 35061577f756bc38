//! The tables and indexes, created by the first replica to start.
//!
//! Every text column uses the "C" collation. They hold identifiers, states and JSON, which
//! nobody reads in a language's sort order, and under the database's default locale (often
//! `en_US.UTF-8`, or `C.UTF-8` before PostgreSQL 17) each B-tree comparison of a key went
//! through `strcoll`, a large part of what inserting an event costs (BENCHMARKS.md).
//!
//! No index of `uploads` covers a column that receiving an event changes (`state`,
//! `updated_at`, `snapshot`; nor `expired_at`, which the expiry sweep sets), and its pages keep
//! free room: so applying an event is a heap-only (HOT) update, which writes no index entry at
//! all. The room is large (`fillfactor = 40`) because a received upload's row grows by its
//! files, and a burst of events updates every row of a page in one transaction, before any old
//! version can be pruned. The sweeps that used to find uploads by state use what does not move
//! instead: `upload_expiry` (filled by a trigger when an upload is inserted, emptied by the
//! expiry sweep), `issued_at` for retention, and a partial index on the generated column
//! `awaiting_procedure` for reconciliation; that column changes only when an upload with a
//! procedure settles, expires, or gets another file after it.

/// Whether an upload waits for its procedure's outcome: it has one, and is not READY, FAILED
/// or EXPIRED.
macro_rules! awaiting_procedure {
    () => {
        "procedure IS NOT NULL AND state IN ('issued', 'uploaded', 'processing')"
    };
}

pub(super) const SCHEMA: &[&str] = &[
    concat!(
        "CREATE TABLE IF NOT EXISTS uploads (
        upload_id TEXT COLLATE \"C\" PRIMARY KEY,
        caller TEXT COLLATE \"C\" NOT NULL,
        user_id TEXT COLLATE \"C\" NOT NULL,
        issued_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        procedure TEXT COLLATE \"C\",
        source_context TEXT COLLATE \"C\",
        session_context TEXT COLLATE \"C\",
        one_time BOOLEAN NOT NULL,
        expired_at BIGINT,
        state TEXT COLLATE \"C\" NOT NULL,
        updated_at BIGINT NOT NULL,
        snapshot TEXT COLLATE \"C\" NOT NULL,
        awaiting_procedure BOOLEAN GENERATED ALWAYS AS (",
        awaiting_procedure!(),
        ") STORED)
        WITH (fillfactor = 40)"
    ),
    "CREATE INDEX IF NOT EXISTS uploads_by_user
        ON uploads (caller, user_id, issued_at DESC, upload_id DESC)",
    // Each issued upload's expiry, due once; the sweep takes the due rows off and expires
    // those uploads still ISSUED. A database from before this table gets its pending uploads
    // (found through the state index it still has).
    r#"DO $$ BEGIN
        IF to_regclass('upload_expiry') IS NULL THEN
            CREATE TABLE upload_expiry (
                expires_at BIGINT NOT NULL,
                upload_id TEXT COLLATE "C" NOT NULL);
            CREATE INDEX upload_expiry_by_time ON upload_expiry (expires_at);
            INSERT INTO upload_expiry (expires_at, upload_id)
            SELECT expires_at, upload_id FROM uploads
             WHERE state = 'issued' AND expired_at IS NULL;
        END IF;
    END $$"#,
    // The database queues every inserted upload itself, so that a replica of an older version
    // still running during a rolling upgrade (whose inserts do not know the queue) leaves none
    // out.
    r#"CREATE OR REPLACE FUNCTION vod_signer_queue_expiry() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO upload_expiry (expires_at, upload_id)
            SELECT expires_at, upload_id FROM inserted;
            RETURN NULL;
        END $$"#,
    r#"DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_trigger
                       WHERE tgrelid = 'uploads'::regclass AND tgname = 'uploads_queue_expiry')
        THEN
            CREATE TRIGGER uploads_queue_expiry AFTER INSERT ON uploads
                REFERENCING NEW TABLE AS inserted
                FOR EACH STATEMENT EXECUTE FUNCTION vod_signer_queue_expiry();
        END IF;
    END $$"#,
    "DROP INDEX IF EXISTS uploads_by_state",
    "DROP INDEX IF EXISTS uploads_by_updated",
    // Room on each page for the new version of a row, which a HOT update needs. Set only when
    // missing: the ALTER waits for any vacuum of the table.
    r#"DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_class
                       WHERE oid = 'uploads'::regclass
                         AND 'fillfactor=40' = ANY(reloptions)) THEN
            ALTER TABLE uploads SET (fillfactor = 40);
        END IF;
    END $$"#,
    "CREATE INDEX IF NOT EXISTS uploads_by_issued ON uploads (issued_at)",
    "CREATE TABLE IF NOT EXISTS events (
        dedupe_key TEXT COLLATE \"C\" PRIMARY KEY,
        received_at BIGINT NOT NULL,
        delivery TEXT COLLATE \"C\" NOT NULL,
        event_type TEXT COLLATE \"C\" NOT NULL,
        raw BYTEA NOT NULL,
        upload_id TEXT COLLATE \"C\",
        file_id TEXT COLLATE \"C\",
        task_id TEXT COLLATE \"C\")",
    "CREATE INDEX IF NOT EXISTS events_by_upload ON events (upload_id)",
    // Uploads' files, found by FileId or procedure task id when a ProcedureStateChanged does
    // not name its upload. Only matched NewFileUpload events are looked up this way, so only
    // they are indexed: every other event costs no index entry.
    "DROP INDEX IF EXISTS events_by_file",
    "DROP INDEX IF EXISTS events_by_task",
    "CREATE INDEX IF NOT EXISTS matched_by_file ON events (file_id)
        WHERE event_type = 'NewFileUpload' AND upload_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS matched_by_task ON events (task_id)
        WHERE event_type = 'NewFileUpload' AND upload_id IS NOT NULL AND task_id IS NOT NULL",
    "CREATE INDEX IF NOT EXISTS events_by_received ON events (received_at)",
    // Procedure events still waiting for their upload: linking searches these only, not
    // every unmatched event.
    "CREATE INDEX IF NOT EXISTS waiting_by_file ON events (file_id)
        WHERE upload_id IS NULL AND event_type = 'ProcedureStateChanged'",
    "CREATE INDEX IF NOT EXISTS waiting_by_task ON events (task_id)
        WHERE upload_id IS NULL AND event_type = 'ProcedureStateChanged'",
    "CREATE TABLE IF NOT EXISTS changes (
        position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        upload_id TEXT COLLATE \"C\" NOT NULL,
        caller TEXT COLLATE \"C\" NOT NULL,
        user_id TEXT COLLATE \"C\" NOT NULL,
        event_type TEXT COLLATE \"C\" NOT NULL,
        received_at BIGINT NOT NULL,
        snapshot TEXT COLLATE \"C\" NOT NULL)",
    "CREATE INDEX IF NOT EXISTS changes_by_caller ON changes (caller, position)",
    "CREATE TABLE IF NOT EXISTS feed (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        pruned_through BIGINT NOT NULL)",
    "INSERT INTO feed (id, pruned_through) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
    "ALTER TABLE feed ADD COLUMN IF NOT EXISTS durable_through BIGINT NOT NULL DEFAULT 0",
    // Tables created before the collation was set: their text columns move to "C" once (this
    // rebuilds the indexes on them).
    r#"DO $$
    DECLARE c record;
    BEGIN
        FOR c IN
            SELECT a.attrelid::regclass AS rel, a.attname AS col
            FROM pg_attribute a
            WHERE a.attrelid IN ('uploads'::regclass, 'events'::regclass, 'changes'::regclass)
              AND a.attnum > 0 AND NOT a.attisdropped
              AND a.atttypid = 'text'::regtype
              AND a.attcollation <> 'pg_catalog."C"'::regcollation
        LOOP
            EXECUTE format('ALTER TABLE %s ALTER COLUMN %I TYPE TEXT COLLATE "C"', c.rel, c.col);
        END LOOP;
    END $$"#,
    // Computed by the database (also for an older replica's writes). It changes when an
    // upload with a procedure settles or expires, never when one without a procedure is
    // received. Adding it rewrites an older table once; after the collation above, since a
    // column a generated one reads cannot change its type.
    concat!(
        r#"DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_attribute
                       WHERE attrelid = 'uploads'::regclass AND attname = 'awaiting_procedure'
                         AND NOT attisdropped AND attgenerated = 's') THEN
            ALTER TABLE uploads DROP COLUMN IF EXISTS awaiting_procedure;
            ALTER TABLE uploads ADD COLUMN awaiting_procedure BOOLEAN
                GENERATED ALWAYS AS ("#,
        awaiting_procedure!(),
        r#") STORED;
        END IF;
    END $$"#
    ),
    "CREATE INDEX IF NOT EXISTS uploads_awaiting_procedure ON uploads (issued_at)
        WHERE awaiting_procedure",
];
