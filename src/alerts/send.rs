//! Sending one notification: a webhook POST signed with HMAC-SHA-256 over a timestamp
//! and the body (`x-instagen-signature: t=<unix seconds>,v1=<hex>`), or an email over
//! SMTP through `lettre`. Neither follows redirects or carries anything but the payload's
//! metadata.

use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::Duration;

use axum::http::{HeaderValue, Method, Request, Uri};
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use sha2::Sha256;

use crate::config::{AlertsConfig, EmailConfig, SmtpSecurity};

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector<OutsideOnly>>, Full<Bytes>>;

/// Resolves webhook hosts to outside addresses only (unless private ones are allowed), so
/// the address that was checked is the one connected to: no DNS-rebinding way inside.
#[derive(Clone)]
struct OutsideOnly {
    allow_private: bool,
}

type Resolving = std::pin::Pin<
    Box<
        dyn Future<Output = Result<std::vec::IntoIter<std::net::SocketAddr>, std::io::Error>>
            + Send,
    >,
>;

impl tower_service::Service<hyper_util::client::legacy::connect::dns::Name> for OutsideOnly {
    type Response = std::vec::IntoIter<std::net::SocketAddr>;
    type Error = std::io::Error;
    type Future = Resolving;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: hyper_util::client::legacy::connect::dns::Name) -> Self::Future {
        let allow = self.allow_private;
        Box::pin(async move {
            let kept: Vec<_> = tokio::net::lookup_host((name.as_str(), 0))
                .await?
                .filter(|a| allow || !is_internal(a.ip()))
                .collect();
            if kept.is_empty() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "the webhook host resolves only to private or loopback addresses",
                ));
            }
            Ok(kept.into_iter())
        })
    }
}

/// Why an attempt failed: the receiver's status (if it answered) and a short reason.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct SendError {
    pub status: Option<i64>,
    pub reason: String,
}

impl SendError {
    fn new(status: Option<i64>, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
        }
    }
}

/// The signature header's value for `body` sent at `unix_s` under `secret`.
pub fn signature(secret: &str, unix_s: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&Default::default()));
    mac.update(unix_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={unix_s},v1={hex}")
}

/// Whether an address is inside (loopback, private, link-local, unique-local, …): a
/// webhook there could probe the operator's own network.
fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let embedded = |hi: u16, lo: u16| {
                is_internal(IpAddr::V4(std::net::Ipv4Addr::new(
                    (hi >> 8) as u8,
                    hi as u8,
                    (lo >> 8) as u8,
                    lo as u8,
                )))
            };
            if v6.is_loopback() || v6.is_unspecified() {
                return true;
            }
            match s {
                // IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d).
                [0, 0, 0, 0, 0, 0xffff | 0, hi, lo] => embedded(hi, lo),
                // NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an IPv4 address too.
                [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => embedded(hi, lo),
                [0x2002, hi, lo, ..] => embedded(hi, lo),
                _ => v6.is_multicast() || (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80,
            }
        }
    }
}

/// Posts webhooks; the TLS roots are loaded on the first one.
pub struct Webhooks {
    client: OnceLock<Option<HttpsClient>>,
    timeout: Duration,
    allow_private: bool,
}

impl Webhooks {
    pub fn new(config: &AlertsConfig) -> Self {
        Self {
            client: OnceLock::new(),
            timeout: Duration::from_millis(config.webhook_timeout_ms),
            allow_private: config.allow_private_webhooks,
        }
    }

    fn client(&self) -> Option<&HttpsClient> {
        self.client
            .get_or_init(|| {
                let provider = std::sync::Arc::new(
                    tokio_rustls::rustls::crypto::aws_lc_rs::default_provider(),
                );
                let builder = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_provider_and_platform_verifier(provider)
                    .ok()?;
                let mut tcp = HttpConnector::new_with_resolver(OutsideOnly {
                    allow_private: self.allow_private,
                });
                tcp.set_connect_timeout(Some(self.timeout));
                tcp.enforce_http(false);
                let connector = builder.https_or_http().enable_http1().wrap_connector(tcp);
                Some(
                    Client::builder(TokioExecutor::new())
                        .timer(TokioTimer::new())
                        .pool_timer(TokioTimer::new())
                        .build(connector),
                )
            })
            .as_ref()
    }

