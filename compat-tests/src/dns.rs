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

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
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
/// Longest TXT character-string (RFC 1035 §3.3: one length byte).
pub const MAX_CHARACTER_STRING: usize = 255;
/// Bytes of random TSIG secret (the hmac-sha256 output size).
const TSIG_SECRET_BYTES: usize = 32;
/// Attempts at finding a port free for both TCP and UDP.
const PORT_ATTEMPTS: usize = 5;

/// DNS RR type TXT.
pub const TYPE_TXT: u16 = 16;
/// DNS RR type SOA.
pub const TYPE_SOA: u16 = 6;
/// DNS class IN.
pub const CLASS_IN: u16 = 1;
/// Size of the fixed DNS message header.
pub const HEADER_LEN: usize = 12;

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

/// TXT rdata in zone-file syntax: `value` cut into quoted character-strings of at most
/// [`MAX_CHARACTER_STRING`] bytes, `"` and `\` escaped, other non-printables as `\DDD`.
pub fn txt_rdata(value: &[u8]) -> String {
    if value.is_empty() {
        return "\"\"".to_owned();
    }
    let quoted: Vec<String> = value
        .chunks(MAX_CHARACTER_STRING)
        .map(|chunk| {
            let mut s = String::from("\"");
            for &b in chunk {
                match b {
                    b'"' | b'\\' => {
                        s.push('\\');
                        s.push(b as char);
                    }
                    0x20..=0x7e => s.push(b as char),
                    _ => s.push_str(&format!("\\{b:03}")),
                }
            }
            s.push('"');
            s
        })
        .collect();
    quoted.join(" ")
}

/// The character-strings of one TXT record in presentation format (`"a" "b\"c" "\255"`),
/// as `kdig` prints them, unescaped.
pub fn parse_presentation_strings(line: &str) -> Result<Vec<Vec<u8>>> {
    let bytes = line.trim().as_bytes();
    let mut strings = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        ensure!(
            bytes[i] == b'"',
            "expected a quoted string at byte {i} of {line:?}"
        );
        i += 1;
        let mut s = Vec::new();
        loop {
            match bytes.get(i) {
                None => bail!("unterminated string in {line:?}"),
                Some(b'"') => {
                    i += 1;
                    break;
                }
                Some(b'\\') => {
                    let digits = bytes
                        .get(i + 1..i + 4)
                        .filter(|d| d.iter().all(u8::is_ascii_digit));
                    if let Some(d) = digits {
                        let v = d.iter().fold(0u32, |acc, c| acc * 10 + u32::from(c - b'0'));
                        s.push(u8::try_from(v).map_err(|_| anyhow!("bad escape in {line:?}"))?);
                        i += 4;
                    } else {
                        let c = bytes
                            .get(i + 1)
                            .ok_or_else(|| anyhow!("dangling \\ in {line:?}"))?;
                        s.push(*c);
                        i += 2;
                    }
                }
                Some(&c) => {
                    s.push(c);
                    i += 1;
                }
            }
        }
        strings.push(s);
    }
    Ok(strings)
}

// --- wire (pure) --------------------------------------------------------------------------

/// The fixed header of a DNS message (RFC 1035 §4.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Message ID.
    pub id: u16,
    /// QR, opcode, AA, TC, RD, RA, Z, rcode.
    pub flags: u16,
    /// Question count.
    pub qdcount: u16,
    /// Answer count.
    pub ancount: u16,
    /// Authority count.
    pub nscount: u16,
    /// Additional count.
    pub arcount: u16,
}

impl Header {
    /// The header of `msg`, or `None` if it is shorter than [`HEADER_LEN`].
    pub fn parse(msg: &[u8]) -> Option<Header> {
        let word = |i: usize| Some(u16::from_be_bytes([*msg.get(i)?, *msg.get(i + 1)?]));
        Some(Header {
            id: word(0)?,
            flags: word(2)?,
            qdcount: word(4)?,
            ancount: word(6)?,
            nscount: word(8)?,
            arcount: word(10)?,
        })
    }

    /// QR: this is a response.
    pub fn is_response(&self) -> bool {
        self.flags & 0x8000 != 0
    }

