"""Built-in services at protocol level (draft 10.5, 10.6, 14), sans-IO over stream events.

Each service is a :class:`~pilot_proto.services.base.StreamService` for one virtual port: fed
``(conn_id, bytes)`` and pulled for the bytes to write, honouring backpressure (see
:mod:`pilot_proto.services.base`).  The daemon (:mod:`pilot_proto.daemon`) binds them.
"""

from pilot_proto.services.base import StreamService
from pilot_proto.services.dataexchange import DataExchangeService, FrameReceived
from pilot_proto.services.echo import EchoService
from pilot_proto.services.eventstream import EventStreamService
from pilot_proto.services.secure import SecureService
from pilot_proto.services.tasksubmit import TaskReceived, TaskSubmitService
from pilot_proto.services.trust import RelayAction, TrustChanged, TrustRequested, TrustService

__all__ = [
    "DataExchangeService",
    "EchoService",
    "EventStreamService",
    "FrameReceived",
    "RelayAction",
    "SecureService",
    "StreamService",
    "TaskReceived",
    "TaskSubmitService",
    "TrustChanged",
    "TrustRequested",
    "TrustService",
]
