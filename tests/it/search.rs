//! Search by example through the API and the CLI: a window finds itself, exclusions, scopes,
//! span and clip queries, mixed model versions, stale caches, and the command line.

use std::path::Path;

use humpback::domain::state::JobStatus;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, TestApp};
use crate::ingest_api::upload;
use crate::processing::{chirp_wav, post_json, settings, wait_for_job};

/// Three recordings of 6 s (six 1 s windows each with the fake model): a.wav and b.wav in
/// maui, c.wav in kauai. Returns the app and the embedding set of each, in that order.
async fn library() -> (TestApp, Vec<u64>, Vec<u64>) {
    let app = spawn_app_with(tempfile::tempdir().unwrap(), settings(1)).await;
    let mut audio_ids = Vec::new();
    for (seed, name, folder) in [(0, "a.wav", "maui"), (1, "b.wav", "maui"), (2, "c.wav", "kauai")] {
        let (status, audio) = upload(&app.base_url, name, chirp_wav(6.0, 16_000, seed), Some(folder)).await;
        assert_eq!(status, 201, "{audio}");
        audio_ids.push(audio["id"].as_u64().unwrap());
    }
    let mut set_ids = Vec::new();
    for audio in &audio_ids {
        let (status, job) =
            post_json(app.url("/api/processing-jobs"), json!({"audio_file_id": audio, "model": "fake"})).await;
        assert_eq!(status, 201, "{job}");
        let job_id = job["id"].as_u64().unwrap();
        assert_eq!(wait_for_job(&app, job_id, &[JobStatus::Complete, JobStatus::Failed]).await, JobStatus::Complete);
        let (_, job) = crate::api_get(&app.url(&format!("/api/processing-jobs/{job_id}"))).await;
        set_ids.push(job["embedding_set_id"].as_u64().unwrap());
    }
    (app, audio_ids, set_ids)
}

async fn search(app: &TestApp, body: Value) -> (u16, Value) {
    post_json(app.url("/api/search"), body).await
}

fn windows(answer: &Value) -> Vec<(u64, u64)> {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|result| (result["embedding_set_id"].as_u64().unwrap(), result["row_index"].as_u64().unwrap()))
        .collect()
}

async fn search_with_clip(app: &TestApp, clip: &[u8], request: Value) -> (u16, Value) {
    let boundary = "search-test-boundary-3a9c";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!("--{boundary}\r\ncontent-disposition: form-data; name=\"request\"\r\n\r\n{request}\r\n").as_bytes(),
    );
    body.extend_from_slice(
        format!(
            "--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"clip.wav\"\r\n\
             content-type: audio/wav\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(clip);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let url = app.url("/api/search");
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut response = agent
            .post(&url)
            .header("content-type", format!("multipart/form-data; boundary={boundary}"))
            .send(&body[..])
            .expect("request");
        (response.status().as_u16(), response.body_mut().read_json::<Value>().unwrap_or(Value::Null))
    })
    .await
    .unwrap()
}

