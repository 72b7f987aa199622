//! What a processing job needs wherever it runs (in the server or in a `humpback worker`):
//! where its embeddings go, the metadata its Parquet carries, and its model opened and checked.
//! Below the workers and the server: no services, only the registry and the recorded state.

use std::time::Duration;

use anyhow::{anyhow, Context};

use super::config::from_recorded;
use crate::domain::ids::{AudioFileId, EncodingSignature, ProcessingJobId};
use crate::model::EmbeddingModel;

/// Progress events at most this often per job (plus the first batch).
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(250);

/// `embeddings/{model_version}/{audio_file_id}/{signature}.parquet` (seed spec section 8), with
/// the version reduced to characters safe in a path.
pub fn embeddings_relative_path(
    model_version: &str,
    audio_file_id: AudioFileId,
    signature: &EncodingSignature,
) -> String {
    format!("embeddings/{}/{audio_file_id}/{signature}.parquet", safe_path_component(model_version))
}

/// Letters, digits, `.`, `-`, `_`, `+` and `@` kept; anything else becomes `_`; never `.` or `..`.
pub fn safe_path_component(text: &str) -> String {
    let safe: String = text
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+' | '@') { c } else { '_' })
        .collect();
    if safe.is_empty() || safe.chars().all(|c| c == '.') {
        format!("_{safe}")
    } else {
        safe
    }
}

/// The key-value metadata an embedding set's Parquet carries (what it encodes, from which
/// audio and model, and the recording's start as known now, which fills `start_time_utc`).
pub fn embedding_metadata(
    job: &crate::domain::state::ProcessingJobState,
    audio: &crate::domain::state::AudioFileState,
    recorded_at: Option<crate::recording_time::UtcTime>,
) -> Vec<(String, String)> {
    let mut metadata = vec![
        ("humpback.encoding_signature".to_string(), job.encoding_signature.0.clone()),
        ("humpback.audio_file_id".to_string(), job.audio_file_id.to_string()),
        ("humpback.audio_checksum_sha256".to_string(), audio.checksum_sha256.0.clone()),
        ("humpback.model_name".to_string(), job.config.model_name.clone()),
        ("humpback.model_version".to_string(), job.config.model_version.clone()),
        ("humpback.encoding_config".to_string(), serde_json::to_string(&*job.config).unwrap_or_default()),
    ];
    metadata.extend(
        recorded_at.map(|time| (crate::artifacts::embeddings_parquet::RECORDED_AT_KEY.to_string(), time.to_iso8601())),
    );
    metadata
}

/// The model a job was queued with, opened (or taken from `cached` when it is the same
/// version), the job's encoding resolved against it, and the model's batch size (measured, or
/// `--batch-size`). Refuses a model that is gone or whose version changed since the job was queued.
pub fn open_job_model(
    models: &crate::model::ModelRegistry,
    config: &crate::domain::events::EncodingConfig,
    cached: &mut Option<(String, Box<dyn EmbeddingModel>)>,
) -> anyhow::Result<(crate::processing::config::ResolvedEncoding, Box<dyn EmbeddingModel>, String, usize)> {
    let registered = models.find(&config.model_name).ok_or_else(|| {
        anyhow!(
            "model {} is no longer available in {}; put it back or queue the file with another model",
            config.model_name,
            models.listing().models_directory
        )
    })?;
    if registered.info.version != config.model_version {
        return Err(anyhow!(
            "model {} changed since the job was queued (version {} is now {}); queue the file again to encode it \
             with the new model",
            config.model_name,
            config.model_version,
            registered.info.version
        ));
    }
    let encoding = from_recorded(config, registered.info.input_kind, registered.info.embedding_dim)?;
    let model = match cached.take() {
        Some((version, model)) if version == registered.info.version && model.info().name == registered.info.name => {
            model
        }
        _ => models.open(&registered.info.name).with_context(|| format!("opening model {}", registered.info.name))?,
    };
    Ok((encoding, model, registered.info.version.clone(), registered.batch.batch_size))
}

/// What start-up recovery did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RecoveryReport {
    /// Jobs whose promoted Parquet was complete: recorded as complete.
    pub completed: Vec<ProcessingJobId>,
    /// Jobs whose attempt was lost: abandoned and queued again.
    pub requeued: Vec<ProcessingJobId>,
    /// Temporary files removed.
    pub removed_temporary_files: Vec<String>,
}
