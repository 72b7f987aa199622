//! Clustering pages: the queue form and job list, one job (metrics, scatter plot, clusters),
//! one cluster (members with audio and spectrograms, metadata distributions), and the models.

use std::collections::BTreeMap;

use maud::{html, Markup};
use serde_json::Value;

use super::{format_time, layout, live_updates_after, offset_pager, status_badge, Notice, Section};
use crate::clustering_jobs::outputs::AssignmentRow;
use crate::domain::ids::EventSeq;
use crate::projections::queries::{ClusterRow, ClusteringJobRow};
use crate::projections::ui_queries::EmbeddingSetChoiceRow;

/// The methods offered by the form, in the order shown.
pub const REDUCTION_METHODS: [&str; 3] = ["umap", "pca", "none"];
pub const ALGORITHM_METHODS: [&str; 5] = ["hdbscan", "kmeans", "dbscan", "gaussian_mixture", "agglomerative"];

/// What the clustering list page shows.
#[derive(Debug, Clone, Default)]
pub struct ClusteringListView {
    pub jobs: Vec<ClusteringJobRow>,
    pub total_jobs: u64,
    pub sets: Vec<EmbeddingSetChoiceRow>,
    pub notice: Option<Notice>,
    /// The log position the page shows; live updates start after it.
    pub events_after: EventSeq,
    /// A form that could not be queued comes back with what was sent and why.
    pub submitted: Option<SubmittedForm>,
}

/// The fields of a clustering form as sent, and the reason it was refused.
#[derive(Debug, Clone, Default)]
pub struct SubmittedForm {
    pub fields: Vec<(String, String)>,
    pub error: String,
}

/// The form's current values: the submitted ones when the form came back, else the defaults.
struct FormValues<'a>(Option<&'a [(String, String)]>);

impl FormValues<'_> {
    fn value(&self, name: &str, default: &str) -> String {
        match self.0 {
            Some(fields) => {
                fields.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone()).unwrap_or_default()
            }
            None => default.to_string(),
        }
    }

    fn checked(&self, name: &str, value: &str, default: bool) -> bool {
        match self.0 {
            Some(fields) => fields.iter().any(|(key, sent)| key == name && sent == value),
            None => default,
        }
    }
}

/// Distinct values in first-seen order.
fn distinct<'a>(values: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen: Vec<&str> = Vec::new();
    for value in values {
        if !seen.contains(&value) {
            seen.push(value);
        }
    }
    seen.sort_unstable();
    seen
}

/// `12 sets, 3 400 windows`: how much a selection covers.
fn coverage<'a>(sets: impl Iterator<Item = &'a EmbeddingSetChoiceRow>) -> String {
    let (count, windows) = sets.fold((0u64, 0u64), |(count, windows), set| (count + 1, windows + set.row_count));
    format!("{count} set{}, {windows} windows", if count == 1 { "" } else { "s" })
}

fn job_progress_text(job: &ClusteringJobRow) -> String {
    match (job.stage.as_deref(), job.progress) {
        (Some(stage), Some(fraction)) if job.status == "running" => format!("{stage} {:.0}%", fraction * 100.0),
        _ => String::new(),
    }
}

/// A clustering job's status and progress; `live.js` keeps the `data-field` children current.
fn clustering_progress(job: &ClusteringJobRow) -> Markup {
    let fraction = if job.status == "complete" { Some(1.0) } else { job.progress };
    html! {
        span.progress {
            progress data-field="progress" max="1" value=(fraction.unwrap_or(0.0)) hidden[fraction.is_none()] {}
            " "
            span data-field="progress-text" { (job_progress_text(job)) }
        }
    }
}

fn number_input(values: &FormValues, name: &str, label: &str, default: &str, step: &str) -> Markup {
    html! {
        label { (label) " " input type="number" name=(name) value=(values.value(name, default)) step=(step) min="0"; }
    }
}

fn text_input(values: &FormValues, name: &str, placeholder: &str) -> Markup {
    html! { input type="text" name=(name) value=(values.value(name, "")) placeholder=(placeholder); }
}

fn select_input<OptionValue: AsRef<str>, OptionLabel: AsRef<str>>(
    values: &FormValues,
    name: &str,
    options: &[(OptionValue, OptionLabel)],
    default: &str,
) -> Markup {
    let chosen = values.value(name, default);
    html! {
        select name=(name) {
            @for (value, label) in options {
                option value=(value.as_ref()) selected[chosen == value.as_ref()] { (label.as_ref()) }
            }
        }
    }
}

