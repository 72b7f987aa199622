//! How each projection applies events. Plain SQL over the event's facts; no rules.

use rusqlite::{params, OptionalExtension, Transaction};

use crate::clustering_jobs::outputs::read_vouched_assignments;
use crate::domain::decide::check_assignments_match_clusters;
use crate::domain::events::{ClusterAssignments, Event, ModelInputKind};
use crate::log::Envelope;

type Result = rusqlite::Result<()>;

pub fn models(tx: &Transaction<'_>, envelope: &Envelope) -> Result {
    if let Event::ModelRegistered(e) = &envelope.event {
        let input_kind = match e.input_kind {
            ModelInputKind::Waveform => "waveform",
            ModelInputKind::Spectrogram => "spectrogram",
        };
        tx.execute(
            "INSERT INTO models (name, version, file_sha256, source, input_kind, sample_rate, window_seconds,
                 embedding_dim, embedding_output, registered_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
             ON CONFLICT (name) DO UPDATE SET version = excluded.version, file_sha256 = excluded.file_sha256,
                 source = excluded.source, input_kind = excluded.input_kind, sample_rate = excluded.sample_rate,
                 window_seconds = excluded.window_seconds, embedding_dim = excluded.embedding_dim,
                 embedding_output = excluded.embedding_output, registered_at = excluded.registered_at",
            params![
                e.name,
                e.version,
                e.file_sha256.as_ref().map(|hash| hash.0.as_str()),
                e.source,
                input_kind,
                e.sample_rate,
                e.window_seconds,
                e.embedding_dim,
                e.embedding_output,
                envelope.recorded_at.to_rfc3339(),
            ],
        )?;
    }
    Ok(())
}

pub fn audio_files(tx: &Transaction<'_>, envelope: &Envelope) -> Result {
    if let Event::AudioFileRegistered(e) = &envelope.event {
        tx.execute(
            "INSERT INTO audio_files (id, filename, folder, checksum_sha256, size_bytes, duration_seconds,
                 sample_rate_original, channels, codec, stored_path, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                e.audio_file_id.0,
                e.original_filename,
                e.folder,
                e.checksum_sha256.0,
                e.size_bytes,
                e.duration_seconds,
                e.sample_rate,
                e.channels,
                e.codec,
                e.stored_path,
                envelope.recorded_at.to_rfc3339(),
            ],
        )?;
    }
    Ok(())
}

pub fn audio_metadata(tx: &Transaction<'_>, envelope: &Envelope) -> Result {
    let at = envelope.recorded_at.to_rfc3339();
    match &envelope.event {
        Event::AudioFileRegistered(e) => {
            tx.execute(
                "INSERT INTO audio_metadata (audio_file_id, edit_count, updated_at) VALUES (?1, 0, ?2)",
                params![e.audio_file_id.0, at],
            )?;
        }
        Event::AudioMetadataEdited(e) => {
            let text = |field: &Option<crate::domain::json_text::JsonText>| field.as_ref().map(|json| json.to_string());
            tx.execute(
                "UPDATE audio_metadata SET
                     tag_data = COALESCE(?2, tag_data),
                     visual_observations = COALESCE(?3, visual_observations),
                     group_composition = COALESCE(?4, group_composition),
                     prey_density_proxy = COALESCE(?5, prey_density_proxy),
                     edit_count = edit_count + 1,
                     updated_at = ?6
                 WHERE audio_file_id = ?1",
                params![
                    e.audio_file_id.0,
                    text(&e.tag_data),
                    text(&e.visual_observations),
                    text(&e.group_composition),
                    text(&e.prey_density_proxy),
                    at,
                ],
            )?;
            let mut changes = serde_json::Map::new();
            for (name, field) in [
                ("tag_data", &e.tag_data),
                ("visual_observations", &e.visual_observations),
                ("group_composition", &e.group_composition),
                ("prey_density_proxy", &e.prey_density_proxy),
            ] {
                if let Some(value) = field {
                    changes.insert(name.to_string(), value.to_value());
                }
            }
            tx.execute(
                "INSERT INTO audio_metadata_edits (seq, audio_file_id, changes, edited_by, edited_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    envelope.seq.0,
                    e.audio_file_id.0,
                    serde_json::Value::Object(changes).to_string(),
                    e.edited_by,
                    at
                ],
            )?;
        }
        _ => {}
    }
    Ok(())
}

