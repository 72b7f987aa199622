//! Remote workers (issue 14): a real `humpback serve` with no in-process workers and three real
//! `humpback worker` processes process a folder; one worker is killed with SIGKILL mid-job and
//! its job completes on another worker within the lease plus a margin. A completion from a
//! lapsed lease is refused (409) and its staged file removed; a worker without the token gets
//! 401. At the end the log verifies, each signature has one embedding set, no temporary file
//! remains and the projections equal a rebuild.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use humpback::app::Humpback;
use humpback::config::DataDir;
use humpback::domain::events::Event;
use humpback::domain::state::JobStatus;
use humpback::log::EventLog;
use humpback::processing::worker::find_files;
use humpback::projections::{dump, Projector};
use serde_json::{json, Value};

use crate::processing::{chirp_wav, settings};

pub(crate) const TOKEN: &str = "remote-workers-test-token-0123456789";
pub(crate) const LEASE_SECONDS: f64 = 1.5;

/// Kills the child on drop (a failed assertion leaves no process behind).
pub(crate) struct Running(pub(crate) Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends SIGTERM and waits for the process to end.
pub(crate) fn terminate(child: &mut Child) -> std::process::ExitStatus {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    child.wait().expect("wait for the child")
}

pub(crate) fn first_line(child: &mut Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read the first line");
    line.trim().to_string()
}

fn start_server(dir: &Path) -> (Running, String) {
    start_server_at(dir, "127.0.0.1:0")
}

fn start_server_at(dir: &Path, bind: &str) -> (Running, String) {
    start_server_with(dir, bind, &[], &[])
}

/// A server without workers of its own, with `extra` arguments to `serve` and `environment`.
pub(crate) fn start_server_with(
    dir: &Path,
    bind: &str,
    extra: &[&str],
    environment: &[(String, String)],
) -> (Running, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_humpback"))
        .args(["--data-dir", dir.to_str().unwrap(), "--bind", bind, "--token", TOKEN, "serve"])
        .args(["--enable-fake-model", "--workers", "0", "--clustering-workers", "0", "--batch-size", "1"])
        .args(["--lease-seconds", &LEASE_SECONDS.to_string()])
        .args(extra)
        .envs(environment.iter().map(|(key, value)| (key.as_str(), value.as_str())))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the server");
    let line = first_line(&mut child);
    let address = line.strip_prefix("humpback listening on ").expect("listening line").to_string();
    (Running(child), address)
}

fn start_worker(address: &str, name: &str, token: Option<&str>) -> Running {
    start_worker_with(address, name, token, &[], &[])
}

pub(crate) fn start_worker_with(
    address: &str,
    name: &str,
    token: Option<&str>,
    environment: &[(String, String)],
    extra: &[&str],
) -> Running {
    let mut command = Command::new(env!("CARGO_BIN_EXE_humpback"));
    command
        .args(["worker", "--server", address, "--threads", "1", "--enable-fake-model", "--name", name])
        .args(extra)
        .envs(environment.iter().map(|(key, value)| (key.as_str(), value.as_str())))
        .env_remove("HUMPBACK_TOKEN")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(token) = token {
        command.args(["--token", token]);
    }
    Running(command.spawn().expect("start a worker"))
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

pub(crate) fn call(method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let agent = agent();
    let response = match method {
        "POST" => {
            let mut request = agent.post(url);
            if let Some(token) = token {
                request = request.header("authorization", &format!("Bearer {token}"));
            }
            request.send_json(body.unwrap_or(json!({})))
        }
        _ => {
            let mut request = agent.get(url);
            if let Some(token) = token {
                request = request.header("authorization", &format!("Bearer {token}"));
            }
            request.call()
        }
    };
    let mut response = response.expect("request");
    let status = response.status().as_u16();
    (status, response.body_mut().read_json::<Value>().unwrap_or(Value::Null))
}

/// Waits until `check` holds, waking on every new event in the server's log (long poll), or
/// fails after `limit`.
pub(crate) fn wait_until(address: &str, limit: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    let mut cursor = call("GET", &format!("{address}/health"), None, None).1["log_head"].as_u64().unwrap_or(0);
    loop {
        if check() {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        let (_, page) =
            call("GET", &format!("{address}/api/events?cursor={cursor}&wait_seconds=0.2"), Some(TOKEN), None);
        if let Some(last) = page["events"].as_array().and_then(|events| events.last()) {
            cursor = last["seq"].as_u64().unwrap_or(cursor);
        }
    }
}

pub(crate) fn job_status(address: &str, job: u64) -> String {
    call("GET", &format!("{address}/api/processing-jobs/{job}"), Some(TOKEN), None).1["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn register_recordings(data_dir: &DataDir, count: u32, seconds: f64) {
    register_recordings_in(data_dir, "survey", 0..count, seconds);
}

fn register_recordings_in(data_dir: &DataDir, folder: &str, seeds: std::ops::Range<u32>, seconds: f64) {
    let humpback = Humpback::open_with(data_dir.clone(), settings(0)).unwrap();
    for seed in seeds {
        let staged =
            humpback::ingest::stage_copy(&humpback.data_dir.tmp_dir(), &chirp_wav(seconds, 16_000, seed)[..], u64::MAX)
                .unwrap();
        humpback::ingest::register_staged(&humpback, staged, &format!("{folder}-{seed}.wav"), folder).unwrap();
    }
}

pub(crate) fn queue_folder(address: &str, folder: &str) -> Vec<u64> {
    let (status, queued) = call(
        "POST",
        &format!("{address}/api/processing-jobs"),
        Some(TOKEN),
        Some(json!({ "folder": folder, "model": "fake" })),
    );
    assert!(status == 200 || status == 201 || status == 202, "queue {folder}: {status} {queued}");
    queued.as_array().expect("jobs").iter().map(|job| job["id"].as_u64().unwrap()).collect()
}

/// Waits until one of `workers` is in the middle of a processing job (some windows done, not
/// all), kills it with SIGKILL and removes it: its job, and when it was killed.
pub(crate) fn kill_a_worker_mid_job(
    address: &str,
    workers: &mut BTreeMap<String, Running>,
    limit: Duration,
) -> (u64, Instant) {
    let mut victim: Option<(String, u64)> = None;
    wait_until(address, limit, "a worker in the middle of a job", || {
        let (_, listing) = call("GET", &format!("{address}/api/workers"), Some(TOKEN), None);
        victim = listing["workers"].as_array().into_iter().flatten().find_map(|worker| {
            let job = worker["jobs"].as_array()?.first()?;
            let (done, total) = (job["windows_done"].as_u64()?, job["windows_total"].as_u64()?);
            (done > 0 && done < total)
                .then(|| (worker["name"].as_str().unwrap_or_default().to_string(), job["job_id"].as_u64().unwrap()))
        });
        victim.as_ref().is_some_and(|(name, _)| workers.contains_key(name))
    });
    let (victim_name, victim_job) = victim.unwrap();
    let mut killed = workers.remove(&victim_name).unwrap();
    killed.0.kill().expect("SIGKILL");
    killed.0.wait().unwrap();
    (victim_job, Instant::now())
}

/// A worker process outlives a server restart: the server is stopped in the middle of the
/// worker's job and started again on the same data directory and port; the worker drops the
/// attempt the restarted server abandoned, registers again (the same process prints a second
/// `registered` line) and runs both the requeued job and a newly queued one.
#[test]
fn a_worker_registers_again_after_the_server_restarts_and_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = DataDir::new(dir.path());
    register_recordings_in(&data_dir, "before", 0..1, 240.0);
    register_recordings_in(&data_dir, "after", 1..2, 5.0);
    let (server, address) = start_server(dir.path());
    let bind = address.strip_prefix("http://").unwrap_or(&address).to_string();
    let mut worker = start_worker(&address, "survivor", Some(TOKEN));
    let (lines_sender, lines) = std::sync::mpsc::channel::<String>();
    let stdout = worker.0.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_sender.send(line).is_err() {
                return;
            }
        }
    });
    let next_line = |what: &str| {
        lines.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("timed out waiting for {what}"))
    };
    let first = next_line("the worker's registration");
    let first_id = first.strip_prefix("humpback worker ").and_then(|rest| rest.split(' ').next()).unwrap().to_string();

    let before = queue_folder(&address, "before")[0];
    wait_until(&address, Duration::from_secs(60), "the worker in the middle of its job", || {
        let (_, listing) = call("GET", &format!("{address}/api/workers"), Some(TOKEN), None);
        listing["workers"][0]["jobs"][0]["windows_done"].as_u64().is_some_and(|done| done > 0)
    });
    let mut server = server;
    assert!(terminate(&mut server.0).success(), "the server stops cleanly");
    drop(server);
    let (_server, restarted) = start_server_at(dir.path(), &bind);
    assert_eq!(restarted, address, "the same port");

    let second = next_line("the worker to register again");
    assert!(second.starts_with("humpback worker w"), "{second}");
    let second_id =
        second.strip_prefix("humpback worker ").and_then(|rest| rest.split(' ').next()).unwrap().to_string();
    assert_ne!(first_id, second_id, "an id of the earlier run is never handed out again");
    let after = queue_folder(&address, "after")[0];
    wait_until(&address, Duration::from_secs(120), "both jobs to complete after the restart", || {
        job_status(&address, before) == "complete" && job_status(&address, after) == "complete"
    });
    assert!(worker.0.try_wait().unwrap().is_none(), "the same worker process is still running");
    let (_, listing) = call("GET", &format!("{address}/api/workers"), Some(TOKEN), None);
    let workers = listing["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 1, "{listing}");
    assert_eq!((workers[0]["name"].as_str(), workers[0]["worker_id"].as_str()), (Some("survivor"), Some(&*second_id)));
    assert!(terminate(&mut worker.0).success(), "the worker stops cleanly on SIGTERM");
    let mut server = _server;
    assert!(terminate(&mut server.0).success(), "the restarted server stops cleanly");

    let humpback = Humpback::open_with(data_dir.clone(), settings(0)).unwrap();
    let events: Vec<Event> = humpback
        .log
        .read_after(humpback::domain::ids::EventSeq(0), 1_000_000)
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    let claims = |job: u64| -> Vec<String> {
        events
            .iter()
            .filter_map(|event| match event {
                Event::ProcessingJobClaimed(e) if e.job_id.0 == job => Some(e.worker.0.clone()),
                _ => None,
            })
            .collect()
    };
    // The interrupted attempt was abandoned by start-up recovery and claimed again.
    let claims_before = claims(before);
    assert_eq!(claims_before.first(), Some(&first_id), "{claims_before:?}");
    assert_eq!(claims_before.last(), Some(&second_id), "{claims_before:?}");
    assert_eq!(claims(after), vec![second_id.clone()]);
    assert!(find_files(dir.path(), ".tmp.parquet").unwrap().is_empty(), "no temporary Parquet is left");
    assert!(find_files(&dir.path().join("tmp").join("workers"), "").unwrap().is_empty(), "no staged file is left");
}

