//! The `humpback events` and `humpback projections` commands, against a stopped data
//! directory and through a running server.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use humpback::domain::ids::EventSeq;
use humpback::log::{EventLog, SledEventLog};
use serde_json::Value;

use crate::helpers::{register, sample_session, seed_data_dir, spawn_app};

fn humpback(data_dir: &Path, bind: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_humpback"))
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--bind")
        .arg(bind)
        .args(args)
        .env_remove("HUMPBACK_DATA_DIR")
        .env_remove("HUMPBACK_BIND")
        .output()
        .expect("run humpback")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "humpback failed: {}\n{}",
        String::from_utf8_lossy(&output.stderr),
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines().map(|line| serde_json::from_str(line).expect("json line")).collect()
}

/// Nothing listens on port 1, so "no server" is certain.
const NO_SERVER: &str = "127.0.0.1:1";

#[test]
fn the_events_commands_read_a_stopped_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    seed_data_dir(dir.path(), sample_session());
    let head = SledEventLog::open(&dir.path().join("events")).unwrap().head().0;

    let all = json_lines(&stdout(&humpback(dir.path(), NO_SERVER, &["events", "list", "--json", "--limit", "0"])));
    assert_eq!(all.len() as u64, head);
    assert_eq!(all[0]["type"], "ModelRegistered", "a data directory starts by registering its models");
    assert_eq!(all[1]["type"], "AudioFileRegistered");

    let failed = stdout(&humpback(dir.path(), NO_SERVER, &["events", "list", "--type", "ProcessingJobFailed"]));
    assert_eq!(failed.lines().count(), 1);
    assert!(failed.contains("processing job 2 failed: decode failed"), "{failed}");

    let about_job =
        json_lines(&stdout(&humpback(dir.path(), NO_SERVER, &["events", "list", "--json", "--processing-job", "2"])));
    assert!(about_job.iter().all(|e| e["aggregates"].as_array().unwrap().contains(&Value::from("processing_job:2"))));
    assert_eq!(about_job.len(), 7, "queued, claimed, failed, retried, claimed, set promoted, completed");

    let range = json_lines(&stdout(&humpback(
        dir.path(),
        NO_SERVER,
        &["events", "list", "--json", "--from-seq", "3", "--to-seq", "4", "--since", "1h"],
    )));
    assert_eq!(range.iter().map(|e| e["seq"].as_u64().unwrap()).collect::<Vec<_>>(), vec![3, 4]);

    let shown: Value =
        serde_json::from_str(&stdout(&humpback(dir.path(), NO_SERVER, &["events", "show", "5", "--json"]))).unwrap();
    assert_eq!(shown["type"], "AudioMetadataEdited");
    assert_eq!(shown["data"]["visual_observations"]["behaviour"], "surface-active");
    let shown_text = stdout(&humpback(dir.path(), NO_SERVER, &["events", "show", "5"]));
    assert!(shown_text.contains("concerns     audio_file:1"), "{shown_text}");

    let tail = stdout(&humpback(dir.path(), NO_SERVER, &["events", "tail", "-n", "2"]));
    let tail_seqs: Vec<&str> = tail.lines().map(|line| line.split_whitespace().next().unwrap()).collect();
    assert_eq!(tail_seqs, vec![(head - 1).to_string(), head.to_string()]);

    let stats: Value =
        serde_json::from_str(&stdout(&humpback(dir.path(), NO_SERVER, &["events", "stats", "--json"]))).unwrap();
    assert_eq!(stats["total"], head);
    assert_eq!(stats["by_type"]["AudioMetadataEdited"], 2);

    let verify = stdout(&humpback(dir.path(), NO_SERVER, &["events", "verify"]));
    assert!(verify.starts_with(&format!("ok: {head} events")), "{verify}");

    let export_path = dir.path().join("export.jsonl");
    let export_arg = export_path.to_str().unwrap();
    stdout(&humpback(dir.path(), NO_SERVER, &["events", "export", "--jsonl", "--output", export_arg]));
    let exported = json_lines(&std::fs::read_to_string(&export_path).unwrap());
    assert_eq!(exported, all, "export writes every event, as list --json does");

    let status: Value =
        serde_json::from_str(&stdout(&humpback(dir.path(), NO_SERVER, &["projections", "status", "--json"]))).unwrap();
    assert_eq!(status["head"], head);
    assert!(status["projections"].as_array().unwrap().iter().all(|p| p["lag"] == 0 && p["last_seq"] == head));

    let rebuilt = stdout(&humpback(dir.path(), NO_SERVER, &["projections", "rebuild", "clusters"]));
    assert!(rebuilt.starts_with(&format!("rebuilt clusters from {head} events")), "{rebuilt}");
    let unknown = humpback(dir.path(), NO_SERVER, &["projections", "rebuild", "whales"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown projection \"whales\""));
}

