//! `humpback cluster`: queue a clustering job, follow it with a progress bar, print the clusters.

use std::io::{IsTerminal, Write};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use clap::Args;
use serde_json::{json, Value};

use super::access::{open_log, LogAccess};
use crate::app::{Humpback, Settings};
use crate::clustering_jobs::request::{parse_request, RequestError};
use crate::clustering_jobs::worker::{ClusteringStep, ClusteringWorker};
use crate::config::DataDir;
use crate::domain::decide::Command;
use crate::domain::events::Event;
use crate::domain::ids::WorkerId;

#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Embedding sets to cluster, comma-separated ids.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["folder", "model_version"])]
    pub sets: Vec<u64>,
    /// Every embedding set of the recordings in this folder (and below).
    #[arg(long, conflicts_with = "model_version")]
    pub folder: Option<String>,
    /// Every embedding set of this model version.
    #[arg(long)]
    pub model_version: Option<String>,
    /// Clustering parameters as JSON, e.g. '{"algorithm": {"method": "kmeans", "k": 8, "seed": 1}}'.
    #[arg(long, default_value = "{}")]
    pub parameters: String,
    /// A categorical reference for ARI/NMI: `folder` or a metadata path like visual_observations.behaviour.
    #[arg(long)]
    pub reference_field: Option<String>,
    /// Go through the humpback server at this URL.
    #[arg(long)]
    pub server: Option<String>,
    #[arg(long)]
    pub json: bool,
}

fn request_body(args: &ClusterArgs) -> anyhow::Result<Value> {
    let mut body: Value = serde_json::from_str(&args.parameters).context("--parameters is not valid JSON")?;
    let object = body.as_object_mut().ok_or_else(|| anyhow!("--parameters must be a JSON object"))?;
    if !args.sets.is_empty() {
        object.insert("embedding_set_ids".into(), json!(args.sets));
    } else if let Some(folder) = &args.folder {
        object.insert("folder".into(), json!(folder));
    } else if let Some(version) = &args.model_version {
        object.insert("model_version".into(), json!(version));
    } else {
        return Err(anyhow!("choose what to cluster: --sets, --folder or --model-version"));
    }
    if let Some(field) = &args.reference_field {
        object.insert("reference_field".into(), json!(field));
    }
    Ok(body)
}

fn show_progress(stage: &str, fraction: f64) {
    let width = 30;
    let filled = ((fraction.clamp(0.0, 1.0)) * width as f64) as usize;
    if std::io::stderr().is_terminal() {
        eprint!("\r\x1b[2K[{}{}] {:>3.0}% {stage}", "#".repeat(filled), "-".repeat(width - filled), fraction * 100.0);
    } else {
        eprintln!("[{}{}] {:>3.0}% {stage}", "#".repeat(filled), "-".repeat(width - filled), fraction * 100.0);
    }
    let _ = std::io::stderr().flush();
}

fn print_summary(job: &Value, clusters: &Value, json_output: bool) -> anyhow::Result<()> {
    if json_output {
        println!("{}", serde_json::to_string_pretty(&json!({"job": job, "clusters": clusters}))?);
        return Ok(());
    }
    println!(
        "clustering job {} {}: {} clusters over {} windows ({} noise)",
        job["id"],
        job["status"].as_str().unwrap_or("?"),
        job["metrics"]["cluster_count"],
        job["metrics"]["rows"],
        job["metrics"]["noise_count"]
    );
    if let Some(error) = job["error_message"].as_str() {
        println!("error: {error}");
    }
    for cluster in clusters.as_array().into_iter().flatten() {
        let name = if cluster["label"].as_i64() == Some(-1) {
            "noise".to_string()
        } else {
            format!("cluster {}", cluster["label"])
        };
        println!("  {name:<12} {:>7} windows", cluster["size"]);
    }
    Ok(())
}

