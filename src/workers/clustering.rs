//! Running one claimed clustering job outside the server: the job arrives with the part of the
//! state it reads ([`crate::clustering_jobs::worker::clustering_inputs`]); the embedding sets are
//! read from storage, the same clustering code runs, the outputs are written to the staged keys
//! and the end reported through [`ClusteringJobSource`]. The server checks the staged
//! assignments against what the worker reports before the completion event names them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::processing::{settle, while_renewing, AttemptEnd, Renewal, SourceError};
use crate::clustering_jobs::compute::{compute_clustering, ComputedClustering};
use crate::domain::ids::ClusteringJobId;
use crate::domain::state::DomainState;
use crate::storage::Storage;

/// A claimed clustering job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusteringAssignment {
    pub job_id: u64,
    pub attempt: u32,
    pub lease_seconds: f64,
    /// The state the job reads, bincode-encoded, in hexadecimal ([`encode_inputs`]).
    pub inputs: String,
    /// Where to write `clusters.json` and `assignments.parquet` (the server moves them into place).
    pub staged_clusters_json: String,
    pub staged_assignments: String,
}

/// Where a remote worker stages a clustering job's two outputs, relative to the storage root.
pub fn staged_clustering_keys(job_id: u64, attempt: u32) -> (String, String) {
    let folder = format!("{}/clustering-{job_id}-{attempt}", super::STAGING_DIR);
    (format!("{folder}/clusters.json"), format!("{folder}/assignments.parquet"))
}

/// The inputs as text for JSON: bincode (the snapshot's encoding), then hexadecimal.
pub fn encode_inputs(state: &DomainState) -> Result<String, String> {
    let bytes = bincode::encode_to_vec(state, bincode::config::standard()).map_err(|error| error.to_string())?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}

pub fn decode_inputs(text: &str) -> Result<DomainState, String> {
    if text.len() % 2 != 0 || !text.is_ascii() {
        return Err("the job's inputs are not hexadecimal".into());
    }
    let bytes = (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|error| format!("the job's inputs are not hexadecimal: {error}"))?;
    let (state, read) = bincode::decode_from_slice::<DomainState, _>(&bytes, bincode::config::standard())
        .map_err(|error| format!("the job's inputs do not decode: {error}"))?;
    if read != bytes.len() {
        return Err("the job's inputs have trailing bytes".into());
    }
    Ok(state)
}

/// Where a worker reports on clustering jobs: the server's worker API for a remote worker.
pub trait ClusteringJobSource: Sync {
    /// Keeps the lease (with the stage and fraction when given); answers whether cancel was requested.
    fn renew_clustering(
        &self,
        job: &ClusteringAssignment,
        progress: Option<(String, f64)>,
    ) -> Result<Renewal, SourceError>;
    fn complete_clustering(&self, job: &ClusteringAssignment, computed: ComputedClustering) -> Result<(), SourceError>;
    fn fail_clustering(&self, job: &ClusteringAssignment, reason: String) -> Result<(), SourceError>;
    /// Canceled as asked (`true`) or handed back because the worker stops (`false`).
    fn stop_clustering(&self, job: &ClusteringAssignment, canceled: bool) -> Result<(), SourceError>;
}

/// Runs one claimed clustering job to its end and reports it. Blocking; a helper thread renews
/// the lease (carrying the latest stage) while the clustering runs.
pub fn run_clustering_assignment(
    source: &dyn ClusteringJobSource,
    storage: &Storage,
    job: &ClusteringAssignment,
    stopping: &AtomicBool,
) -> AttemptEnd {
    let cancel_requested = AtomicBool::new(false);
    let lease_lost = AtomicBool::new(false);
    let latest: Mutex<Option<(String, f64)>> = Mutex::new(None);
    let (cancel, lost, latest_ref) = (&cancel_requested, &lease_lost, &latest);
    let renew = || {
        let progress = latest_ref.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        source.renew_clustering(job, progress)
    };
    let outcome = while_renewing(job.job_id, job.lease_seconds, cancel, lost, renew, || {
        let mut progress = |stage: &str, fraction: f64| -> bool {
            *latest_ref.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = Some((stage.to_string(), fraction));
            !(cancel.load(Ordering::Relaxed) || lost.load(Ordering::Relaxed) || stopping.load(Ordering::Relaxed))
        };
        decode_inputs(&job.inputs).map_err(anyhow::Error::msg).and_then(|state| {
            let computed = compute_clustering(
                &state,
                storage,
                ClusteringJobId(job.job_id),
                (&job.staged_clusters_json, &job.staged_assignments),
                &mut progress,
            );
            // A bucket's inputs are local copies for this job only.
            for set in state.embedding_sets.values() {
                storage.forget_local_copy(&set.parquet_path);
            }
            computed
        })
    });
    let reported = match outcome {
        Ok(Some(computed)) => {
            let published =
                storage.publish(&job.staged_assignments).and_then(|()| storage.publish(&job.staged_clusters_json));
            storage.forget_local_copy(&job.staged_assignments);
            storage.forget_local_copy(&job.staged_clusters_json);
            match published {
                Ok(()) => source.complete_clustering(job, computed).map(|()| AttemptEnd::Completed),
                Err(error) => source
                    .fail_clustering(job, format!("uploading the outputs to storage: {error}"))
                    .map(|()| AttemptEnd::Failed),
            }
        }
        Ok(None) if lease_lost.load(Ordering::Relaxed) => Ok(AttemptEnd::LeaseLost),
        Ok(None) if cancel_requested.load(Ordering::Relaxed) => {
            source.stop_clustering(job, true).map(|()| AttemptEnd::Canceled)
        }
        Ok(None) => source.stop_clustering(job, false).map(|()| AttemptEnd::Abandoned),
        Err(error) => {
            storage.forget_local_copy(&job.staged_assignments);
            storage.forget_local_copy(&job.staged_clusters_json);
            let reason = format!("{error:#}");
            tracing::warn!(job = job.job_id, attempt = job.attempt, reason = %reason, "clustering job failed");
            source.fail_clustering(job, reason).map(|()| AttemptEnd::Failed)
        }
    };
    settle(reported, job.job_id, job.attempt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_round_trip_and_garbage_is_refused() {
        let state = DomainState { last_cluster_id: 7, ..DomainState::default() };
        let text = encode_inputs(&state).unwrap();
        assert_eq!(decode_inputs(&text).unwrap(), state);
        assert!(decode_inputs("zz").is_err());
        assert!(decode_inputs("abc").is_err());
        assert!(decode_inputs(&format!("{text}00")).is_err(), "trailing bytes");
    }

    #[test]
    fn staged_keys_are_below_the_staging_folder() {
        let (clusters, assignments) = staged_clustering_keys(3, 2);
        assert_eq!(clusters, "tmp/workers/clustering-3-2/clusters.json");
        assert_eq!(assignments, "tmp/workers/clustering-3-2/assignments.parquet");
        assert!(crate::storage::checked_key(&clusters).is_ok());
    }
}