    /// Posts `body` to `url`, signed; Ok when the receiver answered 2xx.
    pub async fn post(
        &self,
        url: &str,
        secret: &str,
        event: &str,
        delivery_id: &str,
        body: &str,
    ) -> Result<i64, SendError> {
        let uri: Uri = url
            .parse()
            .map_err(|_| SendError::new(None, "the webhook URL does not parse"))?;
        let host = uri
            .host()
            .ok_or_else(|| SendError::new(None, "the webhook URL has no host"))?;
        let https = uri.scheme_str() == Some("https");
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<_> = tokio::net::lookup_host((host, port))
            .await
            .map_err(|_| SendError::new(None, "the webhook host does not resolve"))?
            .collect();
        if !self.allow_private && addrs.iter().any(|a| is_internal(a.ip())) {
            return Err(SendError::new(
                None,
                "the webhook host is a private or loopback address",
            ));
        }
        let client = self
            .client()
            .ok_or_else(|| SendError::new(None, "TLS is unavailable"))?;
        let sig = signature(secret, crate::time::now_ms() / 1000, body.as_bytes());
        let header = |v: &str| {
            HeaderValue::from_str(v).map_err(|_| SendError::new(None, "a header does not encode"))
        };
        let mut request = Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header("content-type", "application/json")
            .header("user-agent", "InstaGen-Webhooks/1")
            .body(Full::new(Bytes::copy_from_slice(body.as_bytes())))
            .map_err(|_| SendError::new(None, "the webhook request does not build"))?;
        let h = request.headers_mut();
        h.insert("x-instagen-signature", header(&sig)?);
        h.insert("x-instagen-event", header(event)?);
        h.insert("x-instagen-delivery", header(delivery_id)?);
        let response = tokio::time::timeout(self.timeout, client.request(request))
            .await
            .map_err(|_| SendError::new(None, "the receiver did not answer in time"))?
            .map_err(|_| SendError::new(None, "the receiver could not be reached"))?;
        let status = i64::from(response.status().as_u16());
        // Read (and drop) what it answered, bounded by the same time, so the connection is reused.
        let _ = tokio::time::timeout(self.timeout, response.into_body().collect()).await;
        match (200..300).contains(&status) {
            true => Ok(status),
            false => Err(SendError::new(
                Some(status),
                format!("the receiver answered {status}"),
            )),
        }
    }
}

/// Sends email through the configured SMTP server.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: lettre::message::Mailbox,
}

impl Mailer {
    /// The mailer of `[email]`; `None` when no SMTP server is configured.
    pub fn new(config: &EmailConfig) -> anyhow::Result<Option<Self>> {
        let Some(host) = &config.smtp_host else {
            return Ok(None);
        };
        let builder = match config.security {
            SmtpSecurity::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host)?,
            SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(host)?,
            SmtpSecurity::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
        };
        let port = config.smtp_port.unwrap_or(match config.security {
            SmtpSecurity::Tls => 465,
            SmtpSecurity::Starttls => 587,
            SmtpSecurity::None => 25,
        });
        let mut builder = builder
            .port(port)
            .timeout(Some(Duration::from_millis(config.timeout_ms)));
        if let Some(user) = &config.username {
            let password = match &config.password_file {
                Some(path) => std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("cannot read email.password_file: {e}"))?
                    .trim()
                    .to_owned(),
                None => String::new(),
            };
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        let from = config
            .from
            .parse()
            .map_err(|e| anyhow::anyhow!("email.from is not an address: {e}"))?;
        Ok(Some(Self {
            transport: builder.build(),
            from,
        }))
    }

    pub async fn send(&self, to: &str, subject: &str, text: String) -> Result<(), SendError> {
        let to = to
            .parse()
            .map_err(|_| SendError::new(None, "the recipient is not an address"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(text)
            .map_err(|_| SendError::new(None, "the message does not build"))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) => Err(SendError::new(
                e.status().map(|c| i64::from(u16::from(c))),
                "the SMTP server did not take the message",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_the_timestamp_and_body() {
        // As Python computes it: hmac.new(b"whsec_x", b"1700000000.{}", sha256).hexdigest()
        let sig = signature("whsec_x", 1_700_000_000, b"{}");
        assert_eq!(
            sig,
            "t=1700000000,v1=be8cb8325f2202445260a855532f967e30ad2a9394ce28da66ee02880ddcb661"
        );
        assert_ne!(sig, signature("whsec_y", 1_700_000_000, b"{}"));
        assert_ne!(sig, signature("whsec_x", 1_700_000_001, b"{}"));
    }

    #[test]
    fn inside_addresses_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:c0a8:1::",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["1.1.1.1", "2606:4700::1111"] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }
}
