//! The recording page's annotation forms: add one, remove one. Both answer with a redirect back
//! to the page carrying a notice (what was done, or why not).

use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Form;
use serde::Deserialize;

use super::{parse_page_id, redirect_with_notice, HtmlError, PageResult};
use crate::domain::annotation_rules::AnnotationFields;
use crate::domain::decide::{AddAnnotations, Command, NewAnnotation};
use crate::domain::events::AnnotationKind;
use crate::domain::ids::{AnnotationId, AudioFileId};
use crate::http::annotations_api::request_user;
use crate::http::{ApiError, ApiState};

#[derive(Debug, Deserialize, Default)]
pub struct AnnotationForm {
    pub start_seconds: Option<String>,
    pub end_seconds: Option<String>,
    pub label: Option<String>,
    pub kind: Option<String>,
    pub low_hz: Option<String>,
    pub high_hz: Option<String>,
    pub note: Option<String>,
}

fn optional_number(text: &Option<String>, field: &str) -> Result<Option<f64>, String> {
    match text.as_deref().map(str::trim).filter(|text| !text.is_empty()) {
        None => Ok(None),
        Some(text) => text.parse::<f64>().map(Some).map_err(|_| format!("{field}: {text:?} is not a number")),
    }
}

fn form_fields(audio_file_id: u64, form: &AnnotationForm) -> Result<AnnotationFields, String> {
    let required = |text: &Option<String>, field: &str| {
        optional_number(text, field)?.ok_or_else(|| format!("{field}: a number is required"))
    };
    Ok(AnnotationFields {
        audio_file_id: AudioFileId(audio_file_id),
        start_seconds: required(&form.start_seconds, "start_seconds")?,
        end_seconds: required(&form.end_seconds, "end_seconds")?,
        low_hz: optional_number(&form.low_hz, "low_hz")?,
        high_hz: optional_number(&form.high_hz, "high_hz")?,
        label: form.label.clone().unwrap_or_default(),
        kind: match form.kind.as_deref().map(str::trim).filter(|kind| !kind.is_empty()) {
            None => AnnotationKind::Positive,
            Some(text) => AnnotationKind::parse(text)
                .ok_or_else(|| format!("kind: {text:?} is not positive, negative or uncertain"))?,
        },
        note: form.note.clone(),
    })
}

async fn run(state: &ApiState, id: u64, command: Command, done: &str) -> PageResult {
    match state.humpback.execute(command).await {
        Ok(_) => Ok(redirect_with_notice(&format!("/audio/{id}"), done, false)),
        Err(error) => {
            let error = ApiError::from(error);
            if error.status.is_server_error() {
                return Err(error.into());
            }
            if error.status == StatusCode::NOT_FOUND && !error.message.starts_with("annotation") {
                return Err(HtmlError::not_found(format!("there is no recording {id}")));
            }
            Ok(redirect_with_notice(&format!("/audio/{id}"), &format!("annotation not saved: {}", error.message), true))
        }
    }
}

/// `POST /audio/{id}/annotations` (form: start_seconds, end_seconds, label, kind, low_hz,
/// high_hz, note).
pub async fn add(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    form: Result<Form<AnnotationForm>, FormRejection>,
) -> PageResult {
    let id = parse_page_id(&id, "recording")?;
    let Form(form) = form?;
    if !state.humpback.writer.read_state(|s| s.audio_files.contains_key(&AudioFileId(id))) {
        return Err(HtmlError::not_found(format!("there is no recording {id}")));
    }
    let fields = match form_fields(id, &form) {
        Ok(fields) => fields,
        Err(reason) => {
            return Ok(redirect_with_notice(&format!("/audio/{id}"), &format!("annotation not saved: {reason}"), true))
        }
    };
    let label = fields.label.trim().to_string();
    let command = Command::AddAnnotations(AddAnnotations {
        annotations: vec![NewAnnotation { fields, source: "manual".into() }],
        created_by: request_user(&headers).or_else(|| Some("web".into())),
    });
    run(&state, id, command, &format!("annotation {label:?} added")).await
}

/// `POST /audio/{id}/annotations/{annotation_id}/delete`.
pub async fn remove(
    State(state): State<ApiState>,
    Path((id, annotation_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> PageResult {
    let id = parse_page_id(&id, "recording")?;
    let annotation_id = parse_page_id(&annotation_id, "annotation")?;
    let belongs = state.humpback.writer.read_state(|s| {
        s.annotations.get(&AnnotationId(annotation_id)).is_some_and(|a| a.audio_file_id == AudioFileId(id))
    });
    if !belongs {
        return Err(HtmlError::not_found(format!("recording {id} has no annotation {annotation_id}")));
    }
    let command = Command::RemoveAnnotation {
        annotation_id: AnnotationId(annotation_id),
        removed_by: request_user(&headers).or_else(|| Some("web".into())),
    };
    run(&state, id, command, &format!("annotation {annotation_id} removed")).await
}
