//! One browser page's WebSocket: JSON requests in, replies and pushed events out.

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocket};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::OwnedSemaphorePermit;
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinSet;

use super::auth::{Entry, Sessions};
use super::session::{Handle, Op, Reply};

/// Largest WebSocket message accepted from a page: a text of the largest size
/// ([`MAX_TEXT_BYTES`](flock_proto::client::MAX_TEXT_BYTES)) fits even if every byte is
/// JSON-escaped as `\u00XX` (6 bytes), with room for the request around it.
pub(crate) const MAX_WS_MESSAGE: usize = 6 * flock_proto::client::MAX_TEXT_BYTES + 4 * 1024;
/// Requests one page may have in flight.
const MAX_INFLIGHT: usize = 8;

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "ref")]
    reference: u64,
    event: String,
    #[serde(default)]
    data: Value,
}

#[derive(Deserialize)]
struct ServerData {
    server: String,
}

#[derive(Deserialize)]
struct RegisterData {
    username: String,
    password: String,
    mode: String,
}

#[derive(Deserialize)]
struct PeerData {
    peer: String,
}

#[derive(Deserialize)]
struct UserData {
    user: String,
}

#[derive(Deserialize)]
struct VerifyData {
    user: String,
    verified: bool,
}

#[derive(Deserialize)]
struct RingData {
    #[serde(default)]
    user: Option<String>,
}

#[derive(Deserialize)]
struct LogoutData {
    #[serde(default)]
    keep: bool,
}

#[derive(Deserialize)]
struct SendData {
    to: String,
    text: String,
}

fn data<T: for<'de> Deserialize<'de>>(v: Value) -> Result<T, String> {
    // No `data`: an empty object (every field optional, or "missing field ...").
    let v = if v.is_null() { json!({}) } else { v };
    serde_json::from_value(v).map_err(|e| format!("bad request: {e}"))
}

/// A request's `ref` and operation.
fn parse(text: &str) -> Result<(u64, Op), (u64, String)> {
    let env: Envelope = serde_json::from_str(text).map_err(|e| (0, format!("bad request: {e}")))?;
    let r = env.reference;
    let op = match env.event.as_str() {
        "state" => Ok(Op::State),
        "discover_servers" => Ok(Op::Discover),
        "connect_server" => data::<ServerData>(env.data).map(|d| Op::Connect { server: d.server }),
        "register" => data::<RegisterData>(env.data).and_then(|d| {
            let create = match d.mode.as_str() {
                "create" => true,
                "login" => false,
                _ => return Err("mode must be login or create".to_owned()),
            };
            Ok(Op::Register {
                user: d.username,
                password: d.password,
                create,
            })
        }),
        "logout" => data::<LogoutData>(env.data).map(|d| Op::Logout { keep: d.keep }),
        "remove_server" => {
            data::<ServerData>(env.data).map(|d| Op::RemoveServer { server: d.server })
        }
        "hide_chat" => data::<PeerData>(env.data).map(|d| Op::HideChat { peer: d.peer }),
        "ring" => data::<RingData>(env.data).map(|d| Op::Ring {
            user: d.user.filter(|u| !u.trim().is_empty()),
        }),
        "load_chats" => Ok(Op::Chats),
        "load_chat_history" => data::<PeerData>(env.data).map(|d| Op::History { peer: d.peer }),
        "send_message" => data::<SendData>(env.data).map(|d| Op::Send {
            to: d.to,
            text: d.text,
        }),
        "mark_seen" => data::<PeerData>(env.data).map(|d| Op::MarkSeen { peer: d.peer }),
        "accept_key" => data::<UserData>(env.data).map(|d| Op::AcceptKey { user: d.user }),
        "reject_key" => data::<UserData>(env.data).map(|d| Op::RejectKey { user: d.user }),
        "verify_contact" => data::<VerifyData>(env.data).map(|d| Op::Verify {
            user: d.user,
            verified: d.verified,
        }),
        other => Err(format!(
            "unknown event {:?}",
            other.chars().take(40).collect::<String>()
        )),
    };
    op.map(|op| (r, op)).map_err(|e| (r, e))
}

fn reply_json(reference: u64, reply: Reply) -> String {
    match reply {
        Ok(data) => json!({ "type": "reply", "ref": reference, "ok": true, "data": data }),
        Err(error) => json!({ "type": "reply", "ref": reference, "ok": false, "error": error }),
    }
    .to_string()
}

