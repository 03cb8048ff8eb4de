//! Resolving `/dnsaddr/<domain>[/<rest>]` into dialable multiaddrs.
//!
//! # Brief overview
//!
//! [`Resolver::resolve`] looks up the TXT records at `_dnsaddr.<domain>`
//! through a [`TxtSource`] ([`HickorySource`]: hickory-resolver, the system
//! resolver or a given name server), follows nested `/dnsaddr/…` entries
//! depth first, and returns a [`Resolution`]: the tree of what was found
//! (for diagnosis) and the flat list of addresses.
//!
//! - **Suffix filtering.** The components after the domain (usually
//!   `/p2p/<peer id>`) must end every address kept, compared component by
//!   component (`/p2p/QmA` does not match `/p2p/QmAB`). Entries that do
//!   not match are kept in the tree as filtered. A nested `/dnsaddr` entry
//!   is followed when it matches, or when it names no peer (it may expand
//!   to matching addresses).
//! - **Bounds.** At most [`Limits::max_depth`] lookups in a chain (the top
//!   domain is 1; default [`DEFAULT_MAX_DEPTH`], as go-libp2p), at most
//!   [`Limits::max_addrs`] addresses (default [`DEFAULT_MAX_ADDRS`], as
//!   go-libp2p) and [`Limits::max_lookups`] lookups per resolution. Past a
//!   bound the walk stops, the tree says where, and
//!   [`Resolution::truncated`] is set: a partial answer, never an error.
//! - **Cycles.** A domain already on the current chain is not looked up
//!   again; the tree records the cycle.
//! - **Caching.** Each TXT answer is kept for its TTL (a missing name for
//!   its negative TTL, at most [`MAX_NEGATIVE_TTL`]), and each whole
//!   resolution for the shortest TTL it depended on; a failed lookup is
//!   not cached. Both caches hold at most [`Limits::cache_entries`]
//!   entries: a full cache first drops expired entries, then everything. A
//!   warm resolution is one hash lookup and an `Arc` clone.
//!
//! Called by: the sidecar's `dnsaddr check` and anything that dials
//! `/dnsaddr` names. Must never: return an address that does not end with
//! the requested suffix, or loop.

use std::{
    collections::HashMap,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
    time::Duration,
};

use multiaddr::{Multiaddr, Protocol};
use serde::Serialize;
use tokio::time::Instant;

use crate::txt;

/// Longest chain of lookups followed; go-libp2p's limit (Kubo).
pub const DEFAULT_MAX_DEPTH: usize = 4;
/// Most addresses returned; go-libp2p's limit (Kubo). js-libp2p dials at
/// most 25 per peer.
pub const DEFAULT_MAX_ADDRS: usize = 100;
/// Most TXT lookups for one resolution (a wide tree of nested names).
pub const DEFAULT_MAX_LOOKUPS: usize = 32;
/// Entries in each cache.
pub const DEFAULT_CACHE_ENTRIES: usize = 4096;
/// Longest a missing name is remembered.
pub const MAX_NEGATIVE_TTL: Duration = Duration::from_secs(300);
/// Time allowed for one TXT lookup.
pub const DEFAULT_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// The bounds of a resolution; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest chain of lookups. Defaults to [`DEFAULT_MAX_DEPTH`].
    pub max_depth: usize,
    /// Most addresses returned. Defaults to [`DEFAULT_MAX_ADDRS`].
    pub max_addrs: usize,
    /// Most lookups per resolution. Defaults to [`DEFAULT_MAX_LOOKUPS`].
    pub max_lookups: usize,
    /// Entries in each cache; 0 disables caching. Defaults to
    /// [`DEFAULT_CACHE_ENTRIES`].
    pub cache_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: DEFAULT_MAX_DEPTH,
            max_addrs: DEFAULT_MAX_ADDRS,
            max_lookups: DEFAULT_MAX_LOOKUPS,
            cache_entries: DEFAULT_CACHE_ENTRIES,
        }
    }
}

/// The TXT records at one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxtAnswer {
    /// Each record's character-strings.
    pub records: Vec<Vec<Vec<u8>>>,
    /// The shortest TTL among them.
    pub ttl: Duration,
}

