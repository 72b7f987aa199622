//! The web UI in a real browser: headless Chromium driven over WebDriver (`chromedriver`).
//! Upload through the page, queue processing from the recording page and watch it complete
//! without reloading, cluster two sets, hover a point of the scatter plot, play a cluster
//! member. Screenshots of the main pages go to `target/screenshots/`.
//!
//! Skipped (with a message) when `/usr/bin/chromium` or `/usr/bin/chromedriver` is missing;
//! `.ci/run` installs both. Every wait is on a page condition with a time limit.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use fantoccini::actions::{InputSource, MouseActions, PointerAction};
use fantoccini::{Client, ClientBuilder, Locator};
use humpback::app::Settings;
use humpback::domain::ids::{ProcessingJobId, WorkerId};
use humpback::domain::state::JobStatus;
use humpback::http::access::{AccessSettings, AccessToken};
use humpback::processing::worker::{ProcessingWorker, StepOutcome};
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, TestApp};
use crate::ingest_api::fixture;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const PAGE_TIMEOUT: Duration = Duration::from_secs(30);
const JOB_TIMEOUT: Duration = Duration::from_secs(240);
const CHECK_EVERY: Duration = Duration::from_millis(100);

/// A chromedriver child process, ended when dropped.
struct Chromedriver {
    child: Child,
    url: String,
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

async fn start_chromedriver() -> Chromedriver {
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Chromedriver { child, url: format!("http://127.0.0.1:{port}") };
    let status_url = format!("{}/status", driver.url);
    let deadline = tokio::time::Instant::now() + PAGE_TIMEOUT;
    loop {
        let url = status_url.clone();
        let ready = tokio::task::spawn_blocking(move || {
            ureq::get(&url)
                .call()
                .ok()
                .and_then(|mut response| response.body_mut().read_json::<Value>().ok())
                .is_some_and(|status| status["value"]["ready"] == json!(true))
        })
        .await
        .unwrap_or(false);
        if ready {
            return driver;
        }
        assert!(tokio::time::Instant::now() < deadline, "chromedriver did not become ready on port {port}");
        tokio::time::sleep(CHECK_EVERY).await;
    }
}

async fn start_browser(driver: &Chromedriver, profile: &Path) -> Client {
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--no-first-run",
                "--window-size=1280,1000", "--autoplay-policy=no-user-gesture-required",
                format!("--user-data-dir={}", profile.display()),
            ]
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("start a headless chromium session")
}

/// Evaluates `expression` until it is truthy (or the time is up) and returns its value.
async fn wait_for(client: &Client, expression: &str, what: &str, timeout: Duration) -> Value {
    let script = format!("return ({expression});");
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let value = client.execute(&script, vec![]).await.unwrap_or(Value::Null);
        let truthy = match &value {
            Value::Null => false,
            Value::Bool(true) => true,
            Value::Bool(false) => false,
            Value::Number(number) => number.as_f64().is_some_and(|n| n != 0.0),
            Value::String(text) => !text.is_empty(),
            _ => true,
        };
        if truthy {
            return value;
        }
        if tokio::time::Instant::now() >= deadline {
            let url = client.current_url().await.map(|url| url.to_string()).unwrap_or_default();
            let body = client
                .execute("return document.body ? document.body.innerText.slice(0, 2000) : ''", vec![])
                .await
                .unwrap_or(Value::Null);
            panic!("timed out waiting for {what} ({expression}) on {url}; the page says: {body}");
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
}

fn screenshots_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is `<target>/tmp`; screenshots go next to it.
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).parent().map(Path::to_path_buf).unwrap_or_default().join("screenshots");
    std::fs::create_dir_all(&dir).expect("create the screenshots directory");
    dir
}

/// A screenshot of the whole page (the window is made as tall as the page, then put back).
async fn screenshot(client: &Client, name: &str) {
    let height = client
        .execute("return Math.max(document.documentElement.scrollHeight, document.body.scrollHeight)", vec![])
        .await
        .ok()
        .and_then(|height| height.as_u64())
        .unwrap_or(1000)
        .clamp(1000, 6000);
    client.set_window_size(1280, height as u32 + 120).await.expect("make the window as tall as the page");
    let png = client.screenshot().await.expect("screenshot");
    client.set_window_size(1280, 1000).await.expect("restore the window size");
    std::fs::write(screenshots_dir().join(format!("{name}.png")), png).expect("write screenshot");
}

