"""Draft 14, 8.10, 6.3: the built-in services -- echo (7), data exchange (1001), event stream (1002), task
submission (1003) -- judged by talking to them and decoding their replies; segmentation and datagrams.  A service
the target does not run (RST to its port) is ``unsupported``."""

from __future__ import annotations

import json
import re
import struct
import time
from collections.abc import Callable

import pytest

from pilot_proto.conformance.harness import DATAGRAM, STREAM, Peer, Stream
from pilot_proto.conformance.suite._common import QUIET
from pilot_proto.conformance.suite._services import collect, frames, release, wait_acked
from pilot_proto.conformance.verdicts import Inconclusive, NotApplicable, Unsupported
from pilot_proto.profile import Profile
from pilot_proto.wire.header import Packet

ECHO = 7


@pytest.mark.req("SVC-001", "PORT-012")
@pytest.mark.parametrize("size", [1, 1000])
def test_echo_returns_bytes_unchanged(peer: Peer, size: int) -> None:
    peer.keyed()
    s = peer.stream(ECHO)
    s.connect()
    data = bytes(peer.rng.getrandbits(8) for _ in range(size))
    s.send(data)
    assert s.read(size) == data


@pytest.mark.req("SVC-001", "SES-093", "SES-040")
def test_echo_of_many_segments(peer: Peer) -> None:
    peer.keyed()
    s = peer.stream(ECHO)
    s.connect()
    data = peer.rng.randbytes(20000)
    for off in range(0, len(data), 1000):
        s.send(data[off : off + 1000])
    assert s.read(len(data), 8.0) == data, "20 kB echoed through 20 segments came back different"


@pytest.mark.req("SES-064")
def test_sack_lookalike_data_is_data(peer: Peer) -> None:
    if peer.target.profile is not Profile.DRAFT:
        raise NotApplicable("go-interop: Go parses SACK-looking data as SACK (erratum E-SACK-1)")
    peer.keyed()
    s = peer.stream(ECHO)
    s.connect()
    data = b"SACK\x01" + bytes(8)
    s.send(data)
    assert s.read(len(data)) == data, "data that looks like a SACK payload was not delivered as data"


@pytest.mark.req("SES-150", "SES-151")
def test_datagram_to_unbound_port_gets_no_stream_answer(peer: Peer) -> None:
    peer.keyed()
    pkt = Packet(0, DATAGRAM, peer.addr(), peer.target_addr(), peer.new_port(), 4094, payload=b"datagram")
    peer.send_packet(pkt)
    got = [p for p in peer.packets_during(QUIET) if p.protocol == STREAM]
    assert not got, f"a datagram was answered with stream packets: {[p.describe() for p in got]}"
    peer.alive()


# -- data exchange, port 1001 (draft 14.2) -----------------------------------------------------------------------

DX = 1001
_ACK = re.compile(r"ACK (\w+) (\d+) bytes")


def _dx_frame(ftype: int, payload: bytes) -> bytes:
    return struct.pack(">II", ftype, len(payload)) + payload


def _file_payload(name: bytes, data: bytes) -> bytes:
    return struct.pack(">H", len(name)) + name + data


def _dx_replies(s: Stream, n: int, duration: float = 3.0) -> tuple[list[tuple[int, bytes]], bytes, str]:
    """Up to ``n`` reply frames from the data-exchange service (type u32 BE, length u32 BE, payload)."""
    buf = b""
    end = "open"
    deadline = time.monotonic() + s.peer.wait(duration)
    while (left := (deadline - time.monotonic()) / s.peer.target.scale) > 0:
        got, end = collect(s, left, want=1)
        buf += got
        done, _ = frames(buf)
        if len(done) >= n or end != "open" or not got:
            break
    done, rest = frames(buf)
    return done, rest, end


