//! Command line: `llmux serve`, `llmux check`. Loading a config (file, or `CONFIG_URL` as a path
//! or http(s) URL) and turning it into a runtime lives here so both commands share it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::app::{App, ConfigSource};
use crate::config::{self, Diagnostic, Severity};
use crate::providers::client::UpstreamClient;
use crate::providers::demo;
use crate::runtime::Runtime;

#[derive(Debug, Parser)]
#[command(
    name = "llmux",
    version,
    about = "One OpenAI-compatible endpoint in front of many LLM providers and keys."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve {
        /// Config file (uni-api api.yaml format). Default ./api.yaml; when absent, env CONFIG_URL.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Address to listen on.
        #[arg(long, env = "HOST", default_value = "0.0.0.0")]
        host: String,
        /// Port to listen on.
        #[arg(long, short, env = "PORT", default_value_t = 8000)]
        port: u16,
        /// Run with the built-in demo provider and client key; no config, no network.
        #[arg(long)]
        demo: bool,
        /// Server worker threads, each serving its own connections. Default: one per CPU core.
        #[arg(long, env = "WORKERS")]
        workers: Option<usize>,
    },
    /// Validate a config and print every problem as file:line:col: key: problem.
    Check {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// Where the config text came from, for diagnostics and reloads.
pub struct ConfigText {
    pub name: String,
    pub text: String,
    pub source: ConfigSource,
}

const DEFAULT_CONFIG: &str = "api.yaml";

/// Read the config: the given path, else ./api.yaml, else CONFIG_URL (path or http(s) URL).
pub async fn read_config(
    path: Option<PathBuf>,
    client: &UpstreamClient,
) -> Result<ConfigText, String> {
    let explicit = path.is_some();
    let path = path.unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG));
    match std::fs::read_to_string(&path) {
        Ok(text) if explicit || !text.trim().is_empty() => {
            return Ok(ConfigText {
                name: path.display().to_string(),
                text,
                source: ConfigSource::File(path),
            });
        }
        Ok(_) => {}
        Err(e) if explicit => return Err(format!("{}: cannot read config: {e}", path.display())),
        Err(_) => {}
    }
    let Ok(url) = std::env::var("CONFIG_URL") else {
        return Err(format!(
            "{}: config file not found (pass --config, or set CONFIG_URL; `llmux serve --demo` runs without one)",
            path.display()
        ));
    };
    let source = if url.starts_with("http://") || url.starts_with("https://") {
        ConfigSource::Url(url)
    } else {
        let p = url.strip_prefix("file://").unwrap_or(&url);
        ConfigSource::File(PathBuf::from(p))
    };
    read_source(&source, client).await
}

/// Read the config again from where it came from.
pub async fn read_source(
    source: &ConfigSource,
    client: &UpstreamClient,
) -> Result<ConfigText, String> {
    match source {
        ConfigSource::Url(url) => {
            let (status, body) = client
                .get_text(url, &[], Duration::from_secs(100))
                .await
                .map_err(|e| format!("CONFIG_URL {url}: {e}"))?;
            if !(200..300).contains(&status) {
                return Err(format!("CONFIG_URL {url}: HTTP {status}"));
            }
            let text = String::from_utf8(body.to_vec())
                .map_err(|_| format!("CONFIG_URL {url}: not UTF-8 text"))?;
            Ok(ConfigText {
                name: url.clone(),
                text,
                source: source.clone(),
            })
        }
        ConfigSource::File(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| format!("{}: cannot read config: {e}", p.display()))?;
            Ok(ConfigText {
                name: p.display().to_string(),
                text,
                source: source.clone(),
            })
        }
    }
}

/// `TIMEOUT` env in seconds (uni-api), default 100.
pub fn default_timeout() -> Duration {
    std::env::var("TIMEOUT")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(Duration::from_secs(100))
}

fn env_lookup(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Parse, discover models, compile (carrying key pools over from `previous` on a reload).
/// Diagnostics are returned for the caller to print.
pub async fn build_runtime(
    text: &ConfigText,
    client: &UpstreamClient,
    discover: bool,
    previous: Option<&Runtime>,
) -> Result<(Runtime, Vec<Diagnostic>), Vec<Diagnostic>> {
    let loaded = config::parse_config(&text.text, &text.name, &env_lookup)?;
    let mut warnings = loaded.warnings;
    let mut cfg = loaded.config;
    if discover {
        for w in crate::providers::discovery::discover_models(&mut cfg, client).await {
            tracing::warn!("{w}");
        }
    }
    let (rt, mut more) = match previous {
        Some(prev) => Runtime::recompile(&cfg, &text.name, default_timeout(), prev)?,
        None => Runtime::compile(&cfg, &text.name, default_timeout())?,
    };
    warnings.append(&mut more);
    Ok((rt, warnings))
}

fn print_diagnostics(diags: &[Diagnostic]) {
    for d in diags {
        match d.severity {
            Severity::Error => tracing::error!("{d}"),
            Severity::Warning => tracing::warn!("{d}"),
        }
    }
}

/// `llmux check`: exit code 0 when valid, 1 otherwise.
pub async fn check(path: Option<PathBuf>) -> i32 {
    let client = match UpstreamClient::new() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot start the HTTP client: {e}");
            return 1;
        }
    };
    let text = match read_config(path, &client).await {
        Ok(t) => t,
        Err(e) => {
            println!("{e}");
            return 1;
        }
    };
    match build_runtime(&text, &client, false, None).await {
        Ok((rt, warnings)) => {
            for w in &warnings {
                println!("{w}");
            }
            println!(
                "{}: ok ({} providers, {} client keys, {} warnings)",
                text.name,
                rt.channels.len(),
                rt.keys.len(),
                warnings.len()
            );
            0
        }
        Err(diags) => {
            for d in &diags {
                println!("{d}");
            }
            let errors = diags
                .iter()
                .filter(|d| d.severity == Severity::Error)
                .count();
            println!("{}: {errors} error(s)", text.name);
            1
        }
    }
}

