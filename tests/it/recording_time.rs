//! Recording start times end to end: found at upload (bext over the name), edited with history,
//! read again for a folder at an offset, listed, laid on a time line; windows' absolute starts
//! in the Parquet (read by pyarrow and pandas), in cluster members and the CSV; occurrence
//! per cluster; clustering by time of day.

use humpback::domain::state::JobStatus;
use humpback::recording_time::bext::wav_with_bext;
use serde_json::{json, Value};

use crate::clustering::wait_for_clustering;
use crate::helpers::{spawn_app_with, TestApp};
use crate::ingest_api::upload;
use crate::processing::{chirp_wav, post_json, read_with_pyarrow, settings, wait_for_job};

async fn send(method: &'static str, url: String, body: Value, user: Option<&'static str>) -> (u16, Value) {
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let request = match method {
            "PUT" => agent.put(&url),
            _ => agent.post(&url),
        };
        let request = match user {
            Some(user) => request.header("x-humpback-user", user),
            None => request,
        };
        let mut response = request.send_json(body).expect("request");
        (response.status().as_u16(), response.body_mut().read_json::<Value>().unwrap_or(Value::Null))
    })
    .await
    .unwrap()
}

async fn get_with_headers(url: String) -> (u16, Option<String>, Value) {
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
        let mut response = agent.get(&url).call().expect("request");
        let header = response
            .headers()
            .get("x-humpback-windows-without-start")
            .and_then(|value| value.to_str().ok())
            .map(String::from);
        (response.status().as_u16(), header, response.body_mut().read_json::<Value>().unwrap_or(Value::Null))
    })
    .await
    .unwrap()
}