/// The steps of a job's life that processing and clustering jobs share, with the same columns.
enum SharedJobStep<'a> {
    Failed { reason: &'a str },
    CancelRequested,
    Canceled,
    Abandoned { attempt: u32, reason: &'a str },
    Retried,
}

/// Applies a shared step to job `job_id` in `table` (`processing_jobs` or `clustering_jobs`).
fn shared_job_step(tx: &Transaction<'_>, table: &str, job_id: u64, step: SharedJobStep<'_>, at: &str) -> Result {
    match step {
        SharedJobStep::Failed { reason } => tx.execute(
            &format!(
                "UPDATE {table} SET status = 'failed', error_message = ?2, finished_at = ?3, updated_at = ?3
                 WHERE id = ?1"
            ),
            params![job_id, reason, at],
        ),
        SharedJobStep::CancelRequested => tx.execute(
            &format!("UPDATE {table} SET cancel_requested = 1, updated_at = ?2 WHERE id = ?1"),
            params![job_id, at],
        ),
        SharedJobStep::Canceled => tx.execute(
            &format!("UPDATE {table} SET status = 'canceled', finished_at = ?2, updated_at = ?2 WHERE id = ?1"),
            params![job_id, at],
        ),
        SharedJobStep::Abandoned { attempt, reason } => tx.execute(
            &format!(
                "UPDATE {table} SET status = 'queued', worker = NULL, error_message = ?2, updated_at = ?3 WHERE id = ?1"
            ),
            params![job_id, format!("attempt {attempt} abandoned: {reason}"), at],
        ),
        SharedJobStep::Retried => tx.execute(
            &format!(
                "UPDATE {table} SET status = 'queued', worker = NULL, cancel_requested = 0, finished_at = NULL,
                     updated_at = ?2
                 WHERE id = ?1"
            ),
            params![job_id, at],
        ),
    }?;
    Ok(())
}

pub fn processing_jobs(tx: &Transaction<'_>, envelope: &Envelope) -> Result {
    let at = envelope.recorded_at.to_rfc3339();
    match &envelope.event {
        Event::ProcessingJobQueued(e) => {
            tx.execute(
                "INSERT INTO processing_jobs (id, audio_file_id, status, encoding_signature, model_name, model_version,
                     window_size_seconds, hop_seconds, target_sample_rate, feature_config, attempt, cancel_requested,
                     created_at, updated_at)
                 VALUES (?1, ?2, 'queued', ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, 0, ?10, ?10)",
                params![
                    e.job_id.0,
                    e.audio_file_id.0,
                    e.encoding_signature.0,
                    e.config.model_name,
                    e.config.model_version,
                    e.config.window_seconds,
                    e.config.hop_seconds,
                    e.config.target_sample_rate,
                    e.config.feature_config.as_str(),
                    at,
                ],
            )?;
        }
        Event::ProcessingJobClaimed(e) => {
            tx.execute(
                "UPDATE processing_jobs SET status = 'running', attempt = ?2, worker = ?3, windows_done = NULL,
                     windows_total = NULL, error_message = NULL, started_at = ?4, finished_at = NULL, updated_at = ?4
                 WHERE id = ?1",
                params![e.job_id.0, e.attempt, e.worker.0, at],
            )?;
        }
        Event::ProcessingJobProgressed(e) => {
            tx.execute(
                "UPDATE processing_jobs SET windows_done = ?2, windows_total = ?3, updated_at = ?4 WHERE id = ?1",
                params![e.job_id.0, e.windows_done, e.windows_total, at],
            )?;
        }
        Event::ProcessingJobCompleted(e) => {
            tx.execute(
                "UPDATE processing_jobs SET status = 'complete', embedding_set_id = ?2, warning = ?3,
                     windows_done = COALESCE(windows_total, windows_done), finished_at = ?4, updated_at = ?4
                 WHERE id = ?1",
                params![e.job_id.0, e.embedding_set_id.map(|id| id.0), e.warning, at],
            )?;
        }
        Event::ProcessingJobFailed(e) => {
            shared_job_step(tx, "processing_jobs", e.job_id.0, SharedJobStep::Failed { reason: &e.reason }, &at)?;
        }
        Event::ProcessingJobCancelRequested(e) => {
            shared_job_step(tx, "processing_jobs", e.job_id.0, SharedJobStep::CancelRequested, &at)?;
        }
        Event::ProcessingJobCanceled(e) => {
            shared_job_step(tx, "processing_jobs", e.job_id.0, SharedJobStep::Canceled, &at)?;
        }
        Event::ProcessingJobAbandoned(e) => {
            let step = SharedJobStep::Abandoned { attempt: e.attempt, reason: &e.reason };
            shared_job_step(tx, "processing_jobs", e.job_id.0, step, &at)?;
        }
        Event::ProcessingJobRetried(e) => {
            shared_job_step(tx, "processing_jobs", e.job_id.0, SharedJobStep::Retried, &at)?;
        }
        _ => {}
    }
    Ok(())
}

