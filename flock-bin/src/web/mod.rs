//! `flock web`: the browser UI, in place of the original's Flask + Socket.IO app.
//!
//! An [axum] server (default `127.0.0.1:5000`, the original's port) with these pages:
//!
//! | page | what |
//! |---|---|
//! | `/servers` | "Search for servers" (LAN discovery) or type `HOST:PORT` (checked with `PING` first); the servers in use, each removable |
//! | `/register` | log in, or create an account (password: 8+ characters with upper case, lower case and a digit); when no server accepts the registration, which one did not answer and others to try |
//! | `/chats` | conversations: contact, last message, unread count, look-alike badge, remove; open a chat by username |
//! | `/chat/<user>` | history, live messages, delivery status (retry on failure), "not registered" explained in place, composer (up to 64 KiB, bytes used shown as you type; no `maxlength`), a key-change banner with accept / reject |
//! | `/ring` | the ring as the connected server sees it (`web/ring.rs`): nodes on a circle, ranges, successors, where a username's record and replicas live; refreshed every second |
//!
//! Pages are static HTML, CSS and plain JavaScript compiled into the binary
//! (`include_str!`; no build step, nothing loaded from elsewhere). They talk to the
//! server over one WebSocket (`/ws?csrf=<token>`) with JSON frames that mirror the
//! original's Socket.IO events:
//!
//! - requests `{"ref": n, "event": e, "data": {...}}` with `e` one of `state`,
//!   `discover_servers`, `connect_server {server}`, `remove_server {server}`,
//!   `register {username, password, mode: "login"|"create"}`, `logout {keep}`,
//!   `load_chats`, `load_chat_history {peer}`, `send_message {to, text}`,
//!   `mark_seen {peer}`, `hide_chat {peer}`, `accept_key {user}`, `reject_key {user}`,
//!   `verify_contact {user, verified}`, `ring {user?}`;
//! - answers `{"type": "reply", "ref": n, "ok": true, "data": ...}` or
//!   `{"type": "reply", "ref": n, "ok": false, "error": "..."}` (malformed input too:
//!   `bad request: ...`, `unknown event ...`);
//! - pushed events `{"type": "event", "event": e, "data": {...}}`: `new_message`,
//!   `message_sent`, `status_changed` (queued / sent / delivered / failed), `key_changed`,
//!   `key_accepted`, `key_rejected`, `key_pinned`, `connection`, `registration_refused`,
//!   `server_unreachable {tried, alternatives}`, `user_not_found {user}`,
//!   `unread_changed`, `warning`, `logged_out`, `session_ended`, and `resync` when a page
//!   fell behind.
//!
//! **Sessions** (`web/auth.rs`): every browser gets its own session (cookie `HttpOnly`,
//! `SameSite=Strict`, `Secure` under TLS) and a CSRF token bound to it; the WebSocket needs both, whatever the
//! `Origin`. Each logged-in session runs its own [`Client`](crate::client::Client), so
//! several people use one process, each with their own identity, and nothing of one
//! session reaches another. Logging out stops the client, or keeps it running for
//! delivery (logging in again with the password takes it back). Logging in finishes only
//! once a server accepted the registration.
//!
//! Limits and hardening: WebSocket messages of at most 6 x 64 KiB + 4 KiB (a 64 KiB text
//! JSON-escaped), at most `--max-connections` WebSockets (16) in all and 8 per session,
//! `--max-sessions` sessions (32; idle ones not logged in are dropped first), 8 requests
//! in flight per WebSocket, 32 queued per session, 1,024 events buffered per session;
//! requests are refused unless the `Host` header is an IP address, `localhost` or an
//! `--allow-host` name (no DNS rebinding), and a WebSocket whose `Origin` is not this
//! server is refused (no other site can drive the UI). `--listen` on an address other
//! than loopback needs `--tls-cert`/`--tls-key` (HTTPS with rustls, `web/tls.rs`; the
//! cookie is then `Secure`) or an explicit `--insecure-http`. Pages are served with a strict
//! `Content-Security-Policy` (no inline script), and the JavaScript puts user text into
//! the page with `textContent` only.

mod auth;
mod ring;
mod session;
mod tls;
mod ws;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, Request, State, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use flock_proto::limits::WEB_UI_PORT;

use crate::client::ClientArgs;
use tokio::sync::Semaphore;

