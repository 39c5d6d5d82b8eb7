//! Real receivers in the test process: an HTTP server taking webhooks (answering a
//! scripted status for each call) and an SMTP server taking mail, each on its own port.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One webhook call as received.
#[derive(Debug, Clone)]
pub struct Hook {
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The status it was answered with.
    pub answered: u16,
}

#[derive(Clone, Default)]
pub struct WebhookReceiver {
    pub url: String,
    calls: Arc<Mutex<Vec<Hook>>>,
    /// Statuses to answer with, in order; 200 once they run out.
    script: Arc<Mutex<VecDeque<u16>>>,
}

impl WebhookReceiver {
    pub async fn start(script: &[u16]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/instagen", listener.local_addr().unwrap());
        let me = Self {
            url,
            calls: Arc::default(),
            script: Arc::new(Mutex::new(script.iter().copied().collect())),
        };
        let state = me.clone();
        let app = axum::Router::new().route(
            "/hooks/instagen",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move {
                    let answered = state.script.lock().unwrap().pop_front().unwrap_or(200);
                    state.calls.lock().unwrap().push(Hook {
                        headers,
                        body,
                        answered,
                    });
                    StatusCode::from_u16(answered).unwrap()
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        me
    }

    pub fn calls(&self) -> Vec<Hook> {
        self.calls.lock().unwrap().clone()
    }
}

/// One message as the SMTP server took it.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

/// A small SMTP server (RFC 5321's EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) that
/// keeps every message it is given.
#[derive(Clone, Default)]
pub struct SmtpSink {
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpSink {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let me = Self {
            port: listener.local_addr().unwrap().port(),
            mails: Arc::default(),
        };
        let mails = me.mails.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let mails = mails.clone();
                tokio::spawn(async move {
                    let _ = session(socket, mails).await;
                });
            }
        });
        me
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

async fn session(
    socket: tokio::net::TcpStream,
    mails: Arc<Mutex<Vec<Mail>>>,
) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 sink.test ESMTP\r\n").await?;
    let (mut from, mut to) = (String::new(), Vec::new());
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let upper = line.to_ascii_uppercase();
        let reply: &[u8] = if upper.starts_with("EHLO") {
            b"250-sink.test\r\n250 8BITMIME\r\n"
        } else if upper.starts_with("HELO") || upper.starts_with("NOOP") {
            b"250 OK\r\n"
        } else if upper.starts_with("MAIL FROM:") {
            from = line[10..].trim().to_owned();
            to.clear();
            b"250 OK\r\n"
        } else if upper.starts_with("RCPT TO:") {
            to.push(line[8..].trim().trim_matches(['<', '>']).to_owned());
            b"250 OK\r\n"
        } else if upper.starts_with("RSET") {
            from.clear();
            to.clear();
            b"250 OK\r\n"
        } else if upper.starts_with("DATA") {
            write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
            let mut data = String::new();
            loop {
                line.clear();
                if lines.read_line(&mut line).await? == 0 {
                    return Ok(());
                }
                if line == ".\r\n" || line == ".\n" {
                    break;
                }
                data.push_str(line.strip_prefix('.').unwrap_or(&line));
            }
            mails.lock().unwrap().push(Mail {
                from: std::mem::take(&mut from),
                to: std::mem::take(&mut to),
                data,
            });
            b"250 OK queued\r\n"
        } else if upper.starts_with("QUIT") {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            b"502 command not implemented\r\n"
        };
        write.write_all(reply).await?;
    }
}
