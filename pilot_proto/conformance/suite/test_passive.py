"""Passive checks over a capture (``--pcap FILE``): what two implementations put on the wire (draft 7, 10, 11).

These tests run only with ``--pcap`` (and then only they run); nothing is sent anywhere.  The inner-packet
checks at the end also need ``--keylog FILE`` to decrypt PILS frames; without it they are ``unsupported``."""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pilot_proto.conformance.passive import (
    Datagram,
    Opened,
    Violation,
    counter_order_violations,
    inner_header_violations,
    nonce_reuse_violations,
    sender_binding_violations,
    stream_violations,
    wrong_aad_frames,
)
from pilot_proto.conformance.verdicts import Unsupported
from pilot_proto.profile import Profile
from pilot_proto.tunnel.dangerous import KeyLog
from pilot_proto.wire.frames import auth_kex_signed_message

pytestmark = pytest.mark.conformance_passive
MAGICS = (b"PILT", b"PILS", b"PILK", b"PILA", b"PILP")


def _where(d: Datagram) -> str:
    return f"t={d.t:.6f} {d.src[0]}:{d.src[1]} > {d.dst[0]}:{d.dst[1]} len={len(d.data)}"


@pytest.mark.req("TUN-001", "TUN-009", "TUN-010", "TUN-008")
def test_every_datagram_is_a_frame_or_a_beacon_message(capture: list[Datagram]) -> None:
    bad = [d for d in capture if d.data[:4] not in MAGICS and not (d.data and d.data[0] < 0x10)]
    assert not bad, f"{len(bad)} datagrams are neither tunnel frames nor beacon messages, e.g. {_where(bad[0])}"


@pytest.mark.req("TUN-024", "TUN-023", "TUN-027", "TUN-014", "TUN-011")
def test_frame_sizes(capture: list[Datagram], profile: Profile) -> None:
    draft = profile is Profile.DRAFT
    rules = {
        b"PILK": (lambda n: n == 40) if draft else (lambda n: n >= 40),
        b"PILA": (lambda n: n == 136) if draft else (lambda n: n >= 136),
        b"PILS": lambda n: n >= 36,
        b"PILT": lambda n: n >= 38,
        b"PILP": (lambda n: n == 8) if draft else (lambda n: n in (4, 8)),
    }
    bad = [d for d in capture if d.data[:4] in rules and not rules[d.data[:4]](len(d.data))]
    if bad:
        pytest.fail(
            f"{len(bad)} frames have a wrong size for {profile.value}, e.g. {bad[0].data[:4]!r} {_where(bad[0])}"
        )


@pytest.mark.req("TUN-018")
def test_pila_signatures_verify(capture: list[Datagram]) -> None:
    bad = []
    for d in capture:
        if d.data[:4] != b"PILA" or len(d.data) < 136:
            continue
        sender, x25519, ed, sig = int.from_bytes(d.data[4:8], "big"), d.data[8:40], d.data[40:72], d.data[72:136]
        try:
            Ed25519PublicKey.from_public_bytes(ed).verify(sig, auth_kex_signed_message(sender, x25519))
        except (InvalidSignature, ValueError):
            bad.append(d)
    assert not bad, f"{len(bad)} PILA signatures do not verify under the key they carry, e.g. {_where(bad[0])}"


@pytest.mark.req("CONS-009", "NONCE-004", "CONS-010")
def test_no_nonce_is_used_twice(capture: list[Datagram]) -> None:
    """Same (sender, nonce) with a different ciphertext is nonce reuse; an identical datagram is a duplicate."""
    seen: dict[tuple[tuple[str, int], bytes, bytes], bytes] = {}
    reused = []
    for d in capture:
        if d.data[:4] != b"PILS" or len(d.data) < 36:
            continue
        key = (d.src, d.data[4:8], d.data[8:20])
        prev = seen.setdefault(key, d.data)
        if prev != d.data:
            reused.append(d)
    assert not reused, (
        f"{len(reused)} PILS frames reuse a (sender, nonce) with other ciphertext, e.g. {_where(reused[0])}"
    )


@pytest.mark.req("MTU-002", "TUN-007")
def test_plaintext_frames_hold_one_packet(capture: list[Datagram]) -> None:
    """A PILT datagram is the 4-byte magic, one 34-byte header and exactly Payload Length bytes (38 of overhead)."""
    pilt = [d for d in capture if d.data[:4] == b"PILT"]
    if not pilt:
        raise Unsupported("the capture holds no PILT frame")
    bad = [d for d in pilt if len(d.data) < 38 or len(d.data) != 38 + int.from_bytes(d.data[6:8], "big")]
    assert not bad, f"{len(bad)} of {len(pilt)} PILT frames are not 38 bytes + their payload, e.g. {_where(bad[0])}"


