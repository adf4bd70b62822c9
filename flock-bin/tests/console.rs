//! `flock chat` as a person uses it: through a pseudo-terminal (the password is never
//! echoed, a weak one is asked again, a new one confirmed, a mistyped one retried), and
//! through pipes (one identity, one running client; logs in a file, not on stdout;
//! private files).
//!
//! No ring server is needed: the client logs in and registers in the background. Every
//! wait is a condition with a deadline.

#[path = "common/proc.rs"]
mod proc;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use proc::{FLOCK, Proc, WAIT};
use rexpect::session::{PtySession, spawn_command};

/// Nothing listens here: login does not wait for the server.
const NO_SERVER: &str = "127.0.0.1:9";

fn chat_command(data: &Path, user: &str) -> Command {
    let mut cmd = Command::new(FLOCK);
    cmd.args(["chat", "--user", user, "--data-dir"])
        .arg(data)
        .args([
            "--no-discovery",
            "--bind",
            "127.0.0.1",
            "--server",
            NO_SERVER,
        ])
        .env("RUST_LOG", "info");
    cmd
}

/// A `flock chat` on a pty, with everything it printed kept.
struct Tty {
    session: PtySession,
    seen: String,
}

impl Tty {
    fn spawn(data: &Path, user: &str) -> Self {
        let timeout = u64::try_from(WAIT.as_millis()).expect("timeout");
        Self {
            session: spawn_command(chat_command(data, user), Some(timeout))
                .expect("spawn on a pty"),
            seen: String::new(),
        }
    }

    fn expect(&mut self, text: &str) {
        let before = self
            .session
            .exp_string(text)
            .unwrap_or_else(|e| panic!("no {text:?} ({e}); output so far:\n{}", self.seen));
        self.seen.push_str(&before);
        self.seen.push_str(text);
    }

    /// Types a line at a password prompt once the terminal stopped echoing (the prompt is
    /// printed just before echo goes off; typing earlier would be echoed by the tty).
    fn type_secret(&mut self, prompt: &str, secret: &str) {
        self.expect(prompt);
        let pty = self.session.process().get_file_handle().expect("pty");
        let deadline = Instant::now() + WAIT;
        loop {
            let attrs = nix::sys::termios::tcgetattr(&pty).expect("tcgetattr");
            if !attrs
                .local_flags
                .contains(nix::sys::termios::LocalFlags::ECHO)
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "echo never went off at {prompt:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        self.session.send_line(secret).expect("type");
    }

    fn send_line(&mut self, line: &str) {
        self.session.send_line(line).expect("type");
    }

    /// Waits for the process to end; returns everything it printed.
    fn finish(mut self) -> String {
        let rest = self.session.exp_eof().expect("end of output");
        self.seen.push_str(&rest);
        self.seen
    }
}

#[test]
fn terminal_password_is_hidden_retried_and_confirmed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("alice");
    let (weak, good, typo) = ("weakpass", "Sesame-Open-42", "Sesame-Open-43");

    let mut tty = Tty::spawn(&data, "alice");
    tty.expect("creating a new identity for alice");
    tty.type_secret("new password:", weak);
    tty.expect("!! a password needs at least 8 characters");
    tty.type_secret("new password:", good);
    tty.type_secret("confirm password:", typo);
    tty.expect("!! the passwords differ; try again");
    tty.type_secret("new password:", good);
    tty.type_secret("confirm password:", good);
    tty.expect("* logged in as alice");
    tty.send_line("/help");
    for cmd in [
        "@user",
        "/chats",
        "/pending",
        "/accept <user>",
        "/servers N|HOST:PORT",
        "/quit",
    ] {
        tty.expect(cmd);
    }
    tty.send_line("/quit");
    let out = tty.finish();
    for secret in [weak, good, typo] {
        assert!(!out.contains(secret), "{secret:?} was echoed:\n{out}");
    }
    assert!(!out.contains(" INFO "), "log lines on the terminal:\n{out}");

