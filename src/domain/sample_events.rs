//! One plausible event of every type. Used by tests, the golden files under
//! `fixtures/events/` and the log benchmark. Not used by the product's own logic.

use super::events::*;
use super::ids::*;
use super::json_text::JsonText;

fn json(text: &str) -> JsonText {
    JsonText::parse(text).unwrap_or_else(|_| JsonText::empty_object())
}

pub fn sample_encoding_config() -> EncodingConfig {
    EncodingConfig {
        model_name: "builtin-logmel-stats".into(),
        model_version: "builtin-logmel-stats@1".into(),
        window_seconds: 5.0,
        hop_seconds: 5.0,
        target_sample_rate: 32_000,
        feature_config: json(r#"{"short_file":"pad","mel_bins":128}"#),
    }
}

pub fn sample_signature() -> EncodingSignature {
    EncodingSignature("9f2c1e7a5b3d4c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60".into())
}

/// Exactly one event of each type in [`Event::TYPES`], in that order.
pub fn one_event_of_every_type() -> Vec<Event> {
    let audio = AudioFileId(1);
    let job = ProcessingJobId(1);
    let set = EmbeddingSetId(1);
    let clustering = ClusteringJobId(1);
    let worker = WorkerId("host:1234:0".into());
    vec![
        Event::ModelRegistered(ModelRegistered {
            name: "perch-v2".into(),
            version: "perch-v2@3f2a9c1d".into(),
            file_sha256: Some(Sha256Hex("3f2a9c1d".repeat(8))),
            source: "models/perch-v2.tflite".into(),
            input_kind: ModelInputKind::Waveform,
            sample_rate: 32_000,
            window_seconds: 5.0,
            embedding_dim: 1536,
            embedding_output: "embedding (by name)".into(),
        }),
        Event::AudioFileRegistered(AudioFileRegistered {
            audio_file_id: audio,
            original_filename: "HUMP_2024-07-01T0600.wav".into(),
            folder: "maui/2024-07".into(),
            checksum_sha256: Sha256Hex("ab".repeat(32)),
            size_bytes: 3_528_044,
            duration_seconds: 20.0,
            sample_rate: 44_100,
            channels: 2,
            codec: "pcm_s16le".into(),
            stored_path: "audio/raw/1/original.wav".into(),
        }),
        Event::AudioMetadataEdited(AudioMetadataEdited {
            audio_file_id: audio,
            tag_data: Some(json(r#"{"tag":"DTAG-4","depth_m":[12.5,30.1]}"#)),
            visual_observations: None,
            group_composition: Some(json(r#"{"adults":2,"calves":1}"#)),
            prey_density_proxy: None,
            edited_by: Some("observer@example.org".into()),
        }),
        Event::ProcessingJobQueued(ProcessingJobQueued {
            job_id: job,
            audio_file_id: audio,
            encoding_signature: sample_signature(),
            config: sample_encoding_config(),
        }),
        Event::ProcessingJobClaimed(ProcessingJobClaimed { job_id: job, worker: worker.clone(), attempt: 1 }),
        Event::ProcessingJobProgressed(ProcessingJobProgressed {
            job_id: job,
            attempt: 1,
            windows_done: 2,
            windows_total: 4,
        }),
        Event::EmbeddingSetPromoted(EmbeddingSetPromoted {
            embedding_set_id: set,
            job_id: job,
            audio_file_id: audio,
            encoding_signature: sample_signature(),
            model_name: "builtin-logmel-stats".into(),
            model_version: "builtin-logmel-stats@1".into(),
            window_seconds: 5.0,
            hop_seconds: 5.0,
            target_sample_rate: 32_000,
            vector_dim: 512,
            row_count: 4,
            parquet_path: format!("embeddings/builtin-logmel-stats@1/1/{}.parquet", sample_signature()),
        }),
        Event::ProcessingJobCompleted(ProcessingJobCompleted {
            job_id: job,
            attempt: 1,
            embedding_set_id: Some(set),
            warning: None,
        }),
        Event::ProcessingJobFailed(ProcessingJobFailed {
            job_id: ProcessingJobId(2),
            attempt: 1,
            reason: "decode failed: not an audio file".into(),
        }),
        Event::ProcessingJobCancelRequested(ProcessingJobCancelRequested { job_id: ProcessingJobId(3) }),
        Event::ProcessingJobCanceled(ProcessingJobCanceled { job_id: ProcessingJobId(3) }),
        Event::ProcessingJobAbandoned(ProcessingJobAbandoned {
            job_id: ProcessingJobId(4),
            attempt: 1,
            reason: "server restarted while the attempt was running".into(),
        }),
        Event::ProcessingJobRetried(ProcessingJobRetried { job_id: ProcessingJobId(2) }),
        Event::ClusteringJobQueued(ClusteringJobQueued {
            job_id: clustering,
            embedding_set_ids: vec![set],
            parameters: json(r#"{"algorithm":"hdbscan","min_cluster_size":5}"#),
        }),
        Event::ClusteringJobClaimed(ClusteringJobClaimed { job_id: clustering, worker, attempt: 1 }),
        Event::ClusteringJobProgressed(ClusteringJobProgressed {
            job_id: clustering,
            attempt: 1,
            stage: "clustering".into(),
            fraction: 0.5,
        }),
        Event::ClusteringJobCompleted(ClusteringJobCompleted {
            job_id: clustering,
            attempt: 1,
            clusters: vec![
                ClusterRecord {
                    cluster_id: ClusterId(1),
                    label: -1,
                    size: 1,
                    metadata_summary: json(r#"{"folder":{"maui/2024-07":1}}"#),
                },
                ClusterRecord {
                    cluster_id: ClusterId(2),
                    label: 0,
                    size: 3,
                    metadata_summary: json(r#"{"folder":{"maui/2024-07":3}}"#),
                },
            ],
            assignments: ClusterAssignments::InFile(AssignmentsFile {
                sha256: Sha256Hex("5d41402abc4b2a76b9719d911017c592aa7f5a2c1a8b1c6f3e2d1c0b9a897969".into()),
                row_count: 4,
            }),
            metrics: json(r#"{"silhouette":null,"n_clusters":1,"noise_fraction":0.25}"#),
            clusters_json_path: "clusters/1/clusters.json".into(),
            assignments_path: "clusters/1/assignments.parquet".into(),
        }),
        Event::ClusteringJobFailed(ClusteringJobFailed {
            job_id: ClusteringJobId(2),
            attempt: 1,
            reason: "embedding set 9 parquet is unreadable".into(),
        }),
        Event::ClusteringJobCancelRequested(ClusteringJobCancelRequested { job_id: ClusteringJobId(3) }),
        Event::ClusteringJobCanceled(ClusteringJobCanceled { job_id: ClusteringJobId(3) }),
        Event::ClusteringJobAbandoned(ClusteringJobAbandoned {
            job_id: ClusteringJobId(4),
            attempt: 1,
            reason: "server restarted while the attempt was running".into(),
        }),
        Event::ClusteringJobRetried(ClusteringJobRetried { job_id: ClusteringJobId(2) }),
        Event::AnnotationsAdded(AnnotationsAdded {
            annotations: vec![
                AnnotationRecord {
                    annotation_id: AnnotationId(1),
                    audio_file_id: audio,
                    start_seconds: 2.5,
                    end_seconds: 4.25,
                    low_hz: Some(150.0),
                    high_hz: Some(2_400.0),
                    label: "song unit A".into(),
                    kind: AnnotationKind::Positive,
                    note: Some("upsweep, faint second harmonic".into()),
                    source: "manual".into(),
                },
                AnnotationRecord {
                    annotation_id: AnnotationId(2),
                    audio_file_id: audio,
                    start_seconds: 10.0,
                    end_seconds: 15.0,
                    low_hz: None,
                    high_hz: None,
                    label: "boat noise".into(),
                    kind: AnnotationKind::Negative,
                    note: None,
                    source: "cluster:3".into(),
                },
            ],
            created_by: Some("observer@example.org".into()),
        }),
        Event::AnnotationChanged(AnnotationChanged {
            annotation_id: AnnotationId(1),
            audio_file_id: audio,
            start_seconds: 2.5,
            end_seconds: 4.5,
            low_hz: Some(150.0),
            high_hz: Some(2_400.0),
            label: "song unit A".into(),
            kind: AnnotationKind::Uncertain,
            note: None,
            changed_by: None,
        }),
        Event::AnnotationRemoved(AnnotationRemoved {
            annotation_id: AnnotationId(2),
            audio_file_id: audio,
            removed_by: Some("observer@example.org".into()),
        }),
        Event::RecordingStartTimeSet(RecordingStartTimeSet {
            audio_file_id: audio,
            recorded_at_micros: Some(1_719_815_400_000_000),
            source: RecordingTimeSource::FileName,
            derivation: "file name pattern *%Y%m%d_%H%M%S.* at Z".into(),
            set_by: None,
        }),
        Event::ModelRetired(ModelRetired { name: "perch-v2".into(), version: "perch-v2@3f2a9c1d".into() }),
        Event::ClassifierTrainingQueued(ClassifierTrainingQueued {
            classifier_id: ClassifierId(1),
            labels: vec!["song unit A".into()],
            model_version: "perch_v2".into(),
            request: json(r#"{"labels":["song unit A"],"model_version":"perch_v2","c":1.0}"#),
        }),
        Event::ClassifierTrainingClaimed(ClassifierTrainingClaimed {
            classifier_id: ClassifierId(1),
            worker: WorkerId("host:42:0".into()),
            attempt: 1,
        }),
        Event::ClassifierTrainingProgressed(ClassifierTrainingProgressed {
            classifier_id: ClassifierId(1),
            attempt: 1,
            stage: "evaluating".into(),
            fraction: 0.5,
        }),
        Event::ClassifierTrainingCompleted(ClassifierTrainingCompleted {
            classifier_id: ClassifierId(1),
            attempt: 1,
            artifact_path: "classifiers/1/classifier.json".into(),
            version: "0123456789abcdef".into(),
            vector_dim: 1280,
            threshold: 0.5,
            metrics: json(r#"[{"label":"song unit A","roc_auc":0.97}]"#),
            training_set: json(r#"{"windows":120,"recordings":4}"#),
        }),
        Event::ClassifierTrainingFailed(ClassifierTrainingFailed {
            classifier_id: ClassifierId(2),
            attempt: 1,
            reason: "label \"song unit A\" has no negative windows; a classifier needs both".into(),
        }),
        Event::ClassifierTrainingCancelRequested(ClassifierTrainingCancelRequested { classifier_id: ClassifierId(3) }),
        Event::ClassifierTrainingCanceled(ClassifierTrainingCanceled { classifier_id: ClassifierId(3) }),
        Event::ClassifierTrainingAbandoned(ClassifierTrainingAbandoned {
            classifier_id: ClassifierId(4),
            attempt: 1,
            reason: "server restarted while the attempt was running".into(),
        }),
        Event::ClassifierTrainingRetried(ClassifierTrainingRetried { classifier_id: ClassifierId(2) }),
        Event::DetectionJobQueued(DetectionJobQueued {
            job_id: DetectionJobId(1),
            classifier_id: ClassifierId(1),
            classifier_version: "0123456789abcdef".into(),
            embedding_set_ids: vec![set],
            threshold: 0.5,
            scope: json(r#"{"folder":"maui/2024-07"}"#),
        }),
        Event::DetectionJobClaimed(DetectionJobClaimed {
            job_id: DetectionJobId(1),
            worker: WorkerId("host:42:detection:0".into()),
            attempt: 1,
        }),
        Event::DetectionJobProgressed(DetectionJobProgressed { job_id: DetectionJobId(1), attempt: 1, fraction: 0.5 }),
        Event::DetectionJobCompleted(DetectionJobCompleted {
            job_id: DetectionJobId(1),
            attempt: 1,
            scores_path: "detections/1/scores.parquet".into(),
            windows_scored: 4,
            detections: vec![DetectionRecordEvent {
                embedding_set_id: set,
                audio_file_id: audio,
                label: "song unit A".into(),
                start_seconds: 5.0,
                end_seconds: 15.0,
                max_score: 0.93,
                mean_score: 0.81,
                windows: 2,
                first_row: 1,
                last_row: 2,
            }],
        }),
        Event::DetectionJobFailed(DetectionJobFailed {
            job_id: DetectionJobId(2),
            attempt: 1,
            reason: "classifier 1's file has version 1111111111111111, the log says 0123456789abcdef".into(),
        }),
        Event::DetectionJobCancelRequested(DetectionJobCancelRequested { job_id: DetectionJobId(3) }),
        Event::DetectionJobCanceled(DetectionJobCanceled { job_id: DetectionJobId(3) }),
        Event::DetectionJobAbandoned(DetectionJobAbandoned {
            job_id: DetectionJobId(4),
            attempt: 1,
            reason: "server restarted while the attempt was running".into(),
        }),
        Event::DetectionJobRetried(DetectionJobRetried { job_id: DetectionJobId(2) }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_samples_cover_every_event_type_once_in_order() {
        let names: Vec<&str> = one_event_of_every_type().iter().map(Event::type_name).collect();
        let expected: Vec<&str> = Event::TYPES.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, expected);
    }
}

/// A valid stream of `count` events, as a busy humpback records them: each audio file is
/// registered, its metadata edited, a job queued, claimed, progressed, its embedding set
/// promoted and the job completed. Ids are unique, so every projection accepts it.
pub fn realistic_event_stream(count: usize) -> impl Iterator<Item = Event> {
    let templates = one_event_of_every_type();
    (0..count).map(move |index| {
        let n = (index / 7) as u64 + 1;
        let signature = EncodingSignature(format!("{n:064x}"));
        match (index % 7, &templates[1], &templates[2], &templates[3], &templates[6]) {
            (0, Event::AudioFileRegistered(template), _, _, _) => Event::AudioFileRegistered(AudioFileRegistered {
                audio_file_id: AudioFileId(n),
                checksum_sha256: Sha256Hex(format!("{n:064x}")),
                stored_path: format!("audio/raw/{n}/original.wav"),
                ..template.clone()
            }),
            (1, _, Event::AudioMetadataEdited(template), _, _) => {
                Event::AudioMetadataEdited(AudioMetadataEdited { audio_file_id: AudioFileId(n), ..template.clone() })
            }
            (2, _, _, Event::ProcessingJobQueued(template), _) => Event::ProcessingJobQueued(ProcessingJobQueued {
                job_id: ProcessingJobId(n),
                audio_file_id: AudioFileId(n),
                encoding_signature: signature,
                ..template.clone()
            }),
            (3, ..) => Event::ProcessingJobClaimed(ProcessingJobClaimed {
                job_id: ProcessingJobId(n),
                worker: WorkerId("bench:0".into()),
                attempt: 1,
            }),
            (4, ..) => Event::ProcessingJobProgressed(ProcessingJobProgressed {
                job_id: ProcessingJobId(n),
                attempt: 1,
                windows_done: 360,
                windows_total: 720,
            }),
            (5, _, _, _, Event::EmbeddingSetPromoted(template)) => Event::EmbeddingSetPromoted(EmbeddingSetPromoted {
                embedding_set_id: EmbeddingSetId(n),
                job_id: ProcessingJobId(n),
                audio_file_id: AudioFileId(n),
                encoding_signature: signature,
                parquet_path: format!("embeddings/builtin-logmel-stats@1/{n}/{n:064x}.parquet"),
                ..template.clone()
            }),
            _ => Event::ProcessingJobCompleted(ProcessingJobCompleted {
                job_id: ProcessingJobId(n),
                attempt: 1,
                embedding_set_id: Some(EmbeddingSetId(n)),
                warning: None,
            }),
        }
    })
}

#[cfg(test)]
mod stream_tests {
    use super::*;
    use crate::domain::ids::EventSeq;
    use crate::domain::state::{DomainState, JobStatus};

    #[test]
    fn the_realistic_stream_is_a_valid_history() {
        let events: Vec<Event> = realistic_event_stream(70).collect();
        let state = DomainState::from_events(events.iter().enumerate().map(|(i, e)| (EventSeq(i as u64 + 1), e)));
        assert_eq!(state.audio_files.len(), 10);
        assert_eq!(state.embedding_sets.len(), 10);
        assert!(state.processing_jobs.values().all(|job| job.status == JobStatus::Complete));
    }
}
