"""pilot-proto: sans-IO reference implementation of Pilot Protocol.

Implements draft-teodor-pilot-protocol-01.  The core (wire formats, tunnel,
stream, NAT) never opens a socket, reads a clock, sleeps or starts a thread;
I/O lives in thin drivers.
"""

from pilot_proto.errors import DecodeError, ErrorCode, LocalProtocolError, PilotError, RemoteProtocolError
from pilot_proto.profile import Profile

__version__ = "0.1.0"
DRAFT_NAME = "draft-teodor-pilot-protocol-01"

__all__ = [
    "DRAFT_NAME",
    "DecodeError",
    "ErrorCode",
    "LocalProtocolError",
    "PilotError",
    "Profile",
    "RemoteProtocolError",
    "__version__",
]
