//! The search page: `GET /search` (a window `set`/`row`, or a moment `audio`/`start`, with the
//! scope in the query string, so results can be linked and reloaded) and `POST /search` (an
//! uploaded clip). Both ask the same search as `POST /api/search`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{blocking_page, page, HtmlError, PageResult};
use crate::catalogue::raven::TableFormat;
use crate::http::{ApiError, ApiState};
use crate::search::{parse_search_request, run_search, SearchAnswer};
use crate::views::search::{search_page, SearchForm, SearchOutcome, SearchView};
use crate::views::WindowTile;

#[derive(Debug, Deserialize, Default)]
pub struct SearchParameters {
    pub set: Option<String>,
    pub row: Option<String>,
    pub audio: Option<String>,
    pub start: Option<String>,
    pub folder: Option<String>,
    pub model_version: Option<String>,
    pub k: Option<String>,
    pub metric: Option<String>,
    pub exclude_same_recording: Option<String>,
}

impl SearchParameters {
    fn form(&self) -> SearchForm {
        let text = |value: &Option<String>| value.as_deref().map(str::trim).unwrap_or_default().to_string();
        SearchForm {
            set: text(&self.set),
            row: text(&self.row),
            audio: text(&self.audio),
            start: text(&self.start),
            folder: text(&self.folder),
            model_version: text(&self.model_version),
            k: text(&self.k),
            metric: text(&self.metric),
            exclude_same_recording: self.exclude_same_recording.as_deref().is_some_and(|v| v == "true" || v == "on"),
        }
    }
}

/// The scope and options of a form as the API's request fields (empty fields left out).
fn scope_body(form: &SearchForm) -> Result<Map<String, Value>, String> {
    let mut body = Map::new();
    if !form.folder.is_empty() {
        body.insert("folder".into(), json!(form.folder));
    }
    if !form.model_version.is_empty() {
        body.insert("model_version".into(), json!(form.model_version));
    }
    if !form.k.is_empty() {
        let k: u64 = form.k.parse().map_err(|_| format!("results: {:?} is not a whole number", form.k))?;
        body.insert("k".into(), json!(k));
    }
    if !form.metric.is_empty() {
        body.insert("metric".into(), json!(form.metric));
    }
    body.insert("exclude_same_recording".into(), json!(form.exclude_same_recording));
    Ok(body)
}

fn number(text: &str, what: &str) -> Result<Value, String> {
    if let Ok(whole) = text.parse::<u64>() {
        return Ok(json!(whole));
    }
    text.parse::<f64>()
        .ok()
        .filter(|value| value.is_finite())
        .map(|value| json!(value))
        .ok_or_else(|| format!("{what}: {text:?} is not a number"))
}

/// The API request for a window or moment form; `None` when the form names no query yet.
fn window_body(form: &SearchForm) -> Result<Option<Value>, String> {
    let query = if !form.set.is_empty() || !form.row.is_empty() {
        json!({ "embedding_set_id": number(&form.set, "embedding set")?, "row_index": number(&form.row, "row")? })
    } else if !form.audio.is_empty() || !form.start.is_empty() {
        json!({ "audio_file_id": number(&form.audio, "recording")?, "start_seconds": number(&form.start, "second")? })
    } else {
        return Ok(None);
    };
    let mut body = scope_body(form)?;
    body.insert("query".into(), query);
    Ok(Some(Value::Object(body)))
}

fn tile_of(result: &crate::search::SearchResult, metric: &str) -> WindowTile {
    let score = if metric == "euclidean" {
        format!("distance {:.3}", result.score)
    } else {
        format!("score {:.3}", result.score)
    };
    WindowTile {
        audio_file_id: result.audio_file_id,
        recording: result.recording.clone(),
        start_seconds: result.start_seconds,
        duration_seconds: (result.end_seconds - result.start_seconds).max(0.0),
        embedding_set_id: Some(result.embedding_set_id),
        row_index: Some(result.row_index),
        caption: Some(format!("#{} · {score}", result.rank)),
        review_label: None,
    }
}