#[test]
fn remote_workers_process_a_folder_and_a_killed_workers_job_completes_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = DataDir::new(dir.path());
    register_recordings(&data_dir, 6, 240.0);
    let (server, address) = start_server(dir.path());

    // Without the token: 401, from the API and for a real worker process.
    let (status, _) =
        call("POST", &format!("{address}/api/workers/register"), None, Some(json!({ "kinds": ["processing"] })));
    assert_eq!(status, 401, "registering without the token");
    let mut tokenless = start_worker(&address, "no-token", None);
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = tokenless.0.try_wait().unwrap() {
            break exit;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "a worker without the token keeps running");
        std::thread::park_timeout(Duration::from_millis(50));
    };
    assert!(!exit.success(), "a worker without the token stops with an error");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut tokenless.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("token"), "the worker says why: {stderr}");

    // Queue the folder.
    let (status, queued) = call(
        "POST",
        &format!("{address}/api/processing-jobs"),
        Some(TOKEN),
        Some(json!({ "folder": "survey", "model": "fake" })),
    );
    assert!(status == 200 || status == 201 || status == 202, "queue the folder: {status} {queued}");
    let jobs: Vec<u64> = queued.as_array().expect("jobs").iter().map(|job| job["id"].as_u64().unwrap()).collect();
    assert_eq!(jobs.len(), 6);

    // A hand-driven worker claims a job and lets its lease lapse: the attempt is abandoned and the
    // job queued again; its late completion is refused and what it staged is removed.
    let (status, registered) = call(
        "POST",
        &format!("{address}/api/workers/register"),
        Some(TOKEN),
        Some(json!({ "name": "by-hand", "kinds": ["processing"] })),
    );
    assert_eq!(status, 200, "{registered}");
    let manual = registered["worker_id"].as_str().unwrap().to_string();
    let (status, claimed) =
        call("POST", &format!("{address}/api/workers/{manual}/claim"), Some(TOKEN), Some(json!({ "wait_seconds": 1 })));
    assert_eq!(status, 200, "{claimed}");
    let lapsed_job = claimed["job_id"].as_u64().unwrap();
    let staged = dir.path().join(claimed["staged_path"].as_str().unwrap());
    std::fs::create_dir_all(staged.parent().unwrap()).unwrap();
    std::fs::write(&staged, b"not really parquet").unwrap();
    assert_eq!(job_status(&address, lapsed_job), "running");
    let waited = wait_until(
        &address,
        Duration::from_secs_f64(LEASE_SECONDS + 10.0),
        "the lapsed job to be queued again",
        || job_status(&address, lapsed_job) == "queued",
    );
    assert!(waited.as_secs_f64() < LEASE_SECONDS + 5.0, "requeued {waited:?} after the claim");
    let (status, refused) = call(
        "POST",
        &format!("{address}/api/workers/{manual}/processing-jobs/{lapsed_job}/complete"),
        Some(TOKEN),
        Some(json!({ "attempt": 1, "rows": 240, "warnings": [] })),
    );
    assert_eq!(status, 409, "a completion from a lapsed lease: {refused}");
    assert!(!staged.exists(), "the lapsed attempt's staged file is removed");

    // Three worker processes; kill one in the middle of a job.
    let mut workers: BTreeMap<String, Running> = BTreeMap::new();
    for index in 0..3 {
        let name = format!("worker-{index}");
        let mut worker = start_worker(&address, &name, Some(TOKEN));
        let line = first_line(&mut worker.0);
        assert!(line.starts_with("humpback worker w"), "{line}");
        workers.insert(name, worker);
    }
    let listed = Command::new(env!("CARGO_BIN_EXE_humpback"))
        .args(["--bind", &address, "--token", TOKEN, "workers"])
        .output()
        .expect("humpback workers");
    let table = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success() && table.contains("worker-0") && table.contains("by-hand"), "{table}");
    let (victim_job, killed_at) = kill_a_worker_mid_job(&address, &mut workers, Duration::from_secs(60));
    wait_until(&address, Duration::from_secs(120), "the killed worker's job to complete elsewhere", || {
        job_status(&address, victim_job) == "complete"
    });
    let recovered_after = killed_at.elapsed();
    wait_until(&address, Duration::from_secs(180), "every job to complete", || {
        jobs.iter().all(|job| job_status(&address, *job) == "complete")
    });
    let (_, listing) = call("GET", &format!("{address}/api/workers"), Some(TOKEN), None);
    assert!(
        listing["lapsed_leases"].as_u64().unwrap() >= 2,
        "the hand-driven lease and the killed worker's: {listing}"
    );

    for (_, mut worker) in std::mem::take(&mut workers) {
        assert!(terminate(&mut worker.0).success(), "a worker stops cleanly on SIGTERM");
    }
    let mut server = server;
    assert!(terminate(&mut server.0).success(), "the server stops cleanly");

    // The end state, read in-process.
    let humpback = Humpback::open_with(data_dir.clone(), settings(0)).unwrap();
    assert!(humpback::log::verify(humpback.log.as_ref()).first_problem.is_none(), "the log verifies");
    humpback.writer.read_state(|state| {
        let mut sets_per_signature: BTreeMap<_, usize> = BTreeMap::new();
        for set in state.embedding_sets.values() {
            *sets_per_signature.entry(set.encoding_signature.clone()).or_default() += 1;
        }
        assert_eq!(sets_per_signature.len(), 6);
        assert!(sets_per_signature.values().all(|count| *count == 1), "one set per signature");
        assert!(state.processing_jobs.values().all(|job| job.status == JobStatus::Complete));
    });
    let events: Vec<Event> = humpback
        .log
        .read_after(humpback::domain::ids::EventSeq(0), 1_000_000)
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    let abandoned =
        |job: u64| events.iter().any(|event| matches!(event, Event::ProcessingJobAbandoned(e) if e.job_id.0 == job));
    assert!(abandoned(lapsed_job) && abandoned(victim_job), "lapsed attempts are recorded as abandoned");
    let claims_of_victim: Vec<String> = events
        .iter()
        .filter_map(|event| match event {
            Event::ProcessingJobClaimed(e) if e.job_id.0 == victim_job => Some(e.worker.0.clone()),
            _ => None,
        })
        .collect();
    assert!(claims_of_victim.len() >= 2 && claims_of_victim.first() != claims_of_victim.last(), "{claims_of_victim:?}");
    assert!(find_files(dir.path(), ".tmp.parquet").unwrap().is_empty(), "no temporary Parquet is left");
    assert!(find_files(&dir.path().join("tmp").join("workers"), "").unwrap().is_empty(), "no staged file is left");
    for set in humpback.writer.read_state(|state| state.embedding_sets.values().cloned().collect::<Vec<_>>()) {
        let summary = humpback::artifacts::embeddings_parquet::inspect(&dir.path().join(&set.parquet_path)).unwrap();
        assert!(summary.is_complete() && summary.rows == set.row_count);
    }
    let incremental = dump(humpback.projector.lock().unwrap().connection()).unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let mut rebuilt = Projector::open(&fresh.path().join("p.sqlite3"), dir.path()).unwrap();
    rebuilt.catch_up(humpback.log.as_ref()).unwrap();
    assert_eq!(incremental, dump(rebuilt.connection()).unwrap(), "projections equal a rebuild");
    // The killed job was picked up after its lease lapsed and finished well within the margin.
    assert!(
        recovered_after < Duration::from_secs_f64(LEASE_SECONDS) + Duration::from_secs(60),
        "the killed worker's job completed {recovered_after:?} after the kill"
    );
}

