//! A real authoritative DNS server (Knot DNS) and a DNS-over-HTTPS relay in front of it,
//! on loopback, for tests of `/dnsaddr` publishing and resolution.
//!
//! # Brief overview
//!
//! - [`DnsServer::start`] (or [`DnsServer::start_with`], which seeds records) runs Debian's
//!   `knotd` 3.2 in the foreground with its own config, port, rundir and database in a temp
//!   dir. It serves one zone (SOA, `NS ns.<zone>`, `ns.<zone> A 127.0.0.1`) and accepts RFC
//!   2136 dynamic updates only when signed with its TSIG key ([`DnsServer::tsig`],
//!   hmac-sha256, a fresh random secret per server). [`DnsServer::kdig`] and
//!   [`DnsServer::nsupdate`] run `kdig` / `knsupdate` against it; [`DnsServer::set_txt`]
//!   and [`DnsServer::txt`] are the TXT shortcuts tests need. Dropping it stops `knotd`.
//! - [`DohRelay::start`] is an RFC 8484 endpoint on `http://127.0.0.1:<port>/dns-query`
//!   (POST `application/dns-message` and GET `?dns=<base64url>`) that relays each query
//!   to an upstream over UDP, retrying over TCP when the answer is truncated. It counts what
//!   it relayed ([`DohRelay::requests`]) so a test can prove a resolver went through it.
//! - [`encode_query`], [`Header`] and [`answer_txt`] are the few pure wire helpers the
//!   relay and the tests share (no I/O).
//!
//! Names follow zone-file rules everywhere: a trailing dot makes a name absolute, anything
//! else is relative to the zone (`"_dnsaddr.a"` is `_dnsaddr.a.<zone>`, `"@"` the apex).
//!
//! # What a test can rely on (knot 3.2.6 from Debian 12, 2-core machine)
//!
//! - `knotd` answers the zone's SOA within ~50 ms of being spawned (the second readiness
//!   poll); [`DnsServer::start`] returns once it does (bounded by [`KNOTD_START_TIMEOUT`]).
//!   Dropping the server stops `knotd` on SIGTERM in well under a second.
//! - An update is applied before `knsupdate` returns: a `kdig` right after sees it. One
//!   `kdig` or `knsupdate` run takes ~50 ms, mostly [`process::run`]'s 50 ms poll. A query
//!   through the relay takes ~0.1 ms on a kept-alive connection, 0.2–7 ms with a new one.
//! - Updates signed with another secret fail with `BADSIG`, with an unknown key name with
//!   `BADKEY`, unsigned ones with `NOTAUTH`; none changes the zone.
//! - A TXT character-string holds at most 255 bytes. Knot's zone-file parser (used by
//!   `knotd` and `knsupdate`) splits a longer quoted string into 255-byte
//!   character-strings of one RR; [`DnsServer::set_txt`] splits explicitly the same way.
//!   `kdig +short` prints such an RR as `"<255 bytes>" "<rest>"`, and
//!   [`DnsServer::txt`] joins the strings back.
//! - The relay keeps connections alive (HTTP/1.1) and serves each on its own thread, at
//!   most [`MAX_RELAY_CONNECTIONS`] at once.
//!
//! Everything listens on 127.0.0.1 only. The port is picked with [`free_loopback_ports`]
//! just before `knotd` binds it; losing that race shows up as a start error. A system
//! `knot` service installed by the package is never used.
//!
//! # Layout
//!
//! - this module: [`DnsServer`] (the `knotd` process, its config and zone file, the
//!   `kdig` / `knsupdate` helpers). It must never touch a system-wide Knot install or
//!   listen beyond loopback.
//! - `wire`: the pure wire helpers above and their constants (no I/O).
//! - `doh`: [`DohRelay`] and its bounds.
//!
//! Both submodules are private; everything public in them is re-exported here, so every
//! path stays `compat_tests::dns::X`.

mod doh;
mod wire;

pub use doh::{
    DNS_MESSAGE, DOH_PATH, DohRelay, MAX_RELAY_BODY, MAX_RELAY_CONNECTIONS, MAX_RELAY_HEAD,
    RELAY_IO_TIMEOUT, UPSTREAM_TIMEOUT, UPSTREAM_UDP_TRIES,
};
pub use wire::{
    CLASS_IN, HEADER_LEN, Header, MAX_CHARACTER_STRING, TYPE_SOA, TYPE_TXT, answer_txt,
    encode_query, parse_presentation_strings, txt_rdata,
};

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tempfile::TempDir;

use crate::kubo::free_loopback_ports;
use crate::process::{self, Daemon};