/// Why a TXT lookup gave no records.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// The name or its TXT records do not exist (`ttl`: how long that may
    /// be remembered, from the zone's SOA).
    #[error("no TXT records")]
    NotFound { ttl: Option<Duration> },
    /// The lookup itself failed (timeout, refused, server failure).
    #[error("lookup failed: {0}")]
    Failed(String),
}

/// Where TXT records come from.
pub trait TxtSource: Send + Sync + 'static {
    /// The TXT records at the fully qualified `name` (ending in `.`).
    fn txt(&self, name: &str) -> impl Future<Output = Result<TxtAnswer, LookupError>> + Send;
}

/// [`TxtSource`] on hickory-resolver.
#[derive(Clone)]
pub struct HickorySource {
    resolver: hickory_resolver::TokioResolver,
}

impl HickorySource {
    /// Uses the system's resolver configuration (`/etc/resolv.conf`).
    pub fn system() -> Result<Self, LookupError> {
        let builder = hickory_resolver::Resolver::builder_tokio()
            .map_err(|e| LookupError::Failed(format!("reading the system DNS config: {e}")))?;
        Self::build(builder)
    }

    /// Asks only the name server at `server` (UDP, then TCP for long
    /// answers): a private zone, a test server.
    pub fn nameserver(server: SocketAddr) -> Result<Self, LookupError> {
        use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
        let mut udp = ConnectionConfig::udp();
        udp.port = server.port();
        let mut tcp = ConnectionConfig::tcp();
        tcp.port = server.port();
        let ns = NameServerConfig::new(server.ip(), true, vec![udp, tcp]);
        let config = ResolverConfig::from_parts(None, Vec::new(), vec![ns]);
        let provider = hickory_resolver::net::runtime::TokioRuntimeProvider::default();
        Self::build(hickory_resolver::Resolver::builder_with_config(
            config, provider,
        ))
    }

    fn build(
        mut builder: hickory_resolver::ResolverBuilder<
            hickory_resolver::net::runtime::TokioRuntimeProvider,
        >,
    ) -> Result<Self, LookupError> {
        let opts = builder.options_mut();
        // The resolver above caches by TTL itself.
        opts.cache_size = 0;
        opts.timeout = DEFAULT_LOOKUP_TIMEOUT;
        opts.attempts = 2;
        opts.ndots = 0;
        let resolver = builder
            .build()
            .map_err(|e| LookupError::Failed(format!("building the resolver: {e}")))?;
        Ok(Self { resolver })
    }
}

impl TxtSource for HickorySource {
    async fn txt(&self, name: &str) -> Result<TxtAnswer, LookupError> {
        use hickory_resolver::proto::rr::RData;
        match self.resolver.txt_lookup(name).await {
            Ok(lookup) => {
                let mut records = Vec::new();
                let mut ttl = u32::MAX;
                for record in lookup.answers() {
                    if let RData::TXT(t) = &record.data {
                        ttl = ttl.min(record.ttl);
                        records.push(t.txt_data.iter().map(|s| s.to_vec()).collect());
                    }
                }
                if records.is_empty() {
                    return Err(LookupError::NotFound { ttl: None });
                }
                Ok(TxtAnswer {
                    records,
                    ttl: Duration::from_secs(u64::from(ttl)),
                })
            }
            Err(e) if e.is_no_records_found() => {
                let ttl = match &e {
                    hickory_resolver::net::NetError::Dns(
                        hickory_resolver::net::DnsError::NoRecordsFound(n),
                    ) => n.negative_ttl.map(|s| Duration::from_secs(u64::from(s))),
                    _ => None,
                };
                Err(LookupError::NotFound { ttl })
            }
            Err(e) => Err(LookupError::Failed(e.to_string())),
        }
    }
}

/// One TXT value found at a name, and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The value as found (lossy UTF-8, pieces joined).
    pub value: String,
    pub outcome: Outcome,
}

/// What became of a TXT value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Outcome {
    /// A dialable address, kept.
    Address { addr: String },
    /// An address that does not end with the requested suffix.
    Filtered { addr: String },
    /// A nested `/dnsaddr` name, followed.
    Nested { tree: Box<Tree> },
    /// A nested `/dnsaddr` name for another peer, not followed.
    NotFollowed { addr: String },
    /// Not a dnsaddr value (other TXT records share the name).
    Invalid { error: String },
    /// A nested name already on the chain.
    Cycle { domain: String },
    /// A nested name past [`Limits::max_depth`].
    TooDeep { domain: String, depth: usize },
    /// Dropped: [`Limits::max_addrs`] or [`Limits::max_lookups`] reached.
    OverLimit,
}

