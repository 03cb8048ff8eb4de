//! `sidecar dnsaddr records | check | publish`: the TXT records that make
//! this sidecar reachable as `/dnsaddr/<domain>`.
//!
//! - `records` prints them (BIND zone-file lines or JSON) for the
//!   sidecar's direct addresses: `[p2p] announce`, else the addresses the
//!   running daemon bound, else the configured listen addresses (an
//!   unspecified `0.0.0.0`/`::` is never advertised).
//! - `publish` makes the zone's primary server hold exactly those values
//!   for this peer (RFC 2136 + TSIG), leaving other peers' values alone;
//!   `--withdraw` removes them.
//! - `check` resolves the domain, prints the tree, and diagnoses: this
//!   sidecar missing, a stale peer ID on its address, values too long or
//!   malformed, loops, chains too deep, failed lookups, and each listed
//!   address of this sidecar that cannot be dialled (libp2p dial +
//!   identify). Exits 1 when it finds a problem.
//!
//! Called by: [`crate::cli`]. Must never: publish addresses of another
//! peer, or an unspecified address.

use std::{net::SocketAddr, path::Path, time::Duration};

use anyhow::{Context, bail};
use dnsaddr::{
    HickorySource, Multiaddr, Protocol, Publisher, RecordSet, Resolver, Tsig, Update,
    resolve::{Outcome, Tree},
};
use libp2p::PeerId;

use crate::{cli::DnsaddrCommand, config::Config, http::client, node::HTTP_ADDR_FILE};

/// Time allowed to reach the daemon and for each dial of `check`.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Runs one `sidecar dnsaddr …` command.
pub fn run(cmd: &DnsaddrCommand, data_dir: &Path, config: &Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match cmd {
        DnsaddrCommand::Records { domain, json } => {
            let set = record_set(data_dir, config, domain.as_deref())?;
            if *json {
                println!("{}", set.to_json());
            } else {
                for line in set.zone_lines() {
                    println!("{line}");
                }
            }
            Ok(())
        }
        DnsaddrCommand::Publish {
            domain,
            server,
            tsig_key,
            withdraw,
            peer,
        } => {
            let server = server
                .or(config.dnsaddr.server)
                .context("no DNS server: pass --server ip:port or set [dnsaddr] server")?;
            let tsig = match tsig_key {
                Some(spec) => Some(Tsig::parse(spec)?),
                None => config.dnsaddr.tsig.clone(),
            };
            if tsig.is_none() {
                eprintln!("note: no TSIG key (--tsig-key or [dnsaddr] tsig): sending unsigned");
            }
            let publisher = Publisher::new(server, tsig);
            let update = if *withdraw {
                let domain = domain_of(config, domain.as_deref())?;
                let peer = match peer {
                    Some(p) => p
                        .parse()
                        .with_context(|| format!("--peer {p:?} is not a peer ID"))?,
                    None => peer_id(data_dir)?,
                };
                rt.block_on(publisher.withdraw(&domain, peer))?
            } else {
                let set = record_set(data_dir, config, domain.as_deref())?;
                rt.block_on(publisher.publish(&set))?
            };
            print_update(&update, server);
            Ok(())
        }
        DnsaddrCommand::Check {
            domain,
            nameserver,
            no_dial,
            json,
        } => {
            let domain = domain_of(config, domain.as_deref())?;
            let nameserver = nameserver.or(config.dnsaddr.nameserver);
            let me = peer_id(data_dir)?;
            let direct = direct_addrs(data_dir, config).unwrap_or_default();
            let report = rt.block_on(check(&domain, nameserver, config, me, &direct, !*no_dial))?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_report(&report);
            }
            if !report.problems.is_empty() {
                bail!(
                    "{} problem(s) with /dnsaddr/{domain}: {}",
                    report.problems.len(),
                    report.problems.join("; ")
                );
            }
            Ok(())
        }
    }
}

fn domain_of(config: &Config, flag: Option<&str>) -> anyhow::Result<String> {
    let domain = flag
        .map(str::to_owned)
        .or_else(|| config.dnsaddr.domain.clone())
        .context("no domain: pass --domain or set [dnsaddr] domain")?;
    Ok(dnsaddr::check_domain(&domain)?)
}

fn peer_id(data_dir: &Path) -> anyhow::Result<PeerId> {
    Ok(crate::identity::load_or_create(data_dir)?
        .public()
        .to_peer_id())
}

