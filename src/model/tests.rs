//! Tests against the real fixture models in `fixtures/models/` (made by
//! `scripts/gen-tflite-fixtures.py`, reference outputs from Python's LiteRT 2.1.4 interpreter).

use std::path::{Path, PathBuf};

use super::*;
use crate::domain::events::ModelInputKind;

fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/models").join(name)
}

fn read_f32_file(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(fixture_path(name)).unwrap_or_else(|error| panic!("fixture {name}: {error}"));
    bytes.chunks_exact(4).map(|chunk| f32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]])).collect()
}

fn windows_of(values: &[f32], window_values: usize) -> Vec<&[f32]> {
    values.chunks_exact(window_values).collect()
}

fn open_fixture(name: &str, batch_size: usize) -> TfliteEmbeddingModel {
    TfliteEmbeddingModel::open_file(&fixture_path(name), RunOptions::with_batch_size(batch_size))
        .unwrap_or_else(|error| panic!("{name}: {error}"))
}

/// How far the runner may be from Python's reference outputs. On the machine that generated the
/// references the difference is exactly 0 (same library, same kernels); another CPU can make
/// LiteRT's XNNPACK pick other kernels (e.g. without AVX-512 or FMA, or under valgrind), which
/// moves results by a few units in the last place (measured: 4.8e-7).
const REFERENCE_TOLERANCE: f32 = 1e-5;

fn assert_matches_reference(actual: &[Vec<f32>], expected: &[f32], label: &str) {
    let difference = max_abs_difference(actual, expected);
    eprintln!("{label}: max abs difference to the python reference = {difference:e}");
    assert!(difference <= REFERENCE_TOLERANCE, "{label}: max abs difference {difference} > {REFERENCE_TOLERANCE}");
}

/// The largest absolute difference between the flattened vectors and the reference.
fn max_abs_difference(actual: &[Vec<f32>], expected: &[f32]) -> f32 {
    let flat: Vec<f32> = actual.iter().flatten().copied().collect();
    assert_eq!(flat.len(), expected.len());
    flat.iter().zip(expected).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
}

#[test]
fn the_waveform_stft_model_reproduces_pythons_reference_embeddings() {
    let mut model = open_fixture("waveform_stft.tflite", 32);
    let info = model.info().clone();
    assert_eq!(info.input_kind, ModelInputKind::Waveform);
    assert_eq!(info.input_shape, WindowShape::Samples { samples: 16_000 });
    assert_eq!(info.batch_support, BatchSupport::Dynamic);
    // From fixtures/models/waveform_stft.toml.
    assert_eq!((info.sample_rate, info.window_seconds), (16_000, 1.0));
    assert_eq!((info.embedding_dim, info.embedding_output.name.as_str()), (64, "embedding"));
    assert_eq!(info.embedding_output.reason, OutputChoiceReason::DefaultName);
    let input = read_f32_file("waveform.input.f32");
    let embeddings = model.embed_batch(&windows_of(&input, 16_000)).unwrap();
    assert_matches_reference(&embeddings, &read_f32_file("waveform_stft.embedding.f32"), "waveform_stft");
}

#[test]
fn the_log_mel_models_reproduce_pythons_reference_embeddings() {
    let input = read_f32_file("logmel.input.f32");
    for (file, reference, batch) in [
        ("logmel_fixed1.tflite", "logmel_fixed1.embedding.f32", BatchSupport::Fixed(1)),
        ("logmel_fixed4.tflite", "logmel_fixed4.embedding.f32", BatchSupport::Fixed(4)),
        ("logmel_dynamic.tflite", "logmel_dynamic.embedding.f32", BatchSupport::Dynamic),
    ] {
        let mut model = open_fixture(file, 32);
        assert_eq!(model.info().input_kind, ModelInputKind::Spectrogram);
        assert_eq!(model.info().input_shape, WindowShape::Frames { frames: 128, bins: 128, channels: 1 });
        assert_eq!(model.info().batch_support, batch);
        let embeddings = model.embed_batch(&windows_of(&input, 128 * 128)).unwrap();
        assert_matches_reference(&embeddings, &read_f32_file(reference), file);
    }
}

