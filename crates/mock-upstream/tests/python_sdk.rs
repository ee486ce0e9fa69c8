//! Runs the official `openai` Python SDK against the mock, when available.
//!
//! Looks for `$OPENAI_SDK_PYTHON`, else `/tmp/oaivenv/bin/python` (create it
//! with `python3 -m venv /tmp/oaivenv && /tmp/oaivenv/bin/pip install openai`).
//! Without it the test prints a note and passes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

use mock_upstream::{Fault, FaultKind, MockOptions, MockServer};

fn sdk_python() -> Option<PathBuf> {
    let python = std::env::var_os("OPENAI_SDK_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/oaivenv/bin/python"));
    if !python.exists() {
        return None;
    }
    let has_sdk = Command::new(&python)
        .args(["-c", "import openai"])
        .status()
        .is_ok_and(|s| s.success());
    has_sdk.then_some(python)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdk_accepts_the_mock() {
    let Some(python) = sdk_python() else {
        println!("skipping: no Python with the `openai` package (set OPENAI_SDK_PYTHON)");
        return;
    };
    let server = MockServer::start(MockOptions::default()).await.unwrap();
    server.push_fault(Fault::new(FaultKind::InvalidKey).for_key("sk-bad"));
    server.push_fault(
        Fault::new(FaultKind::RateLimited {
            retry_after_secs: 1,
        })
        .for_key("sk-limited"),
    );
    server.push_fault(Fault::new(FaultKind::ServerError).for_key("sk-flaky"));

    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/python/sdk_check.py");
    let base = server.base_url();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .arg(script)
            .env("MOCK_BASE_URL", base)
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
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
}