/// How long [`DnsServer::start`] waits for `knotd` to answer (measured: tens of ms).
pub const KNOTD_START_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound on one `kdig` or `knsupdate` run (each takes ~10 ms here).
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(20);
/// Name of the TSIG key every [`DnsServer`] accepts updates with.
pub const TSIG_KEY_NAME: &str = "sidecar-test";
/// The TSIG algorithm of that key (RFC 8945 name, as `knsupdate -y` spells it).
pub const TSIG_ALGORITHM: &str = "hmac-sha256";
/// TTL (s) of the SOA, NS and glue records; the SOA minimum (negative TTL) is 1 s.
pub const ZONE_TTL: u32 = 5;
/// TTL (s) of the records [`DnsServer::set_txt`] writes: short, so resolvers refetch.
pub const TXT_TTL: u32 = 1;
/// Bytes of random TSIG secret (the hmac-sha256 output size).
const TSIG_SECRET_BYTES: usize = 32;
/// Attempts at finding a port free for both TCP and UDP.
const PORT_ATTEMPTS: usize = 5;

/// The install hint a missing tool fails with.
fn setup_hint() -> String {
    format!(
        "run `{}` (installs the Debian packages knot and knot-dnsutils)",
        crate::tools::crate_dir().join("scripts/setup.sh").display()
    )
}

/// `program` on `PATH`, or an error naming the command that installs it.
fn tool(program: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
        .ok_or_else(|| anyhow!("`{program}` not found on PATH: {}", setup_hint()))
}

/// A TSIG key as `knsupdate -y` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tsig<'a> {
    /// Algorithm, e.g. `hmac-sha256`.
    pub algorithm: &'a str,
    /// Key name, e.g. `sidecar-test`.
    pub name: &'a str,
    /// The shared secret, standard base64.
    pub secret_b64: &'a str,
}

/// A `knotd` serving one zone on 127.0.0.1; stopped (process group and all) on drop.
pub struct DnsServer {
    /// Declared before `dir` so `knotd` stops before its files go.
    daemon: Daemon,
    dir: TempDir,
    zone: String,
    addr: SocketAddr,
    secret_b64: String,
    /// Numbers the capture files of one-shot tool runs, so concurrent runs never share one.
    runs: AtomicU64,
}

impl DnsServer {
    /// Starts `knotd` serving `zone` (`"sidecar.test."`; the trailing dot is optional) with
    /// only the SOA, NS and glue records.
    pub fn start(zone: &str) -> Result<DnsServer> {
        DnsServer::start_with(zone, &[])
    }

