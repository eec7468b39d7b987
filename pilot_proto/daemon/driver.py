"""The thin asyncio driver of a :class:`~pilot_proto.daemon.core.Daemon`: one UDP socket and the IPC Unix socket.

* UDP (draft 7): every datagram goes to ``daemon.receive_datagram(data, addr, loop.time())``;
  one timer handle is kept at ``daemon.get_timer()``; what the daemon queued is sent after every
  input.  Nothing a peer sends can raise out of a callback: an unexpected exception is logged,
  counted in ``errors`` and the datagram dropped (issue 9).
* IPC (draft 16, Go ``pkg/daemon/ipc.go``): a Unix stream socket created with mode 0600; each client
  speaks ``len u32 BE || cmd u8 || payload`` frames (:mod:`pilot_proto.wire.ipc`), encoded in the
  daemon's profile (``go-interop`` adds Go's ``local_port`` to Accept and ``dst_port`` to RecvFrom,
  which the reference ``pilotctl`` needs).  Requests: Bind, Dial (DialOK once ESTABLISHED), Send,
  Close, SendTo, Info, Health, Handshake (send/approve/reject/pending/trusted/revoke),
  ResolveHostname, SetHostname, SetVisibility, Deregister, SetTags, SetTaskExec (which also opens or
  closes port 1003), SetWebhook (stored; POSTs only with ``webhook_posts``, :mod:`.webhook`) and the
  Network sub-commands (list, join, leave, members, invite, poll-invites, respond-invite: registry calls).
  Pushed to the client that owns the connection or port: Accept, Recv, CloseOK (when the peer ends its
  side, as Go does) and RecvFrom.  A client that disconnects has its connections closed and its ports
  released; so does one that stops reading, once what is queued for it would pass
  :data:`IPC_WRITE_LIMIT` (spec/bounds.md), with a logged reason.

Wall-clock seconds (trust messages, ``received_at``) come from ``time.time()`` here, handed to the
core as ``clock_offset``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import socket
import stat
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pilot_proto.daemon.core import (
    AppAccepted,
    AppClosed,
    AppConnected,
    AppData,
    AppDatagram,
    AppDialFailed,
    AppEnded,
    Daemon,
    ServiceClosed,
    ServiceConnected,
)
from pilot_proto.daemon.webhook import WebhookPoster, check_url
from pilot_proto.drivers._socket import (
    GRO_CMSG_SPACE,
    GSO_MAX_BYTES,
    GSO_MAX_SEGMENTS,
    allow_fragmentation,
    enable_gro,
    gro_segment_size,
    gso_control,
    gso_supported,
)
from pilot_proto.drivers.udp import ImpairedSides, Impairment
from pilot_proto.errors import ErrorCode, PilotError
from pilot_proto.profile import Profile
from pilot_proto.sansio import Event, InputRejected
from pilot_proto.services import RelayAction, TrustChanged, TrustRequested
from pilot_proto.tunnel import KeyEstablished
from pilot_proto.wire import ipc
from pilot_proto.wire.address import SocketAddr
from pilot_proto.wire.trust import TrustType

if TYPE_CHECKING:
    from pilot_proto.testing.link import LinkStats
    from pilot_proto.testing.tap import DatagramTap

__all__ = ["DaemonDriver", "Resolver"]

log = logging.getLogger("pilot_proto.daemon")
_RCVBUF = 4 << 20
#: Datagrams taken per readiness before events, sends and the timer are handled.  Bounded so that the ACKs (or
#: data) for the first of them leave while the peer still has work in flight: a whole window read before any
#: answer is sent would make two daemons take turns instead of working at once.
READ_BATCH = 64
MAX_BACKLOG = 4096  # datagrams waiting for a full send buffer to drain
MAX_UNSENT = 1 << 20  # application bytes queued in the daemon before it stops reading that IPC client
#: Bytes queued for one IPC client that it has not read yet (beyond the kernel's socket buffer).  A frame that
#: would take the queue past this drops the client instead (spec/bounds.md): a client that stops reading costs
#: at most this much memory, and the daemon goes on serving everyone else.
IPC_WRITE_LIMIT = 16 << 20
_CHUNK = ipc.MAX_MESSAGE - 16  # largest Recv payload per IPC message
ERR_GENERIC = 1  # Go sends code 1 for every error
TASK_SERVICE = "tasksubmit"  # the service SetTaskExec gates (port 1003)
MAX_DAEMON_TAGS = 3  # tags per SetTags, as the Go daemon (its registry keeps up to 10; E-DF-2)
_RECV_HEAD = struct.Struct(">IBI")  # the hot path: Recv frames are packed here (same bytes as wire.ipc builds)
_RECV = int(ipc.Command.RECV)

#: ``hostname -> {"node_id": ..., "address": ...}`` (the registry's resolve answer), or an exception.
Resolver = Callable[[str], Awaitable[dict[str, Any]]]
#: ``node_id -> (underlay address or None, Ed25519 key or None)`` from the registry (lookup + resolve).
Locator = Callable[[int], Awaitable[tuple[tuple[str, int] | None, bytes | None]]]


@dataclass
class _Client:
    cid: int
    writer: asyncio.StreamWriter
    conns: set[int] = field(default_factory=set)
    ended: set[int] = field(default_factory=set)


class DaemonDriver:
    """Runs one :class:`Daemon` on a UDP socket (and optionally an IPC socket) of the running loop.

    The UDP socket is read with ``loop.add_reader``: each readiness drains up to :data:`READ_BATCH`
    datagrams into the daemon, then events, sends and the timer are handled once for the whole batch
    (asyncio's datagram transport would take one loop iteration per datagram).  Sends that meet a full
    socket buffer wait in a bounded queue for writability.
    """

    def __init__(
        self,
        daemon: Daemon,
        resolver: Resolver | None = None,
        locator: Locator | None = None,
        *,
        tap: DatagramTap | None = None,
        impairment: Impairment | None = None,
    ) -> None:
        self.daemon = daemon
        #: Told about every datagram crossing the socket (pcap / wire log, :mod:`pilot_proto.testing.tap`).
        self.tap = tap
        self._links = ImpairedSides(impairment, self._on_link_timer)
        self.resolver = resolver
        self.locator = locator
        #: The registry client (``set_hostname``, ``set_visibility``, ``deregister`` coroutines), if any.
        self.registry: Any = None
        self._learning: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._backlog: deque[tuple[bytes, Any]] = deque()
        self._closing = False
        self._local: tuple[str, int] | None = None
        self.ipc_server: asyncio.AbstractServer | None = None
        self.socket_path: str | None = None
        self.clients: dict[int, _Client] = {}
        self._next_client = 1
        #: Unread bytes one IPC client may hold queued in the daemon before it is dropped (:data:`IPC_WRITE_LIMIT`).
        self.ipc_write_limit = IPC_WRITE_LIMIT
        self.ipc_dropped = 0  # IPC clients dropped because they did not read
        self.ipc_buffer_peak = 0  # the largest unread queue any IPC client had (bytes)
        #: What this node advertises (IPC SetTags), as the registry accepted it (or as given without one).
        self.tags: list[str] = []
        #: Whether task submissions (port 1003) are taken (IPC SetTaskExec); on when the service runs.
        self.task_exec = TASK_SERVICE in daemon.services
        #: The webhook URL (IPC SetWebhook), stored and reported; events are POSTed to it only when
        #: :attr:`webhook_posts` is set (the operator's opt-in, ``--webhook-posts``; E-DF-3).
        self.webhook_url = ""
        self.webhook_posts = False
        self.webhook: WebhookPoster | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._gso = self._gro = False  # Linux UDP segmentation offload, set up in start()
        self._no_gso: set[Any] = set()  # addresses GSO failed towards
        self._debug = False  # debug logging on (refreshed per dispatch)
        self.datagrams_in = self.datagrams_out = self.bytes_in = self.bytes_out = 0
        self.send_dropped = 0  # datagrams dropped because the send backlog was full
        self.errors = 0
        self.log_events: list[Event] = []  # the last notices (bounded), for tests and the summary
        #: Called with every event the daemon reports that is not routed to an IPC client.
        self.on_event: Callable[[Event], None] | None = None
        self.closed = asyncio.Event()
        self._progressed = asyncio.Event()

    @classmethod
    async def start(
        cls,
        daemon: Daemon,
        local: tuple[str, int] = ("127.0.0.1", 0),
        socket_path: str | None = None,
        resolver: Resolver | None = None,
        locator: Locator | None = None,
        sock: socket.socket | None = None,
        tap: DatagramTap | None = None,
        impairment: Impairment | None = None,
    ) -> DaemonDriver:
        """Serve ``daemon`` on UDP ``local`` (or the already bound ``sock``) and, if given, the IPC ``socket_path``.

        ``tap`` records every datagram in and out; ``impairment`` (loss, delay ... of
        :class:`~pilot_proto.testing.link.ImpairedLink`) applies on this side of the socket.
        """
        loop = asyncio.get_running_loop()
        drv = cls(daemon, resolver, locator, tap=tap, impairment=impairment)
        if sock is None:
            sock = socket.socket(socket.AF_INET6 if ":" in local[0] else socket.AF_INET, socket.SOCK_DGRAM)
            try:
                sock.bind(local)
            except OSError:
                sock.close()
                raise
        sock.setblocking(False)
        allow_fragmentation(sock)  # draft 13.3: no DF bit (MTU-008)
        drv._gso = gso_supported(sock)  # runs of equal-size datagrams in one system call, each way
        drv._gro = enable_gro(sock)
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            with contextlib.suppress(OSError):  # the kernel default still works, with more loss under bursts
                sock.setsockopt(socket.SOL_SOCKET, opt, _RCVBUF)
        drv.sock, drv._loop = sock, loop
        host, port = sock.getsockname()[:2]
        drv._local = (str(host), int(port))
        loop.add_reader(sock.fileno(), drv._on_readable)
        daemon.start(loop.time())
        daemon.clock_offset = time.time() - loop.time()
        if socket_path is not None:
            try:
                await drv._start_ipc(socket_path)
            except OSError:
                await drv.shutdown()
                raise
        return drv

    @property
    def address(self) -> tuple[str, int]:
        """Our UDP address (cached at start)."""
        assert self._local is not None
        return self._local

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    # -- UDP ------------------------------------------------------------------------------------------

    def _on_readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        recvfrom = sock.recvfrom
        recvmsg = sock.recvmsg
        gro = self._gro
        receive = self.daemon.receive_datagrams
        inbound = self._links.inbound
        tap = self.tap
        assert self._loop is not None
        now = self._loop.time()
        count = nbytes = 0
        anc: list[tuple[int, int, bytes]] | None = None
        taken = 0
        while taken < READ_BATCH:  # drain the socket first; events, sends and the timer once per READ_BATCH datagrams
            taken += 1
            try:
                if gro:  # several datagrams of one sender may come in one read, their size in the control data
                    data, anc, _flags, addr = recvmsg(65536, GRO_CMSG_SPACE)
                else:
                    data, addr = recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # ICMP errors surface here on Linux; UDP is best effort
                continue
            if len(addr) != 2:
                addr = (addr[0], addr[1])  # IPv6 (host, port, flowinfo, scope): the daemon's peers are (host, port)
            pieces: tuple[bytes, ...] | list[bytes] = (data,)
            if anc:
                seg = gro_segment_size(anc)
                if 0 < seg < len(data):
                    pieces = [data[i : i + seg] for i in range(0, len(data), seg)]
                    taken += len(pieces) - 1
            if tap is not None or inbound is not None:
                for piece in pieces:
                    if tap is not None:
                        self._tap("in", addr, piece)
                    if inbound is not None:
                        inbound.send(addr, self.address, piece, now)
                if inbound is not None:
                    continue
            count += len(pieces)
            nbytes += len(data)
            rest = iter(pieces)
            while True:  # the whole read in one call; after a failure, on with the datagrams behind it
                try:
                    receive(rest, addr, now)
                    break
                except Exception:  # a core bug must not kill the daemon; that datagram is dropped
                    self.errors += 1
                    log.exception("daemon failed on a datagram from %s", addr)
        self.datagrams_in += count
        self.bytes_in += nbytes
        if inbound is not None:
            self._arm_link()
        self._after_input()

    def _deliver(self, daemon: Daemon, data: bytes, peer: tuple[str, int], now: float) -> None:
        self.datagrams_in += 1
        self.bytes_in += len(data)
        try:
            daemon.receive_datagram(data, peer, now)
        except Exception:  # a core bug must not kill the daemon; the datagram is dropped
            self.errors += 1
            log.exception("daemon failed on a datagram from %s", peer)

    def _tap(self, direction: Literal["in", "out"], remote: tuple[str, int], data: bytes) -> None:
        assert self.tap is not None
        try:
            self.tap.record(direction, self.address, remote, data)
        except Exception:  # a broken capture must not break the daemon
            self.errors += 1
            log.exception("capture failed")

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        try:
            self.daemon.handle_timer(self.now())
        except Exception:
            self.errors += 1
            log.exception("daemon failed in a timer")
        self._after_input()

    async def _progress(self) -> None:
        """Wait until the daemon handled more input (or a short while passed)."""
        self._progressed.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._progressed.wait(), 0.5)

    def _after_input(self) -> None:
        self._progressed.set()
        try:
            self._dispatch()
        except Exception:
            self.errors += 1
            log.exception("dispatching daemon events failed")
        self._flush()
        self._arm()
        if self.registry is not None and self.daemon.trust is not None and self.daemon.trust._relay:
            self._spawn(self._send_relays(self.daemon.relays_to_send()))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the registry relay of trust messages (draft 10.6) -------------------------------------------------

    async def _send_relays(self, actions: list[RelayAction]) -> None:
        reg = self.registry
        for act in actions:
            try:
                if act.kind is TrustType.REQUEST:
                    await reg.request_handshake(act.peer, act.text)
                elif act.kind in (TrustType.ACCEPT, TrustType.REJECT):
                    await reg.respond_handshake(act.peer, act.kind is TrustType.ACCEPT)
                else:
                    await reg.revoke_trust(act.peer)
                log.info("trust %s for node %d relayed through the registry", act.kind.value, act.peer)
            except Exception as exc:  # the registry refused or is gone: the operator can ask again
                log.warning("registry relay of %s to node %d failed: %s", act.kind.value, act.peer, exc)

    async def poll_relayed(self) -> None:
        """One poll of the registry's handshake inbox (Go polls on its heartbeat)."""
        reg = self.registry
        if reg is None or self.daemon.trust is None:
            return
        doc = await reg.poll_handshakes()
        for req in doc.get("requests") or []:
            sender = int(req["from_node_id"])
            await self.ensure_route(sender, key_only=True)
            log.info("relayed trust request from node %d", sender)
            self.daemon.relayed_request(sender, str(req.get("justification", "")), self.now())
        for resp in doc.get("responses") or []:
            sender = int(resp["from_node_id"])
            await self.ensure_route(sender, key_only=True)
            self.daemon.relayed_response(sender, bool(resp.get("accept")), self.now())
        self._after_input()

    async def relay_loop(self, interval: float) -> None:
        """Poll the registry for relayed trust messages every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval)
            try:
                await self.poll_relayed()
            except Exception as exc:
                log.info("polling relayed handshakes failed: %s", exc)

    def _flush(self) -> None:
        sock = self.sock
        if sock is None:
            return
        out = self.daemon.datagrams_to_send()
        if not out:
            return
        link = self._links.out
        if link is not None:
            now = self.now()
            for data, addr in out:
                link.send(self.address, addr, data, now)
            self._arm_link()
            return
        self._send_now(out)

    def _send_now(self, out: Sequence[tuple[bytes, Any]]) -> None:
        sock = self.sock
        if sock is None:
            return
        if self.tap is not None:
            for data, addr in out:
                self._tap("out", (str(addr[0]), int(addr[1])), data)
        self.datagrams_out += len(out)
        backlog = self._backlog
        nbytes = 0
        if backlog:
            backlog.extend(out)
            for data, _ in out:
                nbytes += len(data)
        else:
            sendto = sock.sendto
            gso = self._gso
            i, end = 0, len(out)
            while i < end:
                data, addr = out[i]
                size = len(data)
                if gso and i + 1 < end and addr not in self._no_gso:
                    j, total = self._gso_run(out, i, size, addr)
                    if j - i > 1:  # a run of equal-size datagrams to one address: one system call (UDP GSO)
                        try:
                            sock.sendmsg([d for d, _ in out[i:j]], gso_control(size), 0, addr)
                        except (BlockingIOError, InterruptedError):
                            backlog.extend(out[i:])
                            for data, _ in out[i:]:
                                nbytes += len(data)
                            break
                        except OSError as exc:  # e.g. a path MTU below the datagram size: one by one from now on
                            self._refuse_gso(addr, exc)
                            continue
                        nbytes += total
                        i = j
                        continue
                i += 1
                nbytes += size
                try:
                    sendto(data, addr)
                except (BlockingIOError, InterruptedError):
                    backlog.extend(out[i - 1 :])
                    for data, _ in out[i:]:
                        nbytes += len(data)
                    break
                except OSError:
                    continue  # e.g. no route for that address: UDP is best effort
        self.bytes_out += nbytes
        if backlog:
            while len(backlog) > MAX_BACKLOG:
                backlog.popleft()
                self.send_dropped += 1
            assert self._loop is not None
            self._loop.add_writer(sock.fileno(), self._on_writable)

    @staticmethod
    def _gso_run(out: Sequence[tuple[bytes, Any]], i: int, size: int, addr: Any) -> tuple[int, int]:
        """End (exclusive) and payload bytes of the GSO run starting at ``out[i]``: following datagrams to ``addr``
        of ``size`` bytes (the last may be shorter), at most GSO_MAX_SEGMENTS and GSO_MAX_BYTES."""
        j, total, end = i + 1, size, min(len(out), i + GSO_MAX_SEGMENTS)
        while j < end:
            data, to = out[j]
            n = len(data)
            if n > size or to != addr or total + n > GSO_MAX_BYTES:
                break
            total += n
            j += 1
            if n < size:
                break  # a shorter datagram ends a run
        return j, total

    def _refuse_gso(self, addr: Any, exc: OSError) -> None:
        """GSO failed towards ``addr``: send to it one datagram per call from now on (bounded; then for everyone)."""
        log.info("UDP segmentation offload refused towards %s (%s); sending datagrams one by one", addr, exc)
        self._no_gso.add(addr)
        if len(self._no_gso) > 1024:
            self._gso = False

    def _on_writable(self) -> None:
        sock, backlog = self.sock, self._backlog
        if sock is None:
            return
        while backlog:
            data, addr = backlog[0]
            try:
                sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                pass
            backlog.popleft()
        assert self._loop is not None
        self._loop.remove_writer(sock.fileno())

    def _arm(self) -> None:
        """One loop timer at the daemon's deadline.  A timer already armed for an earlier time is kept: the
        daemon's timers may fire early, never late (its ``handle_timer`` fires only what is due, and the timer
        is re-armed after), so a deadline that keeps moving later -- the RTO on every ACK -- costs no re-arm."""
        deadline = self.daemon.get_timer()
        at = self._timer_at
        if deadline is None or (at is not None and at <= deadline):
            return
        self._cancel_timer()
        if deadline is not None and self.sock is not None:
            self._timer_at = deadline
            self._timer = asyncio.get_running_loop().call_at(deadline, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._timer_at = None

    # -- impairment (testing) ----------------------------------------------------------------------------

    def _arm_link(self) -> None:
        self._links.arm(self.sock is not None)

    def _on_link_timer(self) -> None:
        now = self.now()
        links = self._links
        if links.out is not None:
            due = links.out.deliverable(now)
            if due:
                self._send_now([(d.datagram, d.dst) for d in due])
        if links.inbound is not None:
            arrived = links.inbound.deliverable(now)
            for d in arrived:
                self._deliver(self.daemon, d.datagram, d.src, now)
            if arrived:
                self._after_input()
        self._arm_link()

    @property
    def impairment_stats(self) -> dict[str, LinkStats]:
        """What the impairment did per side (``outbound``/``inbound``), when configured."""
        return self._links.stats

    # -- events -> IPC clients --------------------------------------------------------------------------

    def _dispatch(self) -> None:
        nxt = self.daemon.next_event
        clients = self.clients
        hook = self.webhook
        self._debug = log.isEnabledFor(logging.DEBUG)  # asked once per dispatch, not per segment
        while (ev := nxt()) is not None:
            if type(ev) is AppData:  # the data path (never observed by the webhook)
                owner = ev.owner
                if isinstance(owner, str):  # an internal owner (tests use names); only a notice
                    self._notice(ev)
                else:  # straight to the client's socket
                    client = clients.get(owner)
                    if client is not None:
                        self._recv_frames(client, ev.conn_id, ev.data)
                continue
            if hook is not None:
                hook.observe(ev)
            if isinstance(ev, AppConnected | AppDialFailed | AppAccepted | AppData | AppEnded | AppClosed):
                self._to_client(ev)
            elif isinstance(ev, AppDatagram):
                self._datagram(ev)
            else:
                self._notice(ev)

    def _notice(self, ev: Event) -> None:
        notes = self.log_events
        notes.append(ev)
        if len(notes) > 1000:
            del notes[:500]
        if type(ev) is AppData:  # bytes for an internal owner: the one notice per segment, kept cheap
            if self._debug:
                log.debug("event %s", ev)
        elif isinstance(ev, KeyEstablished):
            log.info("tunnel keyed with node %d at %s", ev.peer, ev.address)
        elif isinstance(ev, InputRejected):
            log.info("refused input (%s): %s", ev.layer, ev.error)
            if ev.error.code is ErrorCode.UNKNOWN_IDENTITY and ev.peer is not None:
                self._spawn_learn(ev.peer)  # a PILA from a node whose key we have not fetched yet
        elif isinstance(ev, TrustRequested):
            log.info("trust request from node %d: %r", ev.node_id, ev.justification)
        elif isinstance(ev, TrustChanged):
            log.info("node %d %s (%s)", ev.node_id, "trusted" if ev.trusted else "no longer trusted", ev.how)
        elif isinstance(ev, ServiceConnected):
            log.info("%s connection %d %s %s established", ev.service, ev.conn_id, "to" if ev.dialed else "from",
                     ev.remote)  # fmt: skip
        elif isinstance(ev, ServiceClosed):
            log.info("%s connection %d closed (%s)", ev.service, ev.conn_id, ev.reason.value)
        else:
            log.debug("event %s", ev)
        if self.on_event is not None:
            self.on_event(ev)

    def _send_ipc(self, client: _Client, msg: ipc.IpcMessage) -> None:
        if client.writer.is_closing():
            return
        self._write(client, ipc.encode_ipc_frame(msg, self.daemon.profile))

    def _write(self, client: _Client, frame: bytes) -> bool:
        """Queue ``frame`` for ``client``, or drop the client if that would exceed :attr:`ipc_write_limit`."""
        writer = client.writer
        if writer.is_closing():
            return False
        transport = writer.transport
        pending = transport.get_write_buffer_size()
        if pending + len(frame) > self.ipc_write_limit:
            self._drop_client(client, f"it does not read: {pending} bytes unread and a {len(frame)}-byte message "
                              f"would exceed the IPC write limit of {self.ipc_write_limit} bytes")  # fmt: skip
            return False
        writer.write(frame)
        pending = transport.get_write_buffer_size()
        if pending > self.ipc_buffer_peak:
            self.ipc_buffer_peak = pending
        return True

    def _drop_client(self, client: _Client, reason: str) -> None:
        """Hang up on ``client`` now, discarding what it did not read; its serve loop then releases its ports."""
        log.warning("IPC client %d dropped: %s", client.cid, reason)
        self.ipc_dropped += 1
        client.writer.transport.abort()

    def _to_client(self, ev: AppConnected | AppDialFailed | AppAccepted | AppData | AppEnded | AppClosed) -> None:
        owner = ev.owner
        if isinstance(owner, str):  # an internal owner (tests use names); only log
            self._notice(ev)
            return
        client = self.clients.get(owner)
        if client is None:
            return
        go = self.daemon.profile is Profile.GO_INTEROP
        if isinstance(ev, AppConnected):
            log.info("connection %d to %s established", ev.conn_id, ev.remote)
            client.conns.add(ev.conn_id)
            self._send_ipc(client, ipc.DialOK(ev.conn_id))
        elif isinstance(ev, AppDialFailed):
            log.info("connection %d to %s failed: %s", ev.conn_id, ev.remote, ev.reason)
            self._send_ipc(client, ipc.Error(ERR_GENERIC, f"dial {ev.remote}: {ev.reason}"))
        elif isinstance(ev, AppAccepted):
            log.info("connection %d from %s accepted on port %d", ev.conn_id, ev.remote, ev.local_port)
            client.conns.add(ev.conn_id)
            self._send_ipc(client, ipc.Accept(ev.conn_id, ev.remote.addr, ev.remote.port,
                                              ev.local_port if go else None))  # fmt: skip
        elif isinstance(ev, AppData):
            self._recv_frames(client, ev.conn_id, ev.data)
        elif isinstance(ev, AppEnded):
            client.ended.add(ev.conn_id)
            self._send_ipc(client, ipc.CloseOK(ev.conn_id))
        else:
            log.info("connection %d closed (%s)", ev.conn_id, ev.reason.value)
            client.conns.discard(ev.conn_id)
            if ev.conn_id not in client.ended:
                self._send_ipc(client, ipc.CloseOK(ev.conn_id))
            client.ended.discard(ev.conn_id)

    def _recv_frames(self, client: _Client, conn_id: int, data: bytes) -> None:
        """Stream bytes to the client that owns the connection: Recv = len u32 || 0x07 || conn_id u32 || data."""
        if len(data) <= _CHUNK:
            self._write(client, _RECV_HEAD.pack(5 + len(data), _RECV, conn_id) + data)
            return
        for i in range(0, len(data), _CHUNK):  # (IPC-009)
            piece = data[i : i + _CHUNK]
            if not self._write(client, _RECV_HEAD.pack(5 + len(piece), _RECV, conn_id) + piece):
                return

    def _datagram(self, ev: AppDatagram) -> None:
        go = self.daemon.profile is Profile.GO_INTEROP
        msg = ipc.RecvFrom(ev.src, ev.src_port, ev.data, ev.dst_port if go else None)
        owner = self.clients.get(ev.owner) if isinstance(ev.owner, int) else None
        targets = [owner] if owner is not None else list(self.clients.values())  # Go: every client, it filters
        for client in targets:
            self._send_ipc(client, msg)
        if not targets:
            self._notice(ev)

    # -- the registry: where a node is and which key is its own -------------------------------------------

    def _spawn_learn(self, node: int) -> None:
        if self.locator is None or node in self._learning:
            return
        self._learning.add(node)
        task = asyncio.get_running_loop().create_task(self._learn(node))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _learn(self, node: int) -> None:
        try:
            await self.ensure_route(node, key_only=True)
        finally:
            self._learning.discard(node)

    async def ensure_route(self, node: int, *, key_only: bool = False) -> None:
        """Ask the registry (``locator``) for ``node``'s key and, if we know no address for it, its endpoint."""
        if self.locator is None:
            return
        tunnel = self.daemon.node.tunnel
        peer = tunnel.peers.get(node)
        have_addr = peer is not None and peer.address is not None
        if have_addr and (key_only is False) and tunnel.known_key(node) is not None:
            return
        try:
            addr, key = await self.locator(node)
        except (OSError, ValueError, LookupError, PilotError) as exc:
            log.info("registry has no usable entry for node %d: %s", node, exc)
            return
        if key is not None:
            tunnel.set_peer_key(node, key)
        if addr is not None and not have_addr:
            self.daemon.add_peer(node, addr, key)
        self._after_input()

    # -- IPC server --------------------------------------------------------------------------------------

    async def _start_ipc(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(os.stat(path).st_mode):
                if _socket_alive(path):
                    raise OSError(errno.EADDRINUSE, "another daemon is listening on this socket", path)
                os.unlink(path)  # a stale socket from an earlier run
        self.ipc_server = await asyncio.start_unix_server(self._serve_client, path=path)
        os.chmod(path, 0o600)  # draft 10.9: owner only
        self.socket_path = path

    async def _serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        cid = self._next_client
        self._next_client += 1
        client = _Client(cid, writer)
        self.clients[cid] = client
        decoder = ipc.IpcReader(self.daemon.profile)
        try:
            while chunk := await reader.read(65536):
                try:
                    decoder.feed(chunk)
                    while (msg := decoder.next_message()) is not None:
                        await self._request(client, msg)
                except PilotError as exc:
                    self._send_ipc(client, ipc.Error(ERR_GENERIC, f"bad request: {exc}"))
                    break  # the stream cannot be resynchronised
                self._after_input()
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self.clients.pop(cid, None)
            with contextlib.suppress(Exception):
                self.daemon.release(cid, self.now())
            self._after_input()
            writer.close()

    async def _request(self, client: _Client, msg: ipc.IpcMessage) -> None:
        try:
            reply = await self._handle(client, msg)
        except PilotError as exc:
            reply = ipc.Error(ERR_GENERIC, exc.rule)
        except (ValueError, OSError, LookupError) as exc:
            reply = ipc.Error(ERR_GENERIC, str(exc))
        except Exception as exc:  # e.g. the registry refused: the client gets the reason, the daemon goes on
            if isinstance(exc, asyncio.CancelledError):
                raise
            log.info("IPC %s failed: %r", type(msg).__name__, exc)
            reply = ipc.Error(ERR_GENERIC, f"{type(msg).__name__.lower()}: {exc}")
        if reply is not None:
            self._send_ipc(client, reply)

    def _json(self, cmd: ipc.Command, doc: Any) -> ipc.JsonMessage:
        return ipc.JsonMessage(cmd, json.dumps(doc).encode())

    async def _handle(self, client: _Client, msg: ipc.IpcMessage) -> ipc.IpcMessage | None:
        d, now = self.daemon, self.now()
        if isinstance(msg, ipc.Bind):
            return ipc.BindOK(d.bind(client.cid, msg.port))
        if isinstance(msg, ipc.Dial):
            await self.ensure_route(msg.addr.node)
            d.dial(client.cid, SocketAddr(msg.addr, msg.port), self.now())
            return None  # DialOK or Error follows from the daemon's events
        if isinstance(msg, ipc.Send):
            if msg.conn_id not in client.conns:
                return ipc.Error(ERR_GENERIC, f"connection {msg.conn_id} not found")
            d.send(msg.conn_id, msg.data, now)
            self._after_input()
            while d.unsent(msg.conn_id) > MAX_UNSENT and msg.conn_id in client.conns:
                await self._progress()  # backpressure: stop reading this client until the stream takes more
            return None
        if isinstance(msg, ipc.Close):
            d.close(msg.conn_id, now)
            client.ended.add(msg.conn_id)  # the reply below is its CloseOK
            return ipc.CloseOK(msg.conn_id)
        if isinstance(msg, ipc.SendTo):
            await self.ensure_route(msg.addr.node)
            d.send_to(msg.addr, msg.port, msg.data, self.now())
            return None
        if isinstance(msg, ipc.Empty):
            if msg.command is ipc.Command.DEREGISTER and self.registry is not None:
                await self.registry.deregister()
                return self._json(ipc.Command.DEREGISTER_OK, {"node_id": d.node_id, "status": "deregistered"})
            return self._empty(msg.command, now)
        if isinstance(msg, ipc.HandshakeRequest):
            if msg.sub is ipc.HandshakeSub.SEND:
                await self.ensure_route(msg.node_id)
            return self._json(ipc.Command.HANDSHAKE_OK, self._handshake(msg, now))
        if isinstance(msg, ipc.Text):
            return await self._text(msg)
        if isinstance(msg, ipc.Flag) and msg.command is ipc.Command.SET_VISIBILITY:
            if self.registry is not None:
                await self.registry.set_visibility(msg.value)
            d.public = msg.value  # the trust gate follows (Go: config.Public)
            return self._json(ipc.Command.SET_VISIBILITY_OK, {"node_id": d.node_id, "public": msg.value})
        if isinstance(msg, ipc.Flag) and msg.command is ipc.Command.SET_TASK_EXEC:
            return await self._set_task_exec(msg.value)
        if isinstance(msg, ipc.JsonMessage) and msg.command is ipc.Command.SET_TAGS:
            return await self._set_tags(msg.document)
        if isinstance(msg, ipc.NetworkRequest):
            return await self._network(msg)
        return ipc.Error(ERR_GENERIC, f"{type(msg).__name__} is not supported by this daemon")

    # -- SetTags, SetTaskExec, SetWebhook, Network (draft 16.2, 16.3; Go ipc.go) ----------------------------

    async def _set_tags(self, document: bytes) -> ipc.IpcMessage:
        """Tags the node advertises: a JSON array of at most 3 strings (Go's daemon), registered with the
        registry, which normalises and checks them (``#`` dropped, duplicates removed, ``[a-z0-9-]``)."""
        try:
            tags = json.loads(document)
        except ValueError as exc:  # the codec checked it parses; this is for the clarity of the message
            return ipc.Error(ERR_GENERIC, f"set_tags: invalid JSON: {exc}")
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            return ipc.Error(ERR_GENERIC, "set_tags: expected a JSON array of strings")
        if len(tags) > MAX_DAEMON_TAGS:
            return ipc.Error(ERR_GENERIC, f"set_tags: maximum {MAX_DAEMON_TAGS} tags allowed")
        d = self.daemon
        if self.registry is not None:
            try:
                result = dict(await self.registry.set_tags(tags))
            except Exception as exc:  # the registry refused (a bad tag ...) or is gone
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return ipc.Error(ERR_GENERIC, f"set_tags: {exc}")
            self.tags = [str(t) for t in result.get("tags") or []]
        else:
            self.tags = list(dict.fromkeys(t[1:] if t.startswith("#") else t for t in tags))
            result = {"type": "set_tags_ok", "node_id": d.node_id, "tags": self.tags, "registered": False}
        log.info("tags set: %s", self.tags)
        return self._json(ipc.Command.SET_TAGS_OK, result)

    async def _set_task_exec(self, enabled: bool) -> ipc.IpcMessage:
        """Advertise task execution in the registry (Go) and take or refuse task submissions on port 1003: off,
        the port is closed (a new connection gets RST, E-DF-2); connections already open finish."""
        d = self.daemon
        result: dict[str, Any]
        if self.registry is not None:
            try:
                result = dict(await self.registry.set_task_exec(enabled))
            except Exception as exc:
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return ipc.Error(ERR_GENERIC, f"set_task_exec: {exc}")
        else:
            result = {"type": "set_task_exec_ok", "node_id": d.node_id, "task_exec": enabled, "registered": False}
        svc = d.services.get(TASK_SERVICE)
        if svc is not None:
            holder = d.ports.get(svc.port)
            if enabled and holder is None:
                d.bind(TASK_SERVICE, svc.port)
            elif not enabled and holder == TASK_SERVICE:
                d.unbind(svc.port)
        self.task_exec = enabled
        result["listening"] = svc is not None and d.ports.get(svc.port) == TASK_SERVICE
        log.info("task execution %s", "enabled" if enabled else "disabled")
        return self._json(ipc.Command.SET_TASK_EXEC_OK, result)

    async def _set_webhook(self, url: str) -> ipc.IpcMessage:
        why = check_url(url)
        if why is not None:
            return ipc.Error(ERR_GENERIC, f"set_webhook: {why}")
        await self.set_webhook(url)
        return self._json(ipc.Command.SET_WEBHOOK_OK, {"webhook": url, "posting": self.webhook is not None})

    async def set_webhook(self, url: str) -> None:
        """Store ``url`` ("" clears it); with :attr:`webhook_posts`, events go to it from now on."""
        old, self.webhook = self.webhook, None
        if old is not None:
            await old.close(drain=1.0)
        self.webhook_url = url
        if url and self.webhook_posts:
            poster = WebhookPoster(url, lambda: self.daemon.node_id)
            poster.start()
            self.webhook = poster
        log.info("webhook %s%s", f"set to {url}" if url else "cleared",
                 "" if not url or self.webhook_posts else " (stored only: posting needs --webhook-posts)")  # fmt: skip

    async def _network(self, msg: ipc.NetworkRequest) -> ipc.IpcMessage:
        """Network sub-commands, each one registry call made as this node (draft 16.3; Go handleNetwork)."""
        reg, sub = self.registry, msg.sub
        name = _NETWORK_NAMES[sub]
        if reg is None:
            return ipc.Error(ERR_GENERIC, f"network {name}: needs a registry (not configured)")
        try:
            if sub is ipc.NetworkSub.LIST:
                result = await reg.list_networks()
            elif sub is ipc.NetworkSub.JOIN:
                result = await reg.join_network(msg.network_id, msg.token)
            elif sub is ipc.NetworkSub.LEAVE:
                result = await reg.leave_network(msg.network_id)
            elif sub is ipc.NetworkSub.MEMBERS:
                result = await reg.list_nodes(msg.network_id)
            elif sub is ipc.NetworkSub.INVITE:
                result = await reg.invite_to_network(msg.network_id, msg.node_id)
            elif sub is ipc.NetworkSub.POLL_INVITES:
                result = await reg.poll_invites()
            else:
                result = await reg.respond_invite(msg.network_id, msg.accept)
        except Exception as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            return ipc.Error(ERR_GENERIC, f"network {name}: {exc}")
        return self._json(ipc.Command.NETWORK_OK, result)

    def _empty(self, cmd: ipc.Command, now: float) -> ipc.IpcMessage:
        d = self.daemon
        if cmd is ipc.Command.INFO:
            info = d.info(now)
            info["bytes_sent"], info["bytes_recv"] = self.bytes_out, self.bytes_in
            info["tags"], info["task_exec"], info["webhook"] = list(self.tags), self.task_exec, self.webhook_url
            return self._json(ipc.Command.INFO_OK, info)
        if cmd is ipc.Command.HEALTH:
            info = d.info(now)
            return self._json(ipc.Command.HEALTH_OK, {
                "status": "ok", "uptime_seconds": int(info["uptime_secs"]), "connections": info["connections"],
                "peers": info["peers"], "bytes_sent": self.bytes_out, "bytes_recv": self.bytes_in,
            })  # fmt: skip
        return ipc.Error(ERR_GENERIC, f"{cmd.name.lower()}: needs a registry (not configured)")

    def _handshake(self, msg: ipc.HandshakeRequest, now: float) -> dict[str, Any]:
        d, sub = self.daemon, msg.sub
        if sub is ipc.HandshakeSub.SEND:
            return {"status": d.handshake(msg.node_id, msg.text, now), "node_id": msg.node_id}
        if sub is ipc.HandshakeSub.APPROVE:
            d.approve(msg.node_id, now)
            return {"status": "approved", "node_id": msg.node_id}
        if sub is ipc.HandshakeSub.REJECT:
            d.reject(msg.node_id, msg.text, now)
            return {"status": "rejected", "node_id": msg.node_id}
        if sub is ipc.HandshakeSub.REVOKE:
            d.revoke(msg.node_id, now)
            return {"status": "revoked", "node_id": msg.node_id}
        book = d.trust
        if sub is ipc.HandshakeSub.PENDING:
            pending = list(book.pending.values()) if book is not None else []
            return {"pending": [{"node_id": p.node_id, "public_key": _b64(p.public_key),
                                 "justification": p.justification, "received_at": p.received_at}
                                for p in pending]}  # fmt: skip
        trusted = list(book.trusted.values()) if book is not None else []
        return {"trusted": [{"node_id": t.node_id, "public_key": _b64(t.public_key), "approved_at": t.approved_at,
                             "mutual": t.mutual, "network": t.network} for t in trusted]}  # fmt: skip

    async def _text(self, msg: ipc.Text) -> ipc.IpcMessage:
        d = self.daemon
        if msg.command is ipc.Command.SET_HOSTNAME:
            if self.registry is not None:
                await self.registry.set_hostname(msg.text)
            d.hostname = msg.text
            return self._json(ipc.Command.SET_HOSTNAME_OK, {"hostname": msg.text, "node_id": d.node_id})
        if msg.command is ipc.Command.RESOLVE_HOSTNAME:
            if msg.text and msg.text == d.hostname:
                doc: dict[str, Any] = {"node_id": d.node_id, "address": str(d.addr), "hostname": d.hostname}
            elif self.resolver is None:
                return ipc.Error(ERR_GENERIC, f"resolve_hostname: no registry configured to resolve {msg.text!r}")
            else:
                try:
                    doc = await self.resolver(msg.text)
                except (OSError, ValueError, LookupError, PilotError) as exc:
                    return ipc.Error(ERR_GENERIC, f"resolve_hostname: {exc}")
            return self._json(ipc.Command.RESOLVE_HOSTNAME_OK, doc)
        if msg.command is ipc.Command.SET_WEBHOOK:
            return await self._set_webhook(msg.text)
        return ipc.Error(ERR_GENERIC, f"{msg.command.name.lower()}: not supported by this daemon")

    # -- shutdown -------------------------------------------------------------------------------------------

    async def shutdown(self) -> None:
        """Stop the timer, the IPC server and the UDP socket; remove the socket file."""
        self._cancel_timer()
        self._links.cancel()
        if self.webhook is not None:
            poster, self.webhook = self.webhook, None
            await poster.close(drain=2.0)
        for task in list(self._tasks):
            task.cancel()
        if self.ipc_server is not None:
            self.ipc_server.close()
            for client in list(self.clients.values()):
                client.writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ipc_server.wait_closed(), 1.0)
            if self.socket_path is not None:
                with contextlib.suppress(OSError):
                    os.unlink(self.socket_path)
        sock, self.sock = self.sock, None
        if sock is not None and self._loop is not None:
            self._loop.remove_reader(sock.fileno())
            self._loop.remove_writer(sock.fileno())
            sock.close()
        self.closed.set()

    def summary(self) -> str:
        s = self.daemon.stats
        conns = s["accepted"] + s["dialed"]
        return (f"{self.datagrams_in} datagrams in, {self.datagrams_out} out, {conns} connections, {s['keys']} tunnel "
                f"keys ({s['accepted']} accepted, {s['dialed']} dialed), {s['gate_dropped']} untrusted packets "
                f"dropped, {s['rejected']} inputs refused, {self.errors} internal errors"
                + "".join(f", impairment ({side}) dropped {st.dropped} of {st.sent}"
                          for side, st in self.impairment_stats.items()))  # fmt: skip


_NETWORK_NAMES = {
    ipc.NetworkSub.LIST: "list", ipc.NetworkSub.JOIN: "join", ipc.NetworkSub.LEAVE: "leave",
    ipc.NetworkSub.MEMBERS: "members", ipc.NetworkSub.INVITE: "invite", ipc.NetworkSub.POLL_INVITES: "poll-invites",
    ipc.NetworkSub.RESPOND_INVITE: "respond-invite",
}  # fmt: skip


def _socket_alive(path: str) -> bool:
    """Whether something accepts connections on the Unix socket ``path``."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(0.5)
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def _b64(raw: bytes) -> str:
    import base64

    return base64.b64encode(raw).decode("ascii")
