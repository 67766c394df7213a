use clap::Parser;
use sohbet_server::{config::Settings, telemetry};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let settings = Settings::parse();
    let listener = TcpListener::bind(settings.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "listening");
    sohbet_server::run(listener, settings, sohbet_server::shutdown_signal()).await
}
