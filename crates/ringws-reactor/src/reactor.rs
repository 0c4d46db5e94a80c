//! Starting workers and the handle that controls them.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::config::{Config, CorePinning, ListenConfig};
use crate::error::{StartError, WorkerError};
use crate::handler::{Handler, WorkerId};
use crate::inbox::{InboxSender, InboxShared};
use crate::published::PublishedStats;
use crate::worker::{worker_main, WorkerInfo, WorkerSetup};

/// Entry point: starts the workers.
#[derive(Debug)]
pub struct Reactor;

impl Reactor {
    /// Binds the listeners (if configured), spawns `config.workers` worker
    /// threads, and waits until every worker has its ring, buffer ring and
    /// accept armed. `factory` runs once on each worker thread to create that
    /// worker's handler.
    ///
    /// Fails with a typed [`StartError`] (never a panic) when the
    /// configuration is invalid, a listener cannot be bound, or io_uring is
    /// unusable; in that case every worker already started is stopped.
    pub fn start<H, F>(config: Config, factory: F) -> Result<ReactorHandle<H::Command>, StartError>
    where
        H: Handler,
        F: Fn(WorkerId) -> H + Send + Sync + 'static,
    {
        config.validate()?;
        let workers = config.workers;
        let reactor = next_reactor_tag();
        let mut listeners: Vec<Option<Socket>> = match config.listen_config() {
            Some(listen) => bind_listeners(&listen, config.socket_send_buffer, workers)?
                .into_iter()
                .map(Some)
                .collect(),
            None => (0..workers).map(|_| None).collect(),
        };
        let local_addr = listeners
            .first()
            .and_then(|socket| socket.as_ref())
            .and_then(|socket| socket.local_addr().ok())
            .and_then(|addr| addr.as_socket());
        let inboxes = (0..workers)
            .map(|index| InboxShared::new(WorkerId::of_reactor(reactor, index)))
            .collect::<io::Result<Vec<_>>>()
            .map_err(StartError::Eventfd)?;
        let senders: Arc<[InboxSender<H::Command>]> = inboxes
            .iter()
            .map(|inbox| InboxSender::new(inbox.clone()))
            .collect();
        let cores = pinning_plan(&config.pinning, workers);
        let published: Vec<Arc<PublishedStats>> = (0..workers)
            .map(|_| Arc::new(PublishedStats::new()))
            .collect();
        let config = Arc::new(config);
        let factory = Arc::new(factory);
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut threads = Vec::with_capacity(workers);
        let mut failure = None;
        for (index, inbox) in inboxes.into_iter().enumerate() {
            let setup = WorkerSetup {
                id: WorkerId::of_reactor(reactor, index),
                inbox,
                peers: senders.clone(),
                listener: listeners[index].take(),
                core_id: cores[index],
                published: published[index].clone(),
            };
            let config = config.clone();
            let factory = factory.clone();
            let ready = ready_tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("{}-{index}", config.thread_name))
                .spawn(move || worker_main::<H, F>(setup, &config, &*factory, ready));
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(error) => {
                    failure = Some(StartError::Spawn(error));
                    break;
                }
            }
        }
        drop(ready_tx);

        let mut infos: Vec<Option<WorkerInfo>> = vec![None; workers];
        for _ in 0..threads.len() {
            match ready_rx.recv() {
                Ok(Ok(info)) => {
                    let index = info.id.index();
                    infos[index] = Some(info);
                }
                Ok(Err(error)) => {
                    failure.get_or_insert(error);
                }
                // A worker died before reporting (its factory panicked).
                Err(mpsc::RecvError) => break,
            }
        }
        if failure.is_none() {
            if let Some(missing) = infos.iter().position(Option::is_none) {
                failure = Some(StartError::WorkerPanicked(WorkerId::of_reactor(
                    reactor, missing,
                )));
            }
        }
        if let Some(error) = failure {
            for sender in senders.iter() {
                sender.stop();
            }
            for thread in threads {
                let _ = thread.join();
            }
            return Err(error);
        }
        Ok(ReactorHandle {
            senders,
            threads,
            workers: infos.into_iter().flatten().collect(),
            published,
            local_addr,
        })
    }
}

