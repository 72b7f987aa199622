//! `humpback search`: search by example from a stored window, a span of a recording or a clip,
//! through the server that holds the data directory, or directly on a stopped one.

use anyhow::{anyhow, Context};
use clap::Args;
use serde_json::{json, Value};

use super::access::{open_log, LogAccess};
use crate::app::{Humpback, Settings};
use crate::config::DataDir;
use crate::search::{parse_search_request, run_search, SearchAnswer, SearchResult};

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// A stored window as SET:ROW (embedding set id and row index).
    #[arg(long, conflicts_with_all = ["clip", "audio"])]
    pub window: Option<String>,
    /// An audio clip to search with (embedded with the scope's model; not registered).
    #[arg(long, conflicts_with = "audio")]
    pub clip: Option<std::path::PathBuf>,
    /// A recording (by id) whose window starting at --start is the query.
    #[arg(long, requires = "start")]
    pub audio: Option<u64>,
    /// Seconds into the recording given with --audio.
    #[arg(long)]
    pub start: Option<f64>,
    /// How many windows to return.
    #[arg(long, default_value_t = crate::search::DEFAULT_K)]
    pub k: usize,
    /// Only the sets of the recordings in this folder (and below).
    #[arg(long, conflicts_with = "sets")]
    pub folder: Option<String>,
    /// Only these embedding sets, comma-separated ids.
    #[arg(long, value_delimiter = ',')]
    pub sets: Vec<u64>,
    /// Only sets of this model version.
    #[arg(long, conflicts_with = "sets")]
    pub model_version: Option<String>,
    /// cosine (similarity, higher is better) or euclidean (distance, lower is better).
    #[arg(long, default_value = "cosine")]
    pub metric: String,
    /// Leave out the windows of the query's own recording.
    #[arg(long)]
    pub exclude_same_recording: bool,
    /// One JSON object per result line.
    #[arg(long)]
    pub json: bool,
    /// Go through the humpback server at this URL.
    #[arg(long)]
    pub server: Option<String>,
    /// On a stopped data directory: where the models are (default: DATA_DIR/models).
    #[arg(long, env = "HUMPBACK_MODELS_DIR")]
    pub models_dir: Option<std::path::PathBuf>,
    /// On a stopped data directory: offer the `fake` model, for sets it encoded.
    #[arg(long, env = "HUMPBACK_ENABLE_FAKE_MODEL")]
    pub enable_fake_model: bool,
}

/// The request body, without the clip.
fn request_body(args: &SearchArgs) -> anyhow::Result<Value> {
    let mut body = serde_json::Map::new();
    if let Some(window) = &args.window {
        let (set, row) = window
            .split_once(':')
            .and_then(|(set, row)| Some((set.trim().parse::<u64>().ok()?, row.trim().parse::<u64>().ok()?)))
            .ok_or_else(|| anyhow!("--window must be SET:ROW, like 3:120, not {window:?}"))?;
        body.insert("query".into(), json!({"embedding_set_id": set, "row_index": row}));
    } else if let Some(audio) = args.audio {
        body.insert("query".into(), json!({"audio_file_id": audio, "start_seconds": args.start.unwrap_or(0.0)}));
    } else if args.clip.is_none() {
        return Err(anyhow!("choose the query: --window SET:ROW, --clip FILE or --audio ID --start SECONDS"));
    }
    if !args.sets.is_empty() {
        body.insert("embedding_set_ids".into(), json!(args.sets));
    }
    if let Some(folder) = &args.folder {
        body.insert("folder".into(), json!(folder));
    }
    if let Some(version) = &args.model_version {
        body.insert("model_version".into(), json!(version));
    }
    body.insert("k".into(), json!(args.k));
    body.insert("metric".into(), json!(args.metric));
    body.insert("exclude_same_recording".into(), json!(args.exclude_same_recording));
    Ok(Value::Object(body))
}

fn print_answer(answer: &SearchAnswer, json_lines: bool) -> anyhow::Result<()> {
    if json_lines {
        for result in &answer.results {
            println!("{}", serde_json::to_string(result)?);
        }
        return Ok(());
    }
    eprintln!(
        "{} windows in {} sets searched (model {}, {}, exact) in {:.1} ms",
        answer.searched_windows, answer.searched_sets, answer.model_version, answer.metric, answer.elapsed_ms
    );
    let score_name = if answer.metric == "euclidean" { "distance" } else { "score" };
    println!("{:>4}  {:>9}  {:<32}  {:>19}  set:row", "rank", score_name, "recording", "start-end (s)");
    for SearchResult {
        rank, score, recording, folder, start_seconds, end_seconds, embedding_set_id, row_index, ..
    } in &answer.results
    {
        let name = if folder.is_empty() { recording.clone() } else { format!("{folder}/{recording}") };
        let span = format!("{start_seconds:.2}-{end_seconds:.2}");
        println!("{rank:>4}  {score:>9.4}  {name:<32}  {span:>19}  {embedding_set_id}:{row_index}");
    }
    Ok(())
}

pub fn run(data_dir: &DataDir, bind: &str, args: SearchArgs) -> anyhow::Result<i32> {
    let body = request_body(&args)?;
    let answer: SearchAnswer = match open_log(data_dir, bind, args.server.as_deref())? {
        LogAccess::Server(client) => match &args.clip {
            Some(clip) => {
                let bytes = std::fs::read(clip).with_context(|| format!("reading {}", clip.display()))?;
                let name = clip.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
                client.post_multipart("/api/search", &[("request", body.to_string())], ("file", &name, &bytes))?
            }
            None => client.post_json("/api/search", &body)?,
        },
        LogAccess::Direct(log) => {
            drop(log);
            let humpback = Humpback::open_with(
                data_dir.clone(),
                Settings {
                    processing_workers: 0,
                    clustering_workers: 0,
                    models_dir: args.models_dir.clone(),
                    enable_fake_model: args.enable_fake_model,
                    ..Settings::default()
                },
            )?;
            let request = parse_search_request(&body, args.clip.is_some())?;
            run_search(&humpback, &request, args.clip.as_deref())?
        }
    };
    print_answer(&answer, args.json)?;
    Ok(0)
}