@pytest.mark.req("SVC-010", "SVC-011", "SVC-012", "SVC-014", "SVC-015")
def test_dataexchange_reads_every_frame_type(peer: Peer) -> None:
    """Text, Binary, JSON and File frames (type u32 BE, length u32 BE, payload; File: name_len u16 BE, name, data)
    each get a reply frame; replies of the 'ACK <TYPE> <n> bytes' form (Go, our node) must name the type we sent and
    the payload length it carried -- for File the data after the name, which shows the name was split off."""
    peer.keyed()
    s = peer.stream(DX)
    s.connect()
    data = peer.rng.randbytes(100)
    sent = [
        (1, "pilot conformance \u00e9".encode(), "TEXT", len("pilot conformance \u00e9".encode())),
        (2, peer.rng.randbytes(40), "BINARY", 40),
        (3, b'{"suite": "pilot", "n": [1, 2]}', "JSON", 31),
        (4, _file_payload(b"conformance.bin", data), "FILE", len(data)),
    ]
    for ftype, payload, _, _ in sent:
        s.send(_dx_frame(ftype, payload))
    replies, rest, end = _dx_replies(s, len(sent))
    release(s)
    if not replies and not rest and end == "open":
        raise Unsupported("the data-exchange service wrote nothing back, so how it read our frames cannot be seen")
    assert end != "rst", f"the service reset the connection after {len(replies)} replies to four valid frames"
    assert not rest, f"reply bytes that are not a whole type/length/payload frame: {rest[:40].hex()}"
    assert len(replies) == len(sent), f"{len(replies)} reply frames to {len(sent)} frames"
    texts = []
    for ftype, payload in replies:
        assert ftype in (1, 2, 3, 4), f"reply frame of type {ftype:#x} (types are 0x01..0x04)"
        if ftype == 1:
            try:
                texts.append(payload.decode("utf-8"))
            except UnicodeDecodeError:
                pytest.fail(f"a Text reply frame is not UTF-8: {payload[:40]!r}")
    acks = [_ACK.fullmatch(t) for t in texts]
    if len(acks) != len(sent) or not all(acks):
        raise Unsupported(f"the replies are frames but not 'ACK <TYPE> <n> bytes' texts ({texts[:2]}), so how the "
                          "service read our frames cannot be judged")  # fmt: skip
    for m, (_, _, name, n) in zip(acks, sent, strict=True):
        assert m is not None
        assert m.group(1) == name, f"the service read our {name} frame as {m.group(1)}"
        assert int(m.group(2)) == n, f"the service counted {m.group(2)} payload bytes in our {name} frame, sent {n}"


def _refused(peer: Peer, frame: bytes, what: str, duration: float = 1.5) -> None:
    """Send ``frame`` to the data-exchange service on a new connection: it must not be acknowledged, and an
    answer must end the connection."""
    peer.keyed()
    s = peer.stream(DX)
    s.connect()
    s.send(frame)
    replies, _, end = _dx_replies(s, 1, duration)
    release(s)
    acked = [p for t, p in replies if t == 1 and p.startswith(b"ACK ")]
    assert not acked, f"the service acknowledged {what}: {acked[0][:60]!r}"
    assert end != "open" or not replies, f"the service answered {what} and kept the connection open"


@pytest.mark.req("SVC-011")
def test_dataexchange_unknown_type_is_not_acknowledged(peer: Peer) -> None:
    """Types other than 0x01..0x04 are invalid: no ACK may come for a frame of type 0x05."""
    if peer.target.profile is not Profile.DRAFT:
        raise NotApplicable("go-interop: Go hands any type to the application and acknowledges it (erratum E-SVC-2)")
    _refused(peer, _dx_frame(5, b"five"), "a frame of type 0x05")


@pytest.mark.req("SVC-016")
def test_dataexchange_length_over_16_mib_is_refused_at_once(peer: Peer) -> None:
    """A header announcing 2^24 + 1 payload bytes is refused before buffering (the connection ends); one announcing
    exactly 2^24 is not (the service waits for the payload)."""
    peer.keyed()
    ok = peer.stream(DX)
    ok.connect()
    ok.send(struct.pack(">II", 2, 1 << 24) + b"x" * 64)
    big = peer.stream(DX)
    big.connect()
    big.send(struct.pack(">II", 2, (1 << 24) + 1) + b"x" * 64)
    _, end = collect(big, 2.0)
    release(big)
    _, end_ok = collect(ok, QUIET)
    release(ok)
    assert end != "open", "a frame announcing 2^24 + 1 bytes was not refused within 2 s (it waits to buffer it)"
    assert end_ok == "open", f"a frame announcing exactly 2^24 bytes (the maximum) ended the connection ({end_ok})"


@pytest.mark.level("SHOULD")
@pytest.mark.req("SVC-012")
def test_dataexchange_text_that_is_not_utf8_is_not_acknowledged(peer: Peer) -> None:
    """Our reading: a Text frame whose payload is not UTF-8 is refused (erratum E-CB-1)."""
    if peer.target.profile is not Profile.DRAFT:
        raise NotApplicable("go-interop: Go acknowledges a Text frame without checking its UTF-8 (erratum E-CB-1)")
    _refused(peer, _dx_frame(1, b"caf\xe9 \xff"), "a Text frame that is not UTF-8")


