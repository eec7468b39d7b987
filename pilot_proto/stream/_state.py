"""Connection states and the transition table, as data (draft 8.1-8.3, 8.5.1, 8.12-8.13).

``TRANSITIONS[(state, input)] = (next_state, action)``.  The table drives the code: a
:class:`~pilot_proto.stream.connection.Connection` changes state only in ``Connection._go``,
which looks the row up, sets the new state and then runs the row's *action* -- the method
``Connection._do_<action>`` (nothing else runs for that input).  A pair that is not in the table
is *not allowed*: an application input raises ``LocalProtocolError(INVALID_STATE)``, a packet
input is ignored (the connection's state is unchanged).  ``tests/test_stream_state.py`` sweeps
every ``State x Input`` pair against a live connection, checks that the action the code ran is
the row's, that every action has its method and that no code outside ``_go`` assigns a state.

A passive connection is born in LISTEN when a SYN reaches a listening port and takes the
``(LISTEN, RECV_SYN)`` row; ``(LISTEN, APP_CLOSE)`` is the port's own row (the endpoint's
``unlisten``).  Sets derived from the table, such as :data:`RECV_STATES`, live here too.
"""

from __future__ import annotations

import enum

__all__ = ["ACTIONS", "ACTIVE_STATES", "RECV_STATES", "TRANSITIONS", "Input", "State", "next_state"]


class State(enum.Enum):
    CLOSED = "CLOSED"
    LISTEN = "LISTEN"
    SYN_SENT = "SYN_SENT"
    SYN_RECEIVED = "SYN_RECEIVED"
    ESTABLISHED = "ESTABLISHED"
    FIN_WAIT = "FIN_WAIT"  # our FIN queued/sent, not yet acknowledged
    CLOSE_WAIT = "CLOSE_WAIT"  # peer FIN received, we have not closed
    LAST_ACK = "LAST_ACK"  # peer FIN received, our FIN sent, awaiting its ACK
    TIME_WAIT = "TIME_WAIT"

    # Members are singletons compared by identity, so the identity hash is consistent; Enum's own __hash__
    # (hash of the name, in Python) made every `state in <frozenset>` test on the packet path a Python call.
    __hash__ = object.__hash__


class Input(enum.Enum):
    APP_CONNECT = "app_connect"
    APP_SEND = "app_send"
    APP_CLOSE = "app_close"
    APP_ABORT = "app_abort"
    RECV_SYN = "recv_syn"
    RECV_SYN_ACK = "recv_syn_ack"  # a SYN|ACK acknowledging our SYN
    RECV_HANDSHAKE_ACK = "recv_handshake_ack"  # the ACK (or data) acknowledging our SYN-ACK
    RECV_DATA = "recv_data"
    RECV_FIN = "recv_fin"  # peer FIN, in sequence (its first arrival)
    RECV_FIN_AGAIN = "recv_fin_again"  # a retransmission of the peer FIN we already consumed
    RECV_FIN_ACK = "recv_fin_ack"  # an ACK covering our FIN
    RECV_RST = "recv_rst"  # an acceptable RST
    TIMEOUT_HANDSHAKE = "timeout_handshake"  # SYN / SYN-ACK retries exhausted
    TIMEOUT_RETRANSMIT = "timeout_retransmit"  # data retransmissions exhausted
    TIMEOUT_IDLE = "timeout_idle"
    TIMEOUT_TIME_WAIT = "timeout_time_wait"
    REUSE = "reuse"  # a new SYN, or our new dial, for a TIME_WAIT 4-tuple whose port is free (E-SES-10)

    __hash__ = object.__hash__  # as State: (state, input) keys are hashed on the packet path


S, I = State, Input  # noqa: E741
_DATA_STATES = (S.ESTABLISHED, S.FIN_WAIT, S.CLOSE_WAIT, S.LAST_ACK, S.TIME_WAIT)

