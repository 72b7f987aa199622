//! Shared object storage (issue 14) against a real S3-compatible server: `moto_server` from PyPI
//! `moto[server]` (CI installs it). A humpback server whose storage is a bucket, with no
//! workers of its own, registers recordings that sit in another bucket where they are
//! (`humpback import s3://archive/2019/`) and uploads others into its own bucket; three real
//! `humpback worker` processes read the audio from the buckets and stage their Parquet in the
//! bucket; one is killed with SIGKILL mid-job and its job completes on another. At the end: one
//! embedding set per signature, each a whole Parquet file in the bucket, no temporary keys, the
//! server never copied an embedding set (it checks footers with ranged reads), the log
//! verifies, the projections equal a rebuild, and `humpback artifacts orphans` finds and removes
//! a stray staged key in the bucket.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use humpback::config::DataDir;
use humpback::domain::events::Event;
use humpback::domain::state::JobStatus;
use humpback::log::{EventLog, SledEventLog};
use humpback::projections::{dump, Projector};
use serde_json::{json, Value};

use crate::processing::chirp_wav;
use crate::remote_workers::{
    call, first_line, job_status, kill_a_worker_mid_job, queue_folder, start_server_with, start_worker_with, terminate,
    wait_until, Running, LEASE_SECONDS, TOKEN,
};

/// A moto S3 server on a free loopback port, stopped on drop.
struct MotoServer {
    _process: Running,
    endpoint: String,
}

/// Starts `moto_server`; `None` (said loudly) when it is not installed outside CI. In CI
/// (`CI` set) a missing moto fails the test: CI must have it.
fn start_moto() -> Option<MotoServer> {
    let found = Command::new("moto_server").arg("--help").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !found.is_ok_and(|status| status.success()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "moto_server is not installed: pip install -r scripts/requirements-ci.txt (moto[server])"
        );
        eprintln!("SKIPPED object storage test: moto_server not installed (pip install 'moto[server]')");
        return None;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let process = Running(child);
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(60), "moto_server did not start listening");
        std::thread::park_timeout(Duration::from_millis(100));
    }
    Some(MotoServer { _process: process, endpoint: format!("http://127.0.0.1:{port}") })
}

impl MotoServer {
    /// The environment humpback's processes read their S3 settings from.
    fn environment(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
    }

    /// A plain (unsigned) S3 request, as moto accepts them: independent of humpback's client.
    fn request(&self, method: &str, path: &str, body: Option<&[u8]>) -> (u16, Vec<u8>) {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let url = format!("{}/{path}", self.endpoint);
        let response = match (method, body) {
            ("PUT", Some(body)) => agent.put(&url).send(body),
            ("PUT", None) => agent.put(&url).send_empty(),
            ("DELETE", _) => agent.delete(&url).call(),
            // Objects humpback wrote are private to its (test) credentials: an authorization
            // header naming them is what moto checks (it does not verify signatures).
            _ => agent
                .get(&url)
                .header(
                    "authorization",
                    "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00",
                )
                .call(),
        };
        let mut response = response.expect("S3 request");
        let status = response.status().as_u16();
        (status, response.body_mut().read_to_vec().unwrap_or_default())
    }

    /// Keys (with sizes) below `prefix` in `bucket`.
    fn list(&self, bucket: &str, prefix: &str) -> Vec<(String, u64)> {
        let (status, body) = self.request("GET", &format!("{bucket}?list-type=2&prefix={prefix}"), None);
        assert_eq!(status, 200, "listing {bucket}/{prefix}");
        let text = String::from_utf8_lossy(&body).into_owned();
        assert!(!text.contains("<IsTruncated>true"), "more keys than one page");
        text.split("<Contents>")
            .skip(1)
            .map(|entry| {
                let between = |open: &str, close: &str| {
                    entry.split(open).nth(1).and_then(|rest| rest.split(close).next()).unwrap_or_default().to_string()
                };
                (between("<Key>", "</Key>"), between("<Size>", "</Size>").parse().unwrap_or(0))
            })
            .collect()
    }
}

