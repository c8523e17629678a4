//! `edge secret` and `edge kv`: an operator's view of apps' secrets and key-value stores
//! on a running server.

use super::client::AdminArgs;
use crate::kv::admin::{encode_key, reply_value};
use anyhow::{Context, Result, bail};
use hyper::Method;
use std::io::{Read, Write};

/// Set, list or delete an app's secrets (read by the guest through `wasi:config`).
#[derive(Debug, clap::Args)]
pub struct SecretArgs {
    #[command(subcommand)]
    action: SecretAction,
}

#[derive(Debug, clap::Subcommand)]
enum SecretAction {
    /// Set a secret; its value is read from standard input (a final newline is dropped),
    /// never from the command line, where other users could see it.
    Set {
        /// The app.
        app: String,
        /// The secret's name, as the guest reads it.
        key: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List an app's secret names (never their values).
    List {
        /// The app.
        app: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Delete a secret.
    Delete {
        /// The app.
        app: String,
        /// The secret's name.
        key: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

impl SecretArgs {
    /// Runs the action.
    pub fn execute(self) -> Result<()> {
        match self.action {
            SecretAction::Set { app, key, admin } => {
                let mut value = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut value)
                    .context("cannot read the secret from standard input")?;
                if value.ends_with(b"\n") {
                    value.pop();
                    if value.ends_with(b"\r") {
                        value.pop();
                    }
                }
                admin.call(
                    Method::PUT,
                    &format!("/apps/{app}/secrets/{}", encode_key(&key)),
                    Some("text/plain"),
                    value,
                )?;
                println!("secret `{key}` of `{app}` set");
            }
            SecretAction::List { app, admin } => {
                let r = admin.call(Method::GET, &format!("/apps/{app}/secrets"), None, vec![])?;
                for name in r["secrets"].as_array().into_iter().flatten() {
                    println!("{}", name.as_str().unwrap_or_default());
                }
            }
            SecretAction::Delete { app, key, admin } => {
                admin.call(
                    Method::DELETE,
                    &format!("/apps/{app}/secrets/{}", encode_key(&key)),
                    None,
                    vec![],
                )?;
                println!("secret `{key}` of `{app}` deleted");
            }
        }
        Ok(())
    }
}

/// Inspect and seed an app's key-value stores (`wasi:keyvalue`).
#[derive(Debug, clap::Args)]
pub struct KvArgs {
    #[command(subcommand)]
    action: KvAction,
}

#[derive(Debug, clap::Subcommand)]
enum KvAction {
    /// Print a value (raw bytes, as stored).
    Get {
        /// The app.
        app: String,
        /// One of the stores its manifest declares.
        store: String,
        /// The key.
        key: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Set a value, from VALUE or, without it, from standard input (as is).
    Set {
        /// The app.
        app: String,
        /// One of the stores its manifest declares.
        store: String,
        /// The key.
        key: String,
        /// The value [default: standard input].
        value: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Delete a key.
    Delete {
        /// The app.
        app: String,
        /// One of the stores its manifest declares.
        store: String,
        /// The key.
        key: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List every key of a store, one per line.
    List {
        /// The app.
        app: String,
        /// One of the stores its manifest declares.
        store: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

impl KvArgs {
    /// Runs the action.
    pub fn execute(self) -> Result<()> {
        match self.action {
            KvAction::Get {
                app,
                store,
                key,
                admin,
            } => {
                let r = admin.call(
                    Method::GET,
                    &format!("/apps/{app}/kv/{store}/{}", encode_key(&key)),
                    None,
                    vec![],
                )?;
                std::io::stdout().write_all(&reply_value(&r)?)?;
            }
            KvAction::Set {
                app,
                store,
                key,
                value,
                admin,
            } => {
                let value = match value {
                    Some(v) => v.into_bytes(),
                    None => {
                        let mut v = Vec::new();
                        std::io::stdin().read_to_end(&mut v)?;
                        v
                    }
                };
                admin.call(
                    Method::PUT,
                    &format!("/apps/{app}/kv/{store}/{}", encode_key(&key)),
                    Some("application/octet-stream"),
                    value,
                )?;
            }
            KvAction::Delete {
                app,
                store,
                key,
                admin,
            } => {
                admin.call(
                    Method::DELETE,
                    &format!("/apps/{app}/kv/{store}/{}", encode_key(&key)),
                    None,
                    vec![],
                )?;
            }
            KvAction::List { app, store, admin } => {
                let mut cursor: Option<u64> = None;
                let mut out = std::io::stdout().lock();
                loop {
                    let query = cursor.map_or(String::new(), |c| format!("?cursor={c}"));
                    let r = admin.call(
                        Method::GET,
                        &format!("/apps/{app}/kv/{store}{query}"),
                        None,
                        vec![],
                    )?;
                    for key in r["keys"].as_array().into_iter().flatten() {
                        writeln!(out, "{}", key.as_str().unwrap_or_default())?;
                    }
                    match r["cursor"].as_u64() {
                        Some(next) if Some(next) != cursor => cursor = Some(next),
                        Some(_) => bail!("the server returned the same cursor twice"),
                        None => break,
                    }
                }
            }
        }
        Ok(())
    }
}