    /// The opcode (0 = QUERY, 5 = UPDATE).
    pub fn opcode(&self) -> u16 {
        (self.flags >> 11) & 0xf
    }

    /// AA: the answer is authoritative.
    pub fn authoritative(&self) -> bool {
        self.flags & 0x0400 != 0
    }

    /// TC: the answer was truncated to fit the transport.
    pub fn truncated(&self) -> bool {
        self.flags & 0x0200 != 0
    }

    /// The 4-bit rcode (0 NOERROR, 2 SERVFAIL, 3 NXDOMAIN, 5 REFUSED).
    pub fn rcode(&self) -> u16 {
        self.flags & 0xf
    }
}

/// A standard query (RD set, one question of class IN, no EDNS) for `name` (absolute; the
/// trailing dot is optional) and `qtype`.
pub fn encode_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>> {
    let mut msg = Vec::with_capacity(HEADER_LEN + name.len() + 6);
    msg.extend_from_slice(&id.to_be_bytes());
    msg.extend_from_slice(&0x0100u16.to_be_bytes()); // RD
    msg.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // QDCOUNT=1, others 0
    let bare = name.trim_end_matches('.');
    if !bare.is_empty() {
        for label in bare.split('.') {
            let len = u8::try_from(label.len())
                .ok()
                .filter(|l| (1..=63).contains(l))
                .ok_or_else(|| anyhow!("bad label {label:?} in {name:?}"))?;
            msg.push(len);
            msg.extend_from_slice(label.as_bytes());
        }
    }
    msg.push(0);
    ensure!(msg.len() - HEADER_LEN <= 255, "name too long: {name:?}");
    msg.extend_from_slice(&qtype.to_be_bytes());
    msg.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(msg)
}

/// Offset just past the (possibly compressed) name at `pos`, or `None` if it runs off `msg`.
fn skip_name(msg: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *msg.get(pos)?;
        match len {
            0 => return Some(pos + 1),
            l if l & 0xc0 == 0xc0 => return msg.get(pos + 1).map(|_| pos + 2),
            l if l & 0xc0 == 0 => pos += 1 + usize::from(l),
            _ => return None,
        }
    }
}

/// Offset just past the question section of a one-question `msg`, or `None`.
fn question_end(msg: &[u8]) -> Option<usize> {
    let end = skip_name(msg, HEADER_LEN)? + 4;
    (end <= msg.len()).then_some(end)
}

/// Every TXT record in the answer section of `msg`, each as its character-strings.
pub fn answer_txt(msg: &[u8]) -> Result<Vec<Vec<Vec<u8>>>> {
    let h = Header::parse(msg).ok_or_else(|| anyhow!("message shorter than a header"))?;
    let mut pos = HEADER_LEN;
    for _ in 0..h.qdcount {
        pos = skip_name(msg, pos).ok_or_else(|| anyhow!("bad question name"))? + 4;
    }
    let mut records = Vec::new();
    for _ in 0..h.ancount {
        pos = skip_name(msg, pos).ok_or_else(|| anyhow!("bad answer name"))?;
        let fixed = msg
            .get(pos..pos + 10)
            .ok_or_else(|| anyhow!("answer runs off the message"))?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let rdlen = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        pos += 10;
        let rdata = msg
            .get(pos..pos + rdlen)
            .ok_or_else(|| anyhow!("rdata runs off the message"))?;
        pos += rdlen;
        if rtype != TYPE_TXT {
            continue;
        }
        let mut strings = Vec::new();
        let mut i = 0;
        while i < rdata.len() {
            let len = usize::from(rdata[i]);
            let s = rdata
                .get(i + 1..i + 1 + len)
                .ok_or_else(|| anyhow!("character-string runs off the rdata"))?;
            strings.push(s.to_vec());
            i += 1 + len;
        }
        records.push(strings);
    }
    Ok(records)
}

// --- DoH relay ----------------------------------------------------------------------------

