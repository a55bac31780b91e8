//! The `stt-service` binary: telemetry, configuration, build, run.

use blob_kit::config::exit_on_error;
use stt_service::{Application, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = blob_kit::telemetry::init("stt-service");
    let config = exit_on_error(Config::from_env());
    let app = Application::build(config).await?;
    app.run_until_stopped(blob_kit::shutdown::shutdown_signal()).await
}
