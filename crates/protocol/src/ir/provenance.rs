//! Where a reasoning signature came from. Signatures (Anthropic thinking signatures, Gemini
//! thought signatures, OpenAI encrypted reasoning) are only valid for the provider that issued
//! them: sending one to another provider gets the request rejected. When an answer crosses
//! formats, llmux tags each signature with its issuer (`lx1:<format>:<signature>`, opaque to
//! clients); when a conversation goes upstream, signatures of that upstream are untagged and
//! sent, and foreign ones are dropped (their reasoning text stays as plain history where the
//! format allows). Untagged signatures in a client's request are the client's own format's: it
//! got them from a same-format upstream (bytes pass through untouched) or directly.

use super::{ChatRequest, ChatResponse, Part, StreamEvent};

const PREFIX: &str = "lx1:";

/// True when a body may carry a tagged signature (a same-format request then goes through the
/// IR so foreign signatures can be dropped).
pub fn body_has_tags(body: &[u8]) -> bool {
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(PREFIX.as_bytes()));
    FINDER.find(body).is_some()
}

fn tag(issuer: &str, sig: &str) -> String {
    if sig.starts_with(PREFIX) || sig.is_empty() {
        return sig.to_string();
    }
    format!("{PREFIX}{issuer}:{sig}")
}

/// `Some(raw)` when `sig` belongs to `issuer` (tagged so, or untagged); `None` when foreign.
fn own<'s>(issuer: &str, sig: &'s str) -> Option<&'s str> {
    match sig.strip_prefix(PREFIX) {
        None => Some(sig),
        Some(rest) => {
            let (who, raw) = rest.split_once(':')?;
            (who == issuer).then_some(raw)
        }
    }
}

fn tag_parts(parts: &mut [Part], issuer: &str) {
    for p in parts {
        match p {
            Part::Reasoning {
                signature: Some(s), ..
            }
            | Part::ToolCall {
                signature: Some(s), ..
            } => *s = tag(issuer, s),
            Part::RedactedReasoning { data } => *data = tag(issuer, data),
            Part::ToolResult { content, .. } => tag_parts(content, issuer),
            _ => {}
        }
    }
}

/// An answer from upstream `issuer`: tag its signatures.
pub fn tag_response(resp: &mut ChatResponse, issuer: &str) {
    tag_parts(&mut resp.content, issuer);
}

/// A stream event from upstream `issuer`: tag its signature, if any.
pub fn tag_event(ev: &mut StreamEvent, issuer: &str) {
    match ev {
        StreamEvent::ReasoningSignature(s) | StreamEvent::RedactedReasoning(s) => {
            *s = tag(issuer, s);
        }
        StreamEvent::ToolCallStart {
            signature: Some(s), ..
        } => *s = tag(issuer, s),
        _ => {}
    }
}

/// A client's request in format `client`: its untagged signatures are that format's.
pub fn tag_request(req: &mut ChatRequest, client: &str) {
    for m in &mut req.messages {
        tag_parts(&mut m.content, client);
    }
}

fn keep_own(parts: &mut Vec<Part>, issuer: &str) {
    parts.retain_mut(|p| match p {
        Part::Reasoning { signature, .. } | Part::ToolCall { signature, .. } => {
            *signature = signature
                .as_deref()
                .and_then(|s| own(issuer, s))
                .map(str::to_string);
            true
        }
        Part::RedactedReasoning { data } => match own(issuer, data) {
            Some(raw) => {
                *data = raw.to_string();
                true
            }
            None => false,
        },
        Part::ToolResult { content, .. } => {
            keep_own(content, issuer);
            true
        }
        _ => true,
    });
}

/// A conversation about to go to upstream `issuer`: its own signatures untagged, foreign ones
/// (and foreign encrypted reasoning) removed.
pub fn for_upstream(req: &mut ChatRequest, issuer: &str) {
    for m in &mut req.messages {
        keep_own(&mut m.content, issuer);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ir::{Message, Role};

    fn reasoning(sig: &str) -> Part {
        Part::Reasoning {
            text: "t".into(),
            signature: Some(sig.into()),
        }
    }

    #[test]
    fn signatures_reach_only_their_issuer() {
        let mut resp = ChatResponse {
            content: vec![
                reasoning("abc"),
                Part::RedactedReasoning { data: "enc".into() },
            ],
            ..ChatResponse::default()
        };
        tag_response(&mut resp, "gemini");
        assert_eq!(resp.content[0], reasoning("lx1:gemini:abc"));
        // Tagging twice changes nothing.
        tag_response(&mut resp, "anthropic");
        assert_eq!(resp.content[0], reasoning("lx1:gemini:abc"));

        let conversation = ChatRequest {
            messages: vec![Message {
                role: Role::Assistant,
                content: resp.content.clone(),
                name: None,
            }],
            ..ChatRequest::default()
        };
        let mut to_gemini = conversation.clone();
        for_upstream(&mut to_gemini, "gemini");
        assert_eq!(
            to_gemini.messages[0].content,
            vec![
                reasoning("abc"),
                Part::RedactedReasoning { data: "enc".into() }
            ]
        );
        let mut to_anthropic = conversation;
        for_upstream(&mut to_anthropic, "anthropic");
        assert_eq!(
            to_anthropic.messages[0].content,
            vec![Part::Reasoning {
                text: "t".into(),
                signature: None
            }]
        );
    }

    #[test]
    fn untagged_client_signatures_belong_to_the_client_format() {
        let mut req = ChatRequest {
            messages: vec![Message {
                role: Role::Assistant,
                content: vec![reasoning("raw")],
                name: None,
            }],
            ..ChatRequest::default()
        };
        tag_request(&mut req, "anthropic");
        let mut to_gemini = req.clone();
        for_upstream(&mut to_gemini, "gemini");
        assert_eq!(
            to_gemini.messages[0].content[0],
            Part::Reasoning {
                text: "t".into(),
                signature: None
            }
        );
        for_upstream(&mut req, "anthropic");
        assert_eq!(req.messages[0].content[0], reasoning("raw"));
        assert!(body_has_tags(br#"{"signature":"lx1:gemini:x"}"#));
        assert!(!body_has_tags(br#"{"signature":"x"}"#));
    }
}
