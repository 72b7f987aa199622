//! `humpback process`: queue processing for files, a folder or recordings, and follow the jobs
//! with a progress bar (like `humpback cluster`). Through the server that holds the data
//! directory, or, when none runs, through a server started in this process for the duration.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use serde_json::{json, Value};

use super::access::{open_log, LogAccess};
use super::client::ServerClient;
use crate::config::DataDir;

#[derive(Debug, Args)]
pub struct ProcessArgs {
    /// Audio files to upload (or find, when already registered) and process.
    #[arg(conflicts_with_all = ["folder", "audio"])]
    pub files: Vec<PathBuf>,
    /// Every recording in this humpback folder (and below it).
    #[arg(long, conflicts_with = "audio")]
    pub folder: Option<String>,
    /// Recordings by id, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub audio: Vec<u64>,
    /// The model (default: the server's default model).
    #[arg(long)]
    pub model: Option<String>,
    /// Window length in seconds (default: the model's).
    #[arg(long)]
    pub window_seconds: Option<f64>,
    /// Hop between windows in seconds (default: the window).
    #[arg(long)]
    pub hop_seconds: Option<f64>,
    /// Resample to this rate first (default: the model's).
    #[arg(long)]
    pub target_sample_rate: Option<u32>,
    /// Feature configuration as JSON, e.g. '{"short_file": "skip"}'.
    #[arg(long)]
    pub feature_config: Option<String>,
    /// Queue and print the jobs, without following them.
    #[arg(long)]
    pub no_wait: bool,
    /// Go through the humpback server at this URL.
    #[arg(long)]
    pub server: Option<String>,
    /// Without a running server: offer the `fake` model in the server started for this command.
    #[arg(long)]
    pub enable_fake_model: bool,
    /// Print the jobs as JSON at the end.
    #[arg(long)]
    pub json: bool,
}

/// The body of `POST /api/processing-jobs` for these arguments (files become ids first).
pub fn queue_body(args: &ProcessArgs, uploaded_ids: &[u64]) -> anyhow::Result<Value> {
    let mut body = json!({});
    if !uploaded_ids.is_empty() {
        body["audio_file_ids"] = json!(uploaded_ids);
    } else if let Some(folder) = &args.folder {
        body["folder"] = json!(folder);
    } else if !args.audio.is_empty() {
        body["audio_file_ids"] = json!(args.audio);
    } else {
        bail!("choose what to process: FILES, --folder F or --audio IDS");
    }
    if let Some(model) = &args.model {
        body["model"] = json!(model);
    }
    if let Some(seconds) = args.window_seconds {
        body["window_seconds"] = json!(seconds);
    }
    if let Some(seconds) = args.hop_seconds {
        body["hop_seconds"] = json!(seconds);
    }
    if let Some(rate) = args.target_sample_rate {
        body["target_sample_rate"] = json!(rate);
    }
    if let Some(features) = &args.feature_config {
        body["feature_config"] = serde_json::from_str(features).context("--feature-config is not valid JSON")?;
    }
    Ok(body)
}

pub fn run(data_dir: &DataDir, bind: &str, args: ProcessArgs) -> anyhow::Result<i32> {
    if args.files.is_empty() && args.folder.is_none() && args.audio.is_empty() {
        bail!("choose what to process: FILES, --folder F or --audio IDS");
    }
    let access = if data_dir.has_event_log() || args.server.is_some() {
        Some(open_log(data_dir, bind, args.server.as_deref())?)
    } else {
        None
    };
    match access {
        Some(LogAccess::Server(client)) => process_through(&client, &args),
        direct => {
            drop(direct);
            let settings = crate::app::Settings { enable_fake_model: args.enable_fake_model, ..Default::default() };
            with_local_server(data_dir, settings, |client| process_through(client, &args))
        }
    }
}

/// Runs `work` against a server started in this process on a free loopback port, then stops
/// it (jobs still running are handed back to the queue).
fn with_local_server(
    data_dir: &DataDir,
    settings: crate::app::Settings,
    work: impl FnOnce(&ServerClient) -> anyhow::Result<i32>,
) -> anyhow::Result<i32> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let config = crate::app::ServeConfig { data_dir: data_dir.clone(), settings, bind: "127.0.0.1:0".into() };
    let application = runtime.block_on(crate::app::Application::build(config))?;
    let address = application.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = runtime.spawn(application.run_until(async move {
        let _ = stopped.await;
    }));
    let client = ServerClient::new(&format!("http://{address}"), None);
    let result = work(&client);
    let _ = stop.send(());
    runtime.block_on(serving).context("the local server stopped")??;
    result
}

