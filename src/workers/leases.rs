//! Leases and connected workers, pure: the server's in-memory table of which worker holds
//! which job's attempt until when, and who registered. No I/O and no clock of its own: every
//! operation is told `now`. Renewals only move an expiry here; what the log records is what
//! happened (claimed, abandoned, completed).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The kinds of job a remote worker can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Processing,
    Clustering,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Processing => "processing",
            JobKind::Clustering => "clustering",
        }
    }

    /// `processing` or `clustering` (what `--kinds` and the API accept).
    pub fn parse(text: &str) -> Option<JobKind> {
        match text.trim() {
            "processing" => Some(JobKind::Processing),
            "clustering" => Some(JobKind::Clustering),
            _ => None,
        }
    }
}

/// One job of one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LeasedJob {
    pub kind: JobKind,
    pub job_id: u64,
}

/// Who runs a job's attempt, and until when unless renewed.
#[derive(Debug, Clone, PartialEq)]
pub struct Lease {
    pub worker_id: String,
    pub attempt: u32,
    pub claimed_at: Instant,
    pub expires_at: Instant,
    /// The last progress reported (done, total), for `humpback workers`.
    pub progress: Option<(u64, u64)>,
}

/// Why a lease operation was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum LeaseRefusal {
    /// No lease for this job, worker and attempt (never granted, already ended, or another
    /// attempt holds the job now).
    NotHeld,
    /// The lease had lapsed: it is removed and handed back so the caller records the attempt
    /// as abandoned.
    Lapsed(Lease),
}

/// The leases the server holds in memory (lost at restart, when start-up recovery abandons
/// every running job anyway).
#[derive(Debug, Clone)]
pub struct LeaseTable {
    duration: Duration,
    leases: BTreeMap<LeasedJob, Lease>,
}

impl LeaseTable {
    pub fn new(duration: Duration) -> LeaseTable {
        LeaseTable { duration, leases: BTreeMap::new() }
    }

    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// Records a claim: the attempt is leased to the worker until `now + duration`.
    pub fn grant(&mut self, job: LeasedJob, worker_id: &str, attempt: u32, now: Instant) {
        self.leases.insert(
            job,
            Lease {
                worker_id: worker_id.to_string(),
                attempt,
                claimed_at: now,
                expires_at: now + self.duration,
                progress: None,
            },
        );
    }

    fn check(&mut self, job: LeasedJob, worker_id: &str, attempt: u32, now: Instant) -> Result<(), LeaseRefusal> {
        match self.leases.get(&job) {
            Some(lease) if lease.worker_id == worker_id && lease.attempt == attempt => {
                if now > lease.expires_at {
                    let lapsed = self.leases.remove(&job).ok_or(LeaseRefusal::NotHeld)?;
                    Err(LeaseRefusal::Lapsed(lapsed))
                } else {
                    Ok(())
                }
            }
            _ => Err(LeaseRefusal::NotHeld),
        }
    }

    /// Extends a lease that is still held (and records progress when given).
    pub fn renew(
        &mut self,
        job: LeasedJob,
        worker_id: &str,
        attempt: u32,
        progress: Option<(u64, u64)>,
        now: Instant,
    ) -> Result<(), LeaseRefusal> {
        self.check(job, worker_id, attempt, now)?;
        let duration = self.duration;
        if let Some(lease) = self.leases.get_mut(&job) {
            lease.expires_at = now + duration;
            if progress.is_some() {
                lease.progress = progress;
            }
        }
        Ok(())
    }

    /// Ends a lease that is still held (completion, failure, stop): it is removed, so nothing
    /// else (the sweeper) can act on the attempt any more.
    pub fn release(
        &mut self,
        job: LeasedJob,
        worker_id: &str,
        attempt: u32,
        now: Instant,
    ) -> Result<Lease, LeaseRefusal> {
        self.check(job, worker_id, attempt, now)?;
        self.leases.remove(&job).ok_or(LeaseRefusal::NotHeld)
    }

    /// Removes and returns every lease that lapsed before `now`.
    pub fn take_lapsed(&mut self, now: Instant) -> Vec<(LeasedJob, Lease)> {
        let lapsed: Vec<LeasedJob> =
            self.leases.iter().filter(|(_, lease)| now > lease.expires_at).map(|(job, _)| *job).collect();
        lapsed.into_iter().filter_map(|job| self.leases.remove(&job).map(|lease| (job, lease))).collect()
    }

    /// The leases that have not lapsed at `now`.
    pub fn live(&self, now: Instant) -> Vec<(LeasedJob, Lease)> {
        self.leases
            .iter()
            .filter(|(_, lease)| now <= lease.expires_at)
            .map(|(job, lease)| (*job, lease.clone()))
            .collect()
    }

    /// The leases a worker holds now.
    pub fn held_by(&self, worker_id: &str) -> Vec<(LeasedJob, Lease)> {
        self.leases
            .iter()
            .filter(|(_, lease)| lease.worker_id == worker_id)
            .map(|(job, lease)| (*job, lease.clone()))
            .collect()
    }
}

/// A worker process that registered.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectedWorker {
    pub worker_id: String,
    /// What it calls itself (`host:pid` by default).
    pub name: String,
    pub kinds: Vec<JobKind>,
    pub threads: usize,
    pub registered_at_unix: u64,
    pub last_heard: Instant,
}

/// Registered workers, by id (`w1`, `w2`, ...; never reused while the server runs). A run tag
/// (`w1-k3f9`) keeps a worker that registered with an earlier run of the server from passing
/// for one that registered with this run under the same number.
#[derive(Debug, Clone, Default)]
pub struct WorkerDirectory {
    next_number: u64,
    run: String,
    workers: BTreeMap<String, ConnectedWorker>,
}

