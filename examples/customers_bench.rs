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

use clap::Parser;
use fake_atlassian::{FakeAccount, FakeAtlassian};
use offboard::atlassian::{AtlassianSettings, Client, SiteSettings};

/// Reads a whole customer inventory from the in-process fake Atlassian, with the client
/// `offboard customers list` uses.
#[derive(Parser)]
struct Args {
    /// Portal-only customers at the fake (every tenth on a second desk too).
    #[arg(long, default_value_t = 20_000)]
    customers: usize,
    /// Service desks they are spread over.
    #[arg(long, default_value_t = 10)]
    desks: usize,
    /// Readings of the whole inventory.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The client's `requests_per_second`; the default is a rate no run reaches (unpaced).
    #[arg(long, default_value_t = 1_000_000.0)]
    rps: f64,
    /// Latency the fake adds to every request, in milliseconds.
    #[arg(long = "latency-ms", value_name = "MS", default_value_t = 0)]
    latency_ms: u64,
}

/// The worker's default `requests_per_second`, for the paced estimate.
const DEFAULT_RPS: f64 = 5.0;

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    offboard::install_tls_provider();
    let args = Args::parse();
    let latency = Duration::from_millis(args.latency_ms);
    let fake = FakeAtlassian::start().await;
    fake.set_latency(latency);
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
        args.customers, args.desks, latency, args.rps
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
