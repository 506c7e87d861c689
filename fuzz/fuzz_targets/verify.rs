//! Every source's verifier over arbitrary headers and bodies: nothing panics, and a genuine
//! delivery, with arbitrary other headers beside its signed ones, still verifies.
#![no_main]

use arbitrary::Arbitrary;
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use offboard_fuzz::{SOURCES, instant};

/// Every header some scheme reads, in the spellings senders use.
const KNOWN: [&str; 15] = [
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "X-Hub-Signature",
    "X-Hub-Signature-256",
    "X-Atlassian-Webhook-Identifier",
    "X-BambooHR-Signature",
    "X-BambooHR-Timestamp",
    "Bob-Signature",
    "x-deel-signature",
    "Authorization",
    "X-Okta-Token",
];

#[derive(Arbitrary, Debug)]
struct Delivery {
    headers: Vec<(u8, Vec<u8>)>,
    body: Vec<u8>,
    now: u32,
    source: u8,
}

fuzz_target!(|delivery: Delivery| {
    let mut headers = HeaderMap::new();
    for (name, value) in &delivery.headers {
        let name = HeaderName::from_bytes(KNOWN[usize::from(*name) % KNOWN.len()].as_bytes())
            .expect("a valid name");
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(name, value);
        }
    }
    let now = instant(delivery.now);
    for source in SOURCES.iter() {
        let _ = source.verifier.verify(&headers, &delivery.body, now);
    }

    // A genuine delivery of one source, among the noise of headers it does not read. The
    // Svix names of Standard Webhooks headers are read too: a delivery may not mix the sets.
    let source = &SOURCES[usize::from(delivery.source) % SOURCES.len()];
    let signed = source.verifier.sign(&delivery.body, now);
    let mut genuine = headers.clone();
    for (name, _) in &signed {
        genuine.remove(name.as_str());
        if let Some(field) = name.strip_prefix("webhook-") {
            genuine.remove(format!("svix-{field}").as_str());
        }
    }
    for (name, value) in &signed {
        genuine.append(
            HeaderName::from_bytes(name.as_bytes()).expect("sign emits header names"),
            HeaderValue::from_str(value).expect("sign emits header values"),
        );
    }
    if let Err(e) = source.verifier.verify(&genuine, &delivery.body, now) {
        panic!("{} rejected its own signature: {e:?}", source.name);
    }
});
