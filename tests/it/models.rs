//! Models users bring: `models add` while the server runs (a job can use the model at once, a
//! refused file leaves nothing), ONNX processing end to end, the assumed-rate warning when
//! queueing, retiring, and a quiet runtime (no `ERROR` on stderr during a normal run).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use humpback::domain::state::JobStatus;
use serde_json::{json, Value};

use crate::helpers::spawn_app_with;
use crate::ingest_api::{fixture, upload};
use crate::processing::{post_json, settings, wait_for_job};

fn model_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/models").join(name)
}

/// Runs the CLI; (success, stdout, stderr).
async fn humpback_cli(arguments: Vec<String>) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let output = Command::new(env!("CARGO_BIN_EXE_humpback")).args(&arguments).output().expect("runs the cli");
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

fn add_arguments(server: &str, file: &Path, extra: &[&str]) -> Vec<String> {
    let mut arguments: Vec<String> =
        vec!["models".into(), "add".into(), "--server".into(), server.into(), file.display().to_string()];
    arguments.extend(extra.iter().map(|argument| argument.to_string()));
    arguments
}

fn model_names(listing: &Value, key: &str) -> Vec<String> {
    listing[key].as_array().unwrap().iter().map(|model| model["name"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_model_added_while_the_server_runs_is_used_at_once_and_a_refused_file_leaves_nothing() {
    let measuring = humpback::app::Settings { measure_batch_sizes: true, ..settings(1) };
    let app = spawn_app_with(tempfile::tempdir().unwrap(), measuring).await;
    let models_directory = app.data_dir.path().join("models");
    let files_before: Vec<_> = std::fs::read_dir(&models_directory).unwrap().collect();
    assert!(files_before.is_empty());

    // A file humpback cannot run is refused with the reason, and nothing is stored or registered.
    let (ok, _, stderr) =
        humpback_cli(add_arguments(&app.base_url, &model_fixture("flex_select_op.tflite"), &[])).await;
    assert!(!ok);
    assert!(stderr.contains("FlexMatrixInverse") && stderr.contains("ONNX"), "{stderr}");
    let (_, listing) = crate::api_get(&app.url("/api/models")).await;
    assert!(!model_names(&listing, "models").contains(&"flex_select_op".to_string()), "{listing}");
    assert_eq!(std::fs::read_dir(&models_directory).unwrap().count(), 0, "nothing left on disk");

    // An ONNX model (DFT front end, dynamic batch, declared 16 kHz) added through the CLI...
    let (ok, stdout, stderr) =
        humpback_cli(add_arguments(&app.base_url, &model_fixture("waveform_dft.onnx"), &["--name", "whale-dft"])).await;
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("sample rate: 16000 Hz (declared by the file)"), "{stdout}");
    let (_, listing) = crate::api_get(&app.url("/api/models")).await;
    let added = listing["models"].as_array().unwrap().iter().find(|model| model["name"] == "whale-dft").unwrap();
    assert_eq!(added["format"], "onnx");
    assert_eq!(added["facts"]["sample_rate"], "declared");
    // Its batch size was measured when it was added: the fastest size within the memory budget.
    assert_eq!(added["batch_size_source"], "measured", "{added}");
    let table = added["batch_measurements"].as_array().unwrap();
    assert!(!table.is_empty(), "{added}");
    let fitting_speeds = table
        .iter()
        .filter(|row| row["memory_bytes"].as_u64().unwrap() <= added["model_memory_bytes"].as_u64().unwrap())
        .map(|row| (row["batch_size"].as_u64().unwrap(), row["windows_per_second"].as_f64().unwrap()));
    let fastest = fitting_speeds.max_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
    assert_eq!(added["batch_size"].as_u64(), Some(fastest.0), "{added}");

    // ... is used by a job at once, on a real recording, producing an embedding set.
    let (status, audio) =
        upload(&app.base_url, "whale.wav", std::fs::read(fixture("wav_pcm16_mono_16k.wav")).unwrap(), None).await;
    assert_eq!(status, 201, "{audio}");
    let (status, job) =
        post_json(app.url("/api/processing-jobs"), json!({"audio_file_id": audio["id"], "model": "whale-dft"})).await;
    assert_eq!(status, 201, "{job}");
    assert!(job.get("model_warning").is_none(), "a declared rate needs no warning: {job}");
    let job_id = job["id"].as_u64().unwrap();
    let finished = wait_for_job(&app, job_id, &[JobStatus::Complete, JobStatus::Failed]).await;
    let (_, job) = crate::api_get(&app.url(&format!("/api/processing-jobs/{job_id}"))).await;
    assert_eq!(finished, JobStatus::Complete, "{job}");
    let set_id = job["embedding_set_id"].as_u64().expect("an embedding set");
    let (_, set) = crate::api_get(&app.url(&format!("/api/embedding-sets/{set_id}"))).await;
    assert_eq!(set["vector_dim"], 64, "{set}");
    let duration = audio["duration_seconds"].as_f64().unwrap();
    assert_eq!(set["row_count"], duration.ceil() as u64, "1 s windows: {set}");
    let parquet = app.data_dir.path().join(set["parquet_path"].as_str().unwrap());
    for batch in humpback::artifacts::embeddings_parquet::read_batches(&parquet, 100).unwrap() {
        assert!(batch.unwrap().vectors.iter().all(|value| value.is_finite()));
    }

    // A model without a declared rate: queueing with it answers with a warning.
    let (ok, stdout, stderr) =
        humpback_cli(add_arguments(&app.base_url, &model_fixture("logmel_dynamic.onnx"), &["--name", "plain-logmel"]))
            .await;
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("WARNING: sample rate 32000 Hz is assumed"), "{stdout}");
    let (status, queued) =
        post_json(app.url("/api/processing-jobs"), json!({"audio_file_id": audio["id"], "model": "plain-logmel"}))
            .await;
    assert_eq!(status, 201, "{queued}");
    assert!(queued["model_warning"].as_str().unwrap_or_default().contains("32000 Hz is assumed"), "{queued}");
    let page = reqwest_page(&app.url("/models")).await;
    assert!(page.contains("Warning: sample rate 32000 Hz is assumed"), "the models page warns");

    // Retired: hidden from new jobs, its embedding set stays.
    let (status, retired) = post_json(app.url("/api/models/whale-dft/retire"), json!({})).await;
    assert_eq!(status, 200, "{retired}");
    let (status, refused) =
        post_json(app.url("/api/processing-jobs"), json!({"audio_file_id": audio["id"], "model": "whale-dft"})).await;
    assert_eq!(status, 422, "{refused}");
    assert!(refused["error"].as_str().unwrap().contains("retired"), "{refused}");
    let (status, _) = crate::api_get(&app.url(&format!("/api/embedding-sets/{set_id}"))).await;
    assert_eq!(status, 200);
    let (_, listing) = crate::api_get(&app.url("/api/models")).await;
    assert_eq!(model_names(&listing, "retired"), ["whale-dft"]);
    app.stop().await;
}

async fn reqwest_page(url: &str) -> String {
    let url = url.to_string();
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        agent.get(&url).call().expect("request").body_mut().read_to_string().unwrap()
    })
    .await
    .unwrap()
}

