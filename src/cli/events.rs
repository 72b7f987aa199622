//! `humpback events list|show|tail|stats|verify|export`.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use serde_json::Value;

use super::access::{open_log, LogAccess};
use crate::config::DataDir;
use crate::domain::ids::EventSeq;
use crate::http::events_api::{compute_stats, EventPageJson, EventStats};
use crate::log::filter::{read_page, EventQuery};
use crate::log::{EventLog, VerifyReport};

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Read through the humpback server at this URL instead of opening the data directory.
    #[arg(long, global = true)]
    pub server: Option<String>,

    #[command(subcommand)]
    pub command: EventsCommand,
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// List events, oldest first (filter by type, aggregate, sequence and time).
    List(ListArgs),
    /// Show one event in full.
    Show {
        seq: u64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show the last events, and with -f keep printing new ones as they are recorded.
    Tail {
        /// How many of the last events to show first.
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: usize,
        /// Keep following the log.
        #[arg(short, long)]
        follow: bool,
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long)]
        json: bool,
    },
    /// Count events by type.
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Check that sequences are contiguous and every record decodes; exits 1 at the first bad record.
    Verify {
        #[arg(long)]
        json: bool,
    },
    /// Write events as JSON lines.
    Export {
        /// JSON lines, one event per line (the only export format).
        #[arg(long, required = true)]
        jsonl: bool,
        /// Write to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[command(flatten)]
        filter: FilterArgs,
    },
}

#[derive(Debug, Args, Default, Clone)]
pub struct FilterArgs {
    /// Only events of this type (repeatable), e.g. --type ProcessingJobFailed.
    #[arg(long = "type", value_name = "TYPE")]
    pub types: Vec<String>,
    /// Only events about this aggregate: audio_file:ID, processing_job:ID, embedding_set:ID,
    /// clustering_job:ID or cluster:ID.
    #[arg(long)]
    pub aggregate: Option<String>,
    /// Shorthand for --aggregate audio_file:ID.
    #[arg(long, conflicts_with = "aggregate")]
    pub audio_file: Option<u64>,
    /// Shorthand for --aggregate processing_job:ID.
    #[arg(long, conflicts_with_all = ["aggregate", "audio_file"])]
    pub processing_job: Option<u64>,
    /// Shorthand for --aggregate clustering_job:ID.
    #[arg(long, conflicts_with_all = ["aggregate", "audio_file", "processing_job"])]
    pub clustering_job: Option<u64>,
    /// First sequence to include.
    #[arg(long)]
    pub from_seq: Option<u64>,
    /// Last sequence to include.
    #[arg(long)]
    pub to_seq: Option<u64>,
    /// Only events recorded at or after this time (RFC 3339, or a duration ago: 90m, 2h, 3days).
    #[arg(long)]
    pub since: Option<String>,
    /// Only events recorded at or before this time.
    #[arg(long)]
    pub until: Option<String>,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// At most this many events (0: all).
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Newest first.
    #[arg(long)]
    pub newest_first: bool,
    /// One JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
}

impl FilterArgs {
    fn to_query(&self) -> EventQuery {
        let aggregate = self.aggregate.clone().or_else(|| {
            self.audio_file
                .map(|id| format!("audio_file:{id}"))
                .or_else(|| self.processing_job.map(|id| format!("processing_job:{id}")))
                .or_else(|| self.clustering_job.map(|id| format!("clustering_job:{id}")))
        });
        EventQuery {
            types: (!self.types.is_empty()).then(|| self.types.join(",")),
            aggregate,
            from_seq: self.from_seq,
            to_seq: self.to_seq,
            since: self.since.clone(),
            until: self.until.clone(),
            ..EventQuery::default()
        }
    }
}

impl LogAccess {
    /// One page of events as JSON, from the log or through the server.
    fn page(&self, query: &EventQuery) -> anyhow::Result<EventPageJson> {
        match self {
            LogAccess::Direct(log) => {
                let request = query.parse()?;
                let page = read_page(log, &request)?;
                Ok(EventPageJson {
                    events: page
                        .events
                        .iter()
                        .map(|envelope| serde_json::to_value(envelope.to_json()))
                        .collect::<Result<_, _>>()?,
                    next_cursor: page.next_cursor.map(EventSeq::get),
                    head: page.head.0,
                })
            }
            LogAccess::Server(client) => client.get("/api/events", &query_pairs(query)?),
        }
    }
}

