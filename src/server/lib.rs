//! `zhiku serve`: the web chat, admin pages, REST API and OpenAI-compatible API on axum.
//!
//! One [`AppState`]; handlers are thin and call the engine ([`zhiku_core::rag`], [`zhiku_core::index`],
//! [`zhiku_core::store`]); one error type ([`ApiError`]) renders every failure as JSON. Who may
//! read what is decided in [`auth`] and enforced inside retrieval: a question only ever
//! searches the caller's readable knowledge bases.

pub mod accounts;
pub mod activity;
pub mod admin;
pub mod ask;
pub mod auth;
pub mod chunks;
pub mod conversations;
pub mod documents;
pub mod error;
pub mod hardening;
pub mod hittest;
pub mod jobs;
pub mod kbs;
pub mod ldap;
pub mod login_limit;
pub mod metrics;
pub mod oidc;
pub mod openai;
pub mod rules;
pub mod state;
pub mod uploads;
pub mod web;
pub mod wecom;

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
use axum::routing::{get, patch, post, put};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

pub use error::ApiError;
pub use state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "zhiku",
        description = "On-premises knowledge-base assistant: REST API. \
        Authenticate with the session cookie from /api/login (send the returned csrf token \
        as X-CSRF-Token on writes) or with an API token as `Authorization: Bearer zk_…`."
    ),
    paths(
        auth::login,
        auth::logout,
        auth::whoami,
        oidc::providers,
        kbs::list,
        kbs::create,
        kbs::rename,
        kbs::delete,
        kbs::grant,
        kbs::revoke,
        accounts::list_users,
        accounts::create_user,
        accounts::update_user,
        accounts::delete_user,
        accounts::list_groups,
        accounts::create_group,
        accounts::delete_group,
        accounts::list_tokens,
        accounts::create_token,
        accounts::revoke_token,
        ask::ask,
        conversations::list,
        conversations::create,
        conversations::rename,
        conversations::delete,
        conversations::messages,
        conversations::feedback,
        admin::feedback,
        admin::queries,
        admin::audit,
        admin::blocked,
        admin::dictionary,
        admin::set_dictionary,
        uploads::upload,
        documents::list,
        documents::delete,
        documents::reindex,
        documents::download,
        documents::chunk,
        chunks::list,
        chunks::edit,
        chunks::history,
        chunks::review,
        hittest::search_test,
        rules::list,
        rules::restrict,
        rules::unrestrict,
        rules::add_editor,
        rules::remove_editor,
        jobs::list,
        jobs::get,
        openai::models,
        openai::model,
        openai::chat_completions,
        metrics::scrape,
    )
)]
pub struct ApiDoc;

