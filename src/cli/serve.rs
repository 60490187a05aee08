//! `zhiku serve`.

use std::process::ExitCode;

use anyhow::Context;
use zhiku_core::engine::Engine;
use zhiku_core::{access, index};

/// `zhiku serve`: first-run admin, then the server until Ctrl-C or SIGTERM (requests in
/// flight finish first).
pub fn run(engine: Engine, addr: Option<String>) -> anyhow::Result<ExitCode> {
    let addr = addr.unwrap_or_else(|| engine.config.server.addr.clone());
    let env_password = std::env::var("ZHIKU_ADMIN_PASSWORD").ok();
    match access::ensure_first_admin(&engine.meta, env_password.as_deref())? {
        access::FirstAdmin::Existing => {}
        access::FirstAdmin::FromEnv => {
            eprintln!("created user admin with the password from ZHIKU_ADMIN_PASSWORD")
        }
        access::FirstAdmin::Generated(p) => eprintln!(
            "created user admin with password {p}\n(shown only now; change it with `zhiku user passwd admin`)"
        ),
    }
    index::recover(&engine)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let state = zhiku_server::AppState::new(engine);
        // Load the embedding model now rather than on the first question (/readyz says
        // when it is done).
        let warm = state.engine.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = warm.embedder() {
                tracing::error!(error = %e, "the embedding model cannot be loaded");
            }
        });
        println!("zhiku serving on http://{}", listener.local_addr()?);
        zhiku_server::serve(state, listener, shutdown_signal()).await?;
        eprintln!("zhiku stopped");
        Ok(ExitCode::SUCCESS)
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
