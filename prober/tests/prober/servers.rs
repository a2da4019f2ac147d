//! HTTP servers whose behaviour the tests know exactly: raw HTTP/1.1 over tokio, so every
//! delay and byte is the test's.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// What the server does with a request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Waits `delay` after the request, sends the head, then `chunks` chunks of `chunk`
    /// bytes, each after `pause`.
    Answer {
        status: u16,
        delay: Duration,
        chunks: usize,
        chunk: usize,
        pause: Duration,
    },
    /// Sends `body` as JSON at once.
    Json(&'static str),
    /// Closes the connection after reading the request, answering nothing.
    Drop,
    /// Reads the request and never answers.
    Silent,
}

impl Reply {
    /// `status` with a two-byte body, after `delay`.
    pub fn status_after(status: u16, delay: Duration) -> Reply {
        Reply::Answer {
            status,
            delay,
            chunks: 1,
            chunk: 2,
            pause: Duration::ZERO,
        }
    }
}

/// Serves plain HTTP on a free port; `route` picks the reply by path.
pub async fn http(route: impl Fn(&str) -> Reply + Send + Sync + 'static) -> SocketAddr {
    let route = Arc::new(route);
    accept_loop(move |stream| {
        let route = route.clone();
        async move { serve(stream, &*route).await }
    })
    .await
}

/// Accepts connections on a free port until the test ends, each handled on its own task.
async fn accept_loop<F, Fut>(handle: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(handle(stream));
        }
    });
    addr
}

/// Serves HTTPS with `cert` and `key` (PEM files) on a free port.
pub async fn https(
    cert: &std::path::Path,
    key: &std::path::Path,
    route: impl Fn(&str) -> Reply + Send + Sync + 'static,
) -> SocketAddr {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let certs = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let route = Arc::new(route);
    accept_loop(move |stream| {
        let (route, acceptor) = (route.clone(), acceptor.clone());
        async move {
            if let Ok(tls) = acceptor.accept(stream).await {
                serve(tls, &*route).await;
            }
        }
    })
    .await
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    route: &(dyn Fn(&str) -> Reply + Send + Sync),
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
    match route(&path) {
        Reply::Answer {
            status,
            delay,
            chunks,
            chunk,
            pause,
        } => {
            tokio::time::sleep(delay).await;
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                chunks * chunk
            );
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            let _ = stream.flush().await;
            for _ in 0..chunks {
                tokio::time::sleep(pause).await;
                if stream.write_all(&vec![b'x'; chunk]).await.is_err() {
                    return;
                }
                let _ = stream.flush().await;
            }
            let _ = stream.shutdown().await;
        }
        Reply::Json(body) => {
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(reply.as_bytes()).await;
            let _ = stream.shutdown().await;
        }
        Reply::Drop => {}
        Reply::Silent => std::future::pending().await,
    }
}
