//! The client with real processes: `flock server` rings on loopback and `flock chat`
//! clients driven through a pipe on stdin, their output read line by line.
//!
//! Every wait is a condition poll with a deadline; child processes are killed on drop.

#[path = "common/proc.rs"]
mod proc;

use std::net::{SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use flock_crypto::{PrivateKey, PublicKey};
use flock_proto::client::smessage_signed_text;
use proc::{Proc, WAIT};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A ring server on 127.0.0.1:`port` (PING on `port + 1`) with `extra` arguments.
    fn server_with(
        &self,
        name: &str,
        data: &str,
        port: u16,
        join: Option<u16>,
        extra: &[&str],
    ) -> Proc {
        let log = self.path(&format!("{name}-{data}.log"));
        proc::loopback_ring_server_with(name, port, join, &self.path(data), &log, extra)
    }

    /// A ring of `n` servers on ports `base`, `base + 2`, ...; waits until it is whole.
    fn ring(&self, tag: &str, base: u16, n: u16) -> Vec<Proc> {
        self.ring_with(tag, base, n, &[])
    }

    /// [`Env::ring`] with `extra` arguments for every server.
    fn ring_with(&self, tag: &str, base: u16, n: u16, extra: &[&str]) -> Vec<Proc> {
        let mut ring =
            vec![self.server_with(&format!("{tag}0"), &format!("{tag}0"), base, None, extra)];
        wait_ping(base);
        for i in 1..n {
            let port = base + 2 * i;
            let (name, data) = (format!("{tag}{i}"), format!("{tag}{i}"));
            ring.push(self.server_with(&name, &data, port, Some(base), extra));
            wait_ping(port);
        }
        proc::wait_nodes(base, usize::from(n));
        ring
    }

    /// `flock chat` for `user` with `data` as its directory, using `servers` in order.
    fn chat(&self, user: &str, data: &str, servers: &[u16]) -> Proc {
        let mut args: Vec<String> = vec![
            "chat".into(),
            "--user".into(),
            user.into(),
            "--password".into(),
            "Flock-Test-1".into(),
            "--data-dir".into(),
            self.path(data).display().to_string(),
            "--no-discovery".into(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--request-timeout-ms".into(),
            "500".into(),
            "--keepalive-ms".into(),
            "500".into(),
            "--retry-base-ms".into(),
            "300".into(),
            "--retry-max-ms".into(),
            "1500".into(),
        ];
        for s in servers {
            args.extend(["--server".into(), format!("127.0.0.1:{s}")]);
        }
        let p = Proc::flock(user, &args, &self.path(&format!("{user}-{data}.log")));
        p.contains("registered with");
        p
    }
}

/// Waits until a server answers PING on `port`.
fn wait_ping(port: u16) {
    proc::wait_pong(SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, port));
}

fn exchange(alice: &mut Proc, bob: &mut Proc, text: &str) {
    alice.say("@bob");
    alice.say(text);
    bob.contains(&format!("<alice> {text}"));
    alice.wait_for("delivered", |l| l.starts_with("* to bob: delivered"));
}

#[test]
fn two_clients_exchange_messages_both_ways() {
    let env = Env::new();
    let _ring = env.ring("a", 31100, 2);
    let mut alice = env.chat("alice", "alice", &[31100]);
    let mut bob = env.chat("bob", "bob", &[31102]);
    exchange(&mut alice, &mut bob, "hello bob");
    bob.say("@alice");
    bob.say("hello alice, signed and acknowledged");
    alice.contains("<bob> hello alice, signed and acknowledged");
    bob.contains("* to alice: delivered");
    // History and unread counts come from the database.
    alice.say("/back");
    alice.say("/chats");
    alice.contains("bob (0 unread)");
    bob.say("/pending");
    bob.contains("0 message(s) waiting");
    // The original console's /servers (switch server: registers there) and /refresh.
    alice.say("/servers 127.0.0.1:31102");
    alice.contains("* switching to 127.0.0.1:31102");
    alice.contains("* registered with 127.0.0.1:31102");
    alice.say("@bob");
    alice.say("/refresh");
    alice.wait_for("the chat printed again", |l| l.contains("alice: hello bob"));
    let deadline = Instant::now() + WAIT;
    while alice.count(|l| l.contains("alice: hello bob")) < 2 {
        assert!(Instant::now() < deadline, "/refresh printed no history");
        std::thread::sleep(Duration::from_millis(25));
    }
    exchange(&mut alice, &mut bob, "after switching servers");
}

