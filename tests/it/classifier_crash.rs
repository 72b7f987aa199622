//! Crash test for detectors: a real `humpback serve` child is killed with SIGKILL while it
//! trains classifiers and runs detection jobs (at the first, second or third event of such a
//! job, so some kills land mid-job). Each time, before anything reopens the data directory,
//! every visible artifact (`classifiers/{id}/classifier.json`, `detections/{job}/scores.parquet`)
//! reads whole; after reopening (recovery) no temporary file remains, nothing is left running,
//! and every completed job's artifact reads at its recorded version. At the end every training
//! and detection job, resumed, has completed.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use humpback::app::Humpback;
use humpback::classifier::detection_worker::DetectionWorker;
use humpback::classifier::worker::{TrainingStep, TrainingWorker};
use humpback::config::DataDir;
use humpback::domain::decide::Command as DomainCommand;
use humpback::domain::events::AnnotationKind;
use humpback::domain::ids::WorkerId;
use humpback::domain::json_text::JsonText;
use humpback::domain::state::JobStatus;
use humpback::log::EventLog;
use humpback::processing::worker::{find_files, ProcessingWorker, StepOutcome};
use serde_json::{json, Value};

use crate::helpers::annotate;
use crate::processing::settings;

/// Six encoded recordings, two annotated as song and two as not; the model version.
fn prepared(data_dir: &DataDir) -> String {
    crate::processing_crash::queue_new_files(data_dir, 40, 6);
    let humpback = Arc::new(Humpback::open_with(data_dir.clone(), settings(0)).unwrap());
    let mut worker =
        ProcessingWorker::new(humpback.clone(), WorkerId("setup".into()), Arc::new(AtomicBool::new(false)));
    while let StepOutcome::Ran { status, .. } = worker.step().unwrap() {
        assert_eq!(status, JobStatus::Complete);
    }
    for (audio, kind) in [
        (1, AnnotationKind::Positive),
        (2, AnnotationKind::Positive),
        (3, AnnotationKind::Negative),
        (4, AnnotationKind::Negative),
    ] {
        humpback.writer.execute(annotate(audio, 0.0, 12.0, "song", kind)).unwrap();
    }
    humpback.writer.read_state(|s| s.embedding_sets.values().next().unwrap().model_version.clone())
}

/// Queues the next job of a run: a training (even runs) or a detection job of the latest trained
/// classifier over every set (odd runs).
fn queue_job(data_dir: &DataDir, run: u32, model_version: &str) {
    let humpback = Arc::new(Humpback::open_with(data_dir.clone(), settings(0)).unwrap());
    let trained = || {
        humpback.writer.read_state(|s| {
            s.classifiers.iter().filter(|(_, c)| c.status == JobStatus::Complete).map(|(id, _)| *id).next_back()
        })
    };
    if run % 2 == 1 && trained().is_none() {
        // every kill so far landed before a training finished: finish one here, so that every
        // odd run has a detection job to interrupt
        let mut worker =
            TrainingWorker::new(humpback.clone(), WorkerId("setup:training".into()), Arc::new(AtomicBool::new(false)));
        while let TrainingStep::Ran { .. } = worker.step().unwrap() {}
    }
    let trained = trained();
    let command = match trained.filter(|_| run % 2 == 1) {
        Some(classifier_id) => DomainCommand::QueueDetectionJob {
            classifier_id,
            embedding_set_ids: humpback.writer.read_state(|s| s.embedding_sets.keys().copied().collect()),
            threshold: None,
            scope: JsonText::from_value(&json!({"classifier_id": classifier_id.0})),
        },
        None => DomainCommand::QueueClassifierTraining {
            labels: vec!["song".into()],
            model_version: model_version.to_string(),
            request: JsonText::from_value(
                &json!({"labels": ["song"], "model_version": model_version, "folds": 2, "c": 1.0 + f64::from(run),
                        "min_overlap_fraction": 0.5, "class_weighting": "balanced", "threshold": 0.5,
                        "negatives": {"negative_annotations": true, "other_labels": true, "unannotated": null}}),
            ),
        },
    };
    humpback.writer.execute(command).unwrap();
}

/// What a reader sees right after the kill, before recovery: each published file reads whole.
fn visible_artifacts_read_whole(root: &Path, run: u32) {
    for path in find_files(&root.join("classifiers"), "classifier.json").unwrap_or_default() {
        let text = std::fs::read_to_string(&path).unwrap();
        serde_json::from_str::<Value>(&text).unwrap_or_else(|error| panic!("run {run}: {path:?} is half: {error}"));
    }
    for path in find_files(&root.join("detections"), "scores.parquet").unwrap_or_default() {
        if path.to_string_lossy().ends_with(".tmp.parquet") {
            continue;
        }
        humpback::classifier::scores_parquet::read_scores(&path, None)
            .unwrap_or_else(|error| panic!("run {run}: {path:?} is half: {error}"));
    }
}

