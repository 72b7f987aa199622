//! Detector pages: `/classifiers` (versions side by side, train, run detection, retrain),
//! `/classifiers/{id}/label-next`, and `/detection-jobs/{id}` (detections as tiles to confirm or
//! reject). They ask the same core as the JSON API.

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::Form;
use serde::Deserialize;
use serde_json::json;

use super::{blocking_page, page, parse_page_id, redirect_with_notice, HtmlError, NoticeParameters, PageResult};
use crate::classifier::request::TrainClassifierRequest;
use crate::classifier::training_set::NegativeSources;
use crate::domain::ids::ClassifierId;
use crate::http::classifiers_api::{label_next_windows, queue_training, recorded_request, LABEL_NEXT_DEFAULT};
use crate::http::detections_api::{queue_detection, DetectionRequest};
use crate::http::{ApiError, ApiState};
use crate::projections::queries;
use crate::projections::runner::lowest_checkpoint;
use crate::views::classifiers::{
    classifiers_page, detection_job_page, label_next_page, ClassifiersView, DetectionJobView, LabelNextView,
};
use crate::views::WindowTile;

/// Detection jobs listed on the classifiers page.
const DETECTION_JOBS_SHOWN: u64 = 200;
/// Classifiers listed (every version of the most recent detectors).
const CLASSIFIERS_SHOWN: u64 = 500;
/// Detection tiles per page.
const DETECTIONS_PER_PAGE: u64 = 48;

pub async fn list(State(state): State<ApiState>, Query(notice): Query<NoticeParameters>) -> PageResult {
    let (known_labels, model_versions) = super::search::page_data(&state).await?;
    let humpback = state.humpback.clone();
    let (events_after, classifiers, detection_jobs) = blocking_page(move || {
        Ok(humpback.reader.with_connection(|connection| {
            Ok((
                lowest_checkpoint(connection)?,
                queries::classifiers(connection, 0, CLASSIFIERS_SHOWN)?.items,
                queries::detection_jobs(connection, None, DETECTION_JOBS_SHOWN)?,
            ))
        })?)
    })
    .await?;
    let view = ClassifiersView { classifiers, detection_jobs, model_versions, known_labels, events_after };
    Ok(page(StatusCode::OK, classifiers_page(&view, notice.to_notice().as_ref())))
}

/// `/classifiers/{id}`: the classifiers page at that version.
pub async fn show(Path(id): Path<String>) -> PageResult {
    let id = parse_page_id(&id, "classifier")?;
    Ok(Redirect::to(&format!("/classifiers#classifier-{id}")).into_response())
}

#[derive(Debug, Deserialize)]
pub struct TrainForm {
    pub labels: String,
    pub model_version: String,
    pub negative_annotations: Option<String>,
    pub other_labels: Option<String>,
    pub c: Option<String>,
    pub class_weighting: Option<String>,
    pub folds: Option<String>,
    pub threshold: Option<String>,
}

/// The training request a form describes (empty fields take the API's defaults).
pub fn train_request_from_form(form: &TrainForm) -> Result<TrainClassifierRequest, String> {
    let labels: Vec<String> =
        form.labels.split(',').map(str::trim).filter(|label| !label.is_empty()).map(str::to_string).collect();
    let mut body = json!({
        "labels": labels,
        "model_version": form.model_version.trim(),
        "negatives": NegativeSources {
            negative_annotations: form.negative_annotations.as_deref() == Some("true"),
            other_labels: form.other_labels.as_deref() == Some("true"),
            unannotated: None,
        },
    });
    let number = |name: &str, text: &Option<String>| -> Result<Option<serde_json::Value>, String> {
        match text.as_deref().map(str::trim).filter(|text| !text.is_empty()) {
            None => Ok(None),
            Some(text) => match text.parse::<f64>() {
                Ok(value) if value.is_finite() => {
                    Ok(Some(if value.fract() == 0.0 && name == "folds" { json!(value as u64) } else { json!(value) }))
                }
                _ => Err(format!("{name}: {text:?} is not a number")),
            },
        }
    };
    for (name, text) in [("c", &form.c), ("folds", &form.folds), ("threshold", &form.threshold)] {
        if let Some(value) = number(name, text)? {
            body[name] = value;
        }
    }
    if let Some(weighting) = form.class_weighting.as_deref().filter(|text| !text.is_empty()) {
        body["class_weighting"] = json!(weighting);
    }
    let request: TrainClassifierRequest = serde_json::from_value(body).map_err(|error| error.to_string())?;
    request.validate().map_err(|error| error.to_string())?;
    Ok(request)
}

