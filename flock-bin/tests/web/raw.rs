//! `flock web` without a browser: raw HTTP and WebSocket clients against the session
//! cookie, the CSRF token, the Origin check, malformed input and the per-page bounds.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::proc::{FLOCK, Proc, WAIT};
use super::{Env, raw_request};

/// What a page gives a browser: its session cookie (`name=value`) and CSRF token.
pub(crate) struct PageSession {
    pub(crate) set_cookie: String,
    pub(crate) cookie: String,
    pub(crate) token: String,
}

/// GETs `/servers` (Connection: close) with an optional cookie; returns the session
/// the page carries.
pub(crate) fn open_page(addr: &str, cookie: Option<&str>) -> PageSession {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut req = format!("GET /servers HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: {c}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let set_cookie = resp
        .lines()
        .find_map(|l| {
            l.strip_prefix("set-cookie: ")
                .or_else(|| l.strip_prefix("Set-Cookie: "))
        })
        .unwrap_or("")
        .to_owned();
    let token = resp
        .split("name=\"flock-csrf\" content=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("the page carries a CSRF token")
        .to_owned();
    let cookie = match cookie {
        Some(c) => c.to_owned(),
        None => set_cookie
            .split(';')
            .next()
            .expect("cookie")
            .trim()
            .to_owned(),
    };
    PageSession {
        set_cookie,
        cookie,
        token,
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A WebSocket to `/ws` with the given token, cookie and Origin; `Err(status, body)`
/// when the upgrade is refused.
async fn ws(
    addr: &str,
    token: Option<&str>,
    cookie: Option<&str>,
    origin: Option<&str>,
) -> Result<Ws, (u16, String)> {
    let url = match token {
        Some(t) => format!("ws://{addr}/ws?csrf={t}"),
        None => format!("ws://{addr}/ws"),
    };
    let mut req = url.into_client_request().expect("request");
    if let Some(c) = cookie {
        req.headers_mut()
            .insert("cookie", c.parse().expect("cookie header"));
    }
    if let Some(o) = origin {
        req.headers_mut()
            .insert("origin", o.parse().expect("origin header"));
    }
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    match tokio_tungstenite::client_async(req, tcp).await {
        Ok((ws, _)) => Ok(ws),
        Err(WsError::Http(resp)) => {
            let body = resp
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            Err((resp.status().as_u16(), body))
        }
        Err(e) => Err((0, e.to_string())),
    }
}

/// The next reply (skipping pushed events), within [`WAIT`].
async fn reply(ws: &mut Ws) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("a reply in time")
            .expect("the socket stays open")
            .expect("a frame");
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(t.as_str()).expect("JSON");
            if v["type"] == "reply" {
                return v;
            }
        }
    }
}

async fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::Text(text.into())).await.expect("send");
}

/// Asks (request `reference`) to create account `user`; the reply comes later.
async fn create_account(s: &mut Ws, reference: u64, user: &str) {
    let req = json!({"ref": reference, "event": "register",
                     "data": {"username": user, "password": "Flock-Test-1", "mode": "create"}});
    send(s, &req.to_string()).await;
}

fn start_web(env: &Env, extra: &[&str]) -> (Proc, String) {
    spawn_web(env, extra, "http")
}

/// `flock web` on a free loopback port with `extra` arguments; its `HOST:PORT`.
fn spawn_web(env: &Env, extra: &[&str], scheme: &str) -> (Proc, String) {
    let mut cmd = Command::new(FLOCK);
    cmd.args(["web", "--listen", "127.0.0.1:0", "--no-discovery"])
        .args(extra)
        .arg("--data-dir")
        .arg(env.path("web"));
    let web = Proc::spawn("web", &mut cmd, &env.path("web.log"), false);
    let prefix = format!("flock web: open {scheme}://");
    let url = web.line_with(&prefix).expect("web address");
    let addr = url
        .rsplit(&format!("{scheme}://"))
        .next()
        .expect("address")
        .trim_end_matches('/')
        .to_owned();
    (web, addr)
}

