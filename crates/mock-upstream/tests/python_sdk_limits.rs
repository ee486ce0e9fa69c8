//! Runs the official `openai`, `anthropic` and `google-genai` Python SDKs
//! against the mock's limit flavours, when available.
//!
//! Looks for `$MOCK_SDK_PYTHON`, else `/tmp/mvenv/bin/python` (create it with
//! `python3 -m venv /tmp/mvenv && /tmp/mvenv/bin/pip install openai anthropic
//! google-genai`). Without it the test prints a note and passes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

use mock_upstream::{LimitFlavor, MockOptions, MockServer, ScopeSpec};

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

async fn start(flavor: LimitFlavor, scopes: Vec<ScopeSpec>) -> MockServer {
    MockServer::start(MockOptions {
        flavor,
        scopes,
        ..MockOptions::default()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_sdks_parse_every_flavour() {
    let Some(python) = sdk_python() else {
        println!(
            "skipping: no Python with openai, anthropic and google-genai (set MOCK_SDK_PYTHON)"
        );
        return;
    };
    let openai = start(
        LimitFlavor::OpenAi,
        vec![
            ScopeSpec::new("org-sdk", &["sk-one"]).rpm(1),
            ScopeSpec::new("org-fast", &["sk-fast"]).rpm(120),
        ],
    )
    .await;
    let groq = start(
        LimitFlavor::Groq,
        vec![ScopeSpec::new("org_01sdk", &["gsk-one"]).rpm(1).rpd(50)],
    )
    .await;
    let azure = start(
        LimitFlavor::Azure,
        vec![ScopeSpec::new("aoai-sdk", &["az-one"]).rpm(6)],
    )
    .await;
    let gemini = MockServer::start(MockOptions {
        flavor: LimitFlavor::Gemini,
        scopes: vec![ScopeSpec::new("projects/sdk", &["AIza-one"]).rpm(1)],
        models: vec!["gemini-2.0-flash".into()],
        ..MockOptions::default()
    })
    .await
    .unwrap();
    gemini.revoke_key("AIza-revoked");
    let anthropic = start(
        LimitFlavor::OpenAi,
        vec![ScopeSpec::new("org-ant", &["sk-ant"]).rpm(1)],
    )
    .await;
    anthropic.revoke_key("sk-ant-dead");
    let busy = start(LimitFlavor::OpenAi, Vec::new()).await;
    busy.set_overloaded(true);

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/limits_check.py");
    let envs = [
        ("OPENAI_BASE", openai.base_url()),
        ("GROQ_BASE", groq.base_url()),
        ("AZURE_BASE", azure.base_url()),
        ("GEMINI_BASE", gemini.base_url()),
        ("ANTHROPIC_BASE", anthropic.base_url()),
        ("BUSY_BASE", busy.base_url()),
    ];
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(python);
        cmd.arg(script)
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .env_remove("ANTHROPIC_API_KEY")
            .env_remove("ANTHROPIC_BASE_URL");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.output()
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
}