pub fn run(data_dir: &DataDir, bind: &str, args: ClusterArgs) -> anyhow::Result<i32> {
    let body = request_body(&args)?;
    match open_log(data_dir, bind, args.server.as_deref())? {
        LogAccess::Server(client) => {
            let job: Value = client.post_json("/api/clustering-jobs", &body)?;
            let id = job["id"].as_u64().ok_or_else(|| anyhow!("the server answered without a job id"))?;
            loop {
                let job: Value = client.get(&format!("/api/clustering-jobs/{id}"), &[])?;
                let status = job["status"].as_str().unwrap_or("");
                show_progress(job["stage"].as_str().unwrap_or(status), job["progress"].as_f64().unwrap_or(0.0));
                if matches!(status, "complete" | "failed" | "canceled") {
                    eprintln!();
                    let clusters: Value = if status == "complete" {
                        client.get(&format!("/api/clustering-jobs/{id}/clusters"), &[])?
                    } else {
                        json!([])
                    };
                    print_summary(&job, &clusters, args.json)?;
                    return Ok(if status == "complete" { 0 } else { 1 });
                }
                let cursor = client.get::<Value>("/health", &[])?["log_head"].as_u64().unwrap_or(0).to_string();
                let _: Value = client.get("/api/events", &[("cursor", cursor), ("wait_seconds", "5".into())])?;
            }
        }
        LogAccess::Direct(log) => {
            drop(log);
            let humpback = Arc::new(Humpback::open_with(
                data_dir.clone(),
                Settings { processing_workers: 0, ..Settings::default() },
            )?);
            let request = humpback.writer.read_state(|s| parse_request(&body, s)).map_err(|error| match error {
                RequestError::Invalid(message) | RequestError::NothingSelected(message) => anyhow!(message),
            })?;
            let envelopes = humpback.writer.execute(Command::QueueClusteringJob {
                embedding_set_ids: request.embedding_set_ids,
                parameters: request.stored.to_json_text(),
            })?;
            let id = envelopes
                .iter()
                .find_map(|envelope| match &envelope.event {
                    Event::ClusteringJobQueued(queued) => Some(queued.job_id),
                    _ => None,
                })
                .ok_or_else(|| anyhow!("no job was queued"))?;
            let worker_humpback = humpback.clone();
            let worker = std::thread::spawn(move || -> anyhow::Result<()> {
                let mut worker = ClusteringWorker::new(
                    worker_humpback.clone(),
                    WorkerId("cli".into()),
                    Arc::new(AtomicBool::new(false)),
                );
                loop {
                    match worker.step()? {
                        ClusteringStep::Ran { job_id, .. } if job_id == id => return Ok(()),
                        ClusteringStep::Idle => return Ok(()),
                        ClusteringStep::Ran { .. } => {}
                    }
                }
            });
            while !worker.is_finished() {
                let (stage, fraction) = humpback
                    .reader
                    .with_connection(|c| {
                        humpback.catch_up_projections()?;
                        Ok(crate::projections::queries::clustering_job(c, id.0)?
                            .map(|job| (job.stage.unwrap_or_default(), job.progress.unwrap_or(0.0))))
                    })?
                    .unwrap_or_default();
                show_progress(&stage, fraction);
                std::thread::sleep(Duration::from_millis(200));
            }
            worker.join().map_err(|_| anyhow!("the clustering worker panicked"))??;
            humpback.catch_up_projections()?;
            show_progress("done", 1.0);
            eprintln!();
            let (job, clusters) = humpback.reader.with_connection(|c| {
                Ok((
                    crate::projections::queries::clustering_job(c, id.0)?,
                    crate::projections::queries::clusters(c, id.0)?,
                ))
            })?;
            let job = serde_json::to_value(job)?;
            print_summary(&job, &serde_json::to_value(clusters)?, args.json)?;
            Ok(if job["status"] == "complete" { 0 } else { 1 })
        }
    }
}
