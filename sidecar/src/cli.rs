//! Command-line surface: global flags, subcommands, exit codes.
//!
//! `main.rs` parses with [`Cli`] and calls [`Cli::execute`]; each subcommand
//! is a thin call into the library. Exit codes: 0 ok, 1 the command failed,
//! 64 (EX_USAGE) the configuration is invalid, reported before anything binds.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::config::{Config, DEFAULT_CONFIG};

/// Exit code for an invalid configuration (sysexits EX_USAGE).
pub const EXIT_CONFIG: i32 = 64;
/// Exit code for a command that failed.
pub const EXIT_FAILURE: i32 = 1;

/// Name of the config file looked for in the data directory.
pub const CONFIG_FILE: &str = "config.toml";

#[derive(Parser, Debug)]
#[command(
    name = "sidecar",
    version,
    about = "Bitswap, IPNS and routing sidecar for a Kubo node"
)]
pub struct Cli {
    /// Configuration file (TOML). Defaults to <data-dir>/config.toml when it
    /// exists, else the embedded defaults.
    #[arg(long, global = true, env = "SIDECAR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory: identity key, store. Defaults to ~/.sidecar.
    #[arg(long, global = true, env = "SIDECAR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Override one config key, e.g. --set http.listen=127.0.0.1:0 (repeatable).
    #[arg(long = "set", global = true, value_name = "SECTION.KEY=VALUE")]
    pub sets: Vec<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the daemon.
    Run,
    /// Print this node's peer ID.
    Id,
    /// CAR file shards: import and list.
    #[command(subcommand)]
    Car(CarCommand),
    /// Configuration helpers.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Quota policy helpers.
    #[command(subcommand)]
    Quota(QuotaCommand),
    /// IPNS records held by this sidecar (through the running daemon, if any).
    #[command(subcommand)]
    Ipns(IpnsCommand),
    /// The /dnsaddr TXT records that advertise this sidecar: print, check, publish.
    #[command(subcommand)]
    Dnsaddr(DnsaddrCommand),
}