/// An API refusal as a notice on `back`; a server error stays an error page.
fn refused(back: &str, error: ApiError) -> PageResult {
    if error.status.is_server_error() {
        return Err(error.into());
    }
    Ok(redirect_with_notice(back, &error.message, true))
}

pub async fn train(State(state): State<ApiState>, form: Result<Form<TrainForm>, FormRejection>) -> PageResult {
    let Form(form) = form?;
    let request = match train_request_from_form(&form) {
        Ok(request) => request,
        Err(message) => return Ok(redirect_with_notice("/classifiers", &message, true)),
    };
    match queue_training(&state, &request).await {
        Ok(id) => Ok(redirect_with_notice(
            &format!("/classifiers#classifier-{id}"),
            &format!("classifier {id} queued for training"),
            false,
        )),
        Err(error) => refused("/classifiers", error),
    }
}

pub async fn retrain(State(state): State<ApiState>, Path(id): Path<String>) -> PageResult {
    let id = ClassifierId(parse_page_id(&id, "classifier")?);
    let request = match recorded_request(&state, id) {
        Ok(request) => request,
        Err(error) if error.status == StatusCode::NOT_FOUND => return Err(error.into()),
        Err(error) => return refused("/classifiers", error),
    };
    match queue_training(&state, &request).await {
        Ok(next) => Ok(redirect_with_notice(
            "/classifiers",
            &format!(
                "classifier {next} queued: the next version of classifier {id}, with the annotations as they are now"
            ),
            false,
        )),
        Err(error) => refused("/classifiers", error),
    }
}

#[derive(Debug, Deserialize)]
pub struct DetectForm {
    pub folder: Option<String>,
    pub threshold: Option<String>,
}

pub async fn detect(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    form: Result<Form<DetectForm>, FormRejection>,
) -> PageResult {
    let id = parse_page_id(&id, "classifier")?;
    let Form(form) = form?;
    let mut body = json!({ "classifier_id": id });
    if let Some(folder) = form.folder.as_deref().map(str::trim).filter(|folder| !folder.is_empty()) {
        body["folder"] = json!(folder);
    }
    if let Some(text) = form.threshold.as_deref().map(str::trim).filter(|text| !text.is_empty()) {
        match text.parse::<f64>() {
            Ok(threshold) if threshold.is_finite() => body["threshold"] = json!(threshold),
            _ => {
                return Ok(redirect_with_notice("/classifiers", &format!("threshold: {text:?} is not a number"), true))
            }
        }
    }
    let request: DetectionRequest = match serde_json::from_value(body.clone()) {
        Ok(request) => request,
        Err(error) => return Ok(redirect_with_notice("/classifiers", &error.to_string(), true)),
    };
    match queue_detection(&state, &request, &body).await {
        Ok(job) => {
            Ok(redirect_with_notice(&format!("/detection-jobs/{job}"), &format!("detection job {job} queued"), false))
        }
        Err(error) => refused("/classifiers", error),
    }
}

#[derive(Debug, Deserialize, Default)]
pub struct DetectionPageParameters {
    pub offset: Option<u64>,
    pub audio_file_id: Option<u64>,
}

