//! Connections to a plain-HTTP upstream: kept open and reused between requests, one to
//! each exchange in flight, and replaced without a failed request when the upstream
//! closed one while it sat idle.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::helpers::*;

const ANSWER: &str = r#"{"id":"c1","object":"chat.completion","created":1,"model":"mock-model","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;

const STREAM: [&str; 2] = [
    r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"mock-model","choices":[{"index":0,"delta":{"content":"hi"},"finish_reason":null}]}"#,
    r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"mock-model","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#,
];

/// A raw HTTP/1.1 upstream that answers every request with `ANSWER`, counts the
/// connections it accepted (a streamed request gets `STREAM`, chunked) and, when `close_after` is set, closes each connection that
/// long after its first answer (without saying so in a header, as an idle timeout does).
struct RawUpstream {
    base_url: String,
    accepted: Arc<AtomicUsize>,
}

impl RawUpstream {
    async fn start(close_after: Option<Duration>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(socket, close_after));
            }
        });
        Self {
            base_url: format!("http://{addr}/v1"),
            accepted,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

async fn serve(mut socket: TcpStream, close_after: Option<Duration>) {
    let mut buf = Vec::new();
    loop {
        // One request: its head, then as many body bytes as Content-Length says.
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if !read_more(&mut socket, &mut buf).await {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        while buf.len() < head_end + length {
            if !read_more(&mut socket, &mut buf).await {
                return;
            }
        }
        let stream =
            String::from_utf8_lossy(&buf[head_end..head_end + length]).contains(r#""stream":true"#);
        buf.drain(..head_end + length);
        let written = match stream {
            // Chunked, as engines stream: the events, then `[DONE]` with the closing chunk.
            true => {
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n";
                let events = STREAM
                    .iter()
                    .map(|e| format!("data: {e}\n\n"))
                    .collect::<String>();
                let done = "data: [DONE]\n\n";
                let first = format!("{head}{:x}\r\n{events}\r\n", events.len());
                let last = format!("{:x}\r\n{done}\r\n0\r\n\r\n", done.len());
                match socket.write_all(first.as_bytes()).await {
                    Ok(()) => socket.write_all(last.as_bytes()).await,
                    Err(e) => Err(e),
                }
            }
            false => {
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{ANSWER}",
                    ANSWER.len()
                );
                socket.write_all(response.as_bytes()).await
            }
        };
        if written.is_err() {
            return;
        }
        if let Some(after) = close_after {
            tokio::time::sleep(after).await;
            return;
        }
    }
}

/// Appends what the socket has to `buf`; false once the peer has closed it.
async fn read_more(socket: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    match socket.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

async fn app_on(upstream: &RawUpstream) -> TestApp {
    let url = upstream.base_url.clone();
    TestApp::spawn_with(|c| set_base_url(&mut c.providers[0], url)).await
}

#[tokio::test]
async fn requests_one_after_another_share_one_upstream_connection() {
    let upstream = RawUpstream::start(None).await;
    let app = app_on(&upstream).await;
    for _ in 0..5 {
        let resp = app.chat(&chat_body("hello")).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(
            resp.json::<serde_json::Value>().await.unwrap()["usage"]["total_tokens"],
            4
        );
    }
    assert_eq!(
        upstream.accepted(),
        1,
        "each request after the first reused the connection"
    );
    assert_eq!(app.records(5).await.len(), 5);
}

#[tokio::test]
async fn streams_one_after_another_share_one_upstream_connection() {
    let upstream = RawUpstream::start(None).await;
    let app = app_on(&upstream).await;
    for _ in 0..4 {
        let mut body = chat_body("hello");
        body["stream"] = serde_json::json!(true);
        let resp = app.chat(&body).await;
        assert_eq!(resp.status(), 200);
        let events = sse_events(resp).await;
        assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    }
    assert_eq!(
        upstream.accepted(),
        1,
        "each stream after the first reused the connection"
    );
    assert_eq!(app.records(4).await.len(), 4);
}

#[tokio::test]
async fn a_connection_the_upstream_closed_while_idle_costs_no_request() {
    let upstream = RawUpstream::start(Some(Duration::from_millis(20))).await;
    let app = app_on(&upstream).await;
    for _ in 0..4 {
        let resp = app.chat(&chat_body("hello")).await;
        assert_eq!(resp.status(), 200);
        // The upstream closes the connection while it is idle in our pool.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        upstream.accepted(),
        4,
        "a closed connection was replaced, not reused"
    );
    assert_eq!(app.records(4).await.len(), 4);
}

#[tokio::test]
async fn concurrent_requests_each_get_a_connection_and_give_it_back() {
    let upstream = RawUpstream::start(None).await;
    let app = Arc::new(app_on(&upstream).await);
    for _ in 0..3 {
        let rounds: Vec<_> = (0..8)
            .map(|_| {
                let app = app.clone();
                tokio::spawn(async move { app.chat(&chat_body("hello")).await.status() })
            })
            .collect();
        for round in rounds {
            assert_eq!(round.await.unwrap(), 200);
        }
    }
    // Eight at once need at most eight connections; the later rounds reuse them.
    assert!(
        (1..=8).contains(&upstream.accepted()),
        "{} connections",
        upstream.accepted()
    );
    assert_eq!(app.records(24).await.len(), 24);
}

#[tokio::test]
async fn a_streams_first_token_leaves_before_the_rest_of_its_burst() {
    use futures_util::StreamExt;
    // The upstream sends its content event and its closing event in one write.
    let upstream = RawUpstream::start(None).await;
    let app = app_on(&upstream).await;
    let mut body = chat_body("hello");
    body["stream"] = serde_json::json!(true);
    let resp = app.chat(&body).await;
    assert_eq!(resp.status(), 200);
    let mut pieces = resp.bytes_stream();
    let first = pieces.next().await.unwrap().unwrap();
    let first = String::from_utf8_lossy(&first).into_owned();
    assert!(first.contains(r#""content":"hi""#), "{first}");
    assert!(
        !first.contains(r#""finish_reason":"stop""#),
        "the first token waited for the rest of its burst: {first}"
    );
    let mut rest = String::new();
    while let Some(piece) = pieces.next().await {
        rest.push_str(&String::from_utf8_lossy(&piece.unwrap()));
    }
    assert!(rest.contains(r#""finish_reason":"stop""#), "{rest}");
    assert!(rest.trim_end().ends_with("data: [DONE]"), "{rest}");
    assert_eq!(app.records(1).await.len(), 1);
}
