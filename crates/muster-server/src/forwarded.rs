//! `--forwarded-allow-ips`: which peers (reverse proxies) may tell us the client's
//! address and scheme with `X-Forwarded-For` and `X-Forwarded-Proto`.
//!
//! For a request from a trusted peer, the client is the right-most address of
//! `X-Forwarded-For` that is not itself a trusted proxy (addresses further left were
//! written by the client and prove nothing), and the scheme is `X-Forwarded-Proto`.
//! A request from any other peer keeps its socket address, whatever headers it sends.
//! Clients on a Unix socket are trusted: only processes allowed to open the socket
//! file (a proxy on the same host) reach it.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

use crate::connection::Peer;
use crate::ServerError;

/// The parsed `--forwarded-allow-ips`.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustedProxies {
    any: bool,
    nets: Vec<IpNet>,
}

/// Who the client is, after `--forwarded-allow-ips`: a request extension
/// (`req.extensions().get::<Client>()`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// The client's address: from a trusted proxy's `X-Forwarded-For`, else the peer's
    /// (`None` for a Unix-socket peer that sent no `X-Forwarded-For`).
    pub ip: Option<IpAddr>,
    /// `https` or `http`: from a trusted proxy's `X-Forwarded-Proto`, else how the
    /// connection came (`https` under TLS).
    pub scheme: &'static str,
}

impl TrustedProxies {
    /// Parses IP addresses, CIDR networks and `*`.
    pub(crate) fn parse(items: &[String]) -> Result<TrustedProxies, ServerError> {
        let mut t = TrustedProxies::default();
        for item in items.iter().map(|s| s.trim()).filter(|s| !s.is_empty()) {
            if item == "*" {
                t.any = true;
                continue;
            }
            let net = item
                .parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    ServerError::Config(format!(
                        "forwarded_allow_ips: {item:?} is not an IP address, a CIDR network or '*'"
                    ))
                })?;
            t.nets.push(net);
        }
        Ok(t)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.any || self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client of a request that came from `peer` with `headers`.
    pub(crate) fn client(&self, peer: Option<Peer>, tls: bool, headers: &HeaderMap) -> Client {
        let own_scheme = if tls { "https" } else { "http" };
        let peer_ip = peer.and_then(|p| p.ip());
        let trusted = match peer {
            Some(Peer::Unix) => true,
            Some(Peer::Tcp(a)) => self.trusts(a.ip()),
            None => false,
        };
        if !trusted {
            return Client {
                ip: peer_ip,
                scheme: own_scheme,
            };
        }
        let forwarded: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse().ok())
            .collect();
        let ip = forwarded
            .iter()
            .rev()
            .find(|ip| !self.trusts(**ip))
            .or(forwarded.first())
            .copied()
            .or(peer_ip);
        let scheme = match headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase())
            .as_deref()
        {
            Some("https") => "https",
            Some("http") => "http",
            _ => own_scheme,
        };
        Client { ip, scheme }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, http::HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn only_trusted_peers_may_forward() {
        let t = TrustedProxies::parse(&["127.0.0.1".into(), "10.0.0.0/8".into()]).expect("ok");
        let h = headers(&[
            ("x-forwarded-for", "203.0.113.9, 198.51.100.7"),
            ("x-forwarded-for", "10.1.2.3"),
            ("x-forwarded-proto", "https"),
        ]);
        let proxy = Some(Peer::Tcp("127.0.0.1:5000".parse().expect("addr")));
        // The right-most untrusted hop; the client-written left part proves nothing.
        let c = t.client(proxy, false, &h);
        assert_eq!(c.ip, Some("198.51.100.7".parse().expect("ip")));
        assert_eq!(c.scheme, "https");
        let stranger = Some(Peer::Tcp("192.0.2.1:5000".parse().expect("addr")));
        let c = t.client(stranger, false, &h);
        assert_eq!(c.ip, Some("192.0.2.1".parse().expect("ip")));
        assert_eq!(c.scheme, "http");
        // A Unix-socket proxy is trusted; without headers the client is unknown.
        let c = t.client(Some(Peer::Unix), true, &HeaderMap::new());
        assert_eq!((c.ip, c.scheme), (None, "https"));
        assert!(TrustedProxies::parse(&["*".into()])
            .expect("any")
            .trusts("192.0.2.1".parse().expect("ip")));
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["proxy.local".into()]).is_err());
    }
}