fn samples(seconds: f64, rate: u32) -> Vec<i16> {
    (0..(seconds * f64::from(rate)) as usize).map(|n| ((n as f64 * 0.3).sin() * 8000.0) as i16).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn start_times_are_found_at_upload_edited_with_history_and_read_again_for_a_folder_at_an_offset() {
    let app = spawn_app_with(tempfile::tempdir().unwrap(), settings(0)).await;
    let (status, named) =
        upload(&app.base_url, "AM01_20240701_063000.WAV", chirp_wav(2.0, 8000, 1), Some("site-a")).await;
    assert_eq!(status, 201, "{named}");
    assert_eq!(named["recorded_at"], "2024-07-01T06:30:00Z");
    assert_eq!(named["recorded_at_source"], "file_name");
    // The bext stamp wins over the name.
    let bwf = wav_with_bext("2024-07-01", "06:40:00", &samples(2.0, 8000), 8000);
    let (status, stamped) = upload(&app.base_url, "20230101_000000.wav", bwf, Some("site-a/deep")).await;
    assert_eq!(status, 201, "{stamped}");
    assert_eq!(stamped["recorded_at"], "2024-07-01T06:40:00Z");
    assert_eq!(stamped["recorded_at_source"], "bext");
    // A serial number alone is no time.
    let (_, serial) = upload(&app.base_url, "123456789012.wav", chirp_wav(1.0, 8000, 2), Some("site-b")).await;
    assert_eq!(serial["recorded_at"], Value::Null);
    assert_eq!(serial["recorded_at_source"], Value::Null);
    let serial_id = serial["id"].as_u64().unwrap();

    // Edit by hand, with who did it; bad input is a 422 that changes nothing.
    let url = app.url(&format!("/api/audio/{serial_id}/recorded-at"));
    let (status, edited) =
        send("PUT", url.clone(), json!({"recorded_at": "2024-07-01T16:50:00+10:00"}), Some("ana@example.org")).await;
    assert_eq!(status, 200, "{edited}");
    assert_eq!(edited["recorded_at"], "2024-07-01T06:50:00Z");
    assert_eq!(edited["recorded_at_source"], "user");
    assert_eq!(edited["history"][0]["set_by"], "ana@example.org");
    for bad in [
        json!({"recorded_at": "2024-07-01T06:50:00"}),
        json!({"recorded_at": 5}),
        json!({}),
        json!({"recorded_at": "2024-02-30T00:00:00Z"}),
    ] {
        let (status, body) = send("PUT", url.clone(), bad.clone(), None).await;
        assert_eq!(status, 422, "{bad}: {body}");
        assert!(body["error"].is_string());
    }
    let (_, detail) = crate::api_get(&app.url(&format!("/api/audio/{serial_id}"))).await;
    assert_eq!(detail["recorded_at"], "2024-07-01T06:50:00Z");
    let (status, missing) =
        send("PUT", app.url("/api/audio/999/recorded-at"), json!({"recorded_at": null}), None).await;
    assert_eq!(status, 404, "{missing}");

    // Sort and filter the list by start time.
    let (_, sorted) = crate::api_get(&app.url("/api/audio?sort=recorded_at&order=desc")).await;
    let order: Vec<u64> = sorted["items"].as_array().unwrap().iter().map(|f| f["id"].as_u64().unwrap()).collect();
    assert_eq!(order, vec![serial_id, stamped["id"].as_u64().unwrap(), named["id"].as_u64().unwrap()]);
    let (_, from) =
        crate::api_get(&app.url("/api/audio?recorded_from=2024-07-01T06:35:00Z&recorded_to=2024-07-01")).await;
    assert_eq!(from["total"], 2, "{from}");
    let (status, _) = crate::api_get(&app.url("/api/audio?recorded_from=yesterday")).await;
    assert_eq!(status, 400);

    // These files were local time at UTC+10: read the folder again.
    let (status, summary) =
        send("POST", app.url("/api/audio/recorded-at"), json!({"folder": "site-a", "utc_offset": "+10:00"}), None)
            .await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["updated"].as_array().unwrap().len(), 2, "{summary}");
    let (_, named_again) = crate::api_get(&app.url(&format!("/api/audio/{}", named["id"]))).await;
    assert_eq!(named_again["recorded_at"], "2024-06-30T20:30:00Z");
    let (_, stamped_again) = crate::api_get(&app.url(&format!("/api/audio/{}", stamped["id"]))).await;
    assert_eq!(stamped_again["recorded_at"], "2024-06-30T20:40:00Z");
    // Reading again with the same offset changes nothing; a bad offset or folder says why.
    let (_, again) =
        send("POST", app.url("/api/audio/recorded-at"), json!({"folder": "site-a", "utc_offset": "+10:00"}), None)
            .await;
    assert_eq!((again["updated"].as_array().unwrap().len(), again["unchanged"].as_u64()), (0, Some(2)));
    let (status, _) =
        send("POST", app.url("/api/audio/recorded-at"), json!({"folder": "site-a", "utc_offset": "+25:00"}), None)
            .await;
    assert_eq!(status, 422);
    let (status, _) = send("POST", app.url("/api/audio/recorded-at"), json!({"folder": "nowhere"}), None).await;
    assert_eq!(status, 404);
    let (status, unknown) = send("POST", app.url("/api/audio/recorded-at"), json!({"folder": "site-b"}), None).await;
    assert_eq!(status, 200);
    assert_eq!(unknown["without_time"][0]["audio_file_id"], serial_id, "a name without a time is left as it was");

    // The time line: two files 10 minutes apart with 2 s each, one gap, no overlap.
    let (_, timeline) = crate::api_get(&app.url("/api/audio/timeline?folder=site-a")).await;
    assert_eq!(timeline["recordings"].as_array().unwrap().len(), 2, "{timeline}");
    assert_eq!(timeline["gaps"].as_array().unwrap().len(), 1);
    assert_eq!(timeline["gaps"][0]["seconds"], 598.0);
    assert_eq!(timeline["overlaps"].as_array().unwrap().len(), 0);
    // A clock problem: the stamped file set 1.5 s into the named one overlaps it; 1 s would be
    // within the tolerance of whole-second names.
    let stamped_url = app.url(&format!("/api/audio/{}/recorded-at", stamped["id"]));
    send("PUT", stamped_url.clone(), json!({"recorded_at": "2024-06-30T20:30:01Z"}), None).await;
    let (_, timeline) = crate::api_get(&app.url("/api/audio/timeline?folder=site-a")).await;
    assert_eq!(timeline["overlaps"].as_array().unwrap().len(), 0, "{timeline}");
    send("PUT", stamped_url, json!({"recorded_at": "2024-06-30T20:30:00.500Z"}), None).await;
    let (_, timeline) = crate::api_get(&app.url("/api/audio/timeline?folder=site-a")).await;
    assert_eq!(timeline["overlaps"].as_array().unwrap().len(), 1, "{timeline}");
    assert_eq!(timeline["overlaps"][0]["seconds"], 1.5);
    assert_eq!(timeline["gaps"].as_array().unwrap().len(), 0);
    send("PUT", url.clone(), json!({"recorded_at": null}), None).await;
    let (_, detail) = crate::api_get(&app.url(&format!("/api/audio/{serial_id}/recorded-at"))).await;
    assert_eq!(detail["history"].as_array().unwrap().len(), 2, "set by hand, then cleared: {detail}");
    assert_eq!(
        (detail["recorded_at"].clone(), detail["history"][0]["recorded_at"].clone()),
        (Value::Null, Value::Null)
    );
    app.stop().await;
}