pub async fn detection_job(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    parameters: Result<Query<DetectionPageParameters>, QueryRejection>,
    Query(notice): Query<NoticeParameters>,
) -> PageResult {
    let id = parse_page_id(&id, "detection job")?;
    let Query(parameters) = parameters?;
    let known_labels = {
        let state = state.clone();
        blocking_page(move || super::clustering::known_labels(&state)).await?
    };
    let view = blocking_page(move || {
        let offset = parameters.offset.unwrap_or(0);
        let (events_after, job, detections, per_recording) = state
            .humpback
            .reader
            .with_connection(|connection| {
                let Some(job) = queries::detection_job(connection, id)? else { return Ok(None) };
                Ok(Some((
                    lowest_checkpoint(connection)?,
                    job,
                    queries::detections(connection, id, parameters.audio_file_id, offset, DETECTIONS_PER_PAGE)?,
                    queries::detection_counts_by_recording(connection, id)?,
                )))
            })?
            .ok_or_else(|| HtmlError::not_found(format!("there is no detection job {id}")))?;
        let (labels, model_version) = state.humpback.writer.read_state(|s| {
            s.classifiers
                .get(&ClassifierId(job.classifier_id))
                .map(|classifier| (classifier.labels.clone(), classifier.model_version.clone()))
                .unwrap_or_default()
        });
        let tiles = detections
            .items
            .iter()
            .map(|detection| WindowTile {
                audio_file_id: detection.audio_file_id,
                recording: detection.recording.clone().unwrap_or_default(),
                start_seconds: detection.start_seconds,
                duration_seconds: (detection.end_seconds - detection.start_seconds).max(0.0),
                embedding_set_id: Some(detection.embedding_set_id),
                row_index: Some(detection.first_row),
                caption: Some(if labels.len() > 1 {
                    format!("{} {:.3}", detection.label, detection.max_score)
                } else {
                    format!("score {:.3}", detection.max_score)
                }),
                review_label: Some(detection.label.clone()),
            })
            .collect();
        Ok(DetectionJobView {
            job,
            labels,
            model_version,
            tiles,
            total: detections.total,
            offset,
            limit: DETECTIONS_PER_PAGE,
            audio_file_id: parameters.audio_file_id,
            per_recording,
            known_labels,
            events_after,
        })
    })
    .await?;
    Ok(page(StatusCode::OK, detection_job_page(&view, notice.to_notice().as_ref())))
}

pub async fn label_next(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Query(notice): Query<NoticeParameters>,
) -> PageResult {
    let id = parse_page_id(&id, "classifier")?;
    let known_labels = {
        let state = state.clone();
        blocking_page(move || super::clustering::known_labels(&state)).await?
    };
    let view = blocking_page(move || {
        let classifier = state
            .humpback
            .reader
            .with_connection(|connection| queries::classifier(connection, id))?
            .ok_or_else(|| HtmlError::not_found(format!("there is no classifier {id}")))?;
        let answer = match label_next_windows(&state, ClassifierId(id), LABEL_NEXT_DEFAULT) {
            Ok(answer) => Some(answer),
            Err(error) if error.status == StatusCode::CONFLICT => None,
            Err(error) => return Err(error.into()),
        };
        let tiles = answer
            .as_ref()
            .map(|answer| {
                answer
                    .items
                    .iter()
                    .map(|item| WindowTile {
                        audio_file_id: item.audio_file_id,
                        recording: item.recording.clone(),
                        start_seconds: item.start_seconds,
                        duration_seconds: (item.end_seconds - item.start_seconds).max(0.0),
                        embedding_set_id: Some(item.embedding_set_id),
                        row_index: Some(item.row_index),
                        caption: Some(match item.reason {
                            crate::classifier::label_next::LabelNextReason::NearThreshold => {
                                format!("unsure {:.3}", item.score)
                            }
                            crate::classifier::label_next::LabelNextReason::TopInUnannotatedRecording => {
                                format!("new {:.3}", item.score)
                            }
                        }),
                        review_label: Some(item.label.clone()),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(LabelNextView {
            classifier,
            detection_job_id: answer.as_ref().map(|answer| answer.detection_job_id),
            threshold: answer.as_ref().map(|answer| answer.threshold),
            tiles,
            known_labels,
        })
    })
    .await?;
    Ok(page(StatusCode::OK, label_next_page(&view, notice.to_notice().as_ref())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(labels: &str, c: &str) -> TrainForm {
        TrainForm {
            labels: labels.into(),
            model_version: "perch_v2".into(),
            negative_annotations: Some("true".into()),
            other_labels: None,
            c: Some(c.into()),
            class_weighting: Some("none".into()),
            folds: Some("3".into()),
            threshold: Some("".into()),
        }
    }

    #[test]
    fn the_train_form_becomes_the_api_request_and_bad_fields_are_named() {
        let request = train_request_from_form(&form(" song, grunt ,", "0.5")).unwrap();
        assert_eq!(request.labels, vec!["song".to_string(), "grunt".to_string()]);
        assert_eq!((request.c, request.folds, request.threshold), (0.5, 3, 0.5));
        assert!(request.negatives.negative_annotations && !request.negatives.other_labels);
        assert!(train_request_from_form(&form("song", "lots")).unwrap_err().starts_with("c:"));
        assert!(train_request_from_form(&form("song", "-1")).unwrap_err().starts_with("c:"));
        assert!(train_request_from_form(&form(" , ", "1")).unwrap_err().starts_with("labels:"));
    }
}
