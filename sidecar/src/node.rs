//! Wires the daemon together and tears it down in order.
//!
//! [`run`] opens the store, loads the identity, starts the name service,
//! the republisher, the libp2p host, the Bitswap server and the HTTP API,
//! then waits for the shutdown token. Teardown order: stop accepting HTTP,
//! stop the republisher, the name service, the Bitswap server (drains its
//! workers), close the swarm, close the store — under [`SHUTDOWN_GRACE`].
//! This module holds no protocol logic; it only composes.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::{
    bitswap::server::BitswapServer,
    blocks::car_store::CarBlockSource,
    cli::CarCommand,
    config::Config,
    http, identity,
    metrics::Metrics,
    p2p::{Hooks, Host},
    quota::{
        self, QuotaService, Quotas,
        budget::{Clock, SystemClock},
    },
    shards,
    store::Store,
};

/// How long an orderly shutdown may take before the process exits anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// File in the data directory holding the bound HTTP address (`host:port`),
/// written once the API listens, so scripts can find a port-0 listener.
pub const HTTP_ADDR_FILE: &str = "http.addr";

/// The quota policy file in the data directory (unless `[quota] policy`
/// names another).
pub const QUOTA_POLICY_FILE: &str = "quotas.toml";

/// Opens (creating if needed) the store in `data_dir`.
pub fn open_store(data_dir: &Path) -> anyhow::Result<Arc<Store>> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let store = Store::open_in_dir(data_dir)
        .with_context(|| format!("opening the store in {}", data_dir.display()))?;
    Ok(Arc::new(store))
}

/// `sidecar car …`.
pub fn car_command(cmd: &CarCommand, data_dir: &Path) -> anyhow::Result<()> {
    init_logging();
    let store = open_store(data_dir)?;
    match cmd {
        CarCommand::Import { files } => match shards::import_with_progress_bar(&store, files) {
            Ok(_) => Ok(()),
            Err(failures) => anyhow::bail!(
                "{} of {} CAR files failed to import",
                failures.failed.len(),
                files.len()
            ),
        },
        CarCommand::Ls { json } => print_shards(&store, *json),
    }
}

fn print_shards(store: &Store, json: bool) -> anyhow::Result<()> {
    let shards = shards::list_shards(store)?;
    if json {
        for s in &shards {
            println!(
                "{}",
                serde_json::json!({
                    "id": s.id,
                    "path": s.path,
                    "car_version": s.car_version,
                    "roots": s.roots,
                    "blocks": s.blocks,
                    "block_bytes": s.block_bytes,
                    "file_size": s.file_size,
                    "indexed_at": s.indexed_at_unix,
                })
            );
        }
        return Ok(());
    }
    println!(
        "{:>5}  {:>10}  {:>12}  {:<3}  PATH",
        "ID", "BLOCKS", "BYTES", "CAR"
    );
    for s in &shards {
        println!(
            "{:>5}  {:>10}  {:>12}  v{:<2}  {}",
            s.id, s.blocks, s.block_bytes, s.car_version, s.path
        );
    }
    Ok(())
}