    // A second login: a mistyped password is asked again, not fatal.
    let mut tty = Tty::spawn(&data, "alice");
    tty.type_secret("password:", typo);
    tty.expect("!! wrong password for alice; try again");
    tty.type_secret("password:", good);
    tty.expect("* logged in as alice");
    tty.send_line("/quit");
    let out = tty.finish();
    for secret in [good, typo] {
        assert!(!out.contains(secret), "{secret:?} was echoed:\n{out}");
    }
}

/// A `flock chat` driven through pipes (stderr in `<data>.<name>.log`).
fn piped(data: &Path, user: &str, name: &str) -> Proc {
    let mut cmd = chat_command(data, user);
    cmd.args(["--password", "Sesame-Open-42"]);
    Proc::spawn(
        name,
        &mut cmd,
        &data.with_extension(format!("{name}.log")),
        false,
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn one_identity_one_running_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("bob");
    let mut first = piped(&data, "bob", "first");
    first.contains("* logged in as bob");

    // The same identity from the same directory: refused, with the holder named.
    let second = chat_command(&data, "bob")
        .args(["--password", "Sesame-Open-42"])
        .stdin(Stdio::null())
        .output()
        .expect("second start");
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "second start ran: {err}");
    assert!(
        err.contains("bob is already running from this data directory")
            && err.contains(&format!("process {}", first.pid())),
        "unclear refusal: {err}"
    );
    assert!(!String::from_utf8_lossy(&second.stdout).contains("logged in"));

    // Another identity in the same directory is fine.
    let mut carol = piped(&data, "carol", "carol");
    carol.contains("* logged in as carol");
    carol.say("/quit");
    assert!(carol.wait_exit().success());

    // Logs went to the file, not to stdout; the private files are private.
    let log = std::fs::read_to_string(data.join("flock-chat.log")).expect("log file");
    assert!(log.contains("INFO"), "empty log: {log:?}");
    assert!(first.lines().iter().all(|l| !l.contains(" INFO ")));
    assert_eq!(mode(&data.join("chats")), 0o700);
    assert_eq!(mode(&data.join("chats/bob.db")), 0o600);
    assert_eq!(mode(&data.join("chats/bob.lock")), 0o600);
    assert_eq!(mode(&data.join("flock-chat.log")), 0o600);

    // Once the first has quit, the identity starts again.
    first.say("/quit");
    assert!(first.wait_exit().success());
    let again = piped(&data, "bob", "again");
    again.contains("* logged in as bob");
}

#[test]
fn verbose_logs_to_stderr_too() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("dave");
    let stderr = dir.path().join("dave.stderr");
    let mut cmd = chat_command(&data, "dave");
    cmd.args(["--password", "Sesame-Open-42", "-v"]);
    let mut dave = Proc::spawn("dave", &mut cmd, &stderr, false);
    dave.contains("* logged in as dave");
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_to_string(&stderr)
        .unwrap_or_default()
        .contains("INFO")
    {
        assert!(Instant::now() < deadline, "no log line on stderr");
        std::thread::sleep(Duration::from_millis(25));
    }
    dave.say("/quit");
    assert!(dave.wait_exit().success());
    assert!(dave.lines().iter().all(|l| !l.contains("INFO")));
}

#[test]
fn lookalike_names_are_flagged_and_the_history_is_sealed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("erin");
    let mut erin = piped(&data, "erin", "erin");
    erin.contains("* logged in as erin");
    // No server answers: the message waits in the outbox, and alice is a known peer.
    let secret = "the-vault-code-is-271828";
    erin.say("@alice");
    erin.say(secret);
    erin.contains("* to alice: queued");
    erin.say("@\u{430}lice");
    erin.contains("!! \u{430}lice mixes alphabets; looks like alice");
    erin.say("@Alice");
    erin.contains("!! Alice differs from alice only by case");
    erin.say("/chats");
    erin.contains(&format!("  alice (0 unread): {secret}"));
    erin.say("/quit");
    assert!(erin.wait_exit().success());

    // A stolen chats/ directory: no message text, no peer name.
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(data.join("chats")).expect("chats/") {
        bytes.extend(std::fs::read(entry.expect("entry").path()).expect("read"));
    }
    for needle in [secret, "alice"] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle:?} readable in chats/"
        );
    }
}