/// Options of `flock web`.
#[derive(Debug, Clone, clap::Args)]
pub struct WebArgs {
    /// Address to listen on (port 0: any; the address is printed). An address other than
    /// loopback needs `--tls-cert`/`--tls-key`, or `--insecure-http`: passwords and
    /// session cookies would otherwise cross the network in clear text.
    #[arg(long, default_value_t = SocketAddr::from((Ipv4Addr::LOCALHOST, WEB_UI_PORT)))]
    pub listen: SocketAddr,
    /// Serve HTTPS with this certificate chain (PEM, leaf first); needs `--tls-key`.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The private key of `--tls-cert` (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Serve plain HTTP on a non-loopback `--listen` address anyway (only on a network
    /// you trust, or behind a TLS proxy).
    #[arg(long, conflicts_with = "tls_cert")]
    pub insecure_http: bool,
    /// Files, servers, socket and timings of the client.
    #[command(flatten)]
    pub client: ClientArgs,
    /// How long logging in waits for a server to accept the registration, in
    /// milliseconds (a refusal, e.g. a name taken by another key, is reported at once);
    /// without an acceptance the login fails and names the servers that did not answer.
    #[arg(long, default_value_t = 10_000)]
    pub register_wait_ms: u64,
    /// Most WebSockets (open pages) at a time, all sessions together.
    #[arg(long, default_value_t = 16)]
    pub max_connections: usize,
    /// Most browser sessions at a time, counting clients kept running after a log-out
    /// (each logged-in session runs its own client; with several, leave `--port` at 0).
    #[arg(long, default_value_t = 32)]
    pub max_sessions: usize,
    /// A host name the UI may be reached by, besides IP addresses and `localhost`
    /// (repeatable).
    #[arg(long = "allow-host", value_name = "NAME")]
    pub allow_hosts: Vec<String>,
}

/// Runs `flock web` until Ctrl-C or SIGTERM.
///
/// # Errors
/// A bad server address or an unusable listening address.
pub fn run(args: WebArgs) -> Result<(), Box<dyn std::error::Error>> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(serve(args))
}

#[derive(Clone)]
struct AppState {
    /// Served over TLS (`wss:` and `https:` origins, `Secure` cookies).
    tls: bool,
    sessions: Arc<auth::Sessions>,
    sockets: Arc<Semaphore>,
    allow_hosts: Arc<Vec<String>>,
}

/// Serves the UI on `args.listen` until Ctrl-C or SIGTERM.
///
/// # Errors
/// A bad server address, an unusable listening address, or a non-loopback one without
/// `--insecure-http`.
pub async fn serve(args: WebArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut servers: Vec<SocketAddrV4> = Vec::new();
    for s in &args.client.servers {
        servers.push(crate::tools::parse_addr(s).map_err(|e| format!("bad server {s:?}: {e}"))?);
    }
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls::config(cert, key)?),
        _ => None,
    };
    if !args.listen.ip().is_loopback() && tls.is_none() && !args.insecure_http {
        return Err(format!(
            "--listen {}: not a loopback address; passwords and session cookies would cross \
             the network unencrypted. Give --tls-cert and --tls-key, or --insecure-http \
             behind a TLS proxy, or listen on 127.0.0.1",
            args.listen
        )
        .into());
    }
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let local = listener.local_addr()?;
    let allow_hosts = args
        .allow_hosts
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    let max_sockets = args.max_connections.max(1);
    let max_sessions = args.max_sessions;
    let shared = session::Shared {
        args: Arc::new(args),
        servers,
        known: Arc::new(Mutex::new(Vec::new())),
    };
    let state = AppState {
        tls: tls.is_some(),
        sockets: Arc::new(Semaphore::new(max_sockets)),
        allow_hosts: Arc::new(allow_hosts),
        sessions: Arc::new(auth::Sessions::new(
            local.port(),
            tls.is_some(),
            max_sessions,
            shared,
        )),
    };
    let app = router(state);
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!("web UI on {scheme}://{local}/");
    println!("flock web: open {scheme}://{local}/");
    let done = match tls {
        Some(cfg) => {
            let listener = tls::Listener::new(listener, cfg)?;
            tokio::select! {
                r = axum::serve(listener, app) => r,
                () = shutdown_signal() => Ok(()),
            }
        }
        None => tokio::select! {
            r = axum::serve(listener, app) => r,
            () = shutdown_signal() => Ok(()),
        },
    };
    tracing::info!("stopping");
    Ok(done?)
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

