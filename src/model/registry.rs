//! The models humpback can use: the built-in default, `fake` when enabled, and every `.tflite` file in
//! the models directory (described from its shapes and optional `NAME.toml` sidecar). A file that
//! cannot be used is listed as a problem with its reason and skipped; it never stops the others.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::model::builtin::{BuiltinLogMelStatsModel, BUILTIN_MODEL_NAME};
use crate::model::fake::{FakeModel, FakeModelConfig, FAKE_MODEL_NAME};
use crate::model::info::{ModelInfo, DEFAULT_EMBEDDING_OUTPUT_NAME};
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
    pub run_options: RunOptions,
}

impl RegistryConfig {
    pub fn new(models_directory: impl Into<PathBuf>) -> Self {
        RegistryConfig {
            models_directory: models_directory.into(),
            fake_model: None,
            default_output_name: DEFAULT_EMBEDDING_OUTPUT_NAME.to_string(),
            run_options: RunOptions::default(),
        }
    }
}

/// How a registered model is run.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelImplementation {
    Builtin,
    Fake(FakeModelConfig),
    TfliteFile { path: PathBuf },
}

#[derive(Debug, Clone, PartialEq)]
pub struct RegisteredModel {
    pub info: ModelInfo,
    pub implementation: ModelImplementation,
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
    pub models: Vec<ModelInfo>,
    pub problems: Vec<ModelProblem>,
}

#[derive(Debug, Clone)]
pub struct ModelRegistry {
    config: RegistryConfig,
    models: Vec<RegisteredModel>,
    problems: Vec<ModelProblem>,
}

impl ModelRegistry {
    /// Scans the models directory. A missing directory just means no file models; only failing to
    /// list an existing directory is an error.
    pub fn discover(config: RegistryConfig) -> Result<Self, ModelError> {
        let mut models = vec![RegisteredModel {
            info: BuiltinLogMelStatsModel::new().info().clone(),
            implementation: ModelImplementation::Builtin,
        }];
        if let Some(fake_config) = &config.fake_model {
            models.push(RegisteredModel {
                info: FakeModel::new(fake_config)?.info().clone(),
                implementation: ModelImplementation::Fake(fake_config.clone()),
            });
        }
        let mut problems = Vec::new();
        for path in tflite_files_in(&config.models_directory)? {
            let file = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
            match describe_file(&path, &file, &config.default_output_name) {
                Ok(info) if models.iter().any(|model| model.info.name == info.name) => {
                    problems.push(ModelProblem { file, reason: format!("the name {:?} is already taken", info.name) });
                }
                Ok(info) => {
                    models.push(RegisteredModel { info, implementation: ModelImplementation::TfliteFile { path } })
                }
                Err(error) => problems.push(ModelProblem { file, reason: error.to_string() }),
            }
        }
        Ok(ModelRegistry { config, models, problems })
    }

    pub fn models(&self) -> &[RegisteredModel] {
        &self.models
    }

    pub fn problems(&self) -> &[ModelProblem] {
        &self.problems
    }

    /// The model used when the user names none: always the built-in one.
    pub fn default_model_name(&self) -> &'static str {
        BUILTIN_MODEL_NAME
    }

    pub fn find(&self, name: &str) -> Option<&RegisteredModel> {
        self.models.iter().find(|model| model.info.name == name)
    }

    pub fn listing(&self) -> ModelListing {
        ModelListing {
            models_directory: self.config.models_directory.display().to_string(),
            default_model: self.default_model_name().to_string(),
            models: self.models.iter().map(|model| model.info.clone()).collect(),
            problems: self.problems.clone(),
        }
    }

    /// Loads a model ready to embed. For files, the bytes are checked against the hash registered at
    /// discovery, so a replaced file can never run under the old version.
    pub fn open(&self, name: &str) -> Result<Box<dyn EmbeddingModel>, ModelError> {
        let model = self.find(name).ok_or_else(|| ModelError::UnknownModel {
            name: name.to_string(),
            available: self.models.iter().map(|model| model.info.name.as_str()).collect::<Vec<_>>().join(", "),
        })?;
        match &model.implementation {
            ModelImplementation::Builtin => Ok(Box::new(BuiltinLogMelStatsModel::new())),
            ModelImplementation::Fake(config) => Ok(Box::new(FakeModel::new(config)?)),
            ModelImplementation::TfliteFile { path } => {
                let bytes = std::fs::read(path).map_err(|source| ModelError::Io { path: path.clone(), source })?;
                let actual = sha256_hex(&bytes);
                let expected = model.info.file_sha256.as_ref().map(|hash| hash.0.clone()).unwrap_or_default();
                if actual != expected {
                    return Err(ModelError::ModelFileChanged { path: path.clone(), expected, actual });
                }
                Ok(Box::new(TfliteEmbeddingModel::from_bytes(model.info.clone(), bytes, self.config.run_options)?))
            }
        }
    }
}

/// `.tflite` files directly in `directory`, sorted by name.
fn tflite_files_in(directory: &Path) -> Result<Vec<PathBuf>, ModelError> {
    let entries = match std::fs::read_dir(directory) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ModelError::Io { path: directory.to_path_buf(), source }),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|extension| extension.eq_ignore_ascii_case("tflite")))
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
    let (info, _) = describe_tflite_model(&name, file, &bytes, sidecar.as_ref(), default_output_name)?;
    Ok(info)
}
