//! `fault-matrix`: the long variant of the fault matrix and the deadline checks; prints
//! markdown (the tables in RELIABILITY.md) on stdout and progress on stderr. Exits 1 when a
//! check failed (an acknowledged message lost, a send not resolved, a deadline missed, …).
//!
//! ```sh
//! cargo build --release -p faults -p edgemodule-hub -p edgemodule-ffi
//! target/release/fault-matrix                       # N = 10,000, 10 s stall, every binding
//! target/release/fault-matrix --bindings rust,python --scenarios cuts,kill9 --n 2000
//! target/release/fault-matrix --short               # the test command's sizes
//! ```
//!
//! Options: `--n N`, `--rate MSG_PER_S` (0 = as fast as the window allows), `--stall SECONDS`, `--bindings rust,c,python,node`,
//! `--scenarios cuts,stall,kill9,token_ttl`, `--transports mqtt`, `--no-deadlines`,
//! `--deadlines-only`, `--margin-ms MS` (how late a call may return; default 500), `--short`.

use std::time::{Duration, Instant};

use faults::bindings::{prepare, Binding, Env, Prepared, Transport};
use faults::deadlines::{self, DeadlineReport};
use faults::matrix::{self, Plan, Report, Scenario};

struct Args {
    plan: Plan,
    bindings: Vec<Binding>,
    scenarios: Vec<Scenario>,
    transports: Vec<Transport>,
    matrix: bool,
    deadlines: bool,
    margin: Duration,
}

fn list<T>(s: &str, parse: impl Fn(&str) -> Option<T>, what: &str) -> Result<Vec<T>, String> {
    s.split(',').map(|x| parse(x.trim()).ok_or_else(|| format!("unknown {what} '{x}'"))).collect()
}

fn parse_args() -> Result<Args, String> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut a = Args {
        plan: if argv.iter().any(|x| x == "--short") { Plan::short() } else { Plan::long() },
        bindings: Binding::ALL.to_vec(),
        scenarios: Scenario::ALL.to_vec(),
        transports: Transport::ALL.to_vec(),
        matrix: true,
        deadlines: true,
        margin: Duration::from_millis(500),
    };
    let mut it = argv.into_iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--short" => {}
            "--n" => a.plan.n = value()?.parse().map_err(|_| "bad --n")?,
            "--rate" => a.plan.rate = value()?.parse().map_err(|_| "bad --rate")?,
            "--stall" => a.plan.stall = Duration::from_secs_f64(value()?.parse().map_err(|_| "bad --stall")?),
            "--bindings" => a.bindings = list(&value()?, Binding::parse, "binding")?,
            "--scenarios" => a.scenarios = list(&value()?, Scenario::parse, "scenario")?,
            "--transports" => a.transports = list(&value()?, Transport::parse, "transport")?,
            "--margin-ms" => a.margin = Duration::from_millis(value()?.parse().map_err(|_| "bad --margin-ms")?),
            "--no-deadlines" => a.deadlines = false,
            "--deadlines-only" => a.matrix = false,
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    if a.plan.n < 100 {
        return Err("--n must be at least 100".into());
    }
    Ok(a)
}

fn main() {
    faults::agent_rust::run_if_requested();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("fault-matrix: {e}");
            std::process::exit(2);
        }
    };
    let env = Env::detect();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let started = Instant::now();
    let mut failed = false;
    let mut reports: Vec<Report> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let command: Vec<String> = std::env::args().skip(1).collect();

    println!(
        "## Fault matrix (`{}`)",
        ["fault-matrix".to_string()].iter().chain(&command).cloned().collect::<Vec<_>>().join(" ")
    );
    println!();
    println!(
        "N = {} QoS 1 messages per cell at {} msg/s ({} msg/s with short-lived tokens), sender → route → receiver (Rust core), at most {} unacknowledged, build profile `{}`.",
        args.plan.n, args.plan.rate, args.plan.ttl_rate, args.plan.window, env.profile
    );
    println!();
    if args.matrix {
        for transport in &args.transports {
            for binding in &args.bindings {
                let program = match prepare(&env, *binding) {
                    Prepared::Ready(p) => p,
                    Prepared::Skip(why) | Prepared::Broken(why) => {
                        notes.push(format!("{}: not run ({why})", binding.label()));
                        failed = true;
                        continue;
                    }
                };
                for scenario in &args.scenarios {
                    eprintln!("fault-matrix: {} {} {} …", binding.name(), transport.name(), scenario.name());
                    let r = rt.block_on(matrix::run(&env, &program, *binding, *transport, *scenario, &args.plan));
                    match r {
                        Ok(report) => {
                            eprintln!("{}", report.table_row(&args.plan));
                            failed |= !report.passed();
                            reports.push(report);
                        }
                        Err(e) if e.starts_with("skip: ") => {
                            notes.push(format!("{} / {} / {}: {e}", binding.label(), transport.name(), scenario.name()))
                        }
                        Err(e) => {
                            eprintln!("{e}");
                            let first = e.lines().next().unwrap_or("").to_string();
                            notes.push(format!("{} / {}: ERROR {first}", binding.label(), scenario.name()));
                            failed = true;
                        }
                    }
                }
            }
        }
        println!("{}", Report::table_header());
        for r in &reports {
            println!("{}", r.table_row(&args.plan));
        }
        println!();
        println!("Time to recover: fault end (cut, end of the stall, hub listening again, token-renewal disconnect) → the sender's first acknowledgement after it was connected again; the maximum over the cell's faults.");
        println!();
    }
    if args.deadlines {
        let mut rows = Vec::new();
        for binding in &args.bindings {
            let Prepared::Ready(program) = prepare(&env, *binding) else { continue };
            eprintln!("fault-matrix: deadlines {} …", binding.name());
            match rt.block_on(deadlines::run(&env, &program, *binding, Transport::Mqtt, args.margin)) {
                Ok(r) => {
                    failed |= !r.passed();
                    if !r.passed() {
                        notes.push(format!("{} deadlines: {}", binding.label(), r.problems.join("; ")));
                    }
                    rows.push(r);
                }
                Err(e) if e.starts_with("skip: ") => notes.push(format!("{} deadlines: {e}", binding.label())),
                Err(e) => {
                    eprintln!("{e}");
                    notes.push(format!("{} deadlines: ERROR {}", binding.label(), e.lines().next().unwrap_or("")));
                    failed = true;
                }
            }
        }
        println!(
            "## Deadlines against a stalled hub (deadline {} ms, margin {} ms)",
            deadlines::DEADLINE.as_millis(),
            args.margin.as_millis()
        );
        println!();
        println!("{}", DeadlineReport::table_header());
        for r in &rows {
            println!("{}", r.table_rows());
        }
        println!();
    }
    for n in &notes {
        println!("- {n}");
    }
    println!(
        "total run time {:.0} s; result: {}",
        started.elapsed().as_secs_f64(),
        if failed { "FAIL" } else { "PASS" }
    );
    std::process::exit(i32::from(failed));
}