#[test]
fn batching_gives_the_same_vectors_as_one_window_at_a_time() {
    let waveform = read_f32_file("waveform.input.f32");
    let log_mel = read_f32_file("logmel.input.f32");
    for (file, input, window_values) in [
        ("waveform_stft.tflite", &waveform, 16_000),
        ("logmel_fixed4.tflite", &log_mel, 128 * 128),
        ("logmel_dynamic.tflite", &log_mel, 128 * 128),
    ] {
        // Seven windows: full and partial (padded or shortened) batches.
        let windows: Vec<&[f32]> = windows_of(input, window_values).into_iter().cycle().take(7).collect();
        let batched = open_fixture(file, 3).embed_batch(&windows).unwrap();
        let mut one_by_one_model = open_fixture(file, 1);
        let one_by_one: Vec<Vec<f32>> =
            windows.iter().flat_map(|window| one_by_one_model.embed_batch(&[window]).unwrap()).collect();
        assert_eq!(batched, one_by_one, "{file}");
        assert_eq!(batched.len(), 7);
    }
}

fn copy_fixture_into(directory: &Path, fixture: &str, as_name: &str) {
    std::fs::copy(fixture_path(fixture), directory.join(as_name)).unwrap();
}

#[test]
fn a_sidecar_selects_the_output_by_name_or_index() {
    let directory = tempfile::tempdir().unwrap();
    copy_fixture_into(directory.path(), "waveform_stft.tflite", "by_name.tflite");
    copy_fixture_into(directory.path(), "waveform_stft.tflite", "by_index.tflite");
    std::fs::write(directory.path().join("by_name.toml"), "output_name = \"logits\"\n").unwrap();
    std::fs::write(directory.path().join("by_index.toml"), "output_index = 1\n").unwrap();
    let registry = ModelRegistry::discover(RegistryConfig::new(directory.path())).unwrap();
    assert_eq!(registry.problems(), []);
    let reference = read_f32_file("waveform_stft.logits.f32");
    let input = read_f32_file("waveform.input.f32");
    for (name, reason) in
        [("by_name", OutputChoiceReason::ConfiguredName), ("by_index", OutputChoiceReason::ConfiguredIndex)]
    {
        let mut model = registry.open(name).unwrap();
        assert_eq!(model.info().embedding_output.reason, reason);
        assert_eq!(model.info().embedding_dim, 5);
        let logits = model.embed_batch(&windows_of(&input, 16_000)).unwrap();
        assert_matches_reference(&logits, &reference, name);
    }
}

#[test]
fn the_registry_lists_good_models_reports_bad_files_and_hides_fake_unless_enabled() {
    let directory = tempfile::tempdir().unwrap();
    copy_fixture_into(directory.path(), "logmel_fixed1.tflite", "whale_logmel.tflite");
    copy_fixture_into(directory.path(), "flex_select_op.tflite", "needs_flex.tflite");
    std::fs::write(directory.path().join("notes.tflite"), "just some text").unwrap();
    let model_bytes = std::fs::read(fixture_path("waveform_stft.tflite")).unwrap();
    std::fs::write(directory.path().join("truncated.tflite"), &model_bytes[..model_bytes.len() / 3]).unwrap();
    copy_fixture_into(directory.path(), "waveform_stft.tflite", "bad_sidecar.tflite");
    std::fs::write(directory.path().join("bad_sidecar.toml"), "sample_rate = \"fast\"\n").unwrap();
    std::fs::write(directory.path().join("readme.txt"), "not a model").unwrap();

    let registry = ModelRegistry::discover(RegistryConfig::new(directory.path())).unwrap();
    let models = registry.models();
    let names: Vec<&str> = models.iter().map(|model| model.info.name.as_str()).collect();
    assert_eq!(names, [BUILTIN_MODEL_NAME, "whale_logmel"]);
    let all_problems = registry.problems();
    let problems: Vec<(&str, &str)> =
        all_problems.iter().map(|problem| (problem.file.as_str(), problem.reason.as_str())).collect();
    let files: Vec<&str> = problems.iter().map(|(file, _)| *file).collect();
    assert_eq!(files, ["bad_sidecar.tflite", "needs_flex.tflite", "notes.tflite", "truncated.tflite"]);
    assert!(problems[0].1.contains("bad_sidecar.toml"), "{}", problems[0].1);
    assert!(problems[1].1.contains("FlexMatrixInverse"), "{}", problems[1].1);
    assert!(problems[2].1.contains("not a valid tflite model"), "{}", problems[2].1);
    assert_eq!(registry.default_model_name(), BUILTIN_MODEL_NAME);
    assert!(registry.open(FAKE_MODEL_NAME).is_err());

    let mut config = RegistryConfig::new(directory.path());
    config.fake_model = Some(FakeModelConfig::default());
    let with_fake = ModelRegistry::discover(config).unwrap();
    assert!(with_fake.open(FAKE_MODEL_NAME).is_ok());
    assert_eq!(with_fake.listing().default_model, BUILTIN_MODEL_NAME);
}

