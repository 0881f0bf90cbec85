//! [`start`] and [`RestServer`]: binds the REST port, builds the router and runs axum on a
//! thread of its own with a small single-threaded tokio runtime (JobManager calls go to its
//! blocking pool), and stops it again.
//!
//! This file owns the socket, the thread and the runtime; it must never decide what an endpoint
//! answers (that is `handlers.rs`), and shutting down must never hang on a slow request.

use crate::handlers::{self, AppState};
use crate::leader::LeaderState;
use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get};
use axum::Router;
use eddy_cluster::JobManagerHandle;
use eddy_core::config::Config;
use std::future::IntoFuture;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tokio::sync::watch;

/// How long a shutdown waits for in-flight requests before closing their connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Threads for blocking JobManager calls; each waits at most the handle's answer timeout.
const MAX_BLOCKING_THREADS: usize = 8;

/// A running REST server. Dropping it shuts it down.
pub struct RestServer {
    /// The bound address (the real port when started with port 0).
    pub address: SocketAddr,
    leader: LeaderState,
    /// Serving HTTPS (`security.ssl.rest.enabled`).
    tls: bool,
    stop: Option<watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl RestServer {
    /// `http://<address>`, or `https://<address>` with TLS.
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.address)
    }

    /// The leadership switch, e.g. for the leader-election callback to keep.
    pub fn leader_state(&self) -> LeaderState {
        self.leader.clone()
    }

    /// This JobManager is a standby: answer every request with 503 and `leader` (`host:port`
    /// or `http://host:port`, if known).
    pub fn set_standby(&self, leader: Option<&str>) {
        self.leader.set_standby(leader);
    }

    /// This JobManager is the leader: serve requests.
    pub fn set_leader(&self) {
        self.leader.set_leader();
    }

    /// Stops accepting connections, lets in-flight requests finish (up to a short grace
    /// period) and joins the server thread.
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the REST server thread on {} panicked", self.address);
            }
        }
    }
}

impl Drop for RestServer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

impl std::fmt::Debug for RestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestServer")
            .field("address", &self.address)
            .finish()
    }
}

fn router(state: AppState, leader: LeaderState, token: Option<String>) -> Router {
    let body_limit = state.config.rest_max_content_length();
    let router = Router::new()
        .route("/overview", get(handlers::overview))
        .route("/config", get(handlers::dashboard_config))
        .route("/jobmanager/config", get(handlers::jobmanager_config))
        .route("/jobs", get(handlers::jobs).post(handlers::submit_job))
        .route("/jobs/overview", get(handlers::jobs_overview))
        .route(
            "/jobs/{jobid}",
            get(handlers::job).patch(handlers::cancel_job),
        )
        .route("/jobs/{jobid}/status", get(handlers::job_status))
        .route(
            "/jobs/{jobid}/eddy-details",
            get(handlers::job_eddy_details),
        )
        .route("/jobs/{jobid}/exceptions", get(handlers::job_exceptions))
        .route("/jobs/{jobid}/checkpoints", get(handlers::job_checkpoints))
        .route(
            "/jobs/{jobid}/vertices/{vertexid}/backpressure",
            get(handlers::job_vertex_backpressure),
        )
        .route("/taskmanagers", get(handlers::taskmanagers))
        .route("/metrics", get(handlers::prometheus))
        .route("/jars", any(handlers::jars_refused))
        .route("/jars/{*rest}", any(handlers::jars_refused))
        .merge(crate::dashboard::routes());
    // Flink's clients call `/v1/...`: every path is served unversioned and under `/v1`.
    let router = router.clone().nest("/v1", router);
    let router = crate::savepoints::routes(router)
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .with_state(state)
        // Bodies over rest.server.max-content-length are refused (413) once the limit is passed.
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            body_limit,
            handlers::content_length_guard,
        ))
        // A standby answers before any handler runs (unknown paths included); only the bearer
        // token check (below) comes first.
        .layer(axum::middleware::from_fn_with_state(
            leader,
            handlers::standby_guard,
        ));
    match token {
        // Outermost of all: without the token nothing is answered but 401.
        Some(t) => router.layer(axum::middleware::from_fn_with_state(
            Arc::new(t),
            crate::auth::bearer_guard,
        )),
        None => router,
    }
}

/// Starts the REST server for `handle` on `bind_address:port` (port 0 = any free port).
/// `config` is the JobManager's configuration: shown by `/jobmanager/config` and the base of
/// every job submitted with `POST /jobs`. The server starts as the leader.
pub fn start(
    handle: JobManagerHandle,
    config: Config,
    bind_address: &str,
    port: u16,
) -> Result<RestServer, String> {
    let token = crate::auth::read_token(&config)?;
    let tls = eddy_core::tls::rest_server_config(&config)?;
    let listener = std::net::TcpListener::bind((bind_address, port))
        .map_err(|e| format!("cannot bind the REST server to {bind_address}:{port}: {e}"))?;
    let address = listener.local_addr().map_err(|e| {
        format!("cannot read the REST server's address ({bind_address}:{port}): {e}")
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot configure the REST socket {address}: {e}"))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .thread_name("eddy-rest-blocking")
        .build()
        .map_err(|e| format!("cannot start the REST server's runtime ({address}): {e}"))?;
    let listener = {
        let _in_runtime = runtime.enter();
        tokio::net::TcpListener::from_std(listener)
            .map_err(|e| format!("cannot register the REST socket {address}: {e}"))?
    };
    let leader = LeaderState::default();
    let app = router(
        AppState {
            handle,
            config: Arc::new(config),
        },
        leader.clone(),
        token,
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let serves_tls = tls.is_some();
    let thread = std::thread::Builder::new()
        .name("eddy-rest".into())
        .spawn(move || {
            match tls {
                None => runtime.block_on(serve(listener, app, stop_rx, address)),
                Some(tls) => runtime.block_on(async move {
                    let listener = crate::tls::TlsListener::start(listener, tls, address);
                    serve(listener, app, stop_rx, address).await
                }),
            }
            // Blocking JobManager calls still running are abandoned, not waited for.
            runtime.shutdown_timeout(Duration::from_millis(200));
        })
        .map_err(|e| format!("cannot start the REST server thread ({address}): {e}"))?;
    tracing::info!("REST API listening on {scheme}://{address}");
    Ok(RestServer {
        address,
        leader,
        tls: serves_tls,
        stop: Some(stop_tx),
        thread: Some(thread),
    })
}

async fn serve<L>(listener: L, app: Router, stop: watch::Receiver<bool>, address: SocketAddr)
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let mut graceful_stop = stop.clone();
    let mut forced_stop = stop;
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            // Err: the RestServer was dropped without a signal; stop as well.
            let _ = graceful_stop.wait_for(|s| *s).await;
        })
        .into_future();
    tokio::select! {
        result = server => {
            if let Err(e) = result {
                tracing::error!("REST server on {address} failed: {e}");
            }
        }
        _ = async {
            let _ = forced_stop.wait_for(|s| *s).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            tracing::warn!("REST server on {address}: requests still running {SHUTDOWN_GRACE:?} after shutdown; closing them");
        }
    }
    tracing::info!("REST server on {address} stopped");
}