@pytest.mark.level("SHOULD")
@pytest.mark.req("SVC-013")
def test_dataexchange_json_that_does_not_parse_is_not_acknowledged(peer: Peer) -> None:
    """Our reading: a JSON frame whose payload is not one JSON document is refused (erratum E-CB-1)."""
    if peer.target.profile is not Profile.DRAFT:
        raise NotApplicable("go-interop: Go acknowledges a JSON frame without parsing it (erratum E-CB-1)")
    _refused(peer, _dx_frame(3, b'{"open": [1, 2'), "a JSON frame that does not parse")


# -- event stream, port 1002 (draft 14.3) ------------------------------------------------------------------------

EV = 1002


def _record(topic: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">H", len(topic)) + topic + struct.pack(">I", len(payload)) + payload


def _records(buf: bytes) -> tuple[list[tuple[bytes, bytes]], bytes]:
    out: list[tuple[bytes, bytes]] = []
    off = 0
    while len(buf) - off >= 2:
        (tl,) = struct.unpack_from(">H", buf, off)
        if len(buf) - off < 6 + tl:
            break
        (pl,) = struct.unpack_from(">I", buf, off + 2 + tl)
        if len(buf) - off < 6 + tl + pl:
            break
        out.append((buf[off + 2 : off + 2 + tl], buf[off + 6 + tl : off + 6 + tl + pl]))
        off += 6 + tl + pl
    return out, buf[off:]


def _subscribers(peer: Peer, subs: list[bytes]) -> list[Stream]:
    conns = []
    for first in subs:
        s = peer.stream(EV)
        s.connect()
        s.send(first)
        conns.append(s)
    for s in conns:
        if not wait_acked(s):
            raise Inconclusive("the event-stream service did not acknowledge a subscription within 2 s")
    return conns


def _pubsub(
    peer: Peer, sub: Callable[[bytes], bytes], pub: Callable[[bytes, bytes], bytes], ev: Callable[[bytes, bytes], bytes]
) -> dict[str, bytes]:
    """Subscriber of T, subscriber of '*', publisher (itself subscribed to T) publishing on T and then on U: what
    each connection received (``ev`` builds the delivery we expect, to stop reading once it is complete)."""
    topic, other = b"conf.t%d" % peer.rng.randrange(1000), b"conf.u%d" % peer.rng.randrange(1000)
    s_topic, s_all, s_pub = _subscribers(peer, [sub(topic), sub(b"*"), sub(topic)])
    s_pub.send(pub(topic, b"first-event"))
    s_pub.send(pub(other, b"second-event"))
    one = len(ev(topic, b"first-event"))
    got = {}
    for name, s, want in (("topic", s_topic, one), ("all", s_all, one + len(ev(other, b"second-event"))),
                          ("publisher", s_pub, None)):  # fmt: skip
        data, _ = collect(s, 1.0 if want else QUIET, want=want)
        if want:  # anything more (a duplicate, the other topic) would follow at once
            more, _ = collect(s, 0.1)
            data += more
        got[name] = data
        release(s)
    return got | {"T": topic, "U": other}


@pytest.mark.req("SVC-020", "SVC-021", "SVC-029", "SVC-022", "SVC-023", "SVC-024", "SVC-025")
def test_eventstream_text_commands(peer: Peer) -> None:
    """Draft reading: 'SUB <topic>\\n' and 'PUB <topic> <payload>\\n' in, 'EVENT <topic> <payload>\\n' out; an event
    reaches the topic's and '*' subscribers, not its publisher."""
    if peer.target.profile is not Profile.DRAFT:
        raise NotApplicable("go-interop: the event stream speaks Go's binary records (erratum E-SVC-1)")
    peer.keyed()
    got = _pubsub(peer, lambda t: b"SUB " + t + b"\n", lambda t, p: b"PUB " + t + b" " + p + b"\n",
                  lambda t, p: b"EVENT " + t + b" " + p + b"\n")  # fmt: skip
    t, u = got["T"], got["U"]
    assert got["topic"] == b"EVENT " + t + b" first-event\n", f"subscriber of the topic got {got['topic'][:80]!r}"
    assert got["all"] == b"EVENT " + t + b" first-event\nEVENT " + u + b" second-event\n", (
        f"the '*' subscriber got {got['all'][:120]!r}"
    )
    assert got["publisher"] == b"", f"the publisher got its own events back: {got['publisher'][:80]!r}"


