//! Runs the official `anthropic`, `google-genai` and `openai` Python SDKs
//! against the mock's native routes (Messages, Gemini, Responses, Azure),
//! when available.
//!
//! Looks for `$MOCK_SDK_PYTHON`, else `/tmp/mvenv/bin/python` (create it with
//! `python3 -m venv /tmp/mvenv && /tmp/mvenv/bin/pip install openai anthropic
//! google-genai`). Without it the test prints a note and passes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

use mock_upstream::{Endpoint, MockOptions, MockServer};

fn sdk_python() -> Option<PathBuf> {
    let python = std::env::var_os("MOCK_SDK_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/mvenv/bin/python"));
    if !python.exists() {
        return None;
    }
    let has_sdks = Command::new(&python)
        .args(["-c", "import openai, anthropic, google.genai"])
        .status()
        .is_ok_and(|s| s.success());
    has_sdks.then_some(python)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdks_speak_every_native_format() {
    let Some(python) = sdk_python() else {
        println!(
            "skipping: no Python with openai, anthropic and google-genai (set MOCK_SDK_PYTHON)"
        );
        return;
    };
    let server = MockServer::start(MockOptions::default()).await.unwrap();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/native_check.py");
    let root = server.root_url();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .env("MOCK_ROOT", root)
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .env_remove("ANTHROPIC_API_KEY")
            .env_remove("ANTHROPIC_BASE_URL")
            .env_remove("GOOGLE_API_KEY")
            .env_remove("GEMINI_API_KEY")
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("OK"),
        "SDK check failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // Every SDK reached the native route of its own format.
    let seen: Vec<Endpoint> = server.requests().iter().map(|r| r.endpoint).collect();
    for e in [
        Endpoint::AnthropicMessages,
        Endpoint::AnthropicCountTokens,
        Endpoint::GeminiGenerateContent,
        Endpoint::GeminiStreamGenerateContent,
        Endpoint::GeminiCountTokens,
        Endpoint::GeminiModels,
        Endpoint::Responses,
        Endpoint::ResponseGet,
        Endpoint::AzureChatCompletions,
    ] {
        assert!(seen.contains(&e), "{e:?} not reached: {seen:?}");
    }
}
