//! Upstream credentials that are more than a static key: Google service accounts (Vertex AI)
//! and AWS SigV4 (Bedrock).

pub mod google;
pub mod sigv4;
