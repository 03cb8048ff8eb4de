//! `sidecar ipns watch <name…>`: prints changes as the daemon pushes them
//! (its `/watch` WebSocket), one line each, and on a dropped connection
//! reconnects and resumes after the last event it printed.
//!
//! Called by: `ipns_command`. Must never: print a change twice or skip one
//! silently (a `resync` from the daemon is printed as such).

use std::time::Duration;

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// Wait before reconnecting after the daemon went away.
const RECONNECT: Duration = Duration::from_secs(2);

/// Runs until interrupted (or the daemon refuses the names).
pub fn run(addr: &str, names: &[String], since: Option<u64>, json: bool) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut cursor = since;
        loop {
            match session(addr, names, &mut cursor, json).await {
                Ok(Ended::Refused(why)) => bail!("{why}"),
                Ok(Ended::Resync) => {}
                Ok(Ended::Closed) | Err(_) => {
                    eprintln!(
                        "watch: connection to {addr} lost; resuming after event {}",
                        cursor.unwrap_or(0)
                    );
                    tokio::time::sleep(RECONNECT).await;
                }
            }
        }
    })
}

enum Ended {
    Closed,
    /// Changes were lost: start again from now.
    Resync,
    Refused(String),
}

async fn session(
    addr: &str,
    names: &[String],
    cursor: &mut Option<u64>,
    json: bool,
) -> anyhow::Result<Ended> {
    let url = match cursor {
        Some(id) => format!("ws://{addr}/watch?since={id}"),
        None => format!("ws://{addr}/watch"),
    };
    let (mut ws, _) = tokio_tungstenite::connect_async(&url)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let subscribe = serde_json::json!({"op": "subscribe", "names": names, "record": json});
    ws.send(Message::Text(subscribe.to_string().into())).await?;
    while let Some(message) = ws.next().await {
        let Message::Text(text) = message? else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&text)?;
        match v["type"].as_str() {
            Some("subscribed") => eprintln!("watching {}", v["name"].as_str().unwrap_or("?")),
            Some("refused") => {
                return Ok(Ended::Refused(format!(
                    "{}: {}",
                    v["name"].as_str().unwrap_or("?"),
                    v["reason"].as_str().unwrap_or("refused")
                )));
            }
            Some("resync") => {
                println!("resync: {}", v["message"].as_str().unwrap_or(""));
                *cursor = None;
                return Ok(Ended::Resync);
            }
            Some(_) => {}
            None => {
                *cursor = v["id"].as_u64().or(*cursor);
                if json {
                    println!("{text}");
                } else {
                    println!(
                        "{} {} {} seq={} {}",
                        v["id"],
                        v["kind"].as_str().unwrap_or("?"),
                        v["key"].as_str().unwrap_or("?"),
                        v["sequence"],
                        v["value"].as_str().unwrap_or("-")
                    );
                }
            }
        }
    }
    Ok(Ended::Closed)
}
