//! `/dnsaddr` names: a peer's addresses published as DNS TXT records, so
//! a provider record can say `/dnsaddr/<domain>` and the operator can move,
//! add or remove nodes by editing DNS.
//!
//! # Brief overview
//!
//! - [`txt`]: the wire format. [`parse_value`] / [`format_txt`] turn
//!   `dnsaddr=<multiaddr>` TXT values into [`Multiaddr`]s and back,
//!   refusing values over [`MAX_TXT_VALUE`] bytes; [`check_domain`].
//! - [`records`]: [`RecordSet`], the TXT records for one peer's addresses,
//!   as BIND zone-file lines or JSON.
//! - [`resolve`]: [`Resolver`], recursive resolution with suffix filtering,
//!   depth, address and lookup bounds, cycle detection and TTL caching,
//!   over [`HickorySource`] (the system resolver or a given name server).
//! - [`publish`]: [`Publisher`], RFC 2136 dynamic updates signed with TSIG
//!   that replace exactly one peer's entries and leave the others alone.
//!
//! The crate knows nothing of the sidecar; anything that dials or
//! advertises `/dnsaddr` names can use it.

pub mod publish;
pub mod records;
pub mod resolve;
pub mod txt;

pub use multiaddr::{Multiaddr, PeerId, Protocol};

pub use publish::{PublishError, Publisher, Tsig, Update};
pub use records::{GenerateError, RecordSet};
pub use resolve::{HickorySource, Limits, LookupError, Resolution, Resolver, TxtSource};
pub use txt::{MAX_TXT_VALUE, TxtError, check_domain, format_txt, parse_txt, parse_value};