/// What one name held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tree {
    pub domain: String,
    /// The lookup's TTL (`None`: it failed or found nothing).
    pub ttl_seconds: Option<u64>,
    /// Why the lookup gave nothing.
    pub error: Option<String>,
    pub entries: Vec<Entry>,
}

/// The result of resolving one `/dnsaddr` multiaddr.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolution {
    pub tree: Tree,
    /// Every address kept, in the order found.
    #[serde(serialize_with = "as_strings")]
    pub addrs: Vec<Multiaddr>,
    /// A bound was reached: there may be more.
    pub truncated: bool,
}

fn as_strings<S: serde::Serializer>(addrs: &[Multiaddr], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(addrs.iter().map(|a| a.to_string()))
}

/// Why nothing could be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("{0} is not a /dnsaddr multiaddr")]
    NotDnsaddr(Multiaddr),
    #[error("{0}")]
    Domain(#[from] txt::DomainError),
}

struct Cached<T> {
    value: T,
    expires: Instant,
}

/// A TTL cache of at most `cap` entries; see the module docs.
struct TtlCache<K, V> {
    cap: usize,
    map: HashMap<K, Cached<V>>,
}

impl<K: std::hash::Hash + Eq, V: Clone> TtlCache<K, V> {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            map: HashMap::new(),
        }
    }

    fn get<Q>(&self, key: &Q, now: Instant) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.map
            .get(key)
            .filter(|c| c.expires > now)
            .map(|c| c.value.clone())
    }

    fn insert(&mut self, key: K, value: V, ttl: Duration, now: Instant) {
        if self.cap == 0 || ttl.is_zero() {
            return;
        }
        if self.map.len() >= self.cap {
            self.map.retain(|_, c| c.expires > now);
            if self.map.len() >= self.cap {
                self.map.clear();
            }
        }
        self.map.insert(
            key,
            Cached {
                value,
                expires: now + ttl,
            },
        );
    }
}

type TxtResult = Result<Arc<TxtAnswer>, LookupError>;

/// A caching, bounded dnsaddr resolver; see the module docs.
pub struct Resolver<S> {
    source: S,
    limits: Limits,
    txts: Mutex<TtlCache<String, TxtResult>>,
    results: Mutex<TtlCache<Vec<u8>, Arc<Resolution>>>,
}

/// State of one resolution's walk.
struct Walk {
    suffix: Vec<Protocol<'static>>,
    addrs: Vec<Multiaddr>,
    lookups: usize,
    truncated: bool,
    /// Shortest TTL met; `None` once something must not be cached.
    ttl: Option<Duration>,
}

impl<S: TxtSource> Resolver<S> {
    pub fn new(source: S, limits: Limits) -> Self {
        Self {
            source,
            limits,
            txts: Mutex::new(TtlCache::new(limits.cache_entries)),
            results: Mutex::new(TtlCache::new(limits.cache_entries)),
        }
    }

    /// The bounds in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Resolves `/dnsaddr/<domain>[/<suffix>]`; see the module docs.
    pub async fn resolve(&self, addr: &Multiaddr) -> Result<Arc<Resolution>, ResolveError> {
        let now = Instant::now();
        if let Some(hit) = lock(&self.results).get(addr.as_ref(), now) {
            return Ok(hit);
        }
        let (domain, suffix) =
            txt::split_dnsaddr(addr).ok_or_else(|| ResolveError::NotDnsaddr(addr.clone()))?;
        let domain = txt::check_domain(&domain)?;
        let mut walk = Walk {
            suffix,
            addrs: Vec::new(),
            lookups: 0,
            truncated: false,
            ttl: Some(Duration::MAX),
        };
        let mut chain = Vec::new();
        let tree = self.walk(&domain, 1, &mut chain, &mut walk).await;
        let resolution = Arc::new(Resolution {
            tree,
            addrs: walk.addrs,
            truncated: walk.truncated,
        });
        if let Some(ttl) = walk.ttl {
            lock(&self.results).insert(addr.to_vec(), resolution.clone(), ttl, Instant::now());
        }
        Ok(resolution)
    }