pub fn embedding_sets(tx: &Transaction<'_>, envelope: &Envelope) -> Result {
    if let Event::EmbeddingSetPromoted(e) = &envelope.event {
        tx.execute(
            "INSERT INTO embedding_sets (id, audio_file_id, processing_job_id, encoding_signature, model_name,
                 model_version, window_size_seconds, hop_seconds, target_sample_rate, vector_dim, row_count,
                 parquet_path, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            params![
                e.embedding_set_id.0,
                e.audio_file_id.0,
                e.job_id.0,
                e.encoding_signature.0,
                e.model_name,
                e.model_version,
                e.window_seconds,
                e.hop_seconds,
                e.target_sample_rate,
                e.vector_dim,
                e.row_count,
                e.parquet_path,
                envelope.recorded_at.to_rfc3339(),
            ],
        )?;
    }
    Ok(())
}

pub fn clustering_jobs(tx: &Transaction<'_>, envelope: &Envelope) -> Result {
    let at = envelope.recorded_at.to_rfc3339();
    match &envelope.event {
        Event::ClusteringJobQueued(e) => {
            let ids: Vec<u64> = e.embedding_set_ids.iter().map(|id| id.0).collect();
            tx.execute(
                "INSERT INTO clustering_jobs (id, status, embedding_set_ids, parameters, attempt, cancel_requested,
                     created_at, updated_at)
                 VALUES (?1, 'queued', ?2, ?3, 0, 0, ?4, ?4)",
                params![e.job_id.0, serde_json::Value::from(ids).to_string(), e.parameters.as_str(), at],
            )?;
            for id in &e.embedding_set_ids {
                tx.execute(
                    "INSERT OR IGNORE INTO clustering_job_embedding_sets (clustering_job_id, embedding_set_id)
                     VALUES (?1, ?2)",
                    params![e.job_id.0, id.0],
                )?;
            }
        }
        Event::ClusteringJobClaimed(e) => {
            tx.execute(
                "UPDATE clustering_jobs SET status = 'running', attempt = ?2, worker = ?3, stage = NULL,
                     progress = NULL, error_message = NULL, started_at = ?4, finished_at = NULL, updated_at = ?4
                 WHERE id = ?1",
                params![e.job_id.0, e.attempt, e.worker.0, at],
            )?;
        }
        Event::ClusteringJobProgressed(e) => {
            tx.execute(
                "UPDATE clustering_jobs SET stage = ?2, progress = ?3, updated_at = ?4 WHERE id = ?1",
                params![e.job_id.0, e.stage, e.fraction, at],
            )?;
        }
        Event::ClusteringJobCompleted(e) => {
            tx.execute(
                "UPDATE clustering_jobs SET status = 'complete', stage = 'done', progress = 1.0, metrics = ?2,
                     clusters_json_path = ?3, assignments_path = ?4, finished_at = ?5, updated_at = ?5
                 WHERE id = ?1",
                params![e.job_id.0, e.metrics.as_str(), e.clusters_json_path, e.assignments_path, at],
            )?;
        }
        Event::ClusteringJobFailed(e) => {
            shared_job_step(tx, "clustering_jobs", e.job_id.0, SharedJobStep::Failed { reason: &e.reason }, &at)?;
        }
        Event::ClusteringJobCancelRequested(e) => {
            shared_job_step(tx, "clustering_jobs", e.job_id.0, SharedJobStep::CancelRequested, &at)?;
        }
        Event::ClusteringJobCanceled(e) => {
            shared_job_step(tx, "clustering_jobs", e.job_id.0, SharedJobStep::Canceled, &at)?;
        }
        Event::ClusteringJobAbandoned(e) => {
            let step = SharedJobStep::Abandoned { attempt: e.attempt, reason: &e.reason };
            shared_job_step(tx, "clustering_jobs", e.job_id.0, step, &at)?;
        }
        Event::ClusteringJobRetried(e) => {
            shared_job_step(tx, "clustering_jobs", e.job_id.0, SharedJobStep::Retried, &at)?;
        }
        _ => {}
    }
    Ok(())
}