/// The server as a child process over a data directory whose models directory holds the
/// dynamic-batch TFLite fixture with an STFT front end (the model whose shape-discovery run used
/// to print `ERROR: Custom allocation is too small`) and its ONNX twin; a recording is processed
/// with each, and the server's stderr must hold no `ERROR`.
#[test]
fn a_normal_processing_run_with_dynamic_batch_models_writes_no_error_to_stderr() {
    let data_dir = tempfile::tempdir().unwrap();
    let models = data_dir.path().join("models");
    std::fs::create_dir_all(&models).unwrap();
    for file in ["waveform_stft.tflite", "waveform_stft.toml", "waveform_dft.onnx"] {
        std::fs::copy(model_fixture(file), models.join(file)).unwrap();
    }
    let stderr_path = data_dir.path().join("server.stderr");
    let mut server = Command::new(env!("CARGO_BIN_EXE_humpback"))
        .args(["--data-dir", data_dir.path().to_str().unwrap(), "--bind", "127.0.0.1:0", "serve", "--workers", "1"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let base = line.trim().strip_prefix("humpback listening on ").expect("the listening line").to_string();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let outcome = runtime.block_on(async {
        let (status, audio) =
            upload(&base, "whale.wav", std::fs::read(fixture("wav_pcm16_mono_16k.wav")).unwrap(), None).await;
        assert_eq!(status, 201, "{audio}");
        let mut jobs = Vec::new();
        for model in ["waveform_stft", "waveform_dft"] {
            let (status, job) =
                post_json(format!("{base}/api/processing-jobs"), json!({"audio_file_id": audio["id"], "model": model}))
                    .await;
            assert_eq!(status, 201, "{job}");
            jobs.push(job["id"].as_u64().unwrap());
        }
        // Follow the server's event stream (no polling) until both jobs have finished.
        let stream_url = format!("{base}/api/events/stream?after=0");
        tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder().build().into();
            let mut response = agent.get(&stream_url).call().expect("event stream");
            let reader = BufReader::new(response.body_mut().as_reader());
            let mut finished = Vec::new();
            for line in reader.lines() {
                let line = line.expect("stream line");
                for (kind, outcome) in [("ProcessingJobCompleted", "complete"), ("ProcessingJobFailed", "failed")] {
                    if line.starts_with("data:") && line.contains(kind) {
                        finished.push(format!("{outcome}: {line}"));
                    }
                }
                if finished.len() == jobs.len() {
                    return finished;
                }
            }
            finished
        })
        .await
        .unwrap()
    });
    server.kill().unwrap();
    server.wait().unwrap();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    assert_eq!(outcome.len(), 2, "{outcome:?}\n{stderr}");
    assert!(outcome.iter().all(|line| line.starts_with("complete")), "{outcome:?}\n{stderr}");
    let error_lines: Vec<&str> = stderr.lines().filter(|line| line.contains("ERROR")).collect();
    assert!(error_lines.is_empty(), "the runtime printed errors during a normal run:\n{}", error_lines.join("\n"));
}