fn outcome(answer: SearchAnswer, query: String) -> SearchOutcome {
    SearchOutcome {
        tiles: answer.results.iter().map(|result| tile_of(result, &answer.metric)).collect(),
        searched_windows: answer.searched_windows,
        model_version: answer.model_version.clone(),
        metric: answer.metric.clone(),
        elapsed_ms: answer.elapsed_ms,
        query,
        query_tile: None,
        export_query: None,
    }
}

fn describe(form: &SearchForm) -> String {
    if !form.set.is_empty() {
        format!("row {} of embedding set {}", form.row, form.set)
    } else if !form.audio.is_empty() {
        format!("recording {} at {} s", form.audio, form.start)
    } else {
        "the clip".to_string()
    }
}

/// Runs a search for a page: the answer, or the status and reason to show next to the form.
async fn search_for_page(
    state: &ApiState,
    body: Value,
    clip: Option<std::path::PathBuf>,
) -> Result<SearchAnswer, (StatusCode, String)> {
    let parsed = parse_search_request(&body, clip.is_some()).map_err(|error| {
        let api: ApiError = error.into();
        (api.status, api.message)
    })?;
    let humpback = state.humpback.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let answer = run_search(&humpback, &parsed, clip.as_deref());
        if let Some(clip) = clip {
            let _ = std::fs::remove_file(clip);
        }
        answer
    })
    .await
    .map_err(|error| (StatusCode::INTERNAL_SERVER_ERROR, format!("the search stopped: {error}")))?;
    outcome.map_err(|error| {
        let api: ApiError = error.into();
        (api.status, api.message)
    })
}

pub(super) async fn page_data(state: &ApiState) -> Result<(Vec<String>, Vec<String>), HtmlError> {
    let state = state.clone();
    blocking_page(move || {
        let labels = super::clustering::known_labels(&state)?;
        let mut versions: Vec<String> = state
            .humpback
            .writer
            .read_state(|s| s.embedding_sets.values().map(|set| set.model_version.clone()).collect());
        versions.sort();
        versions.dedup();
        Ok((labels, versions))
    })
    .await
}

/// Adds the query window itself (the first result is usually it, but not when excluded).
fn with_query_tile(mut outcome: SearchOutcome, form: &SearchForm, answer_first: Option<&WindowTile>) -> SearchOutcome {
    if let (Ok(set), Ok(row)) = (form.set.parse::<u64>(), form.row.parse::<u64>()) {
        if let Some(first) =
            answer_first.filter(|tile| tile.embedding_set_id == Some(set) && tile.row_index == Some(row))
        {
            outcome.query_tile = Some(WindowTile { caption: Some("the query".into()), ..first.clone() });
        }
    }
    outcome
}

/// `GET /search`.
pub async fn search(
    State(state): State<ApiState>,
    parameters: Result<Query<SearchParameters>, QueryRejection>,
) -> PageResult {
    let Query(parameters) = parameters?;
    let form = parameters.form();
    let (known_labels, model_versions) = page_data(&state).await?;
    let mut view = SearchView { form: form.clone(), known_labels, model_versions, ..SearchView::default() };
    let body = match window_body(&form) {
        Ok(Some(body)) => body,
        Ok(None) => return Ok(page(StatusCode::OK, search_page(&view, None))),
        Err(error) => {
            view.error = Some(error);
            return Ok(page(StatusCode::UNPROCESSABLE_ENTITY, search_page(&view, None)));
        }
    };
    match search_for_page(&state, body, None).await {
        Ok(answer) => {
            let mut found = outcome(answer, describe(&form));
            found.export_query = Some(export_query(&form));
            let first = found.tiles.first().cloned();
            view.outcome = Some(with_query_tile(found, &form, first.as_ref()));
            Ok(page(StatusCode::OK, search_page(&view, None)))
        }
        Err((status, message)) => {
            view.error = Some(message);
            Ok(page(status, search_page(&view, None)))
        }
    }
}

