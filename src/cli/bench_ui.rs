//! `humpback bench ui`: how fast the web pages are with a realistic library.
//!
//! Builds the library through the real code paths (WAV files imported as `humpback import`
//! does, metadata edits through the writer, processing jobs queued through the HTTP API and run
//! by real processing workers with the `fake` model, one clustering job over every window queued
//! through the API and run by the real clustering worker), then opens the data directory with a
//! server on 127.0.0.1:0 and requests every page R times over HTTP: median and p95 latency and
//! response size per page, sorted by median, slow pages flagged.
//!
//! Every build stage skips what is already done, so `--dir` on a built library only times the
//! pages, and an interrupted build resumes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::json;

use crate::app::{Application, Humpback, ServeConfig, Settings};
use crate::config::DataDir;
use crate::domain::decide::{Command, EditAudioMetadata, MetadataEditMode};
use crate::domain::ids::{AudioFileId, ClusteringJobId, ProcessingJobId, WorkerId};
use crate::domain::json_text::JsonText;
use crate::domain::state::JobStatus;

/// Sample rate of the generated recordings: small files, still real audio to decode and resample.
const SAMPLE_RATE: u32 = 2_000;
const SITES: &[&str] = &["site-a", "site-b", "site-c", "site-d"];
const MONTHS: &[&str] = &["2026-05", "2026-06", "2026-07"];
const BEHAVIOURS: &[&str] = &["feeding", "travelling", "resting", "socialising"];
/// Base tone of each sound group (Hz): windows of a group land near each other.
const GROUP_TONES: &[f32] = &[70.0, 140.0, 260.0, 420.0, 650.0];
/// A page slower than this (median) is flagged.
const SLOW_MILLISECONDS: f64 = 200.0;
const BODY_LIMIT: u64 = 1 << 30;
const PROCESSING_WORKERS: usize = 2;
/// Marks a data directory as built by this command (and so safe to add to and reuse).
const LIBRARY_MARKER: &str = "bench-ui-library.txt";

#[derive(Debug, clap::Args)]
pub struct BenchUiArgs {
    /// Recordings in the library.
    #[arg(long, default_value_t = 1000)]
    pub recordings: usize,
    /// Seconds per recording; the fake model cuts 1 s windows with a 1 s hop, so also windows.
    #[arg(long, default_value_t = 100)]
    pub windows_per_recording: usize,
    /// A data directory to build the library in (new or empty), or to reuse when an earlier run
    /// built one there (default: a temporary directory, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Requests per page.
    #[arg(long, default_value_t = 20)]
    pub repeat: usize,
    /// Dimension of the fake model's embeddings (1280 for an archive-sized clustering).
    #[arg(long, default_value_t = 32)]
    pub embedding_dim: u32,
    /// The clustering job's parameters (the JSON of `POST /api/clustering-jobs` without the
    /// sets); default: PCA to 2 dimensions and k-means with k = 8. `{}` runs the defaults
    /// (UMAP to 5 dimensions, HDBSCAN, a 2-D UMAP layout for the map).
    #[arg(long, default_value = DEFAULT_CLUSTERING)]
    pub clustering: String,
}

const DEFAULT_CLUSTERING: &str = r#"{"normalize_l2": true, "reduction": {"method": "pca", "n_components": 2}, "plot_2d": true, "algorithm": {"method": "kmeans", "k": 8, "seed": 42}, "reference_field": "tag_data.deployment.site"}"#;

pub fn run(args: BenchUiArgs) -> anyhow::Result<()> {
    if args.recordings == 0 || args.windows_per_recording < 2 || args.repeat == 0 || args.embedding_dim == 0 {
        bail!("--recordings, --repeat and --embedding-dim must be at least 1, --windows-per-recording at least 2");
    }
    let clustering: serde_json::Value = serde_json::from_str(&args.clustering).context("--clustering is not JSON")?;
    if !clustering.is_object() {
        bail!("--clustering must be a JSON object, e.g. '{{}}'");
    }
    let scratch;
    let root = match &args.dir {
        Some(dir) => {
            check_library_dir(dir)?;
            dir.clone()
        }
        None => {
            scratch = tempfile::Builder::new().prefix("humpback-bench-ui-").tempdir()?;
            scratch.path().to_path_buf()
        }
    };
    println!("library: {}", root.display());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    build_library(&runtime, &root, &args)?;
    time_pages(&runtime, &root, &args)?;
    Ok(())
}

