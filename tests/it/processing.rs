//! Processing: the seed spec's end-to-end smoke test (steps 1-5), encode-once under concurrency,
//! validation, cancel, failure and retry, short files, and recovery after a crash.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use humpback::app::{Humpback, Settings};
use humpback::config::DataDir;
use humpback::domain::decide::Command;
use humpback::domain::ids::{ProcessingJobId, WorkerId};
use humpback::domain::state::JobStatus;
use humpback::log::EventLog;
use humpback::processing::worker::{ProcessingWorker, StepOutcome};
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, TestApp};
use crate::ingest_api::{fixture, upload};

pub fn settings(workers: usize) -> Settings {
    Settings { enable_fake_model: true, processing_workers: workers, ..Settings::default() }
}

pub async fn post_json(url: String, body: Value) -> (u16, Value) {
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut response = agent.post(&url).send_json(body).expect("request");
        (response.status().as_u16(), response.body_mut().read_json::<Value>().unwrap_or(Value::Null))
    })
    .await
    .unwrap()
}

/// Waits, on log events (no polling sleeps), until the job has one of `statuses`.
pub async fn wait_for_job(app: &TestApp, job: u64, statuses: &[JobStatus]) -> JobStatus {
    let mut head = app.humpback.log.subscribe();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        head.borrow_and_update();
        let status = app.humpback.writer.read_state(|s| s.processing_jobs.get(&ProcessingJobId(job)).map(|j| j.status));
        if let Some(status) = status.filter(|status| statuses.contains(status)) {
            app.humpback.wait_until_projected(app.humpback.log.head()).await;
            return status;
        }
        tokio::time::timeout_at(deadline, head.changed()).await.expect("the job did not finish in time").unwrap();
    }
}

/// A mono 16-bit WAV of `seconds` of a chirp at `rate`.
pub fn chirp_wav(seconds: f64, rate: u32, seed: u32) -> Vec<u8> {
    let samples = (seconds * f64::from(rate)) as usize;
    let mut data = Vec::with_capacity(samples * 2);
    for n in 0..samples {
        let t = n as f64 / f64::from(rate);
        let value = (2.0 * std::f64::consts::PI * (200.0 + 50.0 * f64::from(seed) + 300.0 * t) * t).sin() * 0.5;
        data.extend_from_slice(&((value * 32767.0) as i16).to_le_bytes());
    }
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&rate.to_le_bytes());
    wav.extend_from_slice(&(rate * 2).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(data.len() as u32).to_le_bytes());
    wav.extend_from_slice(&data);
    wav
}