#[test]
fn a_missing_or_unknown_event_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let output = humpback(dir.path(), NO_SERVER, &["events", "list"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("there is no event log"), "{output:?}");
    assert!(!dir.path().join("events").exists(), "inspecting must not create a log");

    seed_data_dir(dir.path(), vec![register(1)]);
    let output = humpback(dir.path(), NO_SERVER, &["events", "show", "7"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("event 7 does not exist"), "{output:?}");
    let output = humpback(dir.path(), NO_SERVER, &["events", "list", "--type", "Nope"]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown event type \"Nope\""), "{output:?}");
}

#[test]
fn verify_exits_non_zero_at_the_first_bad_record() {
    let dir = tempfile::tempdir().unwrap();
    seed_data_dir(dir.path(), sample_session());
    {
        let database = sled::open(dir.path().join("events")).unwrap();
        let events = database.open_tree("events").unwrap();
        events.insert(EventSeq(3).to_key(), vec![1u8, 0xff, 0xff]).unwrap();
        database.flush().unwrap();
    }
    let output = humpback(dir.path(), NO_SERVER, &["events", "verify"]);
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.starts_with("bad record at event 3:"), "{text}");
    assert!(text.contains("2 good events before it"), "{text}");
}

#[test]
fn a_locked_log_with_no_server_gives_a_message_saying_exactly_that() {
    let dir = tempfile::tempdir().unwrap();
    seed_data_dir(dir.path(), vec![register(1)]);
    let _held = SledEventLog::open(&dir.path().join("events")).unwrap();
    let output = humpback(dir.path(), NO_SERVER, &["events", "list"]);
    assert_eq!(output.status.code(), Some(1));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("is locked by another process"), "{message}");
    assert!(message.contains("no humpback server answered at http://127.0.0.1:1"), "{message}");
    assert!(message.contains("--server"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_commands_go_through_the_server_that_holds_the_log() {
    let app = spawn_app().await;
    for command in sample_session() {
        app.humpback
            .execute(crate::helpers::with_assignments_file(app.data_dir.path(), command))
            .await
            .expect("command accepted");
    }
    let head = app.humpback.log.head().0;
    let dir = app.data_dir.path().to_path_buf();
    let bind = app.address.to_string();

    let listed = tokio::task::spawn_blocking({
        let (dir, bind) = (dir.clone(), bind.clone());
        move || stdout(&humpback(&dir, &bind, &["events", "list", "--json", "--limit", "0"]))
    })
    .await
    .unwrap();
    assert_eq!(json_lines(&listed).len() as u64, head);

    let explicit = tokio::task::spawn_blocking({
        let (dir, server) = (dir.clone(), app.base_url.clone());
        move || stdout(&humpback(&dir, NO_SERVER, &["events", "--server", &server, "stats", "--json"]))
    })
    .await
    .unwrap();
    assert_eq!(serde_json::from_str::<Value>(&explicit).unwrap()["total"], head);

    let rebuilt = tokio::task::spawn_blocking({
        let (dir, bind) = (dir.clone(), bind.clone());
        move || stdout(&humpback(&dir, &bind, &["projections", "rebuild"]))
    })
    .await
    .unwrap();
    assert!(rebuilt.contains(&format!("from {head} events")), "{rebuilt}");

    // Follow the log: a new event shows up in `tail -f` without polling on our side.
    let mut child = Command::new(env!("CARGO_BIN_EXE_humpback"))
        .args(["--data-dir", dir.to_str().unwrap(), "--bind", &bind, "events", "tail", "-f", "-n", "1", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first: Value = tokio::task::block_in_place(|| serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap());
    assert_eq!(first["seq"], head, "tail -n 1 starts with the newest event");
    app.humpback.execute(register(99)).await.expect("register");
    let followed: Value =
        tokio::task::block_in_place(|| serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap());
    assert_eq!(followed["seq"], head + 1);
    assert_eq!(followed["type"], "AudioFileRegistered");
    child.kill().unwrap();
    child.wait().unwrap();
    app.stop().await;
}
