//! `humpback projections status|rebuild`.

use anyhow::Context;
use clap::{Args, Subcommand};

use super::access::{open_log, LogAccess};
use crate::config::DataDir;
use crate::http::projections_api::{ProjectionsJson, RebuildRequest};
use crate::log::EventLog;
use crate::projections::runner::{status, RebuildReport};
use crate::projections::{open_read_connection, Projector};

#[derive(Debug, Args)]
pub struct ProjectionsArgs {
    /// Go through the humpback server at this URL instead of opening the data directory.
    #[arg(long, global = true)]
    pub server: Option<String>,

    #[command(subcommand)]
    pub command: ProjectionsCommand,
}

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Each projection's schema version, checkpoint and lag behind the log.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Drop one projection (or all) and replay the whole log into it.
    Rebuild {
        /// A projection name (see `status`); all when omitted.
        name: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(data_dir: &DataDir, bind: &str, args: ProjectionsArgs) -> anyhow::Result<i32> {
    let access = open_log(data_dir, bind, args.server.as_deref())?;
    match args.command {
        ProjectionsCommand::Status { json } => {
            let report = match &access {
                LogAccess::Direct(log) => {
                    let head = log.head();
                    let database = data_dir.projections_db();
                    let projections = if database.exists() {
                        let connection = open_read_connection(&database)?;
                        status(&connection, head)?
                    } else {
                        status(&rusqlite::Connection::open_in_memory()?, head).unwrap_or_default()
                    };
                    ProjectionsJson { head: head.0, projections }
                }
                LogAccess::Server(client) => client.get("/api/projections", &[])?,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("log head {}", report.head);
                println!("{:<22} {:>7} {:>10} {:>8}  rebuilt at", "projection", "version", "checkpoint", "lag");
                for projection in &report.projections {
                    let version = match projection.stored_version {
                        Some(stored) if stored == projection.schema_version => stored.to_string(),
                        Some(stored) => format!("{stored}->{}", projection.schema_version),
                        None => format!("new {}", projection.schema_version),
                    };
                    println!(
                        "{:<22} {:>7} {:>10} {:>8}  {}",
                        projection.name,
                        version,
                        projection.last_seq,
                        projection.lag,
                        projection.rebuilt_at.as_deref().unwrap_or("never")
                    );
                }
            }
            Ok(0)
        }
        ProjectionsCommand::Rebuild { name, json } => {
            let names: Vec<String> = name.into_iter().collect();
            let report: RebuildReport = match &access {
                LogAccess::Direct(log) => {
                    let storage = crate::services::open_storage(data_dir, None, true)?;
                    let mut projector = Projector::open_with_storage(&data_dir.projections_db(), storage)?;
                    projector.rebuild(log, &names).context("rebuilding projections")?
                }
                LogAccess::Server(client) => {
                    client.post_json("/api/projections/rebuild", &serde_json::to_value(RebuildRequest { names })?)?
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!(
                    "rebuilt {} from {} events in {:.2} s",
                    report.projections.join(", "),
                    report.events_replayed,
                    report.seconds
                );
            }
            Ok(0)
        }
    }
}