pub fn clustering_list_page(view: &ClusteringListView) -> Markup {
    let folders = distinct(view.sets.iter().map(|set| set.folder.as_str()));
    let versions = distinct(view.sets.iter().map(|set| set.model_version.as_str()));
    let values = FormValues(view.submitted.as_ref().map(|submitted| submitted.fields.as_slice()));
    let folder_options: Vec<(String, String)> = std::iter::once((String::new(), "(not by folder)".to_string()))
        .chain(folders.iter().map(|folder| {
            let in_folder = view.sets.iter().filter(|set| set.folder == *folder);
            let name = if folder.is_empty() { "(no folder)" } else { folder };
            (folder.to_string(), format!("{name} — {}", coverage(in_folder)))
        }))
        .collect();
    let version_options: Vec<(String, String)> = std::iter::once((String::new(), "(not by model version)".to_string()))
        .chain(versions.iter().map(|version| {
            let with_version = view.sets.iter().filter(|set| set.model_version == *version);
            (version.to_string(), format!("{version} — {}", coverage(with_version)))
        }))
        .collect();
    let content = html! {
        h1 { "Clustering" }
        (live_updates_after(view.events_after))
        section.panel {
            h2 { "Queue a clustering job" }
            @if view.sets.is_empty() {
                p { "There are no embedding sets yet. Process recordings first on the " a href="/processing" { "Processing" } " page." }
            } @else {
                @if let Some(submitted) = &view.submitted {
                    p.notice.error role="alert" { "Not queued: " (submitted.error) ". Your choices are kept below." }
                }
                form method="post" action="/clustering/queue" id="clustering-form" {
                    fieldset {
                        legend { "Embedding sets" }
                        p.muted { "All embedding sets: " (coverage(view.sets.iter())) ". Choose sets below, or a whole folder, or a model version." }
                        // Kept current by selection.js as the choice changes.
                        p #selection-summary role="status" aria-live="polite" {}
                        label { "Folder " (select_input(&values, "folder", &folder_options, "")) }
                        " "
                        label { "Model version " (select_input(&values, "model_version", &version_options, "")) }
                        details {
                            summary { "Choose individual sets" }
                            table {
                                thead { tr { th { "" } th { "Set" } th { "Recording" } th { "Folder" } th { "Model" } th.number { "Windows" } } }
                                tbody {
                                    @for set in &view.sets {
                                        tr {
                                            td {
                                                input type="checkbox" name="embedding_set_id" value=(set.id) id=(format!("set-{}", set.id))
                                                    checked[values.checked("embedding_set_id", &set.id.to_string(), false)]
                                                    aria-label=(format!("embedding set {}", set.id))
                                                    data-windows=(set.row_count) data-folder=(set.folder) data-model-version=(set.model_version);
                                            }
                                            td { (set.id) }
                                            td { a href=(format!("/audio/{}", set.audio_file_id)) { (set.filename) } }
                                            td { (set.folder) }
                                            td { (set.model_name) " " small { (set.model_version) } }
                                            td.number { (set.row_count) }
                                        }
                                    }
                                }
                            }
                        }
                        p {
                            label { "Folder prefix filter " (text_input(&values, "folder_prefix", "e.g. maui/")) }
                            " "
                            label { "Metadata field " (text_input(&values, "metadata_path", "e.g. deployment.site")) }
                            " "
                            label { "equals " (text_input(&values, "metadata_value", "value")) }
                        }
                        p.muted { "The selection is one of: the ticked sets, else the folder, else the model version. Filters narrow it further." }
                    }
                    fieldset {
                        legend { "Reduction" }
                        label { "Method " (select_input(&values, "reduction_method", &REDUCTION_METHODS.map(|method| (method, method)), "umap")) }
                        " "
                        (number_input(&values, "reduction_n_components", "components (UMAP, PCA)", "10", "1"))
                        " "
                        (number_input(&values, "umap_n_neighbors", "UMAP neighbours", "15", "1"))
                        " "
                        (number_input(&values, "umap_min_dist", "UMAP min distance", "0.1", "any"))
                        p {
                            label { input type="checkbox" name="normalize_l2" value="true" checked[values.checked("normalize_l2", "true", true)]; " normalise to unit length" }
                            " "
                            label { input type="checkbox" name="plot_2d" value="true" checked[values.checked("plot_2d", "true", true)]; " compute a 2-D layout for the plot" }
                        }
                    }
                    fieldset {
                        legend { "Algorithm" }
                        label { "Method " (select_input(&values, "algorithm_method", &ALGORITHM_METHODS.map(|method| (method, method)), "hdbscan")) }
                        p {
                            (number_input(&values, "hdbscan_min_cluster_size", "HDBSCAN min cluster size", "5", "1"))
                            " "
                            (number_input(&values, "hdbscan_min_samples", "min samples (empty: same)", "", "1"))
                        }
                        p {
                            (number_input(&values, "k", "k (k-means), clusters (mixture, agglomerative)", "8", "1"))
                            " "
                            (number_input(&values, "dbscan_eps", "DBSCAN eps", "0.5", "any"))
                            " "
                            (number_input(&values, "dbscan_min_points", "DBSCAN min points", "5", "1"))
                            " "
                            label { "linkage " (select_input(&values, "linkage", &["ward", "average", "complete", "single"].map(|linkage| (linkage, linkage)), "ward")) }
                            " "
                            (number_input(&values, "seed", "seed", "42", "1"))
                        }
                    }
                    fieldset {
                        legend { "Parameter sweep (optional)" }
                        p.muted { "Runs every setting in the range on the same reduced data and reports the metrics of each; the job's clusters come from the settings above." }
                        label { "Sweep "
                            (select_input(&values, "sweep_method", &[("", "no sweep"), ("hdbscan", "HDBSCAN min cluster size (eom and leaf)"), ("kmeans", "k-means k")], ""))
                        }
                        " "
                        (number_input(&values, "sweep_from", "from", "", "1"))
                        " "
                        (number_input(&values, "sweep_to", "to", "", "1"))
                        " "
                        (number_input(&values, "sweep_step", "step (HDBSCAN)", "1", "1"))
                    }
                    fieldset {
                        legend { "Reference" }
                        label { "Compare clusters with " (text_input(&values, "reference_field", "folder, annotation_label or a metadata path")) }
                    }
                    button type="submit" { "Queue clustering" }
                }
                script src="/assets/selection.js" defer {}
            }
        }
        section {
            h2 { "Clustering jobs" }
            @if view.jobs.is_empty() {
                p { "No clustering jobs yet." }
            } @else {
                table #clustering-jobs {
                    thead { tr { th { "Job" } th { "Status" } th { "Progress" } th { "Sets" } th { "Algorithm" } th.number { "Clusters" } th { "Created" } } }
                    tbody {
                        @for job in &view.jobs {
                            tr data-clustering-job-id=(job.id) data-status=(job.status) {
                                td { a href=(format!("/clustering/{}", job.id)) { "job " (job.id) } }
                                td { (status_badge(&job.status)) }
                                td { (clustering_progress(job)) }
                                td { (job.embedding_set_ids.as_array().map(|ids| ids.len()).unwrap_or(0)) }
                                td { (method_of(&job.parameters, "algorithm")) }
                                td.number { (job.metrics.get("cluster_count").map(plain).unwrap_or_default()) }
                                td { (format_time(&job.created_at)) }
                            }
                        }
                    }
                }
                @if view.total_jobs > view.jobs.len() as u64 {
                    p.muted { "Showing the newest " (view.jobs.len()) " of " (view.total_jobs) " jobs." }
                }
            }
        }
    };
    layout("Clustering", Section::Clustering, view.notice.as_ref(), content)
}

