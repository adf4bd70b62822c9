//! Address cookies end to end: a `flock chat` client on another host than its server
//! (so the server's anti-reflection gate applies: loopback counts as validated) looks up
//! more signed records than three times its requests cover; the server answers with
//! `ERROR COOKIE`, the client resends with the cookie, and every lookup still succeeds.
//! Needs root (network namespaces; skips loudly without).

mod common {
    pub mod flock;
    pub mod netns;
    pub mod proc;
}

use std::time::Duration;

use common::flock::{self as f, Server, register, users, wait_member};
use common::netns::{Net, wait_for};
use common::proc::{FAST_CLIENT, FLOCK, Proc};

#[test]
fn a_client_on_another_host_follows_the_cookie_and_every_lookup_succeeds() {
    let Some(net) = Net::new("cookies", 2) else {
        return;
    };
    let dir = f::tempdir("cookies");
    let server_host = net.host(0);
    let client_host = net.host(1);
    let server = Server::start(server_host, "n0", dir.path(), &[]);
    let addr = server.addr();
    wait_member(server_host, &addr, Duration::from_secs(20));

    // Contacts whose signed records (~650 bytes each) alice will look up.
    let contacts = users("contact", 12);
    assert!(register(
        server_host,
        &addr,
        &dir.path().join("keys"),
        &contacts
    ));

    let data = dir.path().join("alice");
    let mut cmd = client_host.command(FLOCK);
    cmd.args([
        "chat",
        "--user",
        "alice",
        "--password",
        "Flock-Test-1",
        "--no-discovery",
        "--server",
        &addr,
        "--data-dir",
    ])
    .arg(&data)
    .args(FAST_CLIENT);
    let mut alice = Proc::spawn("alice", &mut cmd, &dir.path().join("alice.log"), false);
    alice.contains("registered with");

    // Twelve lookups of signed records: more than the credit a few requests earn.
    for c in &contacts {
        alice.say(&format!("@{c}"));
        alice.contains(&format!("pinned {c}'s key"));
    }
    let cookies_valid = wait_for(
        "the server counts requests with a cookie",
        Duration::from_secs(10),
        || {
            f::status(server_host, &addr)
                .and_then(|s| s.get("net")?.get("cookies_valid")?.as_u64())
                .filter(|n| *n > 0)
        },
    );
    let limited = f::status(server_host, &addr)
        .and_then(|s| s.get("net")?.get("amplification_limited")?.as_u64())
        .unwrap_or(0);
    eprintln!(
        "COOKIES: 12 lookups from another host: {cookies_valid} requests carried a cookie, {limited} replies were held back for one"
    );
    assert!(
        limited > 0,
        "the gate applied to the client (else this test proves nothing)"
    );
}