/// Runs the daemon until SIGINT or SIGTERM.
pub fn run_until_signal(config: Config, data_dir: PathBuf) -> anyhow::Result<()> {
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sidecar")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let shutdown = CancellationToken::new();
        let signals = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            signals.cancel();
        });
        run(config, data_dir, shutdown).await
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process can still be killed; never exit early.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Runs every subsystem until `shutdown` is cancelled, then tears down in order.
pub async fn run(
    config: Config,
    data_dir: PathBuf,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let store = open_store(&data_dir)?;
    let keypair = identity::load_or_create(&data_dir)?;
    let metrics = Arc::new(Metrics::new());
    let blocks = Arc::new(CarBlockSource::new(store.clone()));

    // Child tokens give the teardown its order: each stage stops only after
    // the one before it has finished.
    let http_stop = CancellationToken::new();
    let bitswap_stop = CancellationToken::new();
    let swarm_stop = CancellationToken::new();

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let names_stop = CancellationToken::new();
    let (names, names_task) =
        crate::ipns::service::NameService::start(store.clone(), names_stop.clone());
    // The change feed: numbered events from the store, pushed to watchers.
    store.set_event_retention(config.watch.retention);
    let (feed, feed_task) =
        crate::ipns::watch::Feed::start(store.clone(), config.watch.queue, names_stop.clone())
            .context("starting the change feed")?;
    names.attach_feed(feed.wake());
    let write_limiter = Arc::new(http::rate_limit::WriteLimiter::new(
        config.http.write_rate_per_ip,
        config.http.write_burst_per_ip,
        config.http.write_rate_exempt.clone(),
        clock.clone(),
    ));
    let policy_path = config
        .quota
        .policy
        .clone()
        .unwrap_or_else(|| data_dir.join(QUOTA_POLICY_FILE));
    let policy = quota::load_policy(&policy_path)
        .with_context(|| "cannot load the quota policy".to_string())?;
    let (disconnect_tx, disconnect_rx) = tokio::sync::mpsc::unbounded_channel();
    let quotas = Arc::new(
        Quotas::new(policy, clock.clone(), store.clone(), metrics.clone())
            .with_disconnects(disconnect_tx),
    );
    let quota_service = Arc::new(QuotaService::new(
        quotas.clone(),
        policy_path,
        store.clone(),
        clock,
    ));
    let quota_stop = CancellationToken::new();
    let quota_task = tokio::spawn(
        quota_service
            .clone()
            .run(config.quota.flush_interval, quota_stop.clone()),
    );

    // The republisher: keeps stored IPNS records on the DHT through Kubo.
    let republish_stop = CancellationToken::new();
    let (kubo, republish_status, republish_tasks) = if config.republish.enabled {
        let client = crate::kubo::KuboClient::new(
            &config.kubo.rpc,
            config.kubo.auth.clone(),
            config.kubo.timeout,
        )
        .with_context(|| format!("kubo.rpc {}", config.kubo.rpc))?;
        let r = &config.republish;
        let republisher = crate::ipns::republish::Republisher::new(
            store.clone(),
            names.clone(),
            crate::ipns::republish::KuboTarget::new(client.clone(), r.method, r.allow_offline),
            r.policy.clone(),
            Arc::new(SystemClock),
            metrics.clone(),
        );
        let status = republisher.status();
        let mut tasks = vec![tokio::spawn(republisher.run(republish_stop.clone()))];
        if r.kubo_keys {
            let keys = crate::ipns::republish::KeyRepublisher::new(
                store.clone(),
                client.clone(),
                crate::ipns::republish::KeyPolicy {
                    schedule: r.policy.clone(),
                    lifetime: r.kubo_keys_lifetime,
                    allow_offline: r.allow_offline,
                },
                Arc::new(SystemClock),
                status.clone(),
            );
            tasks.push(tokio::spawn(keys.run(republish_stop.clone())));
            tracing::info!("re-issuing Kubo's own keys on the same schedule");
        }
        tracing::info!(
            kubo = %config.kubo.rpc,
            interval = %humantime::format_duration(r.policy.interval),
            "republishing IPNS records through Kubo"
        );
        (Some(client), Some(status), tasks)
    } else {
        (None, None, Vec::new())
    };

    let bitswap = BitswapServer::new(
        config.bitswap.clone(),
        blocks.clone(),
        quotas.clone(),
        metrics.clone(),
    );
    let on_disconnect = {
        let bitswap = bitswap.clone();
        Arc::new(move |peer| bitswap.peer_disconnected(peer))
    };
    // Identify also tells peers the /dnsaddr name, when one is configured.
    let mut p2p = config.p2p.clone();
    p2p.announce.extend(config.dnsaddr.advertised());
    let host = Host::start(
        keypair,
        &p2p,
        metrics.clone(),
        Hooks {
            on_disconnect,
            connections: quotas.clone(),
            disconnect_requests: Some(disconnect_rx),
        },
        swarm_stop.clone(),
    )
    .await?;
    let bitswap_task = bitswap.start(host.control.clone(), bitswap_stop.clone())?;
    if config.dnsaddr.publish {
        publish_dnsaddr(
            &config,
            host.peer_id,
            &host.listen_addrs(),
            swarm_stop.clone(),
        )?;
    }

    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen on http.listen {}", config.http.listen))?;
    let http_addr = listener.local_addr()?;
    write_atomically(
        &data_dir.join(HTTP_ADDR_FILE),
        http_addr.to_string().as_bytes(),
    )?;
    tracing::info!(%http_addr, "HTTP API listening");
    let state = http::ApiState {
        peer_id: host.peer_id,
        listen_addrs: host.listen_addrs_handle(),
        config: Arc::new(config.clone()),
        http_addr,
        metrics: metrics.clone(),
        started,
        quotas: Some(quota_service.clone()),
        blocks: Some(blocks as Arc<dyn crate::blocks::BlockSource>),
        names: Some(names),
        write_limiter,
        store: Some(store.clone()),
        republish: republish_status,
        kubo,
        watch: Some(http::watch::WatchState::new(
            feed,
            config.watch.clone(),
            http_stop.clone(),
        )),
    };
    let http_task = tokio::spawn(http::serve(listener, state, http_stop.clone()));

    shutdown.cancelled().await;
    let teardown = async {
        http_stop.cancel();
        let _ = http_task.await;
        // Attempts in flight are abandoned; their names stay due.
        republish_stop.cancel();
        for task in republish_tasks {
            let _ = task.await;
        }
        // No more puts can arrive: apply the queued ones and stop.
        names_stop.cancel();
        let _ = names_task.await;
        let _ = feed_task.await;
        bitswap_stop.cancel();
        let _ = bitswap_task.await;
        swarm_stop.cancel();
        host.join().await;
        // Last: every want has been charged by now.
        quota_stop.cancel();
        let _ = quota_task.await;
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, teardown)
        .await
        .is_err()
    {
        tracing::warn!("shutdown grace period elapsed; exiting anyway");
    }
    let _ = std::fs::remove_file(data_dir.join(HTTP_ADDR_FILE));
    drop(store);
    Ok(())
}

