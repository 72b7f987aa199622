//! Classifiers through the API: train on annotated windows of fake-model embedding sets, follow
//! the job through events, read the published artifact; bad requests get a 4xx naming the field.

use std::time::Duration;

use humpback::domain::ids::ClassifierId;
use humpback::domain::state::JobStatus;
use humpback::log::EventLog;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, TestApp};
use crate::ingest_api::upload;
use crate::processing::{chirp_wav, post_json, settings, wait_for_job};

async fn get_text(url: &str) -> String {
    let url = url.to_string();
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut response = agent.get(&url).call().expect("request");
        assert_eq!(response.status().as_u16(), 200);
        response.body_mut().read_to_string().unwrap()
    })
    .await
    .unwrap()
}

/// Waits on log events (no sleeps) until the training has ended, then for the projections.
pub(crate) async fn wait_for_detection(app: &TestApp, job: u64) -> JobStatus {
    let mut head = app.humpback.log.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        head.borrow_and_update();
        let status = app
            .humpback
            .writer
            .read_state(|s| s.detection_jobs.get(&humpback::domain::ids::DetectionJobId(job)).map(|j| j.status));
        if let Some(status) =
            status.filter(|s| matches!(s, JobStatus::Complete | JobStatus::Failed | JobStatus::Canceled))
        {
            app.humpback.wait_until_projected(app.humpback.log.head()).await;
            return status;
        }
        tokio::time::timeout_at(deadline, head.changed()).await.expect("detection did not finish in time").unwrap();
    }
}

pub(crate) async fn wait_for_training(app: &TestApp, classifier: u64) -> JobStatus {
    let mut head = app.humpback.log.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        head.borrow_and_update();
        let status = app.humpback.writer.read_state(|s| s.classifiers.get(&ClassifierId(classifier)).map(|c| c.status));
        if let Some(status) =
            status.filter(|s| matches!(s, JobStatus::Complete | JobStatus::Failed | JobStatus::Canceled))
        {
            app.humpback.wait_until_projected(app.humpback.log.head()).await;
            return status;
        }
        tokio::time::timeout_at(deadline, head.changed()).await.expect("training did not finish in time").unwrap();
    }
}

/// Uploads and encodes a 20 s chirp with the fake model; its audio file id.
async fn encoded_chirp(app: &TestApp, seed: u32) -> u64 {
    let (_, audio) =
        upload(&app.base_url, &format!("chirp{seed}.wav"), chirp_wav(20.0, 16_000, seed), Some("site")).await;
    let (status, job) =
        post_json(app.url("/api/processing-jobs"), json!({"audio_file_id": audio["id"], "model": "fake"})).await;
    assert_eq!(status, 201, "{job}");
    let job_id = job["id"].as_u64().unwrap();
    assert_eq!(wait_for_job(app, job_id, &[JobStatus::Complete, JobStatus::Failed]).await, JobStatus::Complete);
    audio["id"].as_u64().unwrap()
}

