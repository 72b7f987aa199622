//! `humpback annotations export|import`: Raven selection tables (or CSV) out of and into the
//! library. Both are the HTTP API's own requests, sent to the server that holds the data
//! directory, or, when none does, answered in this process by the same router.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use clap::{Args, Subcommand};
use tower::ServiceExt;

use super::access::{open_log, LogAccess};
use super::client::ServerClient;
use crate::app::{Humpback, Settings};
use crate::config::DataDir;

#[derive(Debug, Args)]
pub struct AnnotationsArgs {
    #[command(subcommand)]
    pub command: AnnotationsCommand,
    /// Go through the humpback server at this URL.
    #[arg(long, global = true)]
    pub server: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum AnnotationsCommand {
    /// Write a selection table: annotations (filtered), or a clustering job's windows.
    Export {
        #[arg(long)]
        label: Option<String>,
        #[arg(long)]
        kind: Option<String>,
        #[arg(long)]
        audio_file: Option<u64>,
        /// A clustering job's windows with their cluster (with --audio-file: that recording's).
        #[arg(long)]
        clustering_job: Option<u64>,
        /// `raven` (tab-separated) or `csv`.
        #[arg(long, default_value = "raven")]
        format: String,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Read a selection table (Raven or CSV) into annotations.
    Import {
        file: PathBuf,
        #[arg(long, default_value = "raven")]
        format: String,
        /// Every row to this recording (otherwise rows are matched by Begin File / Begin Path).
        #[arg(long)]
        audio_file: Option<u64>,
        #[arg(long, default_value = "Annotation")]
        label_column: String,
        #[arg(long)]
        kind_column: Option<String>,
        /// Show what would be recorded, record nothing.
        #[arg(long)]
        preview: bool,
        /// Record the good rows even when some are bad.
        #[arg(long)]
        skip_bad_rows: bool,
        #[arg(long)]
        json: bool,
    },
}

/// Where requests go: a server, or this process's own router over the data directory.
enum Target {
    Server(ServerClient),
    Local { runtime: tokio::runtime::Runtime, router: axum::Router, _stop: tokio::sync::watch::Sender<bool> },
}

impl Target {
    fn open(data_dir: &DataDir, bind: &str, server: Option<&str>) -> anyhow::Result<Target> {
        match open_log(data_dir, bind, server)? {
            LogAccess::Server(client) => {
                eprintln!("going through the server at {}", client.base_url());
                Ok(Target::Server(client))
            }
            LogAccess::Direct(log) => {
                drop(log);
                let settings = Settings { processing_workers: 0, clustering_workers: 0, ..Settings::default() };
                let humpback = Arc::new(Humpback::open_with(data_dir.clone(), settings)?);
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .context("starting the runtime")?;
                let (stop, stopping) = tokio::sync::watch::channel(false);
                runtime.spawn(humpback.clone().run_projection_catch_up(stopping.clone()));
                let router = crate::http::routes::router(humpback, stopping);
                Ok(Target::Local { runtime, router, _stop: stop })
            }
        }
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        match self {
            Target::Server(client) => client.send_raw(method, path, content_type, body),
            Target::Local { runtime, router, .. } => {
                let mut request = axum::http::Request::builder().method(method).uri(path);
                if let Some(content_type) = content_type {
                    request = request.header("content-type", content_type);
                }
                let request = request.body(axum::body::Body::from(body)).context("building the request")?;
                runtime.block_on(async {
                    let response = router.clone().oneshot(request).await.context("answering the request")?;
                    let status = response.status().as_u16();
                    let bytes =
                        axum::body::to_bytes(response.into_body(), usize::MAX).await.context("reading the answer")?;
                    Ok((status, bytes.to_vec()))
                })
            }
        }
    }
}

fn error_of(status: u16, body: &[u8]) -> anyhow::Error {
    let message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|json| json.get("error").and_then(|e| e.as_str()).map(String::from))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    anyhow!("{status}: {message}")
}

fn query(pairs: &[(&str, Option<String>)]) -> String {
    let parts: Vec<String> = pairs
        .iter()
        .filter_map(|(name, value)| value.as_ref().map(|value| format!("{name}={}", crate::views::url_encode(value))))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

pub fn run(data_dir: &DataDir, bind: &str, args: AnnotationsArgs) -> anyhow::Result<i32> {
    let target = Target::open(data_dir, bind, args.server.as_deref())?;
    match args.command {
        AnnotationsCommand::Export { label, kind, audio_file, clustering_job, format, output } => {
            let format_query = Some(format.clone());
            let path = match (clustering_job, audio_file) {
                (Some(job), Some(audio)) => format!(
                    "/api/audio/{audio}/selections.txt{}",
                    query(&[("clustering_job_id", Some(job.to_string())), ("format", format_query)])
                ),
                (Some(job), None) => {
                    format!("/api/clustering-jobs/{job}/selections.txt{}", query(&[("format", format_query)]))
                }
                (None, audio) => format!(
                    "/api/annotations/selections.txt{}",
                    query(&[
                        ("label", label),
                        ("kind", kind),
                        ("audio_file_id", audio.map(|id| id.to_string())),
                        ("format", format_query),
                    ])
                ),
            };
            let (status, body) = target.send("GET", &path, None, Vec::new())?;
            if status != 200 {
                return Err(error_of(status, &body));
            }
            match output {
                Some(path) => {
                    std::fs::write(&path, &body).with_context(|| format!("writing {}", path.display()))?;
                    eprintln!(
                        "wrote {} rows to {}",
                        body.iter().filter(|b| **b == b'\n').count().saturating_sub(1),
                        path.display()
                    );
                }
                None => {
                    use std::io::Write;
                    std::io::stdout().write_all(&body)?;
                }
            }
            Ok(0)
        }
        AnnotationsCommand::Import {
            file,
            format,
            audio_file,
            label_column,
            kind_column,
            preview,
            skip_bad_rows,
            json,
        } => {
            let table = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let name = file.file_name().and_then(|name| name.to_str()).unwrap_or("selections.txt").replace('"', "");
            let boundary = "humpback-cli-annotations-7f3a";
            let mut body = Vec::new();
            let mut field = |field: &str, value: &str| {
                body.extend_from_slice(
                    format!("--{boundary}\r\ncontent-disposition: form-data; name=\"{field}\"\r\n\r\n{value}\r\n")
                        .as_bytes(),
                );
            };
            field("format", &format);
            field("label_column", &label_column);
            if let Some(audio) = audio_file {
                field("audio_file_id", &audio.to_string());
            }
            if let Some(kind_column) = &kind_column {
                field("kind_column", kind_column);
            }
            field("preview", if preview { "true" } else { "false" });
            field("skip_bad_rows", if skip_bad_rows { "true" } else { "false" });
            body.extend_from_slice(
                format!(
                    "--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
                     content-type: text/plain\r\n\r\n"
                )
                .as_bytes(),
            );
            body.extend_from_slice(&table);
            body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
            let content_type = format!("multipart/form-data; boundary={boundary}");
            let (status, answer) = target.send("POST", "/api/annotations/import", Some(&content_type), body)?;
            let answer_json: serde_json::Value = serde_json::from_slice(&answer).unwrap_or(serde_json::Value::Null);
            if json {
                println!("{}", serde_json::to_string_pretty(&answer_json)?);
            }
            let bad_rows = answer_json["bad_rows"].as_array().cloned().unwrap_or_default();
            if !json {
                for bad in &bad_rows {
                    eprintln!("row {}: {}", bad["row"], bad["reason"].as_str().unwrap_or_default());
                }
            }
            if !(200..300).contains(&status) {
                return Err(error_of(status, &answer));
            }
            if !json {
                let would = if preview { "would be recorded" } else { "recorded" };
                let count = if preview {
                    answer_json["annotations"].as_array().map_or(0, Vec::len)
                } else {
                    answer_json["count"].as_u64().unwrap_or(0) as usize
                };
                println!(
                    "{count} annotations {would}, {} already there, {} bad rows",
                    answer_json["duplicates"].as_u64().unwrap_or(0),
                    bad_rows.len()
                );
            }
            Ok(0)
        }
    }
}