pub fn classifiers(tx: &Transaction<'_>, envelope: &Envelope) -> Result {
    let at = envelope.recorded_at.to_rfc3339();
    match &envelope.event {
        Event::ClassifierTrainingQueued(e) => {
            tx.execute(
                "INSERT INTO classifiers (id, status, labels, model_version, request, attempt, cancel_requested,
                     created_at, updated_at)
                 VALUES (?1, 'queued', ?2, ?3, ?4, 0, 0, ?5, ?5)",
                params![
                    e.classifier_id.0,
                    serde_json::Value::from(e.labels.clone()).to_string(),
                    e.model_version,
                    e.request.as_str(),
                    at
                ],
            )?;
        }
        Event::ClassifierTrainingClaimed(e) => {
            tx.execute(
                "UPDATE classifiers SET status = 'running', attempt = ?2, worker = ?3, stage = NULL,
                     progress = NULL, error_message = NULL, started_at = ?4, finished_at = NULL, updated_at = ?4
                 WHERE id = ?1",
                params![e.classifier_id.0, e.attempt, e.worker.0, at],
            )?;
        }
        Event::ClassifierTrainingProgressed(e) => {
            tx.execute(
                "UPDATE classifiers SET stage = ?2, progress = ?3, updated_at = ?4 WHERE id = ?1",
                params![e.classifier_id.0, e.stage, e.fraction, at],
            )?;
        }
        Event::ClassifierTrainingCompleted(e) => {
            tx.execute(
                "UPDATE classifiers SET status = 'complete', stage = 'done', progress = 1.0, version = ?2,
                     artifact_path = ?3, vector_dim = ?4, threshold = ?5, metrics = ?6, training_set = ?7,
                     finished_at = ?8, updated_at = ?8
                 WHERE id = ?1",
                params![
                    e.classifier_id.0,
                    e.version,
                    e.artifact_path,
                    e.vector_dim,
                    e.threshold,
                    e.metrics.as_str(),
                    e.training_set.as_str(),
                    at
                ],
            )?;
        }
        Event::ClassifierTrainingFailed(e) => {
            shared_job_step(tx, "classifiers", e.classifier_id.0, SharedJobStep::Failed { reason: &e.reason }, &at)?;
        }
        Event::ClassifierTrainingCancelRequested(e) => {
            shared_job_step(tx, "classifiers", e.classifier_id.0, SharedJobStep::CancelRequested, &at)?;
        }
        Event::ClassifierTrainingCanceled(e) => {
            shared_job_step(tx, "classifiers", e.classifier_id.0, SharedJobStep::Canceled, &at)?;
        }
        Event::ClassifierTrainingAbandoned(e) => {
            let step = SharedJobStep::Abandoned { attempt: e.attempt, reason: &e.reason };
            shared_job_step(tx, "classifiers", e.classifier_id.0, step, &at)?;
        }
        Event::ClassifierTrainingRetried(e) => {
            shared_job_step(tx, "classifiers", e.classifier_id.0, SharedJobStep::Retried, &at)?;
        }
        _ => {}
    }
    Ok(())
}

