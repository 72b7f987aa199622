//! A small blocking client of humpback's JSON API, for CLI commands that go through a server.

use std::time::Duration;

use anyhow::{anyhow, Context};
use serde::de::DeserializeOwned;

pub struct ServerClient {
    base_url: String,
    agent: ureq::Agent,
}

/// Responses can be large (a page of 1000 events).
const BODY_LIMIT: u64 = 256 * 1024 * 1024;

impl ServerClient {
    /// `server` is a URL (`http://127.0.0.1:8080`) or a bind address (`127.0.0.1:8080`).
    pub fn new(server: &str) -> ServerClient {
        let base_url = if server.starts_with("http://") || server.starts_with("https://") {
            server.trim_end_matches('/').to_string()
        } else {
            format!("http://{}", server.trim_end_matches('/'))
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(120)))
            .http_status_as_error(false)
            .build()
            .into();
        ServerClient { base_url, agent }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Whether a humpback server answers at this address.
    pub fn is_humpback(&self) -> Result<(), String> {
        let health: serde_json::Value = self.get("/health", &[]).map_err(|error| format!("{error:#}"))?;
        if health.get("service").and_then(|s| s.as_str()) == Some("humpback") {
            Ok(())
        } else {
            Err("something answered, but it is not a humpback server".into())
        }
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base_url);
        let mut request = self.agent.get(&url);
        for (name, value) in query {
            request = request.query(*name, value);
        }
        let response = request.call().with_context(|| format!("cannot reach {url}"))?;
        Self::read(url, response)
    }

    pub fn post_json<T: DeserializeOwned>(&self, path: &str, body: &serde_json::Value) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base_url);
        let response = self.agent.post(&url).send_json(body).with_context(|| format!("cannot reach {url}"))?;
        Self::read(url, response)
    }

    /// A multipart form: text fields, then one file field.
    pub fn post_multipart<T: DeserializeOwned>(
        &self,
        path: &str,
        fields: &[(&str, String)],
        (file_field, file_name, bytes): (&str, &str, &[u8]),
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base_url);
        // A boundary from the file's own hash: it cannot be predicted from, and so never chosen to
        // collide with, the bytes it separates.
        let boundary = {
            use sha2::Digest;
            format!("humpback-{}", &crate::ingest::hex(&sha2::Sha256::digest(bytes))[..32])
        };
        let quoted = |text: &str| text.replace(['"', '\r', '\n'], "_");
        let mut body = Vec::with_capacity(bytes.len() + 1024);
        for (name, value) in fields {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"\r\n\r\n{value}\r\n", quoted(name))
                    .as_bytes(),
            );
        }
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\nContent-Type: \
                 application/octet-stream\r\n\r\n",
                quoted(file_field),
                quoted(file_name)
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let response = self
            .agent
            .post(&url)
            .header("content-type", format!("multipart/form-data; boundary={boundary}"))
            .send(&body[..])
            .with_context(|| format!("cannot reach {url}"))?;
        Self::read(url, response)
    }

    fn read<T: DeserializeOwned>(url: String, mut response: ureq::http::Response<ureq::Body>) -> anyhow::Result<T> {
        let status = response.status();
        let text = response
            .body_mut()
            .with_config()
            .limit(BODY_LIMIT)
            .read_to_string()
            .with_context(|| format!("reading the answer of {url}"))?;
        if !status.is_success() {
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|json| json.get("error").and_then(|e| e.as_str()).map(String::from))
                .unwrap_or(text);
            return Err(anyhow!("the server answered {status}: {message}"));
        }
        serde_json::from_str(&text).with_context(|| format!("the answer of {url} is not the expected JSON"))
    }
}
