//! `sidecar ipns get | put | ls | inspect`.
//!
//! While a daemon runs it holds the store, so `get`, `put` and `ls` go
//! through its HTTP API (the address it wrote to `<data-dir>/http.addr`;
//! `ls` uses `/admin/ipns` with `[http] admin_token`). Without a daemon they
//! open the store themselves. `inspect` never touches either: it decodes a
//! record file and prints every field and the verdict.
//!
//! Called by: [`crate::cli`]. Must never: write a record the name service
//! did not validate.

use std::{
    path::Path,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, bail};

use crate::{
    cli::IpnsCommand,
    config::Config,
    http::{client, ipns::IPNS_RECORD},
    ipns::{
        Name, Record, pb,
        record::validate_bytes,
        service::{NameService, Source, Summary},
    },
    node::{HTTP_ADDR_FILE, open_store},
};

/// How long the CLI waits for its daemon.
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// Rows `ls` asks for per request.
const PAGE: usize = 1000;

/// Where `get`, `put` and `ls` go.
enum Target {
    /// A running daemon at this `host:port`.
    Daemon(String),
    /// No daemon: the store itself.
    Store,
}

fn target(data_dir: &Path) -> Target {
    let Ok(addr) = std::fs::read_to_string(data_dir.join(HTTP_ADDR_FILE)) else {
        return Target::Store;
    };
    let addr = addr.trim().to_string();
    // A file left by a killed daemon points nowhere: use the store.
    match addr.parse() {
        Ok(sock) if std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(1)).is_ok() => {
            Target::Daemon(addr)
        }
        _ => Target::Store,
    }
}

/// Runs one `sidecar ipns …` command.
pub fn run(cmd: &IpnsCommand, data_dir: &Path, config: &Config) -> anyhow::Result<()> {
    match cmd {
        IpnsCommand::Inspect { file, name } => inspect(file, name.as_deref()),
        IpnsCommand::Watch { names, since, json } => {
            let Target::Daemon(addr) = target(data_dir) else {
                bail!("no running daemon to watch through (start `sidecar run`)");
            };
            crate::watch_command::run(&addr, names, *since, *json)
        }
        IpnsCommand::Get { name, out } => {
            let name = parse_name(name)?;
            let bytes = match target(data_dir) {
                Target::Daemon(addr) => get_http(&addr, &name)?,
                Target::Store => {
                    let stored = with_service(data_dir, |s| async move { s.get(&name).await })?;
                    stored
                        .with_context(|| format!("no record for {name}"))?
                        .bytes
                        .to_vec()
                }
            };
            match out {
                Some(path) => std::fs::write(path, &bytes)
                    .with_context(|| format!("writing {}", path.display())),
                None => {
                    let record = validate_bytes(&name, bytes.into(), UNIX_EPOCH)?;
                    print_record(&record);
                    Ok(())
                }
            }
        }
        IpnsCommand::Put { name, file } => {
            let name = parse_name(name)?;
            let bytes =
                std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
            match target(data_dir) {
                Target::Daemon(addr) => put_http(&addr, &name, &bytes)?,
                Target::Store => {
                    with_service(data_dir, |s| async move {
                        s.put(&name, bytes.into(), Source::Cli, SystemTime::now())
                            .await
                            .map(|_| ())
                    })?;
                }
            }
            println!("stored the record for {name}");
            Ok(())
        }
        IpnsCommand::Ls { json } => {
            let rows = match target(data_dir) {
                Target::Daemon(addr) => list_http(&addr, config)?,
                Target::Store => with_service(data_dir, |s| async move {
                    let mut all: Vec<Summary> = Vec::new();
                    let mut last: Option<Name> = None;
                    loop {
                        let page = s.list(last.as_ref(), PAGE).await?;
                        let names: Vec<Name> = page.iter().map(|r| r.name).collect();
                        let schedules = s.schedules(&names).await?;
                        let done = page.len() < PAGE;
                        last = names.last().copied();
                        all.extend(
                            page.iter()
                                .zip(&schedules)
                                .map(|(r, row)| r.summary_with(row.as_ref())),
                        );
                        if done {
                            return Ok(all);
                        }
                    }
                })?,
            };
            print_summaries(&rows, *json);
            Ok(())
        }
    }
}

fn parse_name(text: &str) -> anyhow::Result<Name> {
    Name::parse(text).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Runs `f` against a name service over the store (no daemon running).
fn with_service<T, F, Fut>(data_dir: &Path, f: F) -> anyhow::Result<T>
where
    F: FnOnce(NameService) -> Fut,
    Fut: std::future::Future<Output = Result<T, crate::ipns::service::IpnsError>>,
{
    let store = open_store(data_dir)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let stop = tokio_util::sync::CancellationToken::new();
        let (service, task) = NameService::start(store, stop.clone());
        let result = f(service).await;
        stop.cancel();
        let _ = task.await;
        result.map_err(anyhow::Error::from)
    })
}

fn api_error(r: &client::Response) -> String {
    serde_json::from_slice::<serde_json::Value>(&r.body)
        .ok()
        .and_then(|v| {
            Some(format!(
                "{} ({})",
                v["message"].as_str()?,
                v["code"].as_str()?
            ))
        })
        .unwrap_or_else(|| r.text())
}

