//! The models humpback can use: the built-in default, `fake` when enabled, and every `.tflite` and
//! `.onnx` file in the models directory (described from its shapes, what it declares and its optional
//! `NAME.toml` sidecar). A file that cannot be used is listed as a problem with its reason and
//! skipped; it never stops the others. Models can be added (checked, stored, registered) and
//! retired (hidden from new jobs) while the server runs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use serde::Serialize;

use crate::artifacts::files::{remove_if_exists, write_atomically};

use crate::model::batch_choice::{choose_batch_size, BatchChoice, CANDIDATE_BATCH_SIZES, DEFAULT_MODEL_MEMORY_BYTES};
use crate::model::batch_measure::{cache_measurements, cached_measurements, measure_batch_sizes};
use crate::model::builtin::{BuiltinLogMelStatsModel, BUILTIN_MODEL_NAME};
use crate::model::fake::{FakeModel, FakeModelConfig, FAKE_MODEL_NAME};
use crate::model::info::{BatchSupport, ModelFormat, ModelInfo, DEFAULT_EMBEDDING_OUTPUT_NAME};
use crate::model::onnx_model::{describe_onnx_model, OnnxEmbeddingModel};
use crate::model::sidecar::ModelSidecar;
use crate::model::tflite_model::{describe_tflite_model, sha256_hex, RunOptions, TfliteEmbeddingModel};
use crate::model::{EmbeddingModel, ModelError};

/// Where to look and what to offer.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryConfig {
    pub models_directory: PathBuf,
    /// `Some` offers the `fake` model (tests, demos); `None` (the default) hides it.
    pub fake_model: Option<FakeModelConfig>,
    /// Output name looked for when a sidecar names none.
    pub default_output_name: String,
    /// `run_options.batch_size` is replaced by each model's chosen batch size when it is opened.
    pub run_options: RunOptions,
    /// `--batch-size`: every dynamic-batch model runs at this size, unmeasured.
    pub batch_size_override: Option<usize>,
    /// `--model-memory`: what one worker's model may use; the batch size is chosen within it.
    pub model_memory_bytes: u64,
    /// Where batch-size measurements are cached per model version; `None`: neither read nor measured.
    pub measurements_directory: Option<PathBuf>,
    /// Measure models whose measurements are not cached (the server); `false` only reads the cache.
    pub measure_batch_sizes: bool,
}

impl RegistryConfig {
    pub fn new(models_directory: impl Into<PathBuf>) -> Self {
        RegistryConfig {
            models_directory: models_directory.into(),
            fake_model: None,
            default_output_name: DEFAULT_EMBEDDING_OUTPUT_NAME.to_string(),
            run_options: RunOptions::default(),
            batch_size_override: None,
            model_memory_bytes: DEFAULT_MODEL_MEMORY_BYTES,
            measurements_directory: None,
            measure_batch_sizes: false,
        }
    }
}

/// How a registered model is run.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelImplementation {
    Builtin,
    Fake(FakeModelConfig),
    TfliteFile { path: PathBuf },
    OnnxFile { path: PathBuf },
}

#[derive(Debug, Clone, PartialEq)]
pub struct RegisteredModel {
    pub info: ModelInfo,
    pub implementation: ModelImplementation,
    /// The batch size it runs at, and why.
    pub batch: BatchChoice,
}

/// A model as listed: its description and its batch size (flattened into one JSON object).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListedModel {
    #[serde(flatten)]
    pub info: ModelInfo,
    #[serde(flatten)]
    pub batch: BatchChoice,
}

impl std::ops::Deref for ListedModel {
    type Target = ModelInfo;
    fn deref(&self) -> &ModelInfo {
        &self.info
    }
}

/// A file in the models directory that could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelProblem {
    pub file: String,
    pub reason: String,
}

/// What `models list` and the API show.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelListing {
    pub models_directory: String,
    pub default_model: String,
    pub models: Vec<ListedModel>,
    /// Models hidden from new jobs; their embedding sets stay usable.
    pub retired: Vec<ListedModel>,
    pub problems: Vec<ModelProblem>,
}

/// The models humpback can use. Shared by the server's handlers and workers (`Arc<ModelRegistry>`);
/// a model added or retired while the server runs is seen by every holder at once.
#[derive(Debug)]
pub struct ModelRegistry {
    config: RegistryConfig,
    state: RwLock<RegistryState>,
}