fn method_of(parameters: &Value, key: &str) -> String {
    parameters.get(key).and_then(|part| part.get("method")).map(plain).unwrap_or_default()
}

/// A JSON value as plain text (strings without quotes, numbers rounded to 4 places).
pub fn plain(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        Value::Number(number) => match (number.as_i64(), number.as_f64()) {
            (Some(whole), _) => whole.to_string(),
            (None, Some(real)) => format!("{real:.4}"),
            _ => number.to_string(),
        },
        other => other.to_string(),
    }
}

/// A flat two-column table of a JSON object (nested objects shown as JSON).
fn key_value_table(object: &Value, skip: &[&str]) -> Markup {
    html! {
        @if let Some(map) = object.as_object() {
            table.key-values {
                tbody {
                    @for (key, value) in map.iter().filter(|(key, _)| !skip.contains(&key.as_str())) {
                        tr { th scope="row" { (key) } td { (plain(value)) } }
                    }
                }
            }
        }
    }
}

/// What the clustering job page shows.
#[derive(Debug, Clone)]
pub struct ClusteringJobView {
    pub job: ClusteringJobRow,
    pub clusters: Vec<ClusterRow>,
    pub notice: Option<Notice>,
    /// The log position the page shows; live updates start after it.
    pub events_after: EventSeq,
    /// Windows per cluster over time (`views::recording_time::occurrence_section`), once complete.
    pub occurrence: Option<Markup>,
}

