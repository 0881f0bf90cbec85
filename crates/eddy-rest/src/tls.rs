//! HTTPS for the REST server (`security.ssl.rest.enabled`): a [`axum::serve::Listener`] whose
//! connections are TLS streams. Handshakes run in tasks of their own, bounded in time, so a
//! client that connects and sends nothing (or plain HTTP) never holds up other connections; a
//! failed handshake is logged at debug level and the connection dropped.

use eddy_core::tls::{ServerConfig, HANDSHAKE_TIMEOUT};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// Handshaken connections waiting for axum to take them.
const READY_QUEUE: usize = 64;

pub(crate) struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    address: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `listener` (inside a tokio runtime); stops when the returned
    /// listener is dropped.
    pub(crate) fn start(
        listener: TcpListener,
        config: Arc<ServerConfig>,
        address: SocketAddr,
    ) -> TlsListener {
        let (tx, ready) = mpsc::channel(READY_QUEUE);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = tokio::select! {
                    r = listener.accept() => match r {
                        Ok(c) => c,
                        Err(e) => {
                            // Out of file descriptors and the like: wait instead of spinning.
                            tracing::warn!("REST server on {address}: accept failed: {e}");
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                    _ = tx.closed() => return,
                };
                let _ = tcp.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!("REST server on {address}: TLS handshake with {peer} failed: {e}")
                        }
                        Err(_) => tracing::debug!(
                            "REST server on {address}: no TLS handshake from {peer} within {HANDSHAKE_TIMEOUT:?}"
                        ),
                    }
                });
            }
        });
        TlsListener { ready, address }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept task ended (it only does when this listener is dropped): wait forever,
            // the server's shutdown ends us.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.address)
    }
}
