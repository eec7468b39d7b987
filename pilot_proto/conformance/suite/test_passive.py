"""Passive checks over a capture (``--pcap FILE``): what two implementations put on the wire (draft 7, 10, 11).

These tests run only with ``--pcap`` (and then only they run); nothing is sent anywhere."""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from pilot_proto.conformance.passive import Datagram
from pilot_proto.profile import Profile
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