/// The most frequent values of the summary's first categorical distributions, as text.
fn top_values(summary: &Value) -> String {
    let distributions = metadata_distributions(summary);
    distributions
        .iter()
        .filter(|distribution| distribution.name != "recordings")
        .take(3)
        .filter_map(|distribution| {
            distribution.bars.first().map(|(value, count)| format!("{}: {value} ({count})", distribution.name))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn contingency_table(contingency: &Value) -> Markup {
    // {"clusters": [labels], "categories": [reference values], "counts": [[windows per category] per cluster]}.
    let clusters: Vec<i64> = contingency
        .get("clusters")
        .and_then(Value::as_array)
        .map(|all| all.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    let categories: Vec<String> = contingency
        .get("categories")
        .and_then(Value::as_array)
        .map(|all| all.iter().map(plain).collect())
        .unwrap_or_default();
    let counts: Vec<Vec<String>> = contingency
        .get("counts")
        .and_then(Value::as_array)
        .map(|rows| {
            rows.iter()
                .map(|row| row.as_array().map(|row| row.iter().map(plain).collect()).unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    html! {
        @if clusters.is_empty() || counts.len() != clusters.len() {
            pre { (serde_json::to_string_pretty(contingency).unwrap_or_default()) }
        } @else {
            div.table-wrap {
                table.contingency {
                    thead { tr { th { "cluster \\ reference" } @for category in &categories { th { (category) } } } }
                    tbody {
                        @for (label, row) in clusters.iter().zip(&counts) {
                            tr { th scope="row" { (cluster_name(*label)) } @for count in row { td.number { (count) } } }
                        }
                    }
                }
            }
        }
    }
}

/// `k=3` or `min_cluster_size=10, cluster_selection=leaf`: what a sweep setting changed.
fn sweep_setting(algorithm: &Value) -> String {
    algorithm
        .as_object()
        .map(|fields| {
            fields
                .iter()
                .filter(|(key, value)| !matches!(key.as_str(), "method" | "seed") && !value.is_null())
                .map(|(key, value)| format!("{key}={}", plain(value)))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_else(|| plain(algorithm))
}

/// One row per sweep setting: its clusters, noise and internal metrics; the best silhouette is
/// marked.
fn sweep_table(sweep: &Value) -> Markup {
    let rows: Vec<&serde_json::Map<String, Value>> = sweep
        .as_array()
        .or_else(|| sweep.get("results").and_then(Value::as_array))
        .map(|rows| rows.iter().filter_map(Value::as_object).collect())
        .unwrap_or_default();
    let metric = |row: &serde_json::Map<String, Value>, name: &str| {
        row.get("metrics").and_then(|metrics| metrics.get(name)).and_then(Value::as_f64)
    };
    let best = rows
        .iter()
        .enumerate()
        .filter_map(|(index, row)| metric(row, "silhouette").map(|value| (index, value)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(index, _)| index);
    let number = |value: Option<f64>| value.map(|value| format!("{value:.3}")).unwrap_or_else(|| "—".into());
    html! {
        @if rows.is_empty() {
            pre { (serde_json::to_string_pretty(sweep).unwrap_or_default()) }
        } @else {
            div.table-wrap {
                table.sweep {
                    thead {
                        tr {
                            th scope="col" { "Setting" }
                            th.number scope="col" { "Clusters" }
                            th.number scope="col" { "Noise" }
                            th.number scope="col" { "Silhouette ↑" }
                            th.number scope="col" { "Davies–Bouldin ↓" }
                            th.number scope="col" { "Calinski–Harabasz ↑" }
                            th scope="col" { "Error" }
                        }
                    }
                    tbody {
                        @for (index, row) in rows.iter().enumerate() {
                            tr.best[best == Some(index)] {
                                td {
                                    (row.get("algorithm").map(sweep_setting).unwrap_or_default())
                                    @if best == Some(index) { " " span.badge.ok { "best silhouette" } }
                                }
                                td.number { (row.get("cluster_count").map(plain).unwrap_or_default()) }
                                td.number { (row.get("noise_count").map(plain).unwrap_or_default()) }
                                td.number { (number(metric(row, "silhouette"))) }
                                td.number { (number(metric(row, "davies_bouldin"))) }
                                td.number { (number(metric(row, "calinski_harabasz"))) }
                                td.error-text { (row.get("error").map(plain).unwrap_or_default()) }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub fn clustering_job_page(view: &ClusteringJobView) -> Markup {
    let job = &view.job;
    let title = format!("Clustering job {}", job.id);
    let rows: u64 = view.clusters.iter().map(|cluster| cluster.size).sum();
    let shown_clusters = clusters_to_list(&view.clusters);
    let finished = matches!(job.status.as_str(), "complete" | "failed" | "canceled");
    let content = html! {
        h1 { (title) }
        (live_updates_after(view.events_after))
        div.panel data-clustering-job-id=(job.id) data-status=(job.status) data-reload-when-finished {
            p { "Status " (status_badge(&job.status)) " " (clustering_progress(job)) }
            @if let Some(error) = &job.error_message { p.error-message { (error) } }
            @if let Some(filter) = job.metrics.get("score_filter").filter(|value| !value.is_null()) {
                p data-field="score-filter" {
                    "Only the calls: " strong { (plain(&filter["windows_kept"])) } " of "
                    (plain(&filter["windows_in_sets"])) " windows kept, those scoring at least "
                    (plain(&filter["min_score"]))
                    @if let Some(label) = filter["score_label"].as_str() { " for “" (label) "”" }
                    " in "
                    a href=(format!("/detection-jobs/{}", plain(&filter["detection_job_id"]))) {
                        "detection job " (plain(&filter["detection_job_id"]))
                    }
                    "."
                }
            }
            p.muted { "attempt " (job.attempt) " · created " (format_time(&job.created_at))
                @if let Some(finished_at) = &job.finished_at { " · finished " (format_time(finished_at)) } }
            div.actions {
                @if !finished {
                    form method="post" action=(format!("/clustering/{}/cancel", job.id)) { button type="submit" { "Cancel" } }
                }
                @if matches!(job.status.as_str(), "failed" | "canceled") {
                    form method="post" action=(format!("/clustering/{}/retry", job.id)) { button type="submit" { "Retry" } }
                }
                @if job.status == "complete" {
                    a href=(format!("/api/clustering-jobs/{}/assignments.csv", job.id)) download { "Assignments (CSV)" }
                    " · "
                    a href=(format!("/api/clustering-jobs/{}/clusters.json", job.id)) download { "clusters.json" }
                }
            }
        }
        @if job.status == "complete" { (map_workbench(job.id)) }
        details {
            summary { "Parameters and embedding sets" }
            pre { (serde_json::to_string_pretty(&job.parameters).unwrap_or_default()) }
            p { "Embedding sets: " (job.embedding_set_ids.as_array().map(|ids| ids.iter().map(plain).collect::<Vec<_>>().join(", ")).unwrap_or_default()) }
        }
        @if job.status == "complete" {
            section {
                h2 { "Metrics" }
                (key_value_table(&job.metrics, &["internal", "reference", "sweep", "score_filter"]))
                @if let Some(internal) = job.metrics.get("internal") {
                    h3 { "Internal" }
                    (key_value_table(internal, &[]))
                }
                @if let Some(reference) = job.metrics.get("reference").filter(|value| !value.is_null()) {
                    h3 { "Against the reference" }
                    (key_value_table(reference, &["contingency"]))
                    @if let Some(contingency) = reference.get("contingency") {
                        h4 { "Contingency table" }
                        (contingency_table(contingency))
                    }
                }
                @if let Some(sweep) = job.metrics.get("sweep").filter(|value| !value.is_null()) {
                    h3 { "Sweep" }
                    (sweep_table(sweep))
                }
            }
            section {
                h2 { "Clusters" }
                @if shown_clusters.len() < view.clusters.len() {
                    p.muted data-field="clusters-shown" {
                        "The " (shown_clusters.len()) " largest of " (view.clusters.len()) " rows (the clusters and noise), largest first; all of them are in "
                        a href=(format!("/api/clustering-jobs/{}/clusters.json", job.id)) download { "clusters.json" }
                        " and on the map."
                    }
                }
                table #clusters {
                    thead { tr { th { "Label" } th.number { "Windows" } th.number { "Share" } th { "Top metadata values" } } }
                    tbody {
                        @for cluster in &shown_clusters {
                            tr {
                                td { a href=(format!("/clusters/{}", cluster.id)) { (cluster_name(cluster.label)) } }
                                td.number { (cluster.size) }
                                td.number { (share(cluster.size, rows)) }
                                td { (top_values(&cluster.metadata_summary)) }
                            }
                        }
                    }
                }
            }
            @if let Some(occurrence) = &view.occurrence { (occurrence) }
        }
    };
    layout(&title, Section::Clustering, view.notice.as_ref(), content)
}

/// Rows of the job page's cluster table at most: HDBSCAN's defaults find 18 036 clusters in a
/// million windows, a 3.4 MB table.
const CLUSTER_ROWS_SHOWN: usize = 500;

/// The clusters the job page lists: all of them in label order, or, when there are more than
/// [`CLUSTER_ROWS_SHOWN`], that many of the largest, largest first (ties by label).
fn clusters_to_list(clusters: &[ClusterRow]) -> Vec<&ClusterRow> {
    let mut listed: Vec<&ClusterRow> = clusters.iter().collect();
    if listed.len() > CLUSTER_ROWS_SHOWN {
        listed.sort_by(|left, right| right.size.cmp(&left.size).then(left.label.cmp(&right.label)));
        listed.truncate(CLUSTER_ROWS_SHOWN);
    }
    listed
}

/// The 2-D map as a workbench: zoom, pan, box and lasso selection, colour by any field with a
/// legend, and a panel for the selection (tiles, play all, annotate, export). `scatter.js`.
fn map_workbench(job_id: u64) -> Markup {
    html! {
        section.map-workbench aria-labelledby="map-heading" {
            h2 #map-heading { "Map of the windows" }
            div.scatter data-points-url=(format!("/clustering/{job_id}/points.json")) {
                div.map-toolbar role="toolbar" aria-label="Map tools" {
                    fieldset.map-modes {
                        legend { "Drag to" }
                        label { input type="radio" name="map-mode" value="pan" checked; " pan" }
                        label { input type="radio" name="map-mode" value="box"; " select a box" }
                        label { input type="radio" name="map-mode" value="lasso"; " lasso" }
                    }
                    label for="map-colour" { "Colour by" }
                    select #map-colour { option value="cluster" { "Cluster" } }
                    button #map-zoom-in type="button" title="Zoom in (or use the wheel)" { "+" }
                    button #map-zoom-out type="button" title="Zoom out" { "−" }
                    button #map-reset type="button" { "Reset view" }
                }
                div.map-body {
                    div.map-canvas {
                        canvas #scatter width="1200" height="720" data-mode="pan"
                            aria-label="2-D map of the clustered windows" {}
                        div #scatter-tooltip.scatter-tooltip role="status" hidden {}
                    }
                    ul #map-legend.map-legend aria-label="Legend (click an entry to select it)" {}
                }
                p #scatter-note.muted {}
                p.muted { "Hover a point for its recording, time and cluster; click it to listen. Shift adds to a selection." }
                audio #scatter-audio controls preload="none" {}
            }
            section #selection-panel.panel hidden aria-labelledby="selection-heading" {
                h3 #selection-heading {
                    span data-field="selection-count" { "0" } " windows selected from "
                    span data-field="selection-recordings" { "0" } " recordings"
                }
                p.muted data-field="selection-recording-list" {}
                div.actions {
                    button #selection-play type="button" { "Play one after another" }
                    button #selection-csv type="button" { "Export CSV" }
                    button #selection-raven type="button" { "Export Raven table" }
                    button #selection-clear type="button" { "Clear selection" }
                }
                form #selection-annotate.tile-annotate {
                    label for="selection-label" { "Label" }
                    input #selection-label type="text" name="label" maxlength="200" required list="selection-labels"
                        autocomplete="off" placeholder="e.g. song unit A";
                    datalist #selection-labels {}
                    label for="selection-kind" { "Kind" }
                    select #selection-kind name="kind" {
                        option value="positive" selected { "positive" }
                        option value="negative" { "negative" }
                        option value="uncertain" { "uncertain" }
                    }
                    button type="submit" { "Annotate the selection" }
                }
                p.muted data-field="selection-status" role="status" aria-live="polite" {}
                p.muted data-field="selection-tiles-note" {}
                div.tiles-wrap {
                    ol.recent-labels data-recent-labels aria-label="Recent labels" {}
                    div.tile-grid #selection-tiles data-tiles {}
                    p.muted data-tile-status role="status" aria-live="polite" {}
                }
            }
            script src="/assets/tiles.js" defer {}
            script src="/assets/scatter.js" defer {}
        }
    }
}

fn share(part: u64, total: u64) -> String {
    if total == 0 {
        return String::new();
    }
    format!("{:.1}%", part as f64 * 100.0 / total as f64)
}

pub fn cluster_name(label: i64) -> String {
    if label < 0 {
        "noise".into()
    } else {
        format!("cluster {label}")
    }
}

/// One distribution of a cluster's metadata: a field and its most frequent values.
#[derive(Debug, Clone, PartialEq)]
pub struct Distribution {
    pub name: String,
    pub bars: Vec<(String, u64)>,
    pub note: Option<String>,
}

fn counts_of(object: &Value) -> Vec<(String, u64)> {
    let mut bars: Vec<(String, u64)> = object
        .as_object()
        .map(|map| map.iter().filter_map(|(key, count)| count.as_u64().map(|count| (key.clone(), count))).collect())
        .unwrap_or_default();
    bars.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    bars
}

/// The distributions in a metadata summary: folders, recordings and every metadata field.
pub fn metadata_distributions(summary: &Value) -> Vec<Distribution> {
    let mut distributions = Vec::new();
    for key in ["folders", "folder", "recordings"] {
        if let Some(object) = summary.get(key).filter(|value| value.is_object()) {
            distributions.push(Distribution { name: key.to_string(), bars: counts_of(object), note: None });
        }
    }
    if let Some(fields) = summary.get("fields").and_then(Value::as_object) {
        for (path, field) in fields {
            let note = field.get("numeric").map(|numeric| {
                format!(
                    "numbers: min {}, median {}, max {} ({} files)",
                    numeric.get("min").map(plain).unwrap_or_default(),
                    numeric.get("median").map(plain).unwrap_or_default(),
                    numeric.get("max").map(plain).unwrap_or_default(),
                    numeric.get("count").map(plain).unwrap_or_default()
                )
            });
            let bars = field.get("counts").map(counts_of).unwrap_or_default();
            distributions.push(Distribution { name: path.clone(), bars, note });
        }
    }
    distributions
}

/// A clustered window with its recording's id and name, when known.
pub type MemberWithRecording = (AssignmentRow, Option<(u64, String)>);

/// What the cluster page shows.
#[derive(Debug, Clone)]
pub struct ClusterView {
    pub cluster: ClusterRow,
    /// Members on this page with their recording's id and name, when known.
    pub members: Vec<MemberWithRecording>,
    pub total: u64,
    pub offset: u64,
    pub limit: u64,
    /// Names of recordings by id, for the recordings distribution.
    pub recording_names: BTreeMap<u64, String>,
    /// Annotation labels already in use, offered when annotating.
    pub known_labels: Vec<String>,
}

/// The members as tiles (members whose recording is unknown cannot be played and are left out).
fn member_tiles(members: &[MemberWithRecording]) -> Vec<super::WindowTile> {
    members
        .iter()
        .filter_map(|(member, recording)| {
            let (id, name) = recording.as_ref()?;
            Some(super::WindowTile {
                audio_file_id: *id,
                recording: name.clone(),
                start_seconds: member.start_seconds,
                duration_seconds: (member.end_seconds - member.start_seconds).max(0.0),
                embedding_set_id: Some(member.embedding_set_id),
                row_index: Some(member.row_index),
                caption: Some(format!("p {:.2}", member.probability)),
                review_label: None,
            })
        })
        .collect()
}

pub fn cluster_page(view: &ClusterView) -> Markup {
    let cluster = &view.cluster;
    let title = format!("{} of clustering job {}", cluster_name(cluster.label), cluster.clustering_job_id);
    let content = html! {
        h1 { (title) }
        p { (cluster.size) " windows · " a href=(format!("/clustering/{}", cluster.clustering_job_id)) { "back to the job" } }
        section {
            h2 { "Metadata" }
            @let distributions = metadata_distributions(&cluster.metadata_summary);
            @if distributions.is_empty() { p { "No metadata summary." } }
            @for distribution in &distributions {
                @let largest = distribution.bars.iter().map(|(_, count)| *count).max().unwrap_or(1).max(1);
                div.distribution {
                    h3 { (distribution.name) }
                    @if let Some(note) = &distribution.note { p.muted { (note) } }
                    @for (value, count) in distribution.bars.iter().take(12) {
                        div.bar-row {
                            @match (distribution.name.as_str(), value.parse::<u64>().ok()) {
                                ("recordings", Some(id)) => {
                                    span.bar-label {
                                        a href=(format!("/audio/{id}")) {
                                            (view.recording_names.get(&id).map(String::as_str).unwrap_or(value))
                                        }
                                    }
                                }
                                _ => { span.bar-label { (value) } }
                            }
                            span.bar-track { span.bar style=(format!("width: {:.1}%", *count as f64 * 100.0 / largest as f64)) {} }
                            span.bar-count { (count) }
                        }
                    }
                    @if distribution.bars.len() > 12 { p.muted { "and " (distribution.bars.len() - 12) " more values" } }
                }
            }
        }
        section {
            h2 { "Windows" }
            (offset_pager(view.total, view.offset, view.limit, |offset| format!("/clusters/{}?offset={offset}", cluster.id)))
            (super::tile_grid("members", &member_tiles(&view.members), &view.known_labels))
        }
    };
    layout(&title, Section::Clustering, None, content)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_sweep_row_names_its_setting_and_the_best_silhouette_is_marked() {
        let sweep = json!([
            {"algorithm": {"method": "kmeans", "k": 2, "seed": 42}, "cluster_count": 2, "noise_count": 0,
             "metrics": {"silhouette": 0.41, "davies_bouldin": 0.9, "calinski_harabasz": 51.2}, "error": null},
            {"algorithm": {"method": "kmeans", "k": 3, "seed": 42}, "cluster_count": 3, "noise_count": 0,
             "metrics": {"silhouette": 0.65, "davies_bouldin": 0.3, "calinski_harabasz": 198.4}, "error": null},
            {"algorithm": {"method": "kmeans", "k": 40, "seed": 42}, "cluster_count": 0, "noise_count": 0,
             "metrics": {}, "error": "k 40 is above the 35 rows"}
        ]);
        let html = sweep_table(&sweep).into_string();
        assert!(html.contains("<td>k=2</td>") && html.contains("k=40"), "{html}");
        assert!(!html.contains("seed"), "unchanged fields are left out");
        let best_row = html.split("<tr").find(|row| row.contains("best silhouette")).expect("a best row");
        assert!(best_row.contains("k=3") && best_row.contains("0.650"), "{best_row}");
        assert!(html.contains("k 40 is above the 35 rows"));
    }

    fn cluster_rows(sizes: &[u64]) -> Vec<ClusterRow> {
        sizes
            .iter()
            .enumerate()
            .map(|(index, size)| ClusterRow {
                id: index as u64 + 1,
                clustering_job_id: 1,
                label: index as i64 - 1,
                noise: index == 0,
                size: *size,
                metadata_summary: json!({}),
            })
            .collect()
    }

    #[test]
    fn a_job_with_few_clusters_lists_them_all_in_label_order() {
        let clusters = cluster_rows(&[40, 3, 90, 7]);
        let labels: Vec<i64> = clusters_to_list(&clusters).iter().map(|cluster| cluster.label).collect();
        assert_eq!(labels, vec![-1, 0, 1, 2]);
    }

    #[test]
    fn a_job_with_thousands_of_clusters_lists_the_largest_first() {
        let sizes: Vec<u64> = (0..CLUSTER_ROWS_SHOWN as u64 + 300).map(|index| (index * 7919) % 1000 + 5).collect();
        let clusters = cluster_rows(&sizes);
        let listed = clusters_to_list(&clusters);
        assert_eq!(listed.len(), CLUSTER_ROWS_SHOWN);
        assert!(listed.windows(2).all(|pair| pair[0].size >= pair[1].size), "largest first");
        let smallest_listed = listed.last().map_or(0, |cluster| cluster.size);
        let left_out = clusters.iter().filter(|cluster| !listed.iter().any(|shown| shown.id == cluster.id));
        assert!(left_out.into_iter().all(|cluster| cluster.size <= smallest_listed));
    }
}
