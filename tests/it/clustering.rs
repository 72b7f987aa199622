//! The seed spec's end-to-end smoke test completed (steps 6-8): cluster what was processed,
//! and check clusters, assignments, files and projections agree. Plus the error answers.

use std::time::Duration;

use humpback::domain::ids::ClusteringJobId;
use humpback::domain::state::JobStatus;
use humpback::log::EventLog;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, TestApp};
use crate::ingest_api::{fixture, upload};
use crate::processing::{chirp_wav, post_json, settings, wait_for_job};

/// Waits (on log events, not a clock) until the clustering job has finished, then until the
/// projections show it.
pub async fn wait_for_clustering(app: &TestApp, job: u64) -> JobStatus {
    let mut head = app.humpback.log.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        head.borrow_and_update();
        let status = app.humpback.writer.read_state(|s| s.clustering_jobs.get(&ClusteringJobId(job)).map(|j| j.status));
        if let Some(status) =
            status.filter(|s| matches!(s, JobStatus::Complete | JobStatus::Failed | JobStatus::Canceled))
        {
            app.humpback.wait_until_projected(app.humpback.log.head()).await;
            return status;
        }
        tokio::time::timeout_at(deadline, head.changed()).await.expect("clustering did not finish in time").unwrap();
    }
}

async fn processed_sets(app: &TestApp, model: &str, files: &[Vec<u8>]) -> Vec<u64> {
    let mut sets = Vec::new();
    for (index, bytes) in files.iter().enumerate() {
        let (_, audio) =
            upload(&app.base_url, &format!("f{index}.wav"), bytes.clone(), Some(&format!("site-{}", index % 2))).await;
        let (_, job) =
            post_json(app.url("/api/processing-jobs"), json!({"audio_file_id": audio["id"], "model": model})).await;
        let job_id = job["id"].as_u64().unwrap();
        assert_eq!(wait_for_job(app, job_id, &[JobStatus::Complete, JobStatus::Failed]).await, JobStatus::Complete);
        let (_, job) = crate::api_get(&app.url(&format!("/api/processing-jobs/{job_id}"))).await;
        sets.push(job["embedding_set_id"].as_u64().unwrap());
    }
    sets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_end_to_end_smoke_test_clusters_what_was_processed_and_everything_agrees() {
    let app = spawn_app_with(tempfile::tempdir().unwrap(), settings(1)).await;
    let files: Vec<Vec<u8>> = ["wav_pcm16_mono_16k.wav", "flac16_mono_16k.flac", "mp3_vbr_id3_mono_22k.mp3"]
        .iter()
        .map(|name| std::fs::read(fixture(name)).unwrap())
        .collect();
    let sets = processed_sets(&app, "builtin-logmel-stats", &files).await;
    // 6. queue a clustering job on those sets.
    let (status, job) = post_json(
        app.url("/api/clustering-jobs"),
        json!({"embedding_set_ids": sets, "reduction": {"method": "pca", "n_components": 4},
               "algorithm": {"method": "kmeans", "k": 3, "seed": 7}, "reference_field": "folder"}),
    )
    .await;
    assert_eq!(status, 201, "{job}");
    // A clustering worker may already have claimed it by the time the answer is written.
    assert!(["queued", "running", "complete"].contains(&job["status"].as_str().unwrap()), "{job}");
    // 7. wait until complete.
    let job_id = job["id"].as_u64().unwrap();
    assert_eq!(wait_for_clustering(&app, job_id).await, JobStatus::Complete);
    let (_, job) = crate::api_get(&app.url(&format!("/api/clustering-jobs/{job_id}"))).await;
    assert_eq!(job["status"], "complete", "{job}");
    // 8. clusters and assignments exist and are consistent.
    let (status, clusters) = crate::api_get(&app.url(&format!("/api/clustering-jobs/{job_id}/clusters"))).await;
    assert_eq!(status, 200);
    let clusters = clusters.as_array().unwrap().clone();
    let rows: u64 = {
        let (_, all_sets) = crate::api_get(&app.url("/api/embedding-sets")).await;
        all_sets.as_array().unwrap().iter().map(|s| s["row_count"].as_u64().unwrap()).sum()
    };
    let sizes: u64 = clusters.iter().map(|c| c["size"].as_u64().unwrap()).sum();
    assert_eq!(sizes, rows, "cluster sizes, noise included, add up to the rows");
    assert_eq!(
        clusters.iter().filter(|c| c["label"].as_i64().unwrap() >= 0).count(),
        3,
        "k-means gives exactly k clusters"
    );
    assert!(clusters.iter().all(|c| c["noise"] == false), "k-means has no noise");
    assert!(clusters[0]["metadata_summary"].is_object());
    assert_eq!(job["metrics"]["rows"], rows);
    assert!(job["metrics"]["reference"]["adjusted_rand_index"].is_number(), "{}", job["metrics"]);
    for cluster in &clusters {
        let label = cluster["label"].as_i64().unwrap();
        let (_, members) =
            crate::api_get(&app.url(&format!("/api/clustering-jobs/{job_id}/clusters/{label}/members?limit=2"))).await;
        assert_eq!(members["total"], cluster["size"], "each cluster's assignments count equals its size");
        assert!(members["items"].as_array().unwrap().len() <= 2);
        assert!(members["items"][0]["start_seconds"].is_number());
        assert!(members["items"][0]["audio_file_id"].is_u64());
        let (_, by_id) = crate::api_get(&app.url(&format!("/api/clusters/{}/members", cluster["id"]))).await;
        assert_eq!(by_id["total"], cluster["size"]);
    }
    // The files agree with the projections.
    let clusters_json: Value = serde_json::from_slice(
        &std::fs::read(app.data_dir.path().join(format!("clusters/{job_id}/clusters.json"))).unwrap(),
    )
    .unwrap();
    let file_sizes: Vec<(i64, u64)> = clusters_json["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["label"].as_i64().unwrap(), c["size"].as_u64().unwrap()))
        .collect();
    let projected: Vec<(i64, u64)> =
        clusters.iter().map(|c| (c["label"].as_i64().unwrap(), c["size"].as_u64().unwrap())).collect();
    assert_eq!(file_sizes, projected);
    let assignments = humpback::clustering_jobs::outputs::read_assignments(
        &app.data_dir.path().join(format!("clusters/{job_id}/assignments.parquet")),
        |_| true,
    )
    .unwrap();
    assert_eq!(assignments.len() as u64, rows);
    assert!(assignments.iter().all(|a| a.x.is_some() && a.y.is_some()), "2-D coordinates for the plot");
    let projected_rows: i64 = app
        .humpback
        .reader
        .with_connection(|c| {
            Ok(c.query_row("SELECT COUNT(*) FROM cluster_assignments WHERE clustering_job_id = ?1", [job_id], |r| {
                r.get(0)
            })
            .unwrap())
        })
        .unwrap();
    assert_eq!(projected_rows as u64, rows);
    let csv = tokio::task::spawn_blocking({
        let url = app.url(&format!("/api/clustering-jobs/{job_id}/assignments.csv"));
        move || ureq::get(&url).call().unwrap().body_mut().read_to_string().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(csv.lines().count() as u64, rows + 1);
    assert!(csv.starts_with("embedding_set_id,audio_file_id,row_index,start_seconds"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_clustering_requests_get_the_right_status_and_reason() {
    let app = spawn_app_with(tempfile::tempdir().unwrap(), settings(1)).await;
    let builtin = processed_sets(&app, "builtin-logmel-stats", &[chirp_wav(6.0, 32_000, 1)]).await;
    let fake = processed_sets(&app, "fake", &[chirp_wav(3.0, 16_000, 2)]).await;
    for (body, status, needle) in [
        (json!({"embedding_set_ids": []}), 422, "the list is empty"),
        (json!({"embedding_set_ids": [99]}), 404, "embedding set 99 does not exist"),
        (json!({"embedding_set_ids": [builtin[0], fake[0]]}), 400, "do not share one model version"),
        (
            json!({"embedding_set_ids": builtin, "algorithm": {"method": "hdbscan", "min_cluster_size": 1}}),
            422,
            "min_cluster_size",
        ),
        (json!({"embedding_set_ids": builtin, "algoritm": {}}), 422, "algoritm"),
        (json!({"folder": "nowhere"}), 404, "no embedding sets"),
    ] {
        let (answer_status, answer) = post_json(app.url("/api/clustering-jobs"), body.clone()).await;
        assert_eq!(answer_status, status, "{body}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(needle), "{body}: {answer}");
    }
    // Fewer rows than HDBSCAN's min_cluster_size: a defined answer (all noise), not a crash.
    let (_, job) = post_json(
        app.url("/api/clustering-jobs"),
        json!({"embedding_set_ids": builtin, "reduction": {"method": "none"}}),
    )
    .await;
    let job_id = job["id"].as_u64().unwrap();
    let status = wait_for_clustering(&app, job_id).await;
    let (_, job) = crate::api_get(&app.url(&format!("/api/clustering-jobs/{job_id}"))).await;
    match status {
        JobStatus::Complete => assert_eq!(job["metrics"]["cluster_count"], 0, "{job}"),
        _ => assert!(job["error_message"].as_str().unwrap().contains("rows"), "a reason a person can act on: {job}"),
    }
    let (status, _) = crate::api_get(&app.url("/api/clustering-jobs/77")).await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[test]
fn the_cluster_command_queues_follows_and_summarises_a_job_on_a_stopped_data_directory() {
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    {
        let humpback = Arc::new(
            humpback::app::Humpback::open_with(humpback::config::DataDir::new(dir.path()), settings(0)).unwrap(),
        );
        let model = humpback.models.find("fake").unwrap().info.clone();
        let resolved = humpback::processing::config::resolve(
            &humpback::processing::config::EncodingRequest { model: Some("fake".into()), ..Default::default() },
            &model,
        )
        .unwrap();
        for seed in 0..2 {
            let staged =
                humpback::ingest::stage_copy(&humpback.data_dir.tmp_dir(), &chirp_wav(4.0, 16_000, seed)[..], u64::MAX)
                    .unwrap();
            let audio = humpback::ingest::register_staged(&humpback, staged, "x.wav", "").unwrap().audio_file_id();
            let checksum = humpback.writer.read_state(|s| s.audio_files[&audio].checksum_sha256.clone());
            humpback
                .writer
                .execute(humpback::domain::decide::Command::QueueProcessingJob {
                    audio_file_id: audio,
                    encoding_signature: resolved.signature(&checksum),
                    config: resolved.encoding_config(),
                })
                .unwrap();
        }
        let mut worker = humpback::processing::worker::ProcessingWorker::new(
            humpback.clone(),
            humpback::domain::ids::WorkerId("w".into()),
            Arc::new(AtomicBool::new(false)),
        );
        while worker.step().unwrap() != humpback::processing::worker::StepOutcome::Idle {}
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_humpback"))
        .args(["--data-dir", dir.path().to_str().unwrap(), "--bind", "127.0.0.1:1", "cluster", "--sets", "1,2"])
        .args(["--parameters", r#"{"reduction": {"method": "pca", "n_components": 2}, "algorithm": {"method": "kmeans", "k": 2, "seed": 1}}"#])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("clustering job 1 complete: 2 clusters over 8 windows (0 noise)"), "{stdout}");
    assert!(stdout.contains("cluster 0") && stdout.contains("cluster 1"), "{stdout}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("100%"), "a progress bar");
}
