//! Detector pages: the classifiers (each detector's versions side by side with their
//! cross-validated figures, the forms to train and to run detection), one detection job's
//! detections as tiles to confirm or reject, "label next", and the score track of a recording.

use std::collections::BTreeMap;

use maud::{html, Markup};
use serde_json::Value;

use super::{
    format_time, layout, live_updates_after, offset_pager, status_badge, tile_grid, Notice, Section, WindowTile,
};
use crate::domain::ids::EventSeq;
use crate::projections::queries::{ClassifierRow, DetectionJobRow, RecordingDetectionCount};

/// What the classifiers page shows.
#[derive(Debug, Clone)]
pub struct ClassifiersView {
    /// Every classifier, newest first.
    pub classifiers: Vec<ClassifierRow>,
    /// Recent detection jobs, newest first.
    pub detection_jobs: Vec<DetectionJobRow>,
    pub model_versions: Vec<String>,
    pub known_labels: Vec<String>,
    pub events_after: EventSeq,
}

/// A detector is what its versions share: the labels learnt and the embedding model. Each
/// training (the first and every retraining) is a version, oldest first.
pub fn group_versions(classifiers: &[ClassifierRow]) -> Vec<(String, String, Vec<&ClassifierRow>)> {
    let mut groups: BTreeMap<(String, String), Vec<&ClassifierRow>> = BTreeMap::new();
    for classifier in classifiers {
        let labels = labels_text(&classifier.labels);
        groups.entry((labels, classifier.model_version.clone())).or_default().push(classifier);
    }
    let mut groups: Vec<(String, String, Vec<&ClassifierRow>)> = groups
        .into_iter()
        .map(|((labels, model), mut versions)| {
            versions.sort_by_key(|classifier| classifier.id);
            (labels, model, versions)
        })
        .collect();
    // The detector trained most recently first.
    groups.sort_by_key(|(_, _, versions)| std::cmp::Reverse(versions.last().map_or(0, |c| c.id)));
    groups
}