pub fn detections(tx: &Transaction<'_>, envelope: &Envelope) -> Result {
    let at = envelope.recorded_at.to_rfc3339();
    match &envelope.event {
        Event::DetectionJobQueued(e) => {
            let ids: Vec<u64> = e.embedding_set_ids.iter().map(|id| id.0).collect();
            tx.execute(
                "INSERT INTO detection_jobs (id, status, classifier_id, classifier_version, embedding_set_ids,
                     threshold, scope, attempt, cancel_requested, created_at, updated_at)
                 VALUES (?1, 'queued', ?2, ?3, ?4, ?5, ?6, 0, 0, ?7, ?7)",
                params![
                    e.job_id.0,
                    e.classifier_id.0,
                    e.classifier_version,
                    serde_json::Value::from(ids).to_string(),
                    e.threshold,
                    e.scope.as_str(),
                    at
                ],
            )?;
        }
        Event::DetectionJobClaimed(e) => {
            tx.execute(
                "UPDATE detection_jobs SET status = 'running', attempt = ?2, worker = ?3, progress = NULL,
                     error_message = NULL, started_at = ?4, finished_at = NULL, updated_at = ?4
                 WHERE id = ?1",
                params![e.job_id.0, e.attempt, e.worker.0, at],
            )?;
        }
        Event::DetectionJobProgressed(e) => {
            tx.execute(
                "UPDATE detection_jobs SET progress = ?2, updated_at = ?3 WHERE id = ?1",
                params![e.job_id.0, e.fraction, at],
            )?;
        }
        Event::DetectionJobCompleted(e) => {
            tx.execute(
                "UPDATE detection_jobs SET status = 'complete', progress = 1.0, scores_path = ?2,
                     windows_scored = ?3, detection_count = ?4, finished_at = ?5, updated_at = ?5
                 WHERE id = ?1",
                params![e.job_id.0, e.scores_path, e.windows_scored, e.detections.len() as u64, at],
            )?;
            let mut statement = tx.prepare_cached(
                "INSERT INTO detections (detection_job_id, ordinal, embedding_set_id, audio_file_id, label,
                     start_seconds, end_seconds, max_score, mean_score, windows, first_row, last_row)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
            )?;
            for (ordinal, d) in e.detections.iter().enumerate() {
                statement.execute(params![
                    e.job_id.0,
                    ordinal as u64,
                    d.embedding_set_id.0,
                    d.audio_file_id.0,
                    d.label,
                    d.start_seconds,
                    d.end_seconds,
                    d.max_score,
                    d.mean_score,
                    d.windows,
                    d.first_row,
                    d.last_row
                ])?;
            }
        }
        Event::DetectionJobFailed(e) => {
            shared_job_step(tx, "detection_jobs", e.job_id.0, SharedJobStep::Failed { reason: &e.reason }, &at)?;
        }
        Event::DetectionJobCancelRequested(e) => {
            shared_job_step(tx, "detection_jobs", e.job_id.0, SharedJobStep::CancelRequested, &at)?;
        }
        Event::DetectionJobCanceled(e) => {
            shared_job_step(tx, "detection_jobs", e.job_id.0, SharedJobStep::Canceled, &at)?;
        }
        Event::DetectionJobAbandoned(e) => {
            let step = SharedJobStep::Abandoned { attempt: e.attempt, reason: &e.reason };
            shared_job_step(tx, "detection_jobs", e.job_id.0, step, &at)?;
        }
        Event::DetectionJobRetried(e) => {
            shared_job_step(tx, "detection_jobs", e.job_id.0, SharedJobStep::Retried, &at)?;
        }
        _ => {}
    }
    Ok(())
}