TRANSITIONS: dict[tuple[State, Input], tuple[State, str]] = {
    (S.CLOSED, I.APP_CONNECT): (S.SYN_SENT, "send_syn"),
    (S.LISTEN, I.RECV_SYN): (S.SYN_RECEIVED, "spawn_send_syn_ack"),
    (S.LISTEN, I.APP_CLOSE): (S.CLOSED, "unlisten"),
    # handshake
    (S.SYN_SENT, I.RECV_SYN_ACK): (S.ESTABLISHED, "establish"),
    (S.SYN_SENT, I.APP_SEND): (S.SYN_SENT, "queue"),
    (S.SYN_SENT, I.APP_CLOSE): (S.SYN_SENT, "queue_fin"),  # data + FIN go once connected
    (S.SYN_SENT, I.RECV_RST): (S.CLOSED, "report_reset"),
    (S.SYN_SENT, I.TIMEOUT_HANDSHAKE): (S.CLOSED, "report_timeout"),
    (S.SYN_RECEIVED, I.RECV_SYN): (S.SYN_RECEIVED, "resend_syn_ack"),
    (S.SYN_RECEIVED, I.RECV_HANDSHAKE_ACK): (S.ESTABLISHED, "report_connected"),
    (S.SYN_RECEIVED, I.APP_SEND): (S.SYN_RECEIVED, "queue"),
    (S.SYN_RECEIVED, I.APP_CLOSE): (S.SYN_RECEIVED, "queue_fin"),
    (S.SYN_RECEIVED, I.RECV_RST): (S.CLOSED, "report_reset"),
    (S.SYN_RECEIVED, I.TIMEOUT_HANDSHAKE): (S.CLOSED, "report_timeout"),
    # established
    (S.ESTABLISHED, I.APP_SEND): (S.ESTABLISHED, "send"),
    (S.ESTABLISHED, I.RECV_SYN_ACK): (S.ESTABLISHED, "resend_ack"),
    (S.ESTABLISHED, I.RECV_DATA): (S.ESTABLISHED, "deliver"),
    (S.ESTABLISHED, I.APP_CLOSE): (S.FIN_WAIT, "queue_fin"),
    (S.ESTABLISHED, I.RECV_FIN): (S.CLOSE_WAIT, "ack_fin_report_end"),
    (S.ESTABLISHED, I.TIMEOUT_IDLE): (S.FIN_WAIT, "queue_fin"),
    # closing, active side
    (S.FIN_WAIT, I.RECV_DATA): (S.FIN_WAIT, "deliver"),
    (S.FIN_WAIT, I.RECV_FIN): (S.FIN_WAIT, "ack_fin_report_end"),
    (S.FIN_WAIT, I.RECV_FIN_ACK): (S.TIME_WAIT, "start_time_wait"),
    (S.FIN_WAIT, I.TIMEOUT_IDLE): (S.FIN_WAIT, "none"),
    (S.TIME_WAIT, I.RECV_DATA): (S.TIME_WAIT, "deliver"),
    (S.TIME_WAIT, I.RECV_FIN): (S.TIME_WAIT, "ack_fin_report_end"),
    (S.TIME_WAIT, I.RECV_SYN_ACK): (S.TIME_WAIT, "resend_ack"),
    (S.TIME_WAIT, I.TIMEOUT_TIME_WAIT): (S.CLOSED, "release"),
    (S.TIME_WAIT, I.APP_CLOSE): (S.TIME_WAIT, "none"),
    (S.TIME_WAIT, I.REUSE): (S.CLOSED, "release"),
    # closing, passive side (data there can only be old: "deliver" re-acknowledges it)
    (S.CLOSE_WAIT, I.APP_SEND): (S.CLOSE_WAIT, "send"),
    (S.CLOSE_WAIT, I.RECV_DATA): (S.CLOSE_WAIT, "deliver"),
    (S.CLOSE_WAIT, I.APP_CLOSE): (S.LAST_ACK, "queue_fin"),
    (S.CLOSE_WAIT, I.TIMEOUT_IDLE): (S.LAST_ACK, "queue_fin"),
    (S.LAST_ACK, I.RECV_DATA): (S.LAST_ACK, "deliver"),
    (S.LAST_ACK, I.RECV_FIN_ACK): (S.CLOSED, "release"),
    (S.LAST_ACK, I.APP_CLOSE): (S.LAST_ACK, "none"),
    (S.LAST_ACK, I.TIMEOUT_IDLE): (S.LAST_ACK, "none"),
    (S.FIN_WAIT, I.APP_CLOSE): (S.FIN_WAIT, "none"),
}
for _s in (S.SYN_SENT, S.SYN_RECEIVED, *_DATA_STATES):
    TRANSITIONS[(_s, I.APP_ABORT)] = (S.CLOSED, "send_rst")
for _s in (S.ESTABLISHED, S.FIN_WAIT, S.CLOSE_WAIT, S.LAST_ACK):
    TRANSITIONS[(_s, I.RECV_RST)] = (S.CLOSED, "report_reset")
    TRANSITIONS[(_s, I.TIMEOUT_RETRANSMIT)] = (S.CLOSED, "send_rst_report_timeout")
    TRANSITIONS[(_s, I.RECV_SYN)] = (_s, "resend_ack")
for _s in (S.FIN_WAIT, S.CLOSE_WAIT, S.LAST_ACK, S.TIME_WAIT):
    TRANSITIONS[(_s, I.RECV_FIN_AGAIN)] = (_s, "resend_ack")
TRANSITIONS[(S.TIME_WAIT, I.RECV_RST)] = (S.CLOSED, "release")
TRANSITIONS[(S.TIME_WAIT, I.RECV_SYN)] = (S.TIME_WAIT, "resend_ack")
del _s

#: Every action name the table uses; each is a ``Connection._do_<name>`` method (``unlisten``: the endpoint's).
ACTIONS = frozenset(action for _, action in TRANSITIONS.values())
#: States that take stream data (a RECV_DATA row exists): derived, never listed twice.
RECV_STATES = frozenset(state for state, inp in TRANSITIONS if inp is I.RECV_DATA)

#: States in which a connection counts as active (TIME_WAIT holds a port but is not active, draft 8.13).
ACTIVE_STATES = frozenset({S.SYN_SENT, S.SYN_RECEIVED, S.ESTABLISHED, S.FIN_WAIT, S.CLOSE_WAIT, S.LAST_ACK})


def next_state(state: State, inp: Input) -> tuple[State, str] | None:
    """The table row for ``(state, inp)``, or ``None`` when the input is not allowed there."""
    return TRANSITIONS.get((state, inp))
