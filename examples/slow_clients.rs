//! Slow clients against the real binary: resident memory of `offboard serve` (SQLite, dry
//! run) before, during and after many connections that each announce a large body and then
//! send it slowly, never finishing (README, HTTP API: "Slow clients").
//!
//! ```sh
//! cargo run --release --example slow_clients -- [--connections 200] [--body-kib 960] \
//!     [--waves 1] [--bin target/release/offboard]
//! cargo run --release --example slow_clients -- --login-bodies 150 [--sent-kib 4] \
//!     [--content-length 12000000] [--bin target/release/offboard]
//! ```
//!
//! `--login-bodies N` sends N unauthenticated console logins instead of webhooks: each
//! announces `--content-length` bytes (default 12,000,000, just under what the console once
//! read for any of its forms), sends `--sent-kib` KiB of it (default: 90% of it over 20 s, as
//! the webhooks do) and stalls. The service should answer each at once (413: a login form is a
//! few KiB) without reading the rest.
//!
//! Without `--bin` it builds and runs the `offboard` binary of this checkout's release profile.
//! Each connection sends its headers (`Content-Length` of `--body-kib` KiB), then 90% of the
//! body over 20 s, then nothing. The service should close each one 30 s after its headers,
//! answering 408 first; connections still open after 45 s are closed by this program. The
//! figures are VmRSS from `/proc/<pid>/status`: idle after a few ordinary deliveries, while
//! the bodies are almost complete, and 5 s after the last connection closed; with `--waves`,
//! the slow connections come that many times, one wave after the other.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Slow clients against the real binary: the resident memory of `offboard serve` while many
/// connections send large bodies slowly and never finish.
#[derive(Parser)]
struct Cli {
    /// Slow webhook connections per wave.
    #[arg(long, default_value_t = 200)]
    connections: usize,
    /// The body each webhook connection announces, in KiB.
    #[arg(long = "body-kib", value_name = "KIB", default_value_t = 960)]
    body_kib: usize,
    /// Waves of slow connections, one after the other.
    #[arg(long, default_value_t = 1)]
    waves: usize,
    /// The offboard binary to run; by default this checkout's release build, built first.
    #[arg(long, value_name = "PATH")]
    bin: Option<PathBuf>,
    /// Send N unauthenticated console logins instead of webhooks (replaces --connections).
    #[arg(long = "login-bodies", value_name = "N")]
    login_bodies: Option<usize>,
    /// The `Content-Length` each console login announces (with --login-bodies).
    #[arg(
        long = "content-length",
        value_name = "BYTES",
        default_value_t = 12_000_000
    )]
    content_length: usize,
    /// KiB of each body sent before the connection stalls [default: 90% of the body].
    #[arg(long = "sent-kib", value_name = "KIB")]
    sent_kib: Option<usize>,
}

struct Args {
    connections: usize,
    body_kib: usize,
    waves: usize,
    bin: Option<PathBuf>,
    target: Target,
    /// How much of each body is sent before the connection stalls; `None`: 90% of it.
    sent_kib: Option<usize>,
}

/// Where the slow bodies go.
#[derive(Clone, Copy)]
enum Target {
    Webhook,
    /// The console's login form, unauthenticated, with this `Content-Length`.
    Login {
        content_length: usize,
    },
}

fn args() -> Args {
    let cli = Cli::parse();
    let (connections, target) = match cli.login_bodies {
        Some(logins) => (
            logins,
            Target::Login {
                content_length: cli.content_length,
            },
        ),
        None => (cli.connections, Target::Webhook),
    };
    Args {
        connections,
        body_kib: cli.body_kib,
        waves: cli.waves.max(1),
        bin: cli.bin,
        target,
        sent_kib: cli.sent_kib,
    }
}

/// The release binary next to this example, built first when run through cargo.
fn release_binary() -> PathBuf {
    if let Ok(cargo) = std::env::var("CARGO") {
        let status = Command::new(cargo)
            .args(["build", "--release", "--bin", "offboard"])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build --release failed");
    }
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/release/examples")
        .join("offboard")
}

const TOKEN: &str = "slow-clients-token";

/// The admin token: the console is enabled, so a login is something the service must read.
const ADMIN_TOKEN: &str = "slow-clients-admin-token";

fn write_config(dir: &Path, port: u16) -> PathBuf {
    let path = dir.join("offboard.toml");
    let text = format!(
        r#"listen = "127.0.0.1:{port}"
database_url = "sqlite://{db}"
dry_run = true
admin_token = "{ADMIN_TOKEN}"

[[sources]]
name = "hr"
scheme = "token"
secrets = ["{TOKEN}"]
  [[sources.rules]]
  name = "leaver"
  email = "/email"
  actions = ["delete_portal_customer"]
"#,
        db = dir.join("offboard.db").display()
    );
    std::fs::write(&path, text).expect("write config");
    path
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    listener.local_addr().unwrap().port()
}

/// Resident memory of `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// One complete request on a fresh connection; the status code.
async fn request(port: u16, head: &str, body: &[u8]) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
    stream.write_all(head.as_bytes()).await.ok()?;
    stream.write_all(body).await.ok()?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&answer);
    text.split(' ').nth(1)?.parse().ok()
}

fn hook_head(port: u16, content_length: usize) -> String {
    format!(
        "POST /hooks/hr HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: {content_length}\r\nConnection: close\r\n\r\n"
    )
}

fn login_head(port: u16, content_length: usize) -> String {
    format!(
        "POST /console/login HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {content_length}\r\n\
         Connection: close\r\n\r\n"
    )
}