fn labels_text(labels: &Value) -> String {
    labels
        .as_array()
        .map(|labels| labels.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

/// The settings a version was trained with, in short (`C 1 · balanced · 5 folds`).
fn settings_text(request: &Value) -> String {
    let field = |name: &str| match request.get(name) {
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    format!("C {} · {} · {} folds", field("c"), field("class_weighting"), field("folds"))
}

fn head_metric(classifier: &ClassifierRow, label: &str, name: &str) -> Option<f64> {
    classifier
        .metrics
        .as_array()?
        .iter()
        .find(|head| head.get("label").and_then(Value::as_str) == Some(label))?
        .get(name)?
        .as_f64()
}

/// A figure with its change from the version before (when both have one).
fn metric_cell(value: Option<f64>, before: Option<f64>) -> Markup {
    html! {
        td.number {
            @match value {
                Some(value) => {
                    (format!("{value:.3}"))
                    @if let Some(before) = before {
                        @let change = value - before;
                        @if change.abs() >= 0.0005 {
                            br; span class=(if change > 0.0 { "better" } else { "worse" }) {
                                (format!("{}{:.3}", if change > 0.0 { "+" } else { "−" }, change.abs()))
                            }
                        }
                    }
                }
                None => { "—" }
            }
        }
    }
}

const METRICS_SHOWN: [(&str, &str); 4] =
    [("roc_auc", "ROC AUC"), ("average_precision", "AP"), ("precision", "precision"), ("recall", "recall")];

fn versions_table(labels: &[String], versions: &[&ClassifierRow]) -> Markup {
    html! {
        div.table-wrap {
            table.versions {
                thead {
                    tr {
                        th scope="col" { "Version" }
                        th scope="col" { "Status" }
                        th scope="col" { "Windows" }
                        th scope="col" { "Recordings" }
                        @for label in labels {
                            @for (_, title) in METRICS_SHOWN {
                                th scope="col" { @if labels.len() > 1 { (label) " " } (title) }
                            }
                        }
                        th scope="col" { "Threshold" }
                    }
                }
                tbody {
                    @for (index, classifier) in versions.iter().enumerate() {
                        @let before = versions[..index].iter().rev().find(|earlier| earlier.status == "complete");
                        tr #(format!("classifier-{}", classifier.id)) data-classifier-id=(classifier.id) {
                            td {
                                strong { "v" (index + 1) } " · classifier " (classifier.id)
                                @if let Some(version) = &classifier.version { br; code.small { (version) } }
                                br;
                                span.muted.small { (settings_text(&classifier.request)) }
                                br;
                                @if classifier.status == "complete" {
                                    a href=(format!("/classifiers/{}/label-next", classifier.id)) { "Label next" }
                                    " · "
                                }
                                a href=(format!("/api/classifiers/{}", classifier.id)) { "JSON" }
                            }
                            td { (status_badge(&classifier.status))
                                @if let Some(stage) = classifier.stage.as_ref().filter(|_| classifier.status == "running") { " " (stage) }
                                @if let Some(error) = &classifier.error_message { br; span.error-message { (error) } } }
                            td.number { (classifier.training_set.get("windows").map(super::clustering::plain).unwrap_or_default()) }
                            td.number { (classifier.training_set.get("recordings").map(super::clustering::plain).unwrap_or_default()) }
                            @for label in labels {
                                @for (name, _) in METRICS_SHOWN {
                                    (metric_cell(head_metric(classifier, label, name), before.and_then(|before| head_metric(before, label, name))))
                                }
                            }
                            td.number { (classifier.threshold.map(|t| format!("{t:.2}")).unwrap_or_default()) }
                        }
                    }
                }
            }
        }
    }
}

fn detection_form(classifier: &ClassifierRow) -> Markup {
    let id = classifier.id;
    html! {
        form.inline-form method="post" action=(format!("/classifiers/{id}/detect")) {
            label for=(format!("detect-folder-{id}")) { "Run version " (id) " over folder" }
            input #(format!("detect-folder-{id}")) type="text" name="folder" placeholder="every recording";
            label for=(format!("detect-threshold-{id}")) { "threshold" }
            input #(format!("detect-threshold-{id}")) type="number" name="threshold" min="0" max="1" step="any"
                placeholder=(classifier.threshold.map(|t| format!("{t}")).unwrap_or_default());
            button type="submit" { "Run detection" }
        }
    }
}

fn detection_jobs_table(jobs: &[&DetectionJobRow]) -> Markup {
    html! {
        div.table-wrap {
            table {
                thead { tr {
                    th scope="col" { "Detection job" } th scope="col" { "Classifier" } th scope="col" { "Status" }
                    th scope="col" { "Windows scored" } th scope="col" { "Detections" } th scope="col" { "Threshold" }
                    th scope="col" { "Created (UTC)" }
                } }
                tbody {
                    @for job in jobs {
                        tr data-detection-job-id=(job.id) {
                            td { a href=(format!("/detection-jobs/{}", job.id)) { "Detection job " (job.id) } }
                            td { (job.classifier_id) }
                            td { (status_badge(&job.status)) }
                            td.number { (job.windows_scored.map(|n| n.to_string()).unwrap_or_default()) }
                            td.number { (job.detection_count.map(|n| n.to_string()).unwrap_or_default()) }
                            td.number { (format!("{:.2}", job.threshold)) }
                            td.nowrap { (format_time(&job.created_at)) }
                        }
                    }
                }
            }
        }
    }
}

fn train_form(view: &ClassifiersView) -> Markup {
    html! {
        form.panel method="post" action="/classifiers/train" #train-classifier {
            h2 { "Train a detector" }
            p.muted { "A logistic regression on the frozen embeddings of annotated windows, evaluated by cross-validation grouped by recording." }
            p {
                label for="train-labels" { "Labels (comma-separated; several = one head each)" }
                input #train-labels type="text" name="labels" list="train-known-labels" required placeholder="e.g. song unit A";
                datalist #train-known-labels { @for label in &view.known_labels { option value=(label) {} } }
            }
            p {
                label for="train-model" { "Embedding model version" }
                select #train-model name="model_version" required {
                    @for version in &view.model_versions { option value=(version) { (version) } }
                }
            }
            fieldset {
                legend { "Negatives" }
                label { input type="checkbox" name="negative_annotations" value="true" checked; " negative annotations" }
                " "
                label { input type="checkbox" name="other_labels" value="true" checked; " windows of other labels" }
            }
            p {
                label for="train-c" { "C (inverse L2 strength)" }
                input #train-c type="number" name="c" min="0" step="any" value="1";
                " "
                label for="train-weighting" { "class weights" }
                select #train-weighting name="class_weighting" {
                    option value="balanced" selected { "balanced" }
                    option value="none" { "none" }
                }
                " "
                label for="train-folds" { "folds" }
                input #train-folds type="number" name="folds" min="2" max="20" value="5";
                " "
                label for="train-threshold" { "threshold" }
                input #train-threshold type="number" name="threshold" min="0" max="1" step="any" value="0.5";
            }
            button type="submit" { "Train" }
        }
    }
}

