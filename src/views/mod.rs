//! HTML views: pure functions from row structs to Maud markup, no I/O. Everything a person
//! typed (file names, folders, metadata, messages) goes through Maud's escaping; nothing here
//! uses `PreEscaped` on such text.

pub mod annotations;
pub mod classifiers;
pub mod clustering;
pub mod dashboard;
pub mod events;
pub mod models;
pub mod processing;
pub mod recording_time;
pub mod recordings;
pub mod search;
pub mod workers;

use maud::{html, Markup, DOCTYPE};

use crate::domain::ids::EventSeq;
use crate::projections::queries::ProcessingJobRow;

/// The sections of the header navigation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Home,
    Recordings,
    Processing,
    Clustering,
    Search,
    Classifiers,
    Models,
    Events,
}

const NAVIGATION: [(Section, &str, &str); 7] = [
    (Section::Recordings, "/audio", "Recordings"),
    (Section::Processing, "/processing", "Processing"),
    (Section::Clustering, "/clustering", "Clustering"),
    (Section::Search, "/search", "Search"),
    (Section::Classifiers, "/classifiers", "Detectors"),
    (Section::Models, "/models", "Models"),
    (Section::Events, "/events", "Events"),
];

/// A message shown once at the top of a page (after a redirect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub text: String,
    pub is_error: bool,
}

/// The page frame: header navigation, an optional notice, the content.
pub fn layout(title: &str, section: Section, notice: Option<&Notice>, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · humpback" }
                link rel="stylesheet" href="/assets/style.css";
                script src="/assets/live.js" defer {}
                script src="/assets/upload.js" defer {}
            }
            body {
                a.skip-link href="#main" { "Skip to content" }
                header.site-header {
                    nav aria-label="Main" {
                        a.brand href="/" aria-current=[(section == Section::Home).then_some("page")] { "humpback" }
                        ul {
                            @for (item, href, label) in NAVIGATION {
                                li {
                                    a href=(href) aria-current=[(section == item).then_some("page")] { (label) }
                                }
                            }
                        }
                    }
                }
                main #main {
                    @if let Some(notice) = notice {
                        p.notice.error[notice.is_error] role="status" { (notice.text) }
                    }
                    (content)
                }
                footer.site-footer {
                    p { "humpback " (env!("CARGO_PKG_VERSION")) " · every change is an event in the log" }
                }
            }
        }
    }
}

/// A friendly error page (the HTML counterpart of the JSON `{"error": ...}`).
pub fn error_page(status_code: u16, reason: &str, message: &str) -> Markup {
    let title = format!("{status_code} {reason}");
    layout(
        &title,
        Section::Home,
        None,
        html! {
            h1 { (title) }
            p.error-message { (message) }
            p { a href="/" { "Back to the overview" } " · " a href="/audio" { "Recordings" } }
        },
    )
}

/// The login form: the server's access token, once per browser (it sets a session cookie).
pub fn login_page(next: &str, error: Option<&str>, token_required: bool) -> Markup {
    layout(
        "Log in",
        Section::Home,
        None,
        html! {
            h1 { "Log in" }
            @if token_required {
                p { "This humpback server needs its access token (the value given to " code { "--token" } " or "
                    code { "HUMPBACK_TOKEN" } " when it was started). This browser stays logged in until the server \
                    restarts or you log out." }
                @if let Some(error) = error {
                    p.error-message role="alert" { (error) }
                }
                form.login method="post" action="/login" {
                    input type="hidden" name="next" value=(next);
                    label for="login-token" { "Access token" }
                    input #login-token type="password" name="token" autocomplete="current-password" required autofocus;
                    button type="submit" { "Log in" }
                }
            } @else {
                p { "This server needs no token: " a href=(next) { "continue" } "." }
            }
        },
    )
}

/// A window shown as a tile: its spectrogram, play, find similar and annotate.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowTile {
    pub audio_file_id: u64,
    pub recording: String,
    pub start_seconds: f64,
    pub duration_seconds: f64,
    /// The window's embedding set and row, when it is one (search and annotation need them).
    pub embedding_set_id: Option<u64>,
    pub row_index: Option<u64>,
    /// A short fact after the name and time (`p 0.93`, `score 0.981`).
    pub caption: Option<String>,
    /// A detection or suggestion to judge: confirm records a positive annotation with this
    /// label over the tile's span, reject a negative one (keys `c`, `r`, `s` to skip).
    pub review_label: Option<String>,
}

