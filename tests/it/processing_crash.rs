//! Crash test: a real `humpback serve` child processing several files is killed with SIGKILL at
//! varied moments, 20 times. After each kill, reopening recovers; at the end every job is
//! complete, each signature has exactly one embedding set, no temporary file remains, every
//! Parquet file reads, and the projections equal a rebuild from the log.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use humpback::app::Humpback;
use humpback::config::DataDir;
use humpback::domain::decide::Command as DomainCommand;
use humpback::domain::ids::WorkerId;
use humpback::domain::state::JobStatus;
use humpback::log::EventLog;
use humpback::processing::worker::{find_files, ProcessingWorker, StepOutcome};
use humpback::projections::{dump, Projector};
use serde_json::Value;

use crate::processing::{chirp_wav, settings};

pub(crate) fn queue_new_files(data_dir: &DataDir, first_seed: u32, count: u32) {
    let humpback = Humpback::open_with(data_dir.clone(), settings(0)).unwrap();
    let model = humpback.models.find("fake").unwrap().info.clone();
    let resolved = humpback::processing::config::resolve(
        &humpback::processing::config::EncodingRequest { model: Some("fake".into()), ..Default::default() },
        &model,
    )
    .unwrap();
    for seed in first_seed..first_seed + count {
        let staged =
            humpback::ingest::stage_copy(&humpback.data_dir.tmp_dir(), &chirp_wav(12.0, 16_000, seed)[..], u64::MAX)
                .unwrap();
        let audio = humpback::ingest::register_staged(&humpback, staged, "crash.wav", "").unwrap().audio_file_id();
        let checksum = humpback.writer.read_state(|s| s.audio_files[&audio].checksum_sha256.clone());
        humpback
            .writer
            .execute(DomainCommand::QueueProcessingJob {
                audio_file_id: audio,
                encoding_signature: resolved.signature(&checksum),
                config: resolved.encoding_config(),
            })
            .unwrap();
    }
}

fn check_invariants(data_dir: &DataDir, run: u32) -> Humpback {
    let humpback = Humpback::open_with(data_dir.clone(), settings(0)).expect("reopen after SIGKILL");
    assert!(humpback::log::verify(humpback.log.as_ref()).first_problem.is_none(), "run {run}: log verifies");
    assert!(
        find_files(&data_dir.embeddings_dir(), ".tmp.parquet").unwrap().is_empty(),
        "run {run}: recovery leaves no temporary file"
    );
    humpback.writer.read_state(|state| {
        let mut sets_per_signature: BTreeMap<_, usize> = BTreeMap::new();
        for set in state.embedding_sets.values() {
            *sets_per_signature.entry(set.encoding_signature.clone()).or_default() += 1;
        }
        assert!(sets_per_signature.values().all(|count| *count == 1), "run {run}: one set per signature");
        assert!(
            state.processing_jobs.values().all(|job| job.status != JobStatus::Running),
            "run {run}: nothing is left running after recovery"
        );
    });
    let paths: Vec<String> = humpback.writer.read_state(|state| {
        state
            .embedding_sets
            .keys()
            .filter_map(|id| {
                let job = state.processing_jobs.values().find(|job| job.embedding_set_id == Some(*id))?;
                Some(humpback::processing::worker::embeddings_relative_path(
                    &job.config.model_version,
                    job.audio_file_id,
                    &job.encoding_signature,
                ))
            })
            .collect()
    });
    for path in paths {
        let summary = humpback::artifacts::embeddings_parquet::inspect(&data_dir.root().join(&path))
            .unwrap_or_else(|error| panic!("run {run}: {path} does not read: {error}"));
        assert!(summary.is_complete(), "run {run}: {path} is incomplete");
    }
    let incremental = dump(humpback.projector.lock().unwrap().connection()).unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let mut rebuilt = Projector::open(&fresh.path().join("p.sqlite3"), data_dir.root()).unwrap();
    rebuilt.catch_up(humpback.log.as_ref()).unwrap();
    assert_eq!(incremental, dump(rebuilt.connection()).unwrap(), "run {run}: projections equal a rebuild");
    humpback
}

#[test]
fn killing_the_server_while_it_processes_loses_nothing_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = DataDir::new(dir.path());
    let mut seed = 0;
    for run in 0..20u32 {
        if run % 4 == 0 {
            queue_new_files(&data_dir, seed, 3);
            seed += 3;
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_humpback"))
            .args(["--data-dir", dir.path().to_str().unwrap(), "--bind", "127.0.0.1:0", "serve"])
            .args(["--enable-fake-model", "--workers", "2", "--batch-size", "1"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the server");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let address = line.trim().strip_prefix("humpback listening on ").expect("listening line").to_string();
        // Watch the server's own event stream and kill it after a run-dependent number of events.
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let health: Value = agent.get(&format!("{address}/health")).call().unwrap().body_mut().read_json().unwrap();
        let mut cursor = health["log_head"].as_u64().unwrap();
        let kill_after = 1 + (run as usize * 7) % 23;
        let mut seen = 0;
        while seen < kill_after {
            let Ok(mut response) = agent.get(&format!("{address}/api/events?cursor={cursor}&wait_seconds=2")).call()
            else {
                break;
            };
            let page: Value = response.body_mut().read_json().unwrap();
            let events = page["events"].as_array().cloned().unwrap_or_default();
            if events.is_empty() {
                break; // idle: nothing left to process in this run
            }
            seen += events.len();
            cursor = events.last().unwrap()["seq"].as_u64().unwrap();
        }
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        drop(check_invariants(&data_dir, run));
    }
    // Finish everything in-process and check the end state.
    let humpback = Arc::new(check_invariants(&data_dir, 99));
    let mut worker =
        ProcessingWorker::new(humpback.clone(), WorkerId("final".into()), Arc::new(AtomicBool::new(false)));
    while let StepOutcome::Ran { status, .. } = worker.step().unwrap() {
        assert_eq!(status, JobStatus::Complete);
    }
    humpback.writer.read_state(|state| {
        assert_eq!(state.processing_jobs.len(), seed as usize);
        assert!(state.processing_jobs.values().all(|job| job.status == JobStatus::Complete));
        assert_eq!(state.embedding_sets.len(), seed as usize);
    });
    let abandoned = humpback
        .log
        .scan(humpback::domain::ids::EventSeq(1)..=humpback::domain::ids::EventSeq(u64::MAX), false)
        .filter(|e| e.as_ref().unwrap().event.type_name() == "ProcessingJobAbandoned")
        .count();
    eprintln!("{abandoned} attempts were abandoned by kills and finished later");
}
