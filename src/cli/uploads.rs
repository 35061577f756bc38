//! `vod-signer uploads get|list|watch`: ask a running service what became of tracked uploads.
//!
//! Output is JSON, one object per line (`watch` prints one per change as it happens), so it
//! pipes into `jq`. Exit codes as for `issue`: 0 ok, 1 refused or not found, 2 usage or setup,
//! 3 no answer.

use clap::{Args, Subcommand};
use futures_util::StreamExt;
use serde_json::{Value, json};
use vod_signer_client::{Error, Upload, UploadChange, WatchFrom, unix_seconds};

use super::exit;
use super::issue::{CALL_FAILED, ClientArgs, fail_call};

#[derive(Debug, Args)]
pub struct UploadsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: UploadsCommand,
}

#[derive(Debug, Subcommand)]
pub enum UploadsCommand {
    /// Print one upload (by the `upload_id` IssueSignature returned).
    Get {
        /// The upload's id.
        #[arg(value_name = "UPLOAD_ID")]
        upload_id: String,
    },
    /// Print one end user's uploads, newest first, one JSON object per line.
    List {
        /// The end user.
        #[arg(long, value_name = "ID")]
        user: String,
        /// Uploads per call (1..=500); default: the service's (50).
        #[arg(long, value_name = "N", default_value_t = 0)]
        page_size: u32,
        /// Stop after this many uploads (default: all).
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// Print every change to this caller's uploads as it happens, until interrupted.
    Watch {
        /// Resume after this change (a `cursor` printed earlier); default: from now on.
        #[arg(long, value_name = "CURSOR")]
        after: Option<String>,
        /// Only this end user's uploads.
        #[arg(long, value_name = "ID")]
        user: Option<String>,
        /// Stop after this many changes (default: never).
        #[arg(long, value_name = "N")]
        count: Option<usize>,
    },
}

/// `NotFound` is an answer about the upload, not a failure to get one.
fn fail(error: &Error) -> i32 {
    match error {
        Error::Other {
            code: tonic::Code::NotFound,
            ..
        } => {
            eprintln!("vod-signer: {error}");
            exit::NEGATIVE
        }
        other => fail_call(other, exit::NEGATIVE),
    }
}

pub(super) fn run(args: UploadsArgs) -> i32 {
    args.client.run(async move |client| match args.command {
        UploadsCommand::Get { upload_id } => match client.get_upload(&upload_id).await {
            Ok(upload) => {
                println!("{}", upload_json(&upload));
                exit::OK
            }
            Err(e) => fail(&e),
        },
        UploadsCommand::List {
            user,
            page_size,
            limit,
        } => {
            let mut printed = 0;
            let mut token: Option<String> = None;
            loop {
                let page = match client
                    .list_uploads(&user, page_size, token.as_deref())
                    .await
                {
                    Ok(page) => page,
                    Err(e) => return fail(&e),
                };
                for upload in &page.uploads {
                    if limit.is_some_and(|l| printed >= l) {
                        return exit::OK;
                    }
                    println!("{}", upload_json(upload));
                    printed += 1;
                }
                match page.next_page_token {
                    Some(next) => token = Some(next),
                    None => return exit::OK,
                }
            }
        }
        UploadsCommand::Watch { after, user, count } => {
            let from = after.map_or(WatchFrom::Now, WatchFrom::After);
            let changes = client.watch_uploads(from, user);
            let mut changes = std::pin::pin!(changes);
            let mut seen = 0;
            while count.is_none_or(|c| seen < c) {
                match changes.next().await {
                    Some(Ok(change)) => {
                        println!("{}", change_json(&change));
                        seen += 1;
                    }
                    Some(Err(e)) => return fail(&e),
                    None => return CALL_FAILED,
                }
            }
            exit::OK
        }
    })
}

fn upload_json(upload: &Upload) -> Value {
    json!({
        "upload_id": upload.upload_id,
        "user_id": upload.user_id,
        "state": upload.state.as_str(),
        "issued_at": unix_seconds(upload.issued_at),
        "expires_at": unix_seconds(upload.expires_at),
        "procedure": upload.procedure,
        "source_context": upload.source_context,
        "session_context": upload.session_context,
        "one_time": upload.one_time,
        "files": upload.files.iter().map(|f| json!({
            "file_id": f.file_id,
            "name": f.name,
            "media_type": f.media_type,
            "media_url": f.media_url,
            "cover_url": f.cover_url,
            "size": f.size,
            "duration": f.duration,
            "procedure_task_id": f.procedure_task_id,
            "state": f.state.as_str(),
        })).collect::<Vec<_>>(),
        "failure": upload.failure.as_ref().map(|f| json!({
            "file_id": f.file_id,
            "subtask_type": f.subtask_type,
            "err_code_ext": f.err_code_ext,
            "message": f.message,
        })),
        "updated_at": unix_seconds(upload.updated_at),
    })
}

fn change_json(change: &UploadChange) -> Value {
    json!({
        "cursor": change.cursor,
        "event_type": change.event_type,
        "received_at": unix_seconds(change.received_at),
        "upload": upload_json(&change.upload),
    })
}
