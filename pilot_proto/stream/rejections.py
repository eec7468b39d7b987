"""Every way the session layer refuses an input, as data: reason -> the full typed error (draft 5, 6, 8, 10.8, 12).

The endpoint turns each refusal into exactly one :class:`~pilot_proto.sansio.InputRejected` event
carrying the :class:`~pilot_proto.errors.RemoteProtocolError` built here, bumps
``StreamEndpoint.dropped[reason]`` (statistics only) and acts on the error's
:class:`~pilot_proto.errors.Action` in one place (``StreamEndpoint.reject``): ``RST`` answers the
packet with a Stream RST, ``DROP`` discards it.
"""

from __future__ import annotations

from typing import NamedTuple

from pilot_proto.errors import Action, ErrorCode, RemoteProtocolError

__all__ = ["REJECTIONS", "Rejection", "rejection"]


class Rejection(NamedTuple):
    code: ErrorCode
    rule: str
    field: str
    section: str
    requirement: str | None
    action: Action


_D, _R = Action.DROP, Action.RST

REJECTIONS: dict[str, Rejection] = {
    # endpoint level (no connection involved, or before one is found)
    "wrong_destination": Rejection(
        ErrorCode.BAD_ADDRESS, "packet is for another virtual address", "dst", "6", None, _D
    ),
    "version_mismatch": Rejection(
        ErrorCode.BAD_VERSION, "version differs from the supported one", "version", "12.2", "VER-006", _D
    ),
    "unsupported_version_syn": Rejection(
        ErrorCode.UNSUPPORTED_VERSION, "SYN with an unsupported version", "version", "12.2", "VER-005", _R
    ),
    "empty_datagram": Rejection(
        ErrorCode.BAD_VALUE, "a datagram carries one non-empty message", "payload", "6.3", "SES-151", _D
    ),
    "unknown_protocol": Rejection(
        ErrorCode.BAD_PROTOCOL, "protocol is not Stream, Datagram or Control", "protocol", "6", None, _D
    ),
    "rst_no_connection": Rejection(
        ErrorCode.CONNECTION_CLOSED, "RST for no connection (never answered)", "flags", "8.1", "SES-131", _D
    ),
    "no_connection": Rejection(
        ErrorCode.CONNECTION_CLOSED, "no connection and no listener", "dst_port", "8.1", "SES-131", _R
    ),
    "connection_limit": Rejection(
        ErrorCode.TABLE_FULL, "connection limit of the node or port reached", "dst_port", "8.1", None, _R
    ),
    "peer_connection_limit": Rejection(
        ErrorCode.TABLE_FULL, "connection limit for this peer reached", "src", "10.8", None, _R
    ),
    "syn_rate_source": Rejection(ErrorCode.RATE_LIMITED, "per-source SYN rate exceeded", "src", "10.8", "SEC-025", _D),
    "syn_rate_global": Rejection(ErrorCode.RATE_LIMITED, "node-wide SYN rate exceeded", "flags", "10.8", "SEC-025", _D),
    "unsolicited_ping_reply": Rejection(
        ErrorCode.BAD_VALUE, "ping reply matches no ping we sent", "ack", "6.3", "SES-152", _D
    ),
    # connection level
    "ack_of_unsent_data": Rejection(ErrorCode.BAD_VALUE, "acknowledges data never sent", "ack", "8.5", "SES-133", _D),
    "rst_out_of_window": Rejection(
        ErrorCode.BAD_VALUE, "RST sequence outside the receive window", "seq", "8.1", "SES-132", _D
    ),
    "rst_bad_ack": Rejection(
        ErrorCode.BAD_VALUE, "RST in SYN_SENT does not acknowledge our SYN", "ack", "8.1", "SES-132", _D
    ),
    "syn_ack_bad_ack": Rejection(
        ErrorCode.BAD_VALUE, "SYN-ACK does not acknowledge our SYN", "ack", "8.2", "SES-011", _R
    ),
    "ooo_buffer_full": Rejection(
        ErrorCode.BUFFER_FULL, "out-of-order buffer full (segment not acknowledged)", "seq", "8.5.2", "SES-051", _D
    ),
}


def rejection(reason: str, detail: str = "") -> RemoteProtocolError:
    """The typed error for ``reason`` (a key of :data:`REJECTIONS`), ``detail`` appended to its rule."""
    r = REJECTIONS[reason]
    rule = f"{r.rule}: {detail}" if detail else r.rule
    return RemoteProtocolError(r.code, rule, field=r.field, section=r.section, requirement=r.requirement,
                               action=r.action)  # fmt: skip