/// Four encoded chirps, two annotated as song and two as not song; the model version.
async fn annotated_chirps(app: &TestApp) -> String {
    let mut recordings = Vec::new();
    for seed in [1, 2, 7, 8] {
        recordings.push(encoded_chirp(app, seed).await);
    }
    for (index, audio) in recordings.iter().enumerate() {
        let kind = if index < 2 { "positive" } else { "negative" };
        let (status, body) = post_json(
            app.url("/api/annotations"),
            json!({"audio_file_id": audio, "start_seconds": 0.0, "end_seconds": 20.0, "label": "song", "kind": kind}),
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let (_, set) = crate::api_get(&app.url(&format!("/api/embedding-sets?audio_file_id={}", recordings[0]))).await;
    set[0]["model_version"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_training_running_when_the_process_stopped_is_abandoned_at_start_up_and_trained_again() {
    let no_training = humpback::app::Settings { clustering_workers: 0, ..settings(1) };
    let app = spawn_app_with(tempfile::tempdir().unwrap(), no_training).await;
    let model_version = annotated_chirps(&app).await;
    let (status, queued) =
        post_json(app.url("/api/classifiers"), json!({"labels": ["song"], "model_version": model_version, "folds": 2}))
            .await;
    assert_eq!(status, 201, "{queued}");
    // a worker claims it and the process stops mid-way, leaving a half-written file
    app.humpback
        .writer
        .execute(humpback::domain::decide::Command::ClaimClassifierTraining {
            worker: humpback::domain::ids::WorkerId("gone:training:0".into()),
        })
        .unwrap();
    let half = app.data_dir.path().join("classifiers/1/classifier.tmp.json");
    std::fs::create_dir_all(half.parent().unwrap()).unwrap();
    std::fs::write(&half, b"{\"format\": \"humpback-cla").unwrap();
    let data_dir = app.stop().await;

    let app = spawn_app_with(data_dir, settings(1)).await;
    assert_eq!(wait_for_training(&app, 1).await, JobStatus::Complete);
    let (_, classifier) = crate::api_get(&app.url("/api/classifiers/1")).await;
    assert_eq!(classifier["attempt"], 2, "{classifier}");
    assert!(!half.exists(), "the abandoned attempt's partial file is gone");
    let (_, events) = crate::api_get(&app.url("/api/events?aggregate=classifier:1")).await;
    let types: Vec<&str> = events["events"].as_array().unwrap().iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(types.contains(&"ClassifierTrainingAbandoned"), "{types:?}");
    let version = classifier["version"].as_str().unwrap();
    humpback::classifier::artifact::read(app.data_dir.path(), ClassifierId(1), Some(version)).unwrap();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_classifier_trains_on_annotated_windows_and_publishes_its_versioned_artifact() {
    let app = spawn_app_with(tempfile::tempdir().unwrap(), settings(1)).await;
    // the low chirps are song, the high ones are marked as not song
    let model_version = annotated_chirps(&app).await;
    let (_, set) = crate::api_get(&app.url("/api/embedding-sets?audio_file_id=1")).await;

    let (status, body) =
        post_json(app.url("/api/classifiers"), json!({"labels": [], "model_version": model_version})).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().starts_with("labels"), "{body}");
    let (status, body) =
        post_json(app.url("/api/classifiers"), json!({"labels": ["grunt"], "model_version": model_version})).await;
    assert!((400..500).contains(&status), "{status} {body}");
    assert!(body["error"].as_str().unwrap().contains("grunt"), "{body}");
    let (status, body) = crate::api_get(&app.url("/api/classifiers/99")).await;
    assert_eq!(status, 404, "{body}");

    let (status, queued) = post_json(
        app.url("/api/classifiers"),
        json!({"labels": ["song"], "model_version": model_version, "folds": 2, "c": 1.0}),
    )
    .await;
    assert_eq!(status, 201, "{queued}");
    let id = queued["id"].as_u64().unwrap();
    assert!(queued["status"].is_string());
    assert_eq!(wait_for_training(&app, id).await, JobStatus::Complete);
    let (_, classifier) = crate::api_get(&app.url(&format!("/api/classifiers/{id}"))).await;
    assert_eq!(classifier["status"], "complete", "{classifier}");
    assert_eq!(classifier["labels"], json!(["song"]));
    assert_eq!(classifier["model_version"], model_version.as_str());
    let version = classifier["version"].as_str().unwrap();
    assert_eq!(version.len(), 16);
    // every window of the four recordings: as many song as not song
    let rows = set[0]["row_count"].as_u64().unwrap();
    assert_eq!(classifier["training_set"]["positive_windows"]["song"], 2 * rows);
    assert_eq!(classifier["training_set"]["negative_annotation_windows"], 2 * rows);
    let metrics: &Value = &classifier["metrics"][0];
    assert_eq!(metrics["label"], "song");
    assert_eq!(metrics["positive_recordings"], 2);
    assert!(metrics["roc_auc"].is_number(), "{metrics}");
    let artifact = humpback::classifier::artifact::read(app.data_dir.path(), ClassifierId(id), Some(version)).unwrap();
    assert_eq!(artifact.labels, vec!["song".to_string()]);
    assert_eq!(artifact.heads[0].weights.len(), artifact.vector_dim);

    // retraining is a new classifier, listed beside the first
    let (status, again) = post_json(
        app.url("/api/classifiers"),
        json!({"labels": ["song"], "model_version": model_version, "folds": 2, "c": 0.1}),
    )
    .await;
    assert_eq!(status, 201, "{again}");
    let second = again["id"].as_u64().unwrap();
    assert_eq!(wait_for_training(&app, second).await, JobStatus::Complete);
    let (_, listed) = crate::api_get(&app.url("/api/classifiers")).await;
    assert_eq!(listed["total"], 2);
    assert_eq!(listed["items"][0]["id"], second);
    assert_ne!(listed["items"][0]["version"], listed["items"][1]["version"]);
    let (status, body) = post_json(app.url(&format!("/api/classifiers/{id}/retry")), json!({})).await;
    assert_eq!(status, 409, "a complete classifier is not retried: {body}");

    // detect over every set of the model version: the song recordings, whole, and nothing else
    let (status, body) =
        post_json(app.url("/api/detection-jobs"), json!({"classifier_id": id, "folder": "site", "model_version": "x"}))
            .await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = post_json(app.url("/api/detection-jobs"), json!({"classifier_id": 99})).await;
    assert!((400..500).contains(&status), "{body}");
    let (status, job) = post_json(app.url("/api/detection-jobs"), json!({"classifier_id": id})).await;
    assert_eq!(status, 201, "{job}");
    assert_eq!(job["threshold"], 0.5, "the classifier's own threshold");
    let job_id = job["id"].as_u64().unwrap();
    assert_eq!(wait_for_detection(&app, job_id).await, JobStatus::Complete);
    let (_, job) = crate::api_get(&app.url(&format!("/api/detection-jobs/{job_id}"))).await;
    assert_eq!(job["windows_scored"], 4 * rows, "{job}");
    let (_, page) = crate::api_get(&app.url(&format!("/api/detection-jobs/{job_id}/detections"))).await;
    // the fake model's embeddings of these chirps are barely separable, so this checks the
    // wiring (finding planted calls is `classifier::train`'s test on planted Parquet sets):
    // merged runs above the threshold, highest first, the best in a song recording
    let items = page["items"].as_array().unwrap();
    assert_eq!(page["total"].as_u64().unwrap() as usize, items.len());
    assert!(matches!(items[0]["audio_file_id"].as_u64(), Some(1 | 2)), "{page}");
    for detection in items {
        let windows = detection["last_row"].as_u64().unwrap() - detection["first_row"].as_u64().unwrap() + 1;
        assert_eq!(detection["windows"], windows);
        assert!(detection["mean_score"].as_f64().unwrap() >= 0.5);
        assert!(detection["max_score"].as_f64().unwrap() >= detection["mean_score"].as_f64().unwrap());
    }
    let scores = page["items"].as_array().unwrap().iter().map(|d| d["max_score"].as_f64().unwrap()).collect::<Vec<_>>();
    assert!(scores.windows(2).all(|pair| pair[0] >= pair[1]), "highest score first");
    assert!(app.data_dir.path().join(job["scores_path"].as_str().unwrap()).exists());
    // exports parse with our own reader: one row per detection, label and score kept
    let raven = get_text(&app.url(&format!("/api/detection-jobs/{job_id}/selections.txt"))).await;
    let table = humpback::catalogue::raven::read_table(&raven, humpback::catalogue::raven::TableFormat::Raven).unwrap();
    assert_eq!(table.rows.len(), items.len());
    let annotation = table.column("Annotation");
    assert!(table.rows.iter().all(|row| row.get(annotation) == "song"));
    assert!(table.column("Score").is_some() && table.column("Begin File").is_some());
    let csv = get_text(&app.url(&format!("/api/detection-jobs/{job_id}/selections.csv?audio_file_id=1"))).await;
    let table = humpback::catalogue::raven::read_table(&csv, humpback::catalogue::raven::TableFormat::Csv).unwrap();
    let in_first = items.iter().filter(|d| d["audio_file_id"] == 1).count();
    assert_eq!(table.rows.len(), in_first);
    let (status, _) = crate::api_get(&app.url("/api/detection-jobs/77/detections")).await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn detections_are_reviewed_labelled_next_retrained_and_only_the_calls_are_clustered() {
    let app = spawn_app_with(tempfile::tempdir().unwrap(), settings(1)).await;
    let model_version = annotated_chirps(&app).await;
    // a fifth recording nobody has annotated
    let unannotated = encoded_chirp(&app, 3).await;
    let (status, queued) =
        post_json(app.url("/api/classifiers"), json!({"labels": ["song"], "model_version": model_version, "folds": 2}))
            .await;
    assert_eq!(status, 201, "{queued}");
    let id = queued["id"].as_u64().unwrap();
    assert_eq!(wait_for_training(&app, id).await, JobStatus::Complete);

    // label next needs a detection job's scores
    let (status, body) = crate::api_get(&app.url(&format!("/api/classifiers/{id}/label-next"))).await;
    assert_eq!(status, 409, "{body}");
    let page = get_text(&app.url(&format!("/classifiers/{id}/label-next"))).await;
    assert!(page.contains("no completed detection job"), "{page}");
    let (_, job) = post_json(app.url("/api/detection-jobs"), json!({"classifier_id": id})).await;
    let job_id = job["id"].as_u64().unwrap();
    assert_eq!(wait_for_detection(&app, job_id).await, JobStatus::Complete);

    let (status, next) = crate::api_get(&app.url(&format!("/api/classifiers/{id}/label-next?limit=6"))).await;
    assert_eq!(status, 200, "{next}");
    assert_eq!(next["detection_job_id"], job_id);
    let items = next["items"].as_array().unwrap();
    assert!(!items.is_empty() && items.len() <= 6, "{next}");
    // every other recording is annotated whole, so only the fifth one's windows are offered
    assert!(items.iter().all(|item| item["audio_file_id"] == unannotated && item["label"] == "song"), "{next}");
    let reasons: Vec<&str> = items.iter().filter_map(|item| item["reason"].as_str()).collect();
    assert!(reasons.contains(&"near_threshold"), "{reasons:?}");
    assert!(reasons.contains(&"top_in_unannotated_recording") || items.len() < 4, "{reasons:?}");
    let (status, _) = crate::api_get(&app.url(&format!("/api/classifiers/{id}/label-next?limit=0"))).await;
    assert_eq!(status, 400);
    let (status, _) = crate::api_get(&app.url("/api/classifiers/99/label-next")).await;
    assert_eq!(status, 404);

    // the pages: versions, detections to confirm or reject, label next, the score track
    let page = get_text(&app.url("/classifiers")).await;
    assert!(
        page.contains(&format!("/classifiers/{id}/label-next")) && page.contains(&format!("/detection-jobs/{job_id}"))
    );
    let page = get_text(&app.url(&format!("/detection-jobs/{job_id}"))).await;
    assert!(page.contains("data-review-label=\"song\"") && page.contains("Per recording"), "{page}");
    assert!(page.contains(&format!("/api/detection-jobs/{job_id}/selections.txt")));
    let page = get_text(&app.url(&format!("/classifiers/{id}/label-next"))).await;
    assert!(page.contains("data-review-label=\"song\"") && page.contains("Retrain"), "{page}");
    let page = get_text(&app.url(&format!("/audio/{unannotated}"))).await;
    assert!(page.contains("Detector scores") && page.contains("<polyline"), "{page}");

    // a judgement, then retrain: the next version with the same request and one more annotation
    let first = &items[0];
    let (status, body) = post_json(
        app.url("/api/annotations"),
        json!({"audio_file_id": unannotated, "start_seconds": first["start_seconds"], "end_seconds": first["end_seconds"],
               "label": "song", "kind": "negative"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, retrained) = post_json(app.url(&format!("/api/classifiers/{id}/retrain")), json!({})).await;
    assert_eq!(status, 201, "{retrained}");
    let next_id = retrained["id"].as_u64().unwrap();
    assert!(next_id > id);
    assert_eq!(retrained["request"], queued["request"], "the same request");
    assert_eq!(wait_for_training(&app, next_id).await, JobStatus::Complete);
    let (_, classifier) = crate::api_get(&app.url(&format!("/api/classifiers/{next_id}"))).await;
    assert!(classifier["training_set"]["negative_annotation_windows"].as_u64().unwrap() > 0);
    let (status, _) = post_json(app.url("/api/classifiers/99/retrain"), json!({})).await;
    assert_eq!(status, 404);

    // cluster only the calls: the windows scoring at least the median
    let table = humpback::classifier::scores_parquet::read_scores(
        &app.data_dir
            .path()
            .join(job["scores_path"].as_str().unwrap_or(&format!("detections/{job_id}/scores.parquet"))),
        None,
    )
    .unwrap();
    let mut scores: Vec<f64> = table.windows.iter().map(|w| w.scores[0]).collect();
    scores.sort_by(f64::total_cmp);
    let min_score = scores[scores.len() / 2];
    let expected = scores.iter().filter(|score| **score >= min_score).count();
    for (body, needle) in [
        (json!({"model_version": model_version, "detection_job_id": 99}), "detection_job_id"),
        (json!({"model_version": model_version, "detection_job_id": job_id, "min_score": 1.5}), "min_score"),
        (json!({"model_version": model_version, "detection_job_id": job_id, "score_label": "grunt"}), "score_label"),
        (json!({"model_version": model_version, "detection_job_id": "x"}), "detection_job_id"),
    ] {
        let (status, answer) = post_json(app.url("/api/clustering-jobs"), body.clone()).await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(needle), "{body}: {answer}");
    }
    let (status, clustering) = post_json(
        app.url("/api/clustering-jobs"),
        json!({"model_version": model_version, "detection_job_id": job_id, "min_score": min_score,
               "reduction": {"method": "none"}, "algorithm": {"method": "kmeans", "k": 2, "seed": 7}}),
    )
    .await;
    assert_eq!(status, 201, "{clustering}");
    let clustering_id = clustering["id"].as_u64().unwrap();
    assert_eq!(crate::clustering::wait_for_clustering(&app, clustering_id).await, JobStatus::Complete);
    let (_, clustering) = crate::api_get(&app.url(&format!("/api/clustering-jobs/{clustering_id}"))).await;
    let filter = &clustering["metrics"]["score_filter"];
    assert_eq!(filter["windows_kept"].as_u64().unwrap() as usize, expected, "{clustering}");
    assert_eq!(filter["windows_in_sets"].as_u64().unwrap() as usize, scores.len());
    assert_eq!(clustering["metrics"]["rows"].as_u64().unwrap() as usize, expected);
    let page = get_text(&app.url(&format!("/clustering/{clustering_id}"))).await;
    assert!(page.contains("Only the calls") && page.contains(&format!("<strong>{expected}</strong>")), "{page}");
    app.stop().await;
}