    /// Forgets everything cached.
    pub fn clear_cache(&self) {
        lock(&self.txts).map.clear();
        lock(&self.results).map.clear();
    }

    fn walk<'a>(
        &'a self,
        domain: &'a str,
        depth: usize,
        chain: &'a mut Vec<String>,
        walk: &'a mut Walk,
    ) -> Pin<Box<dyn Future<Output = Tree> + Send + 'a>> {
        Box::pin(async move {
            let mut tree = Tree {
                domain: domain.to_owned(),
                ttl_seconds: None,
                error: None,
                entries: Vec::new(),
            };
            walk.lookups += 1;
            let answer = match self.lookup(domain).await {
                Ok(a) => a,
                Err(e) => {
                    match &e {
                        LookupError::NotFound { ttl } => {
                            let ttl = ttl.unwrap_or_default().min(MAX_NEGATIVE_TTL);
                            walk.ttl = walk.ttl.map(|t| t.min(ttl));
                        }
                        LookupError::Failed(_) => walk.ttl = None,
                    }
                    tree.error = Some(e.to_string());
                    return tree;
                }
            };
            tree.ttl_seconds = Some(answer.ttl.as_secs());
            walk.ttl = walk.ttl.map(|t| t.min(answer.ttl));
            chain.push(domain.to_owned());
            for record in &answer.records {
                let pieces: Vec<&[u8]> = record.iter().map(Vec::as_slice).collect();
                let value = String::from_utf8_lossy(&record.concat()).into_owned();
                let outcome = match txt::parse_txt(&pieces) {
                    Ok(addr) => self.follow(addr, depth, chain, walk).await,
                    Err(e) => Outcome::Invalid {
                        error: e.to_string(),
                    },
                };
                tree.entries.push(Entry { value, outcome });
            }
            chain.pop();
            tree
        })
    }

    /// What to do with one parsed entry.
    async fn follow(
        &self,
        addr: Multiaddr,
        depth: usize,
        chain: &mut Vec<String>,
        walk: &mut Walk,
    ) -> Outcome {
        let matches = txt::ends_with(&addr, &walk.suffix);
        let Some((nested, rest)) = txt::split_dnsaddr(&addr) else {
            if !matches {
                return Outcome::Filtered {
                    addr: addr.to_string(),
                };
            }
            if walk.addrs.len() >= self.limits.max_addrs {
                walk.truncated = true;
                return Outcome::OverLimit;
            }
            walk.addrs.push(addr.clone());
            return Outcome::Address {
                addr: addr.to_string(),
            };
        };
        let names_peer = rest.iter().any(|p| matches!(p, Protocol::P2p(_)));
        if names_peer && !matches {
            return Outcome::NotFollowed {
                addr: addr.to_string(),
            };
        }
        let nested = match txt::check_domain(&nested) {
            Ok(d) => d,
            Err(e) => {
                return Outcome::Invalid {
                    error: e.to_string(),
                };
            }
        };
        if chain.contains(&nested) {
            return Outcome::Cycle { domain: nested };
        }
        if depth + 1 > self.limits.max_depth {
            walk.truncated = true;
            return Outcome::TooDeep {
                domain: nested,
                depth: depth + 1,
            };
        }
        if walk.lookups >= self.limits.max_lookups || walk.addrs.len() >= self.limits.max_addrs {
            walk.truncated = true;
            return Outcome::OverLimit;
        }
        let tree = self.walk(&nested, depth + 1, chain, walk).await;
        Outcome::Nested {
            tree: Box::new(tree),
        }
    }

    /// The TXT records at `_dnsaddr.<domain>`, from the cache when fresh.
    async fn lookup(&self, domain: &str) -> TxtResult {
        let name = txt::txt_name(domain);
        if let Some(hit) = lock(&self.txts).get(&name, Instant::now()) {
            return hit;
        }
        let result = self.source.txt(&name).await.map(Arc::new);
        let ttl = match &result {
            Ok(a) => a.ttl,
            Err(LookupError::NotFound { ttl }) => ttl.unwrap_or_default().min(MAX_NEGATIVE_TTL),
            Err(LookupError::Failed(_)) => Duration::ZERO,
        };
        lock(&self.txts).insert(name, result.clone(), ttl, Instant::now());
        result
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
#[path = "resolve_tests.rs"]
mod tests;