/// The TXT record set for this sidecar at `domain` (or the configured one).
pub fn record_set(
    data_dir: &Path,
    config: &Config,
    domain: Option<&str>,
) -> anyhow::Result<RecordSet> {
    let domain = domain_of(config, domain)?;
    let addrs = direct_addrs(data_dir, config)?;
    Ok(RecordSet::new(
        &domain,
        peer_id(data_dir)?,
        &addrs,
        config.dnsaddr.ttl,
    )?)
}

/// This sidecar's direct addresses; see the module docs.
fn direct_addrs(data_dir: &Path, config: &Config) -> anyhow::Result<Vec<Multiaddr>> {
    let bound = daemon_listen_addrs(data_dir).unwrap_or_else(|| config.p2p.listen.clone());
    let addrs = config.direct_addrs(&bound);
    if addrs.is_empty() {
        bail!(
            "no dialable address: set [p2p] announce (e.g. /dns4/node.example.com/tcp/4010); \
             listen addresses on 0.0.0.0 or port 0 are never advertised"
        );
    }
    Ok(addrs)
}

/// The listen addresses of the running daemon, if one answers.
fn daemon_listen_addrs(data_dir: &Path) -> Option<Vec<Multiaddr>> {
    let addr = std::fs::read_to_string(data_dir.join(HTTP_ADDR_FILE)).ok()?;
    let r = client::request(addr.trim(), "GET", "/healthz", &[], b"", TIMEOUT).ok()?;
    let health: serde_json::Value = serde_json::from_slice(&r.body).ok()?;
    let addrs = health["listen_addrs"]
        .as_array()?
        .iter()
        .filter_map(|a| a.as_str()?.parse().ok())
        .collect();
    Some(addrs)
}

fn print_update(u: &Update, server: SocketAddr) {
    if !u.changed() {
        println!(
            "{} in zone {} on {server}: already up to date ({} of this sidecar's, {} other)",
            u.name,
            u.zone,
            u.kept.len(),
            u.others
        );
        return;
    }
    println!(
        "{} in zone {} on {server}: {} added, {} removed, {} kept; {} other value(s) left alone",
        u.name,
        u.zone,
        u.added.len(),
        u.removed.len(),
        u.kept.len(),
        u.others
    );
    for v in &u.removed {
        println!("  - {v}");
    }
    for v in &u.added {
        println!("  + {v}");
    }
}

/// What `check` found.
#[derive(Debug, serde::Serialize)]
struct Report {
    domain: String,
    peer: String,
    resolution: dnsaddr::Resolution,
    /// This sidecar's listed addresses, each dialled.
    dials: Vec<Dial>,
    problems: Vec<String>,
    notes: Vec<String>,
}

#[derive(Debug, serde::Serialize)]
struct Dial {
    addr: String,
    result: Result<crate::p2p::probe::Probe, String>,
}

async fn check(
    domain: &str,
    nameserver: Option<SocketAddr>,
    config: &Config,
    me: PeerId,
    direct: &[Multiaddr],
    dial: bool,
) -> anyhow::Result<Report> {
    let source = match nameserver {
        Some(ns) => HickorySource::nameserver(ns)?,
        None => HickorySource::system()?,
    };
    let resolver = Resolver::new(source, config.dnsaddr.limits);
    let top: Multiaddr = format!("/dnsaddr/{domain}").parse()?;
    let resolution = (*resolver.resolve(&top).await?).clone();
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    diagnose_tree(
        &resolution.tree,
        &mut problems,
        config.dnsaddr.limits.max_depth,
    );
    let mine: Vec<&Multiaddr> = resolution
        .addrs
        .iter()
        .filter(|a| matches!(a.iter().last(), Some(Protocol::P2p(p)) if p == me))
        .collect();
    if mine.is_empty() {
        problems.push(format!(
            "missing: no entry names this sidecar (peer {me}); publish with `sidecar dnsaddr \
             publish` or add the lines `sidecar dnsaddr records` prints"
        ));
    }
    let bare = |a: &Multiaddr| -> Multiaddr {
        a.iter()
            .filter(|p| !matches!(p, Protocol::P2p(_)))
            .collect()
    };
    for a in &resolution.addrs {
        if let Some(Protocol::P2p(p)) = a.iter().last()
            && p != me
            && direct.iter().any(|d| bare(d) == bare(a))
        {
            problems.push(format!(
                "stale peer ID: {a} is this sidecar's address under peer {p}; this sidecar \
                 is {me} (its key changed?): `sidecar dnsaddr publish`, then `sidecar dnsaddr \
                 publish --withdraw --peer {p}`"
            ));
        }
    }
    for d in direct {
        if !mine.iter().any(|m| bare(m) == bare(d)) && !mine.is_empty() {
            notes.push(format!("not listed: this sidecar's address {d}"));
        }
    }
    if resolution.addrs.len() > 25 {
        notes.push(format!(
            "{} addresses: js-libp2p (Helia) dials at most 25 per peer",
            resolution.addrs.len()
        ));
    }
    let mut dials = Vec::new();
    if dial {
        for a in &mine {
            let result = crate::p2p::probe::probe((*a).clone(), TIMEOUT).await;
            if let Err(e) = &result {
                problems.push(format!("unreachable: {a}: {e}"));
            }
            dials.push(Dial {
                addr: a.to_string(),
                result,
            });
        }
    }
    Ok(Report {
        domain: domain.to_owned(),
        peer: me.to_string(),
        resolution,
        dials,
        problems,
        notes,
    })
}

