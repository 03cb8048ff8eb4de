//! A real Kademlia DHT on loopback, made of Kubo daemons, for tests that need records to
//! travel through a DHT (IPNS publish/resolve, `routing put`/`get`, republishing).
//!
//! # Brief overview
//!
//! [`DhtMesh::start`] creates `n` nodes with [`init_node`] (test profile, `Routing.Type=dht`,
//! RPC API and one TCP swarm address on ports pinned at init), starts them concurrently,
//! `swarm connect`s every pair, and waits until every node's LAN DHT routing table holds all
//! the others ([`routing_tables`]). A node can be stopped and started again at the same RPC
//! URL, swarm address and peer ID ([`crate::kubo::Kubo::restart`]); [`DhtMesh::reconnect`]
//! re-meshes it; [`DhtMesh::forget_records`] makes nodes lose their DHT records as if
//! they had aged out. [`start_outsider`] gives a node outside the mesh, to sign third-party
//! records. [`DhtMesh::start_with`] and [`DhtMode::WanStub`] fill the WAN DHT too (see
//! below). Dropping the mesh stops every daemon. Callers: `tests/dht_rig.rs` and tests that
//! need a DHT. Nothing here talks to anything but 127.0.0.1.
//!
//! # What a test can rely on (Kubo 0.43.0, go-libp2p-kad-dht 0.42.1, 2-core machine)
//!
//! - Kubo runs two DHTs. Loopback peers only ever enter the **LAN** one
//!   (`/ipfs/lan/kad/1.0.0`), and only because the test profile sets
//!   `Routing.LoopbackAddressesOnLanDHT=true` (default false: the LAN DHT filters loopback
//!   addresses and the tables stay empty). The WAN table stays empty, and while it is empty
//!   the dual DHT puts through the LAN one.
//! - Speed: a peer is in the other's LAN table ~30 ms after `swarm connect`; a 4-node mesh
//!   is ready ~0.4 s after [`DhtMesh::start`] is called; a restarted node is back in every
//!   table ~20 ms after its connects. Publish, put, get and resolve take 1–15 ms each
//!   (`tests/dht_rig.rs` prints them).
//! - With fewer than 20 nodes (the bucket size) every node is among the closest peers of
//!   any key, so a put stores the record in the putter's own DHT datastore and in every
//!   other running node's. A node that is down during a put misses it, and a restart does
//!   not wipe the copy it already has: the datastore is in the repo.
//! - **A node's own copy shadows the network in [`DhtMode::Lan`].** The LAN and WAN DHTs
//!   share one value store. A get emits the local copy first, the WAN search (empty table)
//!   then ends at once, and Kubo's parallel router cancels the whole search when a router
//!   that produced a value ends. The LAN network query is cancelled with it. So
//!   `routing get` and `name resolve --nocache` on a node that holds a valid copy mostly
//!   return that copy, even when the other nodes hold a higher sequence (now and then the
//!   LAN answer wins the race: never rely on either outcome). A node without a copy
//!   does query its peers. The copy goes away only when a better record is put to that
//!   node, when its IPNS validity (EOL, `--lifetime`) passes (the copy is then skipped
//!   and the network asked), or after the DHT's `MaxRecordAge` (48 h since received,
//!   not configurable in Kubo).
//! - [`DhtMode::WanStub`] (`Routing.Type=dhtserver` and env `TEST_DHT_STUB=1`, Kubo ≥ 0.41)
//!   lets loopback peers into the WAN DHT too. Then a get runs a full lookup, and a node
//!   with a stale copy resolves the network's best record. Use it when "node D resolves
//!   X" must mean "the DHT holds X", not "D once received X".
//!
//! Ports are picked with [`free_loopback_ports`] just before init: another process can in
//! principle take one before Kubo binds it, which shows up as a start error.

use std::collections::BTreeSet;
use std::thread;

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::Value;

use crate::kubo::{Kubo, RPC_TIMEOUT, free_loopback_ports, loopback_tcp};
use crate::process;

