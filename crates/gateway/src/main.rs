use clap::Parser;
use llmux::cli::{Cli, Command};

mod allocator;

#[global_allocator]
static GLOBAL: allocator::MiMalloc = allocator::MiMalloc;

fn init_tracing() {
    let debug = std::env::var("DEBUG")
        .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
        .unwrap_or(false);
    let default = if debug { "debug" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn main() {
    let cli = Cli::parse();
    init_tracing();
    // One process-wide TLS crypto provider; ignore "already installed".
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // Single-threaded: `serve` adds one thread per extra server worker (server::listen).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = runtime.block_on(async {
        match cli.command {
            Command::Serve {
                config,
                host,
                port,
                demo,
                workers,
            } => {
                let host = if demo && std::env::var_os("HOST").is_none() && host == "0.0.0.0" {
                    // The demo key is public: keep the demo on loopback unless asked otherwise.
                    "127.0.0.1".to_string()
                } else {
                    host
                };
                llmux::cli::serve(config, host, port, demo, workers).await
            }
            Command::Check { config } => llmux::cli::check(config).await,
        }
    });
    std::process::exit(code);
}