pub fn clusters(tx: &Transaction<'_>, envelope: &Envelope) -> Result {
    if let Event::ClusteringJobCompleted(e) = &envelope.event {
        let mut statement = tx.prepare_cached(
            "INSERT INTO clusters (id, clustering_job_id, cluster_label, is_noise, size, metadata_summary)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for cluster in &e.clusters {
            statement.execute(params![
                cluster.cluster_id.0,
                e.job_id.0,
                cluster.label,
                cluster.label < 0,
                cluster.size,
                cluster.metadata_summary.as_str(),
            ])?;
        }
    }
    Ok(())
}

/// A complete job's assignments: those a version 1 event carried, or the rows of the
/// `assignments.parquet` a version 2 event vouches for, read only if its SHA-256, row count and
/// labels agree with the event. A file that is missing or differs gives no rows, a warning and
/// a `problem` in `cluster_assignment_sources` (never a stuck projector: the log stays readable
/// and every other table is whole); restoring the file and rebuilding this projection fills it.
pub fn cluster_assignments(tx: &Transaction<'_>, envelope: &Envelope, storage: &crate::storage::Storage) -> Result {
    let Event::ClusteringJobCompleted(e) = &envelope.event else { return Ok(()) };
    let mut source = tx.prepare_cached(
        "INSERT INTO cluster_assignment_sources (clustering_job_id, source, row_count, problem) VALUES (?1, ?2, ?3, ?4)",
    )?;
    let from_file;
    let records = match &e.assignments {
        ClusterAssignments::Carried(records) => {
            source.execute(params![e.job_id.0, "event", records.len() as u64, None::<String>])?;
            records
        }
        ClusterAssignments::InFile(file) => {
            let checked = read_vouched_assignments(storage, &e.assignments_path, file)
                .map_err(|problem| problem.to_string())
                .and_then(|records| check_assignments_match_clusters(&e.clusters, &records).map(|()| records));
            match checked {
                Ok(records) => {
                    source.execute(params![e.job_id.0, "file", file.row_count, None::<String>])?;
                    from_file = records;
                    &from_file
                }
                Err(problem) => {
                    tracing::warn!(
                        job = %e.job_id,
                        path = %e.assignments_path,
                        %problem,
                        "clustering assignments not projected: the file is not the one the log vouches for"
                    );
                    source.execute(params![e.job_id.0, "file", file.row_count, problem])?;
                    return Ok(());
                }
            }
        }
    };
    let cluster_by_label: std::collections::HashMap<i64, u64> =
        e.clusters.iter().map(|cluster| (cluster.label, cluster.cluster_id.0)).collect();
    let mut statement = tx.prepare_cached(
        "INSERT INTO cluster_assignments (clustering_job_id, embedding_set_id, row_index, cluster_id, cluster_label)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for assignment in records {
        let Some(cluster_id) = cluster_by_label.get(&assignment.label) else {
            return Err(rusqlite::Error::ToSqlConversionFailure(
                format!(
                    "clustering job {} assigns row {} of embedding set {} to label {}, which has no cluster",
                    e.job_id, assignment.row_index, assignment.embedding_set_id, assignment.label
                )
                .into(),
            ));
        };
        statement.execute(params![
            e.job_id.0,
            assignment.embedding_set_id.0,
            assignment.row_index,
            cluster_id,
            assignment.label
        ])?;
    }
    Ok(())
}

pub fn event_index(tx: &Transaction<'_>, envelope: &Envelope) -> Result {
    let mut by_type = tx.prepare_cached("INSERT INTO event_types (event_type, seq) VALUES (?1, ?2)")?;
    by_type.execute(params![envelope.event.type_name(), envelope.seq.0])?;
    let mut by_aggregate =
        tx.prepare_cached("INSERT OR IGNORE INTO event_aggregates (aggregate, seq) VALUES (?1, ?2)")?;
    for aggregate in envelope.event.aggregates() {
        by_aggregate.execute(params![aggregate.to_string(), envelope.seq.0])?;
    }
    Ok(())
}