/// How long [`DhtMesh::start`] and [`DhtMesh::reconnect`] wait for the routing tables
/// (measured: well under a second after the connects; the margin is for a loaded machine).
pub const MESH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
/// Attempts per `swarm connect` when meshing (see `DhtMesh::connect`).
pub const CONNECT_TRIES: u32 = 3;
/// go-log levels of the mesh's daemons: errors only, so the log tails stay readable.
pub const MESH_LOG_LEVEL: &str = "error";
/// Kubo ≥ 0.41: when set, the WAN DHT accepts loopback peers (stub networks in tests).
pub const ENV_TEST_DHT_STUB: &str = "TEST_DHT_STUB";

/// Which of Kubo's two DHTs the mesh fills; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DhtMode {
    /// `Routing.Type=dht`: only the LAN DHT fills. A node answers gets from its own copy
    /// when it has one. This is the default.
    #[default]
    Lan,
    /// `Routing.Type=dhtserver` with `TEST_DHT_STUB=1`: both DHTs fill, puts go through
    /// the WAN DHT, and every get runs a real lookup.
    WanStub,
}

/// A Kubo repo (not started) for a DHT on loopback: the RPC API on `127.0.0.1:api_port`
/// and one swarm address `/ip4/127.0.0.1/tcp/<swarm_port>`, both kept across restarts.
pub fn init_node(label: &str, api_port: u16, swarm_port: u16, mode: DhtMode) -> Result<Kubo> {
    let swarm = loopback_tcp(swarm_port);
    let routing_type = match mode {
        DhtMode::Lan => "dht",
        DhtMode::WanStub => "dhtserver",
    };
    let mut kubo = Kubo::init_with(label, &[&swarm], |config| {
        config["Routing"]["Type"] = routing_type.into();
        config["Addresses"]["API"] = loopback_tcp(api_port).into();
        // The test profile already sets this; the mesh depends on it, so say it here.
        config["Routing"]["LoopbackAddressesOnLanDHT"] = true.into();
        Ok(())
    })?;
    if mode == DhtMode::WanStub {
        kubo.set_env(ENV_TEST_DHT_STUB, "1");
    }
    Ok(kubo)
}

/// A started DHT node that belongs to no mesh: it signs and stores records that no mesh
/// node can find until something puts them there (a third-party publisher). Its
/// `name get` reads its own DHT store; with `Routing.Type=none` Kubo keeps nothing to get.
pub fn start_outsider(label: &str) -> Result<Kubo> {
    let ports = free_loopback_ports(2)?;
    let mut kubo = init_node(label, ports[0], ports[1], DhtMode::Lan)?;
    kubo.start(MESH_LOG_LEVEL)?;
    Ok(kubo)
}

/// Peer IDs in a node's two DHT routing tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingTables {
    /// The LAN DHT (`/ipfs/lan/kad/1.0.0`).
    pub lan: BTreeSet<String>,
    /// The WAN DHT (`/ipfs/kad/1.0.0`).
    pub wan: BTreeSet<String>,
}

/// `kubo`'s routing tables (RPC `stats/dht`: NDJSON, one object per DHT,
/// `{"Name":"lan"|"wan","Buckets":[{"Peers":[{"ID":…},…]},…]}`).
pub fn routing_tables(kubo: &Kubo) -> Result<RoutingTables> {
    let body = kubo.rpc("stats/dht", &[], RPC_TIMEOUT)?;
    let mut tables = RoutingTables::default();
    for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let dht: Value = serde_json::from_slice(line)
            .with_context(|| format!("stats/dht: bad line {:?}", String::from_utf8_lossy(line)))?;
        let table = match dht["Name"].as_str() {
            Some("lan") => &mut tables.lan,
            Some("wan") => &mut tables.wan,
            _ => bail!("stats/dht: unknown DHT in {dht}"),
        };
        for bucket in dht["Buckets"].as_array().into_iter().flatten() {
            for peer in bucket["Peers"].as_array().into_iter().flatten() {
                let id = peer["ID"]
                    .as_str()
                    .ok_or_else(|| anyhow!("stats/dht: peer without ID: {peer}"))?;
                table.insert(id.to_owned());
            }
        }
    }
    Ok(tables)
}

/// `n` Kubo daemons forming one DHT on loopback; see the module docs.
pub struct DhtMesh {
    nodes: Vec<Kubo>,
    mode: DhtMode,
    /// Peer ID of each node (fixed for the repo's life, so it survives restarts).
    peer_ids: Vec<String>,
    /// `/ip4/127.0.0.1/tcp/<port>/p2p/<id>` of each node, pinned at init.
    swarm_addrs: Vec<String>,
}

