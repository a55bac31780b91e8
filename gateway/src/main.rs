//! The `gateway` binary: serve (the default), or mint a local development ID token.

use blob_kit::config::exit_on_error;
use clap::{Parser, Subcommand};
use gateway::{Application, Config};

#[derive(Parser)]
#[command(name = "gateway", version, about = "Blob's REST API and voice WebSocket")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the REST API and the voice socket (the default).
    Serve,
    /// Print a Firebase-format ID token from the local development issuer
    /// (accepted only by a gateway with AUTH_PROVIDER=local).
    DevToken {
        /// The parent's email; the same email always maps to the same account.
        #[arg(long)]
        email: String,
        /// Display name.
        #[arg(long, default_value = "Local Parent")]
        name: String,
        /// A demo-* project id (FIREBASE_PROJECT_ID of the gateway).
        #[arg(long, env = "FIREBASE_PROJECT_ID", default_value = gateway::config::LOCAL_PROJECT_ID)]
        project: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command.unwrap_or(Command::Serve) {
        Command::DevToken { email, name, project } => {
            anyhow::ensure!(
                project.starts_with("demo-"),
                "the development issuer only signs for demo-* projects"
            );
            anyhow::ensure!(email.contains('@'), "--email must be an email address");
            println!("{}", gateway::auth::dev::id_token(&project, &email, &name)?);
            Ok(())
        }
        Command::Serve => {
            let _telemetry = blob_kit::telemetry::init("gateway");
            let config = exit_on_error(Config::from_env());
            let app = Application::build(config).await?;
            app.run_until_stopped(blob_kit::shutdown::shutdown_signal()).await
        }
    }
}