fn query_pairs(query: &EventQuery) -> anyhow::Result<Vec<(&'static str, String)>> {
    let value = serde_json::to_value(query)?;
    let mut pairs = Vec::new();
    if let Value::Object(map) = value {
        for (name, value) in map {
            let name: &'static str = match name.as_str() {
                "type" => "type",
                "aggregate" => "aggregate",
                "from_seq" => "from_seq",
                "to_seq" => "to_seq",
                "since" => "since",
                "until" => "until",
                "limit" => "limit",
                "cursor" => "cursor",
                "order" => "order",
                "wait_seconds" => "wait_seconds",
                _ => continue,
            };
            let text = match value {
                Value::String(text) => text,
                other => other.to_string(),
            };
            pairs.push((name, text));
        }
    }
    Ok(pairs)
}

/// Writes lines to stdout; a closed pipe (`| head`) ends the command quietly.
struct Output {
    writer: Box<dyn Write>,
}

impl Output {
    fn stdout() -> Output {
        Output { writer: Box::new(std::io::stdout().lock()) }
    }

    fn line(&mut self, line: &str) -> anyhow::Result<bool> {
        match writeln!(self.writer, "{line}").and_then(|_| self.writer.flush()) {
            Ok(()) => Ok(true),
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
            Err(error) => Err(error).context("writing output"),
        }
    }
}

fn human_line(event: &Value) -> String {
    format!(
        "{:>7}  {}  {:<30} {}",
        event["seq"],
        event["recorded_at"].as_str().unwrap_or("?"),
        event["type"].as_str().unwrap_or("?"),
        event["summary"].as_str().unwrap_or("")
    )
}

fn render(event: &Value, json: bool) -> String {
    if json {
        event.to_string()
    } else {
        human_line(event)
    }
}

pub fn run(data_dir: &DataDir, bind: &str, args: EventsArgs) -> anyhow::Result<i32> {
    let server = args.server.as_deref();
    match args.command {
        EventsCommand::List(list) => {
            let access = open_log(data_dir, bind, server)?;
            let mut query = list.filter.to_query();
            query.order = list.newest_first.then(|| "desc".to_string());
            let mut remaining = if list.limit == 0 { usize::MAX } else { list.limit };
            let mut out = Output::stdout();
            while remaining > 0 {
                query.limit = Some(remaining.min(crate::log::filter::MAX_PAGE_SIZE));
                let page = access.page(&query)?;
                for event in &page.events {
                    if !out.line(&render(event, list.json))? {
                        return Ok(0);
                    }
                }
                remaining = remaining.saturating_sub(page.events.len());
                match page.next_cursor {
                    Some(cursor) => query.cursor = Some(cursor),
                    None => break,
                }
            }
            Ok(0)
        }
        EventsCommand::Show { seq, json } => {
            let access = open_log(data_dir, bind, server)?;
            let event: Value = match &access {
                LogAccess::Direct(log) => {
                    let envelope = log.get(EventSeq(seq))?.ok_or_else(|| {
                        anyhow!("event {seq} does not exist (the log holds events 1 to {})", log.head())
                    })?;
                    serde_json::to_value(envelope.to_json())?
                }
                LogAccess::Server(client) => client.get(&format!("/api/events/{seq}"), &[])?,
            };
            let mut out = Output::stdout();
            if json {
                out.line(&serde_json::to_string_pretty(&event)?)?;
            } else {
                out.line(&format!(
                    "event {}  ({} v{})",
                    event["seq"],
                    event["type"].as_str().unwrap_or("?"),
                    event["version"]
                ))?;
                out.line(&format!("recorded at  {}", event["recorded_at"].as_str().unwrap_or("?")))?;
                out.line(&format!("concerns     {}", join_strings(&event["aggregates"])))?;
                out.line(&format!("summary      {}", event["summary"].as_str().unwrap_or("")))?;
                out.line(&serde_json::to_string_pretty(&event["data"])?)?;
            }
            Ok(0)
        }
        EventsCommand::Tail { lines, follow, filter, json } => {
            tail(data_dir, bind, server, lines, follow, &filter, json)
        }
        EventsCommand::Stats { json } => {
            let stats: EventStats = match open_log(data_dir, bind, server)? {
                LogAccess::Direct(log) => compute_stats(&log)?,
                LogAccess::Server(client) => client.get("/api/events/stats", &[])?,
            };
            let mut out = Output::stdout();
            if json {
                out.line(&serde_json::to_string_pretty(&stats)?)?;
            } else {
                out.line(&format!("{} events, head {}", stats.total, stats.head))?;
                if let (Some(first), Some(last)) = (&stats.first_recorded_at, &stats.last_recorded_at) {
                    out.line(&format!("recorded from {first} to {last}"))?;
                }
                for (event_type, count) in &stats.by_type {
                    out.line(&format!("{count:>9}  {event_type}"))?;
                }
            }
            Ok(0)
        }
        EventsCommand::Verify { json } => {
            let report: VerifyReport = match open_log(data_dir, bind, server)? {
                LogAccess::Direct(log) => crate::log::verify(&log),
                LogAccess::Server(client) => client.get("/api/events/verify", &[])?,
            };
            let mut out = Output::stdout();
            if json {
                out.line(&serde_json::to_string_pretty(&report)?)?;
            } else {
                match &report.first_problem {
                    None => out.line(&format!(
                        "ok: {} events, sequences 1 to {} contiguous, every record decodes",
                        report.records, report.head
                    ))?,
                    Some(problem) => out.line(&format!(
                        "bad record at event {}: {} ({} good events before it)",
                        problem.seq, problem.problem, report.records
                    ))?,
                };
            }
            Ok(if report.first_problem.is_some() { 1 } else { 0 })
        }
        EventsCommand::Export { jsonl: _, output, filter } => {
            let access = open_log(data_dir, bind, server)?;
            let mut out = match &output {
                Some(path) => Output {
                    writer: Box::new(std::io::BufWriter::new(
                        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
                    )),
                },
                None => Output::stdout(),
            };
            let mut query = filter.to_query();
            query.limit = Some(crate::log::filter::MAX_PAGE_SIZE);
            let mut exported = 0u64;
            loop {
                let page = access.page(&query)?;
                for event in &page.events {
                    if !out.line(&event.to_string())? {
                        return Ok(0);
                    }
                    exported += 1;
                }
                match page.next_cursor {
                    Some(cursor) => query.cursor = Some(cursor),
                    None => break,
                }
            }
            if let Some(path) = output {
                eprintln!("exported {exported} events to {}", path.display());
            }
            Ok(0)
        }
    }
}