impl DhtMesh {
    /// [`DhtMesh::start_with`] in [`DhtMode::Lan`].
    pub fn start(n: usize) -> Result<DhtMesh> {
        DhtMesh::start_with(n, DhtMode::Lan)
    }

    /// Creates and starts `n` (≥ 2) nodes labelled `dht0…` (concurrently), connects every
    /// pair and waits until each node's routing table(s) hold the other `n - 1` peers.
    pub fn start_with(n: usize, mode: DhtMode) -> Result<DhtMesh> {
        ensure!(n >= 2, "a DHT mesh needs at least 2 nodes, not {n}");
        let ports = free_loopback_ports(2 * n)?;
        let mut nodes = thread::scope(|s| {
            let inits: Vec<_> = (0..n)
                .map(|i| {
                    let (api, swarm) = (ports[2 * i], ports[2 * i + 1]);
                    s.spawn(move || init_node(&format!("dht{i}"), api, swarm, mode))
                })
                .collect();
            inits.into_iter().map(join).collect::<Result<Vec<_>>>()
        })?;
        thread::scope(|s| {
            let starts: Vec<_> = nodes
                .iter_mut()
                .map(|k| s.spawn(move || k.start(MESH_LOG_LEVEL)))
                .collect();
            starts.into_iter().try_for_each(join)
        })?;
        let mut peer_ids = Vec::with_capacity(n);
        let mut swarm_addrs = Vec::with_capacity(n);
        for (i, node) in nodes.iter().enumerate() {
            let id = node.id()?.peer_id;
            swarm_addrs.push(format!("{}/p2p/{id}", loopback_tcp(ports[2 * i + 1])));
            peer_ids.push(id);
        }
        let mesh = DhtMesh {
            nodes,
            mode,
            peer_ids,
            swarm_addrs,
        };
        for i in 0..n {
            mesh.connect(i, i + 1..n)?;
        }
        mesh.wait_meshed()?;
        Ok(mesh)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Always false: a mesh has at least two nodes.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The mode the mesh was started in.
    pub fn mode(&self) -> DhtMode {
        self.mode
    }

    /// Node `i` (panics if out of range, like indexing).
    pub fn node(&self, i: usize) -> &Kubo {
        &self.nodes[i]
    }

    /// Node `i`, e.g. to stop and start it (then call [`DhtMesh::reconnect`]).
    pub fn node_mut(&mut self, i: usize) -> &mut Kubo {
        &mut self.nodes[i]
    }

    /// Every node, in index order.
    pub fn nodes(&self) -> &[Kubo] {
        &self.nodes
    }

    /// Peer ID of node `i`.
    pub fn peer_id(&self, i: usize) -> &str {
        &self.peer_ids[i]
    }

    /// `/ip4/127.0.0.1/tcp/<port>/p2p/<id>` of node `i` (the same across restarts).
    pub fn swarm_addr(&self, i: usize) -> &str {
        &self.swarm_addrs[i]
    }

    /// Connects node `i` (running again after a restart) to every other running node and
    /// waits until every running node's table(s) hold every other running node.
    pub fn reconnect(&self, i: usize) -> Result<()> {
        ensure!(
            self.nodes[i].is_running(),
            "node {i} must be started before it is reconnected"
        );
        self.connect(i, 0..self.len())?;
        self.wait_meshed()
    }

    /// Restarts node `i` (same repo, ports and peer ID) and reconnects it.
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.nodes[i].restart()?;
        self.reconnect(i)
    }

    /// Makes nodes `which` forget every DHT record they hold, as if the records had aged out
    /// (the DHT keeps a record 48 h, not configurable in Kubo): stops them concurrently,
    /// [`Kubo::wipe_datastore`]s them, starts them again and re-meshes. Forgetting on every
    /// node leaves a record nowhere: only a put after this brings it back.
    pub fn forget_records(&mut self, which: &[usize]) -> Result<()> {
        thread::scope(|s| {
            let jobs: Vec<_> = self
                .nodes
                .iter_mut()
                .enumerate()
                .filter(|(i, _)| which.contains(i))
                .map(|(_, k)| {
                    s.spawn(move || {
                        k.stop()?;
                        k.wipe_datastore()?;
                        k.start(MESH_LOG_LEVEL)
                    })
                })
                .collect();
            jobs.into_iter().try_for_each(join)
        })?;
        for i in 0..self.len() {
            self.connect(i, i + 1..self.len())?;
        }
        self.wait_meshed()
    }

