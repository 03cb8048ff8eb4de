//! The `sidecar` binary: parse the command line, hand over to the library.

use clap::Parser;

fn main() {
    let cli = sidecar::cli::Cli::parse();
    std::process::exit(cli.execute());
}
