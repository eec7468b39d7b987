"""Typed errors for every layer of Pilot Protocol.

One base class, :class:`PilotError`, split the way h11 splits its errors:

* :class:`RemoteProtocolError` -- the *peer* sent something that breaks a rule
  (bad CRC, truncated frame, forged tag ...). Decoders raise
  :class:`DecodeError`, a subclass that always names the offending field.
* :class:`LocalProtocolError` -- *our* caller asked for something the protocol
  forbids (payload over 65535 bytes, sending on a closed stream ...).

Every error carries a :class:`ErrorCode` from a closed enum, the field and the
rule it broke, the draft section, the requirement ID from ``spec/`` where one
applies, and -- like h2/wsproto -- a hint of what a stack should do about it
(:class:`Action`).  State machines that raise these errors stay usable.
"""

from __future__ import annotations

import enum

__all__ = [
    "Action",
    "DecodeError",
    "ErrorCode",
    "LocalProtocolError",
    "PilotError",
    "RemoteProtocolError",
]


class Action(enum.Enum):
    """What a receiving stack should do with input that raised the error."""

    DROP = "drop"  # discard silently (maybe log); no reply
    RST = "rst"  # answer with a Stream RST
    CLOSE = "close"  # tear the session / connection down
    RAISE = "raise"  # local misuse: surface it to the application
    REKEY = "rekey"  # start a fresh key exchange


class ErrorCode(enum.Enum):
    """Closed set of error codes.  The value is the stable string used in vectors."""

    # -- generic decoding (any format) -------------------------------------
    TRUNCATED = "truncated"  # fewer bytes than the format needs
    LENGTH_MISMATCH = "length_mismatch"  # a length field disagrees with the data
    TRAILING_DATA = "trailing_data"  # bytes after the end of a complete message
    BAD_MAGIC = "bad_magic"  # unknown or wrong 4-byte magic / type byte
    BAD_VALUE = "bad_value"  # a field holds a value the format forbids
    OUT_OF_RANGE = "out_of_range"  # an integer outside its field's range
    TOO_LARGE = "too_large"  # a message over a size limit
    BAD_ENCODING = "bad_encoding"  # text/JSON/UTF-8/base64 that does not parse
    # -- addressing (section 4) --------------------------------------------
    BAD_ADDRESS = "bad_address"
    # -- packet header (section 6, 12) ---------------------------------------
    BAD_CHECKSUM = "bad_checksum"
    BAD_VERSION = "bad_version"
    BAD_PROTOCOL = "bad_protocol"
    BAD_FLAGS = "bad_flags"
    # -- tunnel and crypto (sections 7, 10, 11, 19) ---------------------------
    NO_SESSION_KEY = "no_session_key"
    AUTH_FAILED = "auth_failed"  # AEAD tag did not verify
    BAD_SIGNATURE = "bad_signature"
    UNKNOWN_IDENTITY = "unknown_identity"  # no Ed25519 key known for that node
    IDENTITY_MISMATCH = "identity_mismatch"  # key in frame != known key
    REPLAY = "replay"
    TOO_OLD = "too_old"  # counter below the replay window
    SENDER_MISMATCH = "sender_mismatch"  # inner source node != tunnel sender
    BAD_PUBLIC_KEY = "bad_public_key"  # low-order / all-zero X25519 result
    NONCE_EXHAUSTED = "nonce_exhausted"
    PLAINTEXT_REFUSED = "plaintext_refused"  # PILT after a key exists
    AUTH_REQUIRED = "auth_required"  # PILK where policy demands PILA (downgrade)
    # -- session layer (sections 8, 12) ---------------------------------------
    INVALID_STATE = "invalid_state"  # input not allowed in the current state
    CONNECTION_RESET = "connection_reset"
    CONNECTION_TIMEOUT = "connection_timeout"
    CONNECTION_CLOSED = "connection_closed"
    UNSUPPORTED_VERSION = "unsupported_version"
    WINDOW_VIOLATION = "window_violation"  # data beyond the advertised window
    BUFFER_FULL = "buffer_full"
    # -- NAT traversal (section 9) --------------------------------------------
    UNREACHABLE = "unreachable"  # direct and relay attempts exhausted
    RATE_LIMITED = "rate_limited"
    UNKNOWN_PEER = "unknown_peer"
    SPOOFED = "spoofed"  # message from an address that may not send it
    TABLE_FULL = "table_full"


class PilotError(Exception):
    """Base of every error this package raises on purpose.

    Attributes:
        code: the :class:`ErrorCode`.
        field: the field (``"header.checksum"``, ``"pils.tag"`` ...) that broke the rule.
        rule: one line saying which rule was broken.
        section: the draft section (``"6.5"``) that states the rule.
        requirement: requirement ID from ``spec/requirements`` where one applies.
        action: what the receiving stack should do (drop, RST, close ...).
    """

    default_action = Action.DROP

    def __init__(
        self,
        code: ErrorCode,
        rule: str,
        *,
        field: str | None = None,
        section: str | None = None,
        requirement: str | None = None,
        action: Action | None = None,
    ) -> None:
        self.code = code
        self.rule = rule
        self.field = field
        self.section = section
        self.requirement = requirement
        self.action = action if action is not None else self.default_action
        super().__init__(self._render())

    def _render(self) -> str:
        parts = [f"[{self.code.value}]"]
        if self.field:
            parts.append(f"{self.field}:")
        parts.append(self.rule)
        refs = []
        if self.section:
            refs.append(f"draft \u00a7{self.section}")
        if self.requirement:
            refs.append(self.requirement)
        if refs:
            parts.append(f"({', '.join(refs)})")
        return " ".join(parts)

    def to_dict(self) -> dict[str, str | None]:
        """Machine-readable form, as used in vectors and conformance reports."""
        return {
            "code": self.code.value,
            "field": self.field,
            "rule": self.rule,
            "section": self.section,
            "requirement": self.requirement,
            "action": self.action.value,
        }


class RemoteProtocolError(PilotError):
    """The peer violated the protocol; the state machine is still usable."""


class DecodeError(RemoteProtocolError):
    """Bytes from the wire do not form a valid message of the expected format."""

    def __init__(
        self,
        code: ErrorCode,
        field: str,
        rule: str,
        *,
        section: str | None = None,
        requirement: str | None = None,
        action: Action | None = None,
    ) -> None:
        super().__init__(code, rule, field=field, section=section, requirement=requirement, action=action)


class LocalProtocolError(PilotError):
    """Our caller asked for something the protocol forbids."""

    default_action = Action.RAISE