/// Every route, with the layers (tracing, timeouts, panics → 500).
pub fn router(state: AppState) -> Router {
    let upload_limit = usize::try_from(
        state
            .engine
            .config
            .server
            .max_upload_mb
            .saturating_mul(1 << 20),
    )
    .unwrap_or(usize::MAX);
    let api = Router::new()
        .route("/api/login", post(auth::login))
        .route("/api/logout", post(auth::logout))
        .route("/api/me", get(auth::whoami))
        .route("/api/login/sso", get(oidc::providers))
        .route("/auth/oidc/login", get(oidc::login))
        .route("/auth/oidc/callback", get(oidc::callback))
        .route("/api/kbs", get(kbs::list).post(kbs::create))
        .route("/api/kbs/{kb}", patch(kbs::rename).delete(kbs::delete))
        .route(
            "/api/kbs/{kb}/groups/{group}",
            put(kbs::grant).delete(kbs::revoke),
        )
        .route(
            "/api/users",
            get(accounts::list_users).post(accounts::create_user),
        )
        .route(
            "/api/users/{name}",
            patch(accounts::update_user).delete(accounts::delete_user),
        )
        .route(
            "/api/groups",
            get(accounts::list_groups).post(accounts::create_group),
        )
        .route(
            "/api/groups/{name}",
            axum::routing::delete(accounts::delete_group),
        )
        .route(
            "/api/tokens",
            get(accounts::list_tokens).post(accounts::create_token),
        )
        .route(
            "/api/tokens/{id}",
            axum::routing::delete(accounts::revoke_token),
        )
        .route("/api/ask", post(ask::ask))
        .route(
            "/api/conversations",
            get(conversations::list).post(conversations::create),
        )
        .route(
            "/api/conversations/{id}",
            patch(conversations::rename).delete(conversations::delete),
        )
        .route(
            "/api/conversations/{id}/messages",
            get(conversations::messages),
        )
        .route("/api/messages/{id}/feedback", post(conversations::feedback))
        .route("/api/admin/feedback", get(admin::feedback))
        .route("/api/admin/queries", get(admin::queries))
        .route("/api/admin/audit", get(admin::audit))
        .route("/api/admin/blocked", get(admin::blocked))
        .route(
            "/api/admin/dictionary",
            get(admin::dictionary).put(admin::set_dictionary),
        )
        .route(
            "/api/kbs/{kb}/documents",
            get(documents::list)
                .post(uploads::upload)
                .layer(axum::extract::DefaultBodyLimit::max(upload_limit)),
        )
        .route(
            "/api/documents/{id}",
            axum::routing::delete(documents::delete),
        )
        .route("/api/documents/{id}/reindex", post(documents::reindex))
        .route("/api/documents/{id}/file", get(documents::download))
        .route(
            "/api/chunks/{id}",
            get(documents::chunk).patch(chunks::edit),
        )
        .route("/api/documents/{id}/chunks", get(chunks::list))
        .route("/api/documents/{id}/edits", get(chunks::history))
        .route("/api/documents/{id}/review", post(chunks::review))
        .route("/api/kbs/{kb}/search-test", post(hittest::search_test))
        .route(
            "/api/kbs/{kb}/rules",
            get(rules::list)
                .put(rules::restrict)
                .delete(rules::unrestrict),
        )
        .route(
            "/api/kbs/{kb}/editors/{user}",
            put(rules::add_editor).delete(rules::remove_editor),
        )
        .route("/api/jobs", get(jobs::list))
        .route("/api/jobs/{id}", get(jobs::get))
        .route("/api/openapi.json", get(openapi))
        .route("/v1/models", get(openai::models))
        .route("/v1/models/{model}", get(openai::model))
        .route("/v1/chat/completions", post(openai::chat_completions));
    let mut app = Router::new().merge(api).merge(web::routes());
    if let Some(callback) = wecom::callback::routes(&state) {
        app = app.merge(callback);
    }
    app.route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::scrape))
        .fallback(web::fallback)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            hardening::deadline,
        ))
        .layer(CatchPanicLayer::new())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            hardening::security_headers,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Ready when the metadata database answers and the embedding model is loaded.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let engine = state.engine.clone();
    let ready = tokio::task::spawn_blocking(move || {
        engine.meta.chunk_count().is_ok() && engine.embedder().is_ok()
    })
    .await
    .unwrap_or(false);
    if ready {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// How long a stopping server waits for the ingestion worker to finish its file.
const WORKER_PATIENCE: Duration = Duration::from_secs(30);

/// Serve on `listener` until `shutdown` resolves; requests in flight are finished first.
/// The ingestion worker runs alongside and stops with the server.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let worker = match state.wecom.clone() {
        Some(w) => zhiku_core::index::queue::Worker::start_notifying(
            state.engine.clone(),
            state.ingest.clone(),
            w,
        )?,
        None => {
            zhiku_core::index::queue::Worker::start(state.engine.clone(), state.ingest.clone())?
        }
    };
    wecom::callback::start(&state);
    ldap::start_sync(&state);
    let forget = tokio::spawn({
        let state = state.clone();
        async move {
            let mut every = tokio::time::interval(state::FORGET_IDLE_KEYS_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                let kept = state.forget_idle_rate_keys();
                tracing::debug!(kept, "forgot idle rate-limit keys");
            }
        }
    });
    use axum::serve::ListenerExt;
    // A streamed answer is many small writes: with Nagle's algorithm each waits for the
    // client's delayed ACK (up to 40 ms), so turn it off.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    forget.abort();
    tokio::task::spawn_blocking(move || worker.stop(WORKER_PATIENCE))
        .await
        .map_err(std::io::Error::other)?;
    served
}
