//! The client's address: the socket's peer, or — only when that peer is a trusted proxy
//! (`--trusted-proxy` CIDRs) — the address the proxies recorded in `X-Forwarded-For`.
//!
//! Anyone can send an `X-Forwarded-For` header, so it is believed only from a trusted peer,
//! and read from the right: each trusted proxy appends the address it received from, so the
//! rightmost address that is not itself a trusted proxy is the client. Whatever the client
//! wrote further left is ignored. Sessions' `ip_address`, login rate limits and the login
//! log use this address.

use std::net::{IpAddr, SocketAddr};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{request::Parts, HeaderMap},
};
use ipnet::IpNet;

use crate::{error::ApiError, state::AppState};

/// The client's address as this server should believe it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("no peer address on the request")))?;
        Ok(Self(resolve(
            peer,
            &parts.headers,
            &state.settings.trusted_proxies,
        )))
    }
}

/// The client behind `peer`, given the proxies trusted.
pub fn resolve(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(&canonical(*ip)));
    if !is_trusted(&peer) {
        return canonical(peer);
    }
    // Every X-Forwarded-For header, in order, as one list, read from the right. An entry
    // that is not an address ends the walk: everything left of it is the client's word.
    let mut items: Vec<&str> = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(text) = value.to_str() else {
            return canonical(peer);
        };
        items.extend(text.split(','));
    }
    let mut client = peer;
    for item in items.iter().rev() {
        let Some(hop) = parse_hop(item) else { break };
        client = hop;
        if !is_trusted(&hop) {
            break;
        }
    }
    canonical(client)
}

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5678`,
/// `[::1]:5678`).
fn parse_hop(item: &str) -> Option<IpAddr> {
    let item = item.trim();
    item.parse::<IpAddr>()
        .ok()
        .or_else(|| item.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// An IPv4 client reaching an IPv6 socket shows as `::ffff:a.b.c.d`; it is the IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append("x-forwarded-for", v.parse().expect("header value"));
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().expect("cidr")).collect()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_claims() {
        let got = resolve(
            ip("203.0.113.9"),
            &headers(&["1.1.1.1"]),
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(got, ip("203.0.113.9"));
        assert_eq!(
            resolve(ip("10.0.0.1"), &headers(&["1.1.1.1"]), &[]),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_rightmost_untrusted_hop_is_the_client() {
        let trusted = nets(&["10.0.0.0/8"]);
        // The client forged the leftmost entry; the proxy appended what it saw.
        let got = resolve(
            ip("10.0.0.2"),
            &headers(&["6.6.6.6, 198.51.100.7, 10.0.0.3"]),
            &trusted,
        );
        assert_eq!(got, ip("198.51.100.7"));
        // Several headers count as one list.
        let got = resolve(
            ip("10.0.0.2"),
            &headers(&["6.6.6.6", "198.51.100.7:4711"]),
            &trusted,
        );
        assert_eq!(got, ip("198.51.100.7"));
    }

    #[test]
    fn a_trusted_peer_without_a_usable_header_is_the_client() {
        let trusted = nets(&["127.0.0.0/8", "::1/128"]);
        assert_eq!(
            resolve(ip("127.0.0.1"), &HeaderMap::new(), &trusted),
            ip("127.0.0.1")
        );
        assert_eq!(
            resolve(ip("::1"), &headers(&["garbage"]), &trusted),
            ip("::1")
        );
        // Garbage the client wrote left of a real hop does not hide the client.
        assert_eq!(
            resolve(ip("127.0.0.1"), &headers(&["garbage, 192.0.2.5"]), &trusted),
            ip("192.0.2.5")
        );
        assert_eq!(
            resolve(ip("::ffff:127.0.0.1"), &headers(&["192.0.2.1"]), &trusted),
            ip("192.0.2.1")
        );
    }
}
