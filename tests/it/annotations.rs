//! Annotations through the API: the contract (201, 422 naming the item and field with nothing
//! recorded, change, remove, labels, history), Raven selection tables out and in (round trip,
//! a table as Raven Pro writes it, bad rows, duplicates, pandas), and annotations in clustering.

use serde_json::{json, Value};

use crate::clustering::wait_for_clustering;
use crate::helpers::{spawn_app, spawn_app_with, TestApp};
use crate::ingest_api::upload;
use crate::processing::{chirp_wav, post_json, settings, wait_for_job};
use humpback::domain::state::JobStatus;

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

fn read(mut response: ureq::http::Response<ureq::Body>) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.body_mut().read_json::<Value>().unwrap_or(Value::Null))
}

async fn send(method: &'static str, url: String, body: Option<Value>, user: Option<&'static str>) -> (u16, Value) {
    tokio::task::spawn_blocking(move || {
        let agent = agent();
        let response = match (method, body) {
            ("PATCH", Some(body)) => {
                let mut request = agent.patch(&url);
                if let Some(user) = user {
                    request = request.header("x-humpback-user", user);
                }
                request.send_json(body)
            }
            ("POST", Some(body)) => {
                let mut request = agent.post(&url);
                if let Some(user) = user {
                    request = request.header("x-humpback-user", user);
                }
                request.send_json(body)
            }
            ("DELETE", _) => agent.delete(&url).call(),
            _ => agent.get(&url).call(),
        };
        read(response.expect("request"))
    })
    .await
    .unwrap()
}

async fn get_text(url: String) -> (u16, String, String) {
    tokio::task::spawn_blocking(move || {
        let mut response = agent().get(&url).call().expect("request");
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_string();
        (response.status().as_u16(), content_type, response.body_mut().read_to_string().unwrap_or_default())
    })
    .await
    .unwrap()
}

