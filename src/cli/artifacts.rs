//! `humpback artifacts orphans [--remove]`.

use anyhow::anyhow;
use clap::{Args, Subcommand};

use crate::app::{Humpback, Settings};
use crate::config::DataDir;
use crate::log::LogError;

#[derive(Debug, Args)]
pub struct ArtifactsArgs {
    #[command(subcommand)]
    pub command: ArtifactsCommand,
}

#[derive(Debug, Subcommand)]
pub enum ArtifactsCommand {
    /// Files under audio/raw, embeddings and tmp that no event references, and files remote
    /// workers staged in tmp/workers that no live lease holds.
    Orphans {
        /// Delete them.
        #[arg(long)]
        remove: bool,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(data_dir: &DataDir, args: ArtifactsArgs) -> anyhow::Result<i32> {
    let ArtifactsCommand::Orphans { remove, json } = args.command;
    if !data_dir.has_event_log() {
        return Err(anyhow!("there is no event log in {}", data_dir.root().display()));
    }
    let humpback = match Humpback::open_with(
        data_dir.clone(),
        Settings { processing_workers: 0, keep_staged_worker_files: true, ..Settings::default() },
    ) {
        Ok(humpback) => humpback,
        Err(error) if matches!(error.downcast_ref::<LogError>(), Some(LogError::Locked { .. })) => {
            return Err(anyhow!(
                "a running server holds {}: stop it first (looking for orphans needs the data directory to itself)",
                data_dir.root().display()
            ))
        }
        Err(error) => return Err(error),
    };
    let report = crate::artifacts::janitor::find_orphans(&humpback, remove)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for orphan in &report.orphans {
            println!("{orphan}");
        }
        let verb = if remove { "removed" } else { "found (remove them with --remove)" };
        println!("{} orphan files, {} bytes, {verb}", report.orphans.len(), report.bytes);
    }
    Ok(0)
}
