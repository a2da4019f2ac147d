//! A gateway on a task of the current tokio runtime: started on a listener, stopped on
//! request (draining like SIGTERM) or aborted when dropped. For running the gateway inside
//! another program; the test suites of the workspace do.

use std::net::SocketAddr;

use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

use crate::{Settings, server::ServerError};

/// A running gateway, aborted if dropped without [`Background::shutdown`].
pub struct Background {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServerError>>>,
}

impl Background {
    /// Serves `settings` on `listener` until [`Background::shutdown`] or drop.
    pub fn spawn(listener: TcpListener, settings: Settings) -> std::io::Result<Background> {
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(crate::run(listener, settings, async move {
            let _ = stopped.await;
        }));
        Ok(Background {
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://` and the address.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sends the shutdown signal and waits until the server has drained.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}