/// `GET /search/selections.txt` and `.csv`: the results of the same query string as a selection
/// table (the page links it next to its results).
async fn search_table(state: ApiState, parameters: SearchParameters, format: TableFormat) -> PageResult {
    let form = parameters.form();
    let body = window_body(&form)
        .map_err(|error| HtmlError::new(StatusCode::UNPROCESSABLE_ENTITY, error))?
        .ok_or_else(|| {
            HtmlError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "give a window (set and row) or a moment (audio and start)",
            )
        })?;
    let answer =
        search_for_page(&state, body, None).await.map_err(|(status, message)| HtmlError::new(status, message))?;
    let text =
        state.humpback.writer.read_state(|domain| crate::http::selections_api::search_table(domain, &answer, format));
    Ok(crate::http::selections_api::table_response(text, format, "search"))
}

pub async fn search_raven(
    State(state): State<ApiState>,
    parameters: Result<Query<SearchParameters>, QueryRejection>,
) -> PageResult {
    let Query(parameters) = parameters?;
    search_table(state, parameters, TableFormat::Raven).await
}

pub async fn search_csv(
    State(state): State<ApiState>,
    parameters: Result<Query<SearchParameters>, QueryRejection>,
) -> PageResult {
    let Query(parameters) = parameters?;
    search_table(state, parameters, TableFormat::Csv).await
}

/// The query string of a window or moment search, for the export links.
pub fn export_query(form: &SearchForm) -> String {
    let pairs = [
        ("set", &form.set),
        ("row", &form.row),
        ("audio", &form.audio),
        ("start", &form.start),
        ("folder", &form.folder),
        ("model_version", &form.model_version),
        ("k", &form.k),
        ("metric", &form.metric),
    ];
    let mut parts: Vec<String> = pairs
        .iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(name, value)| format!("{name}={}", crate::views::url_encode(value)))
        .collect();
    if form.exclude_same_recording {
        parts.push("exclude_same_recording=true".into());
    }
    parts.join("&")
}

/// `POST /search` (multipart: `file`, and the scope fields): search with an uploaded clip.
pub async fn search_with_clip(State(state): State<ApiState>, request: Request) -> PageResult {
    let multipart = Multipart::from_request(request, &state)
        .await
        .map_err(|rejection| HtmlError::bad_request(rejection.body_text()))?;
    let (body, clip) = crate::http::search_api::read_clip_form(&state, multipart).await.map_err(HtmlError::from)?;
    let text = |name: &str| {
        body.get(name).map(|value| value.as_str().map(str::to_string).unwrap_or_else(|| value.to_string()))
    };
    let parameters = SearchParameters {
        folder: text("folder"),
        model_version: text("model_version"),
        k: text("k"),
        metric: text("metric"),
        exclude_same_recording: text("exclude_same_recording"),
        ..SearchParameters::default()
    };
    let form = parameters.form();
    let (known_labels, model_versions) = page_data(&state).await?;
    let mut view = SearchView { form: form.clone(), known_labels, model_versions, ..SearchView::default() };
    let Some(clip) = clip else {
        view.error = Some("choose a clip to search with".into());
        return Ok(page(StatusCode::UNPROCESSABLE_ENTITY, search_page(&view, None)));
    };
    let request_body = match scope_body(&form) {
        Ok(scope) => Value::Object(scope),
        Err(error) => {
            view.error = Some(error);
            return Ok(page(StatusCode::UNPROCESSABLE_ENTITY, search_page(&view, None)));
        }
    };
    match search_for_page(&state, request_body, Some(clip.into_path())).await {
        Ok(answer) => {
            view.outcome = Some(outcome(answer, "the clip".into()));
            Ok(page(StatusCode::OK, search_page(&view, None)))
        }
        Err((status, message)) => {
            view.error = Some(message);
            Ok(page(status, search_page(&view, None)))
        }
    }
}
