//! `decide` as given / when / then.

use super::*;
use crate::domain::ids::{ClassifierId, ClusterId, EventSeq};
use crate::domain::sample_events::{sample_encoding_config, sample_signature};

fn given(events: &[Event]) -> DomainState {
    DomainState::from_events(events.iter().enumerate().map(|(index, event)| (EventSeq(index as u64 + 1), event)))
}

fn then_events(state: &DomainState, command: Command) -> Vec<Event> {
    decide(state, command).expect("command should be accepted")
}

fn then_rejected(state: &DomainState, command: Command) -> Rejection {
    decide(state, command).expect_err("command should be rejected")
}

fn register(checksum: &str) -> Command {
    Command::RegisterAudioFile(RegisterAudioFile {
        original_filename: "../../etc/passwd.wav".into(),
        folder: "maui".into(),
        checksum_sha256: Sha256Hex(checksum.into()),
        size_bytes: 10,
        duration_seconds: 12.0,
        sample_rate: 44_100,
        channels: 1,
        codec: "pcm_s16le".into(),
        extension: "WAV".into(),
        recorded_at: None,
        location: Default::default(),
    })
}

/// Applies the accepted events of each command in turn, as the writer does.
fn given_commands(commands: Vec<Command>) -> (DomainState, Vec<Event>) {
    let mut state = DomainState::default();
    let mut log = Vec::new();
    for command in commands {
        for event in decide(&state, command).expect("setup command accepted") {
            state.apply(EventSeq(log.len() as u64 + 1), &event);
            log.push(event);
        }
    }
    (state, log)
}

fn queue(audio: u64, signature: &str) -> Command {
    Command::QueueProcessingJob {
        audio_file_id: AudioFileId(audio),
        encoding_signature: EncodingSignature(signature.into()),
        config: sample_encoding_config(),
    }
}

fn claim(worker: &str) -> Command {
    Command::ClaimProcessingJob { worker: WorkerId(worker.into()) }
}

fn complete(job: u64, attempt: u32) -> Command {
    Command::CompleteProcessingJob {
        job_id: ProcessingJobId(job),
        attempt,
        embedding_set: Some(NewEmbeddingSet {
            vector_dim: 8,
            row_count: 3,
            parquet_path: "embeddings/x.parquet".into(),
        }),
        warning: None,
    }
}

#[test]
fn registering_audio_assigns_the_next_id_and_a_path_built_from_the_id_not_the_filename() {
    let (state, _) = given_commands(vec![register("a")]);
    let events = then_events(&state, register("b"));
    let [Event::AudioFileRegistered(registered)] = events.as_slice() else { panic!("{events:?}") };
    assert_eq!(registered.audio_file_id, AudioFileId(2));
    assert_eq!(registered.stored_path, "audio/raw/2/original.wav");
    assert_eq!(registered.original_filename, "../../etc/passwd.wav", "the name is kept as metadata");
}

#[test]
fn registering_the_same_bytes_twice_is_rejected_with_the_existing_file() {
    let (state, _) = given_commands(vec![register("a")]);
    assert_eq!(then_rejected(&state, register("a")), Rejection::AudioFileAlreadyRegistered(AudioFileId(1)));
}

#[test]
fn registering_an_unsupported_extension_is_rejected() {
    let Command::RegisterAudioFile(mut command) = register("a") else { unreachable!() };
    command.extension = "exe".into();
    let rejection = then_rejected(&DomainState::default(), Command::RegisterAudioFile(command));
    assert_eq!(rejection, Rejection::UnsupportedAudioExtension("exe".into()));
}