/// Uploads, processes with the fake model (1 s windows) and returns the embedding set ids.
async fn processed(app: &TestApp, files: &[(&str, Vec<u8>)]) -> Vec<u64> {
    let mut sets = Vec::new();
    for (name, bytes) in files {
        let (status, audio) = upload(&app.base_url, name, bytes.clone(), Some("reef")).await;
        assert_eq!(status, 201, "{audio}");
        let (_, job) =
            post_json(app.url("/api/processing-jobs"), json!({"audio_file_id": audio["id"], "model": "fake"})).await;
        let job_id = job["id"].as_u64().unwrap();
        assert_eq!(wait_for_job(app, job_id, &[JobStatus::Complete, JobStatus::Failed]).await, JobStatus::Complete);
        let (_, job) = crate::api_get(&app.url(&format!("/api/processing-jobs/{job_id}"))).await;
        sets.push(job["embedding_set_id"].as_u64().unwrap());
    }
    sets
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn windows_carry_absolute_starts_into_parquet_clusters_and_occurrence() {
    let app = spawn_app_with(tempfile::tempdir().unwrap(), settings(1)).await;
    let sets = processed(
        &app,
        &[
            ("5783.240701063000.wav", chirp_wav(3.0, 16_000, 1)),
            ("5783.240701213000.wav", chirp_wav(3.0, 16_000, 2)),
            ("5783.240702063000.wav", chirp_wav(2.0, 16_000, 3)),
            ("unknown.wav", chirp_wav(2.0, 16_000, 4)),
        ],
    )
    .await;
    // The Parquet of a recording with a start: start_time_utc = start + start_seconds.
    let (_, set) = crate::api_get(&app.url(&format!("/api/embedding-sets/{}", sets[0]))).await;
    let parquet = app.data_dir.path().join(set["parquet_path"].as_str().unwrap());
    let (_, unknown_set) = crate::api_get(&app.url(&format!("/api/embedding-sets/{}", sets[3]))).await;
    let unknown_parquet = app.data_dir.path().join(unknown_set["parquet_path"].as_str().unwrap());
    if let Some(read) = read_with_pyarrow(&parquet) {
        assert_eq!(read["start_time_utc_dtype"], "datetime64[ns, UTC]", "{read}");
        assert_eq!(
            read["start_time_utc"],
            json!(["2024-07-01T06:30:00+00:00", "2024-07-01T06:30:01+00:00", "2024-07-01T06:30:02+00:00"])
        );
        let unknown = read_with_pyarrow(&unknown_parquet).unwrap();
        assert_eq!(unknown["start_time_utc"], json!([null, null]));
    }

    let (status, job) = post_json(
        app.url("/api/clustering-jobs"),
        json!({"embedding_set_ids": sets, "reduction": {"method": "none"}, "algorithm": {"method": "kmeans", "k": 2, "seed": 3}}),
    )
    .await;
    assert_eq!(status, 201, "{job}");
    let job_id = job["id"].as_u64().unwrap();
    assert_eq!(wait_for_clustering(&app, job_id).await, JobStatus::Complete);
    // Occurrence sums to the clustered windows with a known start (3 + 3 + 2), and says how
    // many it left out (the 2 windows of the file without a start).
    for (bin, offset) in [("day", ""), ("hour", "&utc_offset=%2B10:00"), ("hour_of_day", "&utc_offset=-03:30")] {
        let (status, unknown, counts) =
            get_with_headers(app.url(&format!("/api/clustering-jobs/{job_id}/occurrence?bin={bin}{offset}"))).await;
        assert_eq!(status, 200, "{counts}");
        assert_eq!(unknown.as_deref(), Some("2"));
        let total: u64 = counts.as_array().unwrap().iter().map(|c| c["count"].as_u64().unwrap()).sum();
        assert_eq!(total, 8, "{bin}: {counts}");
        assert!(counts.as_array().unwrap().iter().all(|c| c["label"].is_i64() && !c["bin"].is_null()));
    }
    let (_, _, by_day) =
        get_with_headers(app.url(&format!("/api/clustering-jobs/{job_id}/occurrence?bin=day&utc_offset=%2B10:00")))
            .await;
    let days: std::collections::BTreeSet<&str> =
        by_day.as_array().unwrap().iter().map(|c| c["bin"].as_str().unwrap()).collect();
    assert_eq!(days.into_iter().collect::<Vec<_>>(), vec!["2024-07-01", "2024-07-02"], "21:30Z is the next day at +10");
    let (status, _, bad) =
        get_with_headers(app.url(&format!("/api/clustering-jobs/{job_id}/occurrence?bin=week"))).await;
    assert_eq!(status, 400, "{bad}");
    let (status, _, _) = get_with_headers(app.url("/api/clustering-jobs/99/occurrence")).await;
    assert_eq!(status, 404);

    // The assignments Parquet carries the same starts for pandas users.
    let assignments = app.data_dir.path().join(format!("clusters/{job_id}/assignments.parquet"));
    let script = "import sys\ntry:\n    import pandas\nexcept ImportError:\n    sys.exit(3)\n\
                  frame = pandas.read_parquet(sys.argv[1])\nprint(frame['start_time_utc'].dtype, frame['start_time_utc'].notna().sum())";
    if let Ok(output) = std::process::Command::new("python3").arg("-c").arg(script).arg(&assignments).output() {
        if output.status.code() != Some(3) {
            assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "datetime64[ns, UTC] 8", "{output:?}");
        }
    }

    // The job page draws both heatmaps, at a chosen offset, without JavaScript.
    let (status, _, html) = page("GET", app.url(&format!("/clustering/{job_id}?utc_offset=%2B10:00")), vec![]).await;
    assert_eq!(status, 200);
    assert!(html.contains("Windows per cluster per day (UTC+10:00)"), "{html}");
    assert!(html.contains("Windows per cluster per hour of day (UTC+10:00)"));
    assert!(html.contains("2 clustered windows come from recordings whose start is unknown"));
    let (status, _, html) = page("GET", app.url(&format!("/clustering/{job_id}?utc_offset=later")), vec![]).await;
    assert_eq!(status, 200, "a bad offset is explained, the page still shown");
    assert!(html.contains("not a UTC offset") && html.contains("per day (UTC)"));

    // Members and the CSV carry each window's absolute start.
    let (_, clusters) = crate::api_get(&app.url(&format!("/api/clustering-jobs/{job_id}/clusters"))).await;
    let mut starts = Vec::new();
    for cluster in clusters.as_array().unwrap() {
        let (_, members) =
            crate::api_get(&app.url(&format!("/api/clusters/{}/members?limit=100", cluster["id"]))).await;
        starts.extend(members["items"].as_array().unwrap().iter().map(|m| m["start_time_utc"].clone()));
        assert!(cluster["metadata_summary"]["time"]["hour_of_day_utc"].is_object(), "{cluster}");
    }
    assert_eq!(starts.iter().filter(|s| s.is_null()).count(), 2);
    assert!(starts.contains(&json!("2024-07-01T21:30:02Z")));
    let csv = tokio::task::spawn_blocking({
        let url = app.url(&format!("/api/clustering-jobs/{job_id}/assignments.csv"));
        move || ureq::get(&url).call().unwrap().body_mut().read_to_string().unwrap()
    })
    .await
    .unwrap();
    assert!(csv.lines().next().unwrap().ends_with(",start_time_utc"));
    assert!(csv.contains(",2024-07-02T06:30:01Z\n"), "{csv}");

    // Clustering by time of day: 20:00-04:59 UTC keeps only the 21:30Z file's windows.
    let (status, night) = post_json(
        app.url("/api/clustering-jobs"),
        json!({"embedding_set_ids": sets, "filters": {"hours": {"from": 20, "to": 4}},
               "reduction": {"method": "none"}, "algorithm": {"method": "kmeans", "k": 1, "seed": 3}}),
    )
    .await;
    assert_eq!(status, 201, "{night}");
    let night_id = night["id"].as_u64().unwrap();
    assert_eq!(night["embedding_set_ids"].as_array().map(Vec::len), Some(3), "the set without a start is left out");
    assert_eq!(wait_for_clustering(&app, night_id).await, JobStatus::Complete);
    let (_, night_job) = crate::api_get(&app.url(&format!("/api/clustering-jobs/{night_id}"))).await;
    assert_eq!(night_job["metrics"]["rows"], 3, "only the 21:30Z file's windows: {night_job}");
    let (status, dated) = post_json(
        app.url("/api/clustering-jobs"),
        json!({"embedding_set_ids": sets, "filters": {"date_from": "2024-07-02", "date_to": "2024-07-02"},
               "reduction": {"method": "none"}, "algorithm": {"method": "kmeans", "k": 1, "seed": 3}}),
    )
    .await;
    assert_eq!(status, 201, "{dated}");
    assert_eq!(wait_for_clustering(&app, dated["id"].as_u64().unwrap()).await, JobStatus::Complete);
    let (_, dated_job) = crate::api_get(&app.url(&format!("/api/clustering-jobs/{}", dated["id"]))).await;
    assert_eq!(dated_job["metrics"]["rows"], 2);
    for bad in [
        json!({"hours": {"from": 20, "to": 24}}),
        json!({"date_from": "July"}),
        json!({"utc_offset": "+30:00", "hours": {"from": 1, "to": 2}}),
    ] {
        let (status, body) = post_json(
            app.url("/api/clustering-jobs"),
            json!({"embedding_set_ids": sets, "filters": bad, "algorithm": {"method": "kmeans", "k": 1, "seed": 3}}),
        )
        .await;
        assert_eq!(status, 422, "{bad}: {body}");
    }
    app.stop().await;
}

