//! Embedding the Flock client in a few lines.
//!
//! ```sh
//! cargo run --release --example client -- <USER> <PASSWORD> <SERVER HOST:PORT> [<TO> <TEXT>]
//! ```
//!
//! (`--release`: RSA is slow unoptimised.) An application gets the same client with
//!
//! ```toml
//! [dependencies]
//! flock-bin = { version = "0.1", default-features = false }
//! ```
//!
//! which brings no web framework, argument parser or log subscriber.
//!
//! Logs in (creating the identity on first use, in the user's data directory:
//! `$XDG_DATA_HOME/flock-example`, else `~/.local/share/flock-example`, else the system's
//! temporary directory; `FLOCK_EXAMPLE_DATA` overrides), sends `TEXT` to `TO` if given, then
//! prints every event (messages, delivery statuses, key changes, connection changes) until
//! Ctrl-C. If the server refuses the registration (the name belongs to another key) it says
//! so and exits with status 1.

use std::path::PathBuf;
use std::process::ExitCode;

use flock_bin::client::{Client, ClientEvent, ClientOptions, Event};

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [user, password, server, rest @ ..] = args.as_slice() else {
        eprintln!("usage: client <USER> <PASSWORD> <SERVER HOST:PORT> [<TO> <TEXT>]");
        return Ok(ExitCode::from(2));
    };

    let data = data_dir();
    println!("data directory: {}", data.display());
    let mut opts = ClientOptions::new(user, password, data);
    opts.servers = vec![server.parse()?];
    let mut client = Client::login(opts).await?;
    println!("{user} listening on {}", client.local_addr());

    if let [to, text @ ..] = rest {
        let id = client.send(to, &text.join(" ")).await?;
        println!("queued message {id} to {to}");
    }
    let mut code = ExitCode::SUCCESS;
    loop {
        tokio::select! {
            event = client.next_event() => match event {
                Some(ClientEvent::Message { from, text, authenticated, .. }) => {
                    let mark = if authenticated { "" } else { " (unverified)" };
                    println!("<{from}{mark}> {text}");
                }
                Some(ClientEvent::Protocol(Event::RegistrationRefused { reason })) => {
                    eprintln!("the server refused to register {user}: {reason}");
                    code = ExitCode::FAILURE;
                    break;
                }
                Some(ClientEvent::Protocol(event)) => println!("{event:?}"),
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    if code == ExitCode::SUCCESS {
        for chat in client.chats(10).await? {
            println!("{}: {} unread", chat.peer, chat.unread);
        }
    }
    client.shutdown().await;
    Ok(code)
}

/// Where the example keeps its keys and chats: never the current directory.
fn data_dir() -> PathBuf {
    let env = |k| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = env("FLOCK_EXAMPLE_DATA") {
        return dir;
    }
    env("XDG_DATA_HOME")
        .or_else(|| env("HOME").map(|h| h.join(".local").join("share")))
        .unwrap_or_else(std::env::temp_dir)
        .join("flock-example")
}