#[derive(Debug, Clone, Default)]
struct RegistryState {
    models: Vec<RegisteredModel>,
    problems: Vec<ModelProblem>,
    /// Names hidden from new jobs; their files and embedding sets stay.
    retired: BTreeSet<String>,
}

/// A model file offered while humpback runs (`models add`, the upload form).
#[derive(Debug, Clone)]
pub struct ModelUpload {
    /// The uploaded file's name; only its extension (`.tflite`, `.onnx`) and stem are used.
    pub file_name: String,
    /// The registry name; the file stem when absent.
    pub name: Option<String>,
    /// Written to the model's sidecar (overrides what the file declares).
    pub sample_rate: Option<u32>,
    /// Written to the model's sidecar: which output is the embedding.
    pub output_name: Option<String>,
    pub bytes: Vec<u8>,
}

/// The longest model name accepted.
pub const MAXIMUM_MODEL_NAME_LENGTH: usize = 64;

/// A model name is 1-64 letters, digits, `-`, `_` or `.`, not starting with `.` and not a name
/// humpback keeps for itself. Pure; the name becomes a file name, so nothing else may pass.
pub fn check_model_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAXIMUM_MODEL_NAME_LENGTH {
        return Err(format!("a model name has 1 to {MAXIMUM_MODEL_NAME_LENGTH} characters"));
    }
    if name.starts_with('.') || !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Err(format!("{name:?} is not a usable model name: use letters, digits, '-', '_' and '.' (not first)"));
    }
    if name == BUILTIN_MODEL_NAME || name == FAKE_MODEL_NAME {
        return Err(format!("the name {name:?} is reserved for a built-in model"));
    }
    Ok(())
}

/// The model file formats humpback runs, by extension.
fn format_of_file_name(file_name: &str) -> Option<ModelFormat> {
    let extension = Path::new(file_name).extension()?.to_str()?.to_ascii_lowercase();
    match extension.as_str() {
        "tflite" => Some(ModelFormat::Tflite),
        "onnx" => Some(ModelFormat::Onnx),
        _ => None,
    }
}

fn extension_of(format: ModelFormat) -> &'static str {
    match format {
        ModelFormat::Onnx => "onnx",
        _ => "tflite",
    }
}

