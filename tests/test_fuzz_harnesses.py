"""Fuzzing harnesses (issue 12): every harness runs a smoke campaign; the oracles can fail.

The smoke campaign gives every registered harness a fixed, seeded budget of the built-in engine's
inputs (so the default suite stays fast and repeatable); real campaigns run from ``pilot-proto fuzz``.
The same ``fuzz_one_input`` is also driven by hypothesis here, which is how atheris can feed a
hypothesis test too (``test.hypothesis.fuzz_one_input``).
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pilot_proto.errors import DecodeError, ErrorCode
from pilot_proto.fuzzing import decoders, differential, machines
from pilot_proto.fuzzing.engine import minimise, run_campaign
from pilot_proto.fuzzing.harness import Finding, Harness, all_harnesses, select
from pilot_proto.wire.formats import discover

HARNESSES = all_harnesses()
# Machine harnesses do crypto and whole sessions per input: a smaller budget.
BUDGET = {"decoder": 400, "diff": 300, "machine": 40}


def test_every_decoder_has_a_harness_and_every_family_is_there() -> None:
    names = set(HARNESSES)
    assert {f"decoder:{n}" for n in discover()} <= names
    families = {h.family for h in HARNESSES.values()}
    assert families == {"decoder", "diff", "machine"}
    for wanted in ("machine:tunnel@draft", "machine:stream@draft", "machine:beacon-server@draft", "diff:pils",
                   "diff:header@draft", "diff:tunnel_frame@go-interop"):  # fmt: skip
        assert wanted in names


#: Findings the fuzzer made that are still open, each with its issue; strict, so a fix flips them to failures.
KNOWN_FINDINGS: dict[str, str] = {}


@pytest.mark.parametrize(
    "name",
    [pytest.param(n, marks=pytest.mark.xfail(strict=True, reason=KNOWN_FINDINGS[n])) if n in KNOWN_FINDINGS else n
     for n in sorted(HARNESSES)],
)  # fmt: skip
def test_smoke_campaign(name: str) -> None:
    h = HARNESSES[name]
    result = run_campaign(h, runs=BUDGET[h.family], seed=12)
    assert result.runs == BUDGET[h.family] or result.findings
    assert result.findings == [], "\n".join(f"{f.kind}: {f.message} input={f.data.hex()}" for f in result.findings)


@pytest.mark.parametrize("name", ["decoder:header:packet@draft", "diff:header@go-interop", "diff:pils",
                                  "machine:beacon-server@draft"])  # fmt: skip
def test_hypothesis_drives_the_same_entry_point(name: str) -> None:
    fn = HARNESSES[name].fuzz_one_input

    @settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.binary(max_size=300))
    def run(data: bytes) -> None:
        fn(data)

    run()
    assert callable(run.hypothesis.fuzz_one_input)  # what atheris calls to drive a hypothesis test


# -- the oracles can fail ------------------------------------------------------------------------------


def test_decoder_oracle_catches_a_foreign_exception() -> None:
    def bad(data: bytes) -> object:
        if data[:1] == b"\x07":
            raise IndexError("planted")
        raise DecodeError(ErrorCode.TRUNCATED, "x", "short")

    h = decoders.decoder_harness("planted", bad)
    h.fuzz_one_input(b"\x01")  # a PilotError is fine
    with pytest.raises(Finding, match="crash"):
        h.fuzz_one_input(b"\x07\x00")


def test_roundtrip_oracle_catches_a_decoder_that_ignores_a_byte() -> None:
    """A header decoder that accepts a payload-length field it did not check breaks encode(decode(x)) == x."""
    from pilot_proto.wire.header import Packet, decode_packet, encode_packet

    def sloppy(data: bytes) -> Packet:
        return decode_packet(data[:-1]) if len(data) > 34 and data[-1] == 0xEE else decode_packet(data)

    decoders.CANONICAL["planted-header"] = encode_packet
    try:
        h = decoders.decoder_harness("planted-header", sloppy)
        good = select(["decoder:header:packet@draft"])[0].seeds()[0]
        h.fuzz_one_input(good)
        with pytest.raises(Finding, match="roundtrip"):
            h.fuzz_one_input(good + b"\xee")
    finally:
        del decoders.CANONICAL["planted-header"]


def test_engine_finds_minimises_and_saves_a_planted_bug(tmp_path: pytest.TempPathFactory) -> None:
    def planted(data: bytes) -> object:
        if b"PILS" in data and len(data) > 20:
            raise Finding("planted", "PILS frame longer than 20 bytes")
        return len(data) // 8

    seeds = select(["decoder:frames:tunnel_frame@draft"])[0].seeds
    h = Harness("test:planted", planted, seeds, "decoder", "planted bug")
    res = run_campaign(h, runs=5000, seed=3, save_dir=tmp_path)  # type: ignore[arg-type]
    assert [f.kind for f in res.findings] == ["planted"]
    small = res.findings[0].data
    assert b"PILS" in small and len(small) == 21  # minimised to the shortest input that still fails
    assert set(small.replace(b"PILS", b"")) == {0}  # and its other bytes zeroed
    assert res.findings[0].path is not None and res.findings[0].path.read_bytes() == small


def test_minimise_keeps_the_finding_kind() -> None:
    def f(data: bytes) -> object:
        if data.count(b"\x05") >= 2:
            raise Finding("two-fives", "x")
        return None

    assert minimise(f, b"abc\x05def\x05ghi") == b"\x05\x05"


def test_twin_oracle_catches_a_rejected_input_that_changes_state() -> None:
    """A machine that reports a rejection but still counts the input diverges from its twin."""
    from pilot_proto.errors import RemoteProtocolError
    from pilot_proto.sansio import Datagram, InputRejected

    class Leaky:
        def __init__(self) -> None:
            self.count, self.events, self.out = 0, [], []

        def receive_datagram(self, data: bytes, addr: object, now: float) -> None:
            self.count += 1  # the bug: state moves even for rejected input
            if data == b"bad":
                err = RemoteProtocolError(ErrorCode.BAD_VALUE, "planted")
                self.events.append(InputRejected(err, "leaky", addr, len(data)))
            else:
                self.out.append(Datagram(self.count.to_bytes(2, "big"), addr))

        def datagrams_to_send(self) -> list[Datagram]:
            out, self.out = self.out, []
            return out

        def next_event(self) -> object:
            return self.events.pop(0) if self.events else None

        def get_timer(self) -> float | None:
            return None

        def handle_timer(self, now: float) -> None:
            return None

    twin = machines.Twin(Leaky(), Leaky(), "leaky", outer_layers=frozenset({"leaky"}))
    twin.receive(b"ok", "x", 0.0)
    twin.receive(b"bad", "x", 0.0)
    with pytest.raises(Finding, match="twin"):
        twin.receive(b"ok", "x", 0.0)


def test_timer_oracle_catches_a_deadline_that_never_moves() -> None:
    class Stuck:
        def receive_datagram(self, data: bytes, addr: object, now: float) -> None: ...
        def datagrams_to_send(self) -> list[object]:
            return []

        def next_event(self) -> object:
            return None

        def get_timer(self) -> float | None:
            return 5.0

        def handle_timer(self, now: float) -> None: ...

    twin = machines.Twin(Stuck(), Stuck(), "stuck", outer_layers=frozenset())
    twin.timer(1.0)  # a future deadline is fine
    with pytest.raises(Finding, match="timer"):
        twin.timer(6.0)


def test_pils_differential_catches_an_opener_without_replay_check(monkeypatch: pytest.MonkeyPatch) -> None:
    from pilot_proto.tunnel import aead

    h = next(x for x in differential.harnesses() if x.name == "diff:pils")
    replay = h.seeds()[1]  # seals four frames, then delivers frame 0 twice
    h.fuzz_one_input(replay)
    broken = _opener_without_replay(aead)
    monkeypatch.setattr(aead, "PilsOpener", broken)
    with pytest.raises(Finding, match="replay"):
        next(x for x in differential.harnesses() if x.name == "diff:pils").fuzz_one_input(replay)


def _opener_without_replay(aead: object) -> type:
    base = aead.PilsOpener  # type: ignore[attr-defined]

    class NoReplay(base):  # type: ignore[misc,valid-type]
        def open(self, nonce: bytes, ciphertext: bytes) -> bytes:
            return bytes(self._verify(nonce, ciphertext))

    return NoReplay


def test_nonce_oracle_catches_a_repeated_pils_nonce() -> None:
    from pilot_proto.sansio import Datagram

    watch = machines._Nonces("planted")
    frame = b"PILS" + bytes(4) + bytes(12) + bytes(20)
    watch.check(machines.StepOutput([Datagram(frame, "x")], []))
    with pytest.raises(Finding, match="nonce-reuse"):
        watch.check(machines.StepOutput([Datagram(frame, "x")], []))


@pytest.mark.parametrize(("kind", "tamper"), [("lost", "drop"), ("corrupt", "flip")])
def test_stream_oracle_catches_lost_or_corrupted_delivery(
    monkeypatch: pytest.MonkeyPatch, kind: str, tamper: str
) -> None:
    """A stream endpoint that swallows or alters delivered data is caught by the acknowledged/prefix oracle."""
    import dataclasses

    from pilot_proto.stream import StreamEndpoint, events

    h = HARNESSES["machine:stream@draft"]
    seed = h.seeds()[0]  # connect to port 7, send "hello", time passes
    h.fuzz_one_input(seed)
    real = StreamEndpoint.next_event

    def broken(self: StreamEndpoint) -> object:
        ev = real(self)
        if isinstance(ev, events.DataReceived) and self.local_addr.node == 1:  # the endpoint under test
            if tamper == "drop":
                return real(self)
            return dataclasses.replace(ev, data=bytes(b ^ 0xFF for b in ev.data))
        return ev

    monkeypatch.setattr(StreamEndpoint, "next_event", broken)
    with pytest.raises(Finding, match=kind):
        h.fuzz_one_input(seed)
