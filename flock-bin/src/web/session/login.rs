//! Logging in: registering (or creating) an identity through a server, which finishes
//! only when a server accepted the registration; otherwise nothing is kept and the page
//! is told which servers did not answer and which others it may try.

use super::*;

impl Session {
    /// Servers to offer instead of `tried`: the ring members learned, then the
    /// configured ones.
    fn alternatives(&self, tried: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for a in self
            .shared
            .known()
            .into_iter()
            .chain(self.shared.servers.iter().copied())
            .chain(self.servers.iter().copied())
        {
            let a = a.to_string();
            if !tried.contains(&a) && !out.contains(&a) {
                out.push(a);
            }
        }
        out
    }

    pub(super) async fn register(&mut self, user: String, password: String, create: bool) -> Reply {
        if let Some(c) = &self.client {
            return Err(format!("already logged in as {}: log out first", c.user()));
        }
        let user = user.trim().to_owned();
        valid_user(&user)?;
        if password.is_empty() || password.len() > MAX_PASSWORD {
            return Err("type a password".to_owned());
        }
        if create && !strong_password(&password) {
            return Err(
                "the password needs at least 8 characters, with upper case, lower case and a digit"
                    .to_owned(),
            );
        }
        if self.servers.is_empty() && self.shared.args.client.no_discovery {
            return Err("choose a server first".to_owned());
        }
        let args = Arc::clone(&self.shared.args);
        let data = &args.client.data_dir;
        let exists = KeyDir::new(data.join("keys"), &user)
            .map_err(|e| e.to_string())?
            .exists();
        match (create, exists) {
            (true, true) => {
                return Err(format!(
                    "an account {user:?} already exists here: log in instead"
                ));
            }
            (false, false) => {
                return Err(format!("no account {user:?} here: create it first"));
            }
            _ => {}
        }
        // Never delete a history that was here before (see `remove_identity`).
        let db_existed = data.join("chats").join(format!("{user}.db")).exists();
        let mut opts = args.client.options(&user, &password);
        opts.servers.clone_from(&self.servers);
        opts.create = create;
        let mut client = match Client::login(opts).await {
            Ok(c) => c,
            Err(ClientError::WrongPassword(_)) => return Err("wrong password".to_owned()),
            Err(e) => return Err(e.to_string()),
        };
        // Wait for the ring's answer, so that a name taken by someone else is reported
        // here rather than discovered later.
        let wait = Duration::from_millis(args.register_wait_ms);
        let deadline = tokio::time::Instant::now() + wait;
        let mut registered = None;
        let mut refused = None;
        let mut tried: Vec<String> = Vec::new();
        while let Ok(Some(event)) = tokio::time::timeout_at(deadline, client.next_event()).await {
            match &event {
                ClientEvent::Protocol(Event::Connection(ConnectionState::Connecting {
                    server,
                })) => {
                    let s = server.to_string();
                    if !tried.contains(&s) {
                        tried.push(s);
                    }
                }
                ClientEvent::Protocol(Event::Connection(ConnectionState::Registered {
                    server,
                })) => {
                    registered = Some(*server);
                }
                ClientEvent::Protocol(Event::RegistrationRefused { reason }) => {
                    refused = Some(reason.clone());
                }
                _ => {}
            }
            self.forward(event);
            if registered.is_some() || refused.is_some() {
                break;
            }
        }
        if let Some(reason) = refused {
            // The identity made a moment ago is useless: the name is someone else's.
            self.abandon(client, create.then_some((data, &user, !db_existed)))
                .await;
            return Err(format!("the server refused the name {user:?}: {reason}"));
        }
        let Some(server) = registered else {
            // Nothing accepted the registration: no claim of success, and nothing kept.
            self.abandon(client, create.then_some((data, &user, !db_existed)))
                .await;
            if tried.is_empty() {
                tried = self.servers.iter().map(ToString::to_string).collect();
            }
            let alternatives = self.alternatives(&tried);
            self.emit(
                "server_unreachable",
                json!({ "tried": tried, "alternatives": alternatives }),
            );
            let who = if tried.is_empty() {
                "no server was found".to_owned()
            } else {
                format!("{} did not answer", tried.join(", "))
            };
            return Err(format!(
                "not logged in: {who} within {:.1} s, so nothing was registered{}. Choose \
                 another server.",
                wait.as_secs_f64(),
                if create {
                    " (and no account was created)"
                } else {
                    ""
                }
            ));
        };
        self.client = Some(client);
        self.snapshot.send_modify(|s| s.user = Some(user.clone()));
        Ok(json!({ "user": user, "server": server.to_string() }))
    }

    /// Stops a client whose login failed; removes the identity it just created (and its
    /// new database when the flag is set).
    async fn abandon(&self, client: Client, created: Option<(&Path, &str, bool)>) {
        client.shutdown().await;
        self.snapshot.send_modify(|s| {
            s.connection = "offline";
            s.server = None;
        });
        if let Some((data, user, db)) = created {
            remove_identity(data, user, db);
        }
    }
}

/// The original web UI's rule for new accounts: 8+ characters with upper case, lower
/// case and a digit.
pub(crate) fn strong_password(p: &str) -> bool {
    p.chars().count() >= 8
        && p.chars().any(char::is_uppercase)
        && p.chars().any(char::is_lowercase)
        && p.chars().any(|c| c.is_ascii_digit())
}

/// Removes an identity created by a registration the ring refused (and its new, empty
/// database when `db` is set).
fn remove_identity(data: &Path, user: &str, db: bool) {
    if let Ok(dir) = KeyDir::new(data.join("keys"), user) {
        let _ = std::fs::remove_file(dir.private_path());
        let _ = std::fs::remove_file(dir.public_path());
    }
    if !db {
        return;
    }
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(data.join("chats").join(format!("{user}.db{suffix}")));
    }
}