#[test]
fn offline_recipient_sender_restart_exactly_once() {
    let env = Env::new();
    let _ring = env.ring("b", 31200, 2);
    let mut alice = env.chat("alice", "alice", &[31200]);
    let mut bob = env.chat("bob", "bob", &[31202]);
    exchange(&mut alice, &mut bob, "warm up");

    bob.kill();
    alice.say("while you were away");
    alice.contains("* to bob: sent");
    alice.say("/pending");
    alice.contains("1 message(s) waiting");
    alice.kill();

    // The sender restarts first, then the recipient comes back (on a new port).
    let alice = env.chat("alice", "alice", &[31200]);
    let bob = env.chat("bob", "bob", &[31202]);
    bob.contains("<alice> while you were away");
    alice.contains("* to bob: delivered");
    // Exactly once, even after more retry rounds would have come.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(bob.count(|l| l == "<alice> while you were away"), 1);
    assert_eq!(
        bob.count(|l| l == "<alice> warm up"),
        0,
        "old messages are not replayed"
    );
}

#[test]
fn client_carries_on_when_its_server_is_killed() {
    let env = Env::new();
    let mut ring = env.ring("c", 31300, 3);
    let mut alice = env.chat("alice", "alice", &[31302, 31304]);
    let mut bob = env.chat("bob", "bob", &[31304]);
    exchange(&mut alice, &mut bob, "before the crash");

    ring.remove(1).kill();
    alice.contains("127.0.0.1:31302 is not answering");
    alice.contains("registered with 127.0.0.1:31304");
    alice.say("after the crash");
    bob.contains("<alice> after the crash");
    bob.say("@alice");
    bob.say("still here");
    alice.contains("<bob> still here");
}

#[test]
fn tampered_and_forged_messages_are_rejected() {
    let env = Env::new();
    let _ring = env.ring("d", 31400, 2);
    let mut alice = env.chat("alice", "alice", &[31400]);
    let mut bob = env.chat("bob", "bob", &[31402]);
    exchange(&mut alice, &mut bob, "genuine");
    let bob_addr = bob.listen_addr();
    let bob_key = std::fs::read_to_string(env.path("bob/keys/bob/public.pem")).expect("bob key");
    let bob_key = PublicKey::from_pem(&bob_key).expect("bob key");
    let alice_pem = std::fs::read_to_string(env.path("alice/keys/alice/private.pem")).expect("key");
    let alice_key = PrivateKey::from_encrypted_pem(&alice_pem, "Flock-Test-1").expect("alice key");
    let vectors: serde_json::Value =
        serde_json::from_str(include_str!("../../testdata/interop.json")).expect("vectors");
    let mallory_key =
        PrivateKey::from_pem(vectors["keys"]["private_pkcs8_pem"].as_str().expect("pem"))
            .expect("mallory key");
    let mut rng = flock_bin::tools::os_rng();
    let mallory = UdpSocket::bind("127.0.0.1:0").expect("socket");
    let send = |text: String| {
        mallory.send_to(text.as_bytes(), bob_addr).expect("send");
    };

    // 1. Forged sender: claims alice, signed with another key.
    let payload = flock_crypto::seal_b64(&mut rng, &bob_key, b"FORGED transfer money").unwrap();
    let sig = flock_crypto::sign_b64(
        &mut rng,
        &mallory_key,
        smessage_signed_text("alice", "bob", 7, &payload).as_bytes(),
    )
    .unwrap();
    send(format!("SMESSAGE alice 7 {payload} {sig}"));
    bob.contains("FORGED message claiming to be from alice");
    // 2. Unsigned, claiming alice (who signs her messages).
    send(format!("MESSAGE alice {payload}"));
    bob.contains("unsigned message claiming to be from alice");
    // 3. Tampered ciphertext, correctly signed by alice (so only decryption can fail).
    let mut raw = B64.decode(&payload).unwrap();
    let n = raw.len();
    raw[n - 1] ^= 1;
    let tampered = B64.encode(&raw);
    let sig = flock_crypto::sign_b64(
        &mut rng,
        &alice_key,
        smessage_signed_text("alice", "bob", 8, &tampered).as_bytes(),
    )
    .unwrap();
    send(format!("SMESSAGE alice 8 {tampered} {sig}"));
    // 4. Tampered ciphertext in the original format from someone new.
    send(format!("MESSAGE carol {tampered}"));
    bob.wait_for("two undecryptable", |_| {
        bob.count(|l| l.contains("it does not decrypt")) >= 2
    });
    // Nothing shown, nothing answered.
    assert_eq!(bob.count(|l| l.contains("FORGED transfer")), 0);
    mallory
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 2048];
    assert!(
        mallory.recv_from(&mut buf).is_err(),
        "bob answered a rejected message"
    );
    // alice still gets through.
    alice.say("still genuine");
    bob.contains("<alice> still genuine");
}