fn router(state: AppState) -> Router {
    let mut r = Router::new().route("/", get(index));
    for (path, p) in [
        ("/servers", Page::Servers),
        ("/register", Page::Register),
        ("/chats", Page::Chats),
        ("/ring", Page::Ring),
    ] {
        r = r.route(
            path,
            get(move |s: State<AppState>, h: HeaderMap| page_for(s, h, p)),
        );
    }
    r.route("/chat/{peer}", get(chat_page))
        .route(
            "/static/app.js",
            get(|| async { asset("text/javascript", APP_JS) }),
        )
        .route(
            "/static/style.css",
            get(|| async { asset("text/css", STYLE_CSS) }),
        )
        .route("/favicon.ico", get(|| async { StatusCode::NO_CONTENT }))
        .route("/ws", get(websocket))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found") })
        .layer(axum::middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

const LAYOUT: &str = include_str!("static/layout.html");
const SERVERS_HTML: &str = include_str!("static/servers.html");
const REGISTER_HTML: &str = include_str!("static/register.html");
const CHATS_HTML: &str = include_str!("static/chats.html");
const CHAT_HTML: &str = include_str!("static/chat.html");
const RING_HTML: &str = include_str!("static/ring.html");
const APP_JS: &str = include_str!("static/app.js");
/// What a link from another site gets (see [`page_for`]).
const CROSS_SITE_HTML: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>Flock</title><link rel=\"stylesheet\" href=\"/static/style.css\"></head>\
<body><main><section class=\"card narrow\"><h1>Flock</h1>\
<p>You followed a link from another site.</p><p><a href=\"/\">Open Flock</a></p>\
</section></main></body></html>";
const STYLE_CSS: &str = include_str!("static/style.css");

#[derive(Clone, Copy, PartialEq, Eq)]
enum Page {
    Servers,
    Register,
    Chats,
    Chat,
    Ring,
}

/// The page's HTML, with the session's CSRF token for its WebSocket.
fn page(p: Page, csrf: &str) -> String {
    let (name, title, body) = match p {
        Page::Servers => ("servers", "Servers", SERVERS_HTML),
        Page::Register => ("register", "Log in", REGISTER_HTML),
        Page::Chats => ("chats", "Chats", CHATS_HTML),
        Page::Chat => ("chat", "Chat", CHAT_HTML),
        Page::Ring => ("ring", "Ring", RING_HTML),
    };
    LAYOUT
        .replace("{{PAGE}}", name)
        .replace("{{TITLE}}", title)
        .replace("{{CSRF}}", csrf)
        .replace("{{BODY}}", body)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn cookie_header(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::COOKIE).and_then(|h| h.to_str().ok())
}

/// Page `p` for this browser's session (made now if it has none), or a redirect to the
/// page its state calls for.
async fn page_for(State(s): State<AppState>, headers: HeaderMap, p: Page) -> Response {
    // A link from another site: the browser holds back the SameSite=Strict cookie, and a
    // new session's cookie would replace the user's. A plain link to follow instead
    // (same-site, with the cookie); no session is made.
    let cross_site = headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site");
    if cross_site && s.sessions.find(cookie_header(&headers)).is_none() {
        return (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            CROSS_SITE_HTML,
        )
            .into_response();
    }
    let (sid, entry, new) = match s.sessions.find_or_create(cookie_header(&headers)) {
        Ok(found) => found,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e).into_response(),
    };
    let logged_in = entry.handle.snapshot.borrow().user.is_some();
    let redirect = match p {
        Page::Register if logged_in => Some("/chats"),
        Page::Chats | Page::Chat | Page::Ring if !logged_in => Some("/register"),
        _ => None,
    };
    let mut resp = match redirect {
        Some(to) => Redirect::to(to).into_response(),
        None => (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            page(p, &s.sessions.token(&sid)),
        )
            .into_response(),
    };
    if new {
        if let Ok(v) = HeaderValue::from_str(&s.sessions.set_cookie(&sid)) {
            resp.headers_mut().insert(header::SET_COOKIE, v);
        }
    }
    resp
}

async fn index(State(s): State<AppState>, headers: HeaderMap) -> Redirect {
    let Some((_, entry)) = s.sessions.find(cookie_header(&headers)) else {
        return Redirect::to(if s.sessions.has_servers() {
            "/register"
        } else {
            "/servers"
        });
    };
    let snap = entry.handle.snapshot.borrow().clone();
    if snap.user.is_some() {
        Redirect::to("/chats")
    } else if snap.servers.is_empty() {
        Redirect::to("/servers")
    } else {
        Redirect::to("/register")
    }
}

async fn chat_page(
    state: State<AppState>,
    headers: HeaderMap,
    Path(peer): Path<String>,
) -> Response {
    if flock_proto::validate_username(&peer).is_err() {
        return Redirect::to("/chats").into_response();
    }
    page_for(state, headers, Page::Chat).await
}

#[derive(serde::Deserialize)]
struct WsQuery {
    csrf: Option<String>,
}

async fn websocket(
    State(s): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<WsQuery>, axum::extract::rejection::QueryRejection>,
    upgrade: WebSocketUpgrade,
) -> Response {
    // Browsers always send Origin with a WebSocket: it must be this very server, or any
    // web page the user visits could read and send their messages.
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let scheme = if s.tls { "https://" } else { "http://" };
        let ok = origin
            .to_str()
            .ok()
            .and_then(|o| o.strip_prefix(scheme))
            .is_some_and(|o| Some(o) == host);
        if !ok {
            return (StatusCode::FORBIDDEN, "cross-origin WebSocket refused").into_response();
        }
    }
    // Whatever the Origin (or none): the session cookie and its CSRF token.
    let token = query.ok().and_then(|Query(q)| q.csrf);
    let (sid, entry) = match s
        .sessions
        .authorize(cookie_header(&headers), token.as_deref())
    {
        Ok(found) => found,
        Err(refusal) => return (StatusCode::FORBIDDEN, refusal.text()).into_response(),
    };
    let Ok(mine) = Arc::clone(&entry.sockets).try_acquire_owned() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many open pages in this session",
        )
            .into_response();
    };
    let Ok(permit) = Arc::clone(&s.sockets).try_acquire_owned() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "too many open pages").into_response();
    };
    upgrade
        .max_message_size(ws::MAX_WS_MESSAGE)
        .max_frame_size(ws::MAX_WS_MESSAGE)
        .on_upgrade(move |socket| ws::serve(socket, s.sessions, sid, entry, (permit, mine)))
}