fn check_after_recovery(data_dir: &DataDir, run: u32) -> Humpback {
    let humpback = Humpback::open_with(data_dir.clone(), settings(0)).expect("reopen after SIGKILL");
    let root = data_dir.root();
    for (dir, suffix) in [("classifiers", ".tmp.json"), ("detections", ".tmp.parquet")] {
        let left = find_files(&root.join(dir), suffix).unwrap_or_default();
        assert!(left.is_empty(), "run {run}: recovery leaves no temporary file: {left:?}");
    }
    humpback.writer.read_state(|s| {
        assert!(s.classifiers.values().all(|c| c.status != JobStatus::Running), "run {run}: no training running");
        assert!(s.detection_jobs.values().all(|j| j.status != JobStatus::Running), "run {run}: no detection running");
        for (id, classifier) in &s.classifiers {
            if let Some((_, version)) =
                classifier.artifact.as_ref().filter(|_| classifier.status == JobStatus::Complete)
            {
                humpback::classifier::artifact::read(root, *id, Some(version))
                    .unwrap_or_else(|error| panic!("run {run}: classifier {id} does not read: {error}"));
            }
        }
        for (id, job) in s.detection_jobs.iter().filter(|(_, job)| job.status == JobStatus::Complete) {
            let path = root.join(humpback::classifier::detection_worker::scores_path(*id));
            let table = humpback::classifier::scores_parquet::read_scores(&path, None)
                .unwrap_or_else(|error| panic!("run {run}: detection job {id}'s scores do not read: {error}"));
            assert!(!table.windows.is_empty() && job.embedding_set_ids.len() == 6, "run {run}");
        }
    });
    humpback
}

#[test]
fn killing_the_server_while_it_trains_or_detects_leaves_no_half_artifact_and_the_jobs_finish() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = DataDir::new(dir.path());
    let model_version = prepared(&data_dir);
    let job_events = [
        "ClassifierTrainingClaimed",
        "ClassifierTrainingProgressed",
        "ClassifierTrainingCompleted",
        "DetectionJobClaimed",
        "DetectionJobProgressed",
        "DetectionJobCompleted",
    ];
    for run in 0..8u32 {
        queue_job(&data_dir, run, &model_version);
        let mut child = Command::new(env!("CARGO_BIN_EXE_humpback"))
            .args(["--data-dir", dir.path().to_str().unwrap(), "--bind", "127.0.0.1:0", "serve"])
            .args(["--enable-fake-model", "--workers", "1"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the server");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let address = line.trim().strip_prefix("humpback listening on ").expect("listening line").to_string();
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let health: Value = agent.get(&format!("{address}/health")).call().unwrap().body_mut().read_json().unwrap();
        let mut cursor = health["log_head"].as_u64().unwrap();
        // kill at the first, second or third event of a training or detection job
        let kill_at = 1 + run as usize % 3;
        let mut seen = 0;
        while seen < kill_at {
            let Ok(mut response) = agent.get(&format!("{address}/api/events?cursor={cursor}&wait_seconds=2")).call()
            else {
                break;
            };
            let page: Value = response.body_mut().read_json().unwrap();
            let events = page["events"].as_array().cloned().unwrap_or_default();
            if events.is_empty() {
                break;
            }
            seen += events.iter().filter(|e| job_events.contains(&e["type"].as_str().unwrap_or_default())).count();
            cursor = events.last().unwrap()["seq"].as_u64().unwrap();
        }
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        visible_artifacts_read_whole(dir.path(), run);
        drop(check_after_recovery(&data_dir, run));
    }
    // Resume what the kills interrupted, in-process, and check every job completed.
    let humpback = Arc::new(check_after_recovery(&data_dir, 99));
    let stopping = Arc::new(AtomicBool::new(false));
    let mut training = TrainingWorker::new(humpback.clone(), WorkerId("final:training".into()), stopping.clone());
    while let TrainingStep::Ran { status, .. } = training.step().unwrap() {
        assert_eq!(status, JobStatus::Complete);
    }
    let mut detection = DetectionWorker::new(humpback.clone(), WorkerId("final:detection".into()), stopping);
    while let Some((_, status)) = detection.step().unwrap() {
        assert_eq!(status, JobStatus::Complete);
    }
    humpback.writer.read_state(|s| {
        assert!(
            s.classifiers.len() == 4 && s.detection_jobs.len() == 4,
            "{} {}",
            s.classifiers.len(),
            s.detection_jobs.len()
        );
        assert!(s.classifiers.values().all(|c| c.status == JobStatus::Complete));
        assert!(s.detection_jobs.values().all(|j| j.status == JobStatus::Complete));
    });
    let abandoned = humpback
        .log
        .scan(humpback::domain::ids::EventSeq(1)..=humpback::domain::ids::EventSeq(u64::MAX), false)
        .map(|e| e.unwrap().event.type_name())
        .filter(|name| *name == "ClassifierTrainingAbandoned" || *name == "DetectionJobAbandoned")
        .count();
    eprintln!("{abandoned} training or detection attempts were abandoned by kills and finished later");
}
