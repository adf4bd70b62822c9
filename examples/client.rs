//! Embedding the Flock client in a few lines.
//!
//! ```sh
//! cargo run --example client -- <USER> <PASSWORD> <SERVER HOST:PORT> [<TO> <TEXT>]
//! ```
//!
//! Logs in (creating the identity under `./flock-data` on first use), sends `TEXT` to
//! `TO` if given, then prints every event (messages, delivery statuses, key changes,
//! connection changes) until Ctrl-C.

use flock_bin::client::{Client, ClientEvent, ClientOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [user, password, server, rest @ ..] = args.as_slice() else {
        eprintln!("usage: client <USER> <PASSWORD> <SERVER HOST:PORT> [<TO> <TEXT>]");
        std::process::exit(2);
    };

    let mut opts = ClientOptions::new(user, password, "flock-data");
    opts.servers = vec![server.parse()?];
    let mut client = Client::login(opts).await?;
    println!("{user} listening on {}", client.local_addr());

    if let [to, text @ ..] = rest {
        let id = client.send(to, &text.join(" ")).await?;
        println!("queued message {id} to {to}");
    }
    loop {
        tokio::select! {
            event = client.next_event() => match event {
                Some(ClientEvent::Message { from, text, authenticated, .. }) => {
                    let mark = if authenticated { "" } else { " (unverified)" };
                    println!("<{from}{mark}> {text}");
                }
                Some(ClientEvent::Protocol(event)) => println!("{event:?}"),
                None => break,
            },
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    for chat in client.chats(10).await? {
        println!("{}: {} unread", chat.peer, chat.unread);
    }
    client.shutdown().await;
    Ok(())
}
