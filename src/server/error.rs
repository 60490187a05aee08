//! One error type for every handler. It renders as JSON in the OpenAI error shape
//! (`{"error": {"message", "type", "code"}}`, so OpenAI client libraries show the message),
//! with `Retry-After` on 429 and 503. Internal details are logged, not sent.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use zhiku_core::access::AccessError;
use zhiku_core::engine::EngineError;
use zhiku_core::store::meta::MetaError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// `/v1/*`: the `model` (knowledge base) is missing or not readable by the caller; the
    /// OpenAI code `model_not_found`, so that OpenAI clients recognise it.
    #[error("{0}")]
    ModelNotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{message}")]
    TooManyRequests { retry_after: u64, message: String },
    #[error("{message}")]
    Unavailable { retry_after: u64, message: String },
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) | ApiError::ModelNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "invalid_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::ModelNotFound(_) => "model_not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::TooManyRequests { .. } => "rate_limited",
            ApiError::Unavailable { .. } => "busy",
            ApiError::Internal(_) => "internal_error",
        }
    }

    /// The JSON body (also sent as an SSE `error` event).
    pub fn body(&self) -> serde_json::Value {
        let message = match self {
            ApiError::Internal(_) => {
                "internal server error (the details are in the server log)".into()
            }
            other => other.to_string(),
        };
        json!({"error": {"message": message, "type": self.code(), "code": self.code()}})
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let mut res = (status, axum::Json(self.body())).into_response();
        if let ApiError::TooManyRequests { retry_after, .. }
        | ApiError::Unavailable { retry_after, .. } = &self
        {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after));
        }
        res
    }
}

impl From<MetaError> for ApiError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::NoSuchKb(_)
            | MetaError::NoSuchUser(_)
            | MetaError::NoSuchGroup(_)
            | MetaError::NoSuchChunk(_) => ApiError::NotFound(e.to_string()),
            MetaError::KbExists(_)
            | MetaError::UserExists(_)
            | MetaError::GroupExists(_)
            | MetaError::WecomUserTaken { .. }
            | MetaError::LastAdmin(_) => ApiError::Conflict(e.to_string()),
            MetaError::BadKbName(_)
            | MetaError::BadAccountName { .. }
            | MetaError::BadWecomUser(_)
            | MetaError::BadEdit(_)
            | MetaError::BadRule(_) => ApiError::BadRequest(e.to_string()),
            MetaError::Sqlite { .. } | MetaError::Schema { .. } => {
                ApiError::Internal(e.to_string())
            }
        }
    }
}

impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> Self {
        match e {
            AccessError::WeakPassword => ApiError::BadRequest(e.to_string()),
            AccessError::Meta(m) => m.into(),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Meta(m) => m.into(),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<zhiku_core::rag::RagError> for ApiError {
    fn from(e: zhiku_core::rag::RagError) -> Self {
        match e {
            zhiku_core::rag::RagError::Engine(e) => e.into(),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        ApiError::BadRequest(format!("invalid JSON body: {}", e.body_text()))
    }
}
