//! Crash safety: a child process applies batches and acknowledges each one on stdout
//! after `apply` returns; the parent kills it with SIGKILL mid-run, reopens the file and
//! checks that it is intact and that every acknowledged batch is there.
//!
//! The child is this same test binary, re-executed with [`CHILD_ENV`] set and filtered
//! to run only [`crash_child`], which does nothing in a normal test run.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use flock_chord::{StoreOp, Table};
use flock_proto::Record;
use flock_store::ServerDb;

/// Set to the database path to make [`crash_child`] run the writer loop.
const CHILD_ENV: &str = "FLOCK_STORE_CRASH_CHILD_DB";
/// Records per batch; a batch is all-or-nothing, so counts stay multiples of this.
const BATCH: u64 = 8;
/// Acknowledgements to wait for before each kill.
const ACKS_BEFORE_KILL: u64 = 25;
/// Kill-and-reopen rounds.
const ROUNDS: usize = 3;
/// How long one round may take before the test fails (a hung child, not a slow disk).
const DEADLINE: Duration = Duration::from_secs(120);

fn record(batch: u64, i: u64) -> Record {
    Record {
        user: format!("b{batch:06}_{i}"),
        ip: [10, 1, (batch % 250) as u8, i as u8].into(),
        port: 4000 + i as u16,
        version: batch * BATCH + i + 1,
        pubkey_b64: "P".repeat(604),
        sig_b64: "S".repeat(344),
    }
}

fn batch_ops(batch: u64) -> Vec<StoreOp> {
    let mut ops: Vec<StoreOp> = (0..BATCH)
        .map(|i| StoreOp::Put {
            record: record(batch, i),
            table: if i % 2 == 0 {
                Table::Owned
            } else {
                Table::Replica {
                    owner: "10.9.9.9:12345".into(),
                }
            },
        })
        .collect();
    // Exercise the other statements too: rewrite an earlier batch's record as a replica
    // and back, so each batch is several writes to both tables.
    if batch > 0 {
        ops.push(StoreOp::Put {
            record: record(batch - 1, 0),
            table: Table::Replica {
                owner: "10.8.8.8:1".into(),
            },
        });
        ops.push(StoreOp::Put {
            record: record(batch - 1, 0),
            table: Table::Owned,
        });
    }
    ops
}

/// The child's writer loop. A no-op unless [`CHILD_ENV`] is set.
#[test]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut db = ServerDb::open(&path).expect("child: open");
    let done = db.counts().expect("child: counts");
    let mut batch = (done.owned + done.replicas) / BATCH;
    let stdout = std::io::stdout();
    loop {
        db.apply(&batch_ops(batch)).expect("child: apply");
        let mut out = stdout.lock();
        writeln!(out, "acked {batch}").expect("child: write");
        out.flush().expect("child: flush");
        batch += 1;
    }
}

/// Runs the child until it has acknowledged [`ACKS_BEFORE_KILL`] batches, kills it with
/// SIGKILL, and returns the highest batch it acknowledged.
fn run_and_kill(path: &Path) -> Option<u64> {
    let mut child = Command::new(std::env::current_exe().expect("current exe"))
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("child stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(n) = line.strip_prefix("acked ") {
                let n: u64 = n.trim().parse().expect("ack number");
                if tx.send(n).is_err() {
                    break;
                }
            }
        }
    });

    let deadline = Instant::now() + DEADLINE;
    let mut seen = 0;
    let mut highest = None;
    while seen < ACKS_BEFORE_KILL {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(n) => {
                seen += 1;
                highest = Some(n);
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("child stopped acknowledging after {seen} acks: {e:?}");
            }
        }
    }
    // Mid-run: the child is inside its next `apply` or about to be.
    child.kill().expect("kill child"); // SIGKILL on Unix
    child.wait().expect("wait child");
    reader.join().expect("reader thread");
    // Acks written before the kill but not yet read count too.
    while let Ok(n) = rx.try_recv() {
        highest = Some(n);
    }
    highest
}

#[test]
fn sigkill_mid_write_keeps_every_acked_batch() {
    if std::env::var_os(CHILD_ENV).is_some() {
        return; // never recurse from inside a child
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.db");
    let mut acked_total = 0;
    for round in 0..ROUNDS {
        let highest = run_and_kill(&path).expect("at least one ack");
        let db = ServerDb::open(&path).unwrap();
        assert!(
            db.integrity_check().unwrap(),
            "round {round}: integrity_check"
        );
        let counts = db.counts().unwrap();
        let stored = counts.owned + counts.replicas;
        assert_eq!(
            stored % BATCH,
            0,
            "round {round}: a batch was torn ({stored} rows)"
        );
        assert!(
            stored >= (highest + 1) * BATCH,
            "round {round}: acked batch {highest} but only {stored} rows"
        );
        for batch in 0..=highest {
            for i in 0..BATCH {
                let want = record(batch, i);
                let (got, _) = db
                    .get(&want.user)
                    .unwrap()
                    .unwrap_or_else(|| panic!("round {round}: lost acked {}", want.user));
                assert_eq!(got, want);
            }
        }
        assert_eq!(db.load().unwrap().len() as u64, stored);
        acked_total = highest + 1;
    }
    assert!(acked_total >= ROUNDS as u64 * ACKS_BEFORE_KILL);
}