/// No browser needed: foreign `Host` names (DNS rebinding), WebSockets without the
/// session cookie and its CSRF token (with or without an Origin, even the right one),
/// WebSockets from another origin and beyond `--max-connections` are refused.
#[tokio::test]
async fn web_refuses_foreign_hosts_origins_no_session_and_too_many_sockets() {
    let env = Env::new();
    let (_web, addr) = start_web(&env, &["--max-connections", "2"]);
    let status = |path: &str, host: &str| raw_request(&addr, path, host, None).0;
    assert!(status("/servers", &addr).contains(" 200 "));
    assert!(status("/servers", "localhost").contains(" 200 "));
    assert!(status("/servers", "evil.example").contains(" 421 "));
    assert!(status("/ws", "evil.example:80").contains(" 421 "));

    // A link from another site makes no session (its cookie would replace the user's).
    let mut s = TcpStream::connect(&addr).expect("connect");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    write!(
        s,
        "GET /chats HTTP/1.1\r\nHost: {addr}\r\nSec-Fetch-Site: cross-site\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    assert!(
        resp.starts_with("HTTP/1.1 200") && resp.contains("another site"),
        "{resp}"
    );
    assert!(!resp.to_ascii_lowercase().contains("set-cookie"), "{resp}");

    let page = open_page(&addr, None);
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(page.set_cookie.contains(attr), "{}", page.set_cookie);
    }
    assert!(!page.set_cookie.contains("Secure"), "plain HTTP: no Secure");
    assert_eq!(page.token.len(), 64);
    // The same cookie keeps its session (no new cookie, the same token).
    let again = open_page(&addr, Some(&page.cookie));
    assert!(again.set_cookie.is_empty(), "{}", again.set_cookie);
    assert_eq!(again.token, page.token);
    let other = open_page(&addr, None);
    assert_ne!(other.token, page.token);

    let own = format!("http://{addr}");
    let (c, t) = (Some(page.cookie.as_str()), Some(page.token.as_str()));
    for (what, token, cookie, origin, body) in [
        ("nothing", None, None, None, "no session"),
        (
            "nothing, own origin",
            None,
            None,
            Some(own.as_str()),
            "no session",
        ),
        ("token without cookie", t, None, None, "no session"),
        (
            "token without cookie, own origin",
            t,
            None,
            Some(own.as_str()),
            "no session",
        ),
        (
            "cookie without token",
            None,
            c,
            Some(own.as_str()),
            "CSRF token is missing",
        ),
        (
            "cookie, another session's token",
            Some(other.token.as_str()),
            c,
            None,
            "does not belong",
        ),
        (
            "cookie and token, foreign origin",
            t,
            c,
            Some("http://evil.example"),
            "cross-origin",
        ),
        (
            "a made-up cookie",
            t,
            Some("flock_session_1=00"),
            None,
            "no session",
        ),
    ] {
        match ws(&addr, token, cookie, origin).await {
            Err((403, b)) => assert!(b.contains(body), "{what}: {b}"),
            Err(e) => panic!("{what}: {e:?}"),
            Ok(_) => panic!("{what}: accepted"),
        }
    }
    let first = ws(&addr, t, c, Some(&own)).await.expect("own page");
    let _second = ws(&addr, t, c, None)
        .await
        .expect("no Origin, cookie + token");
    let third = ws(&addr, t, c, Some(&own)).await;
    assert!(matches!(third, Err((503, _))), "{:?}", third.err());
    drop(first);
    // The closed socket's slot frees up.
    let deadline = Instant::now() + WAIT;
    loop {
        if ws(&addr, t, c, Some(&own)).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Malformed WebSocket input gets a clear error and the socket stays usable; a page
/// cannot queue more than 8 requests; a login to a dead server fails and says which.
#[tokio::test]
async fn web_rejects_malformed_input_and_bounds_a_session() {
    let env = Env::new();
    let dead = std::net::UdpSocket::bind("127.0.0.1:0").expect("a port nobody answers on");
    let dead_addr = dead.local_addr().expect("addr").to_string();
    let (_web, addr) = start_web(
        &env,
        &["--server", &dead_addr, "--register-wait-ms", "2500"],
    );
    let page = open_page(&addr, None);
    let mut s = ws(&addr, Some(&page.token), Some(&page.cookie), None)
        .await
        .expect("websocket");
    for (input, error) in [
        ("not json", "bad request"),
        ("{\"ref\":5,\"event\":\"nope\"}", "unknown event \"nope\""),
        (
            "{\"ref\":6,\"event\":\"send_message\",\"data\":{\"to\":\"bob\"}}",
            "missing field `text`",
        ),
        (
            "{\"ref\":7,\"event\":\"register\",\"data\":{\"username\":\"a\",\"password\":\"b\",\"mode\":\"x\"}}",
            "mode must be login or create",
        ),
        ("{\"ref\":8,\"event\":\"load_chats\"}", "not logged in"),
        (
            "{\"ref\":9,\"event\":\"connect_server\",\"data\":{\"server\":\"127.0.0.1:9\"}}",
            "did not answer",
        ),
        (
            "{\"ref\":10,\"event\":\"remove_server\",\"data\":{\"server\":\"1.2.3.4:5\"}}",
            "is not in use",
        ),
    ] {
        send(&mut s, input).await;
        let r = reply(&mut s).await;
        assert_eq!(r["ok"], json!(false), "{input}: {r}");
        let e = r["error"].as_str().unwrap_or_default();
        assert!(e.contains(error), "{input}: {e}");
    }
    s.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .expect("send");
    let r = reply(&mut s).await;
    assert!(
        r["error"].as_str().unwrap_or_default().contains("binary"),
        "{r}"
    );

    // A login waits for the (dead) server; meanwhile the page may queue 8 requests in
    // all: the rest are refused at once.
    let started = Instant::now();
    create_account(&mut s, 100, "carol").await;
    for r in 101..=112 {
        send(&mut s, &json!({"ref": r, "event": "state"}).to_string()).await;
    }
    let mut refused = 0;
    let mut login = None;
    let mut unreachable = None;
    let deadline = tokio::time::Instant::now() + WAIT;
    // The event and the reply travel separate paths to the socket: either may come first.
    while login.is_none() || unreachable.is_none() {
        let msg = tokio::time::timeout_at(deadline, s.next())
            .await
            .expect("replies in time")
            .expect("open")
            .expect("frame");
        let Message::Text(t) = msg else { continue };
        let v: Value = serde_json::from_str(t.as_str()).expect("JSON");
        if v["event"] == "server_unreachable" {
            unreachable = Some(v["data"].clone());
        }
        if v["type"] != "reply" {
            continue;
        }
        if v["error"] == "too many requests at once" {
            refused += 1;
        }
        if v["ref"] == 100 {
            login = Some(v);
        }
    }
    assert!(refused >= 5, "{refused} refused");
    let login = login.expect("login reply");
    let error = login["error"].as_str().unwrap_or_default();
    assert_eq!(login["ok"], json!(false), "{login}");
    assert!(
        error.contains(&format!("{dead_addr} did not answer"))
            && error.contains("nothing was registered"),
        "{error}"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(2_400),
        "waited for the server"
    );
    let unreachable = unreachable.expect("the page is told which server failed");
    assert_eq!(unreachable["tried"], json!([dead_addr]), "{unreachable}");
    // Nothing claims success: still not logged in, and the new key was removed.
    send(&mut s, "{\"ref\":200,\"event\":\"state\"}").await;
    let st = reply(&mut s).await;
    assert_eq!(st["data"]["user"], Value::Null, "{st}");
    assert!(!env.path("web/keys/carol/private.pem").exists());

    // Larger than any request may be: the socket is closed, not the process.
    let huge = "x".repeat(600_000);
    let _ = s.send(Message::Text(huge.into())).await;
    let closed = tokio::time::timeout(WAIT, async {
        loop {
            match s.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "an oversized message closes the socket");
    assert!(
        ws(&addr, Some(&page.token), Some(&page.cookie), None)
            .await
            .is_ok()
    );
}

/// Runs `cmd` with `input` on stdin; its stdout and stderr, within [`WAIT`] (killed
/// after).
fn run_with_input(cmd: &mut Command, input: &[u8]) -> (bool, String) {
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .expect("write stdin");
    let deadline = Instant::now() + WAIT;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `--listen` beyond loopback needs TLS (or `--insecure-http`); with `--tls-cert` and
/// `--tls-key` the UI is HTTPS, its cookie `Secure` and its CSP `wss:`.
#[test]
fn web_listen_rules_and_tls() {
    let env = Env::new();
    let data = env.path("web").display().to_string();
    let (ok, out) = run_with_input(
        Command::new(FLOCK).args([
            "web",
            "--listen",
            "0.0.0.0:0",
            "--no-discovery",
            "--data-dir",
            &data,
        ]),
        b"",
    );
    assert!(
        !ok && out.contains("not a loopback address") && out.contains("--tls-cert"),
        "{out}"
    );
    let openssl = std::path::Path::new("/usr/bin/openssl");
    if !openssl.exists() {
        let _ = writeln!(
            std::io::stderr().lock(),
            "*** SKIPPED the TLS half of web_listen_rules_and_tls: no /usr/bin/openssl ***"
        );
        return;
    }
    let (cert, key) = (env.path("cert.pem"), env.path("key.pem"));
    let (ok, out) = run_with_input(
        Command::new(openssl)
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args([
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert),
        b"",
    );
    assert!(ok, "openssl req: {out}");
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    let (_web, addr) = spawn_web(&env, &["--tls-cert", &cert, "--tls-key", &key], "https");
    let request = format!("GET /servers HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let (_, out) = run_with_input(
        Command::new(openssl).args(["s_client", "-connect", &addr, "-quiet"]),
        request.as_bytes(),
    );
    assert!(out.contains("HTTP/1.1 200"), "{out}");
    let cookie = out
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .unwrap_or_default();
    for attr in ["HttpOnly", "SameSite=Strict", "Secure"] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(out.contains(&format!("wss://{addr}")), "CSP: {out}");
    // Plain HTTP to the TLS port gets no page.
    let (status, _) = raw_request(&addr, "/servers", &addr, None);
    assert!(!status.contains(" 200 "), "{status}");
}

/// A server that does not take this host for an admin (`--admin-allow` elsewhere): the
/// ring view says so and shows the members the server names, without ranges; and only
/// to a logged-in session.
#[tokio::test]
async fn web_ring_view_without_admin_access() {
    let env = Env::new();
    let port = 32500u16;
    let args: Vec<String> = [
        "server",
        "n0",
        "--bind",
        "127.0.0.1",
        "--no-broadcast",
        "--no-multicast",
        "--admin-allow",
        "10.9.9.0/24",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .chain([
        "--port".to_owned(),
        port.to_string(),
        "--ping-port".to_owned(),
        (port + 1).to_string(),
        "--data-dir".to_owned(),
        env.path("n0").display().to_string(),
    ])
    .collect();
    let _server = Proc::flock("n0", &args, &env.path("n0.log"));
    super::proc::wait_pong(std::net::SocketAddrV4::new(
        std::net::Ipv4Addr::LOCALHOST,
        port,
    ));
    let server = format!("127.0.0.1:{port}");
    let (_web, addr) = start_web(&env, &["--server", &server, "--bind", "127.0.0.1"]);
    let page = open_page(&addr, None);
    let mut s = ws(&addr, Some(&page.token), Some(&page.cookie), None)
        .await
        .expect("websocket");
    send(&mut s, "{\"ref\":1,\"event\":\"ring\"}").await;
    let r = reply(&mut s).await;
    assert_eq!(r["error"], json!("not logged in"), "{r}");
    create_account(&mut s, 2, "dora").await;
    let r = reply(&mut s).await;
    assert_eq!(r["ok"], json!(true), "{r}");
    send(
        &mut s,
        "{\"ref\":3,\"event\":\"ring\",\"data\":{\"user\":\"dora\"}}",
    )
    .await;
    let r = reply(&mut s).await;
    assert_eq!(r["ok"], json!(true), "{r}");
    let view = &r["data"];
    assert_eq!(view["admin"], json!(false), "{view}");
    assert!(
        view["note"]
            .as_str()
            .is_some_and(|n| n.contains("does not answer STATUS")),
        "{view}"
    );
    assert!(view["nodes"].is_array(), "{view}");
}