/// Reads a Parquet file with pyarrow and pandas when they are installed (CI installs them);
/// returns None when they are not, so a machine without them still runs every other check.
pub fn read_with_pyarrow(path: &std::path::Path) -> Option<Value> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check-parquet.py");
    let output = std::process::Command::new("python3").arg(script).arg(path).output().ok()?;
    if output.status.code() == Some(3) {
        eprintln!(
            "pyarrow/pandas not installed: skipping the pyarrow check ({})",
            String::from_utf8_lossy(&output.stderr)
        );
        return None;
    }
    assert!(
        output.status.success(),
        "pyarrow could not read {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    Some(serde_json::from_slice(&output.stdout).expect("check-parquet prints json"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_end_to_end_smoke_test_uploads_processes_and_reads_the_parquet() {
    let app = spawn_app_with(tempfile::tempdir().unwrap(), settings(1)).await;
    // 1-2. server and worker in-process; upload a small fixture.
    let (status, audio) =
        upload(&app.base_url, "humpback.wav", std::fs::read(fixture("wav_pcm16_mono_16k.wav")).unwrap(), Some("maui"))
            .await;
    assert_eq!(status, 201, "{audio}");
    let duration = audio["duration_seconds"].as_f64().unwrap();
    // 3. queue with the default (built-in) model.
    let (status, job) = post_json(app.url("/api/processing-jobs"), json!({"audio_file_id": audio["id"]})).await;
    assert_eq!(status, 201, "{job}");
    assert_eq!(job["skipped"], false);
    assert_eq!(job["model_name"], "builtin-logmel-stats");
    // 4. wait on events until complete.
    let job_id = job["id"].as_u64().unwrap();
    assert_eq!(wait_for_job(&app, job_id, &[JobStatus::Complete, JobStatus::Failed]).await, JobStatus::Complete);
    let (_, job) = crate::api_get(&app.url(&format!("/api/processing-jobs/{job_id}"))).await;
    assert_eq!(job["status"], "complete", "{job}");
    assert_eq!(job["progress"], 1.0);
    // 5. the embedding set exists and its Parquet reads.
    let set_id = job["embedding_set_id"].as_u64().expect("an embedding set");
    let (status, set) = crate::api_get(&app.url(&format!("/api/embedding-sets/{set_id}"))).await;
    assert_eq!(status, 200);
    let expected_rows = (duration / 5.0).ceil() as u64;
    assert_eq!(set["row_count"], expected_rows, "{set}");
    assert_eq!(set["vector_dim"], 384);
    let parquet = app.data_dir.path().join(set["parquet_path"].as_str().unwrap());
    assert!(parquet.starts_with(app.data_dir.path().join("embeddings")));
    let summary = humpback::artifacts::embeddings_parquet::inspect(&parquet).unwrap();
    assert_eq!(summary.rows, expected_rows);
    assert!(summary.is_complete());
    assert_eq!(summary.metadata_value("humpback.encoding_signature"), job["encoding_signature"].as_str());
    let mut starts = Vec::new();
    for batch in humpback::artifacts::embeddings_parquet::read_batches(&parquet, 100).unwrap() {
        let batch = batch.unwrap();
        assert!(batch.vectors.iter().all(|v| v.is_finite()));
        starts.extend(batch.start_seconds);
    }
    assert_eq!(starts[0], 0.0);
    assert!(*starts.last().unwrap() + 5.0 <= duration + 1e-9, "the last window ends at the end of the file");
    if let Some(pyarrow) = read_with_pyarrow(&parquet) {
        assert_eq!(pyarrow["rows"], expected_rows);
        assert_eq!(pyarrow["embedding_dim"], 384);
        assert_eq!(pyarrow["metadata"]["humpback.encoding_signature"], job["encoding_signature"]);
        assert_eq!(pyarrow["pandas_rows"], expected_rows);
    }
    let (_, listed) = crate::api_get(&app.url("/api/processing-jobs?status=complete")).await;
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["items"][0]["id"], job_id);
    let (_, for_file) = crate::api_get(&app.url(&format!("/api/embedding-sets?audio_file_id={}", audio["id"]))).await;
    assert_eq!(for_file.as_array().unwrap().len(), 1);
    let (_, models) = crate::api_get(&app.url("/api/models")).await;
    assert_eq!(models["default_model"], "builtin-logmel-stats");
    assert!(models["models"].as_array().unwrap().iter().any(|m| m["name"] == "fake"), "enabled for this test");
    let (_, detail) = crate::api_get(&app.url(&format!("/api/audio/{}", audio["id"]))).await;
    assert_eq!(detail["processing_jobs"][0]["status"], "complete");
    assert_eq!(detail["embedding_sets"][0]["id"], set_id);
    assert!(!humpback::processing::worker::find_files(&app.data_dir.path().join("embeddings"), ".tmp.parquet")
        .unwrap()
        .iter()
        .any(|_| true));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requeueing_an_encoded_file_creates_no_second_embedding_set() {
    let app = spawn_app_with(tempfile::tempdir().unwrap(), settings(1)).await;
    let (_, audio) = upload(&app.base_url, "a.wav", chirp_wav(3.0, 16_000, 1), None).await;
    let request = json!({"audio_file_id": audio["id"], "model": "fake"});
    let (status, job) = post_json(app.url("/api/processing-jobs"), request.clone()).await;
    assert_eq!(status, 201);
    let job_id = job["id"].as_u64().unwrap();
    wait_for_job(&app, job_id, &[JobStatus::Complete]).await;
    let stated = json!({
        "audio_file_id": audio["id"], "model": "fake", "window_seconds": 1.0, "hop_seconds": 1.0,
        "target_sample_rate": 16000, "feature_config": {"short_file": "pad"}
    });
    for body in [request, stated] {
        let (status, again) = post_json(app.url("/api/processing-jobs"), body).await;
        assert_eq!(status, 200, "{again}");
        assert_eq!(again["skipped"], true);
        assert_eq!(again["id"], job_id);
        assert_eq!(again["status"], "complete");
    }
    let (_, sets) = crate::api_get(&app.url("/api/embedding-sets")).await;
    assert_eq!(sets.as_array().unwrap().len(), 1);
    let (status, overlapping) = post_json(
        app.url("/api/processing-jobs"),
        json!({"audio_file_id": audio["id"], "model": "fake", "hop_seconds": 0.5}),
    )
    .await;
    assert_eq!(status, 201, "a different configuration is a new job: {overlapping}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_concurrent_requests_and_several_workers_give_one_job_and_one_set_per_signature() {
    let app = spawn_app_with(tempfile::tempdir().unwrap(), settings(3)).await;
    let mut ids = Vec::new();
    for seed in 0..3 {
        let (_, audio) = upload(&app.base_url, "c.wav", chirp_wav(2.0, 16_000, seed), None).await;
        ids.push(audio["id"].as_u64().unwrap());
    }
    let mut requests = Vec::new();
    for round in 0..12 {
        for id in &ids {
            let body = if round % 2 == 0 {
                json!({"audio_file_id": id, "model": "fake"})
            } else {
                json!({"audio_file_ids": [id], "model": "fake", "window_seconds": 1.0})
            };
            requests.push(tokio::spawn(post_json(app.url("/api/processing-jobs"), body)));
        }
    }
    let mut job_ids = std::collections::BTreeSet::new();
    for request in requests {
        let (status, answer) = request.await.unwrap();
        assert!(status == 200 || status == 201, "{answer}");
        let job = if answer.is_array() { answer[0].clone() } else { answer };
        job_ids.insert(job["id"].as_u64().unwrap());
    }
    assert_eq!(job_ids.len(), 3, "one job per signature");
    for job in &job_ids {
        assert_eq!(wait_for_job(&app, *job, &[JobStatus::Complete, JobStatus::Failed]).await, JobStatus::Complete);
    }
    let (_, sets) = crate::api_get(&app.url("/api/embedding-sets")).await;
    assert_eq!(sets.as_array().unwrap().len(), 3, "one set per signature");
    let claims = app
        .humpback
        .log
        .scan(humpback::domain::ids::EventSeq(1)..=humpback::domain::ids::EventSeq(u64::MAX), false)
        .filter(|e| e.as_ref().unwrap().event.type_name() == "ProcessingJobClaimed")
        .count();
    assert_eq!(claims, 3, "each job was claimed once");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_processing_requests_get_422_naming_the_field_and_unknown_audio_404() {
    let app = spawn_app_with(tempfile::tempdir().unwrap(), settings(0)).await;
    let (_, audio) = upload(&app.base_url, "a.wav", chirp_wav(2.0, 16_000, 1), None).await;
    let id = audio["id"].clone();
    for (body, needle) in [
        (json!({"audio_file_id": id, "model": "perch-v9"}), "model: \"perch-v9\" is not a registered model"),
        (json!({"audio_file_id": id, "window_seconds": "five"}), "window_seconds: must be a number"),
        (json!({"audio_file_id": id, "hop_seconds": 9.0}), "hop_seconds"),
        (json!({"audio_file_id": id, "windw_seconds": 5.0}), "windw_seconds: unknown parameter"),
        (json!({"audio_file_id": id, "feature_config": {"short_file": "trim"}}), "feature_config.short_file"),
        (json!({"audio_file_id": id, "model": "fake", "window_seconds": 2.0}), "window_seconds"),
        (json!({"audio_file_id": id, "folder": "x"}), "exactly one of"),
        (json!({"audio_file_ids": []}), "the list is empty"),
    ] {
        let (status, answer) = post_json(app.url("/api/processing-jobs"), body.clone()).await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(needle), "{body}: {answer}");
    }
    let (status, answer) = post_json(app.url("/api/processing-jobs"), json!({"audio_file_id": 99})).await;
    assert_eq!(status, 404, "{answer}");
    let (status, _) = post_json(app.url("/api/processing-jobs"), json!({"folder": "nowhere"})).await;
    assert_eq!(status, 404);
    let (status, _) = crate::api_get(&app.url("/api/processing-jobs/42")).await;
    assert_eq!(status, 404);
    let (status, _) = crate::api_get(&app.url("/api/processing-jobs?status=sleeping")).await;
    assert_eq!(status, 400);
    assert_eq!(app.humpback.writer.read_state(|s| s.processing_jobs.len()), 0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canceling_a_running_job_stops_it_within_a_batch_and_removes_its_temp_file() {
    let app = spawn_app_with(tempfile::tempdir().unwrap(), Settings { batch_size: Some(1), ..settings(0) }).await;
    let (_, audio) = upload(&app.base_url, "a.wav", chirp_wav(6.0, 16_000, 1), None).await;
    let (_, job) =
        post_json(app.url("/api/processing-jobs"), json!({"audio_file_id": audio["id"], "model": "fake"})).await;
    let job_id = ProcessingJobId(job["id"].as_u64().unwrap());
    // Claim it as a worker would, ask to cancel, then let the worker run its first batch.
    app.humpback.execute(Command::ClaimProcessingJob { worker: WorkerId("test".into()) }).await.unwrap();
    let (status, canceling) = post_json(app.url(&format!("/api/processing-jobs/{job_id}/cancel")), json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(canceling["cancel_requested"], true);
    assert_eq!(canceling["status"], "running");
    let humpback = app.humpback.clone();
    let status = tokio::task::spawn_blocking(move || {
        let mut worker = ProcessingWorker::new(humpback, WorkerId("test".into()), Arc::new(AtomicBool::new(false)));
        worker.run_claimed(job_id, 1)
    })
    .await
    .unwrap();
    assert_eq!(status, JobStatus::Canceled);
    let progressed = app
        .humpback
        .log
        .scan(humpback::domain::ids::EventSeq(1)..=humpback::domain::ids::EventSeq(u64::MAX), false)
        .filter_map(|e| match e.unwrap().event {
            humpback::domain::events::Event::ProcessingJobProgressed(p) => Some(p.windows_done),
            _ => None,
        })
        .max();
    assert_eq!(progressed, Some(1), "it stopped after one batch of one window");
    assert!(humpback::processing::worker::find_files(&app.data_dir.path().join("embeddings"), ".parquet")
        .unwrap()
        .is_empty());
    app.humpback.wait_until_projected(app.humpback.log.head()).await;
    let (_, job) = crate::api_get(&app.url(&format!("/api/processing-jobs/{job_id}"))).await;
    assert_eq!(job["status"], "canceled");
    let (status, retried) = post_json(app.url(&format!("/api/processing-jobs/{job_id}/retry")), json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(retried["status"], "queued");
    let (status, complete) = post_json(app.url(&format!("/api/processing-jobs/{job_id}/cancel")), json!({})).await;
    assert_eq!(status, 200, "a queued job cancels at once: {complete}");
    assert_eq!(complete["status"], "canceled");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_fails_keeps_its_reason_and_can_be_retried() {
    let app = spawn_app_with(tempfile::tempdir().unwrap(), settings(0)).await;
    let (_, audio) = upload(&app.base_url, "a.wav", chirp_wav(2.0, 16_000, 1), None).await;
    let stored = app.data_dir.path().join(audio["stored_path"].as_str().unwrap());
    let bytes = std::fs::read(&stored).unwrap();
    std::fs::write(&stored, b"gone").unwrap();
    let (_, job) =
        post_json(app.url("/api/processing-jobs"), json!({"audio_file_id": audio["id"], "model": "fake"})).await;
    let job_id = job["id"].as_u64().unwrap();
    let humpback = app.humpback.clone();
    let step = move || {
        let humpback = humpback.clone();
        tokio::task::spawn_blocking(move || {
            ProcessingWorker::new(humpback, WorkerId("test".into()), Arc::new(AtomicBool::new(false))).step().unwrap()
        })
    };
    assert_eq!(step().await.unwrap(), StepOutcome::Ran { job_id: ProcessingJobId(job_id), status: JobStatus::Failed });
    app.humpback.wait_until_projected(app.humpback.log.head()).await;
    let (_, failed) = crate::api_get(&app.url(&format!("/api/processing-jobs/{job_id}"))).await;
    assert_eq!(failed["status"], "failed");
    assert!(failed["error_message"].as_str().unwrap().contains("encoding audio file"), "{failed}");
    std::fs::write(&stored, bytes).unwrap();
    let (status, _) = post_json(app.url(&format!("/api/processing-jobs/{job_id}/retry")), json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(
        step().await.unwrap(),
        StepOutcome::Ran { job_id: ProcessingJobId(job_id), status: JobStatus::Complete }
    );
    assert_eq!(step().await.unwrap(), StepOutcome::Idle);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_file_under_the_skip_policy_completes_with_a_warning_and_is_remembered() {
    let app = spawn_app_with(tempfile::tempdir().unwrap(), settings(1)).await;
    let (_, audio) = upload(&app.base_url, "blip.wav", chirp_wav(2.0, 32_000, 1), None).await;
    let body = json!({"audio_file_id": audio["id"], "feature_config": {"short_file": "skip"}});
    let (_, job) = post_json(app.url("/api/processing-jobs"), body.clone()).await;
    let job_id = job["id"].as_u64().unwrap();
    assert_eq!(wait_for_job(&app, job_id, &[JobStatus::Complete, JobStatus::Failed]).await, JobStatus::Complete);
    let (_, done) = crate::api_get(&app.url(&format!("/api/processing-jobs/{job_id}"))).await;
    assert_eq!(done["embedding_set_id"], Value::Null);
    assert!(done["warning"].as_str().unwrap().contains("samples"), "{done}");
    let (status, again) = post_json(app.url("/api/processing-jobs"), body).await;
    assert_eq!(status, 200);
    assert_eq!(again["skipped"], true);
    let (_, padded) = post_json(app.url("/api/processing-jobs"), json!({"audio_file_id": audio["id"]})).await;
    let padded_id = padded["id"].as_u64().unwrap();
    assert_eq!(wait_for_job(&app, padded_id, &[JobStatus::Complete, JobStatus::Failed]).await, JobStatus::Complete);
    let (_, padded) = crate::api_get(&app.url(&format!("/api/processing-jobs/{padded_id}"))).await;
    assert!(padded["embedding_set_id"].is_u64(), "the pad policy gives one padded window: {padded}");
    app.stop().await;
}

#[test]
fn on_restart_a_running_job_with_a_complete_parquet_completes_and_one_without_is_requeued() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = DataDir::new(dir.path());
    let open = || Humpback::open_with(data_dir.clone(), settings(0)).unwrap();
    let (first, second) = {
        let humpback = Arc::new(open());
        let mut jobs = Vec::new();
        for seed in 0..2 {
            let staged =
                humpback::ingest::stage_copy(&humpback.data_dir.tmp_dir(), &chirp_wav(2.0, 16_000, seed)[..], u64::MAX)
                    .unwrap();
            let audio = humpback::ingest::register_staged(&humpback, staged, "x.wav", "").unwrap().audio_file_id();
            let model = humpback.models.find("fake").unwrap().info.clone();
            let resolved = humpback::processing::config::resolve(
                &humpback::processing::config::EncodingRequest { model: Some("fake".into()), ..Default::default() },
                &model,
            )
            .unwrap();
            let checksum = humpback.writer.read_state(|s| s.audio_files[&audio].checksum_sha256.clone());
            humpback
                .writer
                .execute(Command::QueueProcessingJob {
                    audio_file_id: audio,
                    encoding_signature: resolved.signature(&checksum),
                    config: resolved.encoding_config(),
                })
                .unwrap();
            jobs.push(humpback.writer.read_state(|s| *s.processing_jobs.keys().next_back().unwrap()));
        }
        // Job 1 ran to a promoted file but died before recording it; job 2 died mid-way.
        let mut worker =
            ProcessingWorker::new(humpback.clone(), WorkerId("w".into()), Arc::new(AtomicBool::new(false)));
        assert!(matches!(worker.step().unwrap(), StepOutcome::Ran { status: JobStatus::Complete, .. }));
        (jobs[0], jobs[1])
    };
    // Rebuild the scenario from scratch in a second directory where job 1's completion events
    // are absent: copy everything but truncate the log before the completion of job 1.
    let crashed = tempfile::tempdir().unwrap();
    {
        let source = humpback::log::SledEventLog::open(&dir.path().join("events")).unwrap();
        let target = humpback::log::SledEventLog::open(&crashed.path().join("events")).unwrap();
        let events: Vec<_> = source
            .scan(humpback::domain::ids::EventSeq(1)..=humpback::domain::ids::EventSeq(u64::MAX), false)
            .map(|e| e.unwrap().event)
            .take_while(|event| !matches!(event, humpback::domain::events::Event::EmbeddingSetPromoted(_)))
            .collect();
        target.append(&events).unwrap();
        copy_dir(&dir.path().join("audio"), &crashed.path().join("audio"));
        copy_dir(&dir.path().join("embeddings"), &crashed.path().join("embeddings"));
    }
    // A claim of job 2 with a half-written temp file, as a second worker would have left it.
    {
        let log = Arc::new(humpback::log::SledEventLog::open(&crashed.path().join("events")).unwrap());
        let writer = humpback::writer::Writer::open(log.clone()).unwrap();
        writer.execute(Command::ClaimProcessingJob { worker: WorkerId("w2".into()) }).unwrap();
        let temp = writer.read_state(|s| {
            let job = &s.processing_jobs[&second];
            crashed.path().join(humpback::processing::worker::embeddings_relative_path(
                &job.config.model_version,
                job.audio_file_id,
                &job.encoding_signature,
            ))
        });
        std::fs::create_dir_all(temp.parent().unwrap()).unwrap();
        std::fs::write(humpback::artifacts::files::temp_sibling(&temp), b"half a parquet").unwrap();
    }
    let reopened = Humpback::open_with(DataDir::new(crashed.path()), settings(0)).unwrap();
    assert_eq!(reopened.recovery.completed, vec![first]);
    assert_eq!(reopened.recovery.requeued, vec![second]);
    assert_eq!(reopened.recovery.removed_temporary_files.len(), 1);
    reopened.writer.read_state(|s| {
        assert_eq!(s.processing_jobs[&first].status, JobStatus::Complete);
        assert_eq!(s.processing_jobs[&second].status, JobStatus::Queued);
        assert_eq!(s.embedding_sets.len(), 1);
    });
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

mod concurrency {
    use std::collections::{BTreeMap, HashSet};
    use std::sync::Arc;

    use humpback::domain::decide::{Command, NewEmbeddingSet};
    use humpback::domain::events::Event;
    use humpback::domain::ids::{EncodingSignature, WorkerId};
    use humpback::domain::state::JobStatus;
    use humpback::log::SledEventLog;
    use humpback::writer::Writer;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

        /// Threads standing for HTTP requests and workers hammer one writer with duplicate
        /// queue requests, claims and completions: no signature ever has two running jobs or
        /// two embedding sets, and each job is claimed by one worker at a time.
        #[test]
        fn duplicate_requests_and_racing_workers_never_double_a_signature(
            threads in 2usize..6,
            requests in prop::collection::vec((0u64..3, 0u8..3), 4..24),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let log = Arc::new(SledEventLog::open(&dir.path().join("events")).unwrap());
            let writer = Arc::new(Writer::open(log).unwrap());
            for file in 1..=3 {
                writer.execute(crate::helpers::register(file)).unwrap();
            }
            let handles: Vec<_> = (0..threads).map(|thread| {
                let writer = writer.clone();
                let requests = requests.clone();
                std::thread::spawn(move || {
                    for (file, signature) in requests {
                        let _ = writer.execute(crate::helpers::queue(file + 1, &format!("sig-{file}-{signature}")));
                        let claimed = writer.execute(Command::ClaimProcessingJob { worker: WorkerId(format!("w{thread}")) });
                        if let Ok(envelopes) = claimed {
                            for envelope in envelopes {
                                if let Event::ProcessingJobClaimed(claim) = envelope.event {
                                    let _ = writer.execute(Command::CompleteProcessingJob {
                                        job_id: claim.job_id,
                                        attempt: claim.attempt,
                                        embedding_set: Some(NewEmbeddingSet { vector_dim: 4, row_count: 1, parquet_path: "x".into() }),
                                        warning: None,
                                    });
                                }
                            }
                        }
                    }
                })
            }).collect();
            for handle in handles {
                handle.join().unwrap();
            }
            writer.read_state(|state| {
                let mut sets = HashSet::new();
                for set in state.embedding_sets.values() {
                    assert!(sets.insert(set.encoding_signature.clone()), "two sets for {:?}", set.encoding_signature);
                }
                let mut running: BTreeMap<EncodingSignature, usize> = BTreeMap::new();
                for job in state.processing_jobs.values() {
                    if job.status == JobStatus::Running {
                        *running.entry(job.encoding_signature.clone()).or_default() += 1;
                    }
                }
                assert!(running.values().all(|count| *count <= 1));
                let distinct: HashSet<_> = requests.iter().collect();
                assert_eq!(state.processing_jobs.len(), distinct.len(), "one job per distinct signature");
            });
        }
    }
}