    /// Waits (up to [`MESH_TIMEOUT`]) until every running node's LAN table (and WAN table,
    /// in [`DhtMode::WanStub`]) holds every other running node. Stopped nodes are ignored.
    /// The error names the missing entries and shows each node's log tail.
    pub fn wait_meshed(&self) -> Result<()> {
        let running: Vec<usize> = (0..self.len())
            .filter(|&i| self.nodes[i].is_running())
            .collect();
        let mut missing = Vec::new();
        let waited = process::wait_for("the DHT routing tables to fill", MESH_TIMEOUT, || {
            missing.clear();
            for &i in &running {
                let tables = routing_tables(&self.nodes[i])?;
                for &j in running.iter().filter(|&&j| j != i) {
                    let peer = &self.peer_ids[j];
                    if !tables.lan.contains(peer) {
                        missing.push(format!("node {i}'s LAN table lacks node {j}"));
                    }
                    if self.mode == DhtMode::WanStub && !tables.wan.contains(peer) {
                        missing.push(format!("node {i}'s WAN table lacks node {j}"));
                    }
                }
            }
            Ok(missing.is_empty().then_some(()))
        });
        waited.map_err(|e| anyhow!("{e}: {}\n{}", missing.join(", "), self.logs_tails()))
    }

    /// Every node's daemon log tail, for failure messages.
    pub fn logs_tails(&self) -> String {
        let tails: Vec<String> = self.nodes.iter().map(Kubo::logs_tail).collect();
        tails.join("\n")
    }

    /// Stops every daemon concurrently; fails if one did not exit cleanly.
    pub fn stop(mut self) -> Result<()> {
        stop_all(&mut self.nodes).context("stopping the DHT mesh")
    }

    /// `swarm connect` from node `i` to each node `j` in `to` (skipping `i` and stopped
    /// nodes). Connecting to an already connected peer succeeds.
    ///
    /// A connect is tried up to [`CONNECT_TRIES`] times: with fixed ports (port reuse) the
    /// two nodes can dial each other at the same moment (the DHT of a third node told one
    /// about the other), a TCP simultaneous open in which both sides start TLS as the client
    /// ("received unexpected handshake message of type *tls.clientHelloMsg"). It is
    /// transient; the next attempt finds the connection made or makes a fresh one.
    fn connect(&self, i: usize, to: impl Iterator<Item = usize>) -> Result<()> {
        for j in to.filter(|&j| j != i && self.nodes[j].is_running()) {
            let mut tries = 0;
            loop {
                tries += 1;
                match self.nodes[i].swarm_connect(&self.swarm_addrs[j]) {
                    Ok(()) => break,
                    Err(_) if tries < CONNECT_TRIES => {
                        thread::sleep(std::time::Duration::from_millis(200));
                    }
                    Err(e) => {
                        return Err(e).with_context(|| {
                            format!("meshing node {i} with node {j} ({tries} tries)")
                        });
                    }
                }
            }
        }
        Ok(())
    }
}

impl Drop for DhtMesh {
    fn drop(&mut self) {
        // Concurrently, so tearing down n daemons costs one shutdown, not n.
        let _ = stop_all(&mut self.nodes);
    }
}

fn stop_all(nodes: &mut [Kubo]) -> Result<()> {
    thread::scope(|s| {
        let stops: Vec<_> = nodes
            .iter_mut()
            .filter(|k| k.is_running())
            .map(|k| s.spawn(move || k.stop()))
            .collect();
        stops.into_iter().try_for_each(join)
    })
}

/// Joins a scoped worker, turning its panic into an error.
fn join<T>(handle: thread::ScopedJoinHandle<'_, Result<T>>) -> Result<T> {
    match handle.join() {
        Ok(result) => result,
        Err(_) => bail!("a DHT mesh worker thread panicked"),
    }
}