/// `POST /api/annotations/import` with text fields and the table as `file`.
async fn import(app: &TestApp, file_name: &str, table: &[u8], fields: &[(&str, &str)]) -> (u16, Value) {
    let boundary = "humpback-annotations-boundary-91";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\ncontent-disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").as_bytes(),
        );
    }
    body.extend_from_slice(
        format!(
            "--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"{file_name}\"\r\n\
             content-type: text/plain\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(table);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let url = app.url("/api/annotations/import");
    tokio::task::spawn_blocking(move || {
        let response = agent()
            .post(&url)
            .header("content-type", &format!("multipart/form-data; boundary={boundary}"))
            .send(&body[..])
            .expect("import");
        read(response)
    })
    .await
    .unwrap()
}

/// Two recordings: `song.wav` (10 s at 16 kHz, folder maui/2024) and `grunt.wav` (6 s at 8 kHz).
async fn two_recordings(app: &TestApp) -> (u64, u64) {
    let (status, first) = upload(&app.base_url, "song.wav", chirp_wav(10.0, 16_000, 1), Some("maui/2024")).await;
    assert_eq!(status, 201, "{first}");
    let (status, second) = upload(&app.base_url, "grunt.wav", chirp_wav(6.0, 8_000, 2), None).await;
    assert_eq!(status, 201, "{second}");
    (first["id"].as_u64().unwrap(), second["id"].as_u64().unwrap())
}

async fn total(app: &TestApp) -> u64 {
    send("GET", app.url("/api/annotations"), None, None).await.1["total"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_annotation_api_adds_lists_changes_removes_and_counts_labels() {
    let app = spawn_app().await;
    let (song, grunt) = two_recordings(&app).await;
    // One object in: 201 with the annotation and its id.
    let (status, created) = send(
        "POST",
        app.url("/api/annotations"),
        Some(json!({"audio_file_id": song, "start_seconds": 1.0, "end_seconds": 2.5, "label": "  song unit A ",
                    "low_hz": 200.0, "high_hz": 2000.0, "note": "clear"})),
        Some("ana"),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let first_id = created["id"].as_u64().expect("an id");
    assert_eq!(created["label"], "song unit A");
    assert_eq!(created["kind"], "positive");
    assert_eq!(created["created_by"], "ana");
    assert_eq!(created["annotations"][0]["id"], first_id);
    // A bad item: 422 naming the index and field, and nothing from the request recorded.
    let (status, error) = send(
        "POST",
        app.url("/api/annotations"),
        Some(json!({"annotations": [
            {"audio_file_id": song, "start_seconds": 3.0, "end_seconds": 4.0, "label": "grunt"},
            {"audio_file_id": song, "start_seconds": 5.0, "end_seconds": 4.0, "label": "grunt"},
        ]})),
        None,
    )
    .await;
    assert_eq!(status, 422, "{error}");
    assert_eq!((error["index"].as_u64(), error["field"].as_str()), (Some(1), Some("end_seconds")), "{error}");
    assert!(error["error"].as_str().unwrap().contains("annotations[1].end_seconds"), "{error}");
    for (bad, field) in [
        (
            json!({"audio_file_id": grunt, "start_seconds": 1.0, "end_seconds": 2.0, "label": "x", "high_hz": 4500.0}),
            "high_hz",
        ),
        (json!({"audio_file_id": grunt, "start_seconds": 1.0, "end_seconds": 6.5, "label": "x"}), "end_seconds"),
        (json!({"audio_file_id": grunt, "start_seconds": 1.0, "end_seconds": 2.0, "label": " "}), "label"),
        (
            json!({"audio_file_id": grunt, "start_seconds": 1.0, "end_seconds": 2.0, "label": "x", "kind": "maybe"}),
            "kind",
        ),
        (json!({"audio_file_id": 99, "start_seconds": 1.0, "end_seconds": 2.0, "label": "x"}), "audio_file_id"),
        (json!({"audio_file_id": grunt, "start_seconds": "1", "end_seconds": 2.0, "label": "x"}), "start_seconds"),
    ] {
        let (status, error) =
            send("POST", app.url("/api/annotations"), Some(json!({"annotations": [bad]})), None).await;
        assert_eq!((status, error["field"].as_str()), (422, Some(field)), "{error}");
        assert_eq!(error["index"], 0);
    }
    assert_eq!(total(&app).await, 1, "nothing of a rejected request was recorded");
    // Many at once.
    let (status, created) = send(
        "POST",
        app.url("/api/annotations"),
        Some(json!({"annotations": [
            {"audio_file_id": song, "start_seconds": 3.0, "end_seconds": 4.0, "label": "grunt", "kind": "negative"},
            {"audio_file_id": grunt, "start_seconds": 0.5, "end_seconds": 1.0, "label": "grunt", "kind": "uncertain"},
            {"audio_file_id": grunt, "start_seconds": 2.0, "end_seconds": 3.0, "label": "song unit A"},
        ]})),
        None,
    )
    .await;
    assert_eq!((status, created["count"].as_u64()), (201, Some(3)), "{created}");
    let ids: Vec<u64> = created["annotations"].as_array().unwrap().iter().map(|a| a["id"].as_u64().unwrap()).collect();
    // Lists: by recording, label, kind, paged with the total.
    let (_, page) = send("GET", app.url(&format!("/api/annotations?audio_file_id={grunt}")), None, None).await;
    assert_eq!(page["total"], 2);
    let (_, page) = send("GET", app.url("/api/annotations?label=grunt&kind=negative"), None, None).await;
    assert_eq!((page["total"].as_u64(), page["items"][0]["id"].as_u64()), (Some(1), Some(ids[0])));
    let (_, page) = send("GET", app.url("/api/annotations?limit=2&offset=2"), None, None).await;
    assert_eq!((page["total"].as_u64(), page["items"].as_array().unwrap().len()), (Some(4), 2));
    let (status, _) = send("GET", app.url("/api/annotations?kind=sometimes"), None, None).await;
    assert_eq!(status, 400);
    // Labels with counts by kind.
    let (_, labels) = send("GET", app.url("/api/labels"), None, None).await;
    assert_eq!(
        labels,
        json!([
            {"label": "grunt", "total": 2, "positive": 0, "negative": 1, "uncertain": 1,
             "counts": {"positive": 0, "negative": 1, "uncertain": 1}},
            {"label": "song unit A", "total": 2, "positive": 2, "negative": 0, "uncertain": 0,
             "counts": {"positive": 2, "negative": 0, "uncertain": 0}},
        ])
    );
    // Change any field; a change breaking a rule is 422 and changes nothing.
    let url = app.url(&format!("/api/annotations/{first_id}"));
    let (status, changed) = send(
        "PATCH",
        url.clone(),
        Some(json!({"label": "song unit B", "kind": "uncertain", "low_hz": null})),
        Some("bo"),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!((changed["label"].as_str(), changed["kind"].as_str()), (Some("song unit B"), Some("uncertain")));
    assert_eq!((changed["low_hz"].clone(), changed["high_hz"].as_f64()), (Value::Null, Some(2000.0)));
    assert_eq!(changed["updated_by"], "bo");
    let (status, error) = send("PATCH", url.clone(), Some(json!({"end_seconds": 0.5})), None).await;
    assert_eq!((status, error["field"].as_str()), (422, Some("end_seconds")), "{error}");
    let (status, error) = send("PATCH", url.clone(), Some(json!({"colour": "red"})), None).await;
    assert_eq!(status, 422, "{error}");
    // Remove; the history stays.
    let (status, _) = send("DELETE", url.clone(), None, None).await;
    assert_eq!(status, 200);
    assert_eq!(send("GET", url.clone(), None, None).await.0, 404);
    assert_eq!(send("DELETE", url.clone(), None, None).await.0, 404);
    let (_, history) = send("GET", app.url(&format!("/api/annotations/{first_id}/history")), None, None).await;
    let actions: Vec<&str> = history.as_array().unwrap().iter().map(|h| h["action"].as_str().unwrap()).collect();
    assert_eq!(actions, vec!["removed", "changed", "added"]);
    let (_, history) = send("GET", app.url("/api/annotations/history?label=grunt"), None, None).await;
    assert_eq!(history.as_array().unwrap().len(), 2);
    // The log's own per-aggregate history finds them too.
    let (_, events) = send("GET", app.url(&format!("/api/events?aggregate=annotation:{first_id}")), None, None).await;
    let types: Vec<&str> = events["events"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, vec!["AnnotationsAdded", "AnnotationChanged", "AnnotationRemoved"], "{events}");
    app.stop().await;
}

/// The annotations of an app as comparable tuples (recording name, times, band, label, kind).
async fn annotation_tuples(app: &TestApp) -> Vec<(String, i64, i64, Option<i64>, Option<i64>, String, String)> {
    let (_, page) = send("GET", app.url("/api/annotations?limit=1000"), None, None).await;
    let mut tuples: Vec<_> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let micro = |value: &Value| (value.as_f64().unwrap() * 1e6).round() as i64;
            (
                a["filename"].as_str().unwrap().to_string(),
                micro(&a["start_seconds"]),
                micro(&a["end_seconds"]),
                a["low_hz"].as_f64().map(|hz| hz.round() as i64),
                a["high_hz"].as_f64().map(|hz| hz.round() as i64),
                a["label"].as_str().unwrap().to_string(),
                a["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    tuples.sort();
    tuples
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raven_table_exported_imports_into_a_fresh_library_as_the_same_annotations_and_twice_adds_nothing() {
    let source = spawn_app().await;
    let (song, grunt) = two_recordings(&source).await;
    let (status, created) = post_json(
        source.url("/api/annotations"),
        json!({"annotations": [
            {"audio_file_id": song, "start_seconds": 0.125, "end_seconds": 1.7, "label": "song unit A", "low_hz": 150.5, "high_hz": 2400.0},
            {"audio_file_id": song, "start_seconds": 8.2, "end_seconds": 10.0, "label": "song, \"unit\" B", "kind": "uncertain"},
            {"audio_file_id": grunt, "start_seconds": 0.3333333, "end_seconds": 5.9, "label": "grunt", "kind": "negative"},
        ]}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let (status, content_type, table) = get_text(source.url("/api/annotations/selections.txt")).await;
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/tab-separated-values"), "{content_type}");
    let header = table.lines().next().unwrap();
    assert_eq!(
        header,
        "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\tBegin File\t\
         File Offset (s)\tBegin Path\tAnnotation\tKind"
    );
    let third: Vec<&str> = table.lines().nth(3).unwrap().split('\t').collect();
    assert_eq!(third[7], "grunt.wav");
    assert_eq!(third[3], "10.3333333", "Begin Time runs on after the 10 s of song.wav");
    assert_eq!(third[8], "0.3333333", "File Offset is within the file");
    assert_eq!(third[6], "4000", "no band is 0 to Nyquist");
    let (_, _, song_table) = get_text(source.url(&format!("/api/audio/{song}/selections.txt"))).await;
    assert_eq!(song_table.lines().count(), 3);
    assert!(!song_table.lines().nth(1).unwrap().contains("maui"), "a one-file table has no file columns");
    let expected = annotation_tuples(&source).await;

    // A fresh library with the same recordings (uploaded in the other order: ids differ).
    let fresh = spawn_app().await;
    upload(&fresh.base_url, "grunt.wav", chirp_wav(6.0, 8_000, 2), None).await;
    upload(&fresh.base_url, "song.wav", chirp_wav(10.0, 16_000, 1), Some("maui/2024")).await;
    let (status, preview) = import(&fresh, "selections.txt", table.as_bytes(), &[("preview", "true")]).await;
    assert_eq!(status, 200, "{preview}");
    assert_eq!(preview["annotations"].as_array().unwrap().len(), 3, "{preview}");
    assert_eq!(total(&fresh).await, 0, "a preview records nothing");
    let (status, imported) = import(&fresh, "selections.txt", table.as_bytes(), &[]).await;
    assert_eq!((status, imported["count"].as_u64()), (201, Some(3)), "{imported}");
    assert_eq!(imported["annotations"][0]["source"], "import:selections.txt");
    assert_eq!(annotation_tuples(&fresh).await, expected);
    // The same rows again: recognised, not doubled.
    let (status, again) = import(&fresh, "selections.txt", table.as_bytes(), &[]).await;
    assert_eq!((status, again["count"].as_u64(), again["duplicates"].as_u64()), (200, Some(0), Some(3)), "{again}");
    assert_eq!(total(&fresh).await, 3);
    // The CSV form round-trips as well (into the source library: all already there).
    let (status, content_type, csv) = get_text(source.url("/api/annotations.csv")).await;
    assert!(status == 200 && content_type.starts_with("text/csv"), "{content_type}");
    let (status, again) = import(&source, "a.csv", csv.as_bytes(), &[("format", "csv")]).await;
    assert_eq!((status, again["duplicates"].as_u64()), (200, Some(3)), "{again}");
    // A one-recording table imports to the recording named.
    let fresh_song =
        send("GET", fresh.url("/api/audio?search=song"), None, None).await.1["items"][0]["id"].as_u64().unwrap();
    let (status, again) =
        import(&fresh, "s.txt", song_table.as_bytes(), &[("audio_file_id", &fresh_song.to_string())]).await;
    assert_eq!((status, again["duplicates"].as_u64()), (200, Some(2)), "{again}");
    source.stop().await;
    fresh.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_written_the_way_raven_pro_writes_it_imports() {
    let app = spawn_app().await;
    let (song, _) = two_recordings(&app).await;
    // Raven Pro on Windows: CRLF, a byte-order mark, its own extra columns, a Windows path.
    let table = "\u{feff}Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\t\
                 Delta Time (s)\tBegin Path\tFile Offset (s)\tBegin File\tCall Type\tAnnotation\r\n\
                 1\tSpectrogram 1\t1\t1.250000000\t2.750000000\t120.000\t1800.000\t1.5000\t\
                 C:\\Users\\ana\\maui\\2024\\song.wav\t1.250000000\tsong.wav\tupsweep\tsong unit A\r\n\
                 2\tSpectrogram 1\t1\t4.000000000\t4.500000000\t0.000\t8000.000\t0.5000\t\
                 C:\\Users\\ana\\maui\\2024\\song.wav\t4.000000000\tsong.wav\tgrunt\t\r\n";
    let (status, imported) = import(&app, "HUMP_0600.Table.1.selections.txt", table.as_bytes(), &[]).await;
    assert_eq!(status, 422, "row 2 has no Annotation: {imported}");
    assert_eq!(imported["bad_rows"], json!([{"row": 2, "reason": "no label (the \"Annotation\" cell is empty)"}]));
    assert_eq!(total(&app).await, 0, "a table with a bad row records nothing");
    // Labels from another column, with every row good.
    let (status, imported) =
        import(&app, "HUMP_0600.Table.1.selections.txt", table.as_bytes(), &[("label_column", "Call Type")]).await;
    assert_eq!((status, imported["count"].as_u64()), (201, Some(2)), "{imported}");
    let first = &imported["annotations"][0];
    assert_eq!(first["audio_file_id"], song);
    assert_eq!((first["start_seconds"].as_f64(), first["end_seconds"].as_f64()), (Some(1.25), Some(2.75)));
    assert_eq!((first["low_hz"].as_f64(), first["high_hz"].as_f64()), (Some(120.0), Some(1800.0)));
    assert_eq!((first["label"].as_str(), first["kind"].as_str()), (Some("upsweep"), Some("positive")));
    let second = &imported["annotations"][1];
    assert_eq!((second["low_hz"].clone(), second["high_hz"].clone()), (Value::Null, Value::Null), "the full band");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rows_are_listed_with_their_reasons_and_only_skip_bad_rows_records_the_good_ones() {
    let app = spawn_app().await;
    two_recordings(&app).await;
    let table = "Begin Time (s),End Time (s),Begin File,Annotation,Kind\n\
                 1,2,song.wav,song,positive\n\
                 1,2,missing.wav,song,\n\
                 3,x,song.wav,song,\n\
                 5,4,song.wav,song,\n\
                 1,2,grunt.wav,,\n\
                 1,2,grunt.wav,grunt,perhaps\n\
                 1,2,song.wav,song,positive\n";
    let (status, preview) = import(&app, "t.csv", table.as_bytes(), &[("format", "csv"), ("preview", "true")]).await;
    assert_eq!(status, 200, "{preview}");
    let rows: Vec<u64> = preview["bad_rows"].as_array().unwrap().iter().map(|b| b["row"].as_u64().unwrap()).collect();
    assert_eq!(rows, vec![2, 3, 4, 5, 6], "{preview}");
    assert!(preview["bad_rows"][0]["reason"].as_str().unwrap().contains("missing.wav"));
    assert!(preview["bad_rows"][2]["reason"].as_str().unwrap().starts_with("end_seconds"));
    assert_eq!((preview["annotations"].as_array().unwrap().len(), preview["duplicates"].as_u64()), (1, Some(1)));
    let (status, refused) = import(&app, "t.csv", table.as_bytes(), &[("format", "csv")]).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["bad_rows"].as_array().unwrap().len(), 5);
    assert_eq!(total(&app).await, 0);
    let (status, recorded) =
        import(&app, "t.csv", table.as_bytes(), &[("format", "csv"), ("skip_bad_rows", "true")]).await;
    assert_eq!((status, recorded["count"].as_u64(), recorded["duplicates"].as_u64()), (201, Some(1), Some(1)));
    assert_eq!(total(&app).await, 1);
    // Tables that cannot be read at all.
    let (status, error) = import(&app, "t.txt", b"Begin Time (s)\tEnd Time (s)\tAnnotation\n1\t2\tx\n", &[]).await;
    assert_eq!(status, 422, "no column to match recordings: {error}");
    let (status, error) =
        import(&app, "t.txt", b"Begin Time (s)\tEnd Time (s)\n1\t2\n", &[("audio_file_id", "1")]).await;
    assert!(status == 422 && error["error"].as_str().unwrap().contains("Annotation"), "{error}");
    let (status, _) =
        import(&app, "t.txt", b"Begin Time (s)\tEnd Time (s)\tAnnotation\n", &[("audio_file_id", "9")]).await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pandas_reads_the_exported_selection_table() {
    let app = spawn_app().await;
    let (song, grunt) = two_recordings(&app).await;
    post_json(
        app.url("/api/annotations"),
        json!({"annotations": [
            {"audio_file_id": song, "start_seconds": 1.0, "end_seconds": 2.0, "label": "song, \"A\""},
            {"audio_file_id": grunt, "start_seconds": 1.5, "end_seconds": 2.0, "label": "grunt", "low_hz": 50.0, "high_hz": 900.0},
        ]}),
    )
    .await;
    let (_, _, table) = get_text(app.url("/api/annotations/selections.txt")).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("selections.txt");
    std::fs::write(&path, &table).unwrap();
    let script = "import sys, json\n\
                  try:\n    import pandas\nexcept ImportError:\n    sys.exit(3)\n\
                  frame = pandas.read_csv(sys.argv[1], sep='\\t')\n\
                  print(json.dumps({'columns': list(frame.columns), 'rows': len(frame),\n\
                  'annotations': list(frame['Annotation']), 'begin': list(frame['Begin Time (s)']),\n\
                  'files': list(frame['Begin File'])}))\n";
    let output = match std::process::Command::new("python3").arg("-c").arg(script).arg(&path).output() {
        Ok(output) => output,
        Err(error) => {
            eprintln!("SKIPPED: python3 is not available ({error}); the pandas check did not run");
            app.stop().await;
            return;
        }
    };
    if output.status.code() == Some(3) {
        eprintln!("SKIPPED: pandas is not installed; the pandas check did not run");
        app.stop().await;
        return;
    }
    assert!(output.status.success(), "pandas could not read the table: {}", String::from_utf8_lossy(&output.stderr));
    let read: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(read["rows"], 2);
    assert_eq!(read["annotations"], json!(["song, \"A\"", "grunt"]));
    assert_eq!(read["begin"], json!([1.0, 11.5]));
    assert_eq!(read["files"], json!(["song.wav", "grunt.wav"]));
    assert_eq!(read["columns"][0], "Selection");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clusters_can_be_annotated_and_compared_with_annotation_labels() {
    let app = spawn_app_with(tempfile::tempdir().unwrap(), settings(1)).await;
    let mut sets = Vec::new();
    let mut recordings = Vec::new();
    for seed in 0..2u32 {
        let (_, audio) =
            upload(&app.base_url, &format!("r{seed}.wav"), chirp_wav(20.0, 16_000, seed), Some("site")).await;
        let (_, job) =
            post_json(app.url("/api/processing-jobs"), json!({"audio_file_id": audio["id"], "hop_seconds": 2.5})).await;
        let job_id = job["id"].as_u64().unwrap();
        assert_eq!(wait_for_job(&app, job_id, &[JobStatus::Complete, JobStatus::Failed]).await, JobStatus::Complete);
        let (_, job) = send("GET", app.url(&format!("/api/processing-jobs/{job_id}")), None, None).await;
        sets.push(job["embedding_set_id"].as_u64().unwrap());
        recordings.push(audio["id"].as_u64().unwrap());
    }
    // Label the first half of each recording "early" and the second half "late".
    let annotations: Vec<Value> = recordings
        .iter()
        .flat_map(|id| {
            [
                json!({"audio_file_id": id, "start_seconds": 0.0, "end_seconds": 9.0, "label": "early"}),
                json!({"audio_file_id": id, "start_seconds": 11.0, "end_seconds": 20.0, "label": "late"}),
            ]
        })
        .collect();
    let (status, _) = post_json(app.url("/api/annotations"), json!({"annotations": annotations})).await;
    assert_eq!(status, 201);
    let (status, job) = post_json(
        app.url("/api/clustering-jobs"),
        json!({"embedding_set_ids": sets, "reduction": {"method": "pca", "n_components": 2},
               "algorithm": {"method": "kmeans", "k": 2, "seed": 3}, "reference_field": "annotation_label"}),
    )
    .await;
    assert_eq!(status, 201, "{job}");
    let job_id = job["id"].as_u64().unwrap();
    assert_eq!(wait_for_clustering(&app, job_id).await, JobStatus::Complete);
    let (_, job) = send("GET", app.url(&format!("/api/clustering-jobs/{job_id}")), None, None).await;
    let reference = &job["metrics"]["reference"];
    assert!(reference["adjusted_rand_index"].is_number(), "{}", job["metrics"]);
    let table = reference.to_string();
    assert!(table.contains("early") && table.contains("late"), "the contingency table names the labels: {table}");
    // Restricted to windows overlapping "early": only those are clustered.
    let (status, restricted) = post_json(
        app.url("/api/clustering-jobs"),
        json!({"embedding_set_ids": sets, "reduction": {"method": "none"},
               "algorithm": {"method": "kmeans", "k": 2, "seed": 3},
               "filters": {"annotation_labels": ["early"]}}),
    )
    .await;
    assert_eq!(status, 201, "{restricted}");
    let restricted_id = restricted["id"].as_u64().unwrap();
    assert_eq!(wait_for_clustering(&app, restricted_id).await, JobStatus::Complete);
    let (_, restricted) = send("GET", app.url(&format!("/api/clustering-jobs/{restricted_id}")), None, None).await;
    let (_, all) = send("GET", app.url(&format!("/api/clustering-jobs/{job_id}")), None, None).await;
    let (restricted_rows, all_rows) =
        (restricted["metrics"]["rows"].as_u64().unwrap(), all["metrics"]["rows"].as_u64().unwrap());
    assert!(restricted_rows > 0 && restricted_rows < all_rows, "{restricted_rows} of {all_rows}");
    let (status, error) = post_json(
        app.url("/api/clustering-jobs"),
        json!({"embedding_set_ids": sets, "filters": {"annotation_labels": ["never used"]}}),
    )
    .await;
    assert_eq!(status, 404, "{error}");
    // Annotate a whole cluster in one command: one annotation per member window.
    let (_, clusters) = send("GET", app.url(&format!("/api/clustering-jobs/{job_id}/clusters")), None, None).await;
    let cluster = &clusters[0];
    let before = total(&app).await;
    let (status, annotated) = post_json(
        app.url(&format!("/api/clusters/{}/annotate", cluster["id"])),
        json!({"label": "cluster call", "kind": "uncertain"}),
    )
    .await;
    assert_eq!(status, 201, "{annotated}");
    assert_eq!(annotated["count"], cluster["size"], "{annotated}");
    assert_eq!(total(&app).await, before + cluster["size"].as_u64().unwrap());
    let (_, page) = send("GET", app.url("/api/annotations?label=cluster%20call&limit=1"), None, None).await;
    assert_eq!(page["items"][0]["source"], format!("cluster:{}", cluster["id"]));
    assert_eq!(page["items"][0]["kind"], "uncertain");
    // The same again adds nothing.
    let (status, again) = post_json(
        app.url(&format!("/api/clusters/{}/annotate", cluster["id"])),
        json!({"label": "cluster call", "kind": "uncertain"}),
    )
    .await;
    assert_eq!((status, again["count"].as_u64()), (200, Some(0)), "{again}");
    // A list of windows.
    let (status, windows) = post_json(
        app.url("/api/annotations/windows"),
        json!({"windows": [{"embedding_set_id": sets[0], "row_index": 0}, {"embedding_set_id": sets[1], "row_index": 3}],
               "label": "picked"}),
    )
    .await;
    assert_eq!((status, windows["count"].as_u64()), (201, Some(2)), "{windows}");
    let (_, picked) = send("GET", app.url("/api/annotations?label=picked"), None, None).await;
    assert_eq!(picked["items"][1]["start_seconds"], 7.5, "row 3 at a 2.5 s hop");
    let (status, error) = post_json(
        app.url("/api/annotations/windows"),
        json!({"windows": [{"embedding_set_id": sets[0], "row_index": 9999}], "label": "picked"}),
    )
    .await;
    assert_eq!((status, error["field"].as_str()), (422, Some("row_index")), "{error}");
    // Selection tables of the clustering: every window with its cluster.
    let (status, _, table) = get_text(app.url(&format!("/api/clustering-jobs/{job_id}/selections.txt"))).await;
    assert_eq!(status, 200);
    assert_eq!(table.lines().count() as u64, all_rows + 1);
    assert!(table.lines().next().unwrap().ends_with("Begin Path\tCluster\tScore"), "{table}");
    let (_, _, one) =
        get_text(app.url(&format!("/api/audio/{}/selections.txt?clustering_job_id={job_id}", recordings[0]))).await;
    assert_eq!(one.lines().count() as u64, all_rows / 2 + 1);
    app.stop().await;
}

/// A form POST through the router (no socket): the status, the `Location` header and the body.
async fn post_form(app: &TestApp, uri: &str, form: &str) -> (u16, String, String) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let (_stop, stopping) = tokio::sync::watch::channel(false);
    let router = humpback::http::routes::router(app.humpback.clone(), stopping);
    let request = axum::http::Request::post(uri)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(axum::body::Body::from(form.to_string()))
        .unwrap();
    let response = router.oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let location =
        response.headers().get("location").and_then(|value| value.to_str().ok()).unwrap_or_default().to_string();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, location, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recording_page_lists_adds_and_removes_annotations_without_javascript() {
    let app = spawn_app().await;
    let (song, grunt) = two_recordings(&app).await;
    let (status, location, _) = post_form(
        &app,
        &format!("/audio/{song}/annotations"),
        "start_seconds=1.5&end_seconds=3&label=%3Cb%3Esong%3C%2Fb%3E&kind=negative&low_hz=&high_hz=900&note=",
    )
    .await;
    assert_eq!(status, 303);
    assert!(location.starts_with(&format!("/audio/{song}?notice=")), "{location}");
    let (_, _, page) = get_text(app.url(&format!("/audio/{song}"))).await;
    assert!(page.contains("&lt;b&gt;song&lt;/b&gt;") && !page.contains("<b>song</b>"), "escaped");
    assert!(page.contains("1.500–3.000") && page.contains("negative") && page.contains("0–900 Hz"));
    assert!(page.contains(">web<"), "who: the web form");
    // A span past the end: back to the page with the reason, nothing recorded.
    let (status, location, _) =
        post_form(&app, &format!("/audio/{song}/annotations"), "start_seconds=9&end_seconds=11&label=x").await;
    assert_eq!(status, 303);
    assert!(location.contains("notice_kind=error") && location.contains("end_seconds"), "{location}");
    assert_eq!(total(&app).await, 1);
    let (status, location, _) =
        post_form(&app, &format!("/audio/{song}/annotations"), "start_seconds=one&end_seconds=2&label=x").await;
    assert!(status == 303 && location.contains("start_seconds"), "{location}");
    // Remove it (but not through another recording's page).
    let id = send("GET", app.url("/api/annotations"), None, None).await.1["items"][0]["id"].as_u64().unwrap();
    let (status, _, _) = post_form(&app, &format!("/audio/{grunt}/annotations/{id}/delete"), "").await;
    assert_eq!(status, 404);
    let (status, _, _) = post_form(&app, &format!("/audio/{song}/annotations/{id}/delete"), "").await;
    assert_eq!(status, 303);
    assert_eq!(total(&app).await, 0);
    let (status, _, _) = post_form(&app, "/audio/99/annotations", "start_seconds=1&end_seconds=2&label=x").await;
    assert_eq!(status, 404);
    app.stop().await;
}

fn cli(data_dir: &std::path::Path, bind: &str, args: &[&str]) -> (bool, String, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_humpback"))
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--bind")
        .arg(bind)
        .args(args)
        .env_remove("HUMPBACK_DATA_DIR")
        .env_remove("HUMPBACK_BIND")
        .output()
        .expect("run humpback");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_annotations_commands_export_and_import_on_stopped_data_directories() {
    use crate::helpers::{annotate, register, seed_data_dir};
    use humpback::domain::events::AnnotationKind;
    let source = tempfile::tempdir().unwrap();
    seed_data_dir(
        source.path(),
        vec![
            register(1),
            register(2),
            annotate(1, 1.0, 2.5, "song", AnnotationKind::Positive),
            annotate(2, 3.0, 4.0, "grunt", AnnotationKind::Negative),
        ],
    );
    let table = source.path().join("out.txt");
    let no_server = "127.0.0.1:1";
    let (ok, _, stderr) =
        cli(source.path(), no_server, &["annotations", "export", "--output", table.to_str().unwrap()]);
    assert!(ok, "{stderr}");
    let text = std::fs::read_to_string(&table).unwrap();
    assert_eq!(text.lines().count(), 3, "{text}");
    let (ok, stdout, stderr) =
        cli(source.path(), no_server, &["annotations", "export", "--label", "grunt", "--format", "csv"]);
    assert!(ok && stdout.lines().count() == 2 && stdout.contains(",grunt,negative"), "{stdout}{stderr}");
    // Into another library with the same recordings; then again: nothing new.
    let target = tempfile::tempdir().unwrap();
    seed_data_dir(target.path(), vec![register(2), register(1)]);
    let (ok, stdout, stderr) =
        cli(target.path(), no_server, &["annotations", "import", table.to_str().unwrap(), "--preview"]);
    assert!(ok && stdout.contains("2 annotations would be recorded"), "{stdout}{stderr}");
    let (ok, stdout, stderr) = cli(target.path(), no_server, &["annotations", "import", table.to_str().unwrap()]);
    assert!(ok && stdout.contains("2 annotations recorded, 0 already there"), "{stdout}{stderr}");
    let (ok, stdout, stderr) =
        cli(target.path(), no_server, &["annotations", "import", table.to_str().unwrap(), "--json"]);
    assert!(ok, "{stderr}");
    let answer: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!((answer["count"].as_u64(), answer["duplicates"].as_u64()), (Some(0), Some(2)));
    // A bad table: non-zero exit, the rows named.
    let bad = target.path().join("bad.txt");
    std::fs::write(&bad, "Begin Time (s)\tEnd Time (s)\tBegin File\tAnnotation\n1\t2\tnobody.wav\tsong\n").unwrap();
    let (ok, _, stderr) = cli(target.path(), no_server, &["annotations", "import", bad.to_str().unwrap()]);
    assert!(!ok && stderr.contains("row 1") && stderr.contains("nobody.wav"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_annotations_commands_go_through_the_server_that_holds_the_data_directory() {
    let app = spawn_app().await;
    let (song, _) = two_recordings(&app).await;
    post_json(
        app.url("/api/annotations"),
        json!({"audio_file_id": song, "start_seconds": 1.0, "end_seconds": 2.0, "label": "song"}),
    )
    .await;
    let (dir, bind) = (app.data_dir.path().to_path_buf(), app.address.to_string());
    let table = dir.join("through-server.txt");
    let (ok, _, stderr) = tokio::task::spawn_blocking({
        let (dir, bind, table) = (dir.clone(), bind.clone(), table.clone());
        move || cli(&dir, &bind, &["annotations", "export", "-o", table.to_str().unwrap()])
    })
    .await
    .unwrap();
    assert!(ok && stderr.contains("going through the server"), "{stderr}");
    let (ok, stdout, stderr) =
        tokio::task::spawn_blocking(move || cli(&dir, &bind, &["annotations", "import", table.to_str().unwrap()]))
            .await
            .unwrap();
    assert!(ok && stdout.contains("0 annotations recorded, 1 already there"), "{stdout}{stderr}");
    app.stop().await;
}