pub fn classifiers_page(view: &ClassifiersView, notice: Option<&Notice>) -> Markup {
    let groups = group_versions(&view.classifiers);
    let content = html! {
        h1 { "Detectors" }
        (live_updates_after(view.events_after))
        p.lead { "Train a classifier on annotated windows, run it over the archive, review what it finds, label what it is unsure of and retrain: each retraining is a new version beside the ones before." }
        @if groups.is_empty() {
            p.muted { "No detector yet: annotate some windows (positive and negative) and train one below." }
        }
        @for (labels, model, versions) in &groups {
            @let label_list: Vec<String> = labels.split(", ").map(str::to_string).collect();
            @let latest = versions.last().copied();
            section.panel.detector {
                h2 { "“" (labels) "” on " code { (model) } }
                (versions_table(&label_list, versions))
                @if let Some(latest) = latest {
                    div.actions {
                        form method="post" action=(format!("/classifiers/{}/retrain", latest.id)) {
                            button type="submit" { "Retrain with the annotations as they are now" }
                        }
                        @if latest.status == "complete" { (detection_form(latest)) }
                    }
                }
                @let ids: Vec<u64> = versions.iter().map(|classifier| classifier.id).collect();
                @let jobs: Vec<&DetectionJobRow> = view.detection_jobs.iter().filter(|job| ids.contains(&job.classifier_id)).collect();
                @if !jobs.is_empty() {
                    h3 { "Detection jobs" }
                    (detection_jobs_table(&jobs))
                }
            }
        }
        (train_form(view))
    };
    layout("Detectors", Section::Classifiers, notice, content)
}

/// What a detection job page shows.
#[derive(Debug, Clone)]
pub struct DetectionJobView {
    pub job: DetectionJobRow,
    pub labels: Vec<String>,
    pub model_version: String,
    /// This page of detections as tiles, highest score first.
    pub tiles: Vec<WindowTile>,
    pub total: u64,
    pub offset: u64,
    pub limit: u64,
    pub audio_file_id: Option<u64>,
    pub per_recording: Vec<RecordingDetectionCount>,
    pub known_labels: Vec<String>,
    pub events_after: EventSeq,
}

