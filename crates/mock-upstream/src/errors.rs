//! OpenAI-style error bodies: `{"error":{"message","type","param","code"}}`,
//! pretty-printed with four-space indentation as the real API sends them.

use http::{Method, Response, StatusCode};
use serde::Serialize;
use serde_json::Value;

use crate::body::{self, Body};

pub(crate) const ORGANIZATION: &str = "org-mock";

#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
    /// Azure's own shape: `{"error":{"code","message"}}`.
    pub azure: bool,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    message: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    param: Option<&'a str>,
    code: Option<&'a str>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        message: impl Into<String>,
        kind: &'static str,
        param: Option<&str>,
        code: Option<&'static str>,
    ) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            kind,
            param: param.map(str::to_owned),
            code,
            azure: false,
        }
    }

    /// An error in Azure's `{"error":{"code","message"}}` shape.
    pub fn azure(status: StatusCode, code: &'static str, message: &str) -> ApiError {
        ApiError {
            azure: true,
            ..ApiError::new(status, message, "", None, Some(code))
        }
    }

    /// 400 `invalid_request_error`.
    pub fn invalid(
        message: impl Into<String>,
        param: Option<&str>,
        code: Option<&'static str>,
    ) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            message,
            "invalid_request_error",
            param,
            code,
        )
    }

    pub fn missing(param: &str) -> ApiError {
        ApiError::invalid(
            format!("Missing required parameter: '{param}'."),
            Some(param),
            Some("missing_required_parameter"),
        )
    }

    /// The front door's check, which predates per-field validation.
    pub fn no_model() -> ApiError {
        ApiError::invalid("you must provide a model parameter", None, None)
    }

    pub fn invalid_type(param: &str, expected: &str, got: &Value) -> ApiError {
        ApiError::invalid(
            format!(
                "Invalid type for '{param}': expected {expected}, but got {} instead.",
                describe(got)
            ),
            Some(param),
            Some("invalid_type"),
        )
    }

    pub fn invalid_value(param: &str, got: &str, supported: &[&str]) -> ApiError {
        ApiError::invalid(
            format!(
                "Invalid value: '{got}'. Supported values are: {}.",
                list_quoted(supported)
            ),
            Some(param),
            Some("invalid_value"),
        )
    }

    pub fn below_min(param: &str, min: i64, got: i64) -> ApiError {
        ApiError::invalid(
            format!(
                "Invalid '{param}': integer below minimum value. Expected a value >= {min}, but got {got} instead."
            ),
            Some(param),
            Some("integer_below_min_value"),
        )
    }

    pub fn above_max(param: &str, max: i64, got: i64) -> ApiError {
        ApiError::invalid(
            format!(
                "Invalid '{param}': integer above maximum value. Expected a value <= {max}, but got {got} instead."
            ),
            Some(param),
            Some("integer_above_max_value"),
        )
    }

    pub fn empty_array(param: &str) -> ApiError {
        ApiError::invalid(
            format!(
                "Invalid '{param}': empty array. Expected an array with minimum length 1, but got an empty array instead."
            ),
            Some(param),
            Some("empty_array"),
        )
    }

    pub fn parse_error() -> ApiError {
        ApiError::invalid(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)",
            None,
            None,
        )
    }

    pub fn invalid_url(method: &Method, path: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("Invalid URL ({method} {path})"),
            "invalid_request_error",
            None,
            None,
        )
    }

    pub fn model_not_found(model: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("The model `{model}` does not exist or you do not have access to it."),
            "invalid_request_error",
            None,
            Some("model_not_found"),
        )
    }

    pub fn missing_key() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            None,
            None,
        )
    }

    pub fn invalid_key(key: &str) -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!(
                "Incorrect API key provided: {}. You can find your API key at https://platform.openai.com/account/api-keys.",
                mask_key(key)
            ),
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
        )
    }

    /// 429 "Rate limit reached ..." for one dimension (`what` is e.g.
    /// "requests per min (RPM)", `kind` is `requests` or `tokens`).
    #[allow(clippy::too_many_arguments)]
    pub fn rate_limit_reached(
        model: &str,
        org: &str,
        what: &str,
        kind: &'static str,
        limit: u64,
        used: i64,
        requested: u64,
        retry_in: &str,
    ) -> ApiError {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Rate limit reached for {model} in organization {org} on {what}: Limit {limit}, Used {used}, Requested {requested}. Please try again in {retry_in}. Visit https://platform.openai.com/account/rate-limits to learn more."
            ),
            kind,
            None,
            Some("rate_limit_exceeded"),
        )
    }

    /// 429 on requests per minute, as the RPM bucket words it.
    pub fn rate_limited(model: &str, org: &str, limit: u64, used: u64, retry_in: &str) -> ApiError {
        ApiError::rate_limit_reached(
            model,
            org,
            "requests per min (RPM)",
            "requests",
            limit,
            i64::try_from(used).unwrap_or(i64::MAX),
            1,
            retry_in,
        )
    }

    /// 429 for a request larger than the whole TPM limit: no wait helps.
    pub fn request_too_large(model: &str, org: &str, limit: u64, requested: u64) -> ApiError {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Request too large for {model} in organization {org} on tokens per min (TPM): Limit {limit}, Requested {requested}. The input or output tokens must be reduced in order to run successfully. Visit https://platform.openai.com/account/rate-limits to learn more."
            ),
            "tokens",
            None,
            Some("rate_limit_exceeded"),
        )
    }

    pub fn insufficient_quota() -> ApiError {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "You exceeded your current quota, please check your plan and billing details. For more information on this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.",
            "insufficient_quota",
            None,
            Some("insufficient_quota"),
        )
    }

    pub fn server_error() -> ApiError {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
            None,
        )
    }

    pub fn overloaded() -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "The engine is currently overloaded, please try again later",
            "server_error",
            None,
            None,
        )
    }

    pub fn context_length_exceeded(prompt_tokens: u64) -> ApiError {
        ApiError::invalid(
            format!(
                "This model's maximum context length is 128000 tokens. However, your messages resulted in {} tokens. Please reduce the length of the messages.",
                128_000 + prompt_tokens
            ),
            Some("messages"),
            Some("context_length_exceeded"),
        )
    }

    pub fn to_json(&self) -> Vec<u8> {
        if self.azure {
            let v = serde_json::json!({"error": {"code": self.code, "message": self.message}});
            return v.to_string().into_bytes();
        }
        let env = Envelope {
            error: Inner {
                message: &self.message,
                kind: self.kind,
                param: self.param.as_deref(),
                code: self.code,
            },
        };
        let mut out = Vec::with_capacity(self.message.len() + 128);
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        if env.serialize(&mut ser).is_err() {
            out.clear();
        }
        out.push(b'\n');
        out
    }

    pub fn into_response(self) -> Response<Body> {
        body::json(self.status, self.to_json())
    }
}

