//! Shared test helpers: a server on port 0 in its own temp data directory, and a realistic
//! sequence of commands.

use std::net::SocketAddr;
use std::sync::Arc;

use humpback::app::{Application, Humpback, ServeConfig, Settings};
use humpback::clustering_jobs::outputs::{describe_assignments_file, write_assignments, AssignmentRow};
use humpback::config::DataDir;
use humpback::domain::decide::{Command, EditAudioMetadata, MetadataEditMode, NewEmbeddingSet, RegisterAudioFile};
use humpback::domain::events::{
    ClusterAssignmentRecord, ClusterAssignments, ClusterRecord, ClusteringJobCompleted, EncodingConfig,
};
use humpback::domain::ids::*;
use humpback::domain::json_text::JsonText;
use tokio::sync::oneshot;

pub struct TestApp {
    pub address: SocketAddr,
    pub base_url: String,
    pub humpback: Arc<Humpback>,
    pub data_dir: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// Stops the server gracefully and waits for it to release the data directory.
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("server task").expect("server stopped cleanly");
        }
        // The last reference to the log must go before the directory can be reopened.
        let TestApp { humpback, data_dir, .. } = self;
        drop(humpback);
        data_dir
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }
}

/// A server on 127.0.0.1:0 with a fresh temporary data directory.
pub async fn spawn_app() -> TestApp {
    let data_dir = tempfile::tempdir().expect("temp dir");
    spawn_app_in(data_dir).await
}

/// Without workers: tests that need them say so with [`spawn_app_with`].
pub async fn spawn_app_in(data_dir: tempfile::TempDir) -> TestApp {
    spawn_app_with(data_dir, Settings { processing_workers: 0, clustering_workers: 0, ..Settings::default() }).await
}

pub async fn spawn_app_with(data_dir: tempfile::TempDir, settings: Settings) -> TestApp {
    let config = ServeConfig { data_dir: DataDir::new(data_dir.path()), settings, bind: "127.0.0.1:0".into() };
    let application = Application::build(config).await.expect("application builds");
    let address = application.local_addr().expect("bound address");
    let humpback = application.humpback();
    let (shutdown, stop) = oneshot::channel::<()>();
    let server = tokio::spawn(application.run_until(async move {
        let _ = stop.await;
    }));
    TestApp {
        address,
        base_url: format!("http://{address}"),
        humpback,
        data_dir,
        shutdown: Some(shutdown),
        server: Some(server),
    }
}

pub fn json(text: &str) -> JsonText {
    JsonText::parse(text).expect("test json")
}