#[derive(Subcommand, Debug)]
pub enum DnsaddrCommand {
    /// Print the TXT records for this sidecar's addresses (BIND zone-file lines).
    Records {
        /// The domain (default: [dnsaddr] domain).
        #[arg(long)]
        domain: Option<String>,
        /// Print JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Resolve the domain, show what it holds, and check this sidecar is
    /// listed under its peer ID and answers on every listed address.
    Check {
        #[arg(long)]
        domain: Option<String>,
        /// Name server to ask, ip:port (default: [dnsaddr] nameserver, else the system's).
        #[arg(long)]
        nameserver: Option<std::net::SocketAddr>,
        /// Do not dial the listed addresses.
        #[arg(long)]
        no_dial: bool,
        /// Print JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Make the zone's primary server hold exactly this sidecar's records
    /// (RFC 2136 update, TSIG-signed); other peers' records stay.
    Publish {
        #[arg(long)]
        domain: Option<String>,
        /// The zone's primary server, ip:port (default: [dnsaddr] server).
        #[arg(long)]
        server: Option<std::net::SocketAddr>,
        /// <algorithm>:<key name>:<base64 secret> (default: [dnsaddr] tsig).
        #[arg(long, env = "SIDECAR_DNSADDR_TSIG_KEY", hide_env_values = true)]
        tsig_key: Option<String>,
        /// Remove this sidecar's records instead.
        #[arg(long)]
        withdraw: bool,
        /// With --withdraw: remove the records of this peer ID instead (e.g. a
        /// key this sidecar no longer has).
        #[arg(long, requires = "withdraw")]
        peer: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum IpnsCommand {
    /// Show the stored record of a name (k51…, bafz… or 12D3…), or save it.
    Get {
        name: String,
        /// Write the record's bytes to this file instead of printing its fields.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Validate a record file and store it if it is better than the stored one.
    Put { name: String, file: PathBuf },
    /// List stored records: name, sequence, value, validity, source.
    Ls {
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print changes to names as they happen (through the running daemon);
    /// `*` watches every name. Reconnects and resumes where it left off.
    Watch {
        /// Names (k51…, bafz…, 12D3…) or `*`.
        #[arg(required = true)]
        names: Vec<String>,
        /// Start after this event number (changes since then first).
        #[arg(long)]
        since: Option<u64>,
        /// Print each notification as a JSON line (with the record, base64).
        #[arg(long)]
        json: bool,
    },
    /// Decode and validate a record file offline; prints every field and the verdict.
    Inspect {
        file: PathBuf,
        /// The name the record is for (needed when it embeds no public key).
        #[arg(long)]
        name: Option<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum QuotaCommand {
    /// Write the commented default quota policy (to `[quota] policy`, else
    /// <data-dir>/quotas.toml).
    Init {
        /// Print to standard output instead of writing a file.
        #[arg(long)]
        stdout: bool,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Validate a policy file (default: the one the daemon would load).
    Check {
        /// The file to check.
        file: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum CarCommand {
    /// Verify and index CAR files so their blocks can be served.
    Import {
        /// CAR files (v1 or v2).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List indexed CAR files.
    Ls {
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Write the commented default configuration (to --config, else
    /// <data-dir>/config.toml; `-` or --stdout prints it).
    Init {
        /// Print to standard output instead of writing a file.
        #[arg(long)]
        stdout: bool,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Validate the configuration and print the effective values.
    Check,
}

impl Cli {
    /// The data directory: the flag/env, else `~/.sidecar`.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("."))
                .join(".sidecar")
        })
    }

    fn config_path(&self) -> Option<PathBuf> {
        self.config.clone().or_else(|| {
            let p = self.data_dir().join(CONFIG_FILE);
            p.exists().then_some(p)
        })
    }

    /// Loads and validates the configuration, or exits 64 with one line.
    pub fn load_config(&self) -> Config {
        match Config::load(self.config_path().as_deref(), &self.sets) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("sidecar: invalid configuration: {e}");
                std::process::exit(EXIT_CONFIG);
            }
        }
    }

    /// Runs the chosen subcommand; returns the process exit code.
    pub fn execute(self) -> i32 {
        let result = match &self.command {
            Command::Run => {
                let config = self.load_config();
                crate::node::run_until_signal(config, self.data_dir())
            }
            Command::Id => crate::identity::load_or_create(&self.data_dir())
                .map(|k| println!("{}", k.public().to_peer_id()))
                .map_err(anyhow::Error::from),
            Command::Car(cmd) => crate::node::car_command(cmd, &self.data_dir()),
            Command::Ipns(cmd) => {
                let config = self.load_config();
                crate::ipns_command::run(cmd, &self.data_dir(), &config)
            }
            Command::Dnsaddr(cmd) => {
                let config = self.load_config();
                crate::dnsaddr_command::run(cmd, &self.data_dir(), &config)
            }
            Command::Config(ConfigCommand::Init { stdout, force }) => {
                self.config_init(*stdout, *force)
            }
            Command::Config(ConfigCommand::Check) => {
                let config = self.load_config();
                println!("{config:#?}");
                Ok(())
            }
            Command::Quota(QuotaCommand::Init { stdout, force }) => write_default(
                &self.quota_policy_path(),
                crate::quota::policy::DEFAULT_POLICY,
                *stdout,
                *force,
            ),
            Command::Quota(QuotaCommand::Check { file }) => {
                let path = file.clone().unwrap_or_else(|| self.quota_policy_path());
                match crate::quota::load_policy(&path) {
                    Ok(p) => {
                        println!(
                            "{}: valid; {} tiers (default {:?}), {} assigned peers, {} allowed, {} denied",
                            path.display(),
                            p.tiers.len(),
                            p.tiers[p.default_tier].name,
                            p.peers.len(),
                            p.allow.len(),
                            p.deny.len()
                        );
                        Ok(())
                    }
                    Err(e) => {
                        eprintln!("sidecar: invalid quota policy: {e}");
                        return EXIT_CONFIG;
                    }
                }
            }
        };
        match result {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("sidecar: {e:#}");
                EXIT_FAILURE
            }
        }
    }

    fn config_init(&self, stdout: bool, force: bool) -> anyhow::Result<()> {
        let path = self
            .config
            .clone()
            .unwrap_or_else(|| self.data_dir().join(CONFIG_FILE));
        write_default(&path, DEFAULT_CONFIG, stdout, force)
    }

    /// Where the daemon reads its quota policy.
    fn quota_policy_path(&self) -> PathBuf {
        self.load_config()
            .quota
            .policy
            .unwrap_or_else(|| self.data_dir().join(crate::node::QUOTA_POLICY_FILE))
    }
}

/// Writes a commented default file, refusing to overwrite without `force`;
/// `stdout` (or the path `-`) prints it instead.
fn write_default(path: &Path, text: &str, stdout: bool, force: bool) -> anyhow::Result<()> {
    if stdout || path == Path::new("-") {
        print!("{text}");
        return Ok(());
    }
    if path.exists() && !force {
        anyhow::bail!("{} exists (use --force to overwrite)", path.display());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, text)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
