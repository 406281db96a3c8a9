//! An HTTP CONNECT proxy for the WebSocket transports (as the C SDK's `OPTION_HTTP_PROXY`):
//! `http://[user:password@]host[:port]`. The client asks the proxy for a tunnel to the hub's
//! HTTPS port and runs TLS and the WebSocket through it.

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, ErrorKind, Result};

/// The most a proxy's response head may take.
const MAX_RESPONSE_HEAD: usize = 8 * 1024;

/// A parsed proxy URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    pub host: String,
    pub port: u16,
    /// `user:password`, percent-decoded, sent as `Proxy-Authorization: Basic`.
    pub credentials: Option<String>,
}

impl ProxyUrl {
    /// Parses `http://[user[:password]@]host[:port][/]`; the port defaults to 80. Anything else is
    /// a CONFIGURATION error naming what is wrong.
    pub fn parse(url: &str) -> Result<ProxyUrl> {
        let bad = |why: &str| Error::config(format!("proxy URL '{}': {why}", redact(url)));
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("expected http://host:port"))?;
        if !scheme.eq_ignore_ascii_case("http") {
            return Err(bad("only http:// proxies (HTTP CONNECT) are supported"));
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err(bad("a proxy URL has no path, query or fragment"));
        }
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let credentials = userinfo
            .map(|u| {
                percent_encoding::percent_decode_str(u)
                    .decode_utf8()
                    .map(|s| s.into_owned())
                    .map_err(|_| bad("user information is not UTF-8"))
            })
            .transpose()?;
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '[' in the host"))?;
            if !after.is_empty() && !after.starts_with(':') {
                return Err(bad("unexpected text after the host"));
            }
            (host, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        let bracketed = hostport.starts_with('[');
        if host.is_empty()
            || host.contains(|c: char| c.is_whitespace() || c.is_control() || c == '@' || (c == ':' && !bracketed))
        {
            return Err(bad("missing or malformed host"));
        }
        let port = match port {
            None => 80,
            Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| bad("the port must be 1-65535"))?,
        };
        Ok(ProxyUrl { host: host.to_string(), port, credentials })
    }

    /// Opens a tunnel through the proxy to `host:port` (TCP_NODELAY on). The caller bounds it in time.
    pub(crate) async fn tunnel(&self, host: &str, port: u16) -> Result<TcpStream> {
        let mut tcp = TcpStream::connect((self.host.as_str(), self.port)).await.map_err(|e| {
            Error::with_source(
                ErrorKind::ConnectionRefused,
                format!("cannot reach proxy {}:{}", self.host, self.port),
                e,
            )
        })?;
        tcp.set_nodelay(true).map_err(|e| Error::with_source(ErrorKind::Io, "setting TCP_NODELAY", e))?;
        let target = if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
        let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
        if let Some(c) = &self.credentials {
            let basic = base64::engine::general_purpose::STANDARD.encode(c);
            request.push_str(&format!("Proxy-Authorization: Basic {basic}\r\n"));
        }
        request.push_str("\r\n");
        let lost = |e: std::io::Error| Error::with_source(ErrorKind::ConnectionRefused, "proxy connection failed", e);
        tcp.write_all(request.as_bytes()).await.map_err(lost)?;
        // Read the response head only: nothing may follow it before our TLS ClientHello.
        let mut head = Vec::with_capacity(256);
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() >= MAX_RESPONSE_HEAD {
                return Err(Error::new(ErrorKind::Protocol, "the proxy's response head is too long"));
            }
            let mut byte = [0u8; 1];
            if tcp.read(&mut byte).await.map_err(lost)? == 0 {
                return Err(Error::new(ErrorKind::ConnectionRefused, "the proxy closed the connection"));
            }
            head.push(byte[0]);
        }
        let status_line = String::from_utf8_lossy(head.split(|b| *b == b'\r').next().unwrap_or_default()).into_owned();
        let status = status_line
            .strip_prefix("HTTP/1.")
            .and_then(|s| s.get(2..5))
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| Error::new(ErrorKind::Protocol, format!("the proxy answered '{status_line}'")))?;
        match status {
            200..=299 => Ok(tcp),
            407 => Err(Error::new(
                ErrorKind::Unauthorized,
                format!("the proxy requires (other) credentials: '{status_line}'"),
            )),
            _ => Err(Error::new(
                ErrorKind::ConnectionRefused,
                format!("the proxy refused the tunnel to {target}: '{status_line}'"),
            )),
        }
    }
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}***{}", &url[..s + 3], &url[at..]),
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_proxy_urls() {
        let p = ProxyUrl::parse("http://proxy.local:3128").unwrap();
        assert_eq!((p.host.as_str(), p.port, p.credentials), ("proxy.local", 3128, None));
        let p = ProxyUrl::parse("HTTP://u%40x:p%3Aw@10.0.0.1/").unwrap();
        assert_eq!((p.host.as_str(), p.port, p.credentials.as_deref()), ("10.0.0.1", 80, Some("u@x:p:w")));
        let p = ProxyUrl::parse("http://[::1]:8080").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("::1", 8080));
        for bad in [
            "proxy:3128",
            "https://proxy:3128",
            "socks5://proxy:1080",
            "http://",
            "http://:3128",
            "http://proxy:0",
            "http://proxy:99999",
            "http://proxy:port",
            "http://proxy:3128/path",
            "http://proxy:3128?x=1",
            "http://[::1:3128",
            "http://pro xy:3128",
            "http://::1",
            "http://[::1]x",
        ] {
            let e = ProxyUrl::parse(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Configuration, "{bad}");
            assert!(e.message().starts_with("proxy URL"), "{bad}: {e}");
        }
        let e = ProxyUrl::parse("ftp://user:secret@proxy").unwrap_err();
        assert!(!e.message().contains("secret"), "{e}");
    }
}
