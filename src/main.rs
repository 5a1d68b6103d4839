//! The `cix` binary: parse flags, set up logging, run the command.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = cix::cli::Cli::parse();
    let default_level = match cli.command {
        cix::cli::Command::Serve { .. } => "info",
        _ => "warn",
    };
    cix::telemetry::init(cli.log_format, default_level);
    match cix::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cix: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
