//! The same identity on two machines (issue 13 item 5), with real processes: two
//! `flock chat` clients with the same identity files and a copy of the same data
//! directory, on two loopback addresses (127.0.0.1 and 127.0.0.2) of one server. The
//! newest registration wins: the older client says once that the identity also runs
//! at the newer one's address and stops re-registering; the newer one is told. Neither
//! registers again (no fight every keepalive), and messages reach the newer one.
//!
//! Every wait is a condition poll with a deadline; child processes are killed on drop.

#[path = "common/proc.rs"]
mod proc;

use std::path::Path;
use std::time::{Duration, Instant};

use proc::{FAST_CLIENT, Proc};

/// `flock chat` as `user` with data in `data`, bound to `ip`, using the server on
/// 127.0.0.1:`port`; waits until registered.
fn chat(dir: &Path, name: &str, user: &str, data: &Path, ip: &str, port: u16) -> Proc {
    let mut args: Vec<String> = ["chat", "--user", user, "--password", "Flock-Test-1"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    args.extend([
        "--data-dir".to_owned(),
        data.display().to_string(),
        "--no-discovery".to_owned(),
        "--bind".to_owned(),
        ip.to_owned(),
        "--server".to_owned(),
        format!("127.0.0.1:{port}"),
    ]);
    args.extend(FAST_CLIENT.iter().map(|s| (*s).to_owned()));
    let p = Proc::flock(name, &args, &dir.join(format!("{name}.log")));
    p.contains("registered with");
    p
}

#[test]
fn the_same_identity_on_two_addresses_is_noticed_once_and_nobody_fights() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, port) = proc::loopback_server(dir.path());
    // alice's identity (keys and database), made once, then copied: a second machine.
    let first_data = dir.path().join("alice-first");
    let second_data = dir.path().join("alice-second");
    {
        let mut once = chat(dir.path(), "once", "alice", &first_data, "127.0.0.1", port);
        once.say("/quit");
        assert!(once.wait_exit().success());
    }
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(&first_data)
        .arg(&second_data)
        .status()
        .expect("cp");
    assert!(copied.success());
    let first = chat(dir.path(), "first", "alice", &first_data, "127.0.0.1", port);
    let second = chat(
        dir.path(),
        "second",
        "alice",
        &second_data,
        "127.0.0.2",
        port,
    );

    // The older says so once and backs off; the newer is told.
    let backed_off = first.contains("!! alice is also running at 127.0.0.2:");
    assert!(
        backed_off.contains("this client stops re-registering"),
        "{backed_off}"
    );
    let told = second.contains("!! alice is also running at 127.0.0.1:");
    assert!(
        told.contains("that client stopped re-registering"),
        "{told}"
    );
    eprintln!("first: {backed_off}\nsecond: {told}");

    // Nobody fights: over 8 keepalive periods (500 ms) neither registers again, and
    // each notice stays a single line.
    let registrations = |p: &Proc| p.count(|l| l.starts_with("* registered with"));
    let before = (registrations(&first), registrations(&second));
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        assert_eq!((registrations(&first), registrations(&second)), before);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(first.count(|l| l.contains("is also running at")), 1);
    assert_eq!(second.count(|l| l.contains("is also running at")), 1);

    // bob's message goes to the newer client.
    let mut bob = proc::loopback_chat(dir.path(), "bob", port);
    bob.say("@alice");
    bob.say("which one of you?");
    bob.contains("* to alice: delivered");
    second.contains("<bob> which one of you?");
    assert_eq!(first.count(|l| l.contains("which one of you?")), 0);
}
