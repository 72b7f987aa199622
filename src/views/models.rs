//! The models page: every usable model with where each fact came from, its warnings, the upload
//! form (`POST /models/add`), retire buttons, retired models and files that cannot be used.

use maud::{html, Markup};

use super::{layout, Notice, Section};
use crate::model::{BatchChoice, FactSource, ListedModel, ModelFormat, ModelListing};

fn fact(value: Markup, source: FactSource) -> Markup {
    let class = if source == FactSource::Assumed { "fact assumed warning-text" } else { "fact" };
    html! { (value) br; small class=(class) { (source.label()) } }
}

/// The batch size, where it came from, and the measured table (windows/s and memory per size).
fn batch_cell(batch: &BatchChoice) -> Markup {
    html! {
        (batch.batch_size) br; small.fact { (batch.batch_size_source.label()) }
        @if !batch.batch_measurements.is_empty() {
            details.batch-measurements {
                summary { "per size" }
                table {
                    thead { tr { th.number { "batch" } th.number { "windows/s" } th.number { "memory" } } }
                    tbody {
                        @for measurement in &batch.batch_measurements {
                            tr.chosen[measurement.batch_size == batch.batch_size] {
                                td.number { (measurement.batch_size) }
                                td.number { (format!("{:.0}", measurement.windows_per_second)) }
                                td.number { (format!("{:.0} MiB", measurement.memory_bytes as f64 / f64::from(1u32 << 20))) }
                            }
                        }
                    }
                }
                small { "within " (format!("{:.0} MiB", batch.model_memory_bytes as f64 / f64::from(1u32 << 20))) " per worker (--model-memory)" }
            }
        }
    }
}

fn model_rows(models: &[ListedModel], default_model: &str, retirable: bool) -> Markup {
    html! {
        table.models {
            thead { tr {
                th { "Name" } th { "Format" } th { "Version" } th { "Input" } th.number { "Sample rate" }
                th.number { "Window" } th.number { "Dimension" } th.number { "Batch" } th { "Embedding output" } th { "Source" }
                @if retirable { th { } }
            } }
            tbody {
                @for model in models {
                    tr data-model=(model.name) {
                        td {
                            strong { (model.name) }
                            @if model.name == default_model { " (default)" }
                            @for warning in &model.warnings { p.model-warning.warning-text { "Warning: " (warning) } }
                        }
                        td { (model.format.label()) }
                        td { code { (model.version) } }
                        td { (fact(html! { (format!("{:?}", model.input_kind).to_lowercase()) ", " (model.input_shape.to_string()) ", batch " (model.batch_support.to_string()) }, model.facts.input_kind)) }
                        td.number { (fact(html! { (model.sample_rate) " Hz" }, model.facts.sample_rate)) }
                        td.number { (fact(html! { (model.window_seconds) " s" }, model.facts.window_seconds)) }
                        td.number { (model.embedding_dim) }
                        td.number.batch { (batch_cell(&model.batch)) }
                        td { (fact(html! { (model.embedding_output.name) " (output " (model.embedding_output.index) ")" }, model.facts.embedding_output)) }
                        td { (model.source) }
                        @if retirable {
                            td {
                                @if model.format != ModelFormat::Builtin {
                                    form method="post" action=(format!("/models/{}/retire", super::url_encode(&model.name))) {
                                        button type="submit" title="Hide from new jobs; its embedding sets stay" { "Retire" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

pub fn models_page(listing: &ModelListing, notice: Option<&Notice>) -> Markup {
    let content = html! {
        h1 { "Models" }
        p { "Models directory: " code { (listing.models_directory) } " · default model: " strong { (listing.default_model) } }
        p { "Each fact says where it came from: the sidecar " code { "NAME.toml" } ", declared by the file (TFLite Metadata, ONNX "
            code { "metadata_props" } "), inferred from shapes, or assumed. An assumed sample rate may make every embedding meaningless." }
        @if listing.models.is_empty() {
            p { "No models are registered." }
        } @else {
            (model_rows(&listing.models, &listing.default_model, true))
        }
        section.panel #add-model aria-labelledby="add-model-heading" {
            h2 #add-model-heading { "Add a model" }
            p { "A .tflite or .onnx file. It is checked (it loads, runs one window, gives the expected dimension) and can be used at once." }
            form method="post" action="/models/add" enctype="multipart/form-data" {
                p { label for="model-file" { "Model file" } input #model-file type="file" name="file" required accept=".tflite,.onnx"; }
                p { label for="model-name" { "Name (optional; the file name otherwise)" } input #model-name type="text" name="name" maxlength="64" pattern="[A-Za-z0-9_\\-][A-Za-z0-9_.\\-]*"; }
                p { label for="model-rate" { "Sample rate in Hz (if the file does not declare it)" } input #model-rate type="number" name="sample_rate" min="1" step="1"; }
                p { label for="model-output" { "Embedding output name (optional)" } input #model-output type="text" name="output" maxlength="256"; }
                button type="submit" { "Add model" }
            }
        }
        @if !listing.retired.is_empty() {
            h2 { "Retired models" }
            p { "Hidden from new jobs; their embedding sets stay usable." }
            (model_rows(&listing.retired, &listing.default_model, false))
        }
        h2 { "Problems with model files" }
        @if listing.problems.is_empty() {
            p { "None: every file in the models directory loaded." }
        } @else {
            ul.problems {
                @for problem in &listing.problems { li { strong { (problem.file) } ": " (problem.reason) } }
            }
        }
    };
    layout("Models", Section::Models, notice, content)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EmbeddingModel, FakeModel, FakeModelConfig};

    #[test]
    fn an_assumed_rate_is_shown_as_a_warning_and_the_upload_form_is_there() {
        let mut assumed = FakeModel::new(&FakeModelConfig::default()).unwrap().info().clone();
        assumed.name = "<b>whale</b>".into();
        assumed.format = ModelFormat::Onnx;
        assumed.facts.sample_rate = FactSource::Assumed;
        assumed.warnings = crate::model::warnings_for(&assumed);
        let listing = ModelListing {
            models_directory: "models".into(),
            default_model: "builtin-logmel-stats".into(),
            models: vec![crate::model::ListedModel {
                batch: crate::model::choose_batch_size(
                    &[crate::model::BatchMeasurement {
                        batch_size: 8,
                        windows_per_second: 1787.0,
                        memory_bytes: 68 << 20,
                    }],
                    512 << 20,
                    None,
                    assumed.batch_support,
                ),
                info: assumed,
            }],
            retired: vec![],
            problems: vec![],
        };
        let html = models_page(&listing, None).into_string();
        assert!(html.contains("Warning: sample rate"), "{html}");
        assert!(html.contains("fact assumed"), "{html}");
        assert!(html.contains("per size") && html.contains("1787") && html.contains("68 MiB"), "{html}");
        assert!(html.contains("&lt;b&gt;whale&lt;/b&gt;") && !html.contains("<b>whale"), "names are escaped");
        assert!(html.contains("action=\"/models/add\"") && html.contains("multipart/form-data"));
        assert!(html.contains("/models/%3Cb%3Ewhale%3C%2Fb%3E/retire"), "{html}");
    }
}