fn tmp_is_empty(data_dir: &Path) -> bool {
    std::fs::read_dir(data_dir.join("tmp")).map(|mut entries| entries.next().is_none()).unwrap_or(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_window_finds_itself_first_and_excluding_its_recording_removes_its_windows() {
    let (app, audio, sets) = library().await;
    let query = json!({"embedding_set_id": sets[0], "row_index": 2});
    let (status, answer) = search(&app, json!({"query": query, "k": 5})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (answer["metric"].as_str(), answer["k"].as_u64(), answer["exact"].as_bool()),
        (Some("cosine"), Some(5), Some(true))
    );
    assert_eq!(answer["searched_windows"], 18, "{answer}");
    assert_eq!(answer["model_version"], "fake-1-32d");
    assert!(answer["elapsed_ms"].as_f64().is_some());
    let first = &answer["results"][0];
    assert_eq!(windows(&answer)[0], (sets[0], 2), "{answer}");
    assert_eq!((first["rank"].as_u64(), first["audio_file_id"].as_u64()), (Some(1), Some(audio[0])));
    assert_eq!((first["recording"].as_str(), first["folder"].as_str()), (Some("a.wav"), Some("maui")));
    assert_eq!((first["start_seconds"].as_f64(), first["end_seconds"].as_f64()), (Some(2.0), Some(3.0)));
    assert!((first["score"].as_f64().unwrap() - 1.0).abs() < 1e-5, "{first}");
    let scores: Vec<f64> = answer["results"].as_array().unwrap().iter().map(|r| r["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|pair| pair[0] >= pair[1]), "best first: {scores:?}");
    assert_eq!(answer["results"].as_array().unwrap().len(), 5);

    let (status, excluded) = search(&app, json!({"query": query, "k": 20, "exclude_same_recording": true})).await;
    assert_eq!(status, 200, "{excluded}");
    assert_eq!(excluded["searched_windows"], 12);
    assert_eq!(excluded["results"].as_array().unwrap().len(), 12);
    assert!(excluded["results"].as_array().unwrap().iter().all(|r| r["audio_file_id"] != audio[0]), "{excluded}");

    // Euclidean: a distance, lowest first; the window itself at distance 0.
    let (_, euclidean) = search(&app, json!({"query": query, "metric": "euclidean", "k": 18})).await;
    assert_eq!(windows(&euclidean)[0], (sets[0], 2));
    assert!(euclidean["results"][0]["score"].as_f64().unwrap() < 1e-3, "{euclidean}");
    let distances: Vec<f64> =
        euclidean["results"].as_array().unwrap().iter().map(|r| r["score"].as_f64().unwrap()).collect();
    assert!(distances.windows(2).all(|pair| pair[0] <= pair[1]), "{distances:?}");

    // Scopes: a folder, a list of sets.
    let (_, kauai) = search(&app, json!({"query": query, "folder": "kauai"})).await;
    assert_eq!(kauai["searched_windows"], 6);
    assert!(kauai["results"].as_array().unwrap().iter().all(|r| r["recording"] == "c.wav"), "{kauai}");
    let (_, listed) = search(&app, json!({"query": query, "embedding_set_ids": [sets[1]], "k": 2})).await;
    assert!(windows(&listed).iter().all(|(set, _)| *set == sets[1]), "{listed}");

    // A span of the recording, embedded on the fly, finds the same window first.
    let (status, span) =
        search(&app, json!({"query": {"audio_file_id": audio[0], "start_seconds": 2.0}, "k": 3})).await;
    assert_eq!(status, 200, "{span}");
    assert_eq!(windows(&span)[0], windows(&answer)[0], "{span}");
    assert_eq!(span["query"]["start_seconds"], 2.0);
    assert!((span["results"][0]["score"].as_f64().unwrap() - 1.0).abs() < 1e-4, "{span}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_uploaded_clip_is_searched_and_never_registered() {
    let (app, audio, sets) = library().await;
    let (_, before) = crate::api_get(&app.url("/api/audio")).await;
    // The first second of a.wav's chirp is a.wav's window 0.
    let clip = chirp_wav(1.0, 16_000, 0);
    let (status, answer) = search_with_clip(&app, &clip, json!({"k": 3, "folder": "maui"})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(windows(&answer)[0], (sets[0], 0), "{answer}");
    assert_eq!(answer["results"][0]["audio_file_id"], audio[0]);
    assert_eq!(answer["query"]["clip_windows"], 1);
    assert_eq!(answer["searched_windows"], 12);
    let (_, after) = crate::api_get(&app.url("/api/audio")).await;
    assert_eq!(before["total"], after["total"], "the clip is not a recording");
    assert_eq!(after["total"], 3);
    assert!(tmp_is_empty(app.data_dir.path()), "the staged clip is removed");
    // A clip that is not audio: 422, and nothing left behind.
    let (status, answer) = search_with_clip(&app, b"not audio at all", json!({})).await;
    assert_eq!(status, 422, "{answer}");
    assert!(tmp_is_empty(app.data_dir.path()));
    let (status, answer) =
        search_with_clip(&app, &clip, json!({"query": {"embedding_set_id": sets[0], "row_index": 0}})).await;
    assert_eq!(status, 422, "{answer}");
    assert!(answer["error"].as_str().unwrap().starts_with("query:"), "{answer}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_searches_are_refused_with_the_reason_and_mixed_model_versions_named() {
    let (app, audio, sets) = library().await;
    // A second model version: a.wav encoded with the built-in model too.
    let (status, job) = post_json(app.url("/api/processing-jobs"), json!({"audio_file_id": audio[0]})).await;
    assert_eq!(status, 201, "{job}");
    let job_id = job["id"].as_u64().unwrap();
    assert_eq!(wait_for_job(&app, job_id, &[JobStatus::Complete, JobStatus::Failed]).await, JobStatus::Complete);
    let (_, job) = crate::api_get(&app.url(&format!("/api/processing-jobs/{job_id}"))).await;
    let builtin_set = job["embedding_set_id"].as_u64().unwrap();
    let window = json!({"embedding_set_id": sets[0], "row_index": 0});
    let (status, answer) = search(&app, json!({"query": window, "embedding_set_ids": [sets[0], builtin_set]})).await;
    assert_eq!(status, 400, "{answer}");
    let message = answer["error"].as_str().unwrap();
    assert!(message.contains("fake-1-32d") && message.contains(job["model_version"].as_str().unwrap()), "{message}");
    // Without a scope, a window searches its own model version only.
    let (status, answer) = search(&app, json!({"query": window})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["searched_windows"], 18);
    // A span of a recording encoded by two models must say which.
    let (status, answer) = search(&app, json!({"query": {"audio_file_id": audio[0], "start_seconds": 0.0}})).await;
    assert_eq!(status, 422, "{answer}");
    assert!(answer["error"].as_str().unwrap().starts_with("model_version:"), "{answer}");
    for (body, status, needle) in [
        (json!({"query": {"embedding_set_id": 99, "row_index": 0}}), 404, "embedding set 99"),
        (json!({"query": {"embedding_set_id": sets[0], "row_index": 6}}), 404, "no row_index 6"),
        (json!({"query": {"audio_file_id": 99, "start_seconds": 0}}), 404, "recording 99"),
        (json!({"query": window, "embedding_set_ids": [sets[0], 77]}), 404, "embedding set 77"),
        (json!({"query": window, "k": 0}), 422, "k:"),
        (json!({"query": window, "metric": "manhattan"}), 422, "metric:"),
        (json!({"query": window, "exact": false}), 422, "exact:"),
        (json!({"query": {"audio_file_id": audio[1], "start_seconds": 60.0}}), 422, "query.start_seconds"),
        (json!({"query": window, "color": "red"}), 422, "color:"),
    ] {
        let (answer_status, answer) = search(&app, body.clone()).await;
        assert_eq!(answer_status, status, "{body}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(needle), "{body}: {answer}");
    }
    app.stop().await;
}

fn cache_file(app: &TestApp, set: u64) -> std::path::PathBuf {
    app.data_dir.path().join("cache").join("vectors").join(format!("{set}.f32"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_truncated_or_stale_cache_is_rebuilt_from_the_parquet_and_is_not_an_orphan() {
    let (app, _, sets) = library().await;
    let body = json!({"query": {"embedding_set_id": sets[0], "row_index": 1}, "embedding_set_ids": sets, "k": 18});
    let (_, first) = search(&app, body.clone()).await;
    assert_eq!(first["caches_built"], 3, "built on the first search: {first}");
    let (_, again) = search(&app, body.clone()).await;
    assert_eq!(again["caches_built"], 0, "reused");
    assert_eq!(windows(&again), windows(&first));

    // Truncated: detected and rebuilt, same answer.
    let file = std::fs::OpenOptions::new().write(true).open(cache_file(&app, sets[1])).unwrap();
    let length = file.metadata().unwrap().len();
    file.set_len(length / 2).unwrap();
    drop(file);
    let (status, rebuilt) = search(&app, body.clone()).await;
    assert_eq!(status, 200, "{rebuilt}");
    assert_eq!(rebuilt["caches_built"], 1);
    assert_eq!(windows(&rebuilt), windows(&first));
    assert_eq!(rebuilt["results"], first["results"]);

    // The Parquet replaced by another version (every vector negated): the cache follows it,
    // so every window of that set now scores the opposite.
    let parquet = app.humpback.writer.read_state(|s| {
        app.data_dir.path().join(&s.embedding_sets[&humpback::domain::ids::EmbeddingSetId(sets[2])].parquet_path)
    });
    let mut rows = Vec::new();
    for batch in humpback::artifacts::embeddings_parquet::read_batches(&parquet, 100).unwrap() {
        let batch = batch.unwrap();
        for (position, row_index) in batch.row_index.iter().enumerate() {
            rows.push(humpback::artifacts::embeddings_parquet::EmbeddingRow {
                row_index: *row_index,
                start_seconds: batch.start_seconds[position],
                end_seconds: batch.end_seconds[position],
                padded: false,
                overlapped: false,
                embedding: batch.vectors[position * batch.vector_dim..(position + 1) * batch.vector_dim]
                    .iter()
                    .map(|value| -value)
                    .collect(),
            });
        }
    }
    let summary = humpback::artifacts::embeddings_parquet::inspect(&parquet).unwrap();
    let mut writer = humpback::artifacts::embeddings_parquet::EmbeddingSetWriter::create(
        &parquet,
        rows[0].embedding.len(),
        summary
            .metadata
            .into_iter()
            .filter(|(key, _)| {
                key.starts_with("humpback.") && key != "humpback.format_version" && key != "humpback.row_count"
            })
            .collect(),
    )
    .unwrap();
    writer.write_rows(&rows).unwrap();
    writer.finish_and_promote().unwrap();
    let only_third =
        json!({"query": {"embedding_set_id": sets[0], "row_index": 1}, "embedding_set_ids": [sets[2]], "k": 6});
    let (_, negated) = search(&app, only_third).await;
    assert_eq!(negated["caches_built"], 1, "{negated}");
    let score_of = |answer: &Value, row: u64| {
        answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["embedding_set_id"] == sets[2] && r["row_index"] == row)
            .map(|r| r["score"].as_f64().unwrap())
            .unwrap()
    };
    for row in 0..6 {
        assert!((score_of(&negated, row) + score_of(&first, row)).abs() < 1e-5, "row {row}: {negated} vs {first}");
    }
    let orphans = humpback::artifacts::janitor::find_orphans(&app.humpback, false).unwrap();
    assert!(orphans.orphans.is_empty(), "the vector cache is derived, not an orphan: {orphans:?}");
    app.stop().await;
}

fn run_humpback(data_dir: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_humpback"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--bind", "127.0.0.1:1"])
        .args(args)
        .env_remove("HUMPBACK_DATA_DIR")
        .env_remove("HUMPBACK_BIND")
        .output()
        .expect("run humpback")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_search_command_prints_results_through_a_server_and_on_a_stopped_data_directory() {
    let (app, _, sets) = library().await;
    // Through the server: a clip, uploaded.
    let clip_dir = tempfile::tempdir().unwrap();
    let clip = clip_dir.path().join("call.wav");
    std::fs::write(&clip, chirp_wav(1.0, 16_000, 0)).unwrap();
    let data = app.data_dir.path().to_path_buf();
    let server = app.base_url.clone();
    let clip_arg = clip.to_str().unwrap().to_string();
    let output = tokio::task::spawn_blocking(move || {
        run_humpback(&data, &["search", "--clip", &clip_arg, "--k", "2", "--server", &server, "--json"])
    })
    .await
    .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<Value> =
        String::from_utf8_lossy(&output.stdout).lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!((lines[0]["embedding_set_id"].as_u64(), lines[0]["row_index"].as_u64()), (Some(sets[0]), Some(0)));
    let data = app.stop().await;

    // On the stopped data directory: a window, as a table.
    let window = format!("{}:3", sets[1]);
    let output = run_humpback(data.path(), &["search", "--window", &window, "--k", "3", "--folder", "maui"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "a header and three results: {stdout}");
    assert!(lines[0].contains("rank") && lines[0].contains("set:row"), "{stdout}");
    assert!(lines[1].trim_start().starts_with("1 ") && lines[1].contains("maui/b.wav"), "{stdout}");
    assert!(lines[1].contains("3.00-4.00") && lines[1].ends_with(&window), "{stdout}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("12 windows in 2 sets searched"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = run_humpback(data.path(), &["search", "--window", "nonsense"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("SET:ROW"));
}