#[test]
fn key_change_blocks_sending_until_accepted() {
    let env = Env::new();
    let ring = env.ring("e", 31500, 2);
    let mut alice = env.chat("alice", "alice", &[31500, 31502]);
    let mut bob = env.chat("bob", "bob", &[31502]);
    exchange(&mut alice, &mut bob, "first key");

    // The ring is wiped and bob comes back with a new identity under the same name.
    bob.kill();
    for s in ring {
        s.kill();
    }
    let _ring2 = env.ring("f", 31500, 2);
    let mut bob2 = env.chat("bob", "bob2", &[31502]);
    alice.wait_for("re-registered", |l| l.starts_with("* registered with"));
    let deadline = Instant::now() + WAIT;
    while alice.count(|l| l.starts_with("* registered with")) < 2 {
        assert!(
            Instant::now() < deadline,
            "alice did not re-register:\n{}",
            alice.lines().join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    alice.say("/back");
    alice.say("@bob");
    alice.contains("!! KEY CHANGED for bob");
    alice.say("should not go");
    alice.contains("!! not sent: bob's key changed");
    alice.say("/accept bob");
    alice.contains("new key for bob accepted");
    alice.say("after accepting");
    bob2.contains("<alice> after accepting");
    alice.contains("* to bob: delivered");
    assert_eq!(bob2.count(|l| l.contains("should not go")), 0);
    bob2.say("@alice");
    bob2.say("new me");
    alice.contains("<bob> new me");
}

/// An original-format client in Python (the original's library, `cryptography`): signed
/// 7-field REGISTER, PING answered, unknown frames (HELLO, SMESSAGE) ignored, MESSAGE
/// opened with an 8192-byte receive buffer as the original reads; `send <peer> <text>` on
/// stdin resolves the peer, PINGs it from a fresh socket (0.5 s) and sends MESSAGE.
const ORIGINAL_PEER: &str = r#"
import base64, os, socket, sys, threading, time
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

user, server = sys.argv[1], ("127.0.0.1", int(sys.argv[2]))
key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                    serialization.PublicFormat.SubjectPublicKeyInfo)
pub_b64 = base64.b64encode(pem).decode()
oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
port = s.getsockname()[1]
version = time.time_ns()
text = f"{user}|127.0.0.1|{port}|{version}|{pub_b64}".encode()
sig = key.sign(text, padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                 salt_length=padding.PSS.MAX_LENGTH), hashes.SHA256())
s.sendto(f"REGISTER {user} 127.0.0.1 {port} {version} {pub_b64} "
         f"{base64.b64encode(sig).decode()}".encode(), server)

def out(line):
    print(line, flush=True)

def request(frame):
    r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    r.settimeout(3)
    r.sendto(frame.encode(), server)
    return r.recvfrom(65535)[0].decode()

def send(peer, msg):
    reply = request(f"RESOLVE {peer}").split(" ")
    ip, pport, peer_key = reply[1], int(reply[2]), reply[3]
    pub = serialization.load_pem_public_key(base64.b64decode(peer_key))
    aes_key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(12)
    wrapped = pub.encrypt(aes_key, oaep)
    payload = len(wrapped).to_bytes(2, "big") + wrapped + nonce + \
        AESGCM(aes_key).encrypt(nonce, msg.encode(), None)
    p = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    p.settimeout(0.5)
    p.sendto(b"PING", (ip, pport))
    if p.recvfrom(64)[0] != b"PONG":
        out("NO PONG")
        return
    s.sendto(f"MESSAGE {user} {base64.b64encode(payload).decode()}".encode(), (ip, pport))
    out("SENT")

