//! Customer inventory benchmark, against the in-process fake Atlassian.
//!
//! ```sh
//! cargo run --release --example customers_bench -- [--customers 20000] [--desks 10] [--rounds 3] [--rps R] [--latency-ms MS]
//! ```
//!
//! Puts `--customers` portal-only customers on `--desks` service desks (every tenth customer
//! on a second desk too), then reads the whole inventory with the client `offboard customers
//! list` and `GET /api/v1/customers` use, and prints, per round: wall time, Atlassian
//! requests made, customers found. The fake answers pages of 50, as the client asks. By
//! default the client is not paced (`--rps` unset: a rate no run reaches), which measures the
//! client and the fake; with the default `requests_per_second = 5` of the worker, the same
//! requests take `requests / 5` seconds, printed too.

#[path = "../tests/support/fake_atlassian/mod.rs"]
mod fake_atlassian;

use std::time::{Duration, Instant};

use fake_atlassian::{FakeAccount, FakeAtlassian};
use offboard::atlassian::{AtlassianSettings, Client, SiteSettings};

struct Args {
    customers: usize,
    desks: usize,
    rounds: usize,
    rps: f64,
    latency: Duration,
}

fn args() -> Args {
    let mut args = Args {
        customers: 20_000,
        desks: 10,
        rounds: 3,
        rps: 1_000_000.0,
        latency: Duration::ZERO,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_default();
        match flag.as_str() {
            "--customers" => args.customers = value.parse().expect("--customers N"),
            "--desks" => args.desks = value.parse().expect("--desks N"),
            "--rounds" => args.rounds = value.parse().expect("--rounds N"),
            "--rps" => args.rps = value.parse().expect("--rps R"),
            "--latency-ms" => {
                args.latency = Duration::from_millis(value.parse().expect("--latency-ms MS"));
            }
            other => panic!("unknown flag {other}"),
        }
    }
    args
}

/// The worker's default `requests_per_second`, for the paced estimate.
const DEFAULT_RPS: f64 = 5.0;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    offboard::install_tls_provider();
    let args = args();
    let fake = FakeAtlassian::start().await;
    fake.set_latency(args.latency);
    let desk = |n: usize| (10 + n % args.desks).to_string();
    for i in 0..args.customers {
        let mut account =
            FakeAccount::customer(&format!("qm:{i:06}"), &format!("customer{i}@example.com"));
        account.service_desks.insert(desk(i));
        if i % 10 == 0 {
            account.service_desks.insert(desk(i + 1));
        }
        fake.add_account(account);
    }
    let client = Client::new(AtlassianSettings {
        site: Some(SiteSettings {
            url: fake.url.clone(),
            email: fake_atlassian::SITE_EMAIL.into(),
            api_token: fake_atlassian::SITE_TOKEN.into(),
        }),
        admin: None,
        request_timeout: Duration::from_secs(30),
        requests_per_second: args.rps,
    })
    .expect("client");
    println!(
        "{} customers on {} service desks (every tenth on two), fake latency {:?}, pace {} requests/s",
        args.customers, args.desks, args.latency, args.rps
    );
    for round in 1..=args.rounds {
        fake.clear_requests();
        let started = Instant::now();
        let customers = client
            .portal_customers(&|_| {})
            .await
            .expect("inventory read")
            .customers;
        let elapsed = started.elapsed();
        let requests = fake.request_count();
        assert_eq!(customers.len(), args.customers, "every customer once");
        println!(
            "round {round}: {:.3} s wall, {requests} requests ({:.0} requests/s), {} customers; at {DEFAULT_RPS} requests/s: {:.0} s",
            elapsed.as_secs_f64(),
            requests as f64 / elapsed.as_secs_f64(),
            customers.len(),
            requests as f64 / DEFAULT_RPS,
        );
    }
}
