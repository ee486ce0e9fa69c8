//! The one error type requests fail with. It knows whose fault it is and how to render itself
//! in the shape of the API the client speaks (OpenAI now; Anthropic and Gemini shapes later).

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::server::body::{RespBody, full};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI `error.type`.
    pub kind: &'static str,
    /// OpenAI `error.code`.
    pub code: Option<&'static str>,
    pub param: Option<&'static str>,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            kind,
            code: None,
            param: None,
            retry_after: None,
        }
    }

    pub fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn param(mut self, param: &'static str) -> Self {
        self.param = Some(param);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_request_error", message)
            .code("invalid_api_key")
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "invalid_request_error", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// Render in the error shape of the API the client speaks.
    pub fn into_response(self, client: protocol::ir::Format) -> Response<RespBody> {
        use protocol::ir::Format;
        match client {
            Format::OpenAiChat | Format::OpenAiResponses => self.into_openai_response(),
            Format::Anthropic | Format::Gemini => {
                let err = protocol::ir::ApiError {
                    status: self.status.as_u16(),
                    kind: self.ir_kind(),
                    message: self.message,
                };
                let body = protocol::convert::dispatch::error_body(client, &err);
                json_response(self.status, Bytes::from(body), self.retry_after)
            }
        }
    }

    /// The format-neutral kind of this error, from its OpenAI type and status.
    fn ir_kind(&self) -> protocol::ir::ErrorKind {
        use protocol::ir::ErrorKind;
        match self.kind {
            "authentication_error" => ErrorKind::Authentication,
            "permission_error" => ErrorKind::Permission,
            "rate_limit_error" => ErrorKind::RateLimit,
            "not_found_error" => ErrorKind::NotFound,
            _ => ErrorKind::from_status(self.status.as_u16()),
        }
    }

    /// Render as OpenAI's `{"error":{"message","type","param","code"}}`.
    pub fn into_openai_response(self) -> Response<RespBody> {
        let body = protocol::openai::error_body(&self.message, self.kind, self.code, self.param);
        json_response(self.status, body, self.retry_after)
    }
}

pub fn json_response(
    status: StatusCode,
    body: Bytes,
    retry_after: Option<u64>,
) -> Response<RespBody> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}
