//! Prints the key-pool simulation table (keys.md §b.6): every scenario × scheduler × load, on
//! virtual time, deterministic from the seed.
//!
//! `cargo run --release -p llmux --bin keypool-sim [-- --short] [--seed N] [--seeds N]
//! [--scenario S2] [--rho 0.9,1.5]`: the full table for the first seed; with `--seeds N > 1`
//! also mean ± 95 % CI over seeds `seed..seed+N`.

use std::process::ExitCode;

use llmux::sim::{self, Kind, Metrics, Scenario, Timeline};

fn main() -> ExitCode {
    let mut timeline = Timeline::full();
    let mut seed = 1u64;
    let mut seeds = 1u64;
    let mut only: Option<String> = None;
    let mut rhos = vec![0.9, 1.5];
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--short" => timeline = Timeline::short(),
            "--seed" => match args.next().and_then(|v| v.parse().ok()) {
                Some(s) => seed = s,
                None => return usage("--seed needs a number"),
            },
            "--seeds" => match args.next().and_then(|v| v.parse().ok()) {
                Some(n) if n >= 1 => seeds = n,
                _ => return usage("--seeds needs a number >= 1"),
            },
            "--scenario" => only = args.next(),
            "--rho" => {
                let parsed: Option<Vec<f64>> = args
                    .next()
                    .and_then(|v| v.split(',').map(|x| x.trim().parse().ok()).collect());
                match parsed {
                    Some(r) if !r.is_empty() => rhos = r,
                    _ => return usage("--rho needs numbers like 0.9,1.5"),
                }
            }
            "-h" | "--help" => return usage(""),
            other => return usage(&format!("unknown argument `{other}`")),
        }
    }
    let scenarios: Vec<Scenario> = Scenario::all(&timeline)
        .into_iter()
        .filter(|s| only.as_deref().is_none_or(|o| o.eq_ignore_ascii_case(s.id)))
        .collect();
    if scenarios.is_empty() {
        return usage("no such scenario (S1, S2, S3, S4, S5, S8, S9)");
    }
    println!(
        "# Key-pool simulation (seed {seed}; warm-up {} s, measured {} s)\n",
        timeline.warmup / 1_000_000_000,
        timeline.measure / 1_000_000_000
    );
    for s in &scenarios {
        let mean = s.mean_billed();
        let unloaded = s.workload.unloaded_latency(&[0.5, 0.99]);
        println!(
            "- {}: {} — capacity {:.2} req/s ({}-bound; {:.0} billed tokens per request), unloaded p50/p99 {:.2}/{:.2} s",
            s.id,
            s.title,
            s.capacity_rps(mean),
            if s.tokens_bind(mean) { "TPM" } else { "RPM" },
            mean,
            unloaded.first().copied().unwrap_or_default(),
            unloaded.get(1).copied().unwrap_or_default(),
        );
    }
    println!();
    let mut first_seed = Vec::new();
    let mut by_config: Vec<Vec<Metrics>> = Vec::new();
    let mut timings = Vec::new();
    let total = std::time::Instant::now();
    for s in &scenarios {
        for &rho in &rhos {
            for kind in Kind::ALL {
                let mut all = Vec::new();
                for k in 0..seeds {
                    let report = sim::run(s, kind, rho, seed + k);
                    if k == 0 {
                        timings.push(format!(
                            "{} {} ρ={rho}: {} events in {:.2} s",
                            s.id,
                            kind.name(),
                            report.events,
                            report.wall.as_secs_f64()
                        ));
                        eprint!("{}", sim::table_row(&report.metrics));
                        first_seed.push(report.metrics.clone());
                    }
                    all.push(report.metrics);
                }
                by_config.push(all);
            }
        }
    }
    print!("{}", sim::table(&first_seed));
    if seeds > 1 {
        println!(
            "\n## Mean ± 95 % CI over seeds {seed}..{}\n",
            seed + seeds - 1
        );
        print!("{}", sim::summary_table(&by_config));
    }
    println!("\nWall time: {:.1} s", total.elapsed().as_secs_f64());
    println!("\nFirst seed, per run:");
    for t in timings {
        println!("- {t}");
    }
    ExitCode::SUCCESS
}

fn usage(problem: &str) -> ExitCode {
    if !problem.is_empty() {
        eprintln!("keypool-sim: {problem}");
    }
    eprintln!(
        "usage: keypool-sim [--short] [--seed N] [--seeds N] [--scenario S1|S2|S3|S4|S5|S8|S9] [--rho 0.9,1.5]"
    );
    if problem.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    }
}