/// Controls running workers: their inboxes, stop and join.
pub struct ReactorHandle<C> {
    senders: Arc<[InboxSender<C>]>,
    threads: Vec<JoinHandle<Result<(), WorkerError>>>,
    workers: Vec<WorkerInfo>,
    published: Vec<Arc<PublishedStats>>,
    local_addr: Option<SocketAddr>,
}

impl<C> std::fmt::Debug for ReactorHandle<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReactorHandle")
            .field("workers", &self.workers)
            .field("local_addr", &self.local_addr)
            .finish()
    }
}

impl<C: Send> ReactorHandle<C> {
    /// The listeners' address (all workers share it), with the port
    /// resolved when 0 was configured.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// What each worker reported at startup (ring mode, pinning, address).
    pub fn workers(&self) -> &[WorkerInfo] {
        &self.workers
    }

    /// Every worker's stats as it last published them (at most about a
    /// millisecond old while it is busy, current while it is idle, final
    /// after it stopped), indexed by [`WorkerId::index`]. The `Arc`s outlive
    /// the workers and may be kept by other threads.
    pub fn published_stats(&self) -> &[Arc<PublishedStats>] {
        &self.published
    }

    /// The inbox of every worker, indexed by [`WorkerId::index`].
    pub fn senders(&self) -> &[InboxSender<C>] {
        &self.senders
    }

    /// The inbox of one worker (`None` for a worker of another reactor).
    pub fn sender(&self, worker: WorkerId) -> Option<&InboxSender<C>> {
        self.senders
            .get(worker.index())
            .filter(|sender| sender.worker() == worker)
    }

    /// Asks every worker to stop (see [`Io::stop`](crate::Io::stop)).
    pub fn stop(&self) {
        for sender in self.senders.iter() {
            sender.stop();
        }
    }