async fn wait_healthy(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let head =
        format!("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    loop {
        if request(port, &head, b"").await == Some(200) {
            return;
        }
        if let Some(status) = child.try_wait().expect("child status") {
            panic!("offboard serve exited: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "offboard serve did not become healthy"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How one slow connection ended.
struct Ending {
    /// When the service closed it, counted from its headers; None if this program had to.
    closed_after: Option<Duration>,
    status: Option<u16>,
}

/// What one slow connection sends: its head, then `sent` bytes of body over `spread`.
#[derive(Clone)]
struct Slow {
    head: String,
    sent: usize,
    spread: Duration,
}

impl Slow {
    fn of(args: &Args, port: u16, spread: Duration) -> Slow {
        let (head, body_len) = match args.target {
            Target::Webhook => {
                let len = args.body_kib * 1024;
                (hook_head(port, len), len)
            }
            Target::Login { content_length } => (login_head(port, content_length), content_length),
        };
        let sent = args.sent_kib.map_or(body_len * 9 / 10, |kib| kib * 1024);
        Slow {
            head,
            sent: sent.min(body_len),
            spread,
        }
    }
}

/// Sends the headers, then the body's first bytes over `spread`, then waits for the service
/// to close the connection until `give_up`.
async fn slow_client(port: u16, slow: Slow, give_up: Instant) -> Ending {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
        return Ending {
            closed_after: Some(Duration::ZERO),
            status: None,
        };
    };
    let headers_at = Instant::now();
    let (mut reader, mut writer) = stream.split();
    let mut answer = Vec::new();
    let send = async {
        if writer.write_all(slow.head.as_bytes()).await.is_err() {
            return;
        }
        let chunk = vec![b' '; (16 * 1024).min(slow.sent.max(1))];
        let chunks = slow.sent / chunk.len();
        let pause = slow.spread / chunks.max(1) as u32;
        for _ in 0..chunks {
            if writer.write_all(&chunk).await.is_err() {
                return;
            }
            tokio::time::sleep(pause).await;
        }
        std::future::pending::<()>().await;
    };
    let closed = tokio::select! {
        () = send => false,
        read = reader.read_to_end(&mut answer) => { let _ = read; true }
        () = tokio::time::sleep_until(give_up.into()) => false,
    };
    let text = String::from_utf8_lossy(&answer);
    Ending {
        closed_after: closed.then(|| headers_at.elapsed()),
        status: text
            .strip_prefix("HTTP/1.1 ")
            .and_then(|t| t.get(..3))
            .and_then(|s| s.parse().ok()),
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = args();
    let bin = args.bin.clone().unwrap_or_else(release_binary);
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let config = write_config(dir.path(), port);
    let log = std::fs::File::create(dir.path().join("offboard.log")).expect("log file");
    let mut child = Command::new(&bin)
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let pid = child.id();
    wait_healthy(port, &mut child).await;

    for i in 0..20 {
        let body = format!("{{\"email\": \"person{i}@example.com\"}}");
        let status = request(port, &hook_head(port, body.len()), body.as_bytes()).await;
        assert_eq!(status, Some(202), "ordinary delivery {i}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = rss_kib(pid);

    let spread = Duration::from_secs(20);
    let slow = Slow::of(&args, port, spread);
    println!("binary: {}", bin.display());
    let what = match args.target {
        Target::Webhook => "webhook",
        Target::Login { .. } => "console login",
    };
    let declared = slow
        .head
        .lines()
        .find_map(|line| line.strip_prefix("Content-Length: "))
        .unwrap_or("?");
    println!(
        "{} {what} connections, Content-Length {declared} each, {} KiB of it sent over {spread:?}, then nothing",
        args.connections,
        slow.sent / 1024
    );
    println!("VmRSS idle:   {}", mib(idle));
    for wave in 1..=args.waves {
        let started = Instant::now();
        let give_up = started + Duration::from_secs(45);
        let clients: Vec<_> = (0..args.connections)
            .map(|_| tokio::spawn(slow_client(port, slow.clone(), give_up)))
            .collect();
        tokio::time::sleep(spread + Duration::from_secs(2)).await;
        let during = rss_kib(pid);
        let mut endings = Vec::new();
        for client in clients {
            endings.push(client.await.expect("client task"));
        }
        let all_closed = started.elapsed();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let after = rss_kib(pid);
        let by_service: Vec<Duration> = endings.iter().filter_map(|e| e.closed_after).collect();
        let answered_408 = endings.iter().filter(|e| e.status == Some(408)).count();
        let answered_413 = endings.iter().filter(|e| e.status == Some(413)).count();
        println!("wave {wave}:");
        println!("  VmRSS during: {}", mib(during));
        println!(
            "  VmRSS after:  {} (5 s after the last connection closed, {all_closed:.1?} after the first opened)",
            mib(after)
        );
        println!(
            "  closed by the service: {} of {} ({} answered 408 first, {} 413), after {:.1?}..{:.1?} from their headers",
            by_service.len(),
            endings.len(),
            answered_408,
            answered_413,
            by_service.iter().min().copied().unwrap_or_default(),
            by_service.iter().max().copied().unwrap_or_default(),
        );
    }

    let body = "{\"email\": \"after@example.com\"}";
    let still_serves = request(port, &hook_head(port, body.len()), body.as_bytes()).await;
    let _ = child.kill();
    let _ = child.wait();

    println!("an ordinary delivery afterwards: {still_serves:?}");
}
