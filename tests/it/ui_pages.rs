//! The web UI and its media endpoints, through the real router (`oneshot`, no socket):
//! every page renders, unknown ids give 404 pages, hostile text is escaped, forms behave,
//! spectrograms and window audio have the right shape, and the event stream delivers.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use humpback::artifacts::embeddings_parquet::{EmbeddingRow, EmbeddingSetWriter};
use humpback::domain::decide::{Command, EditAudioMetadata, MetadataEditMode};
use humpback::domain::ids::AudioFileId;
use humpback::domain::state::JobStatus;
use humpback::http::media_api::encode_wav_pcm16_mono;
use humpback::ingest::{self, IngestOutcome};
use humpback::log::EventLog;
use tokio::sync::watch;
use tower::ServiceExt;

use crate::helpers::{json, register, sample_session, spawn_app, TestApp};

/// The full router over a test app's services, with a stop signal kept open.
struct Ui {
    router: Router,
    _stop: watch::Sender<bool>,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Answer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Ui {
    fn new(app: &TestApp) -> Ui {
        let (stop, stopping) = watch::channel(false);
        Ui { router: humpback::http::routes::router(app.humpback.clone(), stopping), _stop: stop }
    }

    async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.router.clone().oneshot(request).await.expect("router answers");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.expect("body").to_bytes();
        Answer { status, headers, body }
    }

    async fn get(&self, uri: &str) -> Answer {
        self.send(Request::get(uri).body(Body::empty()).unwrap()).await
    }

    async fn post_form(&self, uri: &str, form: &str) -> Answer {
        self.send(
            Request::post(uri)
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(form.to_string()))
                .unwrap(),
        )
        .await
    }
}

/// A server without workers (the session claims its jobs itself), with the sample session.
async fn app_with_session() -> TestApp {
    let settings = humpback::app::Settings { processing_workers: 0, clustering_workers: 0, ..Default::default() };
    let app = crate::helpers::spawn_app_with(tempfile::tempdir().unwrap(), settings).await;
    for command in sample_session() {
        app.humpback
            .execute(crate::helpers::with_assignments_file(app.data_dir.path(), command))
            .await
            .expect("command accepted");
    }
    app
}

fn tone_wav(seconds: f64, sample_rate: u32, frequency: f64) -> Vec<u8> {
    let count = (seconds * f64::from(sample_rate)) as usize;
    let samples: Vec<f32> = (0..count)
        .map(|i| (0.4 * (2.0 * std::f64::consts::PI * frequency * i as f64 / f64::from(sample_rate)).sin()) as f32)
        .collect();
    encode_wav_pcm16_mono(&samples, sample_rate)
}

/// Registers a real WAV through the ingest path and returns its id.
async fn register_real_recording(app: &TestApp, name: &str, folder: &str, seconds: f64) -> u64 {
    let humpback = app.humpback.clone();
    let bytes = tone_wav(seconds, 8000, 1000.0);
    let (name, folder) = (name.to_string(), folder.to_string());
    let outcome = tokio::task::spawn_blocking(move || {
        let staged = ingest::stage_copy(&humpback.data_dir.tmp_dir(), bytes.as_slice(), 1 << 30).unwrap();
        ingest::register_staged(&humpback, staged, &name, &folder).unwrap()
    })
    .await
    .unwrap();
    app.humpback.wait_until_projected(app.humpback.log.head()).await;
    match outcome {
        IngestOutcome::Added(id) => id.0,
        IngestOutcome::Duplicate(id) => panic!("expected a new recording, got duplicate {id}"),
    }
}

/// The opening tag of the element with `attribute` (for checking its other attributes).
fn opening_tag<'a>(html: &'a str, attribute: &str) -> &'a str {
    let at = html.find(attribute).unwrap_or_else(|| panic!("no element with {attribute}"));
    let start = html[..at].rfind('<').unwrap_or(0);
    let end = at + html[at..].find('>').unwrap_or(0);
    &html[start..=end]
}

