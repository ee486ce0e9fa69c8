//! `mock-upstream`: the provider mock as a standalone server for load tests.
//! Every format's routes are always on: OpenAI under `/v1`, Anthropic at
//! `/v1/messages`, Gemini under `/v1beta/models/...` (and `/v1/models/...`),
//! Azure under `/openai/...` and `/models/...` (see the library docs).
//!
//! ```text
//! mock-upstream [--host 127.0.0.1] [--port 9000] [--latency-ms 0]
//!               [--chunk-delay-ms 0] [--token-delay-ms 0] [--reply TEXT]
//!               [--rpm N] [--flavor openai|groq|azure|gemini|anthropic]
//!               [--scope NAME:KEY1,KEY2[:rpm=60,tpm=40000,rpd=1000]]...
//!               [--revoked KEY]... [--exhausted KEY]... [--refused-requests-count]
//!               [--admin]
//! ```
//!
//! `--admin` serves the `/mock/` control routes (revoke/restore/exhaust/
//! replenish a key, overload storms, per-key counters; see
//! `MockOptions::admin`), so a wall-clock benchmark can script key churn.
//!
//! `--scope` is repeatable: each one is a quota scope (organization,
//! project, deployment) whose keys share its limits. At shutdown the per-key
//! counters are printed to stderr, one line per key.

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mock_upstream::{LimitFlavor, MockOptions, MockServer, ScopeSpec};

const USAGE: &str = "usage: mock-upstream [--host 127.0.0.1] [--port 9000] [--latency-ms 0] [--chunk-delay-ms 0] [--token-delay-ms 0] [--reply TEXT] [--rpm N] [--flavor openai|groq|azure|gemini|anthropic] [--scope NAME:KEY1,KEY2[:rpm=60,tpm=40000,rpd=1000]]... [--revoked KEY]... [--exhausted KEY]... [--refused-requests-count] [--admin]";

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

/// `NAME:KEY1,KEY2[:rpm=60,tpm=40000,rpd=1000]`.
fn parse_scope(value: &str) -> Result<ScopeSpec, String> {
    let bad = |why: &str| format!("invalid --scope {value:?}: {why}");
    let mut parts = value.splitn(3, ':');
    let name = parts.next().unwrap_or("").trim();
    if name.is_empty() {
        return Err(bad("missing scope name"));
    }
    let keys: Vec<String> = parts
        .next()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .collect();
    if keys.is_empty() {
        return Err(bad("no keys"));
    }
    let mut scope = ScopeSpec {
        name: name.to_owned(),
        keys,
        rpm: None,
        tpm: None,
        rpd: None,
    };
    for limit in parts
        .next()
        .unwrap_or("")
        .split(',')
        .filter(|l| !l.is_empty())
    {
        let Some((k, v)) = limit.split_once('=') else {
            return Err(bad(&format!("expected LIMIT=N, got {limit:?}")));
        };
        let n = |what: &str| bad(&format!("{what} must be a number, got {v:?}"));
        match k.trim() {
            "rpm" => scope.rpm = Some(v.trim().parse().map_err(|_| n("rpm"))?),
            "tpm" => scope.tpm = Some(v.trim().parse().map_err(|_| n("tpm"))?),
            "rpd" => scope.rpd = Some(v.trim().parse().map_err(|_| n("rpd"))?),
            other => return Err(bad(&format!("unknown limit {other:?} (rpm, tpm, rpd)"))),
        }
    }
    Ok(scope)
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
        if flag == "--refused-requests-count" && inline.is_none() {
            args.opts.refused_requests_count = true;
            continue;
        }
        if flag == "--admin" && inline.is_none() {
            args.opts.admin = true;
            continue;
        }
        const FLAGS: [&str; 11] = [
            "--host",
            "--port",
            "--latency-ms",
            "--chunk-delay-ms",
            "--token-delay-ms",
            "--reply",
            "--rpm",
            "--flavor",
            "--scope",
            "--revoked",
            "--exhausted",
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
            "--token-delay-ms" => {
                args.opts.token_delay = Duration::from_millis(parse_num(&flag, &value)?);
            }
            "--reply" => args.opts.reply = Some(value),
            "--rpm" => args.opts.rpm_per_key = Some(parse_num(&flag, &value)?),
            "--flavor" => args.opts.flavor = value.parse::<LimitFlavor>()?,
            "--scope" => args.opts.scopes.push(parse_scope(&value)?),
            "--revoked" => args.opts.revoked_keys.push(value),
            "--exhausted" => args.opts.exhausted_keys.push(value),
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
    // Scripts parse this line: keep its shape.
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
    for (key, s) in server.key_stats() {
        eprintln!(
            "mock-upstream: key {key}: received {} ok {} rate_limited {} unauthorized {} other_errors {}",
            s.received, s.ok, s.rate_limited, s.unauthorized, s.other_errors
        );
    }
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
        assert_eq!(a.opts.flavor, LimitFlavor::OpenAi);
        assert!(a.opts.scopes.is_empty());
    }

    #[test]
    fn parses_key_pool_flags() {
        let a = parse(&[
            "--flavor",
            "gemini",
            "--scope",
            "org-a:k1,k2:rpm=60,tpm=40000,rpd=1000",
            "--scope=org-b:k3",
            "--token-delay-ms",
            "20",
            "--revoked",
            "k9",
            "--exhausted=k8",
            "--refused-requests-count",
            "--admin",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(a.opts.flavor, LimitFlavor::Gemini);
        assert_eq!(a.opts.token_delay, Duration::from_millis(20));
        assert_eq!(a.opts.scopes.len(), 2);
        let s = &a.opts.scopes[0];
        assert_eq!(s.name, "org-a");
        assert_eq!(s.keys, vec!["k1", "k2"]);
        assert_eq!((s.rpm, s.tpm, s.rpd), (Some(60), Some(40_000), Some(1000)));
        let s = &a.opts.scopes[1];
        assert_eq!((s.name.as_str(), s.keys.len()), ("org-b", 1));
        assert_eq!((s.rpm, s.tpm, s.rpd), (None, None, None));
        assert_eq!(a.opts.revoked_keys, vec!["k9"]);
        assert_eq!(a.opts.exhausted_keys, vec!["k8"]);
        assert!(a.opts.refused_requests_count);
        assert!(a.opts.admin);
        for f in ["openai", "groq", "azure", "anthropic", "Gemini"] {
            assert!(parse(&["--flavor", f]).is_ok(), "{f}");
        }
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
        assert!(parse(&["--flavor", "bedrock"]).is_err());
        for bad in [
            ":k1",
            "org",
            "org:",
            "org:k1:rpm",
            "org:k1:rpm=x",
            "org:k1:qps=3",
        ] {
            assert!(parse(&["--scope", bad]).is_err(), "{bad}");
        }
    }
}