impl ModelRegistry {
    /// Scans the models directory. A missing directory just means no file models; only failing to
    /// list an existing directory is an error.
    pub fn discover(config: RegistryConfig) -> Result<Self, ModelError> {
        let registered = |info: ModelInfo, implementation: ModelImplementation| {
            let batch = choose_batch_for(&config, &info, &implementation);
            RegisteredModel { info, implementation, batch }
        };
        let mut models = vec![registered(BuiltinLogMelStatsModel::new().info().clone(), ModelImplementation::Builtin)];
        if let Some(fake_config) = &config.fake_model {
            models.push(registered(
                FakeModel::new(fake_config)?.info().clone(),
                ModelImplementation::Fake(fake_config.clone()),
            ));
        }
        let mut problems = saved_models_in(&config.models_directory);
        for path in model_files_in(&config.models_directory)? {
            let file = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
            match describe_file(&path, &file, &config.default_output_name) {
                Ok(info) if models.iter().any(|model| model.info.name == info.name) => {
                    problems.push(ModelProblem { file, reason: format!("the name {:?} is already taken", info.name) });
                }
                Ok(info) => {
                    let implementation = implementation_of(&info, path);
                    models.push(registered(info, implementation));
                }
                Err(error) => problems.push(ModelProblem { file, reason: error.to_string() }),
            }
        }
        Ok(ModelRegistry { config, state: RwLock::new(RegistryState { models, problems, retired: BTreeSet::new() }) })
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, RegistryState> {
        self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, RegistryState> {
        self.state.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every model new jobs can use (retired ones left out).
    pub fn models(&self) -> Vec<RegisteredModel> {
        let state = self.read();
        state.models.iter().filter(|model| !state.retired.contains(&model.info.name)).cloned().collect()
    }

    pub fn problems(&self) -> Vec<ModelProblem> {
        self.read().problems.clone()
    }

    pub fn models_directory(&self) -> &Path {
        &self.config.models_directory
    }

    /// The model used when the user names none: always the built-in one.
    pub fn default_model_name(&self) -> &'static str {
        BUILTIN_MODEL_NAME
    }

    /// A model by name, retired or not (a job queued before retirement still runs).
    pub fn find(&self, name: &str) -> Option<RegisteredModel> {
        self.read().models.iter().find(|model| model.info.name == name).cloned()
    }

    /// A model new jobs may use: registered and not retired.
    pub fn find_for_new_jobs(&self, name: &str) -> Option<RegisteredModel> {
        let state = self.read();
        if state.retired.contains(name) {
            return None;
        }
        state.models.iter().find(|model| model.info.name == name).cloned()
    }

    pub fn is_retired(&self, name: &str) -> bool {
        self.read().retired.contains(name)
    }

    /// Hides models from new jobs (from `ModelRetired` events, at start-up or when retired).
    pub fn mark_retired<'a>(&self, names: impl IntoIterator<Item = &'a str>) {
        let mut state = self.write();
        for name in names {
            state.retired.insert(name.to_string());
        }
    }

    pub fn listing(&self) -> ModelListing {
        let state = self.read();
        ModelListing {
            models_directory: self.config.models_directory.display().to_string(),
            default_model: self.default_model_name().to_string(),
            models: state
                .models
                .iter()
                .filter(|model| !state.retired.contains(&model.info.name))
                .map(|model| ListedModel { info: model.info.clone(), batch: model.batch.clone() })
                .collect(),
            retired: state
                .models
                .iter()
                .filter(|model| state.retired.contains(&model.info.name))
                .map(|model| ListedModel { info: model.info.clone(), batch: model.batch.clone() })
                .collect(),
            problems: state.problems.clone(),
        }
    }

    /// Loads a model ready to embed. For files, the bytes are checked against the hash registered at
    /// discovery, so a replaced file can never run under the old version.
    pub fn open(&self, name: &str) -> Result<Box<dyn EmbeddingModel>, ModelError> {
        let model = self.find(name).ok_or_else(|| ModelError::UnknownModel {
            name: name.to_string(),
            available: self.models().iter().map(|model| model.info.name.clone()).collect::<Vec<_>>().join(", "),
        })?;
        let options = RunOptions { batch_size: model.batch.batch_size, ..self.config.run_options };
        open_implementation(&model.info, &model.implementation, options)
    }

    /// Checks an offered model file and, if it is usable, stores it (and its sidecar) in the models
    /// directory and registers it; the caller records the `ModelRegistered` event. Checked first:
    /// the name, the format, that it describes (shapes, facts), loads, and runs one window of zeros
    /// giving `embedding_dim` finite values. A refused file leaves nothing on disk or registered.
    pub fn add(&self, upload: ModelUpload) -> Result<RegisteredModel, ModelError> {
        let refused = |reason: String| ModelError::Refused(reason);
        let format = format_of_file_name(&upload.file_name)
            .ok_or_else(|| refused(format!("{:?} is neither a .tflite nor an .onnx file", upload.file_name)))?;
        let name = match &upload.name {
            Some(name) => name.trim().to_string(),
            None => Path::new(&upload.file_name)
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        check_model_name(&name).map_err(refused)?;
        if self.find(&name).is_some() {
            return Err(refused(format!("a model named {name:?} is already registered; choose another --name")));
        }
        let sidecar = (upload.sample_rate.is_some() || upload.output_name.is_some()).then(|| ModelSidecar {
            sample_rate: upload.sample_rate,
            output_name: upload.output_name.clone(),
            ..ModelSidecar::default()
        });
        if upload.sample_rate == Some(0) {
            return Err(refused("the sample rate must be positive".to_string()));
        }
        let file_name = format!("{name}.{}", extension_of(format));
        let default_output = &self.config.default_output_name;
        let info = match format {
            ModelFormat::Onnx => {
                describe_onnx_model(&name, &file_name, &upload.bytes, sidecar.as_ref(), default_output)?.0
            }
            _ => describe_tflite_model(&name, &file_name, &upload.bytes, sidecar.as_ref(), default_output)?.0,
        };
        check_model_runs(&info, &upload.bytes, self.config.run_options)?;
        let sidecar_text = sidecar.as_ref().map(sidecar_text_of);
        let directory = &self.config.models_directory;
        let model_path = directory.join(&file_name);
        let sidecar_path = model_path.with_extension("toml");
        let mut state = self.write();
        if state.models.iter().any(|model| model.info.name == name) {
            return Err(refused(format!("a model named {name:?} is already registered; choose another --name")));
        }
        for path in [&model_path, &sidecar_path] {
            if path.exists() {
                return Err(refused(format!(
                    "{} already exists in the models directory (a file that cannot be used?); choose another --name \
                     or remove it",
                    path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default()
                )));
            }
        }
        let io_error = |error: crate::artifacts::ArtifactError| refused(format!("cannot store the model: {error}"));
        if let Some(text) = &sidecar_text {
            write_atomically(&sidecar_path, text.as_bytes()).map_err(io_error)?;
        }
        if let Err(error) = write_atomically(&model_path, &upload.bytes) {
            let _ = remove_if_exists(&sidecar_path);
            return Err(io_error(error));
        }
        let implementation = implementation_of(&info, model_path);
        let batch = choose_batch_for(&self.config, &info, &implementation);
        let registered = RegisteredModel { info, implementation, batch };
        state.problems.retain(|problem| problem.file != file_name);
        state.models.push(registered.clone());
        Ok(registered)
    }

    /// Undoes [`ModelRegistry::add`] when its event could not be recorded: unregisters the model and
    /// removes its files.
    pub fn remove_added(&self, name: &str) {
        let mut state = self.write();
        let Some(position) = state.models.iter().position(|model| model.info.name == name) else {
            return;
        };
        let model = state.models.remove(position);
        if let ModelImplementation::TfliteFile { path } | ModelImplementation::OnnxFile { path } = &model.implementation
        {
            let _ = remove_if_exists(&path.with_extension("toml"));
            let _ = remove_if_exists(path);
        }
    }
}

/// Loads a registered model to run at `options`. For files, the bytes are checked against the hash
/// registered at discovery.
fn open_implementation(
    info: &ModelInfo,
    implementation: &ModelImplementation,
    options: RunOptions,
) -> Result<Box<dyn EmbeddingModel>, ModelError> {
    let read_checked = |path: &PathBuf| -> Result<Vec<u8>, ModelError> {
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io { path: path.clone(), source })?;
        let actual = sha256_hex(&bytes);
        let expected = info.file_sha256.as_ref().map(|hash| hash.0.clone()).unwrap_or_default();
        if actual != expected {
            return Err(ModelError::ModelFileChanged { path: path.clone(), expected, actual });
        }
        Ok(bytes)
    };
    match implementation {
        ModelImplementation::Builtin => Ok(Box::new(BuiltinLogMelStatsModel::new())),
        ModelImplementation::Fake(config) => Ok(Box::new(FakeModel::new(config)?.with_batch_size(options.batch_size))),
        ModelImplementation::TfliteFile { path } => {
            let bytes = read_checked(path)?;
            Ok(Box::new(TfliteEmbeddingModel::from_bytes(info.clone(), bytes, options)?))
        }
        ModelImplementation::OnnxFile { path } => {
            let bytes = read_checked(path)?;
            Ok(Box::new(OnnxEmbeddingModel::from_bytes(info.clone(), &bytes, options)?))
        }
    }
}

/// A model's batch size: the override, or chosen from its measurements (cached per model version,
/// measured when not cached and the configuration asks for it), or the default. A model that
/// cannot be measured keeps the default, with a warning.
fn choose_batch_for(config: &RegistryConfig, info: &ModelInfo, implementation: &ModelImplementation) -> BatchChoice {
    let support = info.batch_support;
    let unmeasured = || BatchChoice::unmeasured(support, config.batch_size_override);
    let Some(directory) = &config.measurements_directory else {
        return unmeasured();
    };
    if support != BatchSupport::Dynamic {
        return unmeasured();
    }
    let threads = config.run_options.intra_op_threads;
    let wanted_threads = config.measure_batch_sizes.then_some(threads);
    let measurements = match cached_measurements(directory, info, wanted_threads) {
        Some(measurements) => measurements,
        None if config.measure_batch_sizes && config.batch_size_override.is_none() => {
            let mut open = |batch_size: usize| {
                open_implementation(info, implementation, RunOptions { batch_size, ..config.run_options })
            };
            match measure_batch_sizes(info, &CANDIDATE_BATCH_SIZES, config.model_memory_bytes, &mut open) {
                Ok(measurements) => {
                    cache_measurements(directory, info, threads, &measurements);
                    measurements
                }
                Err(error) => {
                    tracing::warn!(model = %info.name, error = %error, "cannot measure batch sizes; using the default");
                    return unmeasured();
                }
            }
        }
        None => Vec::new(),
    };
    let choice = choose_batch_size(&measurements, config.model_memory_bytes, config.batch_size_override, support);
    tracing::info!(
        model = %info.name,
        batch_size = choice.batch_size,
        source = choice.batch_size_source.label(),
        "batch size chosen"
    );
    choice
}

/// The text of a sidecar written by `models add` (only the facts it can give). A JSON string is a
/// valid TOML basic string.
fn sidecar_text_of(sidecar: &ModelSidecar) -> String {
    let mut text = String::from("# written by `humpback models add`; edit to correct a fact (the version changes)\n");
    if let Some(rate) = sidecar.sample_rate {
        text.push_str(&format!("sample_rate = {rate}\n"));
    }
    if let Some(output) = &sidecar.output_name {
        text.push_str(&format!("output_name = {}\n", serde_json::Value::String(output.clone())));
    }
    text
}

/// Loads a described model and runs one window of zeros: it must give `embedding_dim` finite values.
fn check_model_runs(info: &ModelInfo, bytes: &[u8], options: RunOptions) -> Result<(), ModelError> {
    let mut model: Box<dyn EmbeddingModel> = match info.format {
        ModelFormat::Onnx => Box::new(OnnxEmbeddingModel::from_bytes(info.clone(), bytes, options)?),
        _ => Box::new(TfliteEmbeddingModel::from_bytes(info.clone(), bytes.to_vec(), options)?),
    };
    let zeros = vec![0.0f32; info.window_value_count()];
    let embeddings = model.embed_batch(&[&zeros])?;
    let refused = |reason: String| ModelError::Refused(format!("{}: one window of silence {reason}", info.name));
    match embeddings.as_slice() {
        [embedding] if embedding.len() == info.embedding_dim as usize => {
            if embedding.iter().all(|value| value.is_finite()) {
                Ok(())
            } else {
                Err(refused("gives values that are not finite (NaN or infinity)".to_string()))
            }
        }
        [embedding] => Err(refused(format!(
            "gives {} values, but the output {:?} should have {}",
            embedding.len(),
            info.embedding_output.name,
            info.embedding_dim
        ))),
        other => Err(refused(format!("gives {} embeddings instead of one", other.len()))),
    }
}

fn implementation_of(info: &ModelInfo, path: PathBuf) -> ModelImplementation {
    match info.format {
        ModelFormat::Onnx => ModelImplementation::OnnxFile { path },
        _ => ModelImplementation::TfliteFile { path },
    }
}

/// What to do with a TensorFlow model humpback cannot run.
const SAVED_MODEL_ADVICE: &str = "a TensorFlow SavedModel (or .pb graph) cannot run here: convert it to ONNX with \
     scripts/convert-savedmodel (tf2onnx; it checks the outputs match) and add the .onnx file";

/// TensorFlow SavedModel directories (holding `saved_model.pb`) in `directory`: each is a problem
/// that says how to convert it.
fn saved_models_in(directory: &Path) -> Vec<ModelProblem> {
    let Ok(entries) = std::fs::read_dir(directory) else {
        return Vec::new();
    };
    let mut problems: Vec<ModelProblem> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.join("saved_model.pb").is_file())
        .map(|path| ModelProblem {
            file: path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default(),
            reason: SAVED_MODEL_ADVICE.to_string(),
        })
        .collect();
    problems.sort_by(|a, b| a.file.cmp(&b.file));
    problems
}