fn join_strings(value: &Value) -> String {
    value
        .as_array()
        .map(|items| items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

/// Prints the last `lines` matching events, then (with `follow`) new ones as they arrive:
/// through the server's long poll while a server holds the log, else by re-reading the
/// stopped directory every second (releasing it in between so a server can start).
fn tail(
    data_dir: &DataDir,
    bind: &str,
    server: Option<&str>,
    lines: usize,
    follow: bool,
    filter: &FilterArgs,
    json: bool,
) -> anyhow::Result<i32> {
    let mut out = Output::stdout();
    let mut query = filter.to_query();
    query.order = Some("desc".into());
    query.limit = Some(lines.clamp(1, crate::log::filter::MAX_PAGE_SIZE));
    let access = open_log(data_dir, bind, server)?;
    let page = access.page(&query)?;
    let shown = if lines == 0 { &[][..] } else { &page.events[..] };
    for event in shown.iter().rev() {
        if !out.line(&render(event, json))? {
            return Ok(0);
        }
    }
    if !follow {
        return Ok(0);
    }
    let mut last_seen = page.head;
    query.order = None;
    query.limit = Some(crate::log::filter::MAX_PAGE_SIZE);
    let mut access = Some(access);
    loop {
        let current = match access.take() {
            Some(access) => access,
            None => match open_log(data_dir, bind, server) {
                Ok(access) => access,
                Err(error) => {
                    eprintln!("waiting for the log: {error:#}");
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            },
        };
        query.cursor = Some(last_seen);
        query.wait_seconds = matches!(current, LogAccess::Server(_)).then_some(25);
        match current.page(&query) {
            Ok(page) => {
                for event in &page.events {
                    if !out.line(&render(event, json))? {
                        return Ok(0);
                    }
                    last_seen = event["seq"].as_u64().unwrap_or(last_seen);
                }
                if page.events.is_empty() {
                    // Every event up to the head has been seen, matching or not.
                    last_seen = last_seen.max(page.head);
                }
                if page.next_cursor.is_some() {
                    access = Some(current);
                    continue;
                }
            }
            Err(error) => eprintln!("lost the log: {error:#}; retrying"),
        }
        if let LogAccess::Server(_) = current {
            access = Some(current);
        } else {
            drop(current);
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}