@pytest.mark.req("TUN-006")
def test_punch_frames_name_their_sender(capture: list[Datagram], profile: Profile) -> None:
    """A PILP is the magic and the sender's node ID: the ID its other frames (PILK, PILA, PILS) from the same
    address carry.  go-interop: Go's 4-byte PILP names nobody (E-PILP-1) and is not judged here."""
    ids: dict[tuple[str, int], set[int]] = {}
    for d in capture:
        if d.data[:4] in (b"PILK", b"PILA", b"PILS") and len(d.data) >= 8:
            ids.setdefault(d.src, set()).add(int.from_bytes(d.data[4:8], "big"))
    punches = [d for d in capture if d.data[:4] == b"PILP" and (len(d.data) >= 8 or profile is Profile.DRAFT)]
    judged = [d for d in punches if d.src in ids]
    if not judged:
        raise Unsupported("the capture holds no PILP frame from an address whose node ID its other frames show")
    bad = [d for d in judged if len(d.data) != 8 or int.from_bytes(d.data[4:8], "big") not in ids[d.src]]
    assert not bad, (
        f"{len(bad)} PILP frames do not carry their sender's node ID {sorted(ids[bad[0].src])}, e.g. {_where(bad[0])}"
    )


@pytest.mark.req("SEC-005")
def test_no_plaintext_after_a_key_exchange(capture: list[Datagram]) -> None:
    keyed: set[frozenset[tuple[str, int]]] = set()
    offered: set[tuple[tuple[str, int], tuple[str, int]]] = set()
    bad = []
    for d in capture:
        magic = d.data[:4]
        if magic in (b"PILK", b"PILA"):
            offered.add((d.src, d.dst))
            if (d.dst, d.src) in offered:
                keyed.add(frozenset((d.src, d.dst)))
        elif magic == b"PILT" and frozenset((d.src, d.dst)) in keyed:
            bad.append(d)
    assert not bad, f"{len(bad)} PILT frames between endpoints that had exchanged keys, e.g. {_where(bad[0])}"


# -- inner-packet checks: need --keylog FILE (else unsupported) ----------------------------------------------


def _report(what: str, bad: list[Violation]) -> None:
    if bad:
        first = bad[0]
        pytest.fail(f"{len(bad)} {what}, e.g. {_where(first.frame.d)}: {first.reason}")


@pytest.mark.req("PKT-010", "PKT-002", "PKT-024")
def test_inner_header_crc_and_length(opened: list[Opened], profile: Profile) -> None:
    _report("decrypted inner packets have a bad CRC or length", inner_header_violations(opened, profile))


@pytest.mark.req("SEC-006")
def test_pils_aad_is_the_sender(capture: list[Datagram], keylog: KeyLog, opened: list[Opened]) -> None:
    """A frame that opens only with the other node's ID as AAD carries the wrong AAD (or a re-labelled sender)."""
    bad = wrong_aad_frames(capture, keylog)
    if bad:
        d, other = bad[0]
        pytest.fail(f"{len(bad)} PILS frames are authenticated with another node's ID as AAD, e.g. {_where(d)}: "
                    f"labelled sender {int.from_bytes(d.data[4:8], 'big')}, AAD names {other}")  # fmt: skip


@pytest.mark.req("SEC-027", "SEC-006")
def test_inner_source_is_the_pils_sender(opened: list[Opened], profile: Profile) -> None:
    _report("inner packets name another source node than their PILS sender", sender_binding_violations(opened, profile))


@pytest.mark.req("NONCE-004", "CONS-009")
def test_no_nonce_is_used_twice_under_one_key(opened: list[Opened]) -> None:
    """One key serves both directions: a nonce either side used must not seal anything else under it."""
    _report("PILS frames reuse a (key, nonce) pair", nonce_reuse_violations(opened))


@pytest.mark.req("NONCE-003", "NONCE-004")
def test_counters_grow_per_key_and_prefix(opened: list[Opened]) -> None:
    _report("PILS frames go back in counter order", counter_order_violations(opened))


@pytest.mark.req("SES-030", "SES-031", "SES-080", "SES-081")
def test_stream_sequence_and_window_rules(opened: list[Opened], profile: Profile) -> None:
    _report("stream segments break sequence or window rules", stream_violations(opened, profile))
