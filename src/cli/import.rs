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
    /// The folder to import (searched recursively for .wav, .mp3 and .flac).
    pub folder: PathBuf,
    /// Import through the humpback server at this URL instead of opening the data directory.
    #[arg(long)]
    pub server: Option<String>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(data_dir: &DataDir, bind: &str, args: ImportArgs) -> anyhow::Result<i32> {
    let folder = std::fs::canonicalize(&args.folder)
        .with_context(|| format!("cannot import {}: no such folder", args.folder.display()))?;
    if !folder.is_dir() {
        return Err(anyhow!("cannot import {}: it is not a folder", folder.display()));
    }
    // Without a log yet, this is a fresh data directory: create it.
    let access = if data_dir.has_event_log() || args.server.is_some() {
        Some(open_log(data_dir, bind, args.server.as_deref())?)
    } else {
        None
    };
    let summary: ImportSummary = match access {
        Some(LogAccess::Server(client)) => {
            eprintln!("importing {} through the server at {}", folder.display(), client.base_url());
            client.post_json("/api/audio/import", &serde_json::json!({ "path": folder }))?
        }
        direct => {
            drop(direct);
            let humpback = Humpback::open_with(data_dir.clone(), Settings::default())?;
            let interactive = std::io::stderr().is_terminal();
            let summary =
                import_folder(&humpback, &folder, humpback.settings.max_upload_bytes, |done, total, path, outcome| {
                    let what = match outcome {
                        Ok(IngestOutcome::Added(id)) => format!("added as audio file {id}"),
                        Ok(IngestOutcome::Duplicate(id)) => format!("already there as audio file {id}"),
                        Err(reason) => format!("rejected: {reason}"),
                    };
                    let bar = progress_bar(done, total, 24);
                    if interactive {
                        eprint!("\r\x1b[2K{bar} {done}/{total} {path}: {what}");
                        if done == total {
                            eprintln!();
                        }
                    } else {
                        eprintln!("{bar} {done}/{total} {path}: {what}");
                    }
                    let _ = std::io::stderr().flush();
                })?;
            humpback.catch_up_projections()?;
            summary
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
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
    }
    Ok(0)
}

fn progress_bar(done: usize, total: usize, width: usize) -> String {
    let filled = (done * width).checked_div(total).unwrap_or(width);
    format!("[{}{}]", "#".repeat(filled), "-".repeat(width - filled))
}