fn humpback_command(dir: &Path, address: &str, environment: &[(String, String)], arguments: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_humpback"))
        .args(["--data-dir", dir.to_str().unwrap(), "--bind", address, "--token", TOKEN])
        .args(arguments)
        .envs(environment.iter().map(|(key, value)| (key.as_str(), value.as_str())))
        .env("RUST_LOG", "warn")
        .output()
        .expect("run humpback");
    assert!(
        output.status.success(),
        "humpback {arguments:?}: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|_| json!(String::from_utf8_lossy(&output.stdout)))
}

#[test]
fn workers_share_a_bucket_recordings_are_registered_where_they_sit_and_a_killed_workers_job_completes() {
    let Some(moto) = start_moto() else { return };
    let environment = moto.environment();
    for bucket in ["lab", "archive"] {
        assert_eq!(moto.request("PUT", bucket, None).0, 200, "create bucket {bucket}");
    }
    // An archive that already sits in a bucket: three recordings, a note and a broken file.
    for seed in 0..3u32 {
        let key = format!("archive/2019/site-a/rec-{seed}.wav");
        assert_eq!(moto.request("PUT", &key, Some(&chirp_wav(240.0, 16_000, seed))).0, 200);
    }
    moto.request("PUT", "archive/2019/notes.txt", Some(b"deployment notes"));
    moto.request("PUT", "archive/2019/site-a/broken.wav", Some(b"RIFF this is not audio"));
    let archive_before = moto.list("archive", "");
    // And two recordings on this machine, uploaded into the lab's bucket.
    let local = tempfile::tempdir().unwrap();
    let uploads = local.path().join("uploads");
    std::fs::create_dir_all(&uploads).unwrap();
    for seed in 10..12u32 {
        std::fs::write(uploads.join(format!("up-{seed}.wav")), chirp_wav(240.0, 16_000, seed)).unwrap();
    }

    let dir = tempfile::tempdir().unwrap();
    let (server, address) = start_server_with(
        dir.path(),
        "127.0.0.1:0",
        &["--storage", "s3://lab/humpback", "--import-root", "s3://archive/2019"],
        &environment,
    );
    // Where storage is, as a worker learns it.
    let (status, registered) = call(
        "POST",
        &format!("{address}/api/workers/register"),
        Some(TOKEN),
        Some(json!({ "name": "probe", "kinds": ["processing"] })),
    );
    assert_eq!(status, 200, "{registered}");
    assert_eq!(registered["storage"], "s3://lab/humpback");
    call(
        "POST",
        &format!("{address}/api/workers/{}/leave", registered["worker_id"].as_str().unwrap()),
        Some(TOKEN),
        None,
    );

    // Registered where they sit, through the server; a bucket outside the import roots is refused.
    let imported = humpback_command(dir.path(), &address, &[], &["import", "s3://archive/2019/", "--json"]);
    assert_eq!(imported["added"].as_array().unwrap().len(), 3, "{imported}");
    let rejected = imported["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 1, "{imported}");
    assert!(rejected[0]["path"].as_str().unwrap().ends_with("broken.wav"), "{imported}");
    let (status, refused) =
        call("POST", &format!("{address}/api/audio/import"), Some(TOKEN), Some(json!({ "path": "s3://lab/humpback" })));
    assert_eq!(status, 403, "{refused}");
    let uploaded = humpback_command(dir.path(), &address, &[], &["import", uploads.to_str().unwrap(), "--json"]);
    assert_eq!(uploaded["added"].as_array().unwrap().len(), 2, "{uploaded}");
    assert_eq!(moto.list("archive", ""), archive_before, "the archive is read, never written");
    let stored_audio = moto.list("lab", "humpback/audio/raw/");
    assert_eq!(stored_audio.len(), 2, "uploads are kept in the bucket: {stored_audio:?}");

    // Three workers; kill one in the middle of a job.
    let mut workers: BTreeMap<String, Running> = BTreeMap::new();
    for index in 0..3 {
        let name = format!("bucket-worker-{index}");
        let mut worker = start_worker_with(&address, &name, Some(TOKEN), &environment, &[]);
        let line = first_line(&mut worker.0);
        assert!(line.starts_with("humpback worker w"), "{line}");
        workers.insert(name, worker);
    }
    let jobs: Vec<u64> = ["2019/site-a", "uploads"].iter().flat_map(|folder| queue_folder(&address, folder)).collect();
    assert_eq!(jobs.len(), 5);
    let (victim_job, killed_at) = kill_a_worker_mid_job(&address, &mut workers, Duration::from_secs(120));
    wait_until(&address, Duration::from_secs(180), "the killed worker's job to complete elsewhere", || {
        job_status(&address, victim_job) == "complete"
    });
    let recovered_after = killed_at.elapsed();
    wait_until(&address, Duration::from_secs(240), "every job to complete", || {
        jobs.iter().all(|job| job_status(&address, *job) == "complete")
    });

    // Clustering in a remote worker: it gets the state the job reads with the claim, reads the
    // sets from the bucket and stages its outputs there; the server checks and moves them.
    let mut clusterer = start_worker_with(&address, "clusterer", Some(TOKEN), &environment, &["--kinds", "clustering"]);
    assert!(first_line(&mut clusterer.0).starts_with("humpback worker w"));
    let (_, all_sets) = call("GET", &format!("{address}/api/embedding-sets"), Some(TOKEN), None);
    let set_ids: Vec<u64> = all_sets.as_array().unwrap().iter().map(|set| set["id"].as_u64().unwrap()).collect();
    let rows: u64 = all_sets.as_array().unwrap().iter().map(|set| set["row_count"].as_u64().unwrap()).sum();
    let (status, clustering) = call(
        "POST",
        &format!("{address}/api/clustering-jobs"),
        Some(TOKEN),
        Some(json!({"embedding_set_ids": set_ids, "reduction": {"method": "pca", "n_components": 4},
                    "algorithm": {"method": "kmeans", "k": 3, "seed": 7}, "reference_field": "folder"})),
    );
    assert_eq!(status, 201, "{clustering}");
    let clustering_id = clustering["id"].as_u64().unwrap();
    let clustering_status = || {
        call("GET", &format!("{address}/api/clustering-jobs/{clustering_id}"), Some(TOKEN), None).1["status"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    wait_until(&address, Duration::from_secs(180), "the remote clustering to complete", || {
        clustering_status() == "complete"
    });
    let (_, clusters) =
        call("GET", &format!("{address}/api/clustering-jobs/{clustering_id}/clusters"), Some(TOKEN), None);
    let clusters = clusters.as_array().unwrap().clone();
    assert_eq!(clusters.iter().map(|cluster| cluster["size"].as_u64().unwrap()).sum::<u64>(), rows);
    assert_eq!(clusters.len(), 3, "k-means with k = 3");
    let label = clusters[0]["label"].as_i64().unwrap();
    let (_, members) = call(
        "GET",
        &format!("{address}/api/clustering-jobs/{clustering_id}/clusters/{label}/members?limit=2"),
        Some(TOKEN),
        None,
    );
    assert_eq!(members["total"], clusters[0]["size"], "the projection read the assignments from the bucket");
    let outputs = moto.list("lab", &format!("humpback/clusters/{clustering_id}/"));
    let names: Vec<&str> = outputs.iter().map(|(key, _)| key.rsplit('/').next().unwrap()).collect();
    assert_eq!(names, vec!["assignments.parquet", "clusters.json"], "{outputs:?}");
    assert!(terminate(&mut clusterer.0).success());
    for (_, mut worker) in std::mem::take(&mut workers) {
        assert!(terminate(&mut worker.0).success(), "a worker stops cleanly on SIGTERM");
    }
    let mut server = server;
    assert!(terminate(&mut server.0).success(), "the server stops cleanly");
    assert!(
        recovered_after < Duration::from_secs_f64(LEASE_SECONDS) + Duration::from_secs(90),
        "the killed worker's job completed {recovered_after:?} after the kill"
    );

    // The bucket: one whole Parquet file per job, nothing staged or temporary left.
    assert_eq!(moto.list("lab", "humpback/tmp/"), Vec::new(), "no temporary or staged keys are left");
    let sets = moto.list("lab", "humpback/embeddings/");
    assert_eq!(sets.len(), 5, "{sets:?}");
    for (key, size) in &sets {
        assert!(key.ends_with(".parquet") && !key.contains(".tmp.") && *size > 0, "{key}");
        let escaped: String = key
            .bytes()
            .map(|byte| match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                    (byte as char).to_string()
                }
                other => format!("%{other:02X}"),
            })
            .collect();
        let (status, bytes) = moto.request("GET", &format!("lab/{escaped}"), None);
        assert_eq!(status, 200, "{key}: {}", String::from_utf8_lossy(&bytes));
        let copy = local.path().join("set.parquet");
        std::fs::write(&copy, &bytes).unwrap();
        let summary = humpback::artifacts::embeddings_parquet::inspect(&copy).unwrap();
        assert!(summary.is_complete(), "{key} is whole");
        if let Some(table) = crate::processing::read_with_pyarrow(&copy) {
            assert!(table.to_string().contains("embedding"), "pyarrow reads {key}");
        }
    }
    // Nothing large passed through the server: it checked footers with ranged reads.
    let server_copies = dir.path().join("cache").join("storage").join("embeddings");
    assert!(!server_copies.exists(), "the server copied embedding sets to {}", server_copies.display());
    assert!(
        !dir.path().join("tmp").join("workers").exists()
            || std::fs::read_dir(dir.path().join("tmp").join("workers")).unwrap().next().is_none()
    );

    // The log and the projections, read in-process (without opening the bucket).
    let data_dir = DataDir::new(dir.path());
    let log = Arc::new(SledEventLog::open(&data_dir.events_dir()).unwrap());
    assert!(humpback::log::verify(log.as_ref()).first_problem.is_none(), "the log verifies");
    let writer = humpback::writer::Writer::open(log.clone()).unwrap();
    writer.read_state(|state| {
        let mut per_signature: BTreeMap<_, usize> = BTreeMap::new();
        for set in state.embedding_sets.values() {
            *per_signature.entry(set.encoding_signature.clone()).or_default() += 1;
        }
        assert_eq!(per_signature.len(), 5);
        assert!(per_signature.values().all(|count| *count == 1), "one set per signature");
        assert!(state.processing_jobs.values().all(|job| job.status == JobStatus::Complete));
        let paths: Vec<&str> = state.audio_files.values().map(|file| file.stored_path.as_str()).collect();
        assert_eq!(
            paths.iter().filter(|path| path.starts_with("s3://archive/2019/site-a/rec-")).count(),
            3,
            "{paths:?}"
        );
        assert_eq!(paths.iter().filter(|path| path.starts_with("audio/raw/sha256/")).count(), 2, "{paths:?}");
    });
    let events: Vec<Event> =
        log.read_after(humpback::domain::ids::EventSeq(0), 1_000_000).unwrap().into_iter().map(|e| e.event).collect();
    assert!(
        events.iter().any(|event| matches!(event, Event::ProcessingJobAbandoned(e) if e.job_id.0 == victim_job)),
        "the killed worker's attempt is recorded as abandoned"
    );
    assert!(
        events.iter().any(|event| matches!(event, Event::ClusteringJobClaimed(e) if e.worker.0.starts_with('w'))),
        "the clustering was claimed by a remote worker"
    );
    // The clustering's assignments as the server fetched them (its cache holds the bucket's keys).
    let no_artifacts = humpback::storage::Storage::folder(dir.path().join("cache").join("storage"));
    let incremental =
        dump(Projector::open_with_storage(&data_dir.projections_db(), no_artifacts.clone()).unwrap().connection())
            .unwrap();
    let fresh = tempfile::tempdir().unwrap();
    let mut rebuilt = Projector::open_with_storage(&fresh.path().join("p.sqlite3"), no_artifacts).unwrap();
    rebuilt.catch_up(log.as_ref()).unwrap();
    assert_eq!(incremental, dump(rebuilt.connection()).unwrap(), "projections equal a rebuild");
    drop(writer);
    drop(log);

    // A staged key no lease holds (a worker whose server went away) is an orphan in the bucket.
    moto.request("PUT", "lab/humpback/tmp/workers/processing-99-1.parquet", Some(b"late"));
    let orphans = humpback_command(dir.path(), &address, &environment, &["artifacts", "orphans", "--json"]);
    assert_eq!(orphans["orphans"], json!(["tmp/workers/processing-99-1.parquet"]), "{orphans}");
    humpback_command(dir.path(), &address, &environment, &["artifacts", "orphans", "--remove", "--json"]);
    assert_eq!(moto.list("lab", "humpback/tmp/"), Vec::new(), "removed from the bucket");
}
