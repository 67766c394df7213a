//! A call participant in a process of its own, for tests that kill it (SIGKILL) mid-call:
//! joins a group's call with a microphone playing a tone, prints `joined` and stays until
//! it is killed.
//!
//! Settings come from the environment: `SOHBET_BASE` (server URL), `SOHBET_TOKEN`,
//! `SOHBET_GROUP`, `SOHBET_TONE_HZ`.

use std::time::Duration;

use anyhow::Context;
use sohbet_client::{gateway, Client};
use sohbet_tests::calls::tone_options;

fn var(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let base = var("SOHBET_BASE")?;
    let token = var("SOHBET_TOKEN")?;
    let group: i64 = var("SOHBET_GROUP")?.parse()?;
    let freq: f32 = var("SOHBET_TONE_HZ")?.parse()?;
    let client = Client::new(base)?.with_token(token.clone());
    let (handle, mut events) = gateway::connect(
        client.gateway_url(),
        token,
        gateway::GatewayOptions::default(),
    );
    while let Some(event) = events.recv().await {
        if matches!(event, gateway::GatewayEvent::Ready { .. }) {
            break;
        }
    }
    // Keep draining the main stream so the connection never backs up.
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    let (options, _recording) = tone_options(freq);
    let (_call, mut call_events) = client.join_call(&handle, group, options).await?;
    println!("joined");
    loop {
        match tokio::time::timeout(Duration::from_secs(3600), call_events.recv()).await {
            Ok(Some(event)) => eprintln!("{event:?}"),
            _ => return Ok(()),
        }
    }
}