/// Presses and releases one key on whatever has the focus.
async fn press_key(client: &Client, key: char) {
    use fantoccini::actions::{KeyAction, KeyActions};
    let keys =
        KeyActions::new("keyboard".into()).then(KeyAction::Down { value: key }).then(KeyAction::Up { value: key });
    client.perform_actions(keys).await.expect("press a key");
}

const BROWSER_TOKEN: &str = "browser-test-token-0451";

/// Opening a page without a session lands on the login form; the token brings the browser back
/// to the page it asked for.
async fn log_in(client: &Client, base: &str) {
    client.goto(&format!("{base}/audio")).await.expect("open recordings");
    wait_for(client, "location.pathname === '/login'", "the login form", PAGE_TIMEOUT).await;
    screenshot(client, "login").await;
    client.find(Locator::Id("login-token")).await.expect("token field").send_keys(BROWSER_TOKEN).await.unwrap();
    client.find(Locator::Css(r#"form.login button[type="submit"]"#)).await.expect("log in").click().await.unwrap();
    wait_for(client, "location.pathname === '/audio' && document.querySelector('h1')", "the recordings", PAGE_TIMEOUT)
        .await;
}

async fn upload_through_the_page(client: &Client, base: &str, fixture_name: &str, expected_id: u64) {
    client.goto(&format!("{base}/audio")).await.expect("open recordings");
    let files = client.find(Locator::Id("upload-files")).await.expect("file input");
    files.send_keys(&fixture(fixture_name).display().to_string()).await.expect("choose the file");
    client.find(Locator::Id("upload-folder")).await.expect("folder input").send_keys("browser/site-a").await.unwrap();
    client
        .find(Locator::Css(r#"form[action="/audio/upload"] button[type="submit"]"#))
        .await
        .expect("upload button")
        .click()
        .await
        .expect("press upload");
    wait_for(
        client,
        &format!(r#"document.querySelector('a[href="/audio/{expected_id}"]')"#),
        "the upload result",
        PAGE_TIMEOUT,
    )
    .await;
}

/// Runs the next queued processing job on a worker of the test's own: the app has no processing
/// worker, so the job page is open, showing the job queued, before anything happens to it.
async fn run_next_processing_job(app: &TestApp) -> ProcessingJobId {
    let humpback = app.humpback.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        ProcessingWorker::new(humpback, WorkerId("browser-test".into()), Arc::new(AtomicBool::new(false))).step()
    })
    .await
    .expect("worker task")
    .expect("worker step");
    match outcome {
        StepOutcome::Ran { job_id, status: JobStatus::Complete } => job_id,
        other => panic!("the processing job did not complete: {other:?}"),
    }
}

/// Queues processing with the fake model from the recording page and lands on the job's page.
async fn queue_from_the_recording_page(client: &Client, base: &str, audio_id: u64) {
    client.goto(&format!("{base}/audio/{audio_id}")).await.expect("open the recording");
    let summary = Locator::XPath("//summary[contains(., 'Queue processing of this recording')]");
    client.find(summary).await.expect("queue section").click().await.unwrap();
    client.find(Locator::Id("queue-this-model")).await.expect("model choice").select_by_value("fake").await.unwrap();
    for field in ["queue-this-window", "queue-this-hop", "queue-this-rate"] {
        // Empty fields take the model's own window, hop and sample rate.
        client.find(Locator::Id(field)).await.expect("encoding field").clear().await.unwrap();
    }
    client.find(Locator::Css(r#"button[form="queue-this"]"#)).await.expect("queue button").click().await.unwrap();
    wait_for(client, "location.pathname.indexOf('/processing/') === 0", "the processing job page", PAGE_TIMEOUT).await;
    let status = client
        .execute(r#"return document.querySelector('[data-job-id] [data-field="status"]').textContent"#, vec![])
        .await
        .expect("the job's status");
    assert_eq!(status, json!("queued"), "with no worker the new job waits");
}

/// What the job page must show once its job is complete, without a reload: the status, the full
/// progress bar, the embedding set link, no cancel button, and the completion among its events.
async fn wait_for_the_page_to_show_completion(client: &Client, app: &TestApp, job_id: ProcessingJobId, document: &str) {
    let shown = wait_for(
        client,
        &r#"(() => {
            const root = DOCUMENT.querySelector('[data-job-id]');
            const bar = root.querySelector('progress[data-field="progress"]');
            const set = root.querySelector('[data-field="embedding-set-row"]');
            const cancel = root.querySelector('form[action$="/cancel"]');
            return root.querySelector('[data-field="status"]').textContent === 'complete'
                && !bar.hidden && bar.max > 0 && bar.value === bar.max
                && !set.hidden && cancel.hidden
                && DOCUMENT.querySelector('#job-events').textContent.includes('ProcessingJobCompleted')
                // With nothing left in flight the page lets go of its event stream.
                && !DOCUMENT.documentElement.hasAttribute('data-live')
                && DOCUMENT.querySelector('[data-job-id]').querySelector('[data-field="embedding-set-download"]').getAttribute('href');
        })()"#
            .replace("DOCUMENT", document),
        "the job page to show the job complete",
        JOB_TIMEOUT,
    )
    .await;
    let job = app
        .humpback
        .reader
        .with_connection(|connection| humpback::projections::queries::processing_job(connection, job_id.0))
        .expect("read the job");
    let set_id = job.and_then(|job| job.embedding_set_id).expect("the job's embedding set");
    assert_eq!(shown, json!(format!("/api/embedding-sets/{set_id}/download")));
    let not_reloaded =
        client.execute(&format!("return {document}.defaultView.humpbackNotReloaded === true"), vec![]).await.unwrap();
    assert_eq!(not_reloaded, json!(true), "the page changed without being reloaded");
}

/// The job page follows its job to completion by itself, live.
async fn process_watching_the_job_page(client: &Client, app: &TestApp, audio_id: u64) {
    queue_from_the_recording_page(client, &app.base_url, audio_id).await;
    client.execute("window.humpbackNotReloaded = true;", vec![]).await.unwrap();
    let job_id = run_next_processing_job(app).await;
    wait_for_the_page_to_show_completion(client, app, job_id, "document").await;
}

/// A job that finishes between the server rendering its page and the page's script connecting
/// to the event stream is still followed to completion. The page is fetched while the job is
/// queued, the job runs, and only then is the fetched page shown (in a same-origin frame on a
/// page with no stream of its own) so its script connects after everything has happened. A
/// stream that started at the log's head would leave it showing "queued" for ever.
async fn process_with_the_page_rendered_before_the_job_ran(client: &Client, app: &TestApp, audio_id: u64) {
    queue_from_the_recording_page(client, &app.base_url, audio_id).await;
    let job_page = client.current_url().await.expect("job page url").to_string();
    client.goto(&format!("{}/models", app.base_url)).await.unwrap();
    let rendered = client
        .execute_async(
            "const done = arguments[arguments.length - 1];
             fetch(arguments[0]).then(response => response.text()).then(done, error => done('failed: ' + error));",
            vec![json!(job_page)],
        )
        .await
        .expect("fetch the job page");
    let rendered = rendered.as_str().unwrap_or_default().to_string();
    assert!(rendered.contains("data-events-after=") && rendered.contains(">queued<"), "the page as rendered");
    let job_id = run_next_processing_job(app).await;
    client
        .execute(
            "const frame = document.createElement('iframe');
             frame.id = 'rendered-earlier';
             frame.style.width = '1200px';
             frame.style.height = '800px';
             let loads = 0;
             frame.onload = () => { loads += 1; frame.contentWindow.humpbackNotReloaded = loads === 1; };
             frame.srcdoc = arguments[0];
             document.body.append(frame);",
            vec![json!(rendered)],
        )
        .await
        .expect("show the page rendered before the job ran");
    let frame_document = "document.querySelector('#rendered-earlier').contentDocument";
    wait_for(client, &format!("{frame_document}.defaultView.humpbackNotReloaded"), "the frame to load", PAGE_TIMEOUT)
        .await;
    wait_for_the_page_to_show_completion(client, app, job_id, frame_document).await;
    client.execute("document.querySelector('#rendered-earlier').remove();", vec![]).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_person_uploads_processes_clusters_explores_and_listens_in_a_real_browser() {
    if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
        eprintln!("skipped: chromium/chromedriver not installed (apt-get install chromium chromium-driver)");
        return;
    }
    // No processing worker: the test runs each job itself once the job's page is open. The
    // server needs a token, so the browser logs in once and every page, form, fetch and event
    // stream below runs on its session cookie (and its same-origin requests pass the guard).
    let settings = Settings {
        processing_workers: 0,
        access: AccessSettings { token: AccessToken::new(BROWSER_TOKEN), ..AccessSettings::default() },
        ..crate::processing::settings(1)
    };
    let app = spawn_app_with(tempfile::tempdir().unwrap(), settings).await;
    let base = app.base_url.clone();
    let driver = start_chromedriver().await;
    let profile = tempfile::tempdir().unwrap();
    let client = start_browser(&driver, profile.path()).await;
    log_in(&client, &base).await;

    upload_through_the_page(&client, &base, "wav_pcm16_mono_16k.wav", 1).await;
    screenshot(&client, "upload-result").await;
    process_watching_the_job_page(&client, &app, 1).await;
    screenshot(&client, "processing-job").await;
    upload_through_the_page(&client, &base, "flac16_mono_16k.flac", 2).await;
    process_with_the_page_rendered_before_the_job_ran(&client, &app, 2).await;
    client.goto(&format!("{base}/audio/1")).await.unwrap();
    screenshot(&client, "recording").await;
    client.goto(&format!("{base}/audio")).await.unwrap();
    screenshot(&client, "recordings").await;

    // Cluster both sets: k-means with k=2 after PCA to 2 components.
    client.goto(&format!("{base}/clustering")).await.unwrap();
    client.find(Locator::Css("#clustering-form details summary")).await.unwrap().click().await.unwrap();
    for set in ["set-1", "set-2"] {
        client.find(Locator::Id(set)).await.expect("embedding set checkbox").click().await.unwrap();
    }
    // The form says what the choice covers as it changes.
    wait_for(
        &client,
        "document.querySelector('#selection-summary').textContent.includes('2 sets, 35 windows')",
        "the selection summary",
        PAGE_TIMEOUT,
    )
    .await;
    client
        .find(Locator::Css(r#"select[name="reduction_method"]"#))
        .await
        .unwrap()
        .select_by_value("pca")
        .await
        .unwrap();
    let components = client.find(Locator::Css(r#"input[name="reduction_n_components"]"#)).await.unwrap();
    components.clear().await.unwrap();
    components.send_keys("2").await.unwrap();
    client
        .find(Locator::Css(r#"select[name="algorithm_method"]"#))
        .await
        .unwrap()
        .select_by_value("kmeans")
        .await
        .unwrap();
    let k = client.find(Locator::Css(r#"input[name="k"]"#)).await.unwrap();
    k.clear().await.unwrap();
    k.send_keys("2").await.unwrap();
    // Also compare k from 2 to 4 on the same reduced data.
    client.find(Locator::Css(r#"select[name="sweep_method"]"#)).await.unwrap().select_by_value("kmeans").await.unwrap();
    client.find(Locator::Css(r#"input[name="sweep_from"]"#)).await.unwrap().send_keys("2").await.unwrap();
    client.find(Locator::Css(r#"input[name="sweep_to"]"#)).await.unwrap().send_keys("4").await.unwrap();
    screenshot(&client, "clustering-form").await;
    client.find(Locator::Css(r#"#clustering-form button[type="submit"]"#)).await.unwrap().click().await.unwrap();
    wait_for(&client, "location.pathname === '/clustering/1'", "the clustering job page", PAGE_TIMEOUT).await;

    // The page reloads itself when the job completes; then scatter.js draws the points.
    wait_for(
        &client,
        r#"document.querySelector('canvas#scatter[data-drawn="true"]')"#,
        "the scatter plot to be drawn",
        JOB_TIMEOUT,
    )
    .await;
    let count =
        wait_for(&client, "Number(document.querySelector('#scatter').dataset.pointCount)", "points", PAGE_TIMEOUT)
            .await;
    assert!(count.as_f64().unwrap_or(0.0) >= 2.0, "points drawn: {count}");
    let sweep_rows = client.execute("return document.querySelectorAll('table.sweep tbody tr').length", vec![]).await;
    assert_eq!(sweep_rows.unwrap(), json!(3), "one sweep row per k in 2..=4");
    let position = client
        .execute(
            "const canvas = document.querySelector('#scatter');
             canvas.scrollIntoView({block: 'center'});
             const box = canvas.getBoundingClientRect();
             return [box.left + Number(canvas.dataset.firstPointX), box.top + Number(canvas.dataset.firstPointY)];",
            vec![],
        )
        .await
        .expect("point position");
    let (x, y) = (position[0].as_f64().unwrap_or(0.0), position[1].as_f64().unwrap_or(0.0));
    let hover =
        MouseActions::new("mouse".into()).then(PointerAction::MoveTo { duration: None, x: x.round(), y: y.round() });
    client.perform_actions(hover).await.expect("move the mouse over a point");
    let tooltip = wait_for(
        &client,
        "(() => { const t = document.querySelector('#scatter-tooltip'); return t && !t.hidden ? t.textContent : ''; })()",
        "the tooltip",
        PAGE_TIMEOUT,
    )
    .await;
    let tooltip = tooltip.as_str().unwrap_or_default().to_string();
    assert!(
        (tooltip.contains("wav_pcm16_mono_16k.wav") || tooltip.contains("flac16_mono_16k.flac"))
            && tooltip.contains(" s · ")
            && tooltip.contains("cluster"),
        "tooltip: {tooltip}"
    );
    screenshot(&client, "clustering-job").await;

    // A cluster page: press play on the first window and see the audio load.
    let cluster_href = wait_for(
        &client,
        r#"(document.querySelector('#clusters a[href^="/clusters/"]') || {}).href"#,
        "a cluster link",
        PAGE_TIMEOUT,
    )
    .await;
    client.goto(cluster_href.as_str().unwrap_or_default()).await.unwrap();
    // Members are tiles: focus the first one and press space to play it.
    wait_for(&client, "document.querySelector('#members .tile')", "the member tiles", PAGE_TIMEOUT).await;
    client.execute("document.querySelector('#members .tile').focus();", vec![]).await.unwrap();
    press_key(&client, ' ').await;
    wait_for(
        &client,
        "(() => { const a = document.querySelector('audio.tile-player');
                  return a && a.readyState >= 1 && a.duration > 0
                      && document.querySelector('#members .tile').classList.contains('playing'); })()",
        "the window audio to load",
        PAGE_TIMEOUT,
    )
    .await;
    wait_for(
        &client,
        "(() => { const images = [...document.querySelectorAll('#members img')];
                  images.forEach(i => { i.loading = 'eager'; });
                  return images.length > 0 && images.every(i => i.complete && i.naturalWidth === 160); })()",
        "every spectrogram thumbnail",
        PAGE_TIMEOUT,
    )
    .await;
    screenshot(&client, "cluster").await;
    lasso_annotate_colour_and_find_similar(&client, &app, 1).await;
    confirm_and_reject_detections(&client, &app).await;
    client.goto(&format!("{base}/models")).await.unwrap();
    screenshot(&client, "models").await;
    for (path, name) in [("/", "home"), ("/processing", "processing"), ("/events", "events")] {
        client.goto(&format!("{base}{path}")).await.unwrap();
        screenshot(&client, name).await;
    }

    client.close().await.expect("close the browser session");
    drop(driver);
}

/// The map as a workbench: lasso every point, annotate the selection in one action, colour the
/// map by annotation label and see the label in the legend; then "find similar" from a tile of
/// the selection lands on search results.
async fn lasso_annotate_colour_and_find_similar(client: &Client, app: &TestApp, job_id: u64) {
    let base = &app.base_url;
    client.goto(&format!("{base}/clustering/{job_id}")).await.unwrap();
    wait_for(client, r#"document.querySelector('canvas#scatter[data-drawn="true"]')"#, "the map", PAGE_TIMEOUT).await;
    client
        .find(Locator::Css(r#"input[name="map-mode"][value="lasso"]"#))
        .await
        .expect("lasso mode")
        .click()
        .await
        .unwrap();
    let corners = client
        .execute(
            "const canvas = document.querySelector('#scatter');
             canvas.scrollIntoView({block: 'center'});
             const box = canvas.getBoundingClientRect();
             return [box.left + 3, box.top + 3, box.right - 3, box.bottom - 3];",
            vec![],
        )
        .await
        .expect("canvas box");
    let corner = |index: usize| corners[index].as_f64().unwrap_or(0.0).round();
    let (left, top, right, bottom) = (corner(0), corner(1), corner(2), corner(3));
    let mut lasso = MouseActions::new("lasso".into())
        .then(PointerAction::MoveTo { duration: None, x: left, y: top })
        .then(PointerAction::Down { button: fantoccini::actions::MOUSE_BUTTON_LEFT });
    for (x, y) in [(right, top), (right, bottom), (left, bottom), (left, top + 2.0)] {
        lasso = lasso.then(PointerAction::MoveTo { duration: Some(Duration::from_millis(80)), x, y });
    }
    lasso = lasso.then(PointerAction::Up { button: fantoccini::actions::MOUSE_BUTTON_LEFT });
    client.perform_actions(lasso).await.expect("draw a lasso around the map");
    let selected = wait_for(
        client,
        "(() => { const panel = document.querySelector('#selection-panel');
                  return panel && !panel.hidden
                      && Number(panel.querySelector('[data-field=\"selection-count\"]').textContent); })()",
        "the selection panel",
        PAGE_TIMEOUT,
    )
    .await;
    let drawn = client.execute("return Number(document.querySelector('#scatter').dataset.pointCount)", vec![]).await;
    assert_eq!(Some(selected.clone()), drawn.ok(), "the lasso around the whole map selects every point");
    wait_for(
        client,
        "document.querySelectorAll('#selection-tiles .tile').length",
        "the selection's tiles",
        PAGE_TIMEOUT,
    )
    .await;
    client.find(Locator::Id("selection-label")).await.expect("label field").send_keys("song unit A").await.unwrap();
    client.find(Locator::Css("#selection-annotate button[type=submit]")).await.unwrap().click().await.unwrap();
    wait_for(
        client,
        "document.querySelector('#selection-panel [data-field=\"selection-status\"]').textContent.includes('annotated as')",
        "the annotation to be recorded",
        PAGE_TIMEOUT,
    )
    .await;
    let (status, listed) =
        crate::api_get_with_token(&app.url("/api/annotations?label=song%20unit%20A&limit=1"), Some(BROWSER_TOKEN))
            .await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(Some(listed["total"].clone()), Some(selected), "one annotation per selected window");
    client.find(Locator::Id("map-colour")).await.unwrap().select_by_value("annotation").await.unwrap();
    wait_for(
        client,
        "document.querySelector('#map-legend').textContent.includes('song unit A')",
        "the label in the legend",
        PAGE_TIMEOUT,
    )
    .await;
    screenshot(client, "map-workbench").await;
    client
        .find(Locator::Css(r#"#selection-tiles .tile a[data-action="similar"]"#))
        .await
        .expect("find similar on a tile")
        .click()
        .await
        .unwrap();
    wait_for(
        client,
        "location.pathname === '/search' && document.querySelectorAll('#results .tile').length",
        "search results",
        PAGE_TIMEOUT,
    )
    .await;
    screenshot(client, "search").await;
}

/// The review loop: a classifier trained on annotated windows, a detection job over both sets
/// (threshold 0: one detection per recording), then on the detection job page "c" on the best
/// tile confirms it (a positive annotation) and "r" on the next rejects it (a negative one),
/// checked through the API.
async fn confirm_and_reject_detections(client: &Client, app: &TestApp) {
    use humpback::domain::decide::Command as DomainCommand;
    use humpback::domain::events::AnnotationKind;
    let base = &app.base_url;
    for (audio, kind) in [(1, AnnotationKind::Positive), (2, AnnotationKind::Negative)] {
        let length = app
            .humpback
            .writer
            .read_state(|s| s.audio_files[&humpback::domain::ids::AudioFileId(audio)].duration_seconds);
        app.humpback.execute(crate::helpers::annotate(audio, 0.0, length / 2.0, "call", kind)).await.unwrap();
    }
    let model_version =
        app.humpback.writer.read_state(|s| s.embedding_sets.values().next().unwrap().model_version.clone());
    let request = json!({"labels": ["call"], "model_version": model_version, "folds": 2});
    let queued = app
        .humpback
        .execute(DomainCommand::QueueClassifierTraining {
            labels: vec!["call".into()],
            model_version: model_version.clone(),
            request: humpback::domain::json_text::JsonText::from_value(&request),
        })
        .await
        .unwrap();
    let classifier = queued
        .iter()
        .find_map(|e| match &e.event {
            humpback::domain::events::Event::ClassifierTrainingQueued(q) => Some(q.classifier_id),
            _ => None,
        })
        .unwrap();
    assert_eq!(crate::classifiers::wait_for_training(app, classifier.0).await, JobStatus::Complete);
    let sets = app.humpback.writer.read_state(|s| s.embedding_sets.keys().copied().collect());
    app.humpback
        .execute(DomainCommand::QueueDetectionJob {
            classifier_id: classifier,
            embedding_set_ids: sets,
            threshold: Some(0.0),
            scope: humpback::domain::json_text::JsonText::from_value(&json!({})),
        })
        .await
        .unwrap();
    assert_eq!(crate::classifiers::wait_for_detection(app, 1).await, JobStatus::Complete);
    let count = |kind: &'static str| async move {
        let (status, page) = crate::api_get_with_token(
            &app.url(&format!("/api/annotations?label=call&kind={kind}&limit=10")),
            Some(BROWSER_TOKEN),
        )
        .await;
        assert_eq!(status, 200, "{page}");
        page["total"].as_u64().unwrap()
    };
    assert_eq!((count("positive").await, count("negative").await), (1, 1));

    client.goto(&format!("{base}/detection-jobs/1")).await.unwrap();
    wait_for(
        client,
        "document.querySelectorAll('#detections .tile[data-review-label]').length >= 2",
        "the detection tiles",
        PAGE_TIMEOUT,
    )
    .await;
    client.execute("document.querySelector('#detections .tile').focus();", vec![]).await.unwrap();
    press_key(client, 'c').await;
    wait_for(
        client,
        "document.querySelectorAll('#detections .tile')[0].classList.contains('confirmed') && document.activeElement === document.querySelectorAll('#detections .tile')[1]",
        "the first detection confirmed and the next one focused",
        PAGE_TIMEOUT,
    )
    .await;
    press_key(client, 'r').await;
    wait_for(
        client,
        "document.querySelectorAll('#detections .tile')[1].classList.contains('rejected')",
        "the second detection rejected",
        PAGE_TIMEOUT,
    )
    .await;
    assert_eq!((count("positive").await, count("negative").await), (2, 2), "one positive and one negative more");
    let first_audio = client
        .execute("return Number(document.querySelectorAll('#detections .tile')[0].dataset.audio)", vec![])
        .await
        .unwrap();
    let (_, confirmed) = crate::api_get_with_token(
        &app.url(&format!("/api/annotations?label=call&kind=positive&audio_file_id={first_audio}&limit=10")),
        Some(BROWSER_TOKEN),
    )
    .await;
    assert_eq!(confirmed["total"], if first_audio == json!(1) { 2 } else { 1 }, "{confirmed}");
    screenshot(client, "detection-job").await;
    client.goto(&format!("{base}/classifiers")).await.unwrap();
    screenshot(client, "classifiers").await;
    client.goto(&format!("{base}/classifiers/{}/label-next", classifier.0)).await.unwrap();
    screenshot(client, "label-next").await;
}