/// Writes `bytes` to `path` through a temp file and a rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SIDECAR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A second call (tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// First and longest wait between attempts to publish the dnsaddr records.
const DNSADDR_RETRY: (Duration, Duration) = (Duration::from_secs(5), Duration::from_secs(300));

/// Publishes this sidecar's dnsaddr TXT records (`[dnsaddr] publish`) in the
/// background, retrying with backoff until the server takes them or the
/// node stops. The addresses are fixed for the process's life, so a restart
/// with new addresses publishes the new set (replacing the old one).
fn publish_dnsaddr(
    config: &Config,
    peer: libp2p::PeerId,
    bound: &[libp2p::Multiaddr],
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let d = &config.dnsaddr;
    let (Some(domain), Some(server)) = (d.domain.as_deref(), d.server) else {
        return Ok(());
    };
    let addrs = config.direct_addrs(bound);
    let set = dnsaddr::RecordSet::new(domain, peer, &addrs, d.ttl)
        .context("dnsaddr.publish: the records for this sidecar")?;
    let publisher = dnsaddr::Publisher::new(server, d.tsig.clone());
    tokio::spawn(async move {
        let mut wait = DNSADDR_RETRY.0;
        loop {
            match publisher.publish(&set).await {
                Ok(u) => {
                    tracing::info!(name = %u.name, zone = %u.zone, added = u.added.len(),
                        removed = u.removed.len(), kept = u.kept.len(), others = u.others,
                        "dnsaddr records published");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?wait, "publishing dnsaddr records failed");
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(DNSADDR_RETRY.1);
        }
    });
    Ok(())
}