fn process_through(client: &ServerClient, args: &ProcessArgs) -> anyhow::Result<i32> {
    let mut uploaded = Vec::new();
    for file in &args.files {
        let name = file.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
        let (status, answer) = client.upload_recording(file, &name, "")?;
        match (status, answer.get("id").and_then(|id| id.as_u64())) {
            (200 | 201, Some(id)) => uploaded.push(id),
            _ => bail!(
                "{} was refused ({status}): {}",
                file.display(),
                answer.get("error").and_then(|error| error.as_str()).unwrap_or("no reason given")
            ),
        }
    }
    let body = queue_body(args, &uploaded)?;
    let queued: Value = client.post_json("/api/processing-jobs", &body)?;
    let jobs: Vec<u64> = match &queued {
        Value::Array(jobs) => jobs.iter().filter_map(|job| job["id"].as_u64()).collect(),
        job => job["id"].as_u64().into_iter().collect(),
    };
    if jobs.is_empty() {
        bail!("nothing was queued (no recordings matched)");
    }
    if args.no_wait {
        let jobs_text: Vec<String> = jobs.iter().map(u64::to_string).collect();
        if args.json {
            println!("{}", serde_json::to_string_pretty(&queued)?);
        } else {
            println!(
                "queued processing jobs {} (follow them with `humpback process --audio ...` or the web UI)",
                jobs_text.join(", ")
            );
        }
        return Ok(0);
    }
    let mut cursor = client.get::<Value>("/health", &[])?["log_head"].as_u64().unwrap_or(0);
    let finals = loop {
        let states: Vec<Value> = jobs
            .iter()
            .map(|id| client.get::<Value>(&format!("/api/processing-jobs/{id}"), &[]))
            .collect::<anyhow::Result<_>>()?;
        let progress = ProgressSummary::of(&states);
        show_progress(&progress);
        if progress.finished == states.len() {
            if std::io::stderr().is_terminal() {
                eprintln!();
            }
            break states;
        }
        // Wake on the next event (progress, completion), at most a few seconds later.
        let page: Value = client.get("/api/events", &[("cursor", cursor.to_string()), ("wait_seconds", "5".into())])?;
        if let Some(last) = page["events"].as_array().and_then(|events| events.last()) {
            cursor = last["seq"].as_u64().unwrap_or(cursor);
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&finals)?);
    } else {
        for job in &finals {
            let outcome = match job["status"].as_str().unwrap_or("?") {
                "complete" => match job["embedding_set_id"].as_u64() {
                    Some(set) => format!("complete: embedding set {set}"),
                    None => "complete: no windows".to_string(),
                },
                other => format!("{other}: {}", job["error_message"].as_str().unwrap_or("")),
            };
            println!("job {} (recording {}): {outcome}", job["id"], job["audio_file_id"]);
        }
    }
    let all_complete = finals.iter().all(|job| job["status"] == "complete");
    Ok(if all_complete { 0 } else { 1 })
}

/// Windows and jobs done across the followed jobs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProgressSummary {
    pub jobs: usize,
    pub finished: usize,
    pub windows_done: u64,
    pub windows_total: u64,
}

impl ProgressSummary {
    pub fn of(jobs: &[Value]) -> ProgressSummary {
        let mut summary = ProgressSummary { jobs: jobs.len(), finished: 0, windows_done: 0, windows_total: 0 };
        for job in jobs {
            let status = job["status"].as_str().unwrap_or("");
            if matches!(status, "complete" | "failed" | "canceled") {
                summary.finished += 1;
            }
            let total = job["windows_total"].as_u64().unwrap_or(0);
            let done = if status == "complete" { total } else { job["windows_done"].as_u64().unwrap_or(0) };
            summary.windows_done += done.min(total);
            summary.windows_total += total;
        }
        summary
    }

    /// 0 to 1: finished jobs count whole, running ones by their windows.
    pub fn fraction(&self) -> f64 {
        if self.jobs == 0 {
            return 1.0;
        }
        if self.windows_total > 0 && self.finished < self.jobs {
            (self.windows_done as f64 / self.windows_total as f64)
                .min(1.0)
                .max(self.finished as f64 / self.jobs as f64 * 0.999)
        } else {
            self.finished as f64 / self.jobs as f64
        }
    }
}

fn show_progress(progress: &ProgressSummary) {
    let width = 30;
    let fraction = progress.fraction();
    let filled = (fraction.clamp(0.0, 1.0) * width as f64) as usize;
    let line = format!(
        "[{}{}] {:>3.0}% {}/{} jobs, {} windows",
        "#".repeat(filled),
        "-".repeat(width - filled),
        fraction * 100.0,
        progress.finished,
        progress.jobs,
        progress.windows_done
    );
    if std::io::stderr().is_terminal() {
        eprint!("\r\x1b[2K{line}");
    } else {
        eprintln!("{line}");
    }
    let _ = std::io::stderr().flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(arguments: &[&str]) -> ProcessArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            process: ProcessArgs,
        }
        Wrapper::try_parse_from(std::iter::once("process").chain(arguments.iter().copied())).unwrap().process
    }

    #[test]
    fn the_queue_body_names_what_to_process_and_the_window_options() {
        let body = queue_body(&args(&["--folder", "site-a", "--model", "fake", "--window-seconds", "2"]), &[]).unwrap();
        assert_eq!(body, json!({ "folder": "site-a", "model": "fake", "window_seconds": 2.0 }));
        let body = queue_body(&args(&["--audio", "3,4", "--hop-seconds", "0.5"]), &[]).unwrap();
        assert_eq!(body, json!({ "audio_file_ids": [3, 4], "hop_seconds": 0.5 }));
        let body = queue_body(&args(&["a.wav", "b.wav"]), &[7, 8]).unwrap();
        assert_eq!(body, json!({ "audio_file_ids": [7, 8] }));
        assert!(queue_body(&args(&[]), &[]).is_err());
        assert!(queue_body(&args(&["--audio", "1", "--feature-config", "{oops"]), &[]).is_err());
    }

    #[test]
    fn progress_counts_finished_jobs_whole_and_running_ones_by_windows() {
        let jobs = vec![
            json!({ "status": "complete", "windows_done": 10, "windows_total": 10 }),
            json!({ "status": "running", "windows_done": 5, "windows_total": 10 }),
            json!({ "status": "queued" }),
        ];
        let summary = ProgressSummary::of(&jobs);
        assert_eq!((summary.finished, summary.windows_done, summary.windows_total), (1, 15, 20));
        assert!((summary.fraction() - 0.75).abs() < 1e-9);
        let done = ProgressSummary::of(&[json!({ "status": "failed" })]);
        assert_eq!(done.fraction(), 1.0);
    }
}