pub fn config(model: &str) -> EncodingConfig {
    EncodingConfig {
        model_name: model.into(),
        model_version: format!("{model}@1"),
        window_seconds: 5.0,
        hop_seconds: 5.0,
        target_sample_rate: 32_000,
        feature_config: json(r#"{"short_file":"pad"}"#),
    }
}

pub fn register(index: u64) -> Command {
    Command::RegisterAudioFile(RegisterAudioFile {
        original_filename: format!("<script>alert({index})</script>.wav"),
        folder: format!("site-{}", index % 3),
        checksum_sha256: Sha256Hex(format!("{index:064x}")),
        size_bytes: 1000 + index,
        duration_seconds: 10.0 + index as f64,
        sample_rate: 44_100,
        channels: 2,
        codec: "pcm_s16le".into(),
        extension: "wav".into(),
        recorded_at: None,
        location: Default::default(),
    })
}

pub fn edit_metadata(audio: u64, value: u64) -> Command {
    Command::EditAudioMetadata(EditAudioMetadata {
        audio_file_id: AudioFileId(audio),
        mode: MetadataEditMode::MergePatch,
        tag_data: None,
        visual_observations: Some(json(&format!(r#"{{"behaviour":"surface-active","count":{value}}}"#))),
        group_composition: (value % 2 == 0).then(|| json(r#"{"adults":2,"calves":1}"#)),
        prey_density_proxy: None,
        edited_by: Some("observer".into()),
    })
}

pub fn queue(audio: u64, signature: &str) -> Command {
    Command::QueueProcessingJob {
        audio_file_id: AudioFileId(audio),
        encoding_signature: EncodingSignature(signature.into()),
        config: config("fake"),
    }
}

pub fn claim() -> Command {
    Command::ClaimProcessingJob { worker: WorkerId("test-worker".into()) }
}

pub fn complete(job: u64, attempt: u32) -> Command {
    Command::CompleteProcessingJob {
        job_id: ProcessingJobId(job),
        attempt,
        embedding_set: Some(NewEmbeddingSet {
            vector_dim: 16,
            row_count: 4,
            parquet_path: format!("embeddings/fake@1/{job}/sig.parquet"),
        }),
        warning: None,
    }
}

pub fn clustering_completed(job: u64, attempt: u32, sets: &[u64]) -> Command {
    let mut assignments = Vec::new();
    for set in sets {
        for row in 0..4u64 {
            assignments.push(ClusterAssignmentRecord {
                embedding_set_id: EmbeddingSetId(*set),
                row_index: row,
                label: if row == 3 { -1 } else { (row % 2) as i64 },
            });
        }
    }
    let count = |label: i64| assignments.iter().filter(|a| a.label == label).count() as u64;
    let clusters = [-1i64, 0, 1]
        .iter()
        .map(|label| ClusterRecord {
            cluster_id: ClusterId(0),
            label: *label,
            size: count(*label),
            metadata_summary: json(r#"{"folders":{"site-1":1}}"#),
        })
        .collect();
    Command::CompleteClusteringJob(ClusteringJobCompleted {
        job_id: ClusteringJobId(job),
        attempt,
        clusters,
        assignments: ClusterAssignments::Carried(assignments),
        metrics: json(r#"{"silhouette":0.5}"#),
        clusters_json_path: format!("clusters/{job}/clusters.json"),
        assignments_path: format!("clusters/{job}/assignments.parquet"),
    })
}

/// A realistic session touching every projection: files, metadata, jobs that complete, fail
/// and are retried or canceled, and a clustering.
pub fn sample_session() -> Vec<Command> {
    vec![
        register(1),
        register(2),
        register(3),
        edit_metadata(1, 4),
        edit_metadata(1, 5),
        queue(1, "sig-1"),
        queue(2, "sig-2"),
        queue(3, "sig-3"),
        claim(),
        Command::ReportProcessingProgress { job_id: ProcessingJobId(1), attempt: 1, windows_done: 2, windows_total: 4 },
        complete(1, 1),
        claim(),
        Command::FailProcessingJob { job_id: ProcessingJobId(2), attempt: 1, reason: "decode failed".into() },
        Command::RetryProcessingJob { job_id: ProcessingJobId(2) },
        Command::CancelProcessingJob { job_id: ProcessingJobId(3) },
        claim(),
        complete(2, 2),
        Command::QueueClusteringJob {
            embedding_set_ids: vec![EmbeddingSetId(1), EmbeddingSetId(2)],
            parameters: json(r#"{"algorithm":"hdbscan"}"#),
        },
        Command::ClaimClusteringJob { worker: WorkerId("test-worker".into()) },
        Command::ReportClusteringProgress {
            job_id: ClusteringJobId(1),
            attempt: 1,
            stage: "clustering".into(),
            fraction: 0.5,
        },
        clustering_completed(1, 1, &[1, 2]),
    ]
}

/// A completion that carries its assignments (as [`clustering_completed`] builds it) made
/// into what a worker records: the rows written to its `assignments.parquet` below `root`, and
/// the event recording that file. Other commands pass unchanged.
pub fn with_assignments_file(root: &std::path::Path, command: Command) -> Command {
    let Command::CompleteClusteringJob(mut completed) = command else { return command };
    let ClusterAssignments::Carried(records) = &completed.assignments else {
        return Command::CompleteClusteringJob(completed);
    };
    let rows: Vec<AssignmentRow> = records
        .iter()
        .map(|record| AssignmentRow {
            embedding_set_id: record.embedding_set_id.0,
            row_index: record.row_index,
            start_seconds: record.row_index as f64,
            end_seconds: record.row_index as f64 + 1.0,
            cluster_label: record.label,
            probability: 1.0,
            x: None,
            y: None,
        })
        .collect();
    let path = root.join(&completed.assignments_path);
    write_assignments(&path, &rows).expect("writing the assignments");
    completed.assignments = ClusterAssignments::InFile(describe_assignments_file(&path).expect("describing them"));
    Command::CompleteClusteringJob(completed)
}

/// Opens a data directory, runs the commands (all must be accepted), and closes it again.
pub fn seed_data_dir(path: &std::path::Path, commands: Vec<Command>) {
    let humpback = Humpback::open(DataDir::new(path)).expect("open data dir");
    for command in commands {
        humpback.writer.execute(with_assignments_file(path, command)).expect("seed command accepted");
    }
    humpback.catch_up_projections().expect("projections catch up");
}

/// Annotates `[start, end)` of a recording (no band, no note).
pub fn annotate(
    audio: u64,
    start: f64,
    end: f64,
    label: &str,
    kind: humpback::domain::events::AnnotationKind,
) -> Command {
    Command::AddAnnotations(humpback::domain::decide::AddAnnotations {
        annotations: vec![humpback::domain::decide::NewAnnotation {
            fields: humpback::domain::annotation_rules::AnnotationFields {
                audio_file_id: AudioFileId(audio),
                start_seconds: start,
                end_seconds: end,
                low_hz: None,
                high_hz: None,
                label: label.into(),
                kind,
                note: None,
            },
            source: "manual".into(),
        }],
        created_by: Some("tester".into()),
    })
}
