//! The `llm-service` binary: telemetry, configuration, build, run.

use blob_kit::config::exit_on_error;
use llm_service::{Application, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _telemetry = blob_kit::telemetry::init("llm-service");
    let config = exit_on_error(Config::from_env());
    let app = Application::build(config).await?;
    app.run_until_stopped(blob_kit::shutdown::shutdown_signal()).await
}