#[test]
fn a_sidecar_overrides_timing_and_the_version_tracks_the_file_hash() {
    let directory = tempfile::tempdir().unwrap();
    copy_fixture_into(directory.path(), "waveform_stft.tflite", "wave.tflite");
    copy_fixture_into(directory.path(), "logmel_fixed1.tflite", "mel.tflite");
    std::fs::write(directory.path().join("wave.toml"), "version = \"v7\"\nsample_rate = 16000\n").unwrap();
    std::fs::write(
        directory.path().join("mel.toml"),
        "window_seconds = 3.0\nsample_rate = 24000\n[log_mel]\nmel_bins = 128\n",
    )
    .unwrap();
    let registry = ModelRegistry::discover(RegistryConfig::new(directory.path())).unwrap();
    let wave = &registry.find("wave").unwrap().info;
    assert_eq!((wave.sample_rate, wave.window_seconds), (16_000, 1.0));
    let hash = wave.file_sha256.as_ref().unwrap().0.clone();
    assert!(wave.version.starts_with(&format!("v7+sha256.{}.sidecar.", &hash[..12])), "{}", wave.version);
    let event = wave.to_registered_event();
    assert_eq!(
        (event.embedding_dim, event.embedding_output.as_str(), event.source.as_str()),
        (64, "embedding[0]", "wave.tflite")
    );
    let mel = &registry.find("mel").unwrap().info;
    assert_eq!((mel.sample_rate, mel.window_seconds), (24_000, 3.0));
    assert_eq!(mel.log_mel, Some(serde_json::json!({"mel_bins": 128})));

    // Without a sidecar, a waveform model is assumed to be at 32 kHz.
    std::fs::remove_file(directory.path().join("wave.toml")).unwrap();
    let plain = ModelRegistry::discover(RegistryConfig::new(directory.path())).unwrap();
    assert_eq!(plain.find("wave").unwrap().info.window_seconds, 0.5);

    // A sidecar whose timing contradicts the input length is a reported problem.
    std::fs::write(directory.path().join("wave.toml"), "sample_rate = 16000\nwindow_seconds = 5.0\n").unwrap();
    let contradicting = ModelRegistry::discover(RegistryConfig::new(directory.path())).unwrap();
    assert!(contradicting.find("wave").is_none());
    assert!(contradicting.problems()[0].reason.contains("16000"), "{:?}", contradicting.problems());
}

#[test]
fn a_model_file_replaced_after_discovery_is_refused() {
    let directory = tempfile::tempdir().unwrap();
    copy_fixture_into(directory.path(), "logmel_fixed1.tflite", "mel.tflite");
    let registry = ModelRegistry::discover(RegistryConfig::new(directory.path())).unwrap();
    copy_fixture_into(directory.path(), "logmel_fixed4.tflite", "mel.tflite");
    let error = registry.open("mel").err().unwrap().to_string();
    assert!(error.contains("changed since it was registered"), "{error}");
}