/// `.tflite` and `.onnx` files directly in `directory`, sorted by name.
fn model_files_in(directory: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let entries = match std::fs::read_dir(directory) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ModelError::Io { path: directory.to_path_buf(), source }),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name().and_then(|name| name.to_str()).is_some_and(|name| {
                !name.starts_with('.') && !name.contains(".tmp.") && format_of_file_name(name).is_some()
            })
        })
        .filter(|path| path.is_file())
        .collect();
    paths.sort();
    Ok(paths)
}

fn describe_file(path: &Path, file: &str, default_output_name: &str) -> Result<ModelInfo, ModelError> {
    let name = path.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_default();
    if name == BUILTIN_MODEL_NAME || name == FAKE_MODEL_NAME {
        return Err(ModelError::InvalidConfiguration {
            model: name,
            reason: "this name is reserved for a built-in model; rename the file".to_string(),
        });
    }
    let bytes = std::fs::read(path).map_err(|source| ModelError::Io { path: path.to_path_buf(), source })?;
    let sidecar = ModelSidecar::read_if_present(&path.with_extension("toml"))?;
    let info = match format_of_file_name(file) {
        Some(ModelFormat::Onnx) => describe_onnx_model(&name, file, &bytes, sidecar.as_ref(), default_output_name)?.0,
        _ => describe_tflite_model(&name, file, &bytes, sidecar.as_ref(), default_output_name)?.0,
    };
    Ok(info)
}