pub fn detection_job_page(view: &DetectionJobView, notice: Option<&Notice>) -> Markup {
    let job = &view.job;
    let title = format!("Detection job {}", job.id);
    let recording_query = view.audio_file_id.map(|id| format!("?audio_file_id={id}")).unwrap_or_default();
    let page_link = |offset: u64| {
        let mut link = format!("/detection-jobs/{}?offset={offset}", job.id);
        if let Some(audio) = view.audio_file_id {
            link.push_str(&format!("&audio_file_id={audio}"));
        }
        link
    };
    let content = html! {
        p.breadcrumbs { a href="/classifiers" { "Detectors" } " / " (title) }
        h1 { (title) }
        (live_updates_after(view.events_after))
        div.panel data-detection-job-id=(job.id) data-status=(job.status) data-reload-when-finished {
            p {
                "Status " (status_badge(&job.status))
                @if let Some(progress) = job.progress.filter(|_| job.status == "running") { " " (format!("{:.0} %", progress * 100.0)) }
            }
            @if let Some(error) = &job.error_message { p.error-message { (error) } }
            p {
                "Classifier " a href=(format!("/classifiers#classifier-{}", job.classifier_id)) { (job.classifier_id) }
                " (“" (view.labels.join(", ")) "”, version " code { (job.classifier_version) } ") on " code { (view.model_version) }
                " · threshold " (format!("{:.2}", job.threshold))
                @if let Some(scored) = job.windows_scored { " · " (scored) " windows scored" }
                @if let Some(count) = job.detection_count { " · " (count) " detections" }
            }
            @if job.status == "complete" {
                p {
                    "Export" @if view.audio_file_id.is_some() { " this recording's" } ": "
                    a href=(format!("/api/detection-jobs/{}/selections.txt{recording_query}", job.id)) download { "Raven selection table" }
                    " · "
                    a href=(format!("/api/detection-jobs/{}/selections.csv{recording_query}", job.id)) download { "CSV" }
                    " · "
                    a href=(format!("/classifiers/{}/label-next", job.classifier_id)) { "Label next for this classifier" }
                }
                form.inline-form method="post" action="/clustering/queue" {
                    input type="hidden" name="model_version" value=(view.model_version);
                    input type="hidden" name="detection_job_id" value=(job.id);
                    input type="hidden" name="normalize_l2" value="true";
                    input type="hidden" name="plot_2d" value="true";
                    label for="cluster-min-score" { "Cluster only the calls scoring at least" }
                    input #cluster-min-score type="number" name="min_score" min="0" max="1" step="any" value=(job.threshold);
                    button type="submit" { "Cluster them" }
                }
            }
        }
        @if job.status == "complete" {
            section aria-labelledby="per-recording-heading" {
                h2 #per-recording-heading { "Per recording" }
                @if view.per_recording.is_empty() {
                    p.muted { "Nothing scored at or above the threshold." }
                } @else {
                    div.table-wrap {
                        table {
                            thead { tr { th scope="col" { "Recording" } th scope="col" { "Detections" } th scope="col" { "Best score" } th scope="col" { "" } } }
                            tbody {
                                @for row in &view.per_recording {
                                    tr {
                                        td { a href=(format!("/audio/{}?detection_job={}", row.audio_file_id, job.id)) { (row.recording.as_deref().unwrap_or("(removed)")) } }
                                        td.number { (row.detections) }
                                        td.number { (format!("{:.3}", row.best_score)) }
                                        td { a href=(format!("/detection-jobs/{}?audio_file_id={}", job.id, row.audio_file_id)) { "only these" } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            section aria-labelledby="detections-heading" {
                h2 #detections-heading { "Detections, highest score first" }
                @if view.audio_file_id.is_some() { p { a href=(format!("/detection-jobs/{}", job.id)) { "Show every recording" } } }
                p.muted { "Confirm records a positive annotation of the detection's label over its span, reject a negative one; both train the next version." }
                (offset_pager(view.total, view.offset, view.limit, page_link))
                (tile_grid("detections", &view.tiles, &view.known_labels))
            }
        }
    };
    layout(&title, Section::Classifiers, notice, content)
}

/// What the "label next" page shows.
#[derive(Debug, Clone)]
pub struct LabelNextView {
    pub classifier: ClassifierRow,
    /// The detection job the scores came from (none: the page says to run one).
    pub detection_job_id: Option<u64>,
    pub threshold: Option<f64>,
    pub tiles: Vec<WindowTile>,
    pub known_labels: Vec<String>,
}

pub fn label_next_page(view: &LabelNextView, notice: Option<&Notice>) -> Markup {
    let classifier = &view.classifier;
    let title = format!("Label next for classifier {}", classifier.id);
    let content = html! {
        p.breadcrumbs { a href="/classifiers" { "Detectors" } " / " (title) }
        h1 { (title) }
        p.lead {
        "“" (labels_text(&classifier.labels)) "” on " code { (classifier.model_version) } ". "
            "The windows whose scores sit closest to the threshold (where it is least sure), then the best-scoring windows of recordings nobody has annotated yet."
        }
        @match view.detection_job_id {
            None => {
                p.error-message { "This classifier has no completed detection job yet: run one from the " a href="/classifiers" { "detectors page" } " first; its scores are what this page reads." }
            }
            Some(job) => {
                p.muted {
                    "Scores from " a href=(format!("/detection-jobs/{job}")) { "detection job " (job) }
                    @if let Some(threshold) = view.threshold { " (threshold " (format!("{threshold:.2}")) ")" }
                    "; windows any annotation already touches are left out. "
                    a href=(format!("/api/classifiers/{}/label-next", classifier.id)) { "JSON" }
                }
                @if view.tiles.is_empty() {
                    p { "Nothing left to suggest." }
                } @else {
                    (tile_grid("label-next", &view.tiles, &view.known_labels))
                }
                div.actions {
                    a href=(format!("/classifiers/{}/label-next", classifier.id)) { "More suggestions" }
                    form method="post" action=(format!("/classifiers/{}/retrain", classifier.id)) {
                        button type="submit" { "Retrain with these annotations" }
                    }
                }
            }
        }
    };
    layout(&title, Section::Classifiers, notice, content)
}

/// A recording's scores in the range shown, drawn under its spectrogram.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreTrack {
    pub detection_job_id: u64,
    pub threshold: f64,
    pub labels: Vec<String>,
    /// Per window in the range: start, end, one score per label.
    pub windows: Vec<(f64, f64, Vec<f64>)>,
}

/// Width and height of the track: the spectrogram image's width, so that with the same plot
/// area (`spectrogram::PlotArea`) a time sits at the same x in both.
const TRACK_WIDTH: u32 = 1000;
const TRACK_HEIGHT: f64 = 90.0;
const TRACK_LABELS: usize = 4;

/// The score track: one line per label (each window's score at its middle) and the threshold,
/// on the spectrogram's time axis (`start` to `start + duration` across its plot area).
pub fn score_track_section(track: &ScoreTrack, audio_file_id: u64, start: f64, duration: f64) -> Markup {
    let area = crate::spectrogram::PlotArea::for_image(TRACK_WIDTH, 320);
    let (left, width) = (f64::from(area.left), f64::from(area.width));
    let x = |seconds: f64| left + ((seconds - start) / duration).clamp(0.0, 1.0) * width;
    let y = |score: f64| TRACK_HEIGHT - 4.0 - score.clamp(0.0, 1.0) * (TRACK_HEIGHT - 8.0);
    let lines: Vec<String> = (0..track.labels.len().min(TRACK_LABELS))
        .map(|label| {
            track
                .windows
                .iter()
                .map(|(from, to, scores)| format!("{:.1},{:.1}", x((from + to) / 2.0), y(scores[label])))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect();
    let threshold_y = format!("{:.1}", y(track.threshold));
    html! {
        div.score-track-wrap {
            svg.score-track viewBox=(format!("0 0 {TRACK_WIDTH} {TRACK_HEIGHT}")) preserveAspectRatio="none" role="img"
                aria-labelledby="score-track-heading" {
                rect.plot x=(left) y="0" width=(width) height=(TRACK_HEIGHT) {}
                text x=(left - 6.0) y=(format!("{:.1}", y(1.0) + 4.0)) text-anchor="end" { "1" }
                text x=(left - 6.0) y=(format!("{:.1}", y(0.0))) text-anchor="end" { "0" }
                line.threshold x1=(left) x2=(left + width) y1=(threshold_y) y2=(threshold_y) {}
                @for (index, points) in lines.iter().enumerate() {
                    polyline class=(format!("label-{index}")) points=(points) {}
                }
            }
            p.muted.score-legend #score-track-heading {
                "Detector scores: "
                @for (index, label) in track.labels.iter().take(TRACK_LABELS).enumerate() {
                    span class=(format!("label-{index}")) { "— " (label) } " "
                }
                "· dashed: threshold " (format!("{:.2}", track.threshold)) " · " (track.windows.len()) " windows from "
                a href=(format!("/detection-jobs/{}?audio_file_id={audio_file_id}", track.detection_job_id)) { "detection job " (track.detection_job_id) }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classifier(id: u64, labels: &[&str], auc: f64) -> ClassifierRow {
        ClassifierRow {
            id,
            status: "complete".into(),
            labels: serde_json::json!(labels),
            model_version: "fake_v1".into(),
            request: serde_json::json!({}),
            attempt: 1,
            worker: None,
            cancel_requested: false,
            stage: None,
            progress: None,
            version: Some("0123456789abcdef".into()),
            artifact_path: None,
            vector_dim: Some(8),
            threshold: Some(0.5),
            metrics: serde_json::json!([{"label": labels[0], "roc_auc": auc, "average_precision": 0.8, "precision": 0.7, "recall": 0.6}]),
            training_set: serde_json::json!({"windows": 40, "recordings": 3}),
            error_message: None,
            created_at: "2026-12-01T22:00:00Z".into(),
            updated_at: "2026-12-01T22:00:00Z".into(),
            started_at: None,
            finished_at: None,
        }
    }

    #[test]
    fn versions_of_a_detector_sit_side_by_side_with_their_change() {
        let classifiers = vec![
            classifier(3, &["<b>song</b>"], 0.95),
            classifier(2, &["grunt"], 0.7),
            classifier(1, &["<b>song</b>"], 0.9),
        ];
        let groups = group_versions(&classifiers);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].2.iter().map(|c| c.id).collect::<Vec<_>>(), vec![1, 3], "oldest version first");
        let view = ClassifiersView {
            classifiers,
            detection_jobs: vec![],
            model_versions: vec!["fake_v1".into()],
            known_labels: vec![],
            events_after: EventSeq(0),
        };
        let html = classifiers_page(&view, None).into_string();
        assert!(html.contains("+0.050"), "the retraining's gain in ROC AUC is shown");
        assert!(!html.contains("<b>song</b>") && html.contains("&lt;b&gt;song&lt;/b&gt;"), "labels are escaped");
        assert!(html.contains("/classifiers/3/retrain") && html.contains("/classifiers/3/detect"));
    }

    #[test]
    fn the_score_track_lines_up_with_the_range_shown() {
        let track = ScoreTrack {
            detection_job_id: 4,
            threshold: 0.5,
            labels: vec!["song".into()],
            windows: vec![(10.0, 15.0, vec![1.0]), (15.0, 20.0, vec![0.0])],
        };
        let html = score_track_section(&track, 7, 10.0, 10.0).into_string();
        // the plot area is 52..990 of 1000 pixels, as in the spectrogram image
        assert!(html.contains("points=\"286.5,4.0 755.5,86.0\""), "{html}");
        assert!(html.contains("/detection-jobs/4?audio_file_id=7"));
    }
}