    /// [`DnsServer::start`], with extra zone-file records `(owner, ttl, type, rdata)`, e.g.
    /// `("_dnsaddr.a", 1, "TXT", "\"dnsaddr=/ip4/…\"")`; owners follow zone-file rules.
    pub fn start_with(zone: &str, records: &[(&str, u32, &str, &str)]) -> Result<DnsServer> {
        let knotd = tool("knotd")?;
        let zone = normalize_zone(zone)?;
        let dir = tempfile::Builder::new()
            .prefix("knotd-")
            .tempdir()
            .context("creating the knotd temp dir")?;
        // The database dir must exist: knotd only warns at start, then fails every update.
        std::fs::create_dir(dir.path().join("db")).context("creating the knotd database dir")?;
        let secret_b64 = STANDARD.encode(random_bytes(TSIG_SECRET_BYTES)?);
        let port = free_port()?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));

        let zone_file = dir.path().join("zone.db");
        std::fs::write(&zone_file, zone_file_text(&zone, records)?)
            .with_context(|| format!("writing {}", zone_file.display()))?;
        let conf = dir.path().join("knot.conf");
        std::fs::write(
            &conf,
            knot_conf(dir.path(), port, &zone, &zone_file, &secret_b64),
        )
        .with_context(|| format!("writing {}", conf.display()))?;

        let mut cmd = Command::new(knotd);
        cmd.arg("-c")
            .arg(&conf)
            .arg("-s")
            .arg(dir.path().join("knot.sock"));
        let mut daemon = Daemon::spawn("knotd", cmd, dir.path())?;
        process::wait_for("knotd to answer SOA", KNOTD_START_TIMEOUT, || {
            daemon.ensure_running()?;
            Ok(soa_answered(addr, &zone).then_some(()))
        })
        .with_context(|| daemon.logs_tail())?;
        Ok(DnsServer {
            daemon,
            dir,
            zone,
            addr,
            secret_b64,
            runs: AtomicU64::new(0),
        })
    }

    /// Where `knotd` listens (UDP and TCP).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The served zone, with its trailing dot.
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// Name of the TSIG key updates must be signed with ([`TSIG_KEY_NAME`]).
    pub fn tsig_name(&self) -> &str {
        TSIG_KEY_NAME
    }

    /// The key's secret, standard base64 (random per server).
    pub fn tsig_secret_b64(&self) -> &str {
        &self.secret_b64
    }

    /// The key's algorithm ([`TSIG_ALGORITHM`]).
    pub fn tsig_algorithm(&self) -> &str {
        TSIG_ALGORITHM
    }

    /// The key this server accepts updates with.
    pub fn tsig(&self) -> Tsig<'_> {
        Tsig {
            algorithm: TSIG_ALGORITHM,
            name: TSIG_KEY_NAME,
            secret_b64: &self.secret_b64,
        }
    }

    /// `name` made absolute under the zone (zone-file rules, see the module docs).
    pub fn fqdn(&self, name: &str) -> String {
        if name == "@" {
            self.zone.clone()
        } else if name.ends_with('.') {
            name.to_owned()
        } else {
            format!("{name}.{}", self.zone)
        }
    }

    /// Runs `kdig @<addr> -p <port> <args>` and returns its stdout.
    pub fn kdig(&self, args: &[&str]) -> Result<String> {
        let mut cmd = Command::new(tool("kdig")?);
        cmd.arg(format!("@{}", self.addr.ip()))
            .args(["-p", &self.addr.port().to_string(), "+time=2", "+retry=1"])
            .args(args);
        let out = self.run_tool("kdig", cmd)?;
        String::from_utf8(out).context("kdig printed non-UTF-8")
    }

    /// Runs `knsupdate` with `script` (update lines; `server`, `zone` and `origin` lines are
    /// prepended, `send` is appended unless the script ends with it), signed with `key` if
    /// any. Returns its stdout; an error carries its stdout and stderr (the rcode, e.g.
    /// `NOTAUTH`, `BADSIG`).
    pub fn nsupdate(&self, script: &str, key: Option<Tsig<'_>>) -> Result<String> {
        let n = self.runs.fetch_add(1, Ordering::Relaxed);
        let file = self.dir.path().join(format!("nsupdate-{n}.txt"));
        let mut text = format!(
            "server {} {}\nzone {}\norigin {}\n{}\n",
            self.addr.ip(),
            self.addr.port(),
            self.zone,
            self.zone,
            script.trim_end()
        );
        if script.lines().last().map(str::trim) != Some("send") {
            text.push_str("send\n");
        }
        std::fs::write(&file, text).with_context(|| format!("writing {}", file.display()))?;
        let mut cmd = Command::new(tool("knsupdate")?);
        if let Some(k) = key {
            cmd.arg("-y")
                .arg(format!("{}:{}:{}", k.algorithm, k.name, k.secret_b64));
        }
        cmd.args(["-t", "5", "-r", "1"]).arg(&file);
        let out = self.run_tool("knsupdate", cmd)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    /// Replaces every TXT record at `name` with one record per value (TTL [`TXT_TTL`]),
    /// signed with this server's key. A value longer than [`MAX_CHARACTER_STRING`] bytes
    /// becomes several character-strings of one record. No values: just delete.
    pub fn set_txt(&self, name: &str, values: &[&str]) -> Result<()> {
        let fqdn = self.fqdn(name);
        let mut script = format!("update delete {fqdn} TXT\n");
        for value in values {
            script.push_str(&format!(
                "update add {fqdn} {TXT_TTL} TXT {}\n",
                txt_rdata(value.as_bytes())
            ));
        }
        self.nsupdate(&script, Some(self.tsig()))
            .with_context(|| format!("setting TXT at {fqdn}"))?;
        Ok(())
    }

    /// The TXT values at `name` as `kdig +short` shows them, each record's character-strings
    /// joined, sorted. Empty when there are none (or the name does not exist).
    pub fn txt(&self, name: &str) -> Result<Vec<String>> {
        let out = self.kdig(&["+short", "TXT", &self.fqdn(name)])?;
        let mut values = out
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                let bytes = parse_presentation_strings(line)?.concat();
                String::from_utf8(bytes).with_context(|| format!("TXT is not UTF-8: {line}"))
            })
            .collect::<Result<Vec<_>>>()?;
        values.sort();
        Ok(values)
    }

    /// The tail of `knotd`'s log (it logs to stderr), for error messages.
    pub fn logs_tail(&self) -> String {
        self.daemon.logs_tail()
    }

    /// The temp dir holding `knot.conf`, the zone file, the database and tool captures.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Runs a one-shot tool with captures in the temp dir; errors carry stdout and stderr.
    fn run_tool(&self, label: &str, cmd: Command) -> Result<Vec<u8>> {
        let name = format!("{label}-{}", self.runs.fetch_add(1, Ordering::Relaxed));
        match process::run(&name, cmd, self.dir.path(), TOOL_TIMEOUT) {
            Ok(out) => Ok(out.stdout),
            Err(e) => {
                // process::run names its stdout capture `<name>.stdout`.
                let stdout = process::tail_lines(
                    &self.dir.path().join(format!("{name}.stdout")),
                    process::TAIL_LINES,
                );
                Err(e.context(format!("--- {label} stdout ---\n{stdout}")))
            }
        }
    }
}