/// How long the usage store may take, after the HTTP server has drained, to write what is
/// still queued (what does not fit is counted as dropped).
const USAGE_FLUSH_DEADLINE: Duration = Duration::from_secs(10);

/// The usage store from the environment (`DISABLE_DATABASE`, `DB_*`, ...); the demo runs
/// without one.
async fn start_usage(demo_mode: bool) -> Result<crate::store::UsageService, String> {
    use crate::store::{StoreConfig, UsageService};
    if demo_mode {
        return Ok(UsageService::disabled());
    }
    let cfg = StoreConfig::from_env().map_err(|e| e.to_string())?;
    UsageService::start(cfg).await.map_err(|e| e.to_string())
}

fn shutdown_grace() -> Duration {
    std::env::var("SHUTDOWN_GRACE")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(30))
}

/// `llmux serve`.
pub async fn serve(
    config: Option<PathBuf>,
    host: String,
    port: u16,
    demo_mode: bool,
    workers: Option<usize>,
) -> i32 {
    let workers = workers.filter(|&n| n > 0).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let client = match UpstreamClient::with_workers(workers) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("cannot start the HTTP client: {e}");
            return 1;
        }
    };
    let mut source = None;
    let runtime = if demo_mode {
        match Runtime::compile(&demo::demo_config(), "<demo>", default_timeout()) {
            Ok((rt, _)) => rt,
            Err(diags) => {
                print_diagnostics(&diags);
                return 1;
            }
        }
    } else {
        let text = match read_config(config, &client).await {
            Ok(t) => t,
            Err(e) => {
                tracing::error!("{e}");
                return 1;
            }
        };
        source = Some(text.source.clone());
        match build_runtime(&text, &client, true, None).await {
            Ok((rt, warnings)) => {
                print_diagnostics(&warnings);
                rt
            }
            Err(diags) => {
                print_diagnostics(&diags);
                tracing::error!("{}: invalid config, not starting", text.name);
                return 1;
            }
        }
    };
    let providers = runtime.channels.len();
    let keys = runtime.keys.len();
    let state_path = (!demo_mode).then(crate::keypool::persist::default_path);
    if let Some(path) = &state_path {
        crate::upkeep::restore(&runtime, path);
    }
    let usage = match start_usage(demo_mode).await {
        Ok(u) => u,
        Err(e) => {
            tracing::error!("{e}");
            return 1;
        }
    };
    let app = App::with_source(runtime, client, source.clone(), Some(&usage));
    match crate::keypool::shared::Link::from_env() {
        Ok(Some(link)) => {
            app.share_key_pools(Arc::clone(&link));
            // Start on what the running instances know, but never wait long for Redis.
            if !link.wait_loaded(Duration::from_secs(2)).await {
                tracing::warn!(redis = %link.address(), "shared key-pool state not loaded yet; starting on local state");
            }
        }
        Ok(None) => {}
        Err(e) => {
            tracing::error!("{e}");
            return 1;
        }
    }
    let upkeep = tokio::spawn(crate::upkeep::run(Arc::clone(&app), state_path.clone()));
    let rankings = tokio::spawn(crate::upkeep::smart_rankings(Arc::clone(&app)));
    let mut reloaders = Vec::new();
    if let Some(src) = &source {
        reloaders.push(tokio::spawn(crate::reload::on_sighup(Arc::clone(&app))));
        if let ConfigSource::File(path) = src {
            reloaders.push(tokio::spawn(crate::reload::watch(
                Arc::clone(&app),
                path.clone(),
                crate::reload::POLL_EVERY,
            )));
        }
    }
    let listeners = match crate::server::listen::bind_workers(&host, port, workers).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot listen on {host}:{port}: {e}");
            return 1;
        }
    };
    let addr = listeners
        .first()
        .and_then(|l| l.local_addr().ok())
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(
        "llmux {} listening on http://{addr} ({providers} providers, {keys} client keys, {workers} workers)",
        env!("CARGO_PKG_VERSION")
    );
    if demo_mode {
        let shown = if host == "0.0.0.0" {
            "127.0.0.1"
        } else {
            host.as_str()
        };
        println!(
            "\nllmux demo is running. Try it:\n\n  curl http://{shown}:{port}/v1/chat/completions \\\n    -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n    -d '{{\"model\":\"{model}\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hello!\"}}]}}'\n\n(add \"stream\":true for a stream; models: {model}, {embed})\n",
            key = demo::DEMO_CLIENT_KEY,
            model = demo::DEMO_CHAT_MODEL,
            embed = demo::DEMO_EMBED_MODEL,
        );
    }
    crate::server::listen::serve_workers(
        Arc::clone(&app),
        listeners,
        crate::server::listen::shutdown_signal(),
        shutdown_grace(),
    )
    .await;
    upkeep.abort();
    rankings.abort();
    for r in reloaders {
        r.abort();
    }
    if let Some(path) = &state_path {
        crate::upkeep::save(&app.runtime(), path);
    }
    // Every finished request is queued by now (its record is handed over before its last
    // byte goes out); write them.
    usage.shutdown(USAGE_FLUSH_DEADLINE).await;
    0
}
