//! The remote workers section of the processing page: who is connected, what each runs and
//! when each was last heard from (renewals are not events, so it shows the moment the page was
//! made).

use maud::{html, Markup};

use crate::workers::coordinator::WorkersListing;

/// A `section.panel` listing remote workers, or saying there are none.
pub fn workers_section(listing: &WorkersListing) -> Markup {
    html! {
        section.panel aria-labelledby="workers-heading" {
            h2 #workers-heading { "Remote workers" }
            @if listing.workers.is_empty() {
                p { "No remote workers are connected. Start one with "
                    code { "humpback worker --server URL --token TOKEN" }
                    " on any machine that reaches this server and its storage." }
            } @else {
                table.workers {
                    thead { tr { th { "Worker" } th { "Name" } th { "Threads" } th { "Last heard" } th { "Doing" } } }
                    tbody {
                        @for worker in &listing.workers {
                            tr {
                                td { (worker.worker_id) }
                                td { (worker.name) }
                                td.number { (worker.threads) }
                                td { (format!("{:.1} s ago", worker.last_heard_seconds_ago)) }
                                td {
                                    @if worker.jobs.is_empty() {
                                        "idle"
                                    }
                                    @for job in &worker.jobs {
                                        div.worker-job {
                                            @let page = match job.kind {
                                                crate::workers::JobKind::Processing => "processing",
                                                crate::workers::JobKind::Clustering => "clustering",
                                            };
                                            a href=(format!("/{page}/{}", job.job_id)) { (job.kind.as_str()) " job " (job.job_id) }
                                            " (attempt " (job.attempt)
                                            @if let (Some(done), Some(total)) = (job.windows_done, job.windows_total) {
                                                ", " (done) " / " (total) " windows"
                                            }
                                            @if let Some(fraction) = job.fraction {
                                                ", " (format!("{:.0}", fraction * 100.0)) " %"
                                            }
                                            ")"
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            p.hint {
                "A claim holds for " (listing.lease_seconds) " s without a renewal; then the attempt is abandoned and the job queued again. "
                (listing.api_calls) " worker API calls and " (listing.lapsed_leases) " lapsed leases since the server started."
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workers::coordinator::{LeasedJobView, WorkerView};
    use crate::workers::JobKind;

    #[test]
    fn a_worker_name_is_escaped_and_its_job_linked() {
        let listing = WorkersListing {
            workers: vec![WorkerView {
                worker_id: "w1".into(),
                name: "<b>node-7</b>".into(),
                kinds: vec![JobKind::Processing],
                threads: 2,
                registered_at_unix: 0,
                last_heard_seconds_ago: 0.4,
                jobs: vec![LeasedJobView {
                    kind: JobKind::Processing,
                    job_id: 12,
                    attempt: 2,
                    windows_done: Some(5),
                    windows_total: Some(40),
                    fraction: None,
                    running_seconds: 1.0,
                    lease_expires_in_seconds: 29.0,
                }],
            }],
            lease_seconds: 30.0,
            api_calls: 9,
            lapsed_leases: 1,
        };
        let html = workers_section(&listing).into_string();
        assert!(html.contains("&lt;b&gt;node-7&lt;/b&gt;"), "{html}");
        assert!(html.contains("href=\"/processing/12\""));
        assert!(html.contains("5 / 40 windows"));
        let empty = WorkersListing { workers: vec![], ..listing };
        assert!(workers_section(&empty).into_string().contains("No remote workers"));
    }
}
