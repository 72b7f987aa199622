//! Audio listing, detail, download with ranges, and metadata edits through the API.

use humpback::log::EventLog;
use serde_json::{json, Value};

use crate::helpers::{register, sample_session, spawn_app};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

async fn call(method: &'static str, url: String, body: Option<String>) -> (u16, Value) {
    tokio::task::spawn_blocking(move || {
        let agent = agent();
        let mut response = match (method, body) {
            ("GET", _) => agent.get(&url).call(),
            ("PUT", Some(body)) => agent.put(&url).header("content-type", "application/json").send(body),
            ("PATCH", Some(body)) => agent
                .patch(&url)
                .header("content-type", "application/json")
                .header("x-humpback-user", "observer@example.org")
                .send(body),
            _ => unreachable!(),
        }
        .expect("request");
        let status = response.status().as_u16();
        (status, response.body_mut().read_json::<Value>().unwrap_or(Value::Null))
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_files_are_listed_searched_sorted_and_paged() {
    let app = spawn_app().await;
    for index in 1..=7 {
        app.humpback.execute(register(index)).await.unwrap();
    }
    let (status, page) = call("GET", app.url("/api/audio?limit=3"), None).await;
    assert_eq!(status, 200);
    assert_eq!(page["total"], 7);
    assert_eq!(page["items"].as_array().unwrap().len(), 3);
    assert_eq!(page["items"][0]["id"], 1);

    let (_, folder) = call("GET", app.url("/api/audio?folder=site-1"), None).await;
    let ids: Vec<u64> = folder["items"].as_array().unwrap().iter().map(|f| f["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, vec![1, 4, 7]);

    let (_, sorted) = call("GET", app.url("/api/audio?sort=duration&order=desc&limit=2"), None).await;
    assert_eq!(sorted["items"][0]["id"], 7);

    let (_, searched) = call("GET", app.url("/api/audio?search=alert(5)"), None).await;
    assert_eq!(searched["total"], 1);
    assert_eq!(searched["items"][0]["filename"], "<script>alert(5)</script>.wav");

    let (status, body) = call("GET", app.url("/api/audio?sort=loudness"), None).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("sort"), "{body}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audio_file_shows_its_metadata_jobs_and_embedding_sets() {
    let app = spawn_app().await;
    for command in sample_session() {
        app.humpback.execute(crate::helpers::with_assignments_file(app.data_dir.path(), command)).await.unwrap();
    }
    let (status, detail) = call("GET", app.url("/api/audio/1"), None).await;
    assert_eq!(status, 200);
    assert_eq!(detail["id"], 1);
    assert_eq!(detail["metadata"]["visual_observations"]["count"], 5);
    assert_eq!(detail["processing_jobs"][0]["status"], "complete");
    assert_eq!(detail["embedding_sets"][0]["vector_dim"], 16);
    let (status, body) = call("GET", app.url("/api/audio/999"), None).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "audio file 999 does not exist");
    let (status, _) = call("GET", app.url("/api/audio/nope"), None).await;
    assert_eq!(status, 400);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_is_replaced_by_put_merged_by_patch_and_every_edit_is_an_event() {
    let app = spawn_app().await;
    app.humpback.execute(register(1)).await.unwrap();
    let url = app.url("/api/audio/1/metadata");

    let (status, empty) = call("GET", url.clone(), None).await;
    assert_eq!(status, 200);
    assert_eq!(empty["tag_data"], json!({}));

    let (status, put) = call(
        "PUT",
        url.clone(),
        Some(json!({"group_composition": {"adults": 2, "calves": 1}, "tag_data": {"tag": "DTAG"}}).to_string()),
    )
    .await;
    assert_eq!(status, 200, "{put}");
    assert_eq!(put["group_composition"], json!({"adults": 2, "calves": 1}));

    let (status, patched) = call(
        "PATCH",
        url.clone(),
        Some(
            json!({"group_composition": {"calves": null, "juveniles": 1}, "prey_density_proxy": {"krill": "high"}})
                .to_string(),
        ),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["group_composition"], json!({"adults": 2, "juveniles": 1}));
    assert_eq!(patched["tag_data"], json!({"tag": "DTAG"}), "PATCH leaves other fields alone");
    assert_eq!(patched["prey_density_proxy"], json!({"krill": "high"}));
    assert_eq!(patched["history"].as_array().unwrap().len(), 2);
    assert_eq!(patched["history"][0]["edited_by"], "observer@example.org");

    let (status, replaced) = call("PUT", url.clone(), Some(json!({"tag_data": {"tag": "CATS"}}).to_string())).await;
    assert_eq!(status, 200);
    assert_eq!(replaced["group_composition"], json!({}), "PUT replaces the whole metadata");

    let edits = app
        .humpback
        .log
        .scan(humpback::domain::ids::EventSeq(1)..=humpback::domain::ids::EventSeq(u64::MAX), false)
        .filter(|e| e.as_ref().unwrap().event.type_name() == "AudioMetadataEdited")
        .count();
    assert_eq!(edits, 3);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_metadata_gets_422_with_the_reason_and_changes_nothing() {
    let app = spawn_app().await;
    app.humpback.execute(register(1)).await.unwrap();
    let url = app.url("/api/audio/1/metadata");
    let head = app.humpback.log.head();
    for (body, reason) in [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        (r#"{"tag_data": [1]}"#, "tag_data must be a JSON object"),
        (r#"{"tag_data": "DTAG"}"#, "not a string"),
        (r#"{"weather": {}}"#, "unknown metadata field \"weather\""),
        ("{}", "changes no field"),
    ] {
        let (status, answer) = call("PATCH", url.clone(), Some(body.to_string())).await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(reason), "{body}: {answer}");
    }
    assert_eq!(app.humpback.log.head(), head, "no event was recorded");
    let (status, _) = call("PUT", app.url("/api/audio/42/metadata"), Some("{}".into())).await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_downloads_whole_or_by_range_under_a_safe_name() {
    let app = spawn_app().await;
    app.humpback.execute(register(1)).await.unwrap();
    let stored = app.data_dir.path().join("audio/raw/1/original.wav");
    std::fs::create_dir_all(stored.parent().unwrap()).unwrap();
    let bytes: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
    std::fs::write(&stored, &bytes).unwrap();
    let url = app.url("/api/audio/1/download");
    let (whole, partial) = tokio::task::spawn_blocking(move || {
        let agent = agent();
        let mut whole = agent.get(&url).call().unwrap();
        let disposition = whole.headers().get("content-disposition").unwrap().to_str().unwrap().to_string();
        let whole_bytes = whole.body_mut().read_to_vec().unwrap();
        let mut partial = agent.get(&url).header("range", "bytes=100-199").call().unwrap();
        let status = partial.status().as_u16();
        let range = partial.headers().get("content-range").unwrap().to_str().unwrap().to_string();
        ((whole_bytes, disposition), (status, range, partial.body_mut().read_to_vec().unwrap()))
    })
    .await
    .unwrap();
    assert_eq!(whole.0, bytes);
    assert_eq!(whole.1, "attachment; filename=\"scriptalert1script.wav\"");
    assert_eq!(partial.0, 206);
    assert_eq!(partial.1, "bytes 100-199/10000");
    assert_eq!(partial.2, bytes[100..200]);
    app.stop().await;
}