/// "a string", "an integer", ... as OpenAI words type mismatches.
fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a decimal",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `'a', 'b', and 'c'` / `'a' and 'b'`.
fn list_quoted(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("'{s}'")).collect();
    match quoted.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [a, b] => format!("{a} and {b}"),
        [head @ .., last] => format!("{}, and {last}", head.join(", ")),
    }
}

/// OpenAI shows the first 8 and last 4 characters of a wrong key with the
/// middle starred out; shorter keys keep a third at each end.
pub(crate) fn mask_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    let n = chars.len();
    let (head, tail) = if n > 12 { (8, 4) } else { (n / 3, n / 3) };
    let mut out = String::with_capacity(key.len());
    out.extend(&chars[..head]);
    out.extend(std::iter::repeat_n('*', n - head - tail));
    out.extend(&chars[n - tail..]);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn masks_like_openai() {
        assert_eq!(
            mask_key("sk-abcdefgh12345678wxyz"),
            "sk-abcde***********wxyz"
        );
        assert_eq!(mask_key("short"), "s***t");
        assert_eq!(mask_key(""), "");
    }

    #[test]
    fn lists() {
        assert_eq!(list_quoted(&["float", "base64"]), "'float' and 'base64'");
        assert_eq!(list_quoted(&["a", "b", "c"]), "'a', 'b', and 'c'");
    }

    #[test]
    fn envelope_shape() {
        let v: Value = serde_json::from_slice(&ApiError::missing("messages").to_json()).unwrap();
        assert_eq!(v["error"]["param"], "messages");
        assert_eq!(v["error"]["code"], "missing_required_parameter");
        assert_eq!(v["error"]["type"], "invalid_request_error");
    }
}
