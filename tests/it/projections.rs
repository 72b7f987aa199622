//! Projections: SQL per event kind, schema version bumps, and "incremental equals rebuilt".

use std::sync::Arc;

use humpback::domain::decide::{ChangeAnnotation, Command};
use humpback::domain::events::AnnotationKind;
use humpback::domain::ids::*;
use humpback::domain::state::JobStatus;
use humpback::log::{EventLog, SledEventLog};
use humpback::projections::{dump, Projector};
use humpback::writer::Writer;
use proptest::prelude::*;

use crate::helpers::*;

/// The projections replayed from the whole log into a fresh database; artifacts are read
/// below `data_root`.
fn rebuilt_dump(log: &dyn EventLog, data_root: &std::path::Path) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut projector = Projector::open(&dir.path().join("fresh.sqlite3"), data_root).unwrap();
    projector.catch_up(log).unwrap();
    dump(projector.connection()).unwrap()
}

#[test]
fn every_event_kind_lands_in_its_tables() {
    let dir = tempfile::tempdir().unwrap();
    seed_data_dir(dir.path(), sample_session());
    let connection = rusqlite::Connection::open(dir.path().join("projections.sqlite3")).unwrap();
    let query = |sql: &str| -> Vec<String> {
        let mut statement = connection.prepare(sql).unwrap();
        let column_count = statement.column_count();
        statement
            .query_map([], |row| {
                (0..column_count)
                    .map(|i| row.get::<_, rusqlite::types::Value>(i).map(|v| format!("{v:?}")))
                    .collect::<Result<Vec<_>, _>>()
                    .map(|cells| cells.join(","))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    assert_eq!(
        query("SELECT id, folder, sample_rate_original, stored_path FROM audio_files ORDER BY id"),
        vec![
            r#"Integer(1),Text("site-1"),Integer(44100),Text("audio/raw/1/original.wav")"#,
            r#"Integer(2),Text("site-2"),Integer(44100),Text("audio/raw/2/original.wav")"#,
            r#"Integer(3),Text("site-0"),Integer(44100),Text("audio/raw/3/original.wav")"#,
        ]
    );
    assert_eq!(
        query("SELECT audio_file_id, visual_observations, group_composition, edit_count FROM audio_metadata WHERE audio_file_id = 1"),
        vec![r#"Integer(1),Text("{\"behaviour\":\"surface-active\",\"count\":5}"),Text("{\"adults\":2,\"calves\":1}"),Integer(2)"#],
        "the second edit replaces visual_observations and keeps the first edit's group_composition"
    );
    assert_eq!(query("SELECT COUNT(*) FROM audio_metadata_edits WHERE audio_file_id = 1"), vec!["Integer(2)"]);
    assert_eq!(
        query("SELECT id, status, attempt, embedding_set_id, error_message, windows_done, windows_total FROM processing_jobs ORDER BY id"),
        vec![
            "Integer(1),Text(\"complete\"),Integer(1),Integer(1),Null,Integer(4),Integer(4)",
            "Integer(2),Text(\"complete\"),Integer(2),Integer(2),Null,Null,Null",
            "Integer(3),Text(\"canceled\"),Integer(0),Null,Null,Null,Null",
        ]
    );
    assert_eq!(
        query("SELECT id, audio_file_id, processing_job_id, encoding_signature, vector_dim, row_count FROM embedding_sets ORDER BY id"),
        vec![
            "Integer(1),Integer(1),Integer(1),Text(\"sig-1\"),Integer(16),Integer(4)",
            "Integer(2),Integer(2),Integer(2),Text(\"sig-2\"),Integer(16),Integer(4)",
        ]
    );
    assert_eq!(
        query("SELECT id, status, embedding_set_ids, stage, progress FROM clustering_jobs"),
        vec!["Integer(1),Text(\"complete\"),Text(\"[1,2]\"),Text(\"done\"),Real(1.0)"]
    );
    assert_eq!(query("SELECT COUNT(*) FROM clustering_job_embedding_sets"), vec!["Integer(2)"]);
    assert_eq!(
        query("SELECT id, cluster_label, is_noise, size FROM clusters ORDER BY id"),
        vec![
            "Integer(1),Integer(-1),Integer(1),Integer(2)",
            "Integer(2),Integer(0),Integer(0),Integer(4)",
            "Integer(3),Integer(1),Integer(0),Integer(2)"
        ]
    );
    assert_eq!(
        query("SELECT cluster_id, COUNT(*) FROM cluster_assignments GROUP BY cluster_id ORDER BY cluster_id"),
        vec!["Integer(1),Integer(2)", "Integer(2),Integer(4)", "Integer(3),Integer(2)"],
        "each cluster's assignments count equals its size"
    );
}

#[test]
fn a_projection_version_bump_rebuilds_it_with_identical_rows() {
    let dir = tempfile::tempdir().unwrap();
    seed_data_dir(dir.path(), sample_session());
    let database = dir.path().join("projections.sqlite3");
    let before = dump(&rusqlite::Connection::open(&database).unwrap()).unwrap();
    {
        // What a new build with `-- version: 2` in processing_jobs.sql finds on disk: a
        // projection built by another version. Make it visibly stale as well.
        let connection = rusqlite::Connection::open(&database).unwrap();
        connection
            .execute("UPDATE projection_checkpoints SET schema_version = 0 WHERE name = 'processing_jobs'", [])
            .unwrap();
        connection.execute("UPDATE processing_jobs SET status = 'stale'", []).unwrap();
    }
    let log = SledEventLog::open(&dir.path().join("events")).unwrap();
    let mut projector = Projector::open(&database, dir.path()).unwrap();
    let status = projector.status(log.head()).unwrap();
    let processing = status.iter().find(|p| p.name == "processing_jobs").unwrap();
    assert_eq!(processing.last_seq, 0, "the changed projection was dropped and starts over");
    projector.catch_up(&log).unwrap();
    let after = dump(projector.connection()).unwrap();
    assert_eq!(after, before);
    assert!(!after.contains("stale"));
}

#[test]
fn a_rebuild_of_everything_gives_the_same_rows_as_the_incremental_projection() {
    let dir = tempfile::tempdir().unwrap();
    seed_data_dir(dir.path(), sample_session());
    let log = SledEventLog::open(&dir.path().join("events")).unwrap();
    let mut projector = Projector::open(&dir.path().join("projections.sqlite3"), dir.path()).unwrap();
    let before = dump(projector.connection()).unwrap();
    let report = projector.rebuild(&log, &[]).unwrap();
    assert_eq!(report.events_replayed, log.head().0);
    assert_eq!(dump(projector.connection()).unwrap(), before);
    assert_eq!(before, rebuilt_dump(&log, dir.path()));
}

/// One step of an arbitrary session. Commands refer to files and jobs by small indices and
/// are resolved against the current state; the writer rejects what is not allowed.
#[derive(Debug, Clone)]
enum Step {
    Register(u8),
    EditMetadata(u8, u8),
    Queue(u8, u8),
    Claim,
    Progress,
    Complete(bool),
    Fail,
    Cancel(u8),
    Abandon,
    Retry(u8),
    QueueClustering(Vec<u8>),
    ClaimClustering,
    CompleteClustering,
    FailClustering,
    /// Annotate recording `.0` from second `.1` for `.2` seconds with label number `.3`
    /// (bad spans are rejected by the writer).
    Annotate(u8, u8, u8, u8),
    ChangeAnnotation(u8, u8),
    RemoveAnnotation(u8),
    /// Drop the log, the writer and the projector, and reopen them from disk.
    Restart,
    /// Bring the projections up to date (otherwise they lag until the end).
    CatchUp,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (0u8..6).prop_map(Step::Register),
        2 => (0u8..6, 0u8..4).prop_map(|(a, v)| Step::EditMetadata(a, v)),
        4 => (0u8..6, 0u8..3).prop_map(|(a, s)| Step::Queue(a, s)),
        3 => Just(Step::Claim),
        1 => Just(Step::Progress),
        3 => any::<bool>().prop_map(Step::Complete),
        1 => Just(Step::Fail),
        1 => (0u8..8).prop_map(Step::Cancel),
        1 => Just(Step::Abandon),
        1 => (0u8..8).prop_map(Step::Retry),
        2 => prop::collection::vec(0u8..6, 0..4).prop_map(Step::QueueClustering),
        1 => Just(Step::ClaimClustering),
        1 => Just(Step::CompleteClustering),
        1 => Just(Step::FailClustering),
        3 => (0u8..6, 0u8..14, 0u8..4, 0u8..3).prop_map(|(a, s, d, l)| Step::Annotate(a, s, d, l)),
        1 => (0u8..6, 0u8..3).prop_map(|(a, l)| Step::ChangeAnnotation(a, l)),
        1 => (0u8..6).prop_map(Step::RemoveAnnotation),
        1 => Just(Step::Restart),
        1 => Just(Step::CatchUp),
    ]
}

struct Open {
    log: Arc<SledEventLog>,
    writer: Writer,
    projector: Projector,
}

fn open(dir: &std::path::Path) -> Open {
    let log = Arc::new(SledEventLog::open(&dir.join("events")).unwrap());
    let writer = Writer::open(log.clone()).unwrap();
    let projector = Projector::open(&dir.join("projections.sqlite3"), dir).unwrap();
    Open { log, writer, projector }
}

fn resolve(writer: &Writer, step: &Step) -> Option<Command> {
    writer.read_state(|state| {
        let running_processing = state.processing_jobs.iter().find(|(_, job)| job.status == JobStatus::Running);
        let running_clustering = state.clustering_jobs.iter().find(|(_, job)| job.status == JobStatus::Running);
        Some(match step {
            Step::Register(index) => register(u64::from(*index) + 1),
            Step::EditMetadata(audio, value) => edit_metadata(u64::from(*audio) + 1, u64::from(*value)),
            Step::Queue(audio, signature) => queue(u64::from(*audio) + 1, &format!("sig-{audio}-{signature}")),
            Step::Claim => claim(),
            Step::Progress => {
                let (id, job) = running_processing?;
                Command::ReportProcessingProgress {
                    job_id: *id,
                    attempt: job.attempt,
                    windows_done: 1,
                    windows_total: 4,
                }
            }
            Step::Complete(with_set) => {
                let (id, job) = running_processing?;
                if *with_set {
                    complete(id.0, job.attempt)
                } else {
                    Command::CompleteProcessingJob {
                        job_id: *id,
                        attempt: job.attempt,
                        embedding_set: None,
                        warning: Some("file shorter than one window".into()),
                    }
                }
            }
            Step::Fail => {
                let (id, job) = running_processing?;
                Command::FailProcessingJob { job_id: *id, attempt: job.attempt, reason: "injected".into() }
            }
            Step::Cancel(job) => Command::CancelProcessingJob { job_id: ProcessingJobId(u64::from(*job) + 1) },
            Step::Abandon => {
                let (id, job) = running_processing?;
                Command::AbandonProcessingJob { job_id: *id, attempt: job.attempt, reason: "restart".into() }
            }
            Step::Retry(job) => Command::RetryProcessingJob { job_id: ProcessingJobId(u64::from(*job) + 1) },
            Step::QueueClustering(sets) => Command::QueueClusteringJob {
                embedding_set_ids: sets.iter().map(|set| EmbeddingSetId(u64::from(*set) + 1)).collect(),
                parameters: json(r#"{"algorithm":"kmeans","k":2}"#),
            },
            Step::ClaimClustering => Command::ClaimClusteringJob { worker: WorkerId("w".into()) },
            Step::CompleteClustering => {
                let (id, job) = running_clustering?;
                let sets: Vec<u64> = job.embedding_set_ids.iter().map(|set| set.0).collect();
                clustering_completed(id.0, job.attempt, &sets)
            }
            Step::FailClustering => {
                let (id, job) = running_clustering?;
                Command::FailClusteringJob { job_id: *id, attempt: job.attempt, reason: "injected".into() }
            }
            Step::Annotate(audio, start, duration, label) => {
                let kind = [AnnotationKind::Positive, AnnotationKind::Negative, AnnotationKind::Uncertain]
                    [usize::from(*label) % 3];
                annotate(
                    u64::from(*audio) + 1,
                    f64::from(*start),
                    f64::from(*start) + f64::from(*duration),
                    &format!("call {label}"),
                    kind,
                )
            }
            Step::ChangeAnnotation(annotation, label) => Command::ChangeAnnotation(ChangeAnnotation {
                annotation_id: AnnotationId(u64::from(*annotation) + 1),
                label: Some(format!("call {label}")),
                end_seconds: Some(f64::from(*label) + 5.0),
                ..ChangeAnnotation::default()
            }),
            Step::RemoveAnnotation(annotation) => {
                Command::RemoveAnnotation { annotation_id: AnnotationId(u64::from(*annotation) + 1), removed_by: None }
            }
            Step::Restart | Step::CatchUp => return None,
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn the_incremental_projection_with_restarts_equals_the_projection_rebuilt_from_the_log(
        steps in prop::collection::vec(step(), 1..60)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut current = open(dir.path());
        for step in &steps {
            match step {
                Step::Restart => {
                    drop(current);
                    current = open(dir.path());
                }
                Step::CatchUp => {
                    current.projector.catch_up(current.log.as_ref()).unwrap();
                }
                other => {
                    if let Some(command) = resolve(&current.writer, other) {
                        let _ = current.writer.execute(with_assignments_file(dir.path(), command));
                    }
                    // Whatever happened: never two jobs or two embedding sets for one signature.
                    current.writer.read_state(|state| {
                        let mut sets = std::collections::HashSet::new();
                        for set in state.embedding_sets.values() {
                            assert!(sets.insert(set.encoding_signature.clone()), "two sets for one signature");
                        }
                        let mut jobs = std::collections::HashSet::new();
                        for job in state.processing_jobs.values() {
                            assert!(jobs.insert(job.encoding_signature.clone()), "two jobs for one signature");
                        }
                    });
                }
            }
        }
        current.projector.catch_up(current.log.as_ref()).unwrap();
        let incremental = dump(current.projector.connection()).unwrap();
        prop_assert_eq!(&incremental, &rebuilt_dump(current.log.as_ref(), dir.path()));
        // The writer's state, folded incrementally, equals the state folded from scratch.
        let folded = Writer::open(current.log.clone()).unwrap();
        prop_assert!(current.writer.read_state(|a| folded.read_state(|b| a == b)));
        prop_assert!(humpback::log::verify(current.log.as_ref()).first_problem.is_none());
    }
}

/// The rows of one table in a projection dump.
fn dumped_table<'a>(dump: &'a str, table: &str) -> &'a str {
    let start = dump.find(&format!("## {table}\n")).unwrap_or_else(|| panic!("no table {table}")) + table.len() + 4;
    let rest = &dump[start..];
    &rest[..rest.find("## ").unwrap_or(rest.len())]
}

#[test]
fn an_old_log_whose_completion_carries_its_assignments_replays_to_the_same_projection() {
    use humpback::domain::events::{v1, ClusterAssignments, Event};
    use humpback::log::envelope::{decode_record, decode_stored_record, StoredRecord, RECORD_FORMAT_V1};

    // Today's log: the completion records assignments.parquet by checksum and row count.
    let new_dir = tempfile::tempdir().unwrap();
    seed_data_dir(new_dir.path(), sample_session());
    let new_log = SledEventLog::open(&new_dir.path().join("events")).unwrap();
    let Command::CompleteClusteringJob(carried) = clustering_completed(1, 1, &[1, 2]) else { unreachable!() };
    let ClusterAssignments::Carried(carried) = carried.assignments else { unreachable!() };

    // The same history as an old build wrote it: the completion in version 1, every assignment
    // in the event, and no assignments file anywhere.
    let old_dir = tempfile::tempdir().unwrap();
    let mut rewritten = 0;
    {
        let database = sled::open(old_dir.path().join("events")).unwrap();
        let tree = database.open_tree("events").unwrap();
        for item in new_log.scan_raw() {
            let (key, mut value) = item.unwrap();
            let record = decode_stored_record(&value).unwrap();
            if record.event_type == "ClusteringJobCompleted" {
                let Event::ClusteringJobCompleted(completed) = decode_record(EventSeq(1), &value).unwrap().event else {
                    unreachable!()
                };
                let ClusterAssignments::InFile(file) = &completed.assignments else { panic!("a new event is small") };
                let from_file = humpback::clustering_jobs::outputs::read_vouched_assignments(
                    &humpback::storage::Storage::folder(new_dir.path()),
                    &completed.assignments_path,
                    file,
                )
                .unwrap();
                assert_eq!(from_file, carried, "the Parquet file holds exactly what the old event carried");
                let old = v1::ClusteringJobCompleted {
                    job_id: completed.job_id,
                    attempt: completed.attempt,
                    clusters: completed.clusters,
                    assignments: carried.clone(),
                    metrics: completed.metrics,
                    clusters_json_path: completed.clusters_json_path,
                    assignments_path: completed.assignments_path,
                };
                let payload = bincode::encode_to_vec(&old, bincode::config::standard()).unwrap();
                let old_record = StoredRecord { event_version: 1, payload, ..record };
                value = vec![RECORD_FORMAT_V1];
                bincode::encode_into_std_write(&old_record, &mut value, bincode::config::standard()).unwrap();
                rewritten += 1;
            }
            tree.insert(key, value).unwrap();
        }
        database.flush().unwrap();
    }
    assert_eq!(rewritten, 1);
    let old_log = SledEventLog::open(&old_dir.path().join("events")).unwrap();
    assert!(!old_dir.path().join("clusters").exists());

    let old = rebuilt_dump(&old_log, old_dir.path());
    let new = rebuilt_dump(&new_log, new_dir.path());
    assert!(!dumped_table(&new, "cluster_assignments").is_empty());
    for table in ["cluster_assignments", "clusters", "clustering_jobs"] {
        assert_eq!(dumped_table(&old, table), dumped_table(&new, table), "{table}");
    }
    assert_eq!(
        dumped_table(&old, "cluster_assignment_sources"),
        "clustering_job_id=1 | source=\"event\" | row_count=8 | problem=NULL\n"
    );
    assert_eq!(
        dumped_table(&new, "cluster_assignment_sources"),
        "clustering_job_id=1 | source=\"file\" | row_count=8 | problem=NULL\n"
    );
}

#[test]
fn a_missing_or_changed_assignments_file_leaves_the_job_without_rows_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    seed_data_dir(dir.path(), sample_session());
    let log = SledEventLog::open(&dir.path().join("events")).unwrap();
    let relative = "clusters/1/assignments.parquet";
    let original = std::fs::read(dir.path().join(relative)).unwrap();

    std::fs::remove_file(dir.path().join(relative)).unwrap();
    let missing = rebuilt_dump(&log, dir.path());
    assert_eq!(dumped_table(&missing, "cluster_assignments"), "");
    assert!(
        dumped_table(&missing, "cluster_assignment_sources").contains(&format!("problem=\"{relative} is missing\"")),
        "{missing}"
    );
    assert!(dumped_table(&missing, "clusters").contains("size=4"), "the other tables are whole");
    let fresh = tempfile::tempdir().unwrap();
    let mut projector = Projector::open(&fresh.path().join("p.sqlite3"), dir.path()).unwrap();
    projector.catch_up(&log).unwrap();
    let job = humpback::projections::queries::clustering_job(projector.connection(), 1).unwrap().unwrap();
    assert_eq!(job.status, "complete");
    assert_eq!(job.assignments_problem.as_deref(), Some("clusters/1/assignments.parquet is missing"));

    let mut changed = original.clone();
    let middle = changed.len() / 2;
    changed[middle] ^= 1;
    std::fs::write(dir.path().join(relative), &changed).unwrap();
    let differs = rebuilt_dump(&log, dir.path());
    assert_eq!(dumped_table(&differs, "cluster_assignments"), "");
    assert!(dumped_table(&differs, "cluster_assignment_sources").contains("the log recorded"), "{differs}");

    // Restoring the file and rebuilding fills the rows again.
    std::fs::write(dir.path().join(relative), &original).unwrap();
    let restored = rebuilt_dump(&log, dir.path());
    assert_eq!(dumped_table(&restored, "cluster_assignments").lines().count(), 8);
}
