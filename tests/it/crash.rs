//! Crash safety: a child process (this test binary, re-run) appends events through the writer
//! and catches projections up, and is killed with SIGKILL at varied points. After each kill
//! the log verifies, every acknowledged event is there, and the projections catch up to
//! exactly what a rebuild from the log gives.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use humpback::app::Humpback;
use humpback::config::DataDir;
use humpback::domain::ids::EventSeq;
use humpback::log::{EventLog, SledEventLog};
use humpback::projections::{dump, Projector};

use crate::helpers::*;

const CHILD_DIR_VARIABLE: &str = "HUMPBACK_CRASH_CHILD_DIR";

/// The child: appends an endless realistic stream, printing `ack SEQ TYPE` after each append
/// returned (acknowledged as durable). Run only by the crash test.
#[test]
#[ignore = "run as a child process by the crash test"]
fn crash_child_appends_until_killed() {
    let Ok(dir) = std::env::var(CHILD_DIR_VARIABLE) else {
        return;
    };
    let humpback = Humpback::open(DataDir::new(dir)).expect("child opens the data dir");
    let first_file = humpback.writer.read_state(|state| state.next_audio_file_id().0);
    let mut stdout = std::io::stdout().lock();
    for (round, file) in (first_file..).enumerate() {
        let round = round as u64;
        let commands = vec![
            register(file + 1_000_000),
            edit_metadata(file, round),
            queue(file, &format!("crash-sig-{file}")),
            claim(),
        ];
        for command in commands {
            if let Ok(envelopes) = humpback.writer.execute(command) {
                for envelope in envelopes {
                    use std::io::Write;
                    let _ = writeln!(stdout, "ack {} {}", envelope.seq, envelope.event.type_name());
                    let _ = stdout.flush();
                }
            }
        }
        let running = humpback.writer.read_state(|state| {
            state
                .processing_jobs
                .iter()
                .find(|(_, job)| job.status == humpback::domain::state::JobStatus::Running)
                .map(|(id, job)| (id.0, job.attempt))
        });
        if let Some((job, attempt)) = running {
            if let Ok(envelopes) = humpback.writer.execute(complete(job, attempt)) {
                for envelope in envelopes {
                    use std::io::Write;
                    let _ = writeln!(stdout, "ack {} {}", envelope.seq, envelope.event.type_name());
                    let _ = stdout.flush();
                }
            }
        }
        if round % 3 == 0 {
            humpback.catch_up_projections().expect("child catches up");
        }
    }
}

/// A deterministic spread of kill points (no randomness that a failure could not replay).
fn kill_after_acks(run: u64) -> u64 {
    1 + (run * 2_654_435_761 % 97)
}

#[test]
fn killing_a_writer_at_arbitrary_points_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let mut acknowledged: Vec<(u64, String)> = Vec::new();
    for run in 0..12u64 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "crash::crash_child_appends_until_killed",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_DIR_VARIABLE, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut acks_this_run = 0;
        while acks_this_run < kill_after_acks(run) {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(rest) = line.strip_prefix("ack ") {
                let (seq, event_type) = rest.split_once(' ').expect("ack line");
                acknowledged.push((seq.parse().unwrap(), event_type.to_string()));
                acks_this_run += 1;
            }
        }
        assert!(acks_this_run > 0, "run {run}: the child acknowledged nothing");
        child.kill().expect("SIGKILL the child");
        child.wait().expect("reap the child");
        // Whatever was printed after we stopped reading may also be acknowledged; read it too.
        for line in lines.map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix("ack ") {
                let (seq, event_type) = rest.split_once(' ').expect("ack line");
                acknowledged.push((seq.parse().unwrap(), event_type.to_string()));
            }
        }

        let log = SledEventLog::open(&dir.path().join("events")).expect("reopen after SIGKILL");
        let report = humpback::log::verify(&log);
        assert_eq!(report.first_problem, None, "run {run}: the log does not verify");
        for (seq, event_type) in &acknowledged {
            let envelope = log
                .get(EventSeq(*seq))
                .unwrap()
                .unwrap_or_else(|| panic!("run {run}: acknowledged event {seq} is missing"));
            assert_eq!(envelope.event.type_name(), event_type, "run {run}: event {seq} changed");
        }
        let mut projector =
            Projector::open(&dir.path().join("projections.sqlite3"), dir.path()).expect("reopen projections");
        let reached = projector.catch_up(&log).unwrap();
        assert_eq!(reached, log.head());
        let incremental = dump(projector.connection()).unwrap();
        let fresh_dir = tempfile::tempdir().unwrap();
        let mut fresh = Projector::open(&fresh_dir.path().join("p.sqlite3"), dir.path()).unwrap();
        fresh.catch_up(&log).unwrap();
        assert_eq!(incremental, dump(fresh.connection()).unwrap(), "run {run}: projections differ from a rebuild");
    }
    assert!(acknowledged.len() > 12);
}
