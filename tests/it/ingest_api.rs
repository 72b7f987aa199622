//! Uploads and folder imports: hashing, deduplication, probing, limits and safe storage.

use std::path::{Path, PathBuf};

use humpback::app::Settings;
use humpback::log::EventLog;
use serde_json::Value;

use crate::helpers::{spawn_app, spawn_app_with};

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join("audio").join(name)
}

/// A multipart body with an optional `folder` field and one `file` field.
pub fn multipart_body(filename: &str, bytes: &[u8], folder: Option<&str>) -> (String, Vec<u8>) {
    let boundary = "humpback-test-boundary-7d1f";
    let mut body = Vec::new();
    if let Some(folder) = folder {
        body.extend_from_slice(
            format!("--{boundary}\r\ncontent-disposition: form-data; name=\"folder\"\r\n\r\n{folder}\r\n").as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
             content-type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

pub async fn upload(base_url: &str, filename: &str, bytes: Vec<u8>, folder: Option<&str>) -> (u16, Value) {
    let (content_type, body) = multipart_body(filename, &bytes, folder);
    let url = format!("{base_url}/api/audio");
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut response = agent.post(&url).header("content-type", &content_type).send(&body[..]).expect("upload");
        let status = response.status().as_u16();
        (status, response.body_mut().read_json::<Value>().unwrap_or(Value::Null))
    })
    .await
    .unwrap()
}

fn tmp_is_empty(data_dir: &Path) -> bool {
    std::fs::read_dir(data_dir.join("tmp")).map(|mut entries| entries.next().is_none()).unwrap_or(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_is_probed_stored_by_id_and_the_same_bytes_again_return_the_same_file() {
    let app = spawn_app().await;
    let bytes = std::fs::read(fixture("wav_pcm16_stereo_11k.wav")).unwrap();
    let (status, created) = upload(&app.base_url, "../../etc/passwd.wav", bytes.clone(), Some("maui/2024-07")).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["id"], 1);
    assert_eq!(created["filename"], "../../etc/passwd.wav", "the name is kept as metadata only");
    assert_eq!(created["folder"], "maui/2024-07");
    assert_eq!(created["channels"], 2);
    assert_eq!(created["sample_rate"], 11_025);
    assert!(created["duration_seconds"].as_f64().unwrap() > 1.0);
    let stored = app.data_dir.path().join("audio/raw/1/original.wav");
    assert_eq!(std::fs::read(&stored).unwrap(), bytes);
    assert!(tmp_is_empty(app.data_dir.path()));
    let head = app.humpback.log.head();

    let (status, again) = upload(&app.base_url, "another-name.wav", bytes, None).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], 1);
    assert_eq!(app.humpback.log.head(), head, "a duplicate records nothing");
    assert!(tmp_is_empty(app.data_dir.path()));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mp3_and_flac_uploads_are_stored_with_their_own_extension() {
    let app = spawn_app().await;
    let (status, mp3) =
        upload(&app.base_url, "a.wav", std::fs::read(fixture("mp3_cbr_stereo_44k.mp3")).unwrap(), None).await;
    assert_eq!(status, 201, "{mp3}");
    assert_eq!(mp3["codec"], "mp3");
    assert!(mp3["stored_path"].as_str().unwrap().ends_with("original.mp3"), "chosen from the content, not the name");
    let (status, flac) =
        upload(&app.base_url, "b", std::fs::read(fixture("flac24_mono_22k.flac")).unwrap(), None).await;
    assert_eq!(status, 201, "{flac}");
    assert!(flac["stored_path"].as_str().unwrap().ends_with("original.flac"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_is_not_audio_is_rejected_with_422_and_leaves_nothing_behind() {
    let app = spawn_app().await;
    for (name, bytes) in [
        ("notes.wav", b"these are field notes, not a recording".to_vec()),
        ("empty.wav", Vec::new()),
        ("corrupt.wav", std::fs::read(fixture("corrupt_header.wav")).unwrap()),
    ] {
        let (status, body) = upload(&app.base_url, name, bytes, None).await;
        assert_eq!(status, 422, "{name}: {body}");
        let message = body["error"].as_str().unwrap();
        assert!(message.contains(name), "{name}: the message names the file: {message}");
        assert!(!message.contains("/tmp/") && !message.contains("upload-"), "no internal paths: {message}");
    }
    assert_eq!(app.humpback.log.head().0, app.humpback.models.models().len() as u64, "nothing but the models");
    assert!(tmp_is_empty(app.data_dir.path()));
    let (status, health) = crate::api_get(&app.url("/health")).await;
    assert_eq!(status, 200, "the server keeps serving: {health}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_over_the_size_limit_gets_413_and_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(dir, Settings { max_upload_bytes: 4096, ..Settings::default() }).await;
    let bytes = std::fs::read(fixture("wav_pcm16_mono_16k.wav")).unwrap();
    assert!(bytes.len() > 4096);
    let (status, body) = upload(&app.base_url, "big.wav", bytes, None).await;
    assert_eq!(status, 413, "{body}");
    assert!(body["error"].as_str().unwrap().contains("limit"), "{body}");
    assert!(tmp_is_empty(app.data_dir.path()));
    assert_eq!(app.humpback.log.head().0, app.humpback.models.models().len() as u64, "nothing but the models");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_far_over_the_limit_is_cut_off_leaves_nothing_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_with(dir, Settings { max_upload_bytes: 4096, ..Settings::default() }).await;
    // Far beyond what the server reads of a refused upload: the sender may see the 413 or a
    // closed connection, but never a stored file.
    let (content_type, body) = multipart_body("huge.wav", &vec![0u8; 24 * 1024 * 1024], None);
    let url = app.url("/api/audio");
    let answer = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        agent
            .post(&url)
            .header("content-type", &content_type)
            .send(&body[..])
            .map(|response| response.status().as_u16())
    })
    .await
    .unwrap();
    assert!(matches!(answer, Ok(413) | Err(_)), "{answer:?}");
    assert!(tmp_is_empty(app.data_dir.path()));
    assert_eq!(app.humpback.log.head().0, app.humpback.models.models().len() as u64, "nothing but the models");
    let (status, _) = crate::api_get(&app.url("/health")).await;
    assert_eq!(status, 200, "the server still answers");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_without_a_file_field_says_what_is_missing() {
    let app = spawn_app().await;
    let url = app.url("/api/audio");
    let (status, body) = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let boundary = "b0";
        let body =
            format!("--{boundary}\r\ncontent-disposition: form-data; name=\"other\"\r\n\r\nx\r\n--{boundary}--\r\n");
        let mut response = agent
            .post(&url)
            .header("content-type", &format!("multipart/form-data; boundary={boundary}"))
            .send(body)
            .unwrap();
        (response.status().as_u16(), response.body_mut().read_json::<Value>().unwrap())
    })
    .await
    .unwrap();
    assert_eq!(status, 422);
    assert!(body["error"].as_str().unwrap().contains("\"file\""), "{body}");
    app.stop().await;
}

fn make_import_tree() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    let recordings = root.path().join("recordings");
    std::fs::create_dir_all(recordings.join("site-a")).unwrap();
    std::fs::create_dir_all(recordings.join("site-b/2024-07")).unwrap();
    std::fs::copy(fixture("wav_pcm16_mono_16k.wav"), recordings.join("site-a/dawn.wav")).unwrap();
    std::fs::copy(fixture("flac16_mono_16k.flac"), recordings.join("site-b/2024-07/dusk.FLAC")).unwrap();
    std::fs::copy(fixture("mp3_vbr_id3_mono_22k.mp3"), recordings.join("site-b/song.mp3")).unwrap();
    std::fs::write(recordings.join("site-a/broken.mp3"), b"ID3 but nothing else").unwrap();
    std::fs::write(recordings.join("site-a/notes.txt"), b"not audio, not imported").unwrap();
    root
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_import_adds_skips_duplicates_and_reports_rejections_with_folders_kept() {
    let tree = make_import_tree();
    let settings = Settings {
        import_roots: vec![std::fs::canonicalize(tree.path()).unwrap()],
        processing_workers: 0,
        clustering_workers: 0,
        ..Settings::default()
    };
    let app = spawn_app_with(tempfile::tempdir().unwrap(), settings).await;
    let path = tree.path().join("recordings");
    let url = app.url("/api/audio/import");
    let post = move |path: PathBuf| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
            let mut response = agent.post(&url).send_json(serde_json::json!({ "path": path })).unwrap();
            (response.status().as_u16(), response.body_mut().read_json::<Value>().unwrap())
        })
    };
    let (status, summary) = post(path.clone()).await.unwrap();
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["added"].as_array().unwrap().len(), 3, "{summary}");
    assert_eq!(summary["rejected"].as_array().unwrap().len(), 1);
    assert_eq!(summary["rejected"][0]["path"], "site-a/broken.mp3");
    assert!(summary["rejected"][0]["reason"].as_str().unwrap().contains("broken.mp3"));
    let (_, listing) = crate::api_get(&app.url("/api/audio?sort=name")).await;
    let folders: Vec<(&str, &str)> = listing["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|file| (file["filename"].as_str().unwrap(), file["folder"].as_str().unwrap()))
        .collect();
    assert_eq!(
        folders,
        vec![
            ("dawn.wav", "recordings/site-a"),
            ("dusk.FLAC", "recordings/site-b/2024-07"),
            ("song.mp3", "recordings/site-b")
        ]
    );
    let (_, again) = post(path).await.unwrap();
    assert_eq!(again["added"].as_array().unwrap().len(), 0);
    assert_eq!(again["duplicates"].as_array().unwrap().len(), 3);
    let (status, missing) = post(tree.path().join("no/such/folder")).await.unwrap();
    assert_eq!(status, 422, "{missing}");
    app.stop().await;
}