@pytest.mark.req("SVC-020", "SVC-021", "SVC-029", "SVC-026", "SVC-028")
def test_eventstream_binary_records(peer: Peer) -> None:
    """Go reading: records topic_len u16 BE, topic, payload_len u32 BE, payload; a connection's first record is its
    subscription, later ones publish; an event reaches the topic's and '*' subscribers, not its publisher."""
    if peer.target.profile is Profile.DRAFT:
        raise NotApplicable("draft profile: text lines, not the go-interop binary records (erratum E-SVC-1)")
    peer.keyed()
    got = _pubsub(peer, lambda t: _record(t), lambda t, p: _record(t, p), lambda t, p: _record(t, p))
    t, u = got["T"], got["U"]
    recs = {k: _records(got[k]) for k in ("topic", "all", "publisher")}
    assert recs["topic"] == ([(t, b"first-event")], b""), f"subscriber of the topic got {got['topic'][:80]!r}"
    assert recs["all"] == ([(t, b"first-event"), (u, b"second-event")], b""), f"the '*' subscriber got {got['all']!r}"
    assert got["publisher"] == b"", f"the publisher got its own events back: {got['publisher'][:80]!r}"


@pytest.mark.req("SVC-027")
def test_eventstream_oversize_lengths_are_refused_at_once(peer: Peer) -> None:
    """Go reading: a topic length over 1024 or a payload length over 2^24 ends the connection before buffering."""
    if peer.target.profile is Profile.DRAFT:
        raise NotApplicable("draft profile: text lines, not the go-interop binary records (erratum E-SVC-1)")
    peer.keyed()
    topic = peer.stream(EV)
    topic.connect()
    topic.send(struct.pack(">H", 1025) + b"t" * 64)
    payload = peer.stream(EV)
    payload.connect()
    payload.send(_record(b"conf.sub"))
    payload.send(struct.pack(">H", 4) + b"conf" + struct.pack(">I", (1 << 24) + 1) + b"p" * 64)
    ends = {}
    for name, s in (("topic", topic), ("payload", payload)):
        _, ends[name] = collect(s, 2.0)
        release(s)
    assert ends["topic"] != "open", "a record announcing a 1025-byte topic was not refused within 2 s"
    assert ends["payload"] != "open", "a record announcing 2^24 + 1 payload bytes was not refused within 2 s"


# -- task submission, port 1003 (draft 14.4) ---------------------------------------------------------------------

TASK = 1003


@pytest.mark.req("SVC-031", "SVC-033", "SVC-034")
def test_task_submit_is_answered_with_a_result(peer: Peer) -> None:
    """A Submit frame (type 1, JSON task_id/task_description/from_addr/to_addr) is answered with one Result frame
    (type 2; go-interop also takes GoB's type 1, erratum E-CB-2) whose JSON body holds our task_id, status 200 or 400
    and a message."""
    peer.keyed()
    s = peer.stream(TASK)
    s.connect()
    task_id = f"conf-{peer.rng.getrandbits(48):012x}"
    body = json.dumps({"task_id": task_id, "task_description": "conformance: do nothing",
                       "from_addr": str(peer.addr()), "to_addr": str(peer.target_addr())}).encode()  # fmt: skip
    s.send(struct.pack(">II", 1, len(body)) + body)
    buf, end = collect(s, 3.0)
    if end != "fin":
        release(s)
    done, rest = frames(buf)
    assert done, f"no Result frame within 3 s (got {buf[:60]!r}, connection {end})"
    assert not rest and len(done) == 1, f"expected one Result frame, got {len(done)} frames + {len(rest)} bytes"
    ftype, reply = done[0]
    go_tag = peer.target.profile is not Profile.DRAFT and ftype == 1  # GoB tags its response TypeSubmit (E-CB-2)
    assert ftype == 2 or go_tag, f"the answer to a Submit is a frame of type {ftype} (Result is 2)"
    try:
        doc = json.loads(reply)
    except ValueError:
        pytest.fail(f"the Result body is not JSON: {reply[:80]!r}")
    assert isinstance(doc, dict), f"the Result body is not a JSON object: {reply[:80]!r}"
    assert doc.get("task_id") == task_id, f"the Result names task {doc.get('task_id')!r}, we submitted {task_id!r}"
    assert doc.get("status") in (200, 400), f"Result status {doc.get('status')!r} (200 accepted, 400 rejected)"
    assert isinstance(doc.get("message", ""), str), f"Result message is not a string: {doc.get('message')!r}"


@pytest.mark.req("SVC-032", "SVC-031")
def test_task_frame_over_16_mib_is_refused(peer: Peer) -> None:
    """A task-submit header announcing a body of 2^24 + 1 bytes gets no Result and the connection ends."""
    peer.keyed()
    s = peer.stream(TASK)
    s.connect()
    s.send(struct.pack(">II", 1, (1 << 24) + 1) + b"{" * 64)
    buf, end = collect(s, 2.0)
    release(s)
    assert not frames(buf)[0], f"a Submit announcing 2^24 + 1 bytes was answered: {buf[:60]!r}"
    assert end != "open", "a Submit announcing 2^24 + 1 bytes was not refused within 2 s (it waits to buffer it)"