/// A request without following redirects: (status, Location, body).
async fn page(method: &'static str, url: String, form: Vec<(&'static str, String)>) -> (u16, String, String) {
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent =
            ureq::Agent::config_builder().http_status_as_error(false).max_redirects(0).build().into();
        let mut response = match method {
            "GET" => agent.get(&url).call(),
            _ => agent.post(&url).send_form(form.iter().map(|(key, value)| (*key, value.as_str()))),
        }
        .expect("request");
        let location =
            response.headers().get("location").and_then(|value| value.to_str().ok()).unwrap_or_default().to_string();
        (response.status().as_u16(), location, response.body_mut().read_to_string().unwrap_or_default())
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_pages_show_sort_filter_edit_and_lay_out_start_times_without_javascript_and_escape_names() {
    let app = spawn_app_with(tempfile::tempdir().unwrap(), settings(0)).await;
    let hostile = "<script>alert(1)</script>_20240701_063000.wav";
    let (_, first) = upload(&app.base_url, hostile, chirp_wav(2.0, 8000, 1), Some("<b>site")).await;
    assert_eq!(first["recorded_at"], "2024-07-01T06:30:00Z");
    let (_, second) = upload(&app.base_url, "20240701_064000.wav", chirp_wav(2.0, 8000, 2), Some("<b>site")).await;
    let (first_id, second_id) = (first["id"].as_u64().unwrap(), second["id"].as_u64().unwrap());

    let (status, _, html) = page("GET", app.url("/audio?sort=recorded_at&recorded_from=2024-07-01"), vec![]).await;
    assert_eq!(status, 200);
    assert!(html.contains("Started (UTC)") && html.contains("2024-07-01 06:30:00"), "{html}");
    assert!(html.contains(r#"name="recorded_from" value="2024-07-01""#));
    assert!(html.contains(r#"href="/audio/timeline""#));
    assert!(!html.contains("<script>alert") && !html.contains("<b>site"));

    let (status, _, html) = page("GET", app.url("/audio/timeline?folder=%3Cb%3Esite"), vec![]).await;
    assert_eq!(status, 200);
    assert!(html.contains("<svg") && html.contains("2 recordings with a known start, 1 gap, 0 overlaps"), "{html}");
    assert!(!html.contains("<script>alert") && !html.contains("<b>site"), "names are escaped in the SVG too");

    // The recording page's form, without JavaScript: a good time is saved, a bad one explained.
    let (status, location, _) = page(
        "POST",
        app.url(&format!("/audio/{first_id}/recorded-at")),
        vec![("recorded_at", "2024-07-01T08:00:00Z".to_string())],
    )
    .await;
    assert_eq!(status, 303);
    assert!(location.starts_with(&format!("/audio/{first_id}?notice=")), "{location}");
    let (_, location, _) =
        page("POST", app.url(&format!("/audio/{first_id}/recorded-at")), vec![("recorded_at", "tomorrow".to_string())])
            .await;
    assert!(location.contains("notice_kind=error"), "{location}");
    let (_, _, html) = page("GET", app.url(&format!("/audio/{first_id}")), vec![]).await;
    assert!(html.contains("2024-07-01 08:00:00 UTC") && html.contains("(set by hand)"), "{html}");
    assert!(html.contains("History (2)") && html.contains("<td>web</td>"));

    // "These files are UTC+10" for the folder, from the time line page.
    let (status, location, _) = page(
        "POST",
        app.url("/audio/timeline/recorded-at"),
        vec![("folder", "<b>site".to_string()), ("utc_offset", "+10:00".to_string())],
    )
    .await;
    assert_eq!(status, 303, "{location}");
    assert!(location.starts_with("/audio/timeline?folder=%3Cb%3Esite&notice="), "{location}");
    let (_, second_again) = crate::api_get(&app.url(&format!("/api/audio/{second_id}"))).await;
    assert_eq!(second_again["recorded_at"], "2024-06-30T20:40:00Z");
    let (_, location, _) = page(
        "POST",
        app.url("/audio/timeline/recorded-at"),
        vec![("folder", "<b>site".to_string()), ("utc_offset", "soon".to_string())],
    )
    .await;
    assert!(location.contains("notice_kind=error"), "{location}");
    app.stop().await;
}