pub fn annotations(tx: &Transaction<'_>, envelope: &Envelope) -> Result {
    let at = envelope.recorded_at.to_rfc3339();
    let mut history = tx.prepare_cached(
        "INSERT INTO annotation_history (seq, annotation_id, audio_file_id, label, action, actor, at, annotation)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?;
    match &envelope.event {
        Event::AnnotationsAdded(e) => {
            let mut insert = tx.prepare_cached(
                "INSERT INTO annotations (id, audio_file_id, start_seconds, end_seconds, low_hz, high_hz, label, kind,
                     note, source, created_by, created_at, updated_by, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?11, ?12)",
            )?;
            for a in &e.annotations {
                insert.execute(params![
                    a.annotation_id.0,
                    a.audio_file_id.0,
                    a.start_seconds,
                    a.end_seconds,
                    a.low_hz,
                    a.high_hz,
                    a.label,
                    a.kind.as_str(),
                    a.note,
                    a.source,
                    e.created_by,
                    at,
                ])?;
                let snapshot = serde_json::json!({
                    "start_seconds": a.start_seconds, "end_seconds": a.end_seconds, "low_hz": a.low_hz,
                    "high_hz": a.high_hz, "label": a.label, "kind": a.kind, "note": a.note, "source": a.source,
                });
                history.execute(params![
                    envelope.seq.0,
                    a.annotation_id.0,
                    a.audio_file_id.0,
                    a.label,
                    "added",
                    e.created_by,
                    at,
                    snapshot.to_string()
                ])?;
            }
        }
        Event::AnnotationChanged(e) => {
            tx.execute(
                "UPDATE annotations SET start_seconds = ?2, end_seconds = ?3, low_hz = ?4, high_hz = ?5, label = ?6,
                     kind = ?7, note = ?8, updated_by = ?9, updated_at = ?10
                 WHERE id = ?1",
                params![
                    e.annotation_id.0,
                    e.start_seconds,
                    e.end_seconds,
                    e.low_hz,
                    e.high_hz,
                    e.label,
                    e.kind.as_str(),
                    e.note,
                    e.changed_by,
                    at
                ],
            )?;
            let snapshot = serde_json::json!({
                "start_seconds": e.start_seconds, "end_seconds": e.end_seconds, "low_hz": e.low_hz,
                "high_hz": e.high_hz, "label": e.label, "kind": e.kind, "note": e.note,
            });
            history.execute(params![
                envelope.seq.0,
                e.annotation_id.0,
                e.audio_file_id.0,
                e.label,
                "changed",
                e.changed_by,
                at,
                snapshot.to_string()
            ])?;
        }
        Event::AnnotationRemoved(e) => {
            let label: Option<String> = tx
                .query_row("SELECT label FROM annotations WHERE id = ?1", [e.annotation_id.0], |row| row.get(0))
                .optional()?;
            tx.execute("DELETE FROM annotations WHERE id = ?1", [e.annotation_id.0])?;
            history.execute(params![
                envelope.seq.0,
                e.annotation_id.0,
                e.audio_file_id.0,
                label.unwrap_or_default(),
                "removed",
                e.removed_by,
                at,
                "{}"
            ])?;
        }
        _ => {}
    }
    Ok(())
}

pub fn recording_times(tx: &Transaction<'_>, envelope: &Envelope) -> Result {
    if let Event::RecordingStartTimeSet(e) = &envelope.event {
        let at = envelope.recorded_at.to_rfc3339();
        let iso = e.recorded_at_micros.map(|micros| crate::recording_time::UtcTime(micros).to_iso8601());
        let source = e.recorded_at_micros.map(|_| e.source.as_str());
        tx.execute(
            "INSERT INTO recording_times (audio_file_id, recorded_at, recorded_at_micros, source, derivation, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (audio_file_id) DO UPDATE SET recorded_at = excluded.recorded_at,
                 recorded_at_micros = excluded.recorded_at_micros, source = excluded.source,
                 derivation = excluded.derivation, updated_at = excluded.updated_at",
            params![e.audio_file_id.0, iso, e.recorded_at_micros, source, e.derivation, at],
        )?;
        tx.execute(
            "INSERT INTO recording_time_edits (seq, audio_file_id, recorded_at, source, derivation, set_by, set_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![envelope.seq.0, e.audio_file_id.0, iso, e.source.as_str(), e.derivation, e.set_by, at],
        )?;
    }
    Ok(())
}