fn diagnose_tree(tree: &Tree, problems: &mut Vec<String>, max_depth: usize) {
    if let Some(e) = &tree.error {
        problems.push(format!("lookup: _dnsaddr.{}: {e}", tree.domain));
    }
    for entry in &tree.entries {
        match &entry.outcome {
            Outcome::Nested { tree } => diagnose_tree(tree, problems, max_depth),
            Outcome::Invalid { error } if entry.value.starts_with(dnsaddr::txt::PREFIX) => {
                let kind = if error.contains("bytes") {
                    "too long"
                } else {
                    "malformed"
                };
                problems.push(format!("{kind}: at _dnsaddr.{}: {error}", tree.domain));
            }
            Outcome::Cycle { domain } => problems.push(format!(
                "loop: _dnsaddr.{} points back to {domain}",
                tree.domain
            )),
            Outcome::TooDeep { domain, depth } => problems.push(format!(
                "too deep: /dnsaddr/{domain} would be lookup {depth} of a chain; Kubo (go-libp2p) \
                 follows at most {max_depth}"
            )),
            Outcome::OverLimit => problems.push(format!(
                "too many: entries past the resolution bounds at _dnsaddr.{}",
                tree.domain
            )),
            _ => {}
        }
    }
}

fn print_report(r: &Report) {
    println!("/dnsaddr/{} (this sidecar: {})", r.domain, r.peer);
    print_tree(&r.resolution.tree, 1, &r.peer);
    for d in &r.dials {
        match &d.result {
            Ok(p) => println!(
                "dial {}: ok, identify from {} in {} ms",
                d.addr, p.agent, p.millis
            ),
            Err(e) => println!("dial {}: FAILED: {e}", d.addr),
        }
    }
    for n in &r.notes {
        println!("note: {n}");
    }
    if r.problems.is_empty() {
        println!("ok: this sidecar is listed and every listed address answers");
    }
    for p in &r.problems {
        println!("problem: {p}");
    }
}

fn print_tree(tree: &Tree, depth: usize, me: &str) {
    let pad = "  ".repeat(depth);
    match (tree.ttl_seconds, &tree.error) {
        (Some(ttl), _) => println!("{pad}_dnsaddr.{} (TTL {ttl} s)", tree.domain),
        (None, Some(e)) => println!("{pad}_dnsaddr.{}: {e}", tree.domain),
        (None, None) => println!("{pad}_dnsaddr.{}", tree.domain),
    }
    for e in &tree.entries {
        match &e.outcome {
            Outcome::Address { addr } if addr.ends_with(me) => {
                println!("{pad}  {addr}  <- this sidecar")
            }
            Outcome::Address { addr } | Outcome::Filtered { addr } => println!("{pad}  {addr}"),
            Outcome::Nested { tree } => {
                println!("{pad}  {} ->", e.value);
                print_tree(tree, depth + 2, me);
            }
            Outcome::NotFollowed { addr } => println!("{pad}  {addr} (not followed)"),
            Outcome::Invalid { error } => println!("{pad}  {:?}: ignored: {error}", e.value),
            Outcome::Cycle { domain } => println!("{pad}  {} (loop back to {domain})", e.value),
            Outcome::TooDeep { .. } => println!("{pad}  {} (too deep)", e.value),
            Outcome::OverLimit => println!("{pad}  {} (over the limit)", e.value),
        }
    }
}
