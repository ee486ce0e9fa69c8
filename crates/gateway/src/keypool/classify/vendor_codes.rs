//! Providers whose errors carry a code that names the condition outright, so it decides before
//! the status: Amazon Bedrock's exception names and Cloudflare Workers AI's error codes. Their
//! statuses alone mislead: Bedrock answers a not-yet-loaded model with 429 and an exhausted
//! account quota with 400; Workers AI answers both a spent daily allocation and a full data
//! centre with 429, and a bad token with 403.

use super::{Decision, ErrorClass, Flavor, Upstream, is_context_text, rate_limited};

pub(super) fn decide(up: &Upstream<'_>) -> Option<Decision> {
    match up.flavor {
        Flavor::Bedrock => bedrock(up),
        Flavor::WorkersAi => workers_ai(up),
        _ => None,
    }
}

/// Bedrock Runtime's exceptions (API reference, Converse / ConverseStream "Errors"; the
/// signature and token errors are the AWS common errors). `x-amzn-ErrorType` reads
/// `ThrottlingException:http://internal.amazon.com/coral/com.amazon.bedrock/`; stream events
/// name them in lower camel case (`throttlingException`).
fn bedrock(up: &Upstream<'_>) -> Option<Decision> {
    use ErrorClass::*;
    let raw = up.exception?;
    let name = raw.split(':').next().unwrap_or(raw);
    let name = name.rsplit('#').next().unwrap_or(name).to_ascii_lowercase();
    let class = match name.as_str() {
        // "Too many requests/tokens, please wait before trying again." — or "Too many tokens per
        // day", which the rate-limit reading turns into the daily quota it is.
        "throttlingexception" | "servicequotaexceededexception" | "toomanyrequestsexception" => {
            return Some(rate_limited(up));
        }
        // "The model specified in the request is not ready to serve inference requests": the
        // provider's capacity, not this key's.
        "modelnotreadyexception" | "serviceunavailableexception" => Overloaded,
        "modeltimeoutexception" => Timeout,
        "internalserverexception" | "modelerrorexception" | "modelstreamerrorexception" => {
            ServerError
        }
        // No access to this model (or it does not exist in this region) for these credentials.
        "accessdeniedexception" | "resourcenotfoundexception" => Permission,
        "unrecognizedclientexception"
        | "invalidsignatureexception"
        | "incompletesignatureexception"
        | "signaturedoesnotmatch"
        | "invalidclienttokenid"
        | "expiredtokenexception"
        | "missingauthenticationtokenexception" => AuthInvalid,
        "validationexception" if is_context_text(up.lc) => ContextTooLong,
        // "Invocation of model ID ... with on-demand throughput isn't supported": this id needs
        // an inference profile; another channel may serve the model.
        "validationexception" if up.lc.contains("on-demand throughput") => Permission,
        "validationexception" | "serializationexception" => BadRequest,
        _ => return None,
    };
    Some(Decision::of(class))
}

/// Workers AI's error table (developers.cloudflare.com/workers-ai/platform/errors) and the
/// Cloudflare API's own codes, first known code wins.
fn workers_ai(up: &Upstream<'_>) -> Option<Decision> {
    use ErrorClass::*;
    up.body.error_codes.iter().find_map(|code| {
        let class = match code {
            // "You have used up your daily free allocation of 10,000 neurons."
            3036 => DailyQuota,
            // "No more data centers to forward the request to" (capacity).
            3040 => Overloaded,
            // Request timeout / Request was aborted.
            3007 | 3008 => Timeout,
            // Cloudflare API "Authentication error": the token is not valid (sent with 401 or
            // 403).
            10000 => AuthInvalid,
            // "Service unavailable for account": the account, so every key of it, is blocked.
            3023 => AuthInvalid,
            // Model terms not agreed / private model not allowed / no such model or invalid
            // model id / no route for the account id: this key cannot reach this model.
            5016 | 5018 | 3041 | 5007 | 3042 | 7003 | 7000 => Permission,
            // "The estimated number of input and maximum output tokens (N) exceeded this model
            // context window limit (M)", sent with 413 under either code.
            5021 | 3010 => ContextTooLong,
            // Bad input, missing parts, unsupported LoRA or SDK, request too large.
            3003 | 3006 | 3039 | 5004 | 5005 | 5006 | 5019 => BadRequest,
            // Cloudflare API "Please wait and consider throttling your request speed".
            971 => RateLimited,
            _ => return None,
        };
        Some(Decision::of(class))
    })
}
