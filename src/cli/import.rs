//! `humpback import DIR`: register every recording below a folder.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{anyhow, Context};
use clap::Args;

use super::access::{open_log, LogAccess};
use crate::app::{Humpback, Settings};
use crate::config::DataDir;
use crate::ingest::{import_folder, ImportSummary, IngestOutcome};

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The folder to import (searched recursively for .wav, .mp3 and .flac), or a bucket prefix
    /// (`s3://bucket/prefix/`, `gs://…`, `az://…`) whose recordings are registered where they
    /// sit, without a copy.
    pub folder: PathBuf,
    /// Import through the humpback server at this URL instead of opening the data directory.
    #[arg(long)]
    pub server: Option<String>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// Register each recording where it sits (`file:///…`) instead of copying it into storage:
    /// for an archive on a shared filesystem that every worker mounts at the same path. Through
    /// a server, the folder must be below one of its `--import-root` folders.
    #[arg(long)]
    pub in_place: bool,
}

pub fn run(data_dir: &DataDir, bind: &str, args: ImportArgs) -> anyhow::Result<i32> {
    let requested = args.folder.to_string_lossy().into_owned();
    if crate::storage::is_object_url(&requested) {
        return import_objects(data_dir, bind, &args, &requested);
    }
    let folder = std::fs::canonicalize(&args.folder)
        .with_context(|| format!("cannot import {}: no such folder", args.folder.display()))?;
    if !folder.is_dir() {
        return Err(anyhow!("cannot import {}: it is not a folder", folder.display()));
    }
    // Without a log yet, this is a fresh data directory: create it.
    let access = access_for(data_dir, bind, &args)?;
    let summary: ImportSummary = match access {
        Some(LogAccess::Server(client)) if args.in_place => {
            eprintln!(
                "registering the recordings below {} where they sit, through the server at {}",
                folder.display(),
                client.base_url()
            );
            client.post_json("/api/audio/import", &serde_json::json!({ "path": folder, "in_place": true }))?
        }
        Some(LogAccess::Server(client)) => {
            eprintln!(
                "importing {} through the server at {} (uploading each file)",
                folder.display(),
                client.base_url()
            );
            import_through_server(&client, &folder, report_progress)?
        }
        direct => {
            drop(direct);
            let humpback = Humpback::open_with(data_dir.clone(), Settings::default())?;
            let summary = if args.in_place {
                crate::ingest::import_folder_in_place(&humpback, &folder, None, report_progress)?
            } else {
                import_folder(&humpback, &folder, humpback.settings.max_upload_bytes, None, report_progress)?
            };
            humpback.catch_up_projections()?;
            summary
        }
    };
    print_summary(&summary, args.json)?;
    Ok(0)
}

/// `humpback import s3://bucket/prefix/`: registers the recordings below a bucket prefix where
/// they sit (each read once, for its checksum and its format), directly or through a server
/// (which must name the prefix with `--import-root`).
fn import_objects(data_dir: &DataDir, bind: &str, args: &ImportArgs, url: &str) -> anyhow::Result<i32> {
    let access = access_for(data_dir, bind, args)?;
    let summary: ImportSummary = match access {
        Some(LogAccess::Server(client)) => {
            eprintln!("registering the recordings below {url} through the server at {}", client.base_url());
            client.post_json("/api/audio/import", &serde_json::json!({ "path": url }))?
        }
        direct => {
            drop(direct);
            let humpback = Humpback::open_with(data_dir.clone(), Settings::default())?;
            eprintln!("registering the recordings below {url} where they sit");
            let summary = crate::ingest::import_object_prefix(&humpback, url, report_progress)?;
            humpback.catch_up_projections()?;
            summary
        }
    };
    print_summary(&summary, args.json)?;
    Ok(0)
}

fn print_summary(summary: &ImportSummary, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(summary)?);
    } else {
        println!(
            "{} added, {} already there, {} rejected",
            summary.added.len(),
            summary.duplicates.len(),
            summary.rejected.len()
        );
        for rejected in &summary.rejected {
            println!("  rejected {}: {}", rejected.path, rejected.reason);
        }
        for skipped in &summary.skipped {
            println!("  skipped {}: {}", skipped.path, skipped.reason);
        }
    }
    Ok(())
}

/// The server that holds the data directory, the log itself, or (no log yet: a fresh data
/// directory, created by the import) nothing.
fn access_for(data_dir: &DataDir, bind: &str, args: &ImportArgs) -> anyhow::Result<Option<LogAccess>> {
    if data_dir.has_event_log() || args.server.is_some() {
        Ok(Some(open_log(data_dir, bind, args.server.as_deref())?))
    } else {
        Ok(None)
    }
}

/// One line per file on stderr (redrawn in place on a terminal).
fn report_progress(done: usize, total: usize, path: &str, outcome: &Result<IngestOutcome, String>) {
    let what = match outcome {
        Ok(IngestOutcome::Added(id)) => format!("added as audio file {id}"),
        Ok(IngestOutcome::Duplicate(id)) => format!("already there as audio file {id}"),
        Err(reason) => format!("rejected: {reason}"),
    };
    let bar = progress_bar(done, total, 24);
    if std::io::stderr().is_terminal() {
        eprint!("\r\x1b[2K{bar} {done}/{total} {path}: {what}");
        if done == total {
            eprintln!();
        }
    } else {
        eprintln!("{bar} {done}/{total} {path}: {what}");
    }
    let _ = std::io::stderr().flush();
}

/// Through a running server, the CLI reads the folder itself and uploads each file, so it can
/// import any folder it can read, whatever the server's import roots.
fn import_through_server(
    client: &super::client::ServerClient,
    folder: &std::path::Path,
    mut progress: impl FnMut(usize, usize, &str, &Result<IngestOutcome, String>),
) -> anyhow::Result<ImportSummary> {
    use crate::ingest::{find_audio_files, imported_name};
    let found = find_audio_files(folder, None);
    let mut summary = ImportSummary { skipped: found.skipped, ..ImportSummary::default() };
    for (index, relative) in found.files.iter().enumerate() {
        let name = imported_name(folder, relative);
        let (status, answer) = client.upload_recording(&folder.join(relative), &name.filename, &name.folder)?;
        let id = answer.get("id").and_then(|id| id.as_u64()).map(crate::domain::ids::AudioFileId);
        let outcome = match (status, id) {
            (201, Some(id)) => Ok(IngestOutcome::Added(id)),
            (200, Some(id)) => Ok(IngestOutcome::Duplicate(id)),
            (401 | 403, _) => {
                let reason = answer.get("error").and_then(|e| e.as_str()).unwrap_or("refused").to_string();
                anyhow::bail!("the server refused the upload ({status}): {reason}")
            }
            _ => Err(answer.get("error").and_then(|e| e.as_str()).unwrap_or("refused by the server").to_string()),
        };
        summary.record(&name.display, &outcome);
        progress(index + 1, found.files.len(), &name.display, &outcome);
    }
    Ok(summary)
}

fn progress_bar(done: usize, total: usize, width: usize) -> String {
    let filled = (done * width).checked_div(total).unwrap_or(width);
    format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled))
}
