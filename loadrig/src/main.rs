//! The `loadrig` binary: parse, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use loadrig::commands::{
    Usage, Verdict, compare::CompareArgs, merge::MergeArgs, run::RunArgs, ws::WsArgs,
};
use loadrig::scenario::ScenarioError;
use loadrig::start::{START_MISSED_EXIT, StartMissed};

/// An HTTP and WebSocket load generator: closed and open (coordinated-omission-corrected) models,
/// k6-named phases, HDR histograms, thresholds, and mergeable split runs.
#[derive(Debug, Parser)]
#[command(name = "loadrig", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Run(Box<RunArgs>),
    Ws(Box<WsArgs>),
    Merge(MergeArgs),
    Compare(CompareArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match &cli.command {
        Command::Run(args) => args.execute(),
        Command::Ws(args) => args.execute(),
        Command::Merge(args) => args.execute(),
        Command::Compare(args) => args.execute(),
    };
    match outcome {
        Ok(Verdict::Passed) => ExitCode::SUCCESS,
        Ok(Verdict::ThresholdsFailed) => ExitCode::from(99),
        Ok(Verdict::Aborted) => ExitCode::from(108),
        Err(e) => {
            eprintln!("loadrig: {e:#}");
            if e.downcast_ref::<Usage>().is_some() {
                ExitCode::from(2)
            } else if e.downcast_ref::<StartMissed>().is_some() {
                ExitCode::from(START_MISSED_EXIT)
            } else {
                match e.downcast_ref::<ScenarioError>() {
                    Some(ScenarioError::Options(_)) => ExitCode::from(104),
                    Some(ScenarioError::Script(_)) => ExitCode::from(107),
                    Some(ScenarioError::Aborted(_)) => ExitCode::from(108),
                    None => ExitCode::FAILURE,
                }
            }
        }
    }
}
