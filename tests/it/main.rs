//! Integration tests: one binary (link once), one module per area.

mod access;
mod annotations;
mod api;
mod audio_api;
mod browser;
mod classifier_crash;
mod classifiers;
mod cli;
mod clustering;
mod crash;
mod golden_events;
mod helpers;
mod ingest_api;
mod models;
mod module_graph;
mod object_storage;
mod processing;
mod processing_crash;
mod projections;
mod recording_time;
mod remote_workers;
mod roundtrip;
mod search;
mod ui_pages;

/// GET a URL and read its JSON body (any status).
pub async fn api_get(url: &str) -> (u16, serde_json::Value) {
    api_get_with_token(url, None).await
}

/// GET a URL with the server's access token, and read its JSON body (any status).
pub async fn api_get_with_token(url: &str, token: Option<&str>) -> (u16, serde_json::Value) {
    let url = url.to_string();
    let token = token.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut request = agent.get(&url);
        if let Some(token) = token {
            request = request.header("authorization", &format!("Bearer {token}"));
        }
        let mut response = request.call().expect("request");
        let status = response.status().as_u16();
        (status, response.body_mut().read_json::<serde_json::Value>().unwrap_or(serde_json::Value::Null))
    })
    .await
    .expect("request task")
}