    /// Waits for every worker thread to end. Returns the first worker's
    /// error, if any (all threads are joined either way).
    pub fn join(self) -> Result<(), WorkerError> {
        let mut first_error = None;
        for (sender, thread) in self.senders.iter().zip(self.threads) {
            let outcome = match thread.join() {
                Ok(outcome) => outcome,
                Err(_) => Err(WorkerError::Panicked(sender.worker())),
            };
            if let Err(error) = outcome {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// A tag for a newly started reactor, carried in its [`WorkerId`]s so that
/// ids of one reactor never name a connection of another. Wraps after
/// 65,536 reactors.
fn next_reactor_tag() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Which core each worker is pinned to.
fn pinning_plan(pinning: &CorePinning, workers: usize) -> Vec<Option<core_affinity::CoreId>> {
    match pinning {
        CorePinning::Off => vec![None; workers],
        CorePinning::Cores(cores) => (0..workers)
            .map(|index| {
                Some(core_affinity::CoreId {
                    id: cores[index % cores.len()],
                })
            })
            .collect(),
        CorePinning::Auto => match core_affinity::get_core_ids() {
            Some(ids) if ids.len() >= workers => ids.into_iter().take(workers).map(Some).collect(),
            _ => vec![None; workers],
        },
    }
}

/// Binds one `SO_REUSEPORT` listener per worker on the same address. With
/// port 0, the first listener picks the port and the others bind it.
///
/// The per-connection socket options (`TCP_NODELAY`, and `SO_SNDBUF` when
/// configured) are set here once: Linux copies them into every socket the
/// listener accepts, which saves a `setsockopt` per connection.
fn bind_listeners(
    listen: &ListenConfig,
    send_buffer: Option<usize>,
    count: usize,
) -> Result<Vec<Socket>, StartError> {
    let mut addr = listen.addr;
    if addr.port() != 0 {
        refuse_a_port_in_use(addr).map_err(|source| StartError::Listen { addr, source })?;
    }
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count {
        let socket = bind_listener(addr, listen.backlog, send_buffer)
            .map_err(|source| StartError::Listen { addr, source })?;
        if addr.port() == 0 {
            let bound = socket
                .local_addr()
                .ok()
                .and_then(|bound| bound.as_socket())
                .ok_or_else(|| StartError::Listen {
                    addr,
                    source: io::Error::other("bound address unknown"),
                })?;
            addr.set_port(bound.port());
        }
        sockets.push(socket);
    }
    Ok(sockets)
}

/// The workers' listeners share their port through `SO_REUSEPORT`, which
/// would also let them join another process's listeners on it and split
/// its connections silently. A probe bound without that option fails with
/// `EADDRINUSE` if anyone listens there; it is closed before the real
/// listeners bind.
fn refuse_a_port_in_use(addr: SocketAddr) -> io::Result<()> {
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    probe.set_reuse_address(true)?;
    probe.bind(&SockAddr::from(addr))
}

fn bind_listener(addr: SocketAddr, backlog: i32, send_buffer: Option<usize>) -> io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_tcp_nodelay(true)?;
    if let Some(bytes) = send_buffer {
        socket.set_send_buffer_size(bytes)?;
    }
    socket.bind(&SockAddr::from(addr))?;
    socket.listen(backlog)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_core_lists_wrap_around() {
        let plan = pinning_plan(&CorePinning::Cores(vec![3, 5]), 3);
        let ids: Vec<_> = plan.iter().map(|core| core.map(|c| c.id)).collect();
        assert_eq!(ids, vec![Some(3), Some(5), Some(3)]);
        assert_eq!(pinning_plan(&CorePinning::Off, 2), vec![None, None]);
    }

    #[test]
    fn port_zero_listeners_share_the_resolved_port() {
        let listen = ListenConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            backlog: 16,
        };
        let sockets = bind_listeners(&listen, None, 3).unwrap();
        let ports: Vec<u16> = sockets
            .iter()
            .map(|s| s.local_addr().unwrap().as_socket().unwrap().port())
            .collect();
        assert_ne!(ports[0], 0);
        assert!(ports.iter().all(|&port| port == ports[0]), "{ports:?}");
    }

    #[test]
    fn accepted_sockets_inherit_the_listeners_options() {
        let listen = ListenConfig {
            addr: "127.0.0.1:0".parse().unwrap(),
            backlog: 16,
        };
        for send_buffer in [None, Some(96 * 1024)] {
            let listener = bind_listeners(&listen, send_buffer, 1).unwrap().remove(0);
            let addr = listener.local_addr().unwrap().as_socket().unwrap();
            let _client = std::net::TcpStream::connect(addr).unwrap();
            let (accepted, _) = listener.accept().unwrap();
            assert!(accepted.tcp_nodelay().unwrap(), "{send_buffer:?}");
            if let Some(bytes) = send_buffer {
                // Linux reports twice the size asked for (its bookkeeping share).
                assert_eq!(accepted.send_buffer_size().unwrap(), 2 * bytes);
            }
        }
    }

    #[test]
    fn a_port_another_listener_holds_is_refused_even_with_reuseport() {
        // The other listener shares with anyone who sets SO_REUSEPORT, as
        // another ringws does.
        let other = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).unwrap();
        other.set_reuse_port(true).unwrap();
        other
            .bind(&SockAddr::from(
                "127.0.0.1:0".parse::<SocketAddr>().unwrap(),
            ))
            .unwrap();
        other.listen(16).unwrap();
        let addr = other.local_addr().unwrap().as_socket().unwrap();
        let listen = ListenConfig { addr, backlog: 16 };
        match bind_listeners(&listen, None, 2) {
            Err(StartError::Listen {
                addr: failed,
                source,
            }) => {
                assert_eq!(failed, addr);
                assert_eq!(source.kind(), io::ErrorKind::AddrInUse);
            }
            other => panic!("expected a port in use, got {:?}", other.map(|s| s.len())),
        }
        // Once it is gone the port is free, and its own workers share it.
        drop(other);
        assert_eq!(bind_listeners(&listen, None, 2).unwrap().len(), 2);
    }

    #[test]
    fn listen_errors_name_the_address() {
        // A port held by a listener without SO_REUSEPORT cannot be bound.
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = held.local_addr().unwrap();
        let listen = ListenConfig { addr, backlog: 16 };
        let error = bind_listeners(&listen, None, 1).unwrap_err().to_string();
        assert!(error.contains(&addr.to_string()), "{error}");
    }
}
