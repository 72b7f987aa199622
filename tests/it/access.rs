//! Access and input safety, tried the way a foreign web page, a DNS-rebinding page or an unlucky
//! client would: raw HTTP requests over a socket, so every header is exactly what is sent.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;

use humpback::app::Settings;
use humpback::http::access::{AccessSettings, AccessToken};
use humpback::log::EventLog;
use serde_json::Value;

use crate::helpers::{register, spawn_app_with, TestApp};
use crate::ingest_api::{fixture, multipart_body};

/// What came back over the socket.
struct RawAnswer {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl RawAnswer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim().to_string())
        })
    }
}

/// One request, `Connection: close`, its headers given exactly (a `Host` must be among them
/// unless the test means to leave it out); the whole answer read back (chunked bodies joined).
async fn raw(
    address: SocketAddr,
    method: &str,
    path: &str,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
) -> RawAnswer {
    let method = method.to_string();
    let path = path.to_string();
    tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(address).expect("connect");
        let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
        for (name, value) in &headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() || method != "GET" {
            request.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).expect("send the head");
        // The body may be refused before it is all sent; what matters is the answer.
        let _ = stream.write_all(&body);
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).expect("read the answer");
        let split = answer.windows(4).position(|window| window == b"\r\n\r\n").expect("an HTTP answer");
        let head = String::from_utf8_lossy(&answer[..split]).into_owned();
        let mut body = answer[split + 4..].to_vec();
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
            body = dechunk(&body);
        }
        let status = head.split_whitespace().nth(1).and_then(|code| code.parse().ok()).expect("a status code");
        RawAnswer { status, head, body }
    })
    .await
    .expect("request task")
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = body.windows(2).position(|window| window == b"\r\n") else { return out };
        let size = usize::from_str_radix(String::from_utf8_lossy(&body[..line_end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&body[line_end + 2..line_end + 2 + size]);
        body = &body[line_end + 2 + size + 2..];
    }
}

fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect()
}

fn host(app: &TestApp) -> String {
    app.address.to_string()
}

fn own_origin(app: &TestApp) -> String {
    format!("http://{}", app.address)
}

async fn app_with(settings: Settings) -> TestApp {
    spawn_app_with(tempfile::tempdir().unwrap(), Settings { processing_workers: 0, clustering_workers: 0, ..settings })
        .await
}

const TOKEN: &str = "correct-horse-battery-staple";

