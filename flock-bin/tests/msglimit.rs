//! The message limit with real processes: two `flock chat` clients on one server,
//! a 10,000-character paste of emoji and CJK sent through a pipe (as a paste into a
//! terminal would be, without the terminal's line limit) goes out in parts and arrives
//! as ONE message, whole (both clients reassemble); a text over 64 KiB is refused and
//! nothing is sent. The parts of a text queued for an absent peer survive a restart of
//! the sender and still arrive as one message.
//!
//! In a terminal (a pseudo-terminal here), a line the terminal may have cut (4095 bytes)
//! is refused with a clear message instead of being sent cut.
//!
//! Every wait is a condition poll with a deadline; child processes are killed on drop.

#[path = "common/proc.rs"]
mod proc;

use flock_proto::client::{MAX_TEXT_BYTES, max_text_len};

const PASSWORD: &str = "Flock-Test-1";

/// 10,000 characters of emoji (one a ZWJ sequence), CJK, accents and ASCII.
fn paste() -> String {
    "😀漢字aé 🧑‍🤝‍🧑語".chars().cycle().take(10_000).collect()
}

#[test]
fn a_10000_character_paste_arrives_whole_and_over_64_kib_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, port) = proc::loopback_server(dir.path());
    let mut alice = proc::loopback_chat(dir.path(), "alice", port);
    let bob = proc::loopback_chat(dir.path(), "bob", port);
    let text = paste();
    assert_eq!(text.chars().count(), 10_000);
    let parts = text.len().div_ceil(max_text_len("alice", 256));
    assert!(text.len() > 20_000 && parts > 1, "{} bytes", text.len());

    alice.say("@bob");
    alice.contains("* chat with bob");
    let sent_at = std::time::Instant::now();
    alice.say(&text);
    // alice shows one message, delivered once every part is; bob shows it once, whole.
    let delivered = alice.wait_for("the paste delivered", |l| {
        l.starts_with("* to bob: delivered")
    });
    let id = delivered
        .rsplit_once("(id ")
        .map(|(_, id)| id.trim_end_matches(')').to_owned())
        .expect("the message's id");
    let got = bob.wait_for("the paste", |l| l.starts_with("<alice> "));
    assert_eq!(
        got.strip_prefix("<alice> ").map(str::len),
        Some(text.len()),
        "one line, the whole paste"
    );
    assert_eq!(
        got,
        format!("<alice> {text}"),
        "nothing cut, nothing reordered"
    );
    assert_eq!(bob.count(|l| l.starts_with("<alice> ")), 1, "one message");
    eprintln!(
        "PASTE: {} characters, {} bytes, {parts} parts: delivered as one message {:.0} ms \
         after it was typed",
        text.chars().count(),
        text.len(),
        sent_at.elapsed().as_secs_f64() * 1000.0
    );
    assert_eq!(
        alice.count(|l| l.starts_with("* to bob: delivered")),
        1,
        "{:?}",
        alice.lines()
    );
    assert_eq!(
        alice.count(|l| l.starts_with("* to bob:") && !l.ends_with(&format!("(id {id})"))),
        0,
        "every status names the one message: {:?}",
        alice.lines()
    );
    assert_eq!(
        alice.count(|l| l.starts_with("!!")),
        0,
        "{:?}",
        alice.lines()
    );

    // Over 64 KiB: a clear error, nothing sent.
    let before = bob.count(|l| l.starts_with("<alice> "));
    alice.say(&"漢".repeat(MAX_TEXT_BYTES / 3 + 1));
    let refused = alice.contains("!! not sent: message too long");
    assert!(refused.contains("65538 bytes"), "{refused}");
    alice.say("after the refusal");
    bob.contains("<alice> after the refusal");
    assert_eq!(bob.count(|l| l.starts_with("<alice> ")), before + 1);
}

#[test]
fn a_line_the_terminal_may_have_cut_is_not_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = std::process::Command::new(proc::FLOCK);
    cmd.args([
        "chat",
        "--user",
        "alice",
        "--password",
        PASSWORD,
        "--data-dir",
    ])
    .arg(dir.path().join("alice"))
    // Nothing listens there: login does not wait for the server.
    .args([
        "--no-discovery",
        "--bind",
        "127.0.0.1",
        "--server",
        "127.0.0.1:9",
    ]);
    let timeout = u64::try_from(proc::WAIT.as_millis()).expect("timeout");
    let mut tty = rexpect::session::spawn_command(cmd, Some(timeout)).expect("pty");
    tty.exp_string("* logged in as alice").expect("login");
    tty.send_line("@bob").expect("type");
    tty.exp_string("* chat with bob").expect("chat opened");
    // A 10,000-character line: the terminal keeps 4095 bytes of it.
    tty.send_line(&"x".repeat(10_000)).expect("type");
    tty.exp_string("!! not sent: a terminal line holds at most 4095 bytes")
        .expect("refused, not cut");
    tty.send_line("/quit").expect("type");
    tty.exp_eof().expect("end");
}

/// The parts of a long text survive a restart of the sender (their outbox entries, each
/// with its part, in the database): queued while bob is away, alice restarts, bob comes
/// back, and the paste arrives as one message, delivered under the same id.
#[test]
fn a_paste_queued_across_a_restart_still_arrives_as_one_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_server, port) = proc::loopback_server(dir.path());
    let mut bob = proc::loopback_chat(dir.path(), "bob", port);
    let mut alice = proc::loopback_chat(dir.path(), "alice", port);
    alice.say("@bob");
    alice.say("hello first");
    alice.contains("* to bob: delivered");
    bob.contains("<alice> hello first");
    bob.say("/quit");
    assert!(bob.wait_exit().success());

    let text = paste();
    alice.say(&text);
    // The second message queued: its id is the one the statuses name.
    let queued = |l: &str| l.starts_with("* to bob: queued");
    alice.wait_for("the paste queued", |_| alice.count(queued) >= 2);
    let lines = alice.lines();
    let id = lines
        .iter()
        .rfind(|l| queued(l))
        .expect("queued")
        .rsplit_once("(id ")
        .map(|(_, id)| id.trim_end_matches(')').to_owned())
        .expect("the message's id");
    alice.say("/quit");
    assert!(alice.wait_exit().success());

    let alice = proc::loopback_chat(dir.path(), "alice", port);
    // From the database: an outbox entry per part, each with its part.
    let log = std::fs::read_to_string(dir.path().join("alice").join("flock-chat.log"))
        .expect("alice's log");
    let restored = log
        .lines()
        .rfind(|l| l.contains("restored the outbox"))
        .expect("outbox restored");
    let parts = text.len().div_ceil(max_text_len("alice", 256));
    assert!(
        restored.contains(&format!("entries={parts} parts={parts}")),
        "{restored}"
    );
    let bob = proc::loopback_chat(dir.path(), "bob", port);
    let got = bob.wait_for("the paste", |l| l.starts_with("<alice> ") && l.len() > 100);
    assert_eq!(got, format!("<alice> {text}"), "one message, whole");
    alice.contains(&format!("* to bob: delivered (id {id})"));
    assert_eq!(bob.count(|l| l.starts_with("<alice> ")), 1);
}