/// Largest request body (a DNS message cannot exceed 65535 bytes).
pub const MAX_RELAY_BODY: usize = 64 * 1024;
/// Largest request head (request line plus headers); beyond it the answer is 431.
pub const MAX_RELAY_HEAD: usize = 8 * 1024;
/// Connections served at once; one more gets 503 and is closed.
pub const MAX_RELAY_CONNECTIONS: usize = 64;
/// Idle time after which a kept-alive connection is closed; also bounds every write.
pub const RELAY_IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Wait for one UDP answer from the upstream; there are [`UPSTREAM_UDP_TRIES`] tries.
pub const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// UDP sends per query before the relay gives up with 502.
pub const UPSTREAM_UDP_TRIES: usize = 2;
/// The RFC 8484 media type.
pub const DNS_MESSAGE: &str = "application/dns-message";
/// The one path the relay serves.
pub const DOH_PATH: &str = "/dns-query";

/// Counters and the stop flag shared by the accept loop and the connection threads.
#[derive(Default)]
struct RelayState {
    stop: AtomicBool,
    requests: AtomicU64,
    rejected: AtomicU64,
    tcp_retries: AtomicU64,
    open: AtomicUsize,
}

/// An RFC 8484 DoH endpoint on 127.0.0.1 relaying to one upstream DNS server.
///
/// Dropping it stops accepting at once; connections already open end at their next
/// request or after [`RELAY_IO_TIMEOUT`] idle.
pub struct DohRelay {
    addr: SocketAddr,
    state: Arc<RelayState>,
    accept: Option<JoinHandle<()>>,
}

impl DohRelay {
    /// Binds 127.0.0.1:0 and starts relaying to `upstream`.
    pub fn start(upstream: SocketAddr) -> Result<DohRelay> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("binding the relay")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(RelayState::default());
        let accept_state = Arc::clone(&state);
        let accept = std::thread::Builder::new()
            .name("doh-accept".into())
            .spawn(move || accept_loop(&listener, &accept_state, upstream))
            .context("spawning the relay's accept thread")?;
        Ok(DohRelay {
            addr,
            state,
            accept: Some(accept),
        })
    }

    /// `http://127.0.0.1:<port>/dns-query`.
    pub fn url(&self) -> String {
        format!("http://{}{DOH_PATH}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queries relayed and answered with 200.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// Requests answered with an error status.
    pub fn rejected(&self) -> u64 {
        self.state.rejected.load(Ordering::Relaxed)
    }

    /// Queries whose UDP answer was truncated and that were asked again over TCP.
    pub fn tcp_retries(&self) -> u64 {
        self.state.tcp_retries.load(Ordering::Relaxed)
    }
}

impl Drop for DohRelay {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept() so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(handle) = self.accept.take() {
            let _ = handle.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, state: &Arc<RelayState>, upstream: SocketAddr) {
    for stream in listener.incoming() {
        if state.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(mut stream) = stream else { continue };
        if state.open.fetch_add(1, Ordering::SeqCst) >= MAX_RELAY_CONNECTIONS {
            state.open.fetch_sub(1, Ordering::SeqCst);
            state.rejected.fetch_add(1, Ordering::Relaxed);
            let _ = stream.set_write_timeout(Some(RELAY_IO_TIMEOUT));
            let _ = write_response(
                &mut stream,
                &Reply::error(503, "too many connections"),
                false,
            );
            continue;
        }
        let conn_state = Arc::clone(state);
        let spawned = std::thread::Builder::new()
            .name("doh-conn".into())
            .spawn(move || {
                serve_connection(stream, &conn_state, upstream);
                conn_state.open.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            state.open.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// One HTTP response: status, content type, body.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
}

impl Reply {
    fn error(status: u16, why: &str) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{why}\n").into_bytes(),
        }
    }
}

/// A parsed request head.
struct Request {
    method: String,
    target: String,
    content_type: Option<String>,
    content_length: Option<usize>,
    chunked: bool,
    keep_alive: bool,
}

/// Serves requests on `stream` until the client closes, an error, or the relay stops.
fn serve_connection(mut stream: TcpStream, state: &RelayState, upstream: SocketAddr) {
    if stream.set_read_timeout(Some(RELAY_IO_TIMEOUT)).is_err()
        || stream.set_write_timeout(Some(RELAY_IO_TIMEOUT)).is_err()
    {
        return;
    }
    let mut buf = Vec::new();
    while !state.stop.load(Ordering::SeqCst) {
        let head_len = match read_head(&mut stream, &mut buf) {
            Ok(Some(n)) => n,
            Ok(None) => return,
            Err(reply) => {
                state.rejected.fetch_add(1, Ordering::Relaxed);
                let _ = write_response(&mut stream, &reply, false);
                return;
            }
        };
        let parsed = parse_head(&buf[..head_len]);
        buf.drain(..head_len);
        let (reply, keep_alive) = match parsed {
            Err(reply) => (reply, false),
            Ok(req) => match read_body(&mut stream, &mut buf, &req) {
                Err(reply) => (reply, false),
                Ok(body) => (handle(&req, &body, state, upstream), req.keep_alive),
            },
        };
        let counter = if reply.status == 200 {
            &state.requests
        } else {
            &state.rejected
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if write_response(&mut stream, &reply, keep_alive).is_err() || !keep_alive {
            return;
        }
    }
}

/// Reads until `buf` holds a whole head; returns its length including the blank line, or
/// `None` on a clean close before any byte of a new request.
fn read_head(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
) -> std::result::Result<Option<usize>, Reply> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(Some(i + 4));
        }
        if buf.len() > MAX_RELAY_HEAD {
            return Err(Reply::error(431, "request head too large"));
        }
        let mut chunk = [0; 4096];
        match stream.read(&mut chunk) {
            Ok(0) if buf.is_empty() => return Ok(None),
            Ok(0) => return Err(Reply::error(400, "connection closed mid-request")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // Idle timeout or reset: nothing useful to answer.
            Err(_) => return Ok(None),
        }
    }
}

fn parse_head(head: &[u8]) -> std::result::Result<Request, Reply> {
    let text = std::str::from_utf8(head).map_err(|_| Reply::error(400, "head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Reply::error(400, "malformed request line"));
    };
    let mut keep_alive = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(Reply::error(400, "unsupported HTTP version")),
    };
    let mut req = Request {
        method: method.to_owned(),
        target: target.to_owned(),
        content_type: None,
        content_length: None,
        chunked: false,
        keep_alive,
    };
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| Reply::error(400, "malformed header line"))?;
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => req.content_type = Some(value.to_ascii_lowercase()),
            "content-length" => {
                let len = value
                    .parse()
                    .map_err(|_| Reply::error(400, "bad Content-Length"))?;
                req.content_length = Some(len);
            }
            "transfer-encoding" => req.chunked = true,
            "connection" => {
                let v = value.to_ascii_lowercase();
                if v.contains("close") {
                    keep_alive = false;
                } else if v.contains("keep-alive") {
                    keep_alive = true;
                }
            }
            _ => {}
        }
    }
    req.keep_alive = keep_alive;
    Ok(req)
}

