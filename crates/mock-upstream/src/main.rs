//! `mock-upstream`: the OpenAI mock as a standalone server for load tests.
//!
//! ```text
//! mock-upstream [--host 127.0.0.1] [--port 9000] [--latency-ms 0]
//!               [--chunk-delay-ms 0] [--reply TEXT] [--rpm N]
//! ```

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mock_upstream::{MockOptions, MockServer};

const USAGE: &str = "usage: mock-upstream [--host 127.0.0.1] [--port 9000] [--latency-ms 0] [--chunk-delay-ms 0] [--reply TEXT] [--rpm N]";

struct Args {
    host: String,
    port: u16,
    opts: MockOptions,
}

fn parse_num<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("invalid value for {flag}: {value:?}"))
}

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut args = Args {
        host: "127.0.0.1".to_owned(),
        port: 9000,
        // Recording every request would grow without bound under load.
        opts: MockOptions {
            record: false,
            ..MockOptions::default()
        },
    };
    while let Some(arg) = argv.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (arg, None),
        };
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        const FLAGS: [&str; 6] = [
            "--host",
            "--port",
            "--latency-ms",
            "--chunk-delay-ms",
            "--reply",
            "--rpm",
        ];
        if !FLAGS.contains(&flag.as_str()) {
            return Err(format!("unknown argument: {flag}"));
        }
        let value = match inline {
            Some(v) => v,
            None => argv
                .next()
                .ok_or_else(|| format!("missing value for {flag}"))?,
        };
        match flag.as_str() {
            "--host" => args.host = value,
            "--port" => args.port = parse_num(&flag, &value)?,
            "--latency-ms" => args.opts.latency = Duration::from_millis(parse_num(&flag, &value)?),
            "--chunk-delay-ms" => {
                args.opts.chunk_delay = Duration::from_millis(parse_num(&flag, &value)?);
            }
            "--reply" => args.opts.reply = Some(value),
            "--rpm" => args.opts.rpm_per_key = Some(parse_num(&flag, &value)?),
            _ => return Err(format!("unknown argument: {flag}")),
        }
    }
    Ok(Some(args))
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[tokio::main]
async fn main() {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return;
        }
        Err(e) => {
            eprintln!("mock-upstream: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let ip: IpAddr = match args.host.parse() {
        Ok(ip) => ip,
        Err(_) if args.host == "localhost" => IpAddr::from([127, 0, 0, 1]),
        Err(_) => {
            eprintln!(
                "mock-upstream: --host must be an IP address, got {:?}",
                args.host
            );
            std::process::exit(2);
        }
    };
    let server = match MockServer::start_on(SocketAddr::new(ip, args.port), args.opts).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "mock-upstream: cannot listen on {}:{}: {e}",
                args.host, args.port
            );
            std::process::exit(1);
        }
    };
    println!(
        "mock-upstream listening on http://{}:{}/v1",
        args.host,
        server.addr().port()
    );
    // Scripts wait for this line; stdout may be a pipe, so flush it now.
    let _ = std::io::stdout().flush();
    shutdown_signal().await;
    eprintln!(
        "mock-upstream: shutting down after {} requests",
        server.request_count()
    );
    drop(server);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn parse(list: &[&str]) -> Result<Option<Args>, String> {
        parse_args(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_all_flags() {
        let a = parse(&[
            "--host",
            "0.0.0.0",
            "--port=1234",
            "--latency-ms",
            "5",
            "--chunk-delay-ms",
            "7",
            "--reply",
            "hi there",
            "--rpm",
            "60",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(a.host, "0.0.0.0");
        assert_eq!(a.port, 1234);
        assert_eq!(a.opts.latency, Duration::from_millis(5));
        assert_eq!(a.opts.chunk_delay, Duration::from_millis(7));
        assert_eq!(a.opts.reply.as_deref(), Some("hi there"));
        assert_eq!(a.opts.rpm_per_key, Some(60));
        assert!(!a.opts.record);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(parse(&["--port", "x"]).is_err());
        assert_eq!(
            parse(&["--bogus"]).err().as_deref(),
            Some("unknown argument: --bogus")
        );
        assert!(parse(&["--port"]).is_err());
        assert!(parse(&["--help"]).unwrap().is_none());
    }
}
