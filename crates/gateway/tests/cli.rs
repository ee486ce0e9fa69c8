//! The `llmux` binary's command-line contract.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

fn llmux() -> Command {
    Command::new(env!("CARGO_BIN_EXE_llmux"))
}

fn fixture(name: &str) -> String {
    format!(
        "{}/tests/fixtures/config/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn check_accepts_the_uni_api_readme_config() {
    let out = llmux()
        .args(["check", "--config", &fixture("uni-api-readme.yaml")])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(": ok ("), "{stdout}");
}

#[test]
fn check_reports_every_problem_with_file_line_col_and_key() {
    let path = fixture("broken.yaml");
    let out = llmux().args(["check", "--config", &path]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let expected = [
        "9:27: providers[0].preferences.api_key_rate_limit: invalid rate limit \"15/mins\"",
        "10:14: providers[0].preferences.proxy: expected a proxy URL",
        "11:5: providers[1]: duplicate provider name \"openai\"",
        "14:5: providers[2]: missing `provider`",
        "16:5: providers[3]: missing `base_url`",
        "22:19: api_keys[0].model[0][\"openai/*\"]: a weight must be a positive whole number, found 0",
        "24:16: api_keys[0].preferences.credits:",
        "25:19: api_keys[0].preferences.created_at:",
        "26:5: api_keys[1]: duplicate client key",
        "27:5: api_keys[2]: missing `api`",
        "32:13: preferences.model_price.gpt-4o:",
        "33:27: preferences.max_request_body_bytes:",
        "34:3: warning: preferences.cooldown_periodd: unknown key",
    ];
    let lines: Vec<&str> = stdout.lines().collect();
    for (i, want) in expected.iter().enumerate() {
        let line = lines
            .get(i)
            .unwrap_or_else(|| panic!("missing line {i}: {stdout}"));
        assert_eq!(
            line.strip_prefix(&format!("{path}:"))
                .map(|rest| rest.starts_with(want)),
            Some(true),
            "line {i}: {line}\nwanted: {want}"
        );
    }
    assert!(stdout.contains("12 error(s)"), "{stdout}");
}

#[test]
fn check_reports_a_missing_file_and_a_key_cycle() {
    let out = llmux()
        .args(["check", "--config", "/nonexistent/api.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("/nonexistent/api.yaml"));

    let dir = std::env::temp_dir().join(format!("llmux-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("cycle.yaml");
    std::fs::write(
        &cfg,
        "providers:\n  - provider: p\n    base_url: http://127.0.0.1:1/v1\n    api: sk-x-0000000000\n    model: [m]\napi_keys:\n  - api: sk-key-a-111111111111\n    model: [sk-key-b-222222222222/*]\n  - api: sk-key-b-222222222222\n    model: [sk-key-a-111111111111/*]\n",
    )
    .unwrap();
    let out = llmux()
        .args(["check", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("cycle") && stdout.contains("sk-...1111") && stdout.contains("sk-...2222"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("sk-key-a-111111111111"),
        "secret printed: {stdout}"
    );
}

#[test]
fn config_url_is_used_when_the_file_is_absent() {
    let dir = std::env::temp_dir().join(format!("llmux-cfgurl-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = llmux()
        .current_dir(&dir)
        .env("CONFIG_URL", fixture("minimal.yaml"))
        .args(["check"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("minimal.yaml: ok"), "{stdout}");
}

#[test]
fn interpolates_environment_variables() {
    let dir = std::env::temp_dir().join(format!("llmux-env-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = dir.join("env.yaml");
    std::fs::write(
        &cfg,
        "providers:\n  - provider: p\n    base_url: ${LLMUX_TEST_BASE:-http://127.0.0.1:1/v1}\n    api: ${LLMUX_TEST_KEY}\n    model: [m]\napi_keys:\n  - api: ${LLMUX_TEST_CLIENT}\n",
    )
    .unwrap();
    let out = llmux()
        .env("LLMUX_TEST_KEY", "sk-from-env-000000")
        .env("LLMUX_TEST_CLIENT", "sk-client-from-env-1")
        .args(["check", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("0 warnings"), "{stdout}");
}