/// Runs `op` for browser session `sid`: log-out and logging in again to a client kept
/// running concern the sessions; everything else goes to the session's task.
async fn call(sessions: Arc<Sessions>, sid: Arc<str>, session: Handle, op: Op) -> Reply {
    match op {
        Op::Logout { keep } => {
            let user = session.snapshot.borrow().user.clone();
            let keep = if keep { user.as_deref() } else { None };
            let Some(handle) = sessions.end(&sid, keep) else {
                return Err("this session has ended".to_owned());
            };
            if keep.is_none() {
                // Stop the client now (its identity is free again at once).
                handle.call(Op::Logout { keep: false }).await?;
            }
            Ok(json!({ "kept": keep.is_some() }))
        }
        Op::Register {
            user,
            password,
            create: false,
        } if session.snapshot.borrow().user.is_none() && sessions.is_running(user.trim(), &sid) => {
            // The identity's client runs already (kept after a log-out, or in another
            // session): the password unlocks it here.
            let name = user.trim().to_owned();
            super::session::check_password(sessions.data_dir(), &name, password).await?;
            let Some(running) = sessions.take_running(&name, &sid) else {
                return Err(format!(
                    "{name}'s client stopped a moment ago: log in again"
                ));
            };
            if !sessions.adopt(&sid, running) {
                return Err("this session has ended".to_owned());
            }
            Ok(json!({ "user": name, "resumed": true }))
        }
        op => session.call(op).await,
    }
}

/// Serves one page of session `sid` until it goes away or the session ends. `_permits`
/// count the socket against the limits (all sessions', and this session's).
pub(crate) async fn serve(
    mut socket: WebSocket,
    sessions: Arc<Sessions>,
    sid: String,
    entry: Entry,
    _permits: (OwnedSemaphorePermit, OwnedSemaphorePermit),
) {
    let session = entry.handle;
    let mut revoked = entry.revoked.subscribe();
    if *revoked.borrow() {
        return;
    }
    let sid: Arc<str> = sid.into();
    let mut events = session.events.subscribe();
    let mut inflight: JoinSet<(u64, Reply)> = JoinSet::new();
    loop {
        let out: Option<Arc<str>> = tokio::select! {
            _ = revoked.changed() => {
                // Logged out (here or in another tab) or taken over: the page reloads.
                let bye = json!({ "type": "event", "event": "session_ended", "data": {} });
                let _ = socket.send(Message::Text(bye.to_string().into())).await;
                break;
            }
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(text))) => match parse(text.as_str()) {
                    Ok((r, op)) if inflight.len() < MAX_INFLIGHT => {
                        let s = session.clone();
                        let all = Arc::clone(&sessions);
                        let sid = Arc::clone(&sid);
                        inflight.spawn(async move { (r, call(all, sid, s, op).await) });
                        None
                    }
                    Ok((r, _)) => Some(reply_json(r, Err("too many requests at once".into())).into()),
                    Err((r, e)) => Some(reply_json(r, Err(e)).into()),
                },
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(Message::Binary(_))) => {
                    Some(reply_json(0, Err("bad request: binary frames are not understood; send JSON text".into())).into())
                }
                // Pings are answered by axum.
                Some(Ok(_)) => None,
            },
            Some(done) = inflight.join_next(), if !inflight.is_empty() => match done {
                Ok((r, reply)) => Some(reply_json(r, reply).into()),
                Err(_) => None,
            },
            ev = events.recv() => match ev {
                Ok(text) => Some(text),
                // Too slow to keep up: the page reloads what it shows.
                Err(RecvError::Lagged(_)) => {
                    Some(json!({ "type": "event", "event": "resync", "data": {} }).to_string().into())
                }
                Err(RecvError::Closed) => break,
            },
        };
        if let Some(text) = out {
            if socket
                .send(Message::Text(text.as_ref().into()))
                .await
                .is_err()
            {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse() {
        let (r, op) = parse(r#"{"ref":7,"event":"send_message","data":{"to":"bob","text":"hi"}}"#)
            .expect("parses");
        assert_eq!(r, 7);
        assert!(matches!(op, Op::Send { ref to, ref text } if to == "bob" && text == "hi"));
        assert!(matches!(
            parse(r#"{"ref":1,"event":"load_chats"}"#),
            Ok((1, Op::Chats))
        ));
        assert!(matches!(
            parse(
                r#"{"ref":2,"event":"register","data":{"username":"a","password":"b","mode":"x"}}"#
            ),
            Err((2, _))
        ));
        assert!(matches!(parse(r#"{"ref":3,"event":"nope"}"#), Err((3, _))));
        // Optional data may be left out; required data may not.
        assert!(matches!(
            parse(r#"{"ref":4,"event":"ring"}"#),
            Ok((4, Op::Ring { user: None }))
        ));
        assert!(matches!(
            parse(r#"{"ref":5,"event":"logout"}"#),
            Ok((5, Op::Logout { keep: false }))
        ));
        assert!(matches!(
            parse(r#"{"ref":6,"event":"logout","data":{"keep":true}}"#),
            Ok((6, Op::Logout { keep: true }))
        ));
        assert!(
            matches!(parse(r#"{"ref":7,"event":"hide_chat"}"#), Err((7, e)) if e.contains("missing field `peer`"))
        );
        assert!(matches!(parse("not json"), Err((0, _))));
    }
}
