//! One module per subcommand.

pub mod audit;
pub mod bench;
pub mod cox;
pub mod deid;
pub mod demo;
pub mod describe;
pub mod evaluate;
pub mod glm;
pub mod ingest;
pub mod km;
pub mod model;
pub mod pki;
pub mod query;
pub mod readmission;
pub mod review;
pub mod serve;
pub mod study;
pub mod synth;
pub mod train;
pub mod vitals;

/// Resolves when the process gets Ctrl-C (or SIGTERM on Unix).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
