//! Serving connections: what `axum::serve` does, plus the timeouts it has no settings for.
//! Plain HTTP/1.1 requests without a body are answered by `http::lean` without hyper's
//! per-connection buffers; hyper serves everything else.
//!
//! A connection that stalls holds a file descriptor and its buffers for as long as the peer
//! keeps it open (3,000 stalled connections held 3,000 descriptors). So:
//! - its request headers must arrive within `limits.header_timeout_secs`, which hyper also
//!   applies to the wait for the next request on a kept-alive connection, so that an idle one
//!   is closed after the same time (a request being answered, such as a long-polling `/sync`,
//!   is not waiting for headers and is not cut);
//! - a request body may pause at most `limits.body_timeout_secs` between two pieces (see
//!   [`crate::http::ruma::read_body`]): a slow upload goes on, a stalled one is refused.

use crate::http::lean;
use axum::Router;
use axum::extract::ConnectInfo;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// Serves `app` on `listener` until `shutdown` resolves, then lets the requests in flight
/// finish (each connection is shut down gracefully: an idle one at once).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with_tls(listener, None, app, header_timeout, shutdown).await
}

/// [`serve`], speaking TLS on every connection when `tls` is given (the federation listener).
/// The handshake must complete within the header timeout, as a request's headers must.
pub async fn serve_with_tls(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    header_timeout: Duration,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout);
    builder.http2().timer(TokioTimer::new());
    // Connections hold a receiver each: when all are dropped, every connection has ended.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let (stream, address) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // A response may leave in more than one write (headers, then a body); with Nagle's
        // algorithm the second waits for the client's delayed ACK, up to 40 ms on loopback.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, %address, "cannot set TCP_NODELAY");
        }
        let app = app.clone();
        let builder = builder.clone();
        let mut stop = stop_rx.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let service = move |app: Router| {
                app.map_request(move |mut request: Request<Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(address));
                    request.map(axum::body::Body::new)
                })
            };
            // hyper's parts are boxed: a connection on the lean path does not carry their room.
            let Some(tls) = tls else {
                if let Some(stream) = lean::serve(stream, &app, address, &mut stop, header_timeout).await {
                    Box::pin(serve_connection(builder, stream, service(app), address, stop)).await;
                }
                return;
            };
            Box::pin(async move {
                match tokio::time::timeout(header_timeout, tls.accept(stream)).await {
                    Ok(Ok(stream)) => serve_connection(builder, stream, service(app), address, stop).await,
                    Ok(Err(error)) => tracing::debug!(%error, %address, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%address, "TLS handshake timed out"),
                }
            })
            .await;
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(stop_rx);
    stop_tx.closed().await;
    Ok(())
}

/// Serves one connection until it ends, shutting it down gracefully when `stop` changes.
async fn serve_connection<I, S>(
    builder: Builder<TokioExecutor>,
    stream: I,
    service: S,
    address: SocketAddr,
    mut stop: watch::Receiver<bool>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<Request<Incoming>, Response = axum::response::Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service));
    let mut connection = pin!(connection);
    let mut stopping = false;
    loop {
        tokio::select! {
            served = connection.as_mut() => {
                if let Err(error) = served {
                    tracing::debug!(%error, %address, "connection ended with an error");
                }
                break;
            }
            changed = stop.changed(), if !stopping => {
                stopping = true;
                if changed.is_ok() {
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
    drop(stop);
}

/// After a failed accept: errors of one connection are that connection's; others (too many
/// open files, say) pause accepting for a second, as hyper 0.14's server did, rather than spin.
async fn accept_failed(error: std::io::Error) {
    use std::io::ErrorKind;
    if matches!(error.kind(), ErrorKind::ConnectionRefused | ErrorKind::ConnectionAborted | ErrorKind::ConnectionReset)
    {
        return;
    }
    tracing::error!(%error, "accepting a connection failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