/// The request body (`Content-Length` bytes, some maybe already in `buf`), bounded.
fn read_body(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    req: &Request,
) -> std::result::Result<Vec<u8>, Reply> {
    if req.chunked {
        return Err(Reply::error(
            411,
            "chunked bodies are not supported; send Content-Length",
        ));
    }
    let len = req.content_length.unwrap_or(0);
    if len > MAX_RELAY_BODY {
        return Err(Reply::error(413, "body too large"));
    }
    while buf.len() < len {
        let mut chunk = [0; 4096];
        match stream.read(&mut chunk) {
            Ok(0) => return Err(Reply::error(400, "body shorter than Content-Length")),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Err(Reply::error(400, "body read failed")),
        }
    }
    Ok(buf.drain(..len).collect())
}

/// Routes one request: the only place that turns relay outcomes into statuses.
fn handle(req: &Request, body: &[u8], state: &RelayState, upstream: SocketAddr) -> Reply {
    let (path, query) = req.target.split_once('?').unwrap_or((&req.target, ""));
    if path != DOH_PATH {
        return Reply::error(404, "not found; the endpoint is /dns-query");
    }
    let message = match req.method.as_str() {
        "POST" => {
            let ctype = req.content_type.as_deref().unwrap_or_default();
            if ctype.split(';').next().map(str::trim) != Some(DNS_MESSAGE) {
                return Reply::error(415, "Content-Type must be application/dns-message");
            }
            body.to_vec()
        }
        "GET" => {
            let Some(b64) = query.split('&').find_map(|kv| kv.strip_prefix("dns=")) else {
                return Reply::error(400, "missing dns= parameter");
            };
            match URL_SAFE_NO_PAD.decode(b64.trim_end_matches('=')) {
                Ok(m) => m,
                Err(_) => return Reply::error(400, "dns= is not base64url"),
            }
        }
        _ => return Reply::error(405, "only GET and POST"),
    };
    let plausible = Header::parse(&message).is_some_and(|h| !h.is_response() && h.qdcount == 1)
        && question_end(&message).is_some();
    if !plausible {
        return Reply::error(400, "not a DNS query with one question");
    }
    match relay(&message, upstream, state) {
        Ok(answer) => Reply {
            status: 200,
            content_type: DNS_MESSAGE,
            body: answer,
        },
        Err(e) => Reply::error(502, &format!("upstream {upstream}: {e:#}")),
    }
}