/// Refuses requests for foreign host names (DNS rebinding) and sets security headers.
async fn guard(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    let Some(host) = host.filter(|h| host_allowed(h, &s.allow_hosts)) else {
        return (StatusCode::MISDIRECTED_REQUEST, "unknown host name").into_response();
    };
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    let ws = if s.tls { "wss" } else { "ws" };
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self' {ws}://{host}; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// An IP address, `localhost`, or a name given with `--allow-host`; with an optional
/// port.
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    if host.len() > 255 {
        return false;
    }
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        match rest.split_once(']') {
            Some((v6, _)) => return v6.parse::<std::net::Ipv6Addr>().is_ok(),
            None => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((n, port)) if port.parse::<u16>().is_ok() => n,
            Some(_) => return false,
            None => host,
        }
    };
    let name = name.to_ascii_lowercase();
    name.parse::<IpAddr>().is_ok() || name == "localhost" || allowed.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        let allowed = vec!["flock.lan".to_owned()];
        for ok in [
            "127.0.0.1:5000",
            "localhost:5000",
            "LOCALHOST",
            "[::1]:5000",
            "10.0.0.2",
            "flock.lan:80",
        ] {
            assert!(host_allowed(ok, &allowed), "{ok}");
        }
        for bad in [
            "evil.example:5000",
            "evil.example",
            "127.0.0.1:x",
            "[::1",
            "localhost.evil:5000",
        ] {
            assert!(!host_allowed(bad, &allowed), "{bad}");
        }
    }

    #[test]
    fn passwords() {
        assert!(session::login::strong_password("Correct-Horse-1"));
        assert!(!session::login::strong_password("short1A"));
        assert!(!session::login::strong_password("alllowercase1"));
        assert!(!session::login::strong_password("NoDigitsHere"));
    }
}