fn process_command(dir: &Path, arguments: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_humpback"))
        .args(["--data-dir", dir.to_str().unwrap()])
        .args(arguments)
        .env_remove("HUMPBACK_TOKEN")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run humpback process")
}

#[test]
fn process_follows_its_jobs_to_the_end_alone_and_through_a_server_with_a_remote_worker() {
    let dir = tempfile::tempdir().unwrap();
    let audio = tempfile::tempdir().unwrap();
    for seed in 0..2 {
        std::fs::write(audio.path().join(format!("clip-{seed}.wav")), chirp_wav(20.0, 16_000, seed)).unwrap();
    }
    let files: Vec<String> =
        (0..2).map(|seed| audio.path().join(format!("clip-{seed}.wav")).display().to_string()).collect();
    // No server runs: one is started in the process for the command.
    let mut arguments = vec!["process", "--model", "fake", "--enable-fake-model"];
    arguments.extend(files.iter().map(String::as_str));
    let output = process_command(dir.path(), &arguments);
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}\n{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(text.matches("complete: embedding set").count(), 2, "{text}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("2/2 jobs"), "the progress bar reaches the end");

    // Through a server without workers of its own, a remote worker runs the new jobs.
    let (_server, address) = start_server(dir.path());
    let mut worker = start_worker(&address, "process-worker", Some(TOKEN));
    assert!(first_line(&mut worker.0).starts_with("humpback worker w"));
    let output = Command::new(env!("CARGO_BIN_EXE_humpback"))
        .args(["--data-dir", dir.path().to_str().unwrap(), "--token", TOKEN, "process", "--server", &address])
        .args(["--audio", "1,2", "--model", "fake", "--hop-seconds", "0.5"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("run humpback process through the server");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}\n{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(text.matches("complete: embedding set").count(), 2, "{text}");
    let (_, listing) = call("GET", &format!("{address}/api/workers"), Some(TOKEN), None);
    assert_eq!(listing["workers"][0]["name"], "process-worker");
    // Queued without waiting, the command returns at once with the jobs.
    let output = Command::new(env!("CARGO_BIN_EXE_humpback"))
        .args(["--data-dir", dir.path().to_str().unwrap(), "--token", TOKEN, "process", "--server", &address])
        .args(["--audio", "1", "--model", "fake", "--no-wait"])
        .output()
        .expect("run humpback process --no-wait");
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("queued processing jobs 1"));
}

/// The same runner and coordinator without HTTP: a staged file whose row count disagrees with
/// the report is refused (the attempt fails with the reason, the file is removed), a good one is
/// moved into place, and an attempt whose lease lapsed is abandoned by the sweep and its late
/// completion refused.
#[test]
fn the_coordinator_checks_staged_files_and_sweeps_lapsed_leases() {
    use humpback::workers::local::InProcessJobSource;
    use humpback::workers::processing::{
        run_assignment, AttemptEnd, ProcessingAssignment, ProcessingCompletion, ProcessingJobSource, Renewal,
        SourceError,
    };
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;

    /// Reports one row more than it wrote.
    struct Miscounting(InProcessJobSource);
    impl ProcessingJobSource for Miscounting {
        fn claim(&self) -> Result<Option<ProcessingAssignment>, SourceError> {
            self.0.claim()
        }
        fn renew(&self, job: &ProcessingAssignment, progress: Option<(u64, u64)>) -> Result<Renewal, SourceError> {
            self.0.renew(job, progress)
        }
        fn complete(&self, job: &ProcessingAssignment, completion: ProcessingCompletion) -> Result<(), SourceError> {
            let rows = completion.rows.map(|rows| rows + 1);
            self.0.complete(job, ProcessingCompletion { rows, ..completion })
        }
        fn fail(&self, job: &ProcessingAssignment, reason: String) -> Result<(), SourceError> {
            self.0.fail(job, reason)
        }
        fn stop(&self, job: &ProcessingAssignment, canceled: bool) -> Result<(), SourceError> {
            self.0.stop(job, canceled)
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let data_dir = DataDir::new(dir.path());
    register_recordings(&data_dir, 3, 5.0);
    let lease = Duration::from_millis(200);
    let humpback =
        Arc::new(Humpback::open_with(data_dir.clone(), humpback::app::Settings { lease, ..settings(0) }).unwrap());
    let model = humpback.models.find("fake").unwrap().info.clone();
    let resolved = humpback::processing::config::resolve(
        &humpback::processing::config::EncodingRequest { model: Some("fake".into()), ..Default::default() },
        &model,
    )
    .unwrap();
    for audio in 1..=3u64 {
        let audio_file_id = humpback::domain::ids::AudioFileId(audio);
        let checksum = humpback.writer.read_state(|s| s.audio_files[&audio_file_id].checksum_sha256.clone());
        humpback
            .writer
            .execute(humpback::domain::decide::Command::QueueProcessingJob {
                audio_file_id,
                encoding_signature: resolved.signature(&checksum),
                config: resolved.encoding_config(),
            })
            .unwrap();
    }
    let root = &humpback.storage;
    let stopping = AtomicBool::new(false);

    let miscounting = Miscounting(InProcessJobSource::register(humpback.clone(), "miscounting"));
    let job = miscounting.claim().unwrap().expect("a queued job");
    let end = run_assignment(&miscounting, root, &humpback.models, &mut None, &job, &stopping);
    assert_eq!(end, AttemptEnd::LeaseLost, "the refused completion ends the attempt");
    let failed =
        humpback.writer.read_state(|s| s.processing_jobs[&humpback::domain::ids::ProcessingJobId(job.job_id)].status);
    assert_eq!(failed, JobStatus::Failed);
    assert!(!dir.path().join(&job.staged_path).exists(), "the refused file is removed");

    let honest = InProcessJobSource::register(humpback.clone(), "honest");
    let job = honest.claim().unwrap().expect("a queued job");
    assert_eq!(run_assignment(&honest, root, &humpback.models, &mut None, &job, &stopping), AttemptEnd::Completed);
    let set_path = humpback.writer.read_state(|s| {
        let set = s.processing_jobs[&humpback::domain::ids::ProcessingJobId(job.job_id)].embedding_set_id.unwrap();
        s.embedding_sets[&set].parquet_path.clone()
    });
    assert!(humpback::artifacts::embeddings_parquet::inspect(&dir.path().join(set_path)).unwrap().is_complete());
    assert!(!dir.path().join(&job.staged_path).exists(), "moved into place");

    let silent = InProcessJobSource::register(humpback.clone(), "silent");
    let job = silent.claim().unwrap().expect("a queued job");
    let started = Instant::now();
    while humpback.remote_workers.sweep(&humpback.writer, root) == 0 {
        assert!(started.elapsed() < Duration::from_secs(10), "the lease never lapsed");
        std::thread::park_timeout(Duration::from_millis(10));
    }
    assert!(started.elapsed() >= lease / 2, "not before the lease could lapse");
    let status =
        humpback.writer.read_state(|s| s.processing_jobs[&humpback::domain::ids::ProcessingJobId(job.job_id)].status);
    assert_eq!(status, JobStatus::Queued, "abandoned and queued again");
    match silent.complete(&job, ProcessingCompletion { rows: Some(5), warnings: vec![] }) {
        Err(SourceError::LeaseLost(_)) => {}
        other => panic!("a completion from a lapsed lease must be refused, got {other:?}"),
    }
    assert_eq!(honest.renew(&job, None).err().map(|e| matches!(e, SourceError::LeaseLost(_))), Some(true));
}

/// Remote clustering at the coordinator: a clustering job is leased with the state it reads; a
/// completion whose staged assignments are not the file the worker describes is refused (the
/// job fails with the reason, the staged keys are removed); a good one is moved into place and
/// recorded, and its assignments reach the projection.
#[test]
fn the_coordinator_checks_staged_clustering_outputs() {
    use humpback::clustering_jobs::compute::compute_clustering;
    use humpback::domain::ids::ClusteringJobId;
    use humpback::workers::clustering::decode_inputs;
    use humpback::workers::coordinator::RegisterRequest;
    use humpback::workers::{Assignment, JobKind};

    let dir = tempfile::tempdir().unwrap();
    let data_dir = DataDir::new(dir.path());
    register_recordings(&data_dir, 2, 30.0);
    let humpback = std::sync::Arc::new(Humpback::open_with(data_dir, settings(0)).unwrap());
    let model = humpback.models.find("fake").unwrap().info.clone();
    let resolved = humpback::processing::config::resolve(
        &humpback::processing::config::EncodingRequest { model: Some("fake".into()), ..Default::default() },
        &model,
    )
    .unwrap();
    for audio in 1..=2u64 {
        let audio_file_id = humpback::domain::ids::AudioFileId(audio);
        let checksum = humpback.writer.read_state(|s| s.audio_files[&audio_file_id].checksum_sha256.clone());
        let config = resolved.encoding_config();
        let encoding_signature = resolved.signature(&checksum);
        let command =
            humpback::domain::decide::Command::QueueProcessingJob { audio_file_id, encoding_signature, config };
        humpback.writer.execute(command).unwrap();
    }
    let mut processing = humpback::processing::worker::ProcessingWorker::new(
        humpback.clone(),
        humpback::domain::ids::WorkerId("setup".into()),
        std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
    );
    while let humpback::processing::worker::StepOutcome::Ran { .. } = processing.step().unwrap() {}
    let sets: Vec<u64> = humpback.writer.read_state(|s| s.embedding_sets.keys().map(|id| id.0).collect());
    assert_eq!(sets.len(), 2);
    let queue = || {
        let body = json!({"embedding_set_ids": sets, "reduction": {"method": "pca", "n_components": 2},
                          "algorithm": {"method": "kmeans", "k": 2, "seed": 1}});
        let request = humpback
            .writer
            .read_state(|s| humpback::clustering_jobs::request::parse_request(&body, s))
            .unwrap_or_else(|_| panic!("a valid clustering request"));
        let envelopes = humpback
            .writer
            .execute(humpback::domain::decide::Command::QueueClusteringJob {
                embedding_set_ids: request.embedding_set_ids,
                parameters: request.stored.to_json_text(),
            })
            .unwrap();
        envelopes
            .iter()
            .find_map(|envelope| match &envelope.event {
                Event::ClusteringJobQueued(queued) => Some(queued.job_id.0),
                _ => None,
            })
            .unwrap()
    };
    let coordinator = &humpback.remote_workers;
    let request = RegisterRequest { name: "clusterer".into(), kinds: vec![JobKind::Clustering], threads: 1 };
    let worker = coordinator.register(&request);
    let storage = &humpback.storage;

    for honest in [false, true] {
        let job_id = queue();
        let Some(Assignment::Clustering(job)) = coordinator.claim(&humpback.writer, &worker, None).unwrap() else {
            panic!("a clustering assignment")
        };
        assert_eq!(job.job_id, job_id);
        let inputs = decode_inputs(&job.inputs).unwrap();
        assert_eq!(inputs.embedding_sets.len(), 2, "the job's sets travel with it");
        assert!(inputs.processing_jobs.is_empty(), "and nothing it does not read");
        let mut computed = compute_clustering(
            &inputs,
            storage,
            ClusteringJobId(job.job_id),
            (&job.staged_clusters_json, &job.staged_assignments),
            &mut |_, _| true,
        )
        .unwrap()
        .unwrap();
        if !honest {
            computed.assignments_file.row_count += 1;
        }
        let result =
            coordinator.complete_clustering(&humpback.writer, storage, &worker, job.job_id, job.attempt, computed);
        let status = humpback.writer.read_state(|s| s.clustering_jobs[&ClusteringJobId(job.job_id)].status);
        assert!(storage.size_of(&job.staged_assignments).unwrap().is_none(), "nothing staged is left");
        if honest {
            result.unwrap();
            assert_eq!(status, JobStatus::Complete);
            let (_, assignments) = humpback::clustering_jobs::worker::output_paths(ClusteringJobId(job.job_id));
            assert!(dir.path().join(assignments).is_file(), "moved into place");
        } else {
            assert!(matches!(result, Err(humpback::workers::CoordinatorError::ArtifactRefused(_))), "{result:?}");
            assert_eq!(status, JobStatus::Failed, "a refused completion fails the job");
        }
    }
    humpback.catch_up_projections().unwrap();
    let projected: i64 = humpback
        .projector
        .lock()
        .unwrap()
        .connection()
        .query_row("SELECT COUNT(*) FROM cluster_assignments", [], |row| row.get(0))
        .unwrap();
    let rows: u64 = humpback.writer.read_state(|s| s.embedding_sets.values().map(|set| set.row_count).sum());
    assert_eq!(projected as u64, rows, "the remote clustering's assignments are projected");
}

/// A shared filesystem: `humpback import DIR --in-place` through a server registers each
/// recording where it sits (`file:///…`, nothing copied into storage, the original untouched),
/// only below the server's import roots, and a worker process reads it from there.
#[test]
fn recordings_on_a_shared_path_are_registered_where_they_sit_and_processed_by_a_worker() {
    let dir = tempfile::tempdir().unwrap();
    let share = tempfile::tempdir().unwrap();
    let archive = share.path().join("archive").join("site-b");
    std::fs::create_dir_all(&archive).unwrap();
    let original = chirp_wav(20.0, 16_000, 3);
    std::fs::write(archive.join("deployment-1.wav"), &original).unwrap();
    let root = std::fs::canonicalize(share.path().join("archive")).unwrap();
    let (server, address) =
        start_server_with(dir.path(), "127.0.0.1:0", &["--import-root", root.to_str().unwrap()], &[]);

    let elsewhere = tempfile::tempdir().unwrap();
    let (status, refused) = call(
        "POST",
        &format!("{address}/api/audio/import"),
        Some(TOKEN),
        Some(json!({ "path": elsewhere.path(), "in_place": true })),
    );
    assert_eq!(status, 403, "outside the import roots: {refused}");
    let output = Command::new(env!("CARGO_BIN_EXE_humpback"))
        .args(["--data-dir", dir.path().to_str().unwrap(), "--bind", &address, "--token", TOKEN])
        .args(["import", "--in-place", "--json", root.to_str().unwrap()])
        .output()
        .expect("humpback import --in-place");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let summary: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(summary["added"].as_array().unwrap().len(), 1, "{summary}");
    let (_, recordings) = call("GET", &format!("{address}/api/audio"), Some(TOKEN), None);
    let recording = &recordings["items"].as_array().or(recordings.as_array()).unwrap()[0];
    let expected = format!("file://{}", root.join("site-b").join("deployment-1.wav").display());
    assert_eq!(recording["stored_path"], expected.as_str(), "{recording}");
    assert_eq!(recording["folder"], "archive/site-b");
    assert!(find_files(&dir.path().join("audio"), "").unwrap().is_empty(), "nothing is copied into storage");

    let jobs = queue_folder(&address, "archive/site-b");
    let mut worker = start_worker(&address, "shared-path", Some(TOKEN));
    assert!(first_line(&mut worker.0).starts_with("humpback worker w"));
    wait_until(&address, Duration::from_secs(60), "the worker to process the recording in place", || {
        job_status(&address, jobs[0]) == "complete"
    });
    assert!(terminate(&mut worker.0).success());
    let mut server = server;
    assert!(terminate(&mut server.0).success());
    assert_eq!(std::fs::read(archive.join("deployment-1.wav")).unwrap(), original, "the original is untouched");
}
