//! A small blocking client of humpback's JSON API, for CLI commands that go through a server.

use std::time::Duration;

use anyhow::{anyhow, Context};
use serde::de::DeserializeOwned;

pub struct ServerClient {
    base_url: String,
    agent: ureq::Agent,
    /// Sent as `Authorization: Bearer ...` when the server needs it; never printed.
    token: Option<crate::http::access::AccessToken>,
}

/// Responses can be large (a page of 1000 events).
const BODY_LIMIT: u64 = 256 * 1024 * 1024;

impl ServerClient {
    /// `server` is a URL (`http://127.0.0.1:8080`) or a bind address (`127.0.0.1:8080`).
    pub fn new(server: &str, token: Option<crate::http::access::AccessToken>) -> ServerClient {
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
        ServerClient { base_url, agent, token }
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
        if let Some(token) = &self.token {
            request = request.header("authorization", &format!("Bearer {}", token.expose()));
        }
        for (name, value) in query {
            request = request.query(*name, value);
        }
        let response = request.call().with_context(|| format!("cannot reach {url}"))?;
        Self::read(url, response)
    }

    pub fn post_json<T: DeserializeOwned>(&self, path: &str, body: &serde_json::Value) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base_url);
        let response =
            self.authorized(self.agent.post(&url)).send_json(body).with_context(|| format!("cannot reach {url}"))?;
        Self::read(url, response)
    }

    fn authorized<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(token) => request.header("authorization", &format!("Bearer {}", token.expose())),
            None => request,
        }
    }

    /// Uploads one file as `POST /api/audio` (multipart, streamed from disk, with its folder):
    /// the HTTP status and the JSON answer (the audio file, or `{"error"}`).
    pub fn upload_recording(
        &self,
        file: &std::path::Path,
        filename: &str,
        folder: &str,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        use std::io::Read;
        let url = format!("{}/api/audio", self.base_url);
        let boundary = "humpback-cli-boundary-5c0ffee";
        let quoted = |text: &str| text.replace(['"', '\r', '\n'], "_");
        let head = format!(
            "--{boundary}\r\ncontent-disposition: form-data; name=\"folder\"\r\n\r\n{folder}\r\n--{boundary}\r\n\
             content-disposition: form-data; name=\"file\"; filename=\"{}\"\r\ncontent-type: application/octet-stream\r\n\r\n",
            quoted(filename)
        );
        let tail = format!("\r\n--{boundary}--\r\n");
        let opened = std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
        let body = std::io::Cursor::new(head.into_bytes()).chain(opened).chain(std::io::Cursor::new(tail.into_bytes()));
        let mut response = self
            .authorized(self.agent.post(&url))
            .header("content-type", &format!("multipart/form-data; boundary={boundary}"))
            .send(ureq::SendBody::from_owned_reader(body))
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status().as_u16();
        let text = response.body_mut().with_config().limit(BODY_LIMIT).read_to_string().unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or_else(|_| serde_json::json!({ "error": text }));
        Ok((status, json))
    }

    /// Any request: the status and the body as bytes (for tables and multipart uploads).
    pub fn send_raw(
        &self,
        method: &str,
        path_and_query: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> anyhow::Result<(u16, Vec<u8>)> {
        let url = format!("{}{path_and_query}", self.base_url);
        let response = match method {
            "POST" => {
                let mut request = self.authorized(self.agent.post(&url));
                if let Some(content_type) = content_type {
                    request = request.header("content-type", content_type);
                }
                request.send(&body[..])
            }
            _ => self.authorized(self.agent.get(&url)).call(),
        };
        let mut response = response.with_context(|| format!("cannot reach {url}"))?;
        let status = response.status().as_u16();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(BODY_LIMIT)
            .read_to_vec()
            .with_context(|| format!("reading the answer of {url}"))?;
        Ok((status, bytes))
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
            .authorized(self.agent.post(&url))
            .header("content-type", format!("multipart/form-data; boundary={boundary}"))
            .send(&body[..])
            .with_context(|| format!("cannot reach {url}"))?;
        Self::read(url, response)
    }

    /// Uploads a model file as `POST /api/models` (multipart, with its name, sample rate and
    /// output): the HTTP status and the JSON answer (the model, or `{"error"}`).
    pub fn upload_model(&self, upload: &crate::model::ModelUpload) -> anyhow::Result<(u16, serde_json::Value)> {
        let url = format!("{}/api/models", self.base_url);
        let boundary = "humpback-cli-model-boundary-5c0ffee";
        let quoted = |text: &str| text.replace(['"', '\r', '\n'], "_");
        let mut body = Vec::with_capacity(upload.bytes.len() + 1024);
        let text_fields = [
            ("name", upload.name.clone()),
            ("sample_rate", upload.sample_rate.map(|rate| rate.to_string())),
            ("output", upload.output_name.clone()),
        ];
        for (field, value) in text_fields {
            if let Some(value) = value {
                body.extend_from_slice(
                    format!(
                        "--{boundary}\r\ncontent-disposition: form-data; name=\"{field}\"\r\n\r\n{}\r\n",
                        quoted(&value)
                    )
                    .as_bytes(),
                );
            }
        }
        body.extend_from_slice(
            format!(
                "--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"{}\"\r\n\
                 content-type: application/octet-stream\r\n\r\n",
                quoted(&upload.file_name)
            )
            .as_bytes(),
        );
        body.extend_from_slice(&upload.bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let mut response = self
            .authorized(self.agent.post(&url))
            .header("content-type", &format!("multipart/form-data; boundary={boundary}"))
            .send(&body[..])
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status().as_u16();
        let text = response.body_mut().with_config().limit(BODY_LIMIT).read_to_string().unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or_else(|_| serde_json::json!({ "error": text }));
        Ok((status, json))
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
