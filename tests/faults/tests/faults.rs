//! The short variants of the fault matrix and the deadline checks (README test command): one
//! test per scenario × binding × transport (`matrix::cuts::python::mqtt`, …; over the
//! transports other than MQTT only cuts and kill -9), one per binding for deadlines
//! (`deadlines::node`, …) and a self-test of the proxy. A binding whose toolchain or package is
//! missing is reported as ignored with the reason, or fails when FAULTS_REQUIRE_ALL=1 (the
//! test script sets it, after building every binding).
//!
//! Trials run one at a time unless `--test-threads` says otherwise: they measure time.

use std::time::Duration;

use faults::bindings::{prepare, Binding, Env, Prepared, Program, Transport};
use faults::matrix::{Plan, Scenario};
use faults::{deadlines, matrix};
use libtest_mimic::{Arguments, Completion, Failed, Trial};

/// How late a call may return after its deadline in the short run (a busy 2-core machine).
const DEADLINE_MARGIN: Duration = Duration::from_millis(500);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

fn program(env: &Env, binding: Binding) -> Result<Result<Program, Completion>, Failed> {
    match prepare(env, binding) {
        Prepared::Ready(p) => Ok(Ok(p)),
        Prepared::Broken(why) => Err(why.into()),
        Prepared::Skip(why) if std::env::var_os("FAULTS_REQUIRE_ALL").is_some() => {
            Err(format!("FAULTS_REQUIRE_ALL is set but {}: {why}", binding.name()).into())
        }
        Prepared::Skip(why) => Ok(Err(Completion::ignored_with(format!("{}: {why}", binding.name())))),
    }
}

fn matrix_trial(binding: Binding, scenario: Scenario, transport: Transport) -> Result<Completion, Failed> {
    let env = Env::detect();
    let program = match program(&env, binding)? {
        Ok(p) => p,
        Err(skip) => return Ok(skip),
    };
    let plan = Plan::short();
    let rt = runtime();
    let result = rt.block_on(matrix::run(&env, &program, binding, transport, scenario, &plan));
    rt.shutdown_timeout(Duration::from_secs(5));
    match result {
        Err(e) if e.starts_with("skip: ") => Ok(Completion::ignored_with(e)),
        Err(e) => Err(e.into()),
        Ok(report) => {
            println!("{}\n{}", matrix::Report::table_header(), report.table_row(&plan));
            if report.passed() {
                Ok(Completion::Completed)
            } else {
                Err(format!("{:?}", report).into())
            }
        }
    }
}

fn deadline_trial(binding: Binding) -> Result<Completion, Failed> {
    let env = Env::detect();
    let program = match program(&env, binding)? {
        Ok(p) => p,
        Err(skip) => return Ok(skip),
    };
    let rt = runtime();
    let result = rt.block_on(deadlines::run(&env, &program, binding, Transport::Mqtt, DEADLINE_MARGIN));
    rt.shutdown_timeout(Duration::from_secs(5));
    match result {
        Err(e) if e.starts_with("skip: ") => Ok(Completion::ignored_with(e)),
        Err(e) => Err(e.into()),
        Ok(report) => {
            println!("{}\n{}", deadlines::DeadlineReport::table_header(), report.table_rows());
            if report.passed() {
                Ok(Completion::Completed)
            } else {
                Err(report.problems.join("\n").into())
            }
        }
    }
}

async fn round_trip(c: &mut tokio::net::TcpStream, buf: &mut [u8; 2]) -> std::io::Result<Duration> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = std::time::Instant::now();
    c.write_all(b"hi").await?;
    c.read_exact(buf).await?;
    Ok(t.elapsed())
}

/// The proxy itself, against a loopback echo server: delay, stall, cut and refuse do what they
/// say.
fn proxy_trial() -> Result<(), Failed> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    runtime()
        .block_on(async {
            let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let echo_port = echo.local_addr()?.port();
            tokio::spawn(async move {
                while let Ok((mut s, _)) = echo.accept().await {
                    tokio::spawn(async move {
                        let (mut r, mut w) = s.split();
                        let _ = tokio::io::copy(&mut r, &mut w).await;
                    });
                }
            });
            let proxy = faults::proxy::Proxy::start(echo_port).await;
            let mut c = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port)).await?;
            let mut buf = [0u8; 2];
            round_trip(&mut c, &mut buf).await?;
            proxy.delay(Duration::from_millis(150));
            let took = round_trip(&mut c, &mut buf).await?;
            assert!(took >= Duration::from_millis(300), "two delayed hops took {took:?}");
            proxy.delay(Duration::ZERO);

            proxy.stall(true);
            c.write_all(b"hi").await?;
            let held = tokio::time::timeout(Duration::from_millis(300), c.read_exact(&mut buf)).await;
            assert!(held.is_err(), "bytes passed a stalled proxy");
            proxy.stall(false);
            tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut buf)).await??;
            assert_eq!(&buf, b"hi");

            proxy.cut_all();
            let n = tokio::time::timeout(Duration::from_secs(5), c.read(&mut buf)).await??;
            assert_eq!(n, 0, "a cut connection ends");

            proxy.refuse(true);
            let mut r = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port)).await?;
            let _ = r.write_all(b"hi").await;
            let n = tokio::time::timeout(Duration::from_secs(5), r.read(&mut buf)).await?.unwrap_or(0);
            assert_eq!(n, 0, "a refused connection is closed");
            proxy.refuse(false);
            let mut c = tokio::net::TcpStream::connect(("127.0.0.1", proxy.port)).await?;
            round_trip(&mut c, &mut buf).await?;
            assert_eq!(proxy.connections(), 2);
            Ok::<(), Box<dyn std::error::Error>>(())
        })
        .map_err(|e| e.to_string().into())
}

fn main() {
    faults::agent_rust::run_if_requested();
    let mut args = Arguments::from_args();
    if args.test_threads.is_none() {
        args.test_threads = Some(1);
    }
    let mut trials = vec![Trial::test("proxy::stall_delay_cut_refuse", proxy_trial)];
    // Every scenario over MQTT; over the other transports the two that exercise their own
    // reconnect path (cuts, hub kill -9), to keep the stage short. The long run covers all.
    for transport in Transport::ALL {
        for scenario in Scenario::ALL {
            if transport != Transport::Mqtt && !matches!(scenario, Scenario::Cuts | Scenario::Kill9) {
                continue;
            }
            for binding in Binding::ALL {
                let name = format!("matrix::{}::{}::{}", scenario.name(), binding.name(), transport.name());
                trials.push(Trial::ignorable_test(name, move || matrix_trial(binding, scenario, transport)));
            }
        }
    }
    for binding in Binding::ALL {
        trials.push(Trial::ignorable_test(format!("deadlines::{}", binding.name()), move || deadline_trial(binding)));
    }
    libtest_mimic::run(&args, trials).exit();
}