fn with_token(open_reads: bool) -> Settings {
    Settings {
        access: AccessSettings { token: AccessToken::new(TOKEN), public_hosts: Vec::new(), open_reads },
        ..Settings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_form_posts_and_uploads_are_refused_and_change_nothing() {
    let import_root = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("wav_pcm16_mono_16k.wav"), import_root.path().join("dawn.wav")).unwrap();
    let app = app_with(Settings {
        import_roots: vec![std::fs::canonicalize(import_root.path()).unwrap()],
        ..Settings::default()
    })
    .await;
    app.humpback.execute(register(1)).await.expect("a recording");
    let audio_id = humpback::domain::ids::AudioFileId(1);
    let head_before = app.humpback.log.head();
    let form = |text: String| (text.into_bytes(), "application/x-www-form-urlencoded".to_string());
    let (upload_type, upload_body) =
        multipart_body("hostile.wav", &std::fs::read(fixture("wav_pcm16_stereo_11k.wav")).unwrap(), None);
    // (path, what it tries, (body, content type))
    type Attempt<'a> = (&'a str, String, (Vec<u8>, String));
    let attempts: Vec<Attempt> = vec![
        (
            "/audio/import",
            "import a folder".into(),
            form(format!("path={}", humpback::views::url_encode(&import_root.path().display().to_string()))),
        ),
        ("/processing/1/cancel", "cancel a job".into(), form(String::new())),
        (
            "/audio/1/metadata",
            "edit metadata".into(),
            form("tag_data=%7B%22x%22%3A1%7D&visual_observations=&group_composition=&prey_density_proxy=".into()),
        ),
        ("/api/audio", "upload".into(), (upload_body.clone(), upload_type.clone())),
        ("/audio/upload", "upload by form".into(), (upload_body, upload_type)),
    ];
    for (path, what, (body, content_type)) in &attempts {
        for (header, value) in [("Origin", "https://evil.example"), ("Referer", "https://evil.example/cats.html")] {
            let sent = headers(&[("Host", &host(&app)), (header, value), ("Content-Type", content_type)]);
            let answer = raw(app.address, "POST", path, sent, body.clone()).await;
            assert_eq!(answer.status, 403, "{what} with a foreign {header}: {}", answer.text());
            assert!(answer.json()["error"].as_str().unwrap().contains("cross-site"), "{}", answer.text());
        }
    }
    assert_eq!(app.humpback.log.head(), head_before, "nothing was recorded");
    // The same form from the server's own page goes through.
    let sent = headers(&[
        ("Host", &host(&app)),
        ("Origin", &own_origin(&app)),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ]);
    let edit = b"tag_data=%7B%22x%22%3A1%7D&visual_observations=&group_composition=&prey_density_proxy=".to_vec();
    let answer = raw(app.address, "POST", &format!("/audio/{}/metadata", audio_id.0), sent, edit).await;
    assert!(answer.status == 303 || answer.status == 200, "{} {}", answer.status, answer.text());
    assert!(app.humpback.log.head() > head_before, "the same-origin edit was recorded");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_host_name_reads_nothing_and_the_bound_address_and_localhost_work() {
    let app = app_with(Settings::default()).await;
    for foreign in ["evil.example", &format!("evil.example:{}", app.address.port())] {
        let answer = raw(app.address, "GET", "/api/audio", headers(&[("Host", foreign)]), Vec::new()).await;
        assert_eq!(answer.status, 421, "{foreign}: {}", answer.text());
        assert!(answer.json()["error"].as_str().unwrap().contains("--public-host"));
    }
    let localhost = format!("localhost:{}", app.address.port());
    for known in [host(&app), localhost] {
        let answer = raw(app.address, "GET", "/api/audio", headers(&[("Host", &known)]), Vec::new()).await;
        assert_eq!(answer.status, 200, "{known}: {}", answer.text());
    }
    app.stop().await;

    let public = app_with(Settings {
        access: AccessSettings { public_hosts: vec!["whales.lab.example".into()], ..AccessSettings::default() },
        ..Settings::default()
    })
    .await;
    let answer = raw(public.address, "GET", "/health", headers(&[("Host", "whales.lab.example")]), Vec::new()).await;
    assert_eq!(answer.status, 200, "a --public-host name is served");
    public.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_token_writes_and_reads_need_it_and_a_browser_logs_in_once() {
    let app = app_with(with_token(false)).await;
    let host = host(&app);
    let json = |extra: &[(&str, &str)]| {
        let mut sent = headers(&[("Host", &host), ("Content-Type", "application/json")]);
        sent.extend(headers(extra));
        sent
    };
    let job = br#"{"audio_file_id": 1}"#.to_vec();
    let refused = raw(app.address, "POST", "/api/processing-jobs", json(&[]), job.clone()).await;
    assert_eq!(refused.status, 401, "{}", refused.text());
    assert_eq!(refused.header("www-authenticate").as_deref(), Some("Bearer"));
    let wrong =
        raw(app.address, "POST", "/api/processing-jobs", json(&[("Authorization", "Bearer nope")]), job.clone()).await;
    assert_eq!(wrong.status, 401);
    let bearer = format!("Bearer {TOKEN}");
    let accepted = raw(app.address, "POST", "/api/processing-jobs", json(&[("Authorization", &bearer)]), job).await;
    assert_eq!(accepted.status, 404, "past the token, the request itself is judged: {}", accepted.text());

    let read = raw(app.address, "GET", "/api/audio", headers(&[("Host", &host)]), Vec::new()).await;
    assert_eq!(read.status, 401, "reads need the token unless left open");
    let stream = raw(app.address, "GET", "/api/events/stream", headers(&[("Host", &host)]), Vec::new()).await;
    assert_eq!(stream.status, 401);
    let health = raw(app.address, "GET", "/health", headers(&[("Host", &host)]), Vec::new()).await;
    assert_eq!(health.status, 200, "/health never needs the token");

    // A browser is sent to the login form, and a correct token gives it a strict session cookie.
    let page =
        raw(app.address, "GET", "/audio?sort=name", headers(&[("Host", &host), ("Accept", "text/html")]), vec![]).await;
    assert_eq!(page.status, 303);
    assert_eq!(page.header("location").as_deref(), Some("/login?next=%2Faudio%3Fsort%3Dname"));
    let login_headers = headers(&[
        ("Host", &host),
        ("Origin", &own_origin(&app)),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ]);
    let bad_login =
        raw(app.address, "POST", "/login", login_headers.clone(), b"token=guess&next=%2Faudio".to_vec()).await;
    assert_eq!(bad_login.status, 401);
    assert!(bad_login.header("set-cookie").is_none());
    let form = format!("token={TOKEN}&next=%2Faudio");
    let login = raw(app.address, "POST", "/login", login_headers, form.into_bytes()).await;
    assert_eq!(login.status, 303, "{}", login.text());
    assert_eq!(login.header("location").as_deref(), Some("/audio"));
    let cookie = login.header("set-cookie").expect("a session cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let session = cookie.split(';').next().unwrap().to_string();
    let page = raw(app.address, "GET", "/audio", headers(&[("Host", &host), ("Cookie", &session)]), vec![]).await;
    assert_eq!(page.status, 200);
    let forged =
        raw(app.address, "GET", "/audio", headers(&[("Host", &host), ("Cookie", "humpback_session=00")]), vec![]).await;
    assert_eq!(forged.status, 401);
    app.stop().await;

    let open = app_with(with_token(true)).await;
    let host = open.address.to_string();
    let read = raw(open.address, "GET", "/api/audio", headers(&[("Host", &host)]), Vec::new()).await;
    assert_eq!(read.status, 200, "--open-reads lets reads through");
    let write = raw(
        open.address,
        "POST",
        "/api/processing-jobs",
        headers(&[("Host", &host), ("Content-Type", "application/json")]),
        br#"{"audio_file_id": 1}"#.to_vec(),
    )
    .await;
    assert_eq!(write.status, 401, "writes still need the token");
    open.stop().await;
}

#[test]
fn a_server_reachable_from_other_machines_will_not_start_without_a_token() {
    let data = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_humpback"))
        .args(["--data-dir", data.path().to_str().unwrap(), "--bind", "0.0.0.0:0", "serve"])
        .env_remove("HUMPBACK_TOKEN")
        .output()
        .expect("run humpback serve");
    assert!(!output.status.success(), "it must refuse to start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--token") && stderr.contains("--insecure-no-auth"), "{stderr}");
    assert!(!data.path().join("events").exists(), "it refused before opening the data directory");
}

#[test]
fn tokens_never_reach_the_log_output() {
    let data = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_humpback"))
        .args(["--data-dir", data.path().to_str().unwrap(), "--bind", "127.0.0.1:1", "events", "list"])
        .env("HUMPBACK_TOKEN", "do-not-print-me-7731")
        .env("RUST_LOG", "trace")
        .output()
        .expect("run humpback");
    let all = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(!all.contains("do-not-print-me-7731"), "{all}");
}

async fn post_import(app: &TestApp, path: &Path) -> RawAnswer {
    let body = serde_json::to_vec(&serde_json::json!({ "path": path })).unwrap();
    raw(
        app.address,
        "POST",
        "/api/audio/import",
        headers(&[("Host", &host(app)), ("Content-Type", "application/json")]),
        body,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_by_path_is_off_by_default_and_limited_to_its_roots() {
    let off = app_with(Settings::default()).await;
    let answer = post_import(&off, Path::new("/proc")).await;
    assert_eq!(answer.status, 403, "{}", answer.text());
    assert!(answer.json()["error"].as_str().unwrap().contains("--import-root"));
    off.stop().await;

    let tree = tempfile::tempdir().unwrap();
    let root = tree.path().join("archive");
    std::fs::create_dir_all(root.join("site-a")).unwrap();
    std::fs::copy(fixture("wav_pcm16_mono_16k.wav"), root.join("site-a/dawn.wav")).unwrap();
    let outside = tree.path().join("private");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::copy(fixture("flac16_mono_16k.flac"), outside.join("secret.flac")).unwrap();
    // A loop back up the tree, and a link that leads out of the root.
    std::os::unix::fs::symlink(&root, root.join("site-a/again")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
    let app =
        app_with(Settings { import_roots: vec![std::fs::canonicalize(&root).unwrap()], ..Settings::default() }).await;
    for (path, status) in [
        (Path::new("/proc").to_path_buf(), 403),
        (outside.clone(), 403),
        (root.join("../private"), 403),
        (root.join("escape"), 403),
        (root.join("no-such-folder"), 422),
    ] {
        let answer = post_import(&app, &path).await;
        assert_eq!(answer.status, status, "{}: {}", path.display(), answer.text());
    }
    let answer = post_import(&app, &root).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let summary = answer.json();
    assert_eq!(summary["added"].as_array().unwrap().len(), 1, "{summary}");
    assert_eq!(summary["added"][0]["path"], "site-a/dawn.wav");
    let skipped: Vec<(&str, &str)> = summary["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| (entry["path"].as_str().unwrap(), entry["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(skipped.len(), 2, "{summary}");
    assert_eq!(skipped[0].0, "escape");
    assert!(skipped[0].1.contains("outside the import roots"), "{skipped:?}");
    assert_eq!(skipped[1].0, "site-a/again");
    assert!(skipped[1].1.contains("loop"), "{skipped:?}");
    app.stop().await;
}

#[test]
fn an_unreadable_folder_is_skipped_and_listed_and_the_rest_is_found() {
    let tree = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tree.path().join("open")).unwrap();
    std::fs::create_dir_all(tree.path().join("locked")).unwrap();
    std::fs::copy(fixture("wav_pcm16_mono_16k.wav"), tree.path().join("open/a.wav")).unwrap();
    std::fs::copy(fixture("wav_pcm16_mono_16k.wav"), tree.path().join("locked/b.wav")).unwrap();
    // Root reads any folder whatever its mode, so the listing refuses this one the way the
    // kernel refuses anyone else (the same refusal `chmod 000` gives a normal user).
    let locked = tree.path().join("locked");
    let found = humpback::ingest::find_audio_files_with(tree.path(), None, |dir| {
        if dir == locked {
            return Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied));
        }
        std::fs::read_dir(dir)?.map(|entry| entry.map(|entry| entry.path())).collect()
    });
    assert_eq!(found.files, vec![Path::new("open/a.wav").to_path_buf()]);
    assert_eq!(found.skipped.len(), 1);
    assert_eq!(found.skipped[0].path, "locked");
    assert!(found.skipped[0].reason.contains("cannot read this folder"), "{:?}", found.skipped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_json_body_gets_a_413_the_client_reads_and_the_server_keeps_serving() {
    let app = app_with(Settings::default()).await;
    app.humpback.execute(register(1)).await.expect("a recording");
    let audio_id = humpback::domain::ids::AudioFileId(1);
    let head_before = app.humpback.log.head();
    let huge = format!(r#"{{"tag_data": {{"notes": "{}"}}}}"#, "x".repeat(20 * 1024 * 1024));
    let sent = headers(&[("Host", &host(&app)), ("Content-Type", "application/json")]);
    let answer =
        raw(app.address, "PATCH", &format!("/api/audio/{}/metadata", audio_id.0), sent, huge.into_bytes()).await;
    assert_eq!(answer.status, 413, "{}", answer.text());
    assert!(answer.json()["error"].as_str().unwrap().contains("MiB"), "{}", answer.text());
    assert_eq!(app.humpback.log.head(), head_before);
    let health = raw(app.address, "GET", "/health", headers(&[("Host", &host(&app))]), Vec::new()).await;
    assert_eq!(health.status, 200);
    // A body within the limit still goes through.
    let sent = headers(&[("Host", &host(&app)), ("Content-Type", "application/json")]);
    let fine = br#"{"tag_data": {"notes": "fine"}}"#.to_vec();
    let answer = raw(app.address, "PATCH", &format!("/api/audio/{}/metadata", audio_id.0), sent, fine).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_imports_through_a_server_by_uploading_with_its_token() {
    let app = app_with(with_token(false)).await;
    let tree = tempfile::tempdir().unwrap();
    let recordings = tree.path().join("recordings");
    std::fs::create_dir_all(recordings.join("site-a")).unwrap();
    std::fs::copy(fixture("wav_pcm16_mono_16k.wav"), recordings.join("site-a/dawn.wav")).unwrap();
    std::fs::write(recordings.join("broken.mp3"), b"ID3 but nothing else").unwrap();
    let base_url = app.base_url.clone();
    let run = move |token: Option<&'static str>| {
        let recordings = recordings.clone();
        let base_url = base_url.clone();
        tokio::task::spawn_blocking(move || {
            let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_humpback"));
            command.args(["import", "--server", &base_url]).arg(&recordings).env_remove("HUMPBACK_TOKEN");
            if let Some(token) = token {
                command.env("HUMPBACK_TOKEN", token);
            }
            command.output().expect("run humpback import")
        })
    };
    let refused = run(None).await.unwrap();
    assert!(!refused.status.success(), "without the token the server refuses");
    let output = run(Some(TOKEN)).await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.starts_with("1 added, 0 already there, 1 rejected"), "{stdout}");
    let files = app.humpback.reader.with_connection(|connection| {
        let query = humpback::projections::queries::AudioListQuery { limit: 100, ..Default::default() };
        humpback::projections::queries::list_audio_files(connection, &query)
    });
    let files = files.expect("list recordings");
    assert_eq!(files.items.len(), 1);
    assert_eq!(files.items[0].folder, "recordings/site-a");
    assert_eq!(files.items[0].filename, "dawn.wav");
    app.stop().await;
}
