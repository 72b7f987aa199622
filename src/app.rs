//! The HTTP server around the services: `Humpback::open_with` (the services plus the workers'
//! start-up recovery), `Application::build` binds (port 0 in tests); `run_until` serves until
//! the shutdown future resolves, then flushes everything.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;

use crate::config::DataDir;
pub use crate::services::{
    default_worker_count, drive_blocking_worker, AddModelError, Humpback, Settings, DEFAULT_MAX_UPLOAD_BYTES,
};

impl Humpback {
    /// Opens (creating if needed) a data directory: its layout, the log, the domain state and
    /// the projections, which are brought up to date with the log before this returns.
    pub fn open(data_dir: DataDir) -> anyhow::Result<Humpback> {
        Humpback::open_with(data_dir, Settings::default())
    }

    /// Opens the services, then recovers: whoever holds the log holds the data directory, so a
    /// job still running belongs to a process that died.
    pub fn open_with(data_dir: DataDir, settings: Settings) -> anyhow::Result<Humpback> {
        let mut humpback = Humpback::open_services(data_dir, settings)?;
        humpback.recovery = crate::processing::worker::recover_running_jobs(&humpback)?;
        crate::clustering_jobs::worker::recover_running_clustering_jobs(&humpback)?;
        crate::classifier::worker::recover_running_trainings(&humpback)?;
        crate::classifier::detection_worker::recover_running_detection_jobs(&humpback)?;
        humpback.catch_up_projections()?;
        Ok(humpback)
    }
}

/// What `serve` needs to know.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: DataDir,
    pub settings: Settings,
    /// `127.0.0.1:8080` by default; port 0 picks a free port (tests).
    pub bind: String,
}

/// A bound, ready-to-run server.
pub struct Application {
    listener: tokio::net::TcpListener,
    humpback: Arc<Humpback>,
}

impl Application {
    pub async fn build(config: ServeConfig) -> anyhow::Result<Application> {
        let data_dir = config.data_dir.clone();
        let settings = config.settings.clone();
        let humpback = tokio::task::spawn_blocking(move || {
            let humpback = Humpback::open_with(data_dir, settings)?;
            crate::services::share_models_with_workers(
                &humpback.storage,
                humpback.models.models_directory(),
                humpback.data_dir.root(),
            );
            anyhow::Ok(humpback)
        })
        .await
        .context("opening the data directory")??;
        let listener = tokio::net::TcpListener::bind(&config.bind)
            .await
            .with_context(|| format!("cannot listen on {} (is another server using that port?)", config.bind))?;
        Ok(Application { listener, humpback: Arc::new(humpback) })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        self.listener.local_addr().context("reading the bound address")
    }

    pub fn humpback(&self) -> Arc<Humpback> {
        self.humpback.clone()
    }

    /// Serves until `shutdown` resolves, then stops background tasks and flushes the log.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let (stop_sender, stop) = watch::channel(false);
        let catch_up = tokio::spawn(self.humpback.clone().run_projection_catch_up(stop.clone()));
        let stopping_flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let workers: Vec<_> = (0..self.humpback.settings.processing_workers)
            .map(|index| {
                tokio::spawn(crate::processing::worker::run_worker(
                    self.humpback.clone(),
                    index,
                    stopping_flag.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        let clustering_workers: Vec<_> = (0..self.humpback.settings.clustering_workers)
            .map(|index| {
                tokio::spawn(crate::clustering_jobs::worker::run_clustering_worker(
                    self.humpback.clone(),
                    index,
                    stopping_flag.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        // One training worker, where background workers run at all (tests step them instead).
        let training_worker = (self.humpback.settings.clustering_workers > 0).then(|| {
            tokio::spawn(crate::classifier::worker::run_training_worker(
                self.humpback.clone(),
                stopping_flag.clone(),
                stop.clone(),
            ))
        });
        let detection_worker = (self.humpback.settings.clustering_workers > 0).then(|| {
            tokio::spawn(crate::classifier::detection_worker::run_detection_worker(
                self.humpback.clone(),
                stopping_flag.clone(),
                stop.clone(),
            ))
        });
        let lease_sweeper = tokio::spawn(crate::http::workers_api::sweep_leases(self.humpback.clone(), stop.clone()));
        let access = Arc::new(crate::http::access::AccessPolicy::new(
            self.humpback.settings.access.clone(),
            Some(self.listener.local_addr().context("reading the bound address")?),
        ));
        let router = crate::http::routes::router_with_access(self.humpback.clone(), stop.clone(), access);
        let flag = stopping_flag.clone();
        let served = axum::serve(self.listener, router).with_graceful_shutdown(async move {
            shutdown.await;
            flag.store(true, std::sync::atomic::Ordering::Relaxed);
            let _ = stop_sender.send(true);
        });
        let result = served.await.context("serving http");
        for worker in training_worker.into_iter().chain(detection_worker) {
            let _ = worker.await;
        }
        for worker in workers.into_iter().chain(clustering_workers) {
            let _ = worker.await;
        }
        let _ = catch_up.await;
        let _ = lease_sweeper.await;
        let log = self.humpback.log.clone();
        tokio::task::spawn_blocking(move || log.flush()).await.context("flushing the log")??;
        let writer = self.humpback.writer.clone();
        tokio::task::spawn_blocking(move || writer.write_snapshot()).await.context("snapshotting the state")?;
        tracing::info!("stopped cleanly");
        result
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(error = %error, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                std::future::pending::<()>().await
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("interrupted; shutting down"),
        _ = terminate => tracing::info!("terminated; shutting down"),
    }
}