impl WorkerDirectory {
    /// A directory whose ids end with `-{run}` (no tag when `run` is empty).
    pub fn for_run(run: &str) -> WorkerDirectory {
        WorkerDirectory { run: run.to_string(), ..WorkerDirectory::default() }
    }

    pub fn register(
        &mut self,
        name: &str,
        kinds: Vec<JobKind>,
        threads: usize,
        registered_at_unix: u64,
        now: Instant,
    ) -> String {
        self.next_number += 1;
        let worker_id = match self.run.as_str() {
            "" => format!("w{}", self.next_number),
            run => format!("w{}-{run}", self.next_number),
        };
        self.workers.insert(
            worker_id.clone(),
            ConnectedWorker {
                worker_id: worker_id.clone(),
                name: name.to_string(),
                kinds,
                threads,
                registered_at_unix,
                last_heard: now,
            },
        );
        worker_id
    }

    /// Notes that a worker was heard from; false when it is unknown (it should register again).
    pub fn heard_from(&mut self, worker_id: &str, now: Instant) -> bool {
        match self.workers.get_mut(worker_id) {
            Some(worker) => {
                worker.last_heard = now;
                true
            }
            None => false,
        }
    }

    pub fn get(&self, worker_id: &str) -> Option<&ConnectedWorker> {
        self.workers.get(worker_id)
    }

    pub fn remove(&mut self, worker_id: &str) -> Option<ConnectedWorker> {
        self.workers.remove(worker_id)
    }

    /// Forgets workers not heard from for `silence` (their leases have long lapsed).
    pub fn forget_silent(&mut self, silence: Duration, now: Instant) {
        self.workers.retain(|_, worker| now.saturating_duration_since(worker.last_heard) <= silence);
    }

    pub fn all(&self) -> impl Iterator<Item = &ConnectedWorker> {
        self.workers.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: LeasedJob = LeasedJob { kind: JobKind::Processing, job_id: 7 };

    #[test]
    fn a_renewed_lease_moves_its_expiry_and_a_lapsed_one_is_handed_back_once() {
        let start = Instant::now();
        let mut table = LeaseTable::new(Duration::from_secs(30));
        table.grant(JOB, "w1", 1, start);
        assert_eq!(table.renew(JOB, "w1", 1, Some((3, 10)), start + Duration::from_secs(29)), Ok(()));
        assert!(table.take_lapsed(start + Duration::from_secs(45)).is_empty(), "renewed at 29 s: holds until 59 s");
        match table.renew(JOB, "w1", 1, None, start + Duration::from_secs(60)) {
            Err(LeaseRefusal::Lapsed(lease)) => assert_eq!(lease.progress, Some((3, 10))),
            other => panic!("expected a lapsed lease, got {other:?}"),
        }
        assert_eq!(table.renew(JOB, "w1", 1, None, start + Duration::from_secs(61)), Err(LeaseRefusal::NotHeld));
    }

    #[test]
    fn only_the_holding_worker_and_attempt_may_renew_or_release() {
        let start = Instant::now();
        let mut table = LeaseTable::new(Duration::from_secs(30));
        table.grant(JOB, "w1", 2, start);
        assert_eq!(table.renew(JOB, "w2", 2, None, start), Err(LeaseRefusal::NotHeld));
        assert_eq!(table.renew(JOB, "w1", 1, None, start), Err(LeaseRefusal::NotHeld));
        assert_eq!(table.release(JOB, "w1", 1, start), Err(LeaseRefusal::NotHeld));
        assert_eq!(table.release(JOB, "w1", 2, start).map(|lease| lease.attempt), Ok(2));
        assert_eq!(table.release(JOB, "w1", 2, start), Err(LeaseRefusal::NotHeld), "released once");
    }

    #[test]
    fn the_sweep_takes_exactly_the_lapsed_leases() {
        let start = Instant::now();
        let mut table = LeaseTable::new(Duration::from_secs(2));
        table.grant(JOB, "w1", 1, start);
        let other = LeasedJob { kind: JobKind::Clustering, job_id: 1 };
        table.grant(other, "w2", 1, start + Duration::from_secs(1));
        let lapsed = table.take_lapsed(start + Duration::from_millis(2500));
        assert_eq!(lapsed.iter().map(|(job, _)| *job).collect::<Vec<_>>(), vec![JOB]);
        assert_eq!(table.held_by("w2").len(), 1);
        assert!(table.held_by("w1").is_empty());
    }

    #[test]
    fn the_same_number_in_two_runs_of_the_server_is_two_ids() {
        let start = Instant::now();
        let earlier = WorkerDirectory::for_run("k3f9").register("a", vec![JobKind::Processing], 1, 0, start);
        let mut later = WorkerDirectory::for_run("x0q2");
        let newcomer = later.register("b", vec![JobKind::Processing], 1, 0, start);
        assert_eq!((earlier.as_str(), newcomer.as_str()), ("w1-k3f9", "w1-x0q2"));
        assert!(!later.heard_from(&earlier, start), "a worker of the earlier run must register again");
    }

    #[test]
    fn worker_ids_are_never_reused_and_silent_workers_are_forgotten() {
        let start = Instant::now();
        let mut directory = WorkerDirectory::default();
        let first = directory.register("a", vec![JobKind::Processing], 1, 0, start);
        let second = directory.register("b", vec![JobKind::Processing], 2, 0, start);
        assert_ne!(first, second);
        assert!(directory.heard_from(&second, start + Duration::from_secs(100)));
        directory.forget_silent(Duration::from_secs(60), start + Duration::from_secs(120));
        assert!(directory.get(&first).is_none());
        assert!(directory.get(&second).is_some());
        assert!(!directory.heard_from(&first, start), "a forgotten worker registers again");
    }
}
