//! The HTTP API on a real server bound to port 0.

use humpback::log::EventLog;
use serde_json::Value;

use crate::helpers::{sample_session, spawn_app};

fn get(url: &str) -> (u16, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut response = agent.get(url).call().expect("request");
    let status = response.status().as_u16();
    let body = response.body_mut().read_json::<Value>().expect("json body");
    (status, body)
}

async fn get_async(url: String) -> (u16, Value) {
    tokio::task::spawn_blocking(move || get(&url)).await.expect("request task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_with_the_log_head() {
    let app = spawn_app().await;
    let (status, body) = get_async(app.url("/health")).await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ok");
    assert_eq!(body["service"], "humpback");
    // The only events of a fresh data directory register the models it found.
    assert_eq!(body["log_head"], app.humpback.models.models().len());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_listed_filtered_and_paged_while_the_server_holds_the_log() {
    let app = spawn_app().await;
    let base = app.humpback.log.head().0;
    for command in sample_session() {
        app.humpback
            .execute(crate::helpers::with_assignments_file(app.data_dir.path(), command))
            .await
            .expect("command accepted");
    }
    let head = app.humpback.log.head().0;

    let (status, page) = get_async(app.url(&format!("/api/events?limit=5&cursor={base}"))).await;
    assert_eq!(status, 200);
    let seqs: Vec<u64> = page["events"].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (base + 1..=base + 5).collect::<Vec<_>>());
    assert_eq!(page["next_cursor"], base + 5);
    assert_eq!(page["head"], head);

    let (_, next) = get_async(app.url(&format!("/api/events?limit=5&cursor={}", base + 5))).await;
    assert_eq!(next["events"][0]["seq"], base + 6);

    let (_, failed) = get_async(app.url("/api/events?type=ProcessingJobFailed")).await;
    let failed = failed["events"].as_array().unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["data"]["reason"], "decode failed");
    assert_eq!(failed[0]["aggregates"][0], "processing_job:2");

    let (_, about_file) = get_async(app.url("/api/events?aggregate=audio_file:1")).await;
    let types: Vec<&str> =
        about_file["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        vec![
            "AudioFileRegistered",
            "AudioMetadataEdited",
            "AudioMetadataEdited",
            "ProcessingJobQueued",
            "EmbeddingSetPromoted"
        ]
    );

    let (_, newest) = get_async(app.url("/api/events?order=desc&limit=1")).await;
    assert_eq!(newest["events"][0]["seq"], head);
    assert_eq!(newest["events"][0]["type"], "ClusteringJobCompleted");

    let (_, range) = get_async(app.url("/api/events?from_seq=2&to_seq=3")).await;
    assert_eq!(range["events"].as_array().unwrap().len(), 2);

    let (status, one) = get_async(app.url(&format!("/api/events/{}", base + 1))).await;
    assert_eq!(status, 200);
    assert_eq!(one["type"], "AudioFileRegistered");
    assert_eq!(one["data"]["original_filename"], "<script>alert(1)</script>.wav");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_event_queries_get_400_with_the_reason_and_unknown_events_404() {
    let app = spawn_app().await;
    let (status, body) = get_async(app.url("/api/events?type=WhaleSang")).await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("unknown event type"), "{body}");
    let (status, body) = get_async(app.url("/api/events?limit=lots")).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = get_async(app.url("/api/events?aggregate=whale")).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = get_async(app.url("/api/events/99")).await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("does not exist"), "{body}");
    let (status, _) = get_async(app.url("/api/events/abc")).await;
    assert_eq!(status, 400);
    let (status, body) = get_async(app.url("/api/nothing-here")).await;
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("/api/nothing-here"));
    // The server keeps serving after bad requests.
    let (status, _) = get_async(app.url("/health")).await;
    assert_eq!(status, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_returns_as_soon_as_a_new_event_is_recorded() {
    let app = spawn_app().await;
    let baseline = app.humpback.log.subscriber_count();
    let url = app.url(&format!("/api/events?cursor={}&wait_seconds=30", app.humpback.log.head().0));
    let poll = tokio::task::spawn_blocking(move || get(&url));
    // Append only once the handler is parked on the log (its subscription shows up in the
    // receiver count), so that the answer can only come from the long poll waking up.
    while app.humpback.log.subscriber_count() == baseline {
        tokio::task::yield_now().await;
    }
    app.humpback.execute(crate::helpers::register(1)).await.expect("register");
    let (status, page) = poll.await.expect("poll task");
    assert_eq!(status, 200);
    assert_eq!(page["events"][0]["type"], "AudioFileRegistered");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_verify_and_projection_status_are_served() {
    let app = spawn_app().await;
    for command in sample_session() {
        app.humpback
            .execute(crate::helpers::with_assignments_file(app.data_dir.path(), command))
            .await
            .expect("command accepted");
    }
    let head = app.humpback.log.head().0;
    let (_, stats) = get_async(app.url("/api/events/stats")).await;
    assert_eq!(stats["total"], head);
    assert_eq!(stats["by_type"]["AudioFileRegistered"], 3);
    let (_, verify) = get_async(app.url("/api/events/verify")).await;
    assert_eq!(verify["records"], head);
    assert_eq!(verify["first_problem"], Value::Null);
    let (_, projections) = get_async(app.url("/api/projections")).await;
    for projection in projections["projections"].as_array().unwrap() {
        assert_eq!(projection["last_seq"], head, "{projection}");
        assert_eq!(projection["lag"], 0);
    }
    app.stop().await;
}
