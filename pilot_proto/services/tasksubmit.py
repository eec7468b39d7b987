"""Task submission, port 1003 (draft 14.4): one frame per connection, as the Go reference daemon serves it.

* ``Submit`` -> a ``Result`` (200, "Task received with status NEW"), then close; the task is queued;
* ``StatusUpdate`` and ``SendResults`` -> recorded, then close (no reply, like Go).

Each message is surfaced as a :class:`TaskReceived` event.  Polo-score admission needs the registry and
is left to the daemon (``accept`` callback); without one every task is accepted, as Go does.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from pilot_proto.sansio import Event
from pilot_proto.services.base import ServiceConn, StreamService
from pilot_proto.wire.address import SocketAddr
from pilot_proto.wire.ports import WellKnownPort
from pilot_proto.wire.tasksubmit import (
    RESULT_ACCEPTED,
    RESULT_REJECTED,
    Result,
    Submit,
    TaskFrameReader,
    TaskMessage,
    encode_task_frame,
)

__all__ = ["MAX_QUEUE", "TaskReceived", "TaskSubmitService"]

MAX_QUEUE = 1024  # tasks kept in the queue (oldest dropped beyond)
ACCEPTED_MESSAGE = "Task received with status NEW"


@dataclass(frozen=True, slots=True)
class TaskReceived(Event):
    conn_id: int
    remote: SocketAddr
    message: TaskMessage
    accepted: bool | None = None  # for a Submit: what we answered


class TaskSubmitService(StreamService):
    name = "tasksubmit"

    def __init__(
        self,
        port: int = WellKnownPort.TASK_SUBMIT,
        *,
        accept: Callable[[Submit, SocketAddr], tuple[bool, str]] | None = None,
        max_pending: int = 1 << 20,
    ) -> None:
        super().__init__(port, max_pending=max_pending)
        self._accept = accept
        self._readers: dict[int, TaskFrameReader] = {}
        self.queue: deque[str] = deque(maxlen=MAX_QUEUE)

    def on_open(self, conn_id: int, now: float) -> None:
        self._readers[conn_id] = TaskFrameReader()

    def on_data(self, conn_id: int, conn: ServiceConn, data: bytes, now: float) -> None:
        reader = self._readers.get(conn_id)
        if reader is None or conn.close_when_drained:
            return  # one frame per connection; anything after it is ignored, as Go ignores it
        reader.feed(data)
        msg = reader.next_message()
        if msg is None:
            return
        if isinstance(msg, Submit):
            ok, text = self._accept(msg, conn.remote) if self._accept is not None else (True, ACCEPTED_MESSAGE)
            if ok:
                self.queue.append(msg.task_id)
            conn.out += encode_task_frame(Result(msg.task_id, RESULT_ACCEPTED if ok else RESULT_REJECTED, text))
            self.emit(TaskReceived(conn_id, conn.remote, msg, ok))
        else:
            self.emit(TaskReceived(conn_id, conn.remote, msg))
        self._readers.pop(conn_id, None)
        self.finish(conn_id)

    def on_closed(self, conn_id: int) -> None:
        self._readers.pop(conn_id, None)
