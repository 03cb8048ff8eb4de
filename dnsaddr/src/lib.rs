//! dnsaddr
