//! Running servers: [`ServerHandle`] (owns the workers), [`ServerControl`]
//! (cloneable, usable from any thread and from callbacks) and graceful
//! shutdown.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use ringws_reactor::{Reactor, ReactorHandle};

use crate::config::Settings;
use crate::engine::{Engine, ServerShared};
use crate::error::{ServerError, ShutdownError, StartError};
use crate::handle::{Command, ConnHandle, PreparedMessage, WorkerLink};
use crate::handler::Handler;
use crate::stats::Stats;
use crate::{ConnId, WorkerId};

/// How long, after terminating what the deadline left, shutdown waits for
/// the workers to report every connection gone.
const TERMINATE_GRACE: Duration = Duration::from_secs(2);
/// Polling period while shutdown waits.
const SHUTDOWN_POLL: Duration = Duration::from_millis(1);

/// What [`ServerControl::shutdown`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShutdownReport {
    /// WebSocket connections open (or closing) when shutdown began.
    pub total: u64,
    /// Of those, closed with a completed closing handshake before the
    /// deadline (including those that had exchanged both Closes and were
    /// only waiting for the peer's FIN when the deadline cut the wait).
    pub clean: u64,
    /// Of those, cut by ringws before their closing handshake completed:
    /// at the deadline, or earlier by the close timeout or `terminate()`
    /// (the ones whose `on_closed` reports [`CloseKind::Forced`]).
    ///
    /// [`CloseKind::Forced`]: crate::CloseKind::Forced
    pub forced: u64,
    /// Of those, ended otherwise before the deadline (peer dropped TCP).
    pub abnormal: u64,
    /// Time from the start of shutdown until the workers were told to stop.
    pub elapsed: Duration,
}

/// Controls a running server from any thread: stats, broadcast, handles,
/// shutdown. `Clone + Send + Sync`; reachable inside callbacks through
/// [`Conn::server`](crate::Conn::server).
#[derive(Clone)]
pub struct ServerControl {
    pub(crate) shared: Arc<ServerShared>,
}

impl fmt::Debug for ServerControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerControl")
            .field("local_addr", &self.local_addr())
            .field("workers", &self.worker_count())
            .finish()
    }
}