/// A grid of window tiles with the annotate form and the recent labels; `assets/tiles.js` adds
/// play, keyboard and annotation. Without JavaScript every tile still links its audio.
pub fn tile_grid(id: &str, tiles: &[WindowTile], known_labels: &[String]) -> Markup {
    let datalist = format!("{id}-labels");
    html! {
        div.tiles-wrap {
            form.tile-annotate data-tile-annotate {
                label for=(format!("{id}-label")) { "Label" }
                input #(format!("{id}-label")) type="text" name="label" list=(datalist) maxlength="200"
                    placeholder="e.g. song unit A" autocomplete="off";
                datalist #(datalist) { @for label in known_labels { option value=(label) {} } }
                label for=(format!("{id}-kind")) { "Kind" }
                select #(format!("{id}-kind") ) name="kind" {
                    option value="positive" selected { "positive" }
                    option value="negative" { "negative" }
                    option value="uncertain" { "uncertain" }
                }
                button type="submit" data-scope="chosen" { "Annotate chosen tile" }
                button type="submit" data-scope="all" { "Annotate all " (tiles.len()) }
            }
            p.muted.keyboard-hint {
                "Keys on a tile: " kbd { "space" } " play · " kbd { "←" } kbd { "→" } kbd { "↑" } kbd { "↓" } " move · "
                kbd { "1" } "–" kbd { "9" } " apply a recent label · " kbd { "a" } " type a label"
                @if tiles.iter().any(|tile| tile.review_label.is_some()) {
                    " · " kbd { "c" } " confirm · " kbd { "r" } " reject · " kbd { "s" } " skip"
                }
            }
            ol.recent-labels data-recent-labels aria-label="Recent labels" {}
            audio.tile-player controls preload="none" {}
            div.tile-grid #(id) data-tiles {
                @for tile in tiles { (window_tile(tile)) }
            }
            p.muted data-tile-status role="status" aria-live="polite" {}
        }
        script src="/assets/tiles.js" defer {}
    }
}

pub(crate) fn window_tile(tile: &WindowTile) -> Markup {
    let start = tile.start_seconds;
    let duration = tile.duration_seconds;
    let audio = tile.audio_file_id;
    html! {
        figure.tile tabindex="0" data-audio=(audio) data-start=(start) data-duration=(duration)
            data-set=[tile.embedding_set_id] data-row=[tile.row_index] data-review-label=[tile.review_label.as_deref()] {
            img loading="lazy" width="160" height="100" alt=(format!("spectrogram of {} at {start:.2} s", tile.recording))
                src=(format!("/api/audio/{audio}/spectrogram.png?start={start}&duration={duration}&width=160&height=100"));
            figcaption {
                span.tile-time { (format!("{start:.1} s")) }
                @if let Some(caption) = &tile.caption { " · " (caption) }
                br;
                a href=(format!("/audio/{audio}?start={start}")) title=(tile.recording) { (tile.recording) }
            }
            div.tile-actions {
                button type="button" data-action="play" { "Play" }
                @if let (Some(set), Some(row)) = (tile.embedding_set_id, tile.row_index) {
                    a data-action="similar" href=(format!("/search?set={set}&row={row}")) { "Find similar" }
                }
                button type="button" data-action="annotate" { "Annotate" }
                @if let Some(label) = &tile.review_label {
                    button.confirm type="button" data-action="confirm" title=(format!("a positive “{label}” annotation (c)")) { "Confirm" }
                    button.reject type="button" data-action="reject" title=(format!("a negative “{label}” annotation (r)")) { "Reject" }
                    button type="button" data-action="skip" title="leave it for now (s)" { "Skip" }
                }
                noscript { a href=(format!("/api/audio/{audio}/window?start={start}&duration={duration}")) { "audio" } }
            }
        }
    }
}

/// Percent-encodes text for a query string value.
pub fn url_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => encoded.push(byte as char),
            _ => encoded.push_str(&format!("%{byte:02X}")),
        }
    }
    encoded
}

/// Builds `path?key=value&...` from the pairs whose value is present and not empty.
pub fn url_with_query(path: &str, pairs: &[(&str, Option<String>)]) -> String {
    let query: Vec<String> = pairs
        .iter()
        .filter_map(|(key, value)| {
            value.as_ref().filter(|value| !value.is_empty()).map(|value| format!("{key}={}", url_encode(value)))
        })
        .collect();
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

/// `1 h 02 min`, `3 min 05 s`, `12.5 s`.
pub fn format_duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 0.0 {
        return "unknown".into();
    }
    if seconds < 60.0 {
        return format!("{seconds:.1} s");
    }
    let whole = seconds.round() as u64;
    let (hours, minutes, rest) = (whole / 3600, (whole % 3600) / 60, whole % 60);
    if hours > 0 {
        format!("{hours} h {minutes:02} min")
    } else {
        format!("{minutes} min {rest:02} s")
    }
}

/// `512 B`, `3.4 MB`, `1.2 GB` (powers of 1000).
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A timestamp as `2026-11-24 16:21:27` (UTC), or the text as stored when it does not parse.
pub fn format_time(rfc3339: &str) -> String {
    let trimmed = rfc3339.trim_end_matches('Z');
    let without_millis = trimmed.split('.').next().unwrap_or(trimmed);
    without_millis.replacen('T', " ", 1)
}