/// Runs a real model named by `HUMPBACK_REAL_MODEL` (e.g. a Perch .tflite); skipped otherwise.
#[test]
fn a_real_model_named_by_the_environment_loads_and_embeds() {
    let Some(path) = std::env::var_os("HUMPBACK_REAL_MODEL") else {
        eprintln!("skipped: set HUMPBACK_REAL_MODEL=/path/to/model.tflite to run a real model");
        return;
    };
    let mut model = TfliteEmbeddingModel::open_file(Path::new(&path), RunOptions::default())
        .unwrap_or_else(|error| panic!("{error}"));
    let info = model.info().clone();
    eprintln!(
        "{}: {:?} {} -> {} dims ({})",
        info.name, info.input_kind, info.input_shape, info.embedding_dim, info.embedding_output
    );
    let silence = vec![0.0f32; info.window_value_count()];
    let noise: Vec<f32> =
        (0..info.window_value_count()).map(|index| ((index * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.1).collect();
    let embeddings = model.embed_batch(&[&silence, &noise, &silence]).unwrap();
    assert_eq!(embeddings.len(), 3);
    assert!(embeddings.iter().all(|vector| vector.len() == info.embedding_dim as usize));
    assert!(embeddings.iter().flatten().all(|value| value.is_finite()));
    assert_eq!(embeddings[0], embeddings[2]);
}

#[test]
fn one_dynamic_model_instance_stays_correct_while_the_batch_changes() {
    let mut model = open_fixture("waveform_stft.tflite", 2);
    let input = read_f32_file("waveform.input.f32");
    let windows = windows_of(&input, 16_000);
    let reference = read_f32_file("waveform_stft.embedding.f32");
    let reference_rows: Vec<&[f32]> = reference.chunks_exact(64).collect();
    for call in [&[0usize, 1][..], &[2, 1, 0], &[1], &[0, 2, 2], &[2, 0]] {
        let batch: Vec<&[f32]> = call.iter().map(|&index| windows[index]).collect();
        let embeddings = model.embed_batch(&batch).unwrap();
        for (embedding, &index) in embeddings.iter().zip(call) {
            assert_matches_reference(std::slice::from_ref(embedding), reference_rows[index], &format!("call {call:?}"));
        }
    }
}

/// How far the ONNX runner may be from Python onnxruntime's reference outputs: the same library
/// version, so the difference is rounding in kernels chosen by the CPU (measured: 0 here).
const ONNX_REFERENCE_TOLERANCE: f32 = 1e-5;

fn open_onnx_fixture(name: &str, batch_size: usize) -> OnnxEmbeddingModel {
    OnnxEmbeddingModel::open_file(&fixture_path(name), RunOptions::with_batch_size(batch_size))
        .unwrap_or_else(|error| panic!("{name}: {error}"))
}

#[test]
fn the_onnx_fixtures_reproduce_python_onnxruntimes_reference_embeddings() {
    let waveform = read_f32_file("waveform.input.f32");
    let log_mel = read_f32_file("logmel.input.f32");
    for (file, input, window_values, reference, batch) in [
        ("waveform_dft.onnx", &waveform, 16_000, "waveform_dft.embedding.f32", BatchSupport::Dynamic),
        ("logmel_fixed2.onnx", &log_mel, 128 * 128, "logmel_fixed2.embedding.f32", BatchSupport::Fixed(2)),
        ("logmel_dynamic.onnx", &log_mel, 128 * 128, "logmel_dynamic.embedding.f32", BatchSupport::Dynamic),
    ] {
        let mut model = open_onnx_fixture(file, 32);
        assert_eq!(model.info().format, ModelFormat::Onnx);
        assert_eq!(model.info().batch_support, batch, "{file}");
        let embeddings = model.embed_batch(&windows_of(input, window_values)).unwrap();
        let difference = max_abs_difference(&embeddings, &read_f32_file(reference));
        eprintln!("{file}: max abs difference to python onnxruntime = {difference:e}");
        assert!(difference <= ONNX_REFERENCE_TOLERANCE, "{file}: {difference}");
    }
}

#[test]
fn the_onnx_waveform_model_declares_its_rate_and_output_and_the_plain_one_gets_a_warning() {
    let declared = open_onnx_fixture("waveform_dft.onnx", 8).info().clone();
    assert_eq!(declared.input_kind, ModelInputKind::Waveform);
    assert_eq!((declared.sample_rate, declared.window_seconds), (16_000, 1.0));
    assert_eq!(declared.facts.sample_rate, FactSource::Declared);
    assert_eq!(declared.facts.window_seconds, FactSource::InferredFromShapes);
    assert_eq!(
        (declared.embedding_output.name.as_str(), declared.facts.embedding_output),
        ("embedding", FactSource::Declared)
    );
    assert!(declared.warnings.is_empty(), "{:?}", declared.warnings);
    let fixed = open_onnx_fixture("logmel_fixed2.onnx", 8).info().clone();
    assert_eq!((fixed.sample_rate, fixed.window_seconds), (32_000, 5.0));
    assert_eq!((fixed.facts.sample_rate, fixed.facts.window_seconds), (FactSource::Declared, FactSource::Declared));
    let plain = open_onnx_fixture("logmel_dynamic.onnx", 8).info().clone();
    assert_eq!(plain.facts.sample_rate, FactSource::Assumed);
    assert!(plain.warnings[0].contains("32000 Hz is assumed"), "{:?}", plain.warnings);
}

#[test]
fn onnx_batching_gives_the_same_vectors_as_one_window_at_a_time() {
    let waveform = read_f32_file("waveform.input.f32");
    let log_mel = read_f32_file("logmel.input.f32");
    for (file, input, window_values) in [
        ("waveform_dft.onnx", &waveform, 16_000),
        ("logmel_fixed2.onnx", &log_mel, 128 * 128),
        ("logmel_dynamic.onnx", &log_mel, 128 * 128),
    ] {
        let windows: Vec<&[f32]> = windows_of(input, window_values).into_iter().cycle().take(7).collect();
        let batched = open_onnx_fixture(file, 3).embed_batch(&windows).unwrap();
        let mut one_by_one_model = open_onnx_fixture(file, 1);
        let one_by_one: Vec<Vec<f32>> =
            windows.iter().flat_map(|window| one_by_one_model.embed_batch(&[window]).unwrap()).collect();
        assert_eq!(batched.len(), 7);
        // ONNX Runtime's matrix kernels block differently by batch size: equal up to rounding
        // (Python onnxruntime measures the same, see fixtures/models/onnx-manifest.json).
        let flat: Vec<f32> = one_by_one.iter().flatten().copied().collect();
        let difference = max_abs_difference(&batched, &flat);
        assert!(difference <= ONNX_REFERENCE_TOLERANCE, "{file}: batched vs one by one {difference}");
    }
}

#[test]
fn the_tflite_file_with_audio_metadata_registers_at_its_declared_rate() {
    let directory = tempfile::tempdir().unwrap();
    copy_fixture_into(directory.path(), "waveform_stft_metadata.tflite", "declared.tflite");
    copy_fixture_into(directory.path(), "waveform_stft.tflite", "plain.tflite");
    copy_fixture_into(directory.path(), "waveform_dft.onnx", "onnx_declared.onnx");
    let registry = ModelRegistry::discover(RegistryConfig::new(directory.path())).unwrap();
    assert_eq!(registry.problems(), []);
    let declared = registry.find("declared").unwrap().info;
    assert_eq!((declared.sample_rate, declared.window_seconds), (16_000, 1.0));
    assert_eq!(declared.facts.sample_rate, FactSource::Declared);
    assert!(declared.warnings.is_empty(), "{:?}", declared.warnings);
    let onnx = registry.find("onnx_declared").unwrap().info;
    assert_eq!((onnx.sample_rate, onnx.facts.sample_rate), (16_000, FactSource::Declared));
    let plain = registry.find("plain").unwrap().info;
    assert_eq!((plain.sample_rate, plain.facts.sample_rate), (32_000, FactSource::Assumed));
    assert!(plain.warnings[0].contains("assumed"), "{:?}", plain.warnings);
    let mut model = registry.open("onnx_declared").unwrap();
    let input = read_f32_file("waveform.input.f32");
    let embeddings = model.embed_batch(&windows_of(&input, 16_000)).unwrap();
    let difference = max_abs_difference(&embeddings, &read_f32_file("waveform_dft.embedding.f32"));
    assert!(difference <= ONNX_REFERENCE_TOLERANCE, "{difference}");
}

fn upload(fixture: &str, name: Option<&str>) -> ModelUpload {
    ModelUpload {
        file_name: fixture.to_string(),
        name: name.map(String::from),
        sample_rate: None,
        output_name: None,
        bytes: std::fs::read(fixture_path(fixture)).unwrap(),
    }
}

fn files_in(directory: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(directory)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn an_added_model_is_checked_stored_with_its_sidecar_and_found_again_after_a_rescan() {
    let directory = tempfile::tempdir().unwrap();
    let registry = ModelRegistry::discover(RegistryConfig::new(directory.path())).unwrap();
    let mut offered = upload("logmel_dynamic.onnx", Some("whales-v1"));
    offered.sample_rate = Some(24_000);
    offered.output_name = Some("logits".to_string());
    let added = registry.add(offered).unwrap();
    assert_eq!((added.info.sample_rate, added.info.facts.sample_rate), (24_000, FactSource::Sidecar));
    assert_eq!((added.info.embedding_dim, added.info.facts.embedding_output), (3, FactSource::Sidecar));
    assert!(registry.find_for_new_jobs("whales-v1").is_some());
    assert_eq!(files_in(directory.path()), ["whales-v1.onnx", "whales-v1.toml"]);
    let rescanned = ModelRegistry::discover(RegistryConfig::new(directory.path())).unwrap();
    assert_eq!(rescanned.find("whales-v1").unwrap().info, added.info);
    let again = registry.add(upload("logmel_dynamic.onnx", Some("whales-v1"))).unwrap_err().to_string();
    assert!(again.contains("already registered"), "{again}");
}

#[test]
fn a_refused_model_leaves_nothing_registered_or_on_disk() {
    let directory = tempfile::tempdir().unwrap();
    let registry = ModelRegistry::discover(RegistryConfig::new(directory.path())).unwrap();
    let before = registry.models().len();
    let mut truncated = upload("waveform_dft.onnx", Some("broken"));
    truncated.bytes.truncate(truncated.bytes.len() / 2);
    let mut text = upload("waveform_dft.onnx", Some("text"));
    text.bytes = b"not a model".to_vec();
    let mut wrong_output = upload("waveform_dft.onnx", Some("wrong_output"));
    wrong_output.output_name = Some("nope".to_string());
    for (offered, expected) in [
        (truncated, "not an onnx model"),
        (text, "not an onnx model"),
        (upload("flex_select_op.tflite", None), "FlexMatrixInverse"),
        (wrong_output, "no output named \"nope\""),
        (upload("waveform_dft.onnx", Some("../escape")), "not a usable model name"),
        (upload("waveform_dft.onnx", Some("builtin-logmel-stats")), "reserved"),
        (ModelUpload { file_name: "model.pb".into(), ..upload("waveform_dft.onnx", None) }, "neither a .tflite"),
    ] {
        let error = registry.add(offered).unwrap_err().to_string();
        assert!(error.contains(expected), "{expected:?} not in {error}");
    }
    std::fs::create_dir(directory.path().join("perch_savedmodel")).unwrap();
    std::fs::write(directory.path().join("perch_savedmodel/saved_model.pb"), b"not read").unwrap();
    let rescanned = ModelRegistry::discover(RegistryConfig::new(directory.path())).unwrap();
    assert_eq!(rescanned.problems()[0].file, "perch_savedmodel");
    assert!(rescanned.problems()[0].reason.contains("scripts/convert-savedmodel"), "{:?}", rescanned.problems());
    std::fs::remove_dir_all(directory.path().join("perch_savedmodel")).unwrap();
    let flex = registry.add(upload("flex_select_op.tflite", None)).unwrap_err().to_string();
    assert!(flex.contains("ONNX") && flex.contains("convert-savedmodel"), "{flex}");
    assert_eq!(registry.models().len(), before);
    assert_eq!(files_in(directory.path()), Vec::<String>::new());
}

#[test]
fn a_padded_last_batch_gives_the_same_embeddings_and_the_model_holds_one_session() {
    let input = read_f32_file("waveform.input.f32");
    let windows: Vec<&[f32]> = windows_of(&input, 16_000).into_iter().cycle().take(7).collect();
    let mut padded_model = open_fixture("waveform_stft.tflite", 4);
    let padded = padded_model.embed_batch(&windows).unwrap();
    // 7 windows in batches of 4: the second batch is padded, and no batch-1 session was made.
    assert_eq!(padded_model.session_count(), 1);
    let mut one_at_a_time = open_fixture("waveform_stft.tflite", 1);
    let alone: Vec<Vec<f32>> =
        windows.iter().flat_map(|window| one_at_a_time.embed_batch(&[window]).unwrap()).collect();
    assert_eq!(padded, alone);
    let mut onnx = open_onnx_fixture("waveform_dft.onnx", 4);
    let onnx_padded = onnx.embed_batch(&windows).unwrap();
    let mut onnx_one = open_onnx_fixture("waveform_dft.onnx", 1);
    let onnx_alone: Vec<f32> =
        windows.iter().flat_map(|window| onnx_one.embed_batch(&[window]).unwrap()).flatten().collect();
    let difference = max_abs_difference(&onnx_padded, &onnx_alone);
    assert!(difference <= ONNX_REFERENCE_TOLERANCE, "padded vs one by one {difference}");
}

#[test]
fn the_registry_measures_batch_sizes_once_caches_them_and_the_override_wins() {
    let directory = tempfile::tempdir().unwrap();
    copy_fixture_into(directory.path(), "waveform_stft.tflite", "whale.tflite");
    copy_fixture_into(directory.path(), "waveform_stft.toml", "whale.toml");
    let measurements = directory.path().join("batch-measurements");
    let mut config = RegistryConfig::new(directory.path());
    config.measurements_directory = Some(measurements.clone());
    config.measure_batch_sizes = true;
    let measured = ModelRegistry::discover(config.clone()).unwrap().find("whale").unwrap().batch;
    assert_eq!(measured.batch_size_source, BatchSizeSource::Measured);
    assert!(!measured.batch_measurements.is_empty());
    assert!(measured.batch_measurements.iter().all(|row| row.windows_per_second > 0.0 && row.memory_bytes > 0));
    assert_eq!(std::fs::read_dir(&measurements).unwrap().count(), 2, "whale and the built-in, cached");

    // Read back from the cache (not measured again: the same table), as `models list` does.
    let listed = ModelRegistry::discover(RegistryConfig { measure_batch_sizes: false, ..config.clone() }).unwrap();
    let cached = listed.find("whale").unwrap().batch;
    assert_eq!(cached.batch_size, measured.batch_size);
    for (read, timed) in cached.batch_measurements.iter().zip(&measured.batch_measurements) {
        assert_eq!((read.batch_size, read.memory_bytes), (timed.batch_size, timed.memory_bytes));
        assert!((read.windows_per_second - timed.windows_per_second).abs() < 1e-6);
    }
    assert_eq!(cached.batch_measurements.len(), measured.batch_measurements.len());
    let json = serde_json::to_value(listed.listing()).unwrap();
    let whale = json["models"].as_array().unwrap().iter().find(|model| model["name"] == "whale").unwrap().clone();
    assert_eq!(whale["batch_size_source"], "measured");
    assert_eq!(whale["batch_size"].as_u64(), Some(measured.batch_size as u64));
    assert_eq!(whale["sample_rate"], 16_000, "the model's facts stay in the same object");

    // A budget nothing fits: the size needing the least memory.
    let tight = ModelRegistry::discover(RegistryConfig { model_memory_bytes: 1, ..config.clone() }).unwrap();
    // Measured afresh with that budget (no cache): measuring stops at the first size above it.
    let fresh = tempfile::tempdir().unwrap();
    let small_budget = RegistryConfig {
        model_memory_bytes: 1,
        measurements_directory: Some(fresh.path().to_path_buf()),
        ..config.clone()
    };
    let stopped = ModelRegistry::discover(small_budget).unwrap().find("whale").unwrap().batch;
    assert_eq!(stopped.batch_measurements.len(), 1, "{stopped:?}");
    assert_eq!(stopped.batch_size, 1);
    let least = measured.batch_measurements.iter().min_by_key(|row| row.memory_bytes).unwrap().batch_size;
    assert_eq!(tight.find("whale").unwrap().batch.batch_size, least);

    // --batch-size wins, and the opened model runs at it.
    let overridden = ModelRegistry::discover(RegistryConfig { batch_size_override: Some(5), ..config }).unwrap();
    let batch = overridden.find("whale").unwrap().batch;
    assert_eq!((batch.batch_size, batch.batch_size_source), (5, BatchSizeSource::Override));
    let input = read_f32_file("waveform.input.f32");
    let embeddings = overridden.open("whale").unwrap().embed_batch(&windows_of(&input, 16_000)).unwrap();
    assert_eq!(embeddings.len(), input.len() / 16_000);
}