#[test]
fn editing_metadata_needs_a_known_file_and_a_changed_field() {
    let edit = |id| EditAudioMetadata {
        audio_file_id: AudioFileId(id),
        mode: MetadataEditMode::Replace,
        tag_data: None,
        visual_observations: None,
        group_composition: None,
        prey_density_proxy: None,
        edited_by: None,
    };
    let (state, _) = given_commands(vec![register("a")]);
    assert_eq!(
        then_rejected(&state, Command::EditAudioMetadata(edit(9))),
        Rejection::AudioFileNotFound(AudioFileId(9))
    );
    assert_eq!(then_rejected(&state, Command::EditAudioMetadata(edit(1))), Rejection::EmptyMetadataEdit);
    let mut with_field = edit(1);
    with_field.group_composition = Some(JsonText::parse(r#"{"adults":2}"#).unwrap());
    let events = then_events(&state, Command::EditAudioMetadata(with_field));
    assert!(matches!(events.as_slice(), [Event::AudioMetadataEdited(_)]));
}

#[test]
fn queueing_unknown_audio_is_rejected() {
    assert_eq!(then_rejected(&DomainState::default(), queue(4, "s")), Rejection::AudioFileNotFound(AudioFileId(4)));
}

#[test]
fn queueing_a_signature_that_is_queued_or_running_names_the_existing_job() {
    let (state, _) = given_commands(vec![register("a"), queue(1, "s")]);
    assert_eq!(then_rejected(&state, queue(1, "s")), Rejection::AlreadyQueued(ProcessingJobId(1)));
    let (state, _) = given_commands(vec![register("a"), queue(1, "s"), claim("w")]);
    assert_eq!(then_rejected(&state, queue(1, "s")), Rejection::AlreadyQueued(ProcessingJobId(1)));
}

#[test]
fn requeueing_an_encoded_file_creates_no_second_embedding_set() {
    let (state, _) = given_commands(vec![register("a"), queue(1, "s"), claim("w"), complete(1, 1)]);
    assert_eq!(
        then_rejected(&state, queue(1, "s")),
        Rejection::AlreadyEncoded { audio_file_id: AudioFileId(1), embedding_set_id: Some(EmbeddingSetId(1)) }
    );
    assert_eq!(state.embedding_sets.len(), 1);
}

#[test]
fn a_different_signature_for_the_same_file_is_a_new_job() {
    let (state, _) = given_commands(vec![register("a"), queue(1, "s")]);
    let events = then_events(&state, queue(1, "t"));
    let [Event::ProcessingJobQueued(queued)] = events.as_slice() else { panic!("{events:?}") };
    assert_eq!(queued.job_id, ProcessingJobId(2));
}

#[test]
fn queueing_a_failed_signature_again_retries_its_one_job() {
    let fail = Command::FailProcessingJob { job_id: ProcessingJobId(1), attempt: 1, reason: "boom".into() };
    let (state, _) = given_commands(vec![register("a"), queue(1, "s"), claim("w"), fail]);
    assert_eq!(
        then_events(&state, queue(1, "s")),
        vec![Event::ProcessingJobRetried(ProcessingJobRetried { job_id: ProcessingJobId(1) })]
    );
}

#[test]
fn a_job_is_claimed_once_and_the_oldest_queued_job_goes_first() {
    let (state, _) = given_commands(vec![register("a"), queue(1, "s"), queue(1, "t")]);
    let events = then_events(&state, claim("w1"));
    assert_eq!(
        events,
        vec![Event::ProcessingJobClaimed(ProcessingJobClaimed {
            job_id: ProcessingJobId(1),
            worker: WorkerId("w1".into()),
            attempt: 1
        })]
    );
    let (state, _) = given_commands(vec![register("a"), queue(1, "s"), claim("w1")]);
    assert_eq!(then_rejected(&state, claim("w2")), Rejection::NothingToClaim);
}

#[test]
fn completing_promotes_one_embedding_set_carrying_the_jobs_configuration() {
    let (state, _) = given_commands(vec![register("a"), queue(1, "s"), claim("w")]);
    let events = then_events(&state, complete(1, 1));
    let [Event::EmbeddingSetPromoted(promoted), Event::ProcessingJobCompleted(completed)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(promoted.embedding_set_id, EmbeddingSetId(1));
    assert_eq!(promoted.encoding_signature, EncodingSignature("s".into()));
    assert_eq!(promoted.model_version, sample_encoding_config().model_version);
    assert_eq!(completed.embedding_set_id, Some(EmbeddingSetId(1)));
}

#[test]
fn a_stale_attempt_cannot_complete_report_or_fail() {
    let abandon = Command::AbandonProcessingJob { job_id: ProcessingJobId(1), attempt: 1, reason: "restart".into() };
    let (state, _) = given_commands(vec![register("a"), queue(1, "s"), claim("w"), abandon, claim("w")]);
    assert!(matches!(then_rejected(&state, complete(1, 1)), Rejection::NotRunningAttempt { attempt: 1, .. }));
    let progress =
        Command::ReportProcessingProgress { job_id: ProcessingJobId(1), attempt: 1, windows_done: 1, windows_total: 2 };
    assert!(matches!(then_rejected(&state, progress), Rejection::NotRunningAttempt { .. }));
    assert_eq!(then_events(&state, complete(1, 2)).len(), 2);
}

#[test]
fn an_abandoned_attempt_goes_back_to_the_queue_and_the_next_claim_is_attempt_two() {
    let abandon = Command::AbandonProcessingJob { job_id: ProcessingJobId(1), attempt: 1, reason: "restart".into() };
    let (state, _) = given_commands(vec![register("a"), queue(1, "s"), claim("w"), abandon]);
    assert_eq!(state.processing_jobs[&ProcessingJobId(1)].status, JobStatus::Queued);
    let events = then_events(&state, claim("w"));
    assert!(matches!(events.as_slice(), [Event::ProcessingJobClaimed(ProcessingJobClaimed { attempt: 2, .. })]));
}

#[test]
fn canceling_a_queued_job_cancels_it_and_a_running_one_asks_its_worker() {
    let cancel = Command::CancelProcessingJob { job_id: ProcessingJobId(1) };
    let (state, _) = given_commands(vec![register("a"), queue(1, "s")]);
    assert_eq!(
        then_events(&state, cancel.clone()),
        vec![Event::ProcessingJobCanceled(ProcessingJobCanceled { job_id: ProcessingJobId(1) })]
    );
    let (state, _) = given_commands(vec![register("a"), queue(1, "s"), claim("w")]);
    assert_eq!(
        then_events(&state, cancel.clone()),
        vec![Event::ProcessingJobCancelRequested(ProcessingJobCancelRequested { job_id: ProcessingJobId(1) })]
    );
    let (state, _) = given_commands(vec![register("a"), queue(1, "s"), claim("w"), cancel.clone()]);
    assert_eq!(then_events(&state, cancel.clone()), vec![], "asking twice records nothing new");
    let abandon = Command::AbandonProcessingJob { job_id: ProcessingJobId(1), attempt: 1, reason: "restart".into() };
    let events = then_events(&state, abandon);
    assert!(matches!(events.last(), Some(Event::ProcessingJobCanceled(_))), "{events:?}");
    let (state, _) = given_commands(vec![register("a"), queue(1, "s"), claim("w"), complete(1, 1)]);
    assert!(matches!(then_rejected(&state, cancel), Rejection::NotCancelable { status: JobStatus::Complete, .. }));
}

#[test]
fn only_failed_or_canceled_jobs_can_be_retried() {
    let retry = Command::RetryProcessingJob { job_id: ProcessingJobId(1) };
    let (state, _) = given_commands(vec![register("a"), queue(1, "s")]);
    assert!(matches!(then_rejected(&state, retry.clone()), Rejection::NotRetryable { status: JobStatus::Queued, .. }));
    let cancel = Command::CancelProcessingJob { job_id: ProcessingJobId(1) };
    let (state, _) = given_commands(vec![register("a"), queue(1, "s"), cancel]);
    assert_eq!(then_events(&state, retry).len(), 1);
}

fn encoded_sets() -> (DomainState, Vec<Event>) {
    let mut other_config = sample_encoding_config();
    other_config.model_version = "other@1".into();
    given_commands(vec![
        register("a"),
        register("b"),
        queue(1, "s"),
        queue(2, "t"),
        Command::QueueProcessingJob {
            audio_file_id: AudioFileId(2),
            encoding_signature: EncodingSignature("u".into()),
            config: other_config,
        },
        claim("w"),
        complete(1, 1),
        claim("w"),
        complete(2, 1),
        claim("w"),
        complete(3, 1),
    ])
}

#[test]
fn clustering_needs_known_sets_of_one_model_version() {
    let (state, _) = encoded_sets();
    let queue_clustering = |ids: Vec<u64>| Command::QueueClusteringJob {
        embedding_set_ids: ids.into_iter().map(EmbeddingSetId).collect(),
        parameters: JsonText::empty_object(),
    };
    assert_eq!(then_rejected(&state, queue_clustering(vec![])), Rejection::NoEmbeddingSets);
    assert_eq!(then_rejected(&state, queue_clustering(vec![1, 7])), Rejection::EmbeddingSetNotFound(EmbeddingSetId(7)));
    assert_eq!(
        then_rejected(&state, queue_clustering(vec![1, 2, 3])),
        Rejection::MixedEmbeddingSets(vec![EmbeddingSetId(3)])
    );
    let events = then_events(&state, queue_clustering(vec![1, 2]));
    assert!(matches!(
        events.as_slice(),
        [Event::ClusteringJobQueued(ClusteringJobQueued { job_id: ClusteringJobId(1), .. })]
    ));
}

#[test]
fn completed_clusterings_number_their_clusters_after_all_earlier_ones() {
    let (state, _) = encoded_sets();
    let mut completed = match crate::domain::sample_events::one_event_of_every_type()
        .into_iter()
        .find(|event| event.type_name() == "ClusteringJobCompleted")
    {
        Some(Event::ClusteringJobCompleted(completed)) => completed,
        _ => unreachable!(),
    };
    let mut commands = vec![Command::QueueClusteringJob {
        embedding_set_ids: vec![EmbeddingSetId(1)],
        parameters: JsonText::empty_object(),
    }];
    commands.push(Command::ClaimClusteringJob { worker: WorkerId("w".into()) });
    commands.push(Command::CompleteClusteringJob(completed.clone()));
    commands.push(Command::QueueClusteringJob {
        embedding_set_ids: vec![EmbeddingSetId(1)],
        parameters: JsonText::empty_object(),
    });
    commands.push(Command::ClaimClusteringJob { worker: WorkerId("w".into()) });
    let mut state = state;
    let mut seq = state.last_seq;
    for command in commands {
        for event in decide(&state, command).unwrap() {
            seq = seq.next();
            state.apply(seq, &event);
        }
    }
    completed.job_id = ClusteringJobId(2);
    let events = then_events(&state, Command::CompleteClusteringJob(completed));
    let [Event::ClusteringJobCompleted(done)] = events.as_slice() else { panic!("{events:?}") };
    let ids: Vec<ClusterId> = done.clusters.iter().map(|cluster| cluster.cluster_id).collect();
    assert_eq!(ids, vec![ClusterId(3), ClusterId(4)]);
}

#[test]
fn folding_the_sample_events_never_panics_and_tracks_the_last_sequence() {
    let events = crate::domain::sample_events::one_event_of_every_type();
    let state = given(&events);
    assert_eq!(state.last_seq, EventSeq(events.len() as u64));
    assert!(state.completed_encoding(&sample_signature()).is_some());
}

#[test]
fn a_clustering_whose_sizes_or_labels_disagree_with_its_assignments_is_rejected() {
    let (state, _) = encoded_sets();
    let mut commands = vec![
        Command::QueueClusteringJob {
            embedding_set_ids: vec![EmbeddingSetId(1)],
            parameters: JsonText::empty_object(),
        },
        Command::ClaimClusteringJob { worker: WorkerId("w".into()) },
    ];
    let mut state = state;
    let mut seq = state.last_seq;
    for command in commands.drain(..) {
        for event in decide(&state, command).unwrap() {
            seq = seq.next();
            state.apply(seq, &event);
        }
    }
    let Some(Event::ClusteringJobCompleted(good)) = crate::domain::sample_events::one_event_of_every_type()
        .into_iter()
        .find(|event| event.type_name() == "ClusteringJobCompleted")
    else {
        unreachable!()
    };
    assert!(decide(&state, Command::CompleteClusteringJob(good.clone())).is_ok());
    let mut wrong_size = good.clone();
    wrong_size.clusters[1].size = 7;
    assert!(matches!(
        then_rejected(&state, Command::CompleteClusteringJob(wrong_size)),
        Rejection::Invalid(message) if message.contains("the clusters hold 8 rows but the assignments file has 4")
    ));
    let mut twice = good.clone();
    twice.clusters[0].label = 0;
    assert!(matches!(
        then_rejected(&state, Command::CompleteClusteringJob(twice)),
        Rejection::Invalid(message) if message.contains("cluster label 0 appears twice")
    ));
    let set = EmbeddingSetId(1);
    let carried = vec![
        ClusterAssignmentRecord { embedding_set_id: set, row_index: 0, label: 0 },
        ClusterAssignmentRecord { embedding_set_id: set, row_index: 1, label: 0 },
        ClusterAssignmentRecord { embedding_set_id: set, row_index: 2, label: -1 },
        ClusterAssignmentRecord { embedding_set_id: set, row_index: 3, label: 0 },
    ];
    let old_style =
        ClusteringJobCompleted { assignments: ClusterAssignments::Carried(carried.clone()), ..good.clone() };
    assert!(matches!(
        then_rejected(&state, Command::CompleteClusteringJob(old_style)),
        Rejection::Invalid(message) if message.contains("records its assignments file, not the assignments")
    ));
    assert_eq!(check_assignments_match_clusters(&good.clusters, &carried), Ok(()));
    let mut orphan_label = carried;
    orphan_label[0].label = 5;
    let mut clusters = good.clusters;
    assert_eq!(
        check_assignments_match_clusters(&clusters, &orphan_label),
        Err("cluster label 0 has size 3 but 2 assignments".to_string())
    );
    clusters[1].size = 2;
    assert_eq!(
        check_assignments_match_clusters(&clusters, &orphan_label),
        Err("1 rows are assigned to label 5, which has no cluster".to_string())
    );
}

#[test]
fn a_metadata_patch_merges_into_the_current_document_and_null_removes_a_key() {
    let edit = |mode, text: &str| {
        Command::EditAudioMetadata(EditAudioMetadata {
            audio_file_id: AudioFileId(1),
            mode,
            tag_data: None,
            visual_observations: None,
            group_composition: Some(JsonText::parse(text).unwrap()),
            prey_density_proxy: None,
            edited_by: None,
        })
    };
    let (state, _) = given_commands(vec![
        register("a"),
        edit(MetadataEditMode::Replace, r#"{"adults":2,"calves":1,"notes":{"a":1}}"#),
    ]);
    let events =
        then_events(&state, edit(MetadataEditMode::MergePatch, r#"{"calves":null,"juveniles":1,"notes":{"b":2}}"#));
    let [Event::AudioMetadataEdited(edited)] = events.as_slice() else { panic!("{events:?}") };
    assert_eq!(
        edited.group_composition.as_ref().unwrap().as_str(),
        r#"{"adults":2,"juveniles":1,"notes":{"a":1,"b":2}}"#
    );
    assert_eq!(edited.tag_data, None, "fields not in the edit are not touched");
    let events = then_events(&state, edit(MetadataEditMode::Replace, r#"{"juveniles":3}"#));
    let [Event::AudioMetadataEdited(edited)] = events.as_slice() else { panic!("{events:?}") };
    assert_eq!(edited.group_composition.as_ref().unwrap().as_str(), r#"{"juveniles":3}"#);
    assert!(matches!(then_rejected(&state, edit(MetadataEditMode::Replace, "[1,2]")), Rejection::Invalid(_)));
}

use crate::domain::annotation_rules::AnnotationFields;

/// Audio file 1: 12 s at 44.1 kHz (Nyquist 22 050 Hz).
fn annotated_recording() -> DomainState {
    given_commands(vec![register("a")]).0
}

fn span(start: f64, end: f64, label: &str) -> NewAnnotation {
    NewAnnotation {
        fields: AnnotationFields {
            audio_file_id: AudioFileId(1),
            start_seconds: start,
            end_seconds: end,
            low_hz: None,
            high_hz: None,
            label: label.into(),
            kind: AnnotationKind::Positive,
            note: None,
        },
        source: "manual".into(),
    }
}

fn add(annotations: Vec<NewAnnotation>) -> Command {
    Command::AddAnnotations(AddAnnotations { annotations, created_by: Some("ana".into()) })
}

fn with_band(mut annotation: NewAnnotation, low: Option<f64>, high: Option<f64>) -> NewAnnotation {
    annotation.fields.low_hz = low;
    annotation.fields.high_hz = high;
    annotation
}

#[test]
fn adding_annotations_records_them_in_one_event_with_ids_trimmed_labels_and_who() {
    let state = annotated_recording();
    let events = then_events(&state, add(vec![span(0.0, 1.5, "  song unit A "), span(11.0, 12.0, "grunt")]));
    let [Event::AnnotationsAdded(added)] = events.as_slice() else { panic!("{events:?}") };
    assert_eq!(added.created_by.as_deref(), Some("ana"));
    let ids: Vec<u64> = added.annotations.iter().map(|a| a.annotation_id.0).collect();
    assert_eq!(ids, vec![1, 2]);
    assert_eq!(added.annotations[0].label, "song unit A", "trimmed, case kept");
    assert_eq!(added.annotations[0].kind, AnnotationKind::Positive);
}

#[test]
fn one_bad_annotation_rejects_the_whole_request_naming_its_index_and_field() {
    let state = annotated_recording();
    let cases = vec![
        (span(2.0, 1.0, "x"), "end_seconds"),
        (span(-1.0, 1.0, "x"), "start_seconds"),
        (span(11.0, 12.5, "x"), "end_seconds"),
        (span(1.0, 2.0, "   "), "label"),
        (span(1.0, 2.0, &"x".repeat(201)), "label"),
        (with_band(span(1.0, 2.0, "x"), Some(100.0), Some(22_051.0)), "high_hz"),
        (with_band(span(1.0, 2.0, "x"), Some(500.0), Some(400.0)), "high_hz"),
        (with_band(span(1.0, 2.0, "x"), Some(-1.0), None), "low_hz"),
    ];
    for (bad, field) in cases {
        let rejection = then_rejected(&state, add(vec![span(0.0, 1.0, "fine"), bad]));
        assert!(
            matches!(&rejection, Rejection::InvalidAnnotation { index: Some(1), field: f, .. } if *f == field),
            "{rejection:?}"
        );
        assert!(rejection.to_string().starts_with(&format!("annotations[1].{field}:")), "{rejection}");
    }
    let mut unknown = span(0.0, 1.0, "x");
    unknown.fields.audio_file_id = AudioFileId(9);
    assert!(matches!(
        then_rejected(&state, add(vec![unknown])),
        Rejection::InvalidAnnotation { index: Some(0), field: "audio_file_id", .. }
    ));
}

#[test]
fn the_band_may_reach_the_nyquist_frequency_and_the_span_the_recordings_end() {
    let state = annotated_recording();
    let events = then_events(&state, add(vec![with_band(span(0.0, 12.0005, "x"), Some(0.0), Some(22_050.0))]));
    assert_eq!(events.len(), 1);
}

#[test]
fn annotations_already_there_are_not_added_again() {
    let (state, _) = given_commands(vec![register("a"), add(vec![span(1.0, 2.0, "song")])]);
    let events =
        then_events(&state, add(vec![span(1.0, 2.0, "song"), span(1.0, 2.0, "song"), span(1.0, 2.0, "other")]));
    let [Event::AnnotationsAdded(added)] = events.as_slice() else { panic!("{events:?}") };
    assert_eq!(added.annotations.len(), 1);
    assert_eq!((added.annotations[0].annotation_id, added.annotations[0].label.as_str()), (AnnotationId(2), "other"));
    assert_eq!(then_events(&state, add(vec![span(1.0, 2.0, "song")])), vec![], "all duplicates: nothing recorded");
}

#[test]
fn changing_an_annotation_checks_the_result_and_records_every_new_value() {
    let (state, _) = given_commands(vec![register("a"), add(vec![span(1.0, 2.0, "song")])]);
    let change = |change: ChangeAnnotation| {
        Command::ChangeAnnotation(ChangeAnnotation { annotation_id: AnnotationId(1), ..change })
    };
    let events = then_events(
        &state,
        change(ChangeAnnotation {
            label: Some(" Song B".into()),
            kind: Some(AnnotationKind::Uncertain),
            ..Default::default()
        }),
    );
    let [Event::AnnotationChanged(changed)] = events.as_slice() else { panic!("{events:?}") };
    assert_eq!(
        (changed.label.as_str(), changed.kind, changed.start_seconds),
        ("Song B", AnnotationKind::Uncertain, 1.0)
    );
    assert!(matches!(
        then_rejected(&state, change(ChangeAnnotation { start_seconds: Some(3.0), ..Default::default() })),
        Rejection::InvalidAnnotation { index: None, field: "end_seconds", .. }
    ));
    assert_eq!(
        then_events(&state, change(ChangeAnnotation { label: Some("song".into()), ..Default::default() })),
        vec![]
    );
    assert_eq!(
        then_rejected(
            &state,
            Command::ChangeAnnotation(ChangeAnnotation { annotation_id: AnnotationId(7), ..Default::default() })
        ),
        Rejection::AnnotationNotFound(AnnotationId(7))
    );
}

fn set_start(audio: u64, micros: Option<i64>, source: RecordingTimeSource) -> SetRecordingStartTime {
    SetRecordingStartTime {
        audio_file_id: AudioFileId(audio),
        recorded_at: micros.map(crate::recording_time::UtcTime),
        source,
        derivation: String::new(),
        set_by: Some("ana".into()),
    }
}

#[test]
fn a_start_time_found_at_registration_is_recorded_right_after_the_registration() {
    let mut command = register("a");
    if let Command::RegisterAudioFile(register) = &mut command {
        register.recorded_at = Some(crate::recording_time::FoundRecordingTime {
            recorded_at: crate::recording_time::UtcTime(1_000_000),
            source: RecordingTimeSource::Bext,
            derivation: "bext origination date and time at Z".into(),
        });
    }
    let events = then_events(&DomainState::default(), command);
    let [Event::AudioFileRegistered(_), Event::RecordingStartTimeSet(set)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(
        (set.audio_file_id, set.recorded_at_micros, set.source),
        (AudioFileId(1), Some(1_000_000), RecordingTimeSource::Bext)
    );
}

#[test]
fn a_removed_annotation_is_gone_and_its_id_is_never_given_again() {
    let (state, _) = given_commands(vec![
        register("a"),
        add(vec![span(1.0, 2.0, "song")]),
        Command::RemoveAnnotation { annotation_id: AnnotationId(1), removed_by: None },
    ]);
    assert!(state.annotations.is_empty());
    assert_eq!(
        then_rejected(&state, Command::RemoveAnnotation { annotation_id: AnnotationId(1), removed_by: None }),
        Rejection::AnnotationNotFound(AnnotationId(1))
    );
    let events = then_events(&state, add(vec![span(1.0, 2.0, "song")]));
    let [Event::AnnotationsAdded(added)] = events.as_slice() else { panic!("{events:?}") };
    assert_eq!(added.annotations[0].annotation_id, AnnotationId(2));
}

#[test]
fn setting_a_start_time_records_only_changes_and_only_a_person_clears_one() {
    let (state, _) = given_commands(vec![
        register("a"),
        Command::SetRecordingStartTimes(vec![set_start(1, Some(5), RecordingTimeSource::FileName)]),
    ]);
    assert_eq!(state.recorded_at(AudioFileId(1)), Some(crate::recording_time::UtcTime(5)));
    let unchanged = Command::SetRecordingStartTimes(vec![set_start(1, Some(5), RecordingTimeSource::FileName)]);
    assert_eq!(then_events(&state, unchanged), vec![]);
    let by_hand =
        then_events(&state, Command::SetRecordingStartTimes(vec![set_start(1, Some(5), RecordingTimeSource::User)]));
    assert_eq!(by_hand.len(), 1, "the same instant from another source is a change of provenance");
    let cleared =
        then_events(&state, Command::SetRecordingStartTimes(vec![set_start(1, None, RecordingTimeSource::User)]));
    let [Event::RecordingStartTimeSet(cleared)] = cleared.as_slice() else { panic!("{cleared:?}") };
    assert_eq!(cleared.recorded_at_micros, None);
    assert!(matches!(
        then_rejected(&state, Command::SetRecordingStartTimes(vec![set_start(1, None, RecordingTimeSource::FileName)])),
        Rejection::Invalid(_)
    ));
    assert_eq!(
        then_rejected(&state, Command::SetRecordingStartTimes(vec![set_start(9, Some(1), RecordingTimeSource::User)])),
        Rejection::AudioFileNotFound(AudioFileId(9))
    );
}

#[test]
fn retiring_a_registered_model_records_it_once() {
    let model = match &crate::domain::sample_events::one_event_of_every_type()[0] {
        Event::ModelRegistered(model) => model.clone(),
        other => panic!("{other:?}"),
    };
    let state = given(&[Event::ModelRegistered(model.clone())]);
    let retire = || Command::RetireModel { name: model.name.clone() };
    assert_eq!(
        then_events(&state, retire()),
        [Event::ModelRetired(ModelRetired { name: model.name.clone(), version: model.version.clone() })]
    );
    let retired = given(&[Event::ModelRegistered(model.clone()), then_events(&state, retire()).remove(0)]);
    assert!(
        matches!(then_rejected(&retired, retire()), Rejection::Invalid(reason) if reason.contains("already retired"))
    );
    assert!(matches!(
        then_rejected(&DomainState::default(), retire()),
        Rejection::Invalid(reason) if reason.contains("not registered")
    ));
}

/// A registered recording with an embedding set (`builtin-logmel-stats@1`) and annotations
/// labelled "song unit A" and "boat noise".
fn given_an_annotated_embedding_set() -> DomainState {
    let samples = crate::domain::sample_events::one_event_of_every_type();
    let kept: Vec<Event> = samples
        .into_iter()
        .filter(|event| {
            matches!(
                event,
                Event::AudioFileRegistered(_)
                    | Event::ProcessingJobQueued(_)
                    | Event::EmbeddingSetPromoted(_)
                    | Event::AnnotationsAdded(_)
            )
        })
        .collect();
    given(&kept)
}

fn queue_training(labels: &[&str], model_version: &str) -> Command {
    Command::QueueClassifierTraining {
        labels: labels.iter().map(|label| label.to_string()).collect(),
        model_version: model_version.into(),
        request: JsonText::parse("{}").unwrap(),
    }
}

#[test]
fn training_needs_a_known_model_version_and_labels_some_annotation_carries() {
    let state = given_an_annotated_embedding_set();
    let events = then_events(&state, queue_training(&["song unit A"], "builtin-logmel-stats@1"));
    assert!(
        matches!(&events[..], [Event::ClassifierTrainingQueued(queued)] if queued.classifier_id == ClassifierId(1))
    );
    let rejection = then_rejected(&state, queue_training(&["song unit A"], "perch_v9"));
    assert!(rejection.to_string().contains("model_version"), "{rejection}");
    let rejection = then_rejected(&state, queue_training(&["grunt"], "builtin-logmel-stats@1"));
    assert!(rejection.to_string().contains("\"grunt\""), "{rejection}");
}

#[test]
fn a_training_job_is_claimed_completed_and_then_neither_canceled_nor_retried() {
    let state = given_an_annotated_embedding_set();
    let mut log = then_events(&state, queue_training(&["song unit A"], "builtin-logmel-stats@1"));
    let worker = WorkerId("host:1:0".into());
    let mut state = state;
    let apply_all = |state: &mut DomainState, events: &[Event]| {
        for event in events {
            let seq = state.last_seq.next();
            state.apply(seq, event);
        }
    };
    apply_all(&mut state, &log);
    let claimed = then_events(&state, Command::ClaimClassifierTraining { worker: worker.clone() });
    assert!(matches!(&claimed[..], [Event::ClassifierTrainingClaimed(c)] if c.attempt == 1));
    apply_all(&mut state, &claimed);
    log.extend(claimed);
    assert_eq!(then_rejected(&state, Command::ClaimClassifierTraining { worker }), Rejection::NothingToClaim);
    let completed = ClassifierTrainingCompleted {
        classifier_id: ClassifierId(1),
        attempt: 2,
        artifact_path: "classifiers/1/classifier.json".into(),
        version: "0123456789abcdef".into(),
        vector_dim: 4,
        threshold: 0.5,
        metrics: JsonText::parse("[]").unwrap(),
        training_set: JsonText::parse("{}").unwrap(),
    };
    let stale = then_rejected(&state, Command::CompleteClassifierTraining(completed.clone()));
    assert!(matches!(stale, Rejection::NotRunningAttempt { attempt: 2, .. }));
    let done = then_events(
        &state,
        Command::CompleteClassifierTraining(ClassifierTrainingCompleted { attempt: 1, ..completed }),
    );
    apply_all(&mut state, &done);
    let classifier = &state.classifiers[&ClassifierId(1)];
    assert_eq!(classifier.status, JobStatus::Complete);
    assert_eq!(classifier.artifact.as_ref().map(|(_, version)| version.as_str()), Some("0123456789abcdef"));
    assert!(matches!(
        then_rejected(&state, Command::CancelClassifierTraining { classifier_id: ClassifierId(1) }),
        Rejection::NotCancelable { .. }
    ));
    assert!(matches!(
        then_rejected(&state, Command::RetryClassifierTraining { classifier_id: ClassifierId(1) }),
        Rejection::NotRetryable { .. }
    ));
    assert_eq!(
        then_rejected(&state, Command::CancelClassifierTraining { classifier_id: ClassifierId(9) }),
        Rejection::ClassifierNotFound(ClassifierId(9))
    );
}

#[test]
fn an_abandoned_training_attempt_is_queued_again_unless_its_cancel_was_asked_for() {
    let (mut state, _) = (given_an_annotated_embedding_set(), ());
    for command in [
        queue_training(&["song unit A"], "builtin-logmel-stats@1"),
        Command::ClaimClassifierTraining { worker: WorkerId("host:1:0".into()) },
    ] {
        for event in then_events(&state, command) {
            let seq = state.last_seq.next();
            state.apply(seq, &event);
        }
    }
    let abandon = Command::AbandonClassifierTraining {
        classifier_id: ClassifierId(1),
        attempt: 1,
        reason: "server restarted while the attempt was running".into(),
    };
    let events = then_events(&state, abandon.clone());
    assert!(matches!(&events[..], [Event::ClassifierTrainingAbandoned(_)]));
    let cancel = then_events(&state, Command::CancelClassifierTraining { classifier_id: ClassifierId(1) });
    assert!(matches!(&cancel[..], [Event::ClassifierTrainingCancelRequested(_)]));
    for event in cancel {
        let seq = state.last_seq.next();
        state.apply(seq, &event);
    }
    let events = then_events(&state, abandon);
    assert!(matches!(&events[..], [Event::ClassifierTrainingAbandoned(_), Event::ClassifierTrainingCanceled(_)]));
    for event in events {
        let seq = state.last_seq.next();
        state.apply(seq, &event);
    }
    assert_eq!(state.classifiers[&ClassifierId(1)].status, JobStatus::Canceled);
    let retried = then_events(&state, Command::RetryClassifierTraining { classifier_id: ClassifierId(1) });
    assert!(matches!(&retried[..], [Event::ClassifierTrainingRetried(_)]));
}

/// `given_an_annotated_embedding_set` with classifier 1 trained (version abcd...) at 0.7.
fn given_a_trained_classifier() -> DomainState {
    let mut state = given_an_annotated_embedding_set();
    let worker = WorkerId("host:1:0".into());
    for command in [
        queue_training(&["song unit A"], "builtin-logmel-stats@1"),
        Command::ClaimClassifierTraining { worker },
        Command::CompleteClassifierTraining(ClassifierTrainingCompleted {
            classifier_id: ClassifierId(1),
            attempt: 1,
            artifact_path: "classifiers/1/classifier.json".into(),
            version: "abcdabcdabcdabcd".into(),
            vector_dim: 4,
            threshold: 0.7,
            metrics: JsonText::parse("[]").unwrap(),
            training_set: JsonText::parse("{}").unwrap(),
        }),
    ] {
        for event in then_events(&state, command) {
            let seq = state.last_seq.next();
            state.apply(seq, &event);
        }
    }
    state
}

fn queue_detection(classifier: u64, sets: &[u64], threshold: Option<f64>) -> Command {
    Command::QueueDetectionJob {
        classifier_id: ClassifierId(classifier),
        embedding_set_ids: sets.iter().map(|id| EmbeddingSetId(*id)).collect(),
        threshold,
        scope: JsonText::parse("{}").unwrap(),
    }
}

#[test]
fn a_detection_job_takes_the_trained_classifiers_version_and_threshold_unless_given_one() {
    let state = given_a_trained_classifier();
    let events = then_events(&state, queue_detection(1, &[1], None));
    let [Event::DetectionJobQueued(queued)] = &events[..] else { panic!("{events:?}") };
    assert_eq!((queued.threshold, queued.classifier_version.as_str()), (0.7, "abcdabcdabcdabcd"));
    let events = then_events(&state, queue_detection(1, &[1], Some(0.9)));
    assert!(matches!(&events[..], [Event::DetectionJobQueued(q)] if q.threshold == 0.9));
    assert!(then_rejected(&state, queue_detection(1, &[1], Some(1.5))).to_string().contains("threshold"));
    assert_eq!(
        then_rejected(&state, queue_detection(1, &[7], None)),
        Rejection::EmbeddingSetNotFound(EmbeddingSetId(7))
    );
    assert_eq!(then_rejected(&state, queue_detection(1, &[], None)), Rejection::NoEmbeddingSets);
    assert_eq!(then_rejected(&state, queue_detection(2, &[1], None)), Rejection::ClassifierNotFound(ClassifierId(2)));
}

#[test]
fn a_classifier_still_training_cannot_detect_and_a_detection_job_follows_the_job_rules() {
    let mut state = given_an_annotated_embedding_set();
    for event in then_events(&state, queue_training(&["song unit A"], "builtin-logmel-stats@1")) {
        let seq = state.last_seq.next();
        state.apply(seq, &event);
    }
    assert!(then_rejected(&state, queue_detection(1, &[1], None)).to_string().contains("not trained"));

    let mut state = given_a_trained_classifier();
    for command in [queue_detection(1, &[1], None), Command::ClaimDetectionJob { worker: WorkerId("w".into()) }] {
        for event in then_events(&state, command) {
            let seq = state.last_seq.next();
            state.apply(seq, &event);
        }
    }
    let job = crate::domain::ids::DetectionJobId(1);
    assert!(matches!(
        then_rejected(&state, Command::ReportDetectionProgress { job_id: job, attempt: 2, fraction: 0.5 }),
        Rejection::NotRunningAttempt { .. }
    ));
    let cancel = then_events(&state, Command::CancelDetectionJob { job_id: job });
    assert!(matches!(&cancel[..], [Event::DetectionJobCancelRequested(_)]));
    for event in cancel {
        let seq = state.last_seq.next();
        state.apply(seq, &event);
    }
    let abandoned =
        then_events(&state, Command::AbandonDetectionJob { job_id: job, attempt: 1, reason: "stopped".into() });
    assert!(matches!(&abandoned[..], [Event::DetectionJobAbandoned(_), Event::DetectionJobCanceled(_)]));
}