impl ServerControl {
    /// The bound address (port resolved when 0 was asked for).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.shared.local_addr.get().copied()
    }

    /// Number of workers.
    pub fn worker_count(&self) -> usize {
        self.shared.links.len()
    }

    /// Counters of every worker and their sum, read from atomics.
    pub fn stats(&self) -> Stats {
        Stats::collect(self.shared.links.iter().map(|link| {
            (
                &link.counters,
                link.io_stats(),
                link.ring_mode.get().copied(),
            )
        }))
    }

    /// A handle to connection `id` (`None` for an id of another server).
    pub fn handle(&self, id: ConnId) -> Option<ConnHandle> {
        let link = self.link_of(id)?;
        Some(ConnHandle::new(id, link.clone()))
    }

    /// The worker that owns `id`, if it is one of this server's.
    fn link_of(&self, id: ConnId) -> Option<&Arc<WorkerLink>> {
        self.shared
            .links
            .get(id.worker().index())
            .filter(|link| link.owns(id))
    }

    /// Sends `message` to every open connection on every worker (encoded
    /// once, shared by all). Returns the number of workers it was queued to.
    pub fn broadcast(&self, message: &PreparedMessage) -> usize {
        self.shared
            .links
            .iter()
            .filter(|link| {
                link.send(Command::Broadcast {
                    message: message.clone(),
                    targets: None,
                })
            })
            .count()
    }

    /// Sends `message` to the listed connections (ids that are gone, or
    /// of another server, are skipped), one command per worker involved.
    /// A listed connection found gone or closing when its worker runs the
    /// command is counted in
    /// [`WorkerStats::commands_for_gone`](crate::WorkerStats::commands_for_gone),
    /// one refused at the queue limit in
    /// [`WorkerStats::dropped_messages`](crate::WorkerStats::dropped_messages).
    /// For handles, pass `handles.iter().map(ConnHandle::id)`.
    pub fn broadcast_to(
        &self,
        message: &PreparedMessage,
        targets: impl IntoIterator<Item = ConnId>,
    ) {
        let mut per_worker: Vec<Vec<ConnId>> = vec![Vec::new(); self.shared.links.len()];
        for id in targets {
            if self.link_of(id).is_none() {
                continue;
            }
            if let Some(list) = per_worker.get_mut(id.worker().index()) {
                list.push(id);
            }
        }
        for (link, ids) in self.shared.links.iter().zip(per_worker) {
            if !ids.is_empty() {
                link.send(Command::Broadcast {
                    message: message.clone(),
                    targets: Some(ids),
                });
            }
        }
    }

    /// Graceful shutdown: stop accepting, send Close 1001 with the
    /// configured reason to every connection on every worker, wait for the
    /// closing handshakes until `deadline` has passed, terminate the rest,
    /// then stop the workers. Blocks until the workers have been told to
    /// stop (join them with [`ServerHandle::join`]). A second call returns
    /// the first call's report.
    ///
    /// `Duration::MAX` waits for every closing handshake (each still ends
    /// by the close timeout).
    ///
    /// Because it waits for the workers, it refuses to run on one of them
    /// ([`ShutdownError::OnWorkerThread`]): inside a callback, use
    /// [`begin_shutdown`](Self::begin_shutdown).
    pub fn shutdown(&self, deadline: Duration) -> Result<ShutdownReport, ShutdownError> {
        if self.shared.on_worker_thread() {
            return Err(ShutdownError::OnWorkerThread);
        }
        Ok(self.shared.run_shutdown(deadline))
    }

    /// Starts the graceful shutdown of [`shutdown`](Self::shutdown) on a
    /// thread of its own and returns at once: usable anywhere, callbacks
    /// included. `false` if a shutdown had already begun (or the thread
    /// could not be started). The report is then available from
    /// [`shutdown_report`](Self::shutdown_report) once the workers have
    /// been told to stop, and from any later `shutdown` call, which waits
    /// for it.
    pub fn begin_shutdown(&self, deadline: Duration) -> bool {
        if self.shared.shutdown_begun.swap(true, Ordering::AcqRel) {
            return false;
        }
        let shared = self.shared.clone();
        let started = std::thread::Builder::new()
            .name("ringws-shutdown".into())
            .spawn(move || shared.run_shutdown(deadline));
        if started.is_err() {
            self.shared.shutdown_begun.store(false, Ordering::Release);
            return false;
        }
        true
    }

    /// The report of the shutdown, once it is known: from the moment the
    /// workers are told to stop, so it is there when they have been joined
    /// (`None` before and while the closing handshakes run).
    pub fn shutdown_report(&self) -> Option<ShutdownReport> {
        self.shared.shutdown_report.get().copied()
    }
}

impl ServerShared {
    /// The shutdown procedure itself; one run per engine, later calls wait
    /// for it and return its report.
    pub(crate) fn run_shutdown(&self, deadline: Duration) -> ShutdownReport {
        let _running = self
            .shutdown_running
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(report) = self.shutdown_report.get() {
            return *report;
        }
        self.shutdown_begun.store(true, Ordering::Release);
        if let Some(stop_role) = self.on_shutdown.get() {
            stop_role();
        }
        let started = Instant::now();
        // A deadline too far to represent (`Duration::MAX`: wait for every
        // peer) is as good as none.
        let end = started.checked_add(deadline);
        let links = &self.links;
        let reached: Vec<bool> = links
            .iter()
            .map(|link| link.send(Command::Shutdown))
            .collect();
        let connections = || -> u64 {
            links
                .iter()
                .map(|link| link.counters.snapshot().connections())
                .sum()
        };
        let acked = |phase: u64| {
            links
                .iter()
                .zip(&reached)
                .all(|(link, &reached)| !reached || link.counters.shutdown_phase.get() >= phase)
        };
        // Every worker sends its 1001s before anything is terminated, even
        // with a zero deadline: a peer learns why, not just a reset.
        wait_until(Instant::now().checked_add(TERMINATE_GRACE), || acked(1));
        wait_until(end, || acked(1) && connections() == 0);
        if connections() > 0 || !acked(1) {
            for link in links.iter() {
                link.send(Command::TerminateAll);
            }
            wait_until(Instant::now().checked_add(TERMINATE_GRACE), || {
                acked(2) && connections() == 0
            });
        }
        let sum = |get: fn(&WorkerLink) -> u64| links.iter().map(|link| get(link)).sum::<u64>();
        let report = ShutdownReport {
            total: sum(|link| link.counters.shutdown_total.get()),
            clean: sum(|link| link.counters.shutdown_clean.get()),
            forced: sum(|link| link.counters.shutdown_forced.get()),
            abnormal: sum(|link| link.counters.shutdown_other.get()),
            elapsed: started.elapsed(),
        };
        // Published before the workers stop, so whoever joins them finds
        // it (`shutdown_report`).
        let _ = self.shutdown_report.set(report);
        for link in links.iter() {
            link.send(Command::Stop);
        }
        report
    }
}