/// `zone` lower-cased with exactly one trailing dot; rejects what a zone file cannot hold.
fn normalize_zone(zone: &str) -> Result<String> {
    let bare = zone.trim_end_matches('.');
    ensure!(
        !bare.is_empty()
            && bare
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
        "not a usable zone name: {zone:?}"
    );
    Ok(format!("{}.", bare.to_ascii_lowercase()))
}

fn random_bytes(n: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("reading /dev/urandom")?;
    Ok(buf)
}

/// A loopback port that was free for both TCP and UDP a moment ago.
fn free_port() -> Result<u16> {
    for _ in 0..PORT_ATTEMPTS {
        let [port] = free_loopback_ports(1)?[..] else {
            bail!("free_loopback_ports(1) returned no port");
        };
        if UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no loopback port free for both TCP and UDP after {PORT_ATTEMPTS} attempts")
}

/// The zone file: SOA (serial 1, negative TTL 1 s), NS, glue, then `records`.
fn zone_file_text(zone: &str, records: &[(&str, u32, &str, &str)]) -> Result<String> {
    let mut text = format!(
        "$ORIGIN {zone}\n$TTL {ZONE_TTL}\n\
         @ {ZONE_TTL} IN SOA ns.{zone} hostmaster.{zone} 1 60 60 3600 1\n\
         @ {ZONE_TTL} IN NS ns\n\
         ns {ZONE_TTL} IN A 127.0.0.1\n"
    );
    for (owner, ttl, rtype, rdata) in records {
        ensure!(
            ![owner, rtype, rdata].iter().any(|s| s.contains('\n')),
            "zone record fields must not contain newlines: {owner} {rtype} {rdata}"
        );
        text.push_str(&format!("{owner} {ttl} IN {rtype} {rdata}\n"));
    }
    Ok(text)
}

/// The whole `knotd` configuration: everything under `dir`, updates only with the key.
fn knot_conf(dir: &Path, port: u16, zone: &str, zone_file: &Path, secret_b64: &str) -> String {
    let d = dir.display();
    format!(
        r#"server:
    listen: 127.0.0.1@{port}
    rundir: "{d}"
    pidfile: "{d}/knot.pid"
    udp-workers: 2
    tcp-workers: 2
    background-workers: 1
log:
  - target: stderr
    any: info
database:
    storage: "{d}/db"
control:
    listen: "{d}/knot.sock"
key:
  - id: {TSIG_KEY_NAME}
    algorithm: {TSIG_ALGORITHM}
    secret: {secret_b64}
acl:
  - id: update-with-key
    key: {TSIG_KEY_NAME}
    action: update
zone:
  - domain: {zone}
    file: "{zf}"
    acl: update-with-key
    zonefile-sync: -1
    journal-content: changes
"#,
        zf = zone_file.display()
    )
}

/// IDs of readiness probes (any value works; distinct ones keep late answers apart).
static PROBE_ID: AtomicU16 = AtomicU16::new(1);

/// Whether `addr` answers the SOA of `zone` authoritatively with NOERROR (one UDP try).
fn soa_answered(addr: SocketAddr, zone: &str) -> bool {
    let probe = || -> Result<bool> {
        let id = PROBE_ID.fetch_add(1, Ordering::Relaxed);
        let query = encode_query(id, zone, TYPE_SOA)?;
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
        sock.set_read_timeout(Some(Duration::from_millis(200)))?;
        sock.connect(addr)?;
        sock.send(&query)?;
        let mut buf = [0; 1500];
        let n = sock.recv(&mut buf)?;
        let Some(h) = Header::parse(&buf[..n]) else {
            return Ok(false);
        };
        Ok(h.id == id && h.is_response() && h.authoritative() && h.rcode() == 0 && h.ancount > 0)
    };
    probe().unwrap_or(false)
}