/// Asks `upstream` over UDP ([`UPSTREAM_UDP_TRIES`] sends), and over TCP if the answer
/// is truncated.
fn relay(query: &[u8], upstream: SocketAddr, state: &RelayState) -> Result<Vec<u8>> {
    let id = Header::parse(query).map(|h| h.id).unwrap_or_default();
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
    sock.connect(upstream)?;
    sock.set_read_timeout(Some(UPSTREAM_TIMEOUT))?;
    let mut buf = vec![0; 65_535];
    for _ in 0..UPSTREAM_UDP_TRIES {
        sock.send(query)?;
        let deadline = Instant::now() + UPSTREAM_TIMEOUT;
        while Instant::now() < deadline {
            let n = match sock.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) => return Err(e.into()),
            };
            let Some(h) = Header::parse(&buf[..n]) else {
                continue;
            };
            if h.id != id || !h.is_response() {
                continue;
            }
            if !h.truncated() {
                return Ok(buf[..n].to_vec());
            }
            state.tcp_retries.fetch_add(1, Ordering::Relaxed);
            return relay_tcp(query, upstream);
        }
    }
    bail!("no UDP answer after {UPSTREAM_UDP_TRIES} tries of {UPSTREAM_TIMEOUT:?}")
}

/// One query over TCP (two-byte length prefix, RFC 1035 §4.2.2).
fn relay_tcp(query: &[u8], upstream: SocketAddr) -> Result<Vec<u8>> {
    let mut stream = TcpStream::connect_timeout(&upstream, UPSTREAM_TIMEOUT)?;
    stream.set_read_timeout(Some(UPSTREAM_TIMEOUT))?;
    stream.set_write_timeout(Some(UPSTREAM_TIMEOUT))?;
    let len = u16::try_from(query.len()).context("query longer than 65535 bytes")?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(query);
    stream.write_all(&framed)?;
    let mut len = [0; 2];
    stream.read_exact(&mut len)?;
    let mut answer = vec![0; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut answer)?;
    Ok(answer)
}

fn write_response(stream: &mut TcpStream, reply: &Reply, keep_alive: bool) -> std::io::Result<()> {
    let reason = match reply.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let head = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\n\r\n",
        reply.status,
        reply.content_type,
        reply.body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    );
    let mut out = head.into_bytes();
    out.extend_from_slice(&reply.body);
    stream.write_all(&out)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txt_rdata_splits_at_255_and_escapes() {
        assert_eq!(txt_rdata(b"a\"b\\c\n"), r#""a\"b\\c\010""#);
        let long = vec![b'x'; 300];
        let rdata = txt_rdata(&long);
        let strings = parse_presentation_strings(&rdata).unwrap();
        assert_eq!(strings.iter().map(Vec::len).collect::<Vec<_>>(), [255, 45]);
        assert_eq!(strings.concat(), long);
    }

    #[test]
    fn query_round_trips_through_the_header_parser() {
        let q = encode_query(0x1234, "_dnsaddr.a.sidecar.test.", TYPE_TXT).unwrap();
        let h = Header::parse(&q).unwrap();
        assert_eq!((h.id, h.flags, h.qdcount), (0x1234, 0x0100, 1));
        assert_eq!(question_end(&q), Some(q.len()));
        assert!(encode_query(1, "a..b", TYPE_TXT).is_err());
    }
}