/// Accepts a new or empty directory (marking it as a bench library) or one this command built
/// before; refuses anything else, so that a real data directory never gets bench recordings.
fn check_library_dir(dir: &Path) -> anyhow::Result<()> {
    let marker = dir.join(LIBRARY_MARKER);
    if marker.is_file() {
        return Ok(());
    }
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
        if entries.next().is_some() {
            bail!(
                "{} is not empty and was not built by `humpback bench ui` (it has no {LIBRARY_MARKER}); \
                 give a new or empty folder",
                dir.display()
            );
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(&marker, "A library built by `humpback bench ui`; reused by later runs with --dir.\n")
        .with_context(|| format!("writing {}", marker.display()))?;
    Ok(())
}

/// No workers of their own (the build runs them); the fake model at the recordings' rate (no
/// resampling) with `embedding_dim` dimensions.
fn bench_settings(embedding_dim: u32) -> Settings {
    let fake_model_config = crate::model::FakeModelConfig {
        sample_rate: SAMPLE_RATE,
        embedding_dim,
        ..crate::model::FakeModelConfig::default()
    };
    Settings {
        enable_fake_model: true,
        fake_model_config,
        processing_workers: 0,
        clustering_workers: 0,
        ..Settings::default()
    }
}

/// A server on 127.0.0.1:0 over the data directory, with no workers of its own.
struct BenchServer {
    base_url: String,
    humpback: Arc<Humpback>,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl BenchServer {
    fn start(runtime: &tokio::runtime::Runtime, root: &Path, embedding_dim: u32) -> anyhow::Result<BenchServer> {
        let config = ServeConfig {
            data_dir: DataDir::new(root),
            settings: bench_settings(embedding_dim),
            bind: "127.0.0.1:0".into(),
        };
        let application = runtime.block_on(Application::build(config))?;
        let base_url = format!("http://{}", application.local_addr()?);
        let humpback = application.humpback();
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let task = runtime.spawn(application.run_until(async move {
            let _ = stop.await;
        }));
        Ok(BenchServer { base_url, humpback, shutdown, task })
    }

    /// Stops the server and waits until it has released the data directory.
    fn stop(self, runtime: &tokio::runtime::Runtime) -> anyhow::Result<()> {
        let BenchServer { humpback, shutdown, task, .. } = self;
        drop(humpback);
        let _ = shutdown.send(());
        runtime.block_on(task).context("the server task failed")??;
        Ok(())
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(600)))
        .http_status_as_error(false)
        .build()
        .into()
}

fn post_json(agent: &ureq::Agent, url: &str, body: &serde_json::Value) -> anyhow::Result<serde_json::Value> {
    let mut response = agent.post(url).send_json(body).with_context(|| format!("posting to {url}"))?;
    let status = response.status();
    let text = response.body_mut().with_config().limit(BODY_LIMIT).read_to_string()?;
    if !status.is_success() {
        bail!("{url} answered {status}: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("the answer of {url} is not JSON"))
}

fn get_json(agent: &ureq::Agent, url: &str) -> anyhow::Result<serde_json::Value> {
    let mut response = agent.get(url).call().with_context(|| format!("requesting {url}"))?;
    let status = response.status();
    let text = response.body_mut().with_config().limit(BODY_LIMIT).read_to_string()?;
    if !status.is_success() {
        bail!("{url} answered {status}: {text}");
    }
    serde_json::from_str(&text).with_context(|| format!("the answer of {url} is not JSON"))
}

fn stage_done(name: &str, started: Instant, what: &str) {
    println!("  {name:<12} {:>8.1} s  {what}", started.elapsed().as_secs_f64());
}

fn build_library(runtime: &tokio::runtime::Runtime, root: &Path, args: &BenchUiArgs) -> anyhow::Result<()> {
    println!(
        "building the library ({} recordings x {} windows; stages already done are skipped)",
        args.recordings, args.windows_per_recording
    );
    let started = Instant::now();
    let server = BenchServer::start(runtime, root, args.embedding_dim)?;
    stage_done("open", started, "open the data directory and start a server");
    let result = build_stages(&server, root, args);
    server.stop(runtime)?;
    result?;
    stage_done("build total", started, "");
    Ok(())
}

fn build_stages(server: &BenchServer, root: &Path, args: &BenchUiArgs) -> anyhow::Result<()> {
    let humpback = &server.humpback;
    let agent = agent();

    // 1. Recordings, imported as `humpback import` does, one site folder at a time.
    let started = Instant::now();
    let existing = humpback.writer.read_state(|s| s.audio_files.len());
    if existing >= args.recordings {
        stage_done("recordings", started, &format!("{existing} already there"));
    } else {
        let source = tempfile::Builder::new().prefix("bench-ui-source-").tempdir_in(root)?;
        write_recordings(source.path(), args.recordings, args.windows_per_recording)?;
        let generated = started.elapsed().as_secs_f64();
        let (mut added, mut duplicates) = (0, 0);
        for site in SITES {
            let site_dir = source.path().join(site);
            if !site_dir.is_dir() {
                continue;
            }
            let summary = crate::ingest::import_folder(
                humpback,
                &site_dir,
                humpback.settings.max_upload_bytes,
                None,
                |_, _, _, _| {},
            )?;
            if let Some(rejected) = summary.rejected.first() {
                bail!("importing {} rejected {}: {}", site_dir.display(), rejected.path, rejected.reason);
            }
            added += summary.added.len();
            duplicates += summary.duplicates.len();
        }
        stage_done(
            "recordings",
            started,
            &format!("{added} imported ({duplicates} already there); writing the WAV files took {generated:.1} s"),
        );
    }

    // 2. Metadata, through the real edit command.
    let started = Instant::now();
    let unedited: Vec<(AudioFileId, String)> = humpback.writer.read_state(|s| {
        s.audio_files
            .iter()
            .filter(|(_, file)| file.metadata.tag_data.is_none())
            .map(|(id, file)| (*id, file.folder.clone()))
            .collect()
    });
    for (id, folder) in &unedited {
        let site = folder.split('/').next().unwrap_or_default();
        let n = id.0 as usize;
        humpback
            .writer
            .execute(Command::EditAudioMetadata(EditAudioMetadata {
                audio_file_id: *id,
                mode: MetadataEditMode::MergePatch,
                tag_data: Some(JsonText::from_value(
                    &json!({"deployment": {"site": site, "hydrophone": format!("H{}", n % 3)}}),
                )),
                visual_observations: Some(JsonText::from_value(
                    &json!({"behaviour": BEHAVIOURS[n % BEHAVIOURS.len()]}),
                )),
                group_composition: Some(JsonText::from_value(&json!({"group_size": 1 + n % 6}))),
                prey_density_proxy: None,
                edited_by: Some("bench-ui".into()),
            }))
            .with_context(|| format!("editing the metadata of audio file {id}"))?;
    }
    stage_done("metadata", started, &format!("{} recordings edited", unedited.len()));

    // 3. Processing: queued through the API, run by real workers.
    let started = Instant::now();
    let audio_ids: Vec<u64> = humpback.writer.read_state(|s| s.audio_files.keys().map(|id| id.0).collect());
    let encoded = humpback
        .writer
        .read_state(|s| s.processing_jobs.values().filter(|job| job.status == JobStatus::Complete).count());
    if encoded >= audio_ids.len() {
        stage_done("processing", started, &format!("{encoded} jobs already complete"));
    } else {
        let queued = post_json(
            &agent,
            &format!("{}/api/processing-jobs", server.base_url),
            &json!({"audio_file_ids": audio_ids, "model": crate::model::FAKE_MODEL_NAME}),
        )?;
        let queued_jobs = queued.as_array().map_or(0, Vec::len);
        let queue_seconds = started.elapsed().as_secs_f64();
        let jobs = run_processing_workers(humpback)?;
        let windows: u64 = humpback.writer.read_state(|s| s.embedding_sets.values().map(|set| set.row_count).sum());
        stage_done(
            "processing",
            started,
            &format!(
                "{queued_jobs} jobs queued in {queue_seconds:.1} s, {jobs} run by {PROCESSING_WORKERS} workers; \
                 {windows} windows in all"
            ),
        );
    }

    // 4. One clustering of every window: queued through the API, run by the real worker.
    let started = Instant::now();
    let (complete, queued) = humpback.writer.read_state(|s| {
        let with = |status| s.clustering_jobs.iter().filter(|(_, job)| job.status == status).count();
        (with(JobStatus::Complete), with(JobStatus::Queued))
    });
    if complete > 0 {
        stage_done("clustering", started, "a complete clustering job is already there");
        return Ok(());
    }
    if queued == 0 {
        let set_ids: Vec<u64> = humpback.writer.read_state(|s| s.embedding_sets.keys().map(|id| id.0).collect());
        let mut request: serde_json::Value =
            serde_json::from_str(&args.clustering).context("--clustering is not JSON")?;
        request["embedding_set_ids"] = json!(set_ids);
        post_json(&agent, &format!("{}/api/clustering-jobs", server.base_url), &request)?;
    }
    let mut worker = crate::clustering_jobs::worker::ClusteringWorker::new(
        humpback.clone(),
        WorkerId("bench-ui:clustering".into()),
        Arc::new(AtomicBool::new(false)),
    );
    match worker.step()? {
        crate::clustering_jobs::worker::ClusteringStep::Ran { job_id, status: JobStatus::Complete } => {
            let rows: usize = humpback.writer.read_state(|s| {
                s.clustering_jobs.get(&job_id).map_or(0, |job| {
                    job.embedding_set_ids
                        .iter()
                        .filter_map(|id| s.embedding_sets.get(id))
                        .map(|set| set.row_count as usize)
                        .sum()
                })
            });
            stage_done("clustering", started, &format!("job {job_id}: {rows} windows clustered"));
            Ok(())
        }
        other => Err(anyhow!("the clustering job did not complete: {other:?}")),
    }
}

/// Runs queued processing jobs with two real workers until none is left; the number run.
fn run_processing_workers(humpback: &Arc<Humpback>) -> anyhow::Result<usize> {
    use crate::processing::worker::{ProcessingWorker, StepOutcome};
    let total = humpback.writer.read_state(|s| s.processing_jobs.len());
    let done = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..PROCESSING_WORKERS)
        .map(|index| {
            let humpback = humpback.clone();
            let done = done.clone();
            std::thread::spawn(move || -> anyhow::Result<()> {
                let mut worker = ProcessingWorker::new(
                    humpback,
                    WorkerId(format!("bench-ui:{index}")),
                    Arc::new(AtomicBool::new(false)),
                );
                while let StepOutcome::Ran { status, job_id } = worker.step()? {
                    if status != JobStatus::Complete {
                        bail!("processing job {job_id} ended {status}");
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    let mut last_report = Instant::now();
    while !threads.iter().all(|thread| thread.is_finished()) {
        std::thread::sleep(Duration::from_millis(200));
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            eprintln!("    processing: {} of {total} jobs done", done.load(Ordering::Relaxed));
        }
    }
    for thread in threads {
        thread.join().map_err(|_| anyhow!("a processing worker thread panicked"))??;
    }
    Ok(done.load(Ordering::Relaxed))
}

/// `count` distinct WAV files in `{site}/{month}/rec-NNNN.wav` below `dir`.
fn write_recordings(dir: &Path, count: usize, seconds: usize) -> anyhow::Result<()> {
    for index in 0..count {
        let folder = dir.join(SITES[index % SITES.len()]).join(MONTHS[(index / SITES.len()) % MONTHS.len()]);
        std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
        let samples = synthetic_recording(index, seconds);
        let path = folder.join(format!("rec-{index:04}.wav"));
        std::fs::write(&path, crate::http::media_api::encode_wav_pcm16_mono(&samples, SAMPLE_RATE))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// One recording: each second a tone or sweep from the recording's sound group (so the windows
/// fall into a handful of groups), at a level that changes every few seconds, with every tenth
/// second near-silent, over a little noise seeded by the index (so no two files are the same).
fn synthetic_recording(index: usize, seconds: usize) -> Vec<f32> {
    let rate = SAMPLE_RATE as usize;
    let group = index % GROUP_TONES.len();
    let base = GROUP_TONES[group] * (1.0 + 0.015 * (index % 7) as f32);
    let mut noise_state = 0x9E37_79B9_7F4A_7C15u64 ^ (index as u64).wrapping_mul(0xD1B5_4A32_D192_ED03);
    let mut noise = move || {
        noise_state ^= noise_state << 13;
        noise_state ^= noise_state >> 7;
        noise_state ^= noise_state << 17;
        (noise_state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    };
    let mut samples = Vec::with_capacity(seconds * rate);
    let mut phase = 0.0f32;
    for second in 0..seconds {
        let quiet = second % 10 == 9;
        let level = if quiet { 0.0 } else { 0.25 + 0.2 * ((second / 5) % 3) as f32 };
        // Alternate steady tones, upsweeps and downsweeps within the group's band.
        let (from, to) = match second % 3 {
            0 => (base, base),
            1 => (base, base * 1.6),
            _ => (base * 1.6, base),
        };
        for sample in 0..rate {
            let t = sample as f32 / rate as f32;
            let frequency = from + (to - from) * t;
            phase = (phase + std::f32::consts::TAU * frequency / rate as f32) % std::f32::consts::TAU;
            samples.push(level * phase.sin() + 0.02 * noise());
        }
    }
    samples
}

/// One page to time.
struct PageTiming {
    path: String,
    status: u16,
    first_ms: f64,
    median_ms: f64,
    p95_ms: f64,
    kilobytes: f64,
}

fn time_pages(runtime: &tokio::runtime::Runtime, root: &Path, args: &BenchUiArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let server = BenchServer::start(runtime, root, args.embedding_dim)?;
    println!("timing: data directory opened and server started in {:.1} s", started.elapsed().as_secs_f64());
    let result = time_pages_of(&server, args.repeat);
    server.stop(runtime)?;
    let mut timings = result?;
    timings.sort_by(|a, b| a.median_ms.total_cmp(&b.median_ms));
    println!();
    println!("{:<72} {:>6} {:>9} {:>9} {:>9} {:>10}", "page", "status", "first ms", "median ms", "p95 ms", "size kB");
    for timing in &timings {
        let flag = if !(200..300).contains(&timing.status) {
            "  <-- NOT OK"
        } else if timing.median_ms > SLOW_MILLISECONDS {
            "  <-- SLOW"
        } else {
            ""
        };
        println!(
            "{:<72} {:>6} {:>9.1} {:>9.1} {:>9.1} {:>10.1}{flag}",
            timing.path, timing.status, timing.first_ms, timing.median_ms, timing.p95_ms, timing.kilobytes
        );
    }
    let slow = timings.iter().filter(|timing| timing.median_ms > SLOW_MILLISECONDS).count();
    println!(
        "{slow} of {} pages over {SLOW_MILLISECONDS} ms median ({} requests per page)",
        timings.len(),
        args.repeat
    );
    Ok(())
}

/// What the timed paths name: one recording, one processing job, the clustering and a cluster.
struct Subjects {
    audio: AudioFileId,
    processing_job: ProcessingJobId,
    clustering_job: ClusteringJobId,
    cluster: u64,
    cluster_size: u64,
}

fn pick_subjects(server: &BenchServer, agent: &ureq::Agent) -> anyhow::Result<Subjects> {
    let (audio, processing_job, clustering_job) = server.humpback.writer.read_state(|s| {
        let audio = s.audio_files.keys().nth(s.audio_files.len() / 2).copied();
        let job = s.processing_jobs.keys().nth(s.processing_jobs.len() / 2).copied();
        let clustering = s
            .clustering_jobs
            .iter()
            .filter(|(_, job)| job.status == JobStatus::Complete)
            .map(|(id, _)| *id)
            .next_back();
        (audio, job, clustering)
    });
    let (Some(audio), Some(processing_job), Some(clustering_job)) = (audio, processing_job, clustering_job) else {
        bail!("the library has no recordings, processing jobs or complete clustering job");
    };
    let clusters = get_json(agent, &format!("{}/api/clustering-jobs/{clustering_job}/clusters", server.base_url))?;
    let largest = clusters
        .as_array()
        .into_iter()
        .flatten()
        .filter(|cluster| cluster["noise"] == json!(false))
        .filter_map(|cluster| Some((cluster["id"].as_u64()?, cluster["size"].as_u64()?)))
        .max_by_key(|(_, size)| *size)
        .ok_or_else(|| anyhow!("clustering job {clustering_job} has no clusters"))?;
    Ok(Subjects { audio, processing_job, clustering_job, cluster: largest.0, cluster_size: largest.1 })
}

fn time_pages_of(server: &BenchServer, repeat: usize) -> anyhow::Result<Vec<PageTiming>> {
    let agent = agent();
    let subjects = pick_subjects(server, &agent)?;
    let Subjects { audio, processing_job, clustering_job, cluster, cluster_size } = subjects;
    // A page of members in the middle of the largest cluster (the pager shows 50 at a time).
    let member_offset = cluster_size / 2 / 50 * 50;
    let paths = [
        "/".to_string(),
        "/audio".into(),
        "/audio?offset=500".into(),
        "/audio?search=site-b".into(),
        "/audio?sort=duration&order=desc".into(),
        format!("/audio/{audio}"),
        "/processing".into(),
        "/processing?offset=900".into(),
        format!("/processing/{processing_job}"),
        "/clustering".into(),
        format!("/clustering/{clustering_job}"),
        format!("/clustering/{clustering_job}/points.json"),
        format!("/clusters/{cluster}"),
        format!("/clusters/{cluster}?offset={member_offset}"),
        "/events".into(),
        "/events?type=ProcessingJobCompleted".into(),
        "/models".into(),
        "/api/audio?limit=100".into(),
        format!("/api/clustering-jobs/{clustering_job}/clusters"),
        format!("/api/audio/{audio}/window?start=1&duration=5"),
        // As the cluster page's thumbnails ask for them.
        format!("/api/audio/{audio}/spectrogram.png?start=3&duration=1&width=160&height=100"),
        // The newest page of the event log as JSON (what `humpback events list --newest-first` reads).
        "/api/events?order=desc".into(),
    ];
    println!(
        "timing {} pages, {repeat} requests each (recording {audio}, processing job {processing_job}, \
         clustering job {clustering_job}, cluster {cluster} of {cluster_size} windows)",
        paths.len()
    );
    let mut timings = Vec::new();
    for path in paths {
        let url = format!("{}{path}", server.base_url);
        let mut milliseconds = Vec::with_capacity(repeat);
        let mut status = 0;
        let mut bytes = 0;
        for _ in 0..repeat {
            let started = Instant::now();
            let mut response = agent.get(&url).call().with_context(|| format!("requesting {url}"))?;
            let body = response.body_mut().with_config().limit(BODY_LIMIT).read_to_vec()?;
            milliseconds.push(started.elapsed().as_secs_f64() * 1000.0);
            status = response.status().as_u16();
            bytes = body.len();
        }
        let first_ms = milliseconds[0];
        milliseconds.sort_by(f64::total_cmp);
        timings.push(PageTiming {
            path,
            status,
            first_ms,
            median_ms: percentile(&milliseconds, 0.5),
            p95_ms: percentile(&milliseconds, 0.95),
            kilobytes: bytes as f64 / 1000.0,
        });
    }
    Ok(timings)
}

/// The `fraction` quantile of sorted values (nearest rank).
fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (fraction * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}
