//! Property: arbitrary events survive the record encoding unchanged.

use humpback::domain::events::*;
use humpback::domain::ids::*;
use humpback::domain::json_text::JsonText;
use humpback::log::envelope::{decode_record, encode_record, RecordedAt};
use proptest::prelude::*;

fn text() -> impl Strategy<Value = String> {
    ".{0,24}"
}

fn number() -> impl Strategy<Value = f64> {
    prop::num::f64::NORMAL | prop::num::f64::ZERO | prop::num::f64::SUBNORMAL
}

fn json_text() -> impl Strategy<Value = JsonText> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        text().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map(".{0,8}", inner, 0..4)
                .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
        ]
    })
    .prop_map(|value| JsonText::from_value(&value))
}

/// Metadata fields are JSON objects (the API refuses anything else), so `None` and a field
/// are never confused with a JSON `null`.
fn json_object() -> impl Strategy<Value = JsonText> {
    prop::collection::btree_map(".{0,8}", any::<i64>(), 0..4).prop_map(|map| {
        JsonText::from_value(&serde_json::Value::Object(
            map.into_iter().map(|(key, value)| (key, serde_json::Value::from(value))).collect(),
        ))
    })
}

fn sha() -> impl Strategy<Value = Sha256Hex> {
    "[0-9a-f]{64}".prop_map(Sha256Hex)
}

fn signature() -> impl Strategy<Value = EncodingSignature> {
    "[0-9a-f]{64}".prop_map(EncodingSignature)
}

fn config() -> impl Strategy<Value = EncodingConfig> {
    (text(), text(), number(), number(), any::<u32>(), json_text()).prop_map(
        |(model_name, model_version, window_seconds, hop_seconds, target_sample_rate, feature_config)| EncodingConfig {
            model_name,
            model_version,
            window_seconds,
            hop_seconds,
            target_sample_rate,
            feature_config,
        },
    )
}