/// A status badge: `queued`, `running`, `complete`, `failed`, `canceled`.
pub fn status_badge(status: &str) -> Markup {
    let class = match status {
        "complete" => "badge ok",
        "running" => "badge running",
        "queued" => "badge queued",
        "failed" => "badge failed",
        "canceled" => "badge canceled",
        _ => "badge",
    };
    html! { span class=(class) data-field="status" { (status) } }
}

/// Seconds left for a running job, from its rate so far (`started_at` to `updated_at`).
pub fn estimate_remaining_seconds(job: &ProcessingJobRow) -> Option<f64> {
    let (done, total) = (job.windows_done?, job.windows_total?);
    if done == 0 || total <= done || job.status != "running" {
        return None;
    }
    let started = humantime::parse_rfc3339_weak(job.started_at.as_deref()?).ok()?;
    let updated = humantime::parse_rfc3339_weak(&job.updated_at).ok()?;
    let elapsed = updated.duration_since(started).ok()?.as_secs_f64();
    if elapsed <= 0.0 {
        return None;
    }
    Some(elapsed / done as f64 * (total - done) as f64)
}

/// Marks the log position a page shows: `live.js` streams the events after it, so a change
/// made between rendering the page and connecting to the stream is not missed.
pub fn live_updates_after(seq: EventSeq) -> Markup {
    html! { span hidden data-events-after=(seq.0) {} }
}

/// Progress of a job: a bar with done/total and an estimate of the time left. The elements
/// carry `data-field` names that `live.js` updates.
pub fn job_progress(job: &ProcessingJobRow) -> Markup {
    let eta = estimate_remaining_seconds(job)
        .map(|seconds| format!("about {} left", format_duration(seconds)))
        .unwrap_or_default();
    html! {
        span.progress {
            @match (job.windows_done, job.windows_total) {
                (Some(done), Some(total)) if total > 0 => {
                    progress data-field="progress" max=(total) value=(done) { (done) "/" (total) }
                    " "
                    span data-field="progress-text" { (done) "/" (total) " windows" }
                }
                _ => {
                    progress data-field="progress" hidden max="1" value="0" {}
                    " "
                    span data-field="progress-text" {}
                }
            }
            " "
            span.eta data-field="eta" { (eta) }
        }
    }
}

/// Previous / next links for an offset-paged list.
pub fn offset_pager(total: u64, offset: u64, limit: u64, link: impl Fn(u64) -> String) -> Markup {
    let shown_to = (offset + limit).min(total);
    html! {
        nav.pager aria-label="Pages" {
            @if total == 0 {
                span { "nothing to show" }
            } @else {
                span { "showing " (offset + 1) "–" (shown_to) " of " (total) }
            }
            @if offset > 0 {
                " "
                a href=(link(offset.saturating_sub(limit))) rel="prev" { "← previous" }
            }
            @if shown_to < total {
                " "
                a href=(link(offset + limit)) rel="next" { "next →" }
            }
        }
    }
}

/// Where an aggregate such as `audio_file:3` is shown, if it has a page.
pub fn aggregate_href(aggregate: &str) -> Option<String> {
    let (kind, id) = aggregate.split_once(':')?;
    let id: u64 = id.parse().ok()?;
    let path = match kind {
        "audio_file" => "/audio",
        "processing_job" => "/processing",
        "clustering_job" => "/clustering",
        "cluster" => "/clusters",
        "classifier" => "/classifiers",
        "detection_job" => "/detection-jobs",
        _ => return None,
    };
    Some(format!("{path}/{id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(url_encode("a b/<c>&"), "a%20b%2F%3Cc%3E%26");
        assert_eq!(
            url_with_query("/audio", &[("folder", Some("x y".into())), ("search", None), ("sort", Some("".into()))]),
            "/audio?folder=x%20y"
        );
    }

    #[test]
    fn durations_sizes_and_times_read_well() {
        assert_eq!(format_duration(12.46), "12.5 s");
        assert_eq!(format_duration(185.0), "3 min 05 s");
        assert_eq!(format_duration(3720.0), "1 h 02 min");
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(3_400_000), "3.4 MB");
        assert_eq!(format_time("2026-11-24T16:21:27.123Z"), "2026-11-24 16:21:27");
    }

    #[test]
    fn aggregates_link_to_their_pages() {
        assert_eq!(aggregate_href("audio_file:3").as_deref(), Some("/audio/3"));
        assert_eq!(aggregate_href("processing_job:7").as_deref(), Some("/processing/7"));
        assert_eq!(aggregate_href("clustering_job:2").as_deref(), Some("/clustering/2"));
        assert_eq!(aggregate_href("cluster:5").as_deref(), Some("/clusters/5"));
        assert_eq!(aggregate_href("embedding_set:5"), None);
        assert_eq!(aggregate_href("audio_file:x"), None);
    }

    #[test]
    fn error_pages_escape_the_message() {
        let page = error_page(404, "Not Found", "<script>alert(1)</script>").into_string();
        assert!(!page.contains("<script>alert"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    }
}