fn get_http(addr: &str, name: &Name) -> anyhow::Result<Vec<u8>> {
    let r = client::request(
        addr,
        "GET",
        &format!("/routing/v1/ipns/{name}"),
        &[("Accept", IPNS_RECORD)],
        b"",
        HTTP_TIMEOUT,
    )
    .with_context(|| format!("asking the daemon at {addr}"))?;
    if r.status != 200 {
        bail!("{name}: {}", api_error(&r));
    }
    Ok(r.body)
}

fn put_http(addr: &str, name: &Name, bytes: &[u8]) -> anyhow::Result<()> {
    let r = client::request(
        addr,
        "PUT",
        &format!("/routing/v1/ipns/{name}"),
        &[("Content-Type", IPNS_RECORD)],
        bytes,
        HTTP_TIMEOUT,
    )
    .with_context(|| format!("sending the record to the daemon at {addr}"))?;
    if r.status != 200 {
        bail!("refused: {}", api_error(&r));
    }
    Ok(())
}

fn list_http(addr: &str, config: &Config) -> anyhow::Result<Vec<Summary>> {
    let Some(token) = config.http.admin_token.as_deref() else {
        bail!(
            "a daemon is running at {addr} and holds the store; listing through it needs \
             [http] admin_token (or stop the daemon)"
        );
    };
    let auth = format!("Bearer {token}");
    let mut all: Vec<Summary> = Vec::new();
    loop {
        let after = all
            .last()
            .map(|s| format!("&after={}", s.name))
            .unwrap_or_default();
        let r = client::request(
            addr,
            "GET",
            &format!("/admin/ipns?limit={PAGE}{after}"),
            &[("Authorization", &auth)],
            b"",
            HTTP_TIMEOUT,
        )?;
        if r.status != 200 {
            bail!("listing through the daemon at {addr}: {}", r.text());
        }
        let page: Vec<Summary> = serde_json::from_slice(&r.body).context("the daemon's list")?;
        let done = page.len() < PAGE;
        all.extend(page);
        if done {
            return Ok(all);
        }
    }
}

fn print_summaries(rows: &[Summary], json: bool) {
    if json {
        for r in rows {
            println!("{}", serde_json::to_string(r).unwrap_or_default());
        }
        return;
    }
    println!("NAME\tSEQUENCE\tVALUE\tVALID UNTIL\tSOURCE\tREPUBLISH\tLAST PUT\tNEXT PUT\tREACHED");
    for r in rows {
        let (state, last, next, reached) = match &r.republish {
            Some(p) => (
                if p.failures > 0 {
                    format!(
                        "{} ({} failures: {})",
                        p.state,
                        p.failures,
                        p.last_error.as_deref().unwrap_or("")
                    )
                } else {
                    p.state.clone()
                },
                p.last_success.as_deref().unwrap_or("-").to_string(),
                p.next_due.as_deref().unwrap_or("-").to_string(),
                p.reached.clone(),
            ),
            None => ("-".into(), "-".into(), "-".into(), "-".into()),
        };
        println!(
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            r.name, r.sequence, r.value, r.validity, r.source, state, last, next, reached
        );
    }
}

fn print_record(r: &Record) {
    println!("name:        {}", r.name());
    println!("value:       {}", String::from_utf8_lossy(r.value()));
    println!("sequence:    {}", r.sequence());
    println!("validity:    {}", r.validity_str());
    match r.ttl() {
        Some(ttl) => println!("ttl:         {}", humantime::format_duration(ttl)),
        None => println!("ttl:         (none)"),
    }
    println!("key type:    {}", r.key_type().as_str());
    println!(
        "pubKey:      {}",
        if r.has_pub_key() {
            "embedded"
        } else {
            "from the name"
        }
    );
    println!("size:        {} bytes", r.bytes().len());
}

/// `sidecar ipns inspect FILE [--name NAME]`: every field, then the verdict.
fn inspect(file: &Path, name: Option<&str>) -> anyhow::Result<()> {
    use prost::Message;
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let entry = pb::IpnsEntry::decode(bytes.as_slice());
    let name = match name {
        Some(n) => Some(parse_name(n)?),
        None => entry
            .as_ref()
            .ok()
            .and_then(|e| e.pub_key.as_ref())
            .and_then(|k| libp2p::identity::PublicKey::try_decode_protobuf(k).ok())
            .map(|k| Name::from_public_key(&k)),
    };
    println!("file:        {} ({} bytes)", file.display(), bytes.len());
    let len = |f: &Option<bytes::Bytes>| f.as_ref().map_or(0, |b| b.len());
    match &entry {
        Ok(e) => println!(
            "fields:      value {} B, signatureV1 {} B, validity {} B, sequence {:?}, ttl {:?}, \
             pubKey {} B, signatureV2 {} B, data {} B",
            len(&e.value),
            len(&e.signature_v1),
            len(&e.validity),
            e.sequence,
            e.ttl,
            len(&e.pub_key),
            len(&e.signature_v2),
            len(&e.data)
        ),
        Err(e) => println!("fields:      not an IpnsEntry protobuf: {e}"),
    }
    let Some(name) = name else {
        bail!("the record carries no public key: give the name it is for with --name");
    };
    match validate_bytes(&name, bytes.into(), SystemTime::now()) {
        Ok(record) => {
            print_record(&record);
            println!("verdict:     valid");
            Ok(())
        }
        Err(e) => {
            println!("name:        {name}");
            println!("verdict:     invalid ({}): {e}", e.code());
            bail!("invalid record ({})", e.code())
        }
    }
}