#[test]
fn the_import_command_imports_into_a_stopped_data_directory_with_a_summary() {
    let tree = make_import_tree();
    let data = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_humpback"))
        .args(["--data-dir", data.path().to_str().unwrap(), "--bind", "127.0.0.1:1", "import"])
        .arg(tree.path().join("recordings"))
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("3 added, 0 already there, 1 rejected"), "{stdout}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("4/4"), "a progress line per file: {stderr}");
    let log = humpback::log::SledEventLog::open(&data.path().join("events")).unwrap();
    assert_eq!(log.head().0, 1 + 3, "the built-in model and three files");
}

#[test]
fn orphan_files_are_reported_and_removed_on_request_while_referenced_ones_stay() {
    let data = tempfile::tempdir().unwrap();
    {
        let humpback = humpback::app::Humpback::open(humpback::config::DataDir::new(data.path())).unwrap();
        let source = std::fs::File::open(fixture("wav_pcm16_mono_16k.wav")).unwrap();
        let staged = humpback::ingest::stage_copy(&humpback.data_dir.tmp_dir(), source, u64::MAX).unwrap();
        humpback::ingest::register_staged(&humpback, staged, "kept.wav", "").unwrap();
    }
    std::fs::create_dir_all(data.path().join("audio/raw/99")).unwrap();
    std::fs::write(data.path().join("audio/raw/99/original.wav"), b"left by a crash").unwrap();
    std::fs::create_dir_all(data.path().join("embeddings/m/1")).unwrap();
    std::fs::write(data.path().join("embeddings/m/1/abc.parquet"), b"unrecorded").unwrap();
    let run = |args: &[&str]| {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_humpback"))
            .args(["--data-dir", data.path().to_str().unwrap(), "artifacts", "orphans"])
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice::<Value>(&output.stdout).unwrap()
    };
    let report = run(&["--json"]);
    assert_eq!(report["orphans"], serde_json::json!(["audio/raw/99/original.wav", "embeddings/m/1/abc.parquet"]));
    assert!(data.path().join("audio/raw/99/original.wav").exists(), "listing removes nothing");
    let removed = run(&["--remove", "--json"]);
    assert_eq!(removed["orphans"].as_array().unwrap().len(), 2);
    assert!(!data.path().join("audio/raw/99/original.wav").exists());
    assert!(data.path().join("audio/raw/1/original.wav").exists(), "referenced files stay");
    assert_eq!(run(&["--json"])["orphans"], serde_json::json!([]));
}
