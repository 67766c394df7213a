use sohbet_server::{cli::Cli, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::load(std::env::args_os()).unwrap_or_else(|e| e.exit());
    telemetry::init_with(cli.settings.log_format);
    cli.run().await
}
