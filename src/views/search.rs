//! The search page: a query (a window, a moment of a recording, or an uploaded clip), a scope,
//! and the ranked windows as tiles.

use maud::{html, Markup};

use super::{layout, tile_grid, Notice, Section, WindowTile};

/// What the form holds (as typed, so a refused search comes back with every choice kept).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchForm {
    pub set: String,
    pub row: String,
    pub audio: String,
    pub start: String,
    pub folder: String,
    pub model_version: String,
    pub k: String,
    pub metric: String,
    pub exclude_same_recording: bool,
}

/// A finished search.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchOutcome {
    pub tiles: Vec<WindowTile>,
    pub searched_windows: u64,
    pub model_version: String,
    pub metric: String,
    pub elapsed_ms: f64,
    /// What the query was, in words (`window 3 of set 2`).
    pub query: String,
    /// The query window itself, when it is one of the library's.
    pub query_tile: Option<WindowTile>,
    /// The query string that runs this search again (for export links); `None` for a clip.
    pub export_query: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchView {
    pub form: SearchForm,
    pub outcome: Option<SearchOutcome>,
    pub error: Option<String>,
    pub model_versions: Vec<String>,
    pub known_labels: Vec<String>,
}

fn scope_fields(prefix: &str, form: &SearchForm, model_versions: &[String]) -> Markup {
    let id = |name: &str| format!("{prefix}-{name}");
    html! {
        fieldset {
            legend { "Where to look" }
            p {
                label for=(id("folder")) { "Folder (and below)" }
                input #(id("folder")) type="text" name="folder" value=(form.folder) placeholder="all folders";
            }
            p {
                label for=(id("model")) { "Model version" }
                select #(id("model")) name="model_version" {
                    option value="" selected[form.model_version.is_empty()] { "the query's own" }
                    @for version in model_versions {
                        option value=(version) selected[form.model_version == *version] { (version) }
                    }
                }
            }
            p {
                label for=(id("k")) { "Results" }
                input #(id("k")) type="number" name="k" min="1" max="1000" value=(if form.k.is_empty() { "20" } else { form.k.as_str() });
            }
            p {
                label for=(id("metric")) { "Metric" }
                select #(id("metric")) name="metric" {
                    option value="cosine" selected[form.metric != "euclidean"] { "cosine similarity" }
                    option value="euclidean" selected[form.metric == "euclidean"] { "euclidean distance" }
                }
            }
            p {
                label { input type="checkbox" name="exclude_same_recording" value="true" checked[form.exclude_same_recording]; " leave out the query's own recording" }
            }
        }
    }
}

pub fn search_page(view: &SearchView, notice: Option<&Notice>) -> Markup {
    let form = &view.form;
    let content = html! {
        h1 { "Search by example" }
        p.lead { "Find the windows most like a call: one you found (a window of an embedding set), a moment of a recording, or a clip you upload." }
        @if let Some(error) = &view.error {
            p.error-message role="alert" { (error) }
        }
        @if let Some(outcome) = &view.outcome {
            section #search-results aria-labelledby="results-heading" {
                h2 #results-heading { (outcome.tiles.len()) " windows most like " (outcome.query) }
                p.muted {
                    "Exact search over " (outcome.searched_windows) " windows of model " code { (outcome.model_version) }
                    " by " (outcome.metric) " in " (format!("{:.0}", outcome.elapsed_ms)) " ms."
                    @if let Some(query) = &outcome.export_query {
                        " Export: " a href=(format!("/search/selections.txt?{query}")) download { "Raven table" }
                        " · " a href=(format!("/search/selections.csv?{query}")) download { "CSV" }
                    }
                }
                @if let Some(query) = &outcome.query_tile {
                    h3 { "The query" }
                    div.tile-grid.query-tile { (super::window_tile(query)) }
                }
                (tile_grid("results", &outcome.tiles, &view.known_labels))
            }
        }
        details.search-query open[view.outcome.is_none()] {
            summary { "Search again" }
            div.search-forms {
                form.panel method="get" action="/search" #search-window {
                    h2 { "A window or a moment" }
                    p {
                        label for="search-set" { "Embedding set" }
                        input #search-set type="number" name="set" min="1" value=(form.set);
                        " "
                        label for="search-row" { "row" }
                        input #search-row type="number" name="row" min="0" value=(form.row);
                    }
                    p.muted { "or" }
                    p {
                        label for="search-audio" { "Recording id" }
                        input #search-audio type="number" name="audio" min="1" value=(form.audio);
                        " "
                        label for="search-start" { "at second" }
                        input #search-start type="number" name="start" min="0" step="any" value=(form.start);
                    }
                    (scope_fields("window", form, &view.model_versions))
                    button type="submit" { "Search" }
                }
                form.panel method="post" action="/search" enctype="multipart/form-data" #search-clip {
                    h2 { "A clip" }
                    p {
                        label for="search-file" { "WAV, MP3 or FLAC clip" }
                        input #search-file type="file" name="file" required accept=".wav,.mp3,.flac,audio/*";
                    }
                    p.muted { "The clip is embedded with the scope's model and not kept." }
                    (scope_fields("clip", form, &view.model_versions))
                    button type="submit" { "Search with the clip" }
                }
            }
        }
    };
    layout("Search", Section::Search, notice, content)
}