/// Polls `ready` until it holds or `end` passes (`None`: until it holds).
fn wait_until(end: Option<Instant>, mut ready: impl FnMut() -> bool) {
    while !ready() {
        let now = Instant::now();
        let Some(end) = end else {
            std::thread::sleep(SHUTDOWN_POLL);
            continue;
        };
        if now >= end {
            return;
        }
        std::thread::sleep(SHUTDOWN_POLL.min(end - now));
    }
}

/// A running server. Dropping it leaves the server running (detached);
/// stop it with [`shutdown`](Self::shutdown).
pub struct ServerHandle {
    control: ServerControl,
    reactor: ReactorHandle<Command>,
    local_addr: SocketAddr,
}

impl fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandle")
            .field("local_addr", &self.local_addr)
            .field("workers", &self.control.worker_count())
            .finish()
    }
}

impl ServerHandle {
    pub(crate) fn start<H, F>(
        settings: Settings,
        config: ringws_reactor::Config,
        factory: F,
    ) -> Result<ServerHandle, StartError>
    where
        H: Handler,
        F: Fn(WorkerId) -> H + Send + Sync + 'static,
    {
        let workers = config.worker_count();
        let links = (0..workers)
            .map(|index| Arc::new(WorkerLink::new(index, settings.max_connections)))
            .collect();
        let shared = Arc::new(ServerShared::new(settings, links));
        let engine_shared = shared.clone();
        let reactor = Reactor::start(config, move |id| {
            Engine::new(engine_shared.clone(), id, factory(id))
        })?;
        shared.attach(&reactor);
        let Some(local_addr) = reactor.local_addr() else {
            reactor.stop();
            let _ = reactor.join();
            return Err(StartError::Engine("the listener has no address".into()));
        };
        let _ = shared.local_addr.set(local_addr);
        Ok(ServerHandle {
            control: ServerControl { shared },
            reactor,
            local_addr,
        })
    }

    /// The bound address (port resolved when 0 was asked for).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// A cloneable controller for other threads.
    pub fn control(&self) -> ServerControl {
        self.control.clone()
    }

    /// Counters of every worker and their sum.
    pub fn stats(&self) -> Stats {
        self.control.stats()
    }

    /// A handle to connection `id`.
    pub fn handle(&self, id: ConnId) -> Option<ConnHandle> {
        self.control.handle(id)
    }

    /// See [`ServerControl::broadcast`].
    pub fn broadcast(&self, message: &PreparedMessage) -> usize {
        self.control.broadcast(message)
    }

    /// See [`ServerControl::broadcast_to`].
    pub fn broadcast_to(
        &self,
        message: &PreparedMessage,
        targets: impl IntoIterator<Item = ConnId>,
    ) {
        self.control.broadcast_to(message, targets)
    }

    /// Graceful shutdown (see [`ServerControl::shutdown`]), then waits for
    /// the worker threads to end. For threads other than the workers: a
    /// callback that must stop the server uses
    /// [`ServerControl::begin_shutdown`].
    ///
    /// # Panics
    ///
    /// On a worker thread of this server, which it would wait for: at once,
    /// saying so (inside a callback the panic is contained like any other,
    /// and fails that connection with 1011).
    pub fn shutdown(self, deadline: Duration) -> ShutdownReport {
        assert!(
            !self.control.shared.on_worker_thread(),
            "ServerHandle::shutdown on a worker thread of its own server would wait for \
             itself; a callback uses ServerControl::begin_shutdown"
        );
        let report = self.control.shared.run_shutdown(deadline);
        let _ = self.reactor.join();
        report
    }

    /// Waits until the workers end: after a shutdown through a
    /// [`ServerControl`], or when a worker fails.
    pub fn join(self) -> Result<(), ServerError> {
        self.reactor.join().map_err(ServerError)
    }
}