def commands():
    for line in sys.stdin:
        cmd, peer, msg = line.rstrip("\n").split(" ", 2)
        send(peer, msg)

threading.Thread(target=commands, daemon=True).start()
while True:
    data, src = s.recvfrom(8192)
    verb = data.split(b" ", 1)[0].decode(errors="replace")
    if data == b"PING":
        s.sendto(b"PONG", src)
    elif data.startswith(b"OK User"):
        out("REGISTERED")
    elif verb == "MESSAGE":
        _, sender, payload = data.decode().split(" ", 2)
        raw = base64.b64decode(payload)
        klen = int.from_bytes(raw[:2], "big")
        aes_key = key.decrypt(raw[2:2 + klen], oaep)
        nonce, ct = raw[2 + klen:14 + klen], raw[14 + klen:]
        pt = AESGCM(aes_key).decrypt(nonce, ct, None).decode()
        out(f"MESSAGE {sender} {len(pt)} {pt[:40]}")
    else:
        out(f"IGNORED {verb}")
"#;

#[test]
fn original_python_peer_interoperates() {
    original_python_peer("g", 31600, false);
}

/// The same through a ring whose members share a cluster key (it authenticates only the
/// ring's own frames; clients, ours and the original's, see no difference).
#[test]
fn original_python_peer_interoperates_with_a_keyed_ring() {
    original_python_peer("k", 31650, true);
}

fn original_python_peer(tag: &str, base: u16, keyed: bool) {
    if Command::new("python3")
        .args(["-c", "import cryptography"])
        .status()
        .map_or(true, |s| !s.success())
    {
        eprintln!("SKIPPED: python3 with `cryptography` is needed to emulate an original peer");
        return;
    }
    let env = Env::new();
    let key = env.path("cluster.key").display().to_string();
    let extra: Vec<&str> = if keyed {
        let made = Command::new(proc::FLOCK)
            .args(["keygen", "--cluster", &key])
            .status()
            .expect("flock keygen");
        assert!(made.success(), "flock keygen --cluster");
        vec!["--cluster-key", &key]
    } else {
        Vec::new()
    };
    let _ring = env.ring_with(tag, base, 2, &extra);
    let script = env.path("original_peer.py");
    std::fs::write(&script, ORIGINAL_PEER).expect("script");
    let child = Command::new("python3")
        .arg(&script)
        .args(["oldie", &(base + 2).to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(env.path("oldie.log")).expect("log"))
        .spawn()
        .expect("python3");
    let mut oldie = Proc::adopt("oldie", child);
    oldie.contains("REGISTERED");
    let mut alice = env.chat("alice", "alice", &[base]);

    alice.say("@oldie");
    alice.say("hi original");
    oldie.contains("MESSAGE alice 11 hi original");
    alice.contains("* to oldie: sent");
    // The original ignored the extension's HELLO (and so never got a signed message).
    oldie.contains("IGNORED HELLO");
    assert_eq!(oldie.count(|l| l.contains("SMESSAGE")), 0);

    // The longest text that fits an original client's datagram arrives whole; one byte
    // more arrives as two messages (nothing cut); over 64 KiB is refused with a clear
    // error and nothing is sent.
    let max = flock_proto::client::max_text_len("alice", 256);
    alice.say(&"x".repeat(max));
    oldie.contains(&format!("MESSAGE alice {max} xxxx"));
    alice.say(&"z".repeat(max + 1));
    oldie.contains(&format!("MESSAGE alice {max} zzzz"));
    oldie.contains("MESSAGE alice 1 z");
    alice.say(&"x".repeat(flock_proto::client::MAX_TEXT_BYTES + 1));
    alice.contains("!! not sent: message too long");

    // And the other way: an original MESSAGE is shown, marked unverified.
    oldie.say("send alice hello from python");
    oldie.contains("SENT");
    alice.contains("<oldie (unverified)> hello from python");
}