fn event() -> impl Strategy<Value = Event> {
    let audio = any::<u64>().prop_map(AudioFileId);
    let job = any::<u64>().prop_map(ProcessingJobId);
    let cjob = any::<u64>().prop_map(ClusteringJobId);
    let set = any::<u64>().prop_map(EmbeddingSetId);
    prop_oneof![
        (text(), text(), prop::option::of(sha()), text(), any::<bool>(), any::<u32>(), number(), any::<u32>(), text())
            .prop_map(|(name, version, file_sha256, source, wave, sample_rate, window_seconds, embedding_dim, out)| {
                Event::ModelRegistered(ModelRegistered {
                    name,
                    version,
                    file_sha256,
                    source,
                    input_kind: if wave { ModelInputKind::Waveform } else { ModelInputKind::Spectrogram },
                    sample_rate,
                    window_seconds,
                    embedding_dim,
                    embedding_output: out,
                })
            }),
        (audio.clone(), text(), text(), sha(), any::<u64>(), number(), any::<u32>(), any::<u16>(), text(), text())
            .prop_map(|(id, name, folder, checksum, size, duration, rate, channels, codec, path)| {
                Event::AudioFileRegistered(AudioFileRegistered {
                    audio_file_id: id,
                    original_filename: name,
                    folder,
                    checksum_sha256: checksum,
                    size_bytes: size,
                    duration_seconds: duration,
                    sample_rate: rate,
                    channels,
                    codec,
                    stored_path: path,
                })
            }),
        (
            audio.clone(),
            prop::option::of(json_object()),
            prop::option::of(json_object()),
            prop::option::of(json_object()),
            prop::option::of(json_object()),
            prop::option::of(text())
        )
            .prop_map(|(id, a, b, c, d, by)| Event::AudioMetadataEdited(AudioMetadataEdited {
                audio_file_id: id,
                tag_data: a,
                visual_observations: b,
                group_composition: c,
                prey_density_proxy: d,
                edited_by: by,
            })),
        (job.clone(), audio.clone(), signature(), config()).prop_map(
            |(job_id, audio_file_id, encoding_signature, config)| {
                Event::ProcessingJobQueued(ProcessingJobQueued { job_id, audio_file_id, encoding_signature, config })
            }
        ),
        (job.clone(), text().prop_map(WorkerId), any::<u32>()).prop_map(|(job_id, worker, attempt)| {
            Event::ProcessingJobClaimed(ProcessingJobClaimed { job_id, worker, attempt })
        }),
        (job.clone(), any::<u32>(), any::<u64>(), any::<u64>()).prop_map(
            |(job_id, attempt, windows_done, windows_total)| {
                Event::ProcessingJobProgressed(ProcessingJobProgressed { job_id, attempt, windows_done, windows_total })
            }
        ),
        (set.clone(), job.clone(), audio, signature(), config(), any::<u32>(), any::<u64>(), text()).prop_map(
            |(
                embedding_set_id,
                job_id,
                audio_file_id,
                encoding_signature,
                config,
                vector_dim,
                row_count,
                parquet_path,
            )| {
                Event::EmbeddingSetPromoted(EmbeddingSetPromoted {
                    embedding_set_id,
                    job_id,
                    audio_file_id,
                    encoding_signature,
                    model_name: config.model_name,
                    model_version: config.model_version,
                    window_seconds: config.window_seconds,
                    hop_seconds: config.hop_seconds,
                    target_sample_rate: config.target_sample_rate,
                    vector_dim,
                    row_count,
                    parquet_path,
                })
            }
        ),
        (job.clone(), any::<u32>(), prop::option::of(set.clone()), prop::option::of(text())).prop_map(
            |(job_id, attempt, embedding_set_id, warning)| {
                Event::ProcessingJobCompleted(ProcessingJobCompleted { job_id, attempt, embedding_set_id, warning })
            }
        ),
        (job.clone(), any::<u32>(), text()).prop_map(|(job_id, attempt, reason)| Event::ProcessingJobFailed(
            ProcessingJobFailed { job_id, attempt, reason }
        )),
        job.clone().prop_map(|job_id| Event::ProcessingJobCancelRequested(ProcessingJobCancelRequested { job_id })),
        job.clone().prop_map(|job_id| Event::ProcessingJobCanceled(ProcessingJobCanceled { job_id })),
        (job.clone(), any::<u32>(), text()).prop_map(|(job_id, attempt, reason)| {
            Event::ProcessingJobAbandoned(ProcessingJobAbandoned { job_id, attempt, reason })
        }),
        job.prop_map(|job_id| Event::ProcessingJobRetried(ProcessingJobRetried { job_id })),
        (cjob.clone(), prop::collection::vec(set.clone(), 0..5), json_text()).prop_map(
            |(job_id, embedding_set_ids, parameters)| {
                Event::ClusteringJobQueued(ClusteringJobQueued { job_id, embedding_set_ids, parameters })
            }
        ),
        (cjob.clone(), text().prop_map(WorkerId), any::<u32>()).prop_map(|(job_id, worker, attempt)| {
            Event::ClusteringJobClaimed(ClusteringJobClaimed { job_id, worker, attempt })
        }),
        (cjob.clone(), any::<u32>(), text(), number()).prop_map(|(job_id, attempt, stage, fraction)| {
            Event::ClusteringJobProgressed(ClusteringJobProgressed { job_id, attempt, stage, fraction })
        }),
        (
            cjob.clone(),
            any::<u32>(),
            prop::collection::vec((any::<u64>(), any::<i64>(), any::<u64>(), json_text()), 0..4),
            prop_oneof![
                (text(), any::<u64>()).prop_map(|(sha256, row_count)| ClusterAssignments::InFile(AssignmentsFile {
                    sha256: Sha256Hex(sha256),
                    row_count
                })),
                prop::collection::vec((set, any::<u64>(), any::<i64>()), 0..8).prop_map(|records| {
                    ClusterAssignments::Carried(
                        records
                            .into_iter()
                            .map(|(embedding_set_id, row_index, label)| ClusterAssignmentRecord {
                                embedding_set_id,
                                row_index,
                                label,
                            })
                            .collect(),
                    )
                }),
            ],
            json_text(),
            text(),
            text()
        )
            .prop_map(
                |(job_id, attempt, clusters, assignments, metrics, clusters_json_path, assignments_path)| {
                    Event::ClusteringJobCompleted(ClusteringJobCompleted {
                        job_id,
                        attempt,
                        clusters: clusters
                            .into_iter()
                            .map(|(id, label, size, metadata_summary)| ClusterRecord {
                                cluster_id: ClusterId(id),
                                label,
                                size,
                                metadata_summary,
                            })
                            .collect(),
                        assignments,
                        metrics,
                        clusters_json_path,
                        assignments_path,
                    })
                }
            ),
        (cjob.clone(), any::<u32>(), text()).prop_map(|(job_id, attempt, reason)| Event::ClusteringJobFailed(
            ClusteringJobFailed { job_id, attempt, reason }
        )),
        cjob.clone().prop_map(|job_id| Event::ClusteringJobCancelRequested(ClusteringJobCancelRequested { job_id })),
        cjob.clone().prop_map(|job_id| Event::ClusteringJobCanceled(ClusteringJobCanceled { job_id })),
        (cjob.clone(), any::<u32>(), text()).prop_map(|(job_id, attempt, reason)| {
            Event::ClusteringJobAbandoned(ClusteringJobAbandoned { job_id, attempt, reason })
        }),
        cjob.prop_map(|job_id| Event::ClusteringJobRetried(ClusteringJobRetried { job_id })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_events_round_trip_through_the_record_encoding(event in event(), millis in any::<i64>(), seq in 1u64..) {
        let bytes = encode_record(&event, RecordedAt(millis)).unwrap();
        let envelope = decode_record(EventSeq(seq), &bytes).unwrap();
        prop_assert_eq!(&envelope.event, &event);
        prop_assert_eq!(envelope.recorded_at, RecordedAt(millis));
        prop_assert_eq!(envelope.event_version, event.type_version());
        prop_assert_eq!(envelope.seq, EventSeq(seq));
    }

    #[test]
    fn the_json_form_of_an_event_reads_back_as_the_same_event(event in event()) {
        let json = serde_json::to_value(&event).unwrap();
        let back: Event = serde_json::from_value(json).unwrap();
        prop_assert_eq!(back, event);
    }
}
