//! The optional health and metrics listener (shell): `[http] listen = "127.0.0.1:9187"`.
//!
//! - `GET /healthz`: 200 `ok`, or 503 with the reasons, one a line: the store cannot be reached (asked at
//!   each request, within 5 seconds), a board's mailbox has been reconnecting, or the mail server failing,
//!   for `unhealthy_after_seconds` or longer (`monitor::judge`).
//! - `GET /metrics`: the Prometheus text format (`monitor::Monitor`), with the outbox and timer figures read
//!   from the store at each scrape.
//!
//! A deliberately small HTTP/1.1 server: GET and HEAD only, one request per connection, its request line
//! read within 5 seconds and 8 KiB, at most 32 connections answered at once, so that a slow or hostile
//! client costs little. Anything else gets 404 or 405.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::app::Clock;
use crate::config::HttpSettings;
use crate::monitor::{judge, monitor};
use crate::store::Store;

const MAX_REQUEST: usize = 8 * 1024;
const MAX_CONNECTIONS: usize = 32;
const WAIT: Duration = Duration::from_secs(5);

/// Bind the listener (so that a port in use is an error at start, not later).
pub async fn bind(settings: &HttpSettings) -> anyhow::Result<TcpListener> {
    TcpListener::bind(&settings.listen)
        .await
        .map_err(|e| anyhow::anyhow!("[http] listen {}: {e}", settings.listen))
}

/// Serve `/healthz` and `/metrics` on `listener` until `stop`.
pub async fn serve<S: Store + Clone + Send + Sync + 'static>(
    listener: TcpListener,
    settings: HttpSettings,
    store: S,
    clock: Clock,
    mut stop: watch::Receiver<bool>,
) {
    tracing::info!(listen = %settings.listen, "health and metrics at /healthz and /metrics");
    // At most MAX_CONNECTIONS answered at once: more wait in the kernel's queue, so that a flood of clients
    // costs a bounded number of file descriptors and store queries.
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s,
            _ = stop.changed() => return,
        };
        let Ok(slot) = slot else { return };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => return,
        };
        let Ok((conn, _)) = accepted else {
            // Out of file descriptors or the like: pause rather than spin.
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let (store, settings) = (store.clone(), settings.clone());
        tokio::spawn(async move {
            let _ = tokio::time::timeout(WAIT * 2, answer(conn, &settings, &store, clock)).await;
            drop(slot);
        });
    }
}

/// The request line's method and path, once the head has arrived.
fn request_line(head: &[u8]) -> Option<(String, String)> {
    let text = String::from_utf8_lossy(head);
    let line = text.lines().next()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?;
    let path = target.split('?').next().unwrap_or(target).to_string();
    Some((method, path))
}

async fn answer<S: Store>(
    mut conn: TcpStream,
    settings: &HttpSettings,
    store: &S,
    clock: Clock,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(WAIT, async {
        // The whole head is read (closing with unread bytes would reset the connection and lose the
        // answer), each read searched for the blank line from a little before where the last one ended.
        let mut searched: usize = 0;
        loop {
            let n = conn.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]); // byte-slice: a byte buffer, n <= its length
            let from = searched.saturating_sub(3);
            let tail = head.get(from..).unwrap_or_default();
            if tail.windows(4).any(|w| w == b"\r\n\r\n") || tail.windows(2).any(|w| w == b"\n\n") {
                break;
            }
            searched = head.len();
            if head.len() > MAX_REQUEST {
                break;
            }
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if read.is_err() {
        return respond(&mut conn, 408, "text/plain", "request timeout\n", false).await;
    }
    let Some((method, path)) = request_line(&head) else {
        return respond(&mut conn, 400, "text/plain", "bad request\n", false).await;
    };
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return respond(&mut conn, 405, "text/plain", "only GET\n", false).await;
    }
    match path.as_str() {
        "/healthz" => {
            let now = clock.now();
            let reachable = match tokio::time::timeout(WAIT, store.pending_figures(now)).await {
                Ok(Ok(f)) => Ok(f.oldest_due_at.and_then(|t| (now - t).to_std().ok())),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {} s", WAIT.as_secs())),
            };
            let m = monitor();
            let verdict = judge(
                reachable,
                &m.sources(),
                m.sender_down_for(),
                Duration::from_secs(settings.unhealthy_after_seconds),
            );
            match verdict {
                Ok(()) => respond(&mut conn, 200, "text/plain", "ok\n", head_only).await,
                Err(problems) => {
                    let body = format!("unhealthy\n{}\n", problems.join("\n"));
                    respond(&mut conn, 503, "text/plain", &body, head_only).await
                }
            }
        }
        "/metrics" => {
            let now = clock.now();
            if let Ok(Ok(f)) = tokio::time::timeout(WAIT, store.pending_figures(now)).await {
                let age = f
                    .oldest_queued_at
                    .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1e3)
                    .unwrap_or(0.0);
                monitor().store_figures(f.queued, age, f.timers_due);
            }
            let body = monitor().render();
            respond(
                &mut conn,
                200,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                &body,
                head_only,
            )
            .await
        }
        _ => {
            respond(
                &mut conn,
                404,
                "text/plain",
                "not found: try /healthz or /metrics\n",
                head_only,
            )
            .await
        }
    }
}

async fn respond(
    conn: &mut TcpStream,
    status: u16,
    content_type: &str,
    body: &str,
    head_only: bool,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await?;
    if !head_only {
        conn.write_all(body.as_bytes()).await?;
    }
    conn.shutdown().await
}

/// `escalation-bot health`: GET `/healthz` from the configured listener; the status and the body.
pub async fn probe(listen: &str) -> anyhow::Result<(u16, String)> {
    let addr: std::net::SocketAddr = listen
        .parse()
        .map_err(|_| anyhow::anyhow!("[http] listen {listen:?} is not an address and port"))?;
    // A listener on every address is asked on this machine's own.
    let addr = if addr.ip().is_unspecified() {
        std::net::SocketAddr::new(
            if addr.is_ipv4() {
                std::net::Ipv4Addr::LOCALHOST.into()
            } else {
                std::net::Ipv6Addr::LOCALHOST.into()
            },
            addr.port(),
        )
    } else {
        addr
    };
    let mut conn = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .map_err(|_| anyhow::anyhow!("{addr}: no answer within {} s", WAIT.as_secs()))??;
    conn.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes())
        .await?;
    let mut out = Vec::new();
    tokio::time::timeout(WAIT * 2, conn.read_to_end(&mut out))
        .await
        .map_err(|_| anyhow::anyhow!("{addr}: no answer within {} s", (WAIT * 2).as_secs()))??;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("{addr} did not answer HTTP"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_line_is_read_without_its_query() {
        assert_eq!(
            request_line(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Some(("GET".into(), "/metrics".into()))
        );
        assert_eq!(request_line(b""), None);
        assert_eq!(request_line(b"\xff\xfe"), None);
    }
}