/// A multipart form with a `name` field and a `file` field.
fn model_form(file_name: &str, bytes: &[u8], name: &str) -> (String, Vec<u8>) {
    let boundary = "humpback-models-test-boundary";
    let mut body = format!(
        "--{boundary}\r\ncontent-disposition: form-data; name=\"name\"\r\n\r\n{name}\r\n--{boundary}\r\n\
         content-disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\n\
         content-type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_models_page_form_adds_a_model_refuses_a_broken_one_and_retires() {
    use axum::body::Body;
    use axum::http::{header, Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    let app = crate::helpers::spawn_app().await;
    let (_stop, stopping) = tokio::sync::watch::channel(false);
    let router = humpback::http::routes::router(app.humpback.clone(), stopping);
    let send = |request: Request<Body>| {
        let router = router.clone();
        async move {
            let response = router.oneshot(request).await.unwrap();
            let status = response.status();
            let location = response.headers().get(header::LOCATION).map(|value| value.to_str().unwrap().to_string());
            let body = response.into_body().collect().await.unwrap().to_bytes();
            (status, location.unwrap_or_default(), String::from_utf8_lossy(&body).into_owned())
        }
    };
    let post = |uri: &str, (content_type, body): (String, Vec<u8>)| {
        Request::post(uri).header(header::CONTENT_TYPE, content_type).body(Body::from(body)).unwrap()
    };
    let bytes = std::fs::read(model_fixture("logmel_fixed2.onnx")).unwrap();
    let (status, location, _) =
        send(post("/models/add", model_form("broken.onnx", &bytes[..bytes.len() / 3], "broken"))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(location.contains("notice_kind=error") && location.contains("not%20an%20onnx%20model"), "{location}");
    assert_eq!(std::fs::read_dir(app.data_dir.path().join("models")).unwrap().count(), 0);

    let (status, location, _) = send(post("/models/add", model_form("logmel_fixed2.onnx", &bytes, "fixed-two"))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(location.contains("fixed-two%20added") && !location.contains("notice_kind=error"), "{location}");
    let (_, _, page) = send(Request::get("/models").body(Body::empty()).unwrap()).await;
    assert!(page.contains("fixed-two") && page.contains("declared by the file"), "{page}");
    assert!(page.contains("action=\"/models/fixed-two/retire\""));

    let (status, location, _) = send(post("/models/fixed-two/retire", (String::from("text/plain"), Vec::new()))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(location.contains("retired"), "{location}");
    let (_, _, page) = send(Request::get("/models").body(Body::empty()).unwrap()).await;
    assert!(page.contains("Retired models"), "{page}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_list_reads_the_data_directorys_models_and_inspect_reads_onnx() {
    let data_dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(data_dir.path().join("models")).unwrap();
    std::fs::copy(model_fixture("logmel_dynamic.onnx"), data_dir.path().join("models/plain.onnx")).unwrap();
    let arguments = vec![
        "--data-dir".to_string(),
        data_dir.path().display().to_string(),
        "models".into(),
        "list".into(),
        "--json".into(),
    ];
    let (ok, stdout, stderr) = humpback_cli(arguments).await;
    assert!(ok, "{stderr}");
    let listing: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(listing["models_directory"], data_dir.path().join("models").display().to_string());
    let plain = listing["models"].as_array().unwrap().iter().find(|model| model["name"] == "plain").expect("plain");
    assert_eq!(plain["facts"]["sample_rate"], "assumed");
    assert!(plain["warnings"][0].as_str().unwrap().contains("assumed"), "{plain}");

    let inspect = vec!["models".into(), "inspect".into(), model_fixture("waveform_dft.onnx").display().to_string()];
    let (ok, stdout, stderr) = humpback_cli(inspect).await;
    assert!(ok, "{stderr}");
    assert!(stdout.contains("opset 18") && stdout.contains("sample_rate = \"16000\""), "{stdout}");
    assert!(stdout.contains("waveform [-1, 16000] float32") && stdout.contains("runs here: yes"), "{stdout}");
}