fn assert_escaped(html: &str) {
    assert!(!html.contains("<script>alert"), "unescaped script in the page");
    assert!(!html.contains("<b>"), "unescaped markup in the page");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_shows_counts_and_recent_activity() {
    let app = app_with_session().await;
    let ui = Ui::new(&app);
    let answer = ui.get("/").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
    let html = answer.text();
    assert!(html.contains("<h1>Overview</h1>"));
    assert!(html.contains("recordings"));
    assert!(html.contains("ClusteringJobCompleted"), "recent events are listed");
    assert!(html.contains(r#"href="/clustering/1""#));
    assert_escaped(&html);
    assert!(!html.contains("In progress"), "nothing runs at the end of the session");

    app.humpback.execute(register(4)).await.unwrap();
    app.humpback.execute(crate::helpers::queue(4, "sig-4")).await.unwrap();
    let busy = ui.get("/").await.text();
    assert!(busy.contains("In progress") && busy.contains(r#"data-job-id="4""#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_are_listed_with_status_badges_filters_and_forms_and_names_are_escaped() {
    let app = app_with_session().await;
    let ui = Ui::new(&app);
    let html = ui.get("/audio").await.text();
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;.wav"));
    assert_escaped(&html);
    assert!(html.contains(r#"href="/audio/1""#));
    assert!(html.contains(r#"data-job-id="1""#), "job badges link live updates");
    assert!(html.contains(">complete<") && html.contains(">canceled<"));
    assert!(html.contains(r#"action="/audio/upload""#) && html.contains(r#"enctype="multipart/form-data""#));
    assert!(!html.contains(r#"action="/audio/import""#), "import by server path is off without --import-root");
    assert!(
        html.contains("data-import-off") && html.contains("--import-root DIR"),
        "and the page says how to allow it"
    );
    assert!(html.contains(r#"action="/processing/queue""#));

    let folder = ui.get("/audio?folder=site-1").await.text();
    assert!(folder.contains("alert(1)") && !folder.contains("alert(2)"));
    let searched = ui.get("/audio?search=alert(2)&sort=name&order=desc").await.text();
    assert!(searched.contains("alert(2)") && !searched.contains("alert(3)"));
    let bad_sort = ui.get("/audio?sort=colour").await;
    assert_eq!(bad_sort.status, StatusCode::OK);
    assert!(bad_sort.text().contains("is not one of id, name"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_folders_and_metadata_are_escaped_everywhere() {
    let app = spawn_app().await;
    let id =
        register_real_recording(&app, "<script>alert('n')</script>.wav", "<b>x</b>/<script>alert('f')</script>", 2.0)
            .await;
    app.humpback
        .execute(Command::EditAudioMetadata(EditAudioMetadata {
            audio_file_id: AudioFileId(id),
            mode: MetadataEditMode::MergePatch,
            tag_data: Some(json(r#"{"note":"</textarea><script>alert('m')</script>"}"#)),
            visual_observations: None,
            group_composition: None,
            prey_density_proxy: None,
            edited_by: Some("<b>observer</b>".into()),
        }))
        .await
        .unwrap();
    let ui = Ui::new(&app);
    for uri in ["/audio".to_string(), format!("/audio/{id}"), "/events".to_string(), "/".to_string()] {
        let answer = ui.get(&uri).await;
        assert_eq!(answer.status, StatusCode::OK, "{uri}");
        let html = answer.text();
        assert_escaped(&html);
        assert!(!html.contains("</textarea><script>"), "{uri}");
    }
    let detail = ui.get(&format!("/audio/{id}")).await.text();
    assert!(detail.contains("&lt;/textarea&gt;&lt;script&gt;"));
    assert!(detail.contains("&lt;b&gt;observer&lt;/b&gt;"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recording_page_shows_file_jobs_embedding_sets_spectrogram_and_player() {
    let app = app_with_session().await;
    let ui = Ui::new(&app);
    let answer = ui.get("/audio/1?start=2&duration=5&max_frequency=4000").await;
    assert_eq!(answer.status, StatusCode::OK);
    let html = answer.text();
    assert_escaped(&html);
    for expected in [
        "Processing history",
        "Embedding sets",
        "History of edits",
        "pcm_s16le",
        "/api/embedding-sets/1/download",
        "/api/audio/1/spectrogram.png?start=2&amp;duration=5&amp;width=1000&amp;height=320&amp;max_frequency=4000",
        "/audio/1?start=0&amp;duration=5&amp;max_frequency=4000#spectrogram-heading",
        "/audio/1?start=7&amp;duration=5&amp;max_frequency=4000#spectrogram-heading",
        "/api/audio/1/window?start=2&amp;duration=5",
        r#"name="visual_observations""#,
        "surface-active",
        r#"data-job-id="1""#,
    ] {
        assert!(html.contains(expected), "missing {expected}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_of_an_embedding_set_is_shown_by_its_number() {
    let app = app_with_session().await;
    // Embedding set 1 (recording 1, 11 s long) has 5 s windows with a 5 s hop; its last window is
    // shifted back to end with the recording, so it starts at 6 s, not at 2 × 5 s.
    let path = app.data_dir.path().join("embeddings/fake@1/1/sig.parquet");
    let mut writer = EmbeddingSetWriter::create(&path, 2, Vec::new()).unwrap();
    let window = |row: u64, start: f64| EmbeddingRow {
        row_index: row,
        start_seconds: start,
        end_seconds: start + 5.0,
        padded: false,
        overlapped: row == 2,
        embedding: vec![0.0, 1.0],
    };
    writer.write_rows(&[window(0, 0.0), window(1, 5.0), window(2, 6.0)]).unwrap();
    writer.finish_and_promote().unwrap();
    let ui = Ui::new(&app);
    let html = ui.get("/audio/1?embedding_set=1&window=1").await.text();
    assert!(html.contains(r#"action="/audio/1""#) && html.contains(r#"name="embedding_set" value="1""#));
    assert!(html.contains("/api/audio/1/window?start=5&amp;duration=5"), "window 1 is played");
    let last = ui.get("/audio/1?embedding_set=1&window=2").await.text();
    assert!(last.contains("/api/audio/1/window?start=6&amp;duration=5"), "the stored start of the last window");
    let missing = ui.get("/audio/1?embedding_set=1&window=7").await.text();
    assert!(missing.contains("embedding set 1 has no window 7"), "a window past the end is explained");
    // A set of another recording is ignored.
    let other = ui.get("/audio/1?embedding_set=2&window=1").await.text();
    assert!(other.contains("/api/audio/1/window?start=0&amp;duration=11"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ids_give_not_found_pages() {
    let app = app_with_session().await;
    let ui = Ui::new(&app);
    for uri in ["/audio/999", "/audio/abc", "/processing/999", "/processing/x"] {
        let answer = ui.get(uri).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{uri}");
        assert!(answer.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
        assert!(answer.text().contains("404 Not Found"), "{uri}");
    }
    let cancel = ui.post_form("/processing/999/cancel", "").await;
    assert_eq!(cancel.status, StatusCode::NOT_FOUND);
    let metadata = ui.post_form("/audio/999/metadata", "tag_data=%7B%7D").await;
    assert_eq!(metadata.status, StatusCode::NOT_FOUND);
    for uri in ["/api/audio/999/spectrogram.png", "/api/audio/999/window", "/api/embedding-sets/999/download"] {
        assert_eq!(ui.get(uri).await.status, StatusCode::NOT_FOUND, "{uri}");
    }
    // An unknown path is a page for a browser and JSON for a program; the path is escaped.
    let browser =
        |uri: &str| Request::get(uri).header(header::ACCEPT, "text/html,*/*;q=0.8").body(Body::empty()).unwrap();
    let page = ui.send(browser("/recordings/%3Cscript%3E")).await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(page.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
    assert!(page.text().contains("there is no page at") && !page.text().contains("<script>"));
    let api = ui.send(browser("/api/nothing-here")).await;
    assert_eq!(api.status, StatusCode::NOT_FOUND);
    assert!(api.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("application/json"));
    let program = ui.get("/nothing-here").await;
    assert_eq!(program.status, StatusCode::NOT_FOUND);
    assert!(program.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("application/json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_metadata_form_comes_back_with_errors_and_the_text_kept_and_a_good_one_is_saved() {
    let app = app_with_session().await;
    let ui = Ui::new(&app);
    let answer = ui
        .post_form(
            "/audio/2/metadata",
            "tag_data=%5B1%2C2%5D&visual_observations=%7Bnot+json%3Cscript%3E&group_composition=&prey_density_proxy=",
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    let html = answer.text();
    assert!(html.contains("tag_data must be a JSON object"), "{html}");
    assert!(html.contains("visual_observations is not valid JSON"));
    assert!(html.contains("{not json&lt;script&gt;"), "the text is kept, escaped");
    assert!(html.contains("[1,2]"));
    assert!(html.contains(r#"aria-invalid="true""#));

    let saved = ui
        .post_form(
            "/audio/2/metadata",
            "tag_data=%7B%22tag%22%3A%22A1%22%7D&visual_observations=&group_composition=%7B%22adults%22%3A3%7D&prey_density_proxy=",
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER);
    assert_eq!(saved.headers[header::LOCATION], "/audio/2?notice=metadata%20saved");
    let page = ui.get("/audio/2?notice=metadata%20saved").await.text();
    assert!(page.contains("metadata saved"));
    assert!(page.contains("A1") && page.contains("adults"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processing_pages_list_jobs_show_events_and_cancel_and_retry_redirect_with_a_notice() {
    let app = app_with_session().await;
    app.humpback.execute(register(4)).await.unwrap();
    app.humpback.execute(crate::helpers::queue(4, "sig-4")).await.unwrap();
    let ui = Ui::new(&app);

    let list = ui.get("/processing").await;
    assert_eq!(list.status, StatusCode::OK);
    let html = list.text();
    assert!(html.contains(r#"href="/processing/4""#));
    assert!(html.contains(r#"<a href="/audio/4">&lt;script&gt;alert(4)&lt;/script&gt;.wav</a>"#), "recordings by name");
    // Both buttons are on the page for live.js; only the ones that apply are shown.
    assert!(
        !opening_tag(&html, r#"action="/processing/4/cancel""#).contains(" hidden"),
        "a queued job can be canceled"
    );
    assert!(opening_tag(&html, r#"action="/processing/4/retry""#).contains(" hidden"));
    assert!(
        !opening_tag(&html, r#"action="/processing/3/retry""#).contains(" hidden"),
        "a canceled job can be retried"
    );
    assert!(opening_tag(&html, r#"action="/processing/3/cancel""#).contains(" hidden"));
    let failed_filter = ui.get("/processing?status=queued").await.text();
    assert!(failed_filter.contains(r#"href="/processing/4""#) && !failed_filter.contains(r#"href="/processing/1""#));
    assert!(ui.get("/processing?status=sleeping").await.text().contains("is not one of"));

    let detail = ui.get("/processing/2").await;
    assert_eq!(detail.status, StatusCode::OK);
    let html = detail.text();
    assert!(html.contains("ProcessingJobFailed") && html.contains("decode failed"));
    assert!(html.contains("ProcessingJobRetried"));
    // The page says which log position it shows, so its live updates start right after it.
    let head = app.humpback.log.head().0;
    assert!(html.contains(&format!(r#"data-events-after="{head}""#)), "the page shows the log up to {head}");

    let cancel = ui.post_form("/processing/4/cancel", "return_to=%2Fprocessing").await;
    assert_eq!(cancel.status, StatusCode::SEE_OTHER);
    let location = cancel.headers[header::LOCATION].to_str().unwrap().to_string();
    assert!(location.starts_with("/processing?notice=processing%20job%204"), "{location}");
    assert!(ui.get(&location).await.text().contains("processing job 4: cancel requested"));

    let refused = ui.post_form("/processing/1/retry", "return_to=https%3A%2F%2Fevil.example").await;
    assert_eq!(refused.status, StatusCode::SEE_OTHER);
    let location = refused.headers[header::LOCATION].to_str().unwrap().to_string();
    assert!(location.starts_with("/processing/1?notice="), "{location}");
    assert!(location.ends_with("notice_kind=error"));

    let unknown_model =
        ui.post_form("/processing/queue", "audio_file_id=1&model_name=perch&return_to=%2Faudio%2F1").await;
    assert_eq!(unknown_model.status, StatusCode::SEE_OTHER);
    let location = unknown_model.headers[header::LOCATION].to_str().unwrap().to_string();
    assert!(location.starts_with("/audio/1?notice="), "{location}");
    assert!(ui.get(&location).await.text().contains("is not a registered model"), "the reason is shown");

    let queued =
        ui.post_form("/processing/queue", "audio_file_id=1&audio_file_id=2&window_seconds=&hop_seconds=").await;
    assert_eq!(queued.status, StatusCode::SEE_OTHER);
    let location = queued.headers[header::LOCATION].to_str().unwrap().to_string();
    assert!(location.starts_with("/processing?notice="), "{location}");
    assert!(ui.get(&location).await.text().contains("2 jobs queued"), "{location}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_page_is_newest_first_filtered_paged_and_linked() {
    let app = app_with_session().await;
    let ui = Ui::new(&app);
    let html = ui.get("/events").await.text();
    assert!(html.contains(r#"href="/audio/1""#));
    assert!(html.contains(r#"href="/processing/1""#));
    assert!(html.contains(r#"href="/clustering/1""#));
    let newest = html.find("ClusteringJobCompleted</code>").unwrap();
    let oldest = html.find("AudioFileRegistered</code>").unwrap();
    assert!(newest < oldest, "newest first");

    let typed = ui.get("/events?type=AudioFileRegistered&aggregate=").await.text();
    assert!(typed.contains("AudioFileRegistered</code>") && !typed.contains("ProcessingJobQueued</code>"));
    let about = ui.get("/events?aggregate=processing_job%3A2").await.text();
    assert!(about.contains("ProcessingJobFailed") && !about.contains("ProcessingJobCanceled</code>"));
    let bad = ui.get("/events?type=Nonsense").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.text().contains("unknown event type"));

    // Paging: more than one page of events continues with a cursor.
    for index in 10..70 {
        app.humpback.execute(register(index)).await.unwrap();
    }
    let first = ui.get("/events").await.text();
    let cursor_at = first.find("/events?cursor=").expect("a link to older events");
    let cursor: String =
        first[cursor_at + "/events?cursor=".len()..].chars().take_while(char::is_ascii_digit).collect();
    let older = ui.get(&format!("/events?cursor={cursor}")).await;
    assert_eq!(older.status, StatusCode::OK);
    assert!(older.text().contains("← newest"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sections_and_assets_are_served() {
    let app = spawn_app().await;
    let ui = Ui::new(&app);
    for uri in ["/clustering", "/models"] {
        assert_eq!(ui.get(uri).await.status, StatusCode::OK, "{uri}");
    }
    let scatter = ui.get("/assets/scatter.js").await;
    assert!(scatter.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/javascript"));
    assert!(scatter.text().contains("data-drawn"));
    let css = ui.get("/assets/style.css").await;
    assert!(css.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/css"));
    let js = ui.get("/assets/live.js").await;
    assert!(js.text().contains("EventSource"));
    let upload = ui.get("/assets/upload.js").await;
    assert!(upload.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/javascript"));
    assert!(upload.text().contains("data-upload-progress"));
    let selection = ui.get("/assets/selection.js").await;
    assert!(selection.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/javascript"));
    assert!(selection.text().contains("selection-summary"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spectrogram_png_has_the_requested_size_and_bad_parameters_are_refused() {
    let app = spawn_app().await;
    let id = register_real_recording(&app, "tone.wav", "tests", 3.0).await;
    let ui = Ui::new(&app);
    let answer = ui.get(&format!("/api/audio/{id}/spectrogram.png?start=0.5&duration=2&width=400&height=200")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.headers[header::CONTENT_TYPE], "image/png");
    let decoder = png::Decoder::new(std::io::Cursor::new(answer.body.to_vec()));
    let reader = decoder.read_info().unwrap();
    assert_eq!((reader.info().width, reader.info().height), (400, 200));

    let default = ui.get(&format!("/api/audio/{id}/spectrogram.png")).await;
    assert_eq!(default.status, StatusCode::OK);
    let zoomed = ui.get(&format!("/api/audio/{id}/spectrogram.png?max_frequency=2000")).await;
    assert_eq!(zoomed.status, StatusCode::OK);
    assert_ne!(zoomed.body, default.body);

    for bad in [
        "start=-1",
        "start=3.5",
        "duration=601",
        "duration=0",
        "width=5",
        "height=99999",
        "start=abc",
        "max_frequency=1",
    ] {
        let answer = ui.get(&format!("/api/audio/{id}/spectrogram.png?{bad}")).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {}", answer.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_audio_is_a_mono_16_bit_wav_with_the_right_sample_count() {
    let app = spawn_app().await;
    let id = register_real_recording(&app, "tone.wav", "tests", 3.0).await;
    let ui = Ui::new(&app);
    let answer = ui.get(&format!("/api/audio/{id}/window?start=0.5&duration=1.25")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    assert_eq!(answer.headers[header::CONTENT_TYPE], "audio/wav");
    let wav = &answer.body;
    assert_eq!(&wav[0..4], b"RIFF");
    assert_eq!(&wav[8..12], b"WAVE");
    assert_eq!(u16::from_le_bytes([wav[22], wav[23]]), 1, "mono");
    assert_eq!(u32::from_le_bytes([wav[24], wav[25], wav[26], wav[27]]), 8000, "the file's own rate");
    assert_eq!(u16::from_le_bytes([wav[34], wav[35]]), 16);
    let data_bytes = u32::from_le_bytes([wav[40], wav[41], wav[42], wav[43]]) as usize;
    assert_eq!(data_bytes, 10_000 * 2);
    assert_eq!(wav.len(), 44 + data_bytes);

    // A range past the end is cut at the end.
    let tail = ui.get(&format!("/api/audio/{id}/window?start=2.5&duration=5")).await;
    assert_eq!(tail.body.len(), 44 + 4000 * 2);

    for bad in ["start=3.5", "start=-0.1", "duration=700", "duration=-2"] {
        let answer = ui.get(&format!("/api/audio/{id}/window?{bad}")).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert!(answer.text().contains("error"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedding_set_downloads_as_its_parquet_file() {
    let app = app_with_session().await;
    let ui = Ui::new(&app);
    let missing = ui.get("/api/embedding-sets/1/download").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.text().contains("missing"));
    let path = app.data_dir.path().join("embeddings/fake@1/1/sig.parquet");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"PAR1 test bytes PAR1").unwrap();
    let answer = ui.get("/api/embedding-sets/1/download").await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(&answer.body[..], b"PAR1 test bytes PAR1");
    assert!(answer.headers[header::CONTENT_DISPOSITION].to_str().unwrap().contains("embedding-set-1.parquet"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_delivers_a_new_event_and_resumes_after_the_last_event_id() {
    let app = app_with_session().await;
    let ui = Ui::new(&app);
    let head = app.humpback.log.head().0;
    // Resume from one event back: the stream first replays event `head`, then delivers new ones.
    let response = ui
        .router
        .clone()
        .oneshot(
            Request::get("/api/events/stream")
                .header("last-event-id", (head - 1).to_string())
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/event-stream"));
    let mut body = response.into_body();
    app.humpback.execute(register(50)).await.unwrap();
    let mut received = String::new();
    let wanted = format!("id: {}\n", head + 1);
    let read = tokio::time::timeout(Duration::from_secs(20), async {
        while !received.contains(&wanted) {
            let frame = body.frame().await.expect("the stream stays open").expect("a frame");
            if let Ok(data) = frame.into_data() {
                received.push_str(&String::from_utf8_lossy(&data));
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no new event arrived; received: {received}");
    assert!(received.contains(&format!("id: {head}\n")), "the replayed event comes first");
    assert!(received.contains("AudioFileRegistered"));
    assert!(received.find(&format!("id: {head}\n")) < received.find(&wanted));
}

fn multipart_body(boundary: &str, parts: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, filename, content) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match filename {
            Some(filename) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
        }
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_report_each_file_as_added_already_there_or_rejected() {
    let app = spawn_app().await;
    let ui = Ui::new(&app);
    let wav = tone_wav(1.0, 8000, 440.0);
    let boundary = "humpback-test-boundary";
    let upload = |parts: Vec<(&'static str, Option<&'static str>, Vec<u8>)>| {
        let borrowed: Vec<(&str, Option<&str>, &[u8])> =
            parts.iter().map(|(name, file, content)| (*name, *file, content.as_slice())).collect();
        Request::post("/audio/upload")
            .header(header::CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"))
            .body(Body::from(multipart_body(boundary, &borrowed)))
            .unwrap()
    };
    let answer = ui
        .send(upload(vec![
            ("file", Some("<script>alert(9)</script>.wav"), wav.clone()),
            ("file", Some("notes<b>.txt"), b"these are not audio samples".to_vec()),
            ("folder", None, b"site-<b>z</b>".to_vec()),
        ]))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let html = answer.text();
    assert_escaped(&html);
    assert!(html.contains("1 added, 0 already there, 1 rejected"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(9)&lt;/script&gt;.wav"));
    assert!(html.contains(r#"href="/audio/1""#));

    let list = ui.get("/audio").await.text();
    assert!(list.contains("site-&lt;b&gt;z&lt;/b&gt;"), "the folder is kept");

    let again = ui.send(upload(vec![("file", Some("copy.wav"), wav)])).await;
    assert!(again.text().contains("0 added, 1 already there, 0 rejected"));

    let empty = ui.send(upload(vec![("file", Some(""), Vec::new())])).await;
    assert_eq!(empty.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_on_the_server_is_imported_and_a_missing_one_is_explained() {
    let source = tempfile::tempdir().unwrap();
    let settings = humpback::app::Settings {
        import_roots: vec![std::fs::canonicalize(source.path()).unwrap()],
        processing_workers: 0,
        clustering_workers: 0,
        ..Default::default()
    };
    let app = crate::helpers::spawn_app_with(tempfile::tempdir().unwrap(), settings).await;
    let ui = Ui::new(&app);
    std::fs::create_dir_all(source.path().join("site-a")).unwrap();
    std::fs::write(source.path().join("site-a/one.wav"), tone_wav(1.0, 8000, 300.0)).unwrap();
    std::fs::write(source.path().join("broken.wav"), b"RIFF nonsense").unwrap();
    let form = format!("path={}", humpback::views::url_encode(&source.path().display().to_string()));
    let answer = ui.post_form("/audio/import", &form).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let html = answer.text();
    assert!(html.contains("1 added, 0 already there, 1 rejected"), "{html}");
    assert!(html.contains("site-a/one.wav"));

    let inside = source.path().join("no-such-folder").display().to_string();
    let missing = ui.post_form("/audio/import", &format!("path={}", humpback::views::url_encode(&inside))).await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(missing.text().contains("is not a folder on the server"));
    let outside = ui.post_form("/audio/import", "path=%2Fetc").await;
    assert_eq!(outside.status, StatusCode::FORBIDDEN, "outside the import roots");
    assert!(outside.text().contains("outside the folders this server may import from"));
}

/// Two hostile-named recordings processed with the fake model; their embedding set ids.
async fn two_processed_hostile_recordings(app: &TestApp) -> Vec<u64> {
    let mut sets = Vec::new();
    for (index, seed) in [1u32, 2].iter().enumerate() {
        let bytes = crate::processing::chirp_wav(20.0, 16_000, *seed);
        let name = format!("<script>alert({index})</script>.wav");
        let (status, audio) =
            crate::ingest_api::upload(&app.base_url, &name, bytes, Some(&format!("<b>site-{index}"))).await;
        assert_eq!(status, 201, "{audio}");
        let (_, job) = crate::processing::post_json(
            app.url("/api/processing-jobs"),
            serde_json::json!({"audio_file_id": audio["id"], "model": "fake"}),
        )
        .await;
        let job_id = job["id"].as_u64().expect("job id");
        let done = crate::processing::wait_for_job(app, job_id, &[JobStatus::Complete, JobStatus::Failed]).await;
        assert_eq!(done, JobStatus::Complete);
        let (_, job) = crate::api_get(&app.url(&format!("/api/processing-jobs/{job_id}"))).await;
        sets.push(job["embedding_set_id"].as_u64().expect("embedding set id"));
    }
    sets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clustering_is_queued_from_the_form_and_its_job_plot_data_and_clusters_are_shown_escaped() {
    let app = crate::helpers::spawn_app_with(tempfile::tempdir().unwrap(), crate::processing::settings(1)).await;
    let ui = Ui::new(&app);
    let sets = two_processed_hostile_recordings(&app).await;

    let list = ui.get("/clustering").await;
    assert_eq!(list.status, StatusCode::OK);
    let html = list.text();
    assert_escaped(&html);
    assert!(html.contains(r#"action="/clustering/queue""#));
    assert!(html.contains("2 sets,"), "the coverage of all sets is shown");
    assert!(html.contains(r#"name="embedding_set_id""#));

    // A refused form comes back (422) saying what to fix, with every choice kept.
    let nothing = ui.post_form("/clustering/queue", "algorithm_method=kmeans&k=2&seed=9&metadata_path=%3Cb%3E").await;
    assert_eq!(nothing.status, StatusCode::UNPROCESSABLE_ENTITY);
    let html = nothing.text();
    assert!(html.contains("Not queued: choose embedding sets"), "the reason is shown");
    assert!(html.contains(r#"<option value="kmeans" selected>"#), "the algorithm is kept");
    assert!(html.contains(r#"name="k" value="2""#) && html.contains(r#"name="seed" value="9""#), "numbers are kept");
    assert!(html.contains(r#"name="metadata_path" value="&lt;b&gt;""#), "text is kept, escaped");
    assert!(!html.contains(r#"name="plot_2d" value="true" checked"#), "an unticked box stays unticked");
    let unknown = ui
        .post_form("/clustering/queue", &format!("embedding_set_id={}&sweep_method=kmeans&sweep_from=2", sets[0]))
        .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(unknown.text().contains("both ends of the range"));
    let html = unknown.text();
    assert!(
        opening_tag(&html, &format!(r#"id="set-{}""#, sets[0])).contains(" checked"),
        "the ticked set stays ticked"
    );
    assert!(!opening_tag(&html, &format!(r#"id="set-{}""#, sets[1])).contains(" checked"));

    // The form can be checked before it is sent: what it covers, or what is wrong.
    let check =
        ui.post_form("/clustering/check", &format!("embedding_set_id={}&embedding_set_id={}", sets[0], sets[1])).await;
    assert_eq!(check.status, StatusCode::OK);
    let check: serde_json::Value = serde_json::from_slice(&check.body).unwrap();
    assert_eq!(check["embedding_sets"], 2);
    assert!(check["windows"].as_u64().unwrap() > 0 && check["error"].is_null(), "{check}");
    let filtered = ui.post_form("/clustering/check", "model_version=fake-1-32d&folder_prefix=nowhere").await;
    let filtered: serde_json::Value = serde_json::from_slice(&filtered.body).unwrap();
    assert!(filtered["error"].as_str().unwrap().contains("no embedding sets match"), "{filtered}");

    let form = format!(
        "embedding_set_id={}&embedding_set_id={}&reduction_method=pca&reduction_n_components=2\
         &algorithm_method=kmeans&k=2&seed=7&plot_2d=true&normalize_l2=true&reference_field=folder",
        sets[0], sets[1]
    );
    let queued = ui.post_form("/clustering/queue", &form).await;
    assert_eq!(queued.status, StatusCode::SEE_OTHER);
    let location = queued.headers[header::LOCATION].to_str().unwrap().to_string();
    assert!(location.starts_with("/clustering/1?notice=clustering%20job%201%20queued"), "{location}");
    assert_eq!(crate::clustering::wait_for_clustering(&app, 1).await, JobStatus::Complete);

    let job = ui.get("/clustering/1").await;
    assert_eq!(job.status, StatusCode::OK);
    let html = job.text();
    assert_escaped(&html);
    assert!(html.contains("<canvas") && html.contains(r#"data-points-url="/clustering/1/points.json""#));
    assert!(html.contains("/assets/scatter.js"));
    assert!(html.contains("Metrics") && html.contains("Against the reference"));
    assert!(
        html.contains("/api/clustering-jobs/1/assignments.csv")
            && html.contains("/api/clustering-jobs/1/clusters.json")
    );
    assert!(html.contains("&lt;b&gt;site"), "top metadata values are shown, escaped");
    assert!(html.contains(r#"data-clustering-job-id="1""#));

    let points = ui.get("/clustering/1/points.json").await;
    assert_eq!(points.status, StatusCode::OK);
    assert!(points.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("application/json"));
    let text = points.text();
    assert!(!text.contains('<') && !text.contains('>'), "markup characters are escaped in the plot data");
    let data: serde_json::Value = serde_json::from_str(&text).unwrap();
    let count = data["x"].as_array().unwrap().len();
    assert!(count > 0);
    assert_eq!(data["shown"], data["total"]);
    assert_eq!(data["shown"].as_u64(), Some(count as u64));
    for column in ["y", "label", "set", "row", "audio", "start", "duration"] {
        assert_eq!(
            data[column].as_array().map(Vec::len),
            Some(count),
            "every column has one value per point: {column}"
        );
    }
    let audio = data["audio"][0].as_u64().expect("the point's recording");
    assert!(data["duration"][0].as_f64().unwrap() > 0.0);
    // Recording names and folders come once, in a table by id.
    let name = data["recordings"][audio.to_string()]["name"].as_str().expect("the recording's name");
    assert!(name.starts_with("<script>alert("), "{name}");
    assert!(data["recordings"][audio.to_string()]["folder"].is_string());

    let clusters = app.humpback.reader.with_connection(|c| humpback::projections::queries::clusters(c, 1)).unwrap();
    let first = clusters.iter().find(|cluster| cluster.label >= 0).expect("a cluster");
    assert!(html.contains(&format!(r#"href="/clusters/{}""#, first.id)));
    let cluster = ui.get(&format!("/clusters/{}", first.id)).await;
    assert_eq!(cluster.status, StatusCode::OK);
    let html = cluster.text();
    assert_escaped(&html);
    assert!(html.contains("&lt;script&gt;alert("), "recording names are shown escaped");
    assert!(html.contains(r#"preload="none""#) && html.contains("/window?start="));
    assert!(
        html.contains(r#"loading="lazy""#)
            && html.contains("/spectrogram.png?start=")
            && html.contains("width=160&amp;height=100")
    );
    assert!(html.contains(r#"class="bar""#), "metadata distributions are drawn as bars");
    assert!(html.contains(r#"data-tiles"#) && html.contains(r#"class="tile""#), "members are tiles");
    assert!(html.contains(r#"data-set=""#) && html.contains(r#"data-row=""#));
    assert!(html.contains(r#"href="/search?set="#), "each tile can find similar windows");
    assert!(html.contains("/assets/tiles.js"));

    let csv = ui.get("/api/clustering-jobs/1/assignments.csv").await;
    assert_eq!(csv.status, StatusCode::OK);

    let cancel_finished = ui.post_form("/clustering/1/cancel", "").await;
    assert_eq!(cancel_finished.status, StatusCode::SEE_OTHER);
    assert!(cancel_finished.headers[header::LOCATION].to_str().unwrap().contains("notice_kind=error"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_models_page_lists_models_with_their_shape() {
    let app = crate::helpers::spawn_app_with(tempfile::tempdir().unwrap(), crate::processing::settings(0)).await;
    let ui = Ui::new(&app);
    let answer = ui.get("/models").await;
    assert_eq!(answer.status, StatusCode::OK);
    let html = answer.text();
    assert!(html.contains("<h1>Models</h1>"));
    assert!(html.contains("builtin-logmel-stats") && html.contains(">fake<"));
    assert!(html.contains("Problems with model files"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_clustering_jobs_and_clusters_give_not_found_pages() {
    let app = app_with_session().await;
    let ui = Ui::new(&app);
    for uri in ["/clustering/999", "/clustering/x", "/clusters/999", "/clusters/x", "/clustering/999/points.json"] {
        let answer = ui.get(uri).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{uri}");
        assert!(answer.text().contains("404 Not Found"), "{uri}");
    }
    for uri in ["/clustering/999/cancel", "/clustering/999/retry"] {
        assert_eq!(ui.post_form(uri, "").await.status, StatusCode::NOT_FOUND, "{uri}");
    }
    let session_job = ui.get("/clustering/1").await;
    assert_eq!(session_job.status, StatusCode::OK);
    assert!(session_job.text().contains("Clustering job 1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_search_page_finds_a_window_by_example_shows_tiles_and_keeps_a_refused_query() {
    let app = crate::helpers::spawn_app_with(tempfile::tempdir().unwrap(), crate::processing::settings(1)).await;
    let ui = Ui::new(&app);
    let sets = two_processed_hostile_recordings(&app).await;

    // The recording page shows the windows in the range it shows as tiles.
    let recording = ui.get("/audio/1").await;
    assert_eq!(recording.status, StatusCode::OK);
    let page_html = recording.text();
    assert!(page_html.contains(r#"id="recording-windows""#), "window tiles on the recording page");
    assert!(page_html.contains(&format!(r#"data-set="{}" data-row="0""#, sets[0])));

    let empty = ui.get("/search").await;
    assert_eq!(empty.status, StatusCode::OK);
    assert!(empty.text().contains("Search by example") && !empty.text().contains(r#"id="results""#));

    let found = ui.get(&format!("/search?set={}&row=3&k=5", sets[0])).await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.text());
    let html = found.text();
    assert_escaped(&html);
    assert!(html.contains(r#"id="results""#) && html.contains(r#"class="tile""#));
    assert_eq!(html.matches(r#"<figure class="tile""#).count(), 5 + 1, "five results and the query itself");
    assert!(html.contains("the query"), "the query window is shown first");
    assert!(html.contains("#1 · score 1.000"), "a window is most like itself");
    assert!(html.contains(&format!(r#"data-set="{}" data-row="3""#, sets[0])));

    let excluded = ui.get(&format!("/search?set={}&row=3&k=5&exclude_same_recording=true", sets[0])).await;
    assert_eq!(excluded.status, StatusCode::OK);
    assert!(
        !excluded.text().contains(&format!(r#"data-set="{}" data-row="#, sets[0])),
        "its own recording is left out"
    );
    assert!(excluded.text().contains(r#"name="exclude_same_recording" value="true" checked"#), "the choice is kept");

    // The results export as a selection table (and CSV), with absolute times once the
    // recording's start is known.
    let put = ui
        .send(
            axum::http::Request::put(format!("/api/audio/{}/recorded-at", 1))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(r#"{"recorded_at": "2024-07-01T06:30:00Z"}"#))
                .unwrap(),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text());
    assert!(html.contains(&format!("/search/selections.txt?set={}&amp;row=3&amp;k=5", sets[0])), "an export link");
    let table = ui.get(&format!("/search/selections.txt?set={}&row=3&k=5", sets[0])).await;
    assert_eq!(table.status, StatusCode::OK, "{}", table.text());
    let text = table.text();
    let header_line = text.lines().next().unwrap();
    for column in ["Selection", "Begin Time (s)", "Begin File", "Score", "Begin Date", "Begin Clock Time"] {
        assert!(header_line.split('\t').any(|name| name == column), "{column} in {header_line}");
    }
    assert_eq!(text.lines().count(), 1 + 5);
    let csv = ui
        .send(
            axum::http::Request::post("/api/search?format=csv")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(format!(
                    r#"{{"query": {{"embedding_set_id": {}, "row_index": 3}}, "k": 3}}"#,
                    sets[0]
                )))
                .unwrap(),
        )
        .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.text().starts_with("Selection,View,Channel"), "{}", csv.text());
    let json = ui
        .send(
            axum::http::Request::post("/api/search")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(format!(
                    r#"{{"query": {{"embedding_set_id": {}, "row_index": 3}}, "k": 40}}"#,
                    sets[0]
                )))
                .unwrap(),
        )
        .await;
    let answer: serde_json::Value = serde_json::from_slice(&json.body).unwrap();
    let results = answer["results"].as_array().unwrap();
    let dated = results.iter().find(|result| result["audio_file_id"] == 1).expect("a window of recording 1");
    let start = dated["start_seconds"].as_f64().unwrap();
    let expected = humpback::recording_time::window_start_iso8601(
        Some(humpback::recording_time::UtcTime::parse_iso8601("2024-07-01T06:30:00Z").unwrap()),
        start,
    );
    assert_eq!(dated["start_time_utc"].as_str(), expected.as_deref());
    assert!(results.iter().any(|result| result["audio_file_id"] == 2 && result["start_time_utc"].is_null()));

    let unknown = ui.get("/search?set=999&row=0").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(unknown.text().contains("999") && unknown.text().contains(r#"name="set" min="1" value="999""#));
    let bad = ui.get(&format!("/search?set={}&row=x", sets[0])).await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text().contains("row"));
}
