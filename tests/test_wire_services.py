"""Service wire formats: port 443 framing, 444 trust JSON, 1001 data exchange, 1002 event stream, 1003 tasks."""

from __future__ import annotations

import base64
import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilot_proto.errors import DecodeError, ErrorCode, LocalProtocolError, PilotError
from pilot_proto.profile import Profile
from pilot_proto.wire import dataexchange as dx
from pilot_proto.wire import eventstream as es
from pilot_proto.wire import secure, trust
from pilot_proto.wire import tasksubmit as ts
from pilot_proto.wire._codec import StreamDecoder

FAST = settings(max_examples=80, deadline=None)
profiles = st.sampled_from(list(Profile))


def _feed_bytewise(decoder: StreamDecoder[object], data: bytes) -> list[object]:
    out: list[object] = []
    for i in range(len(data)):
        decoder.feed(data[i : i + 1])
        out.extend(decoder.messages())
    return out


def _err(fn: object, *args: object) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        fn(*args)  # type: ignore[operator]
    assert info.value.section and info.value.requirement, "every decode error names section and requirement"
    return info.value


# -- port 443 ---------------------------------------------------------------------------------

records = st.builds(
    secure.Record,
    st.builds(secure.record_nonce, st.sampled_from(list(secure.Role)), st.integers(0, 2**64 - 1)),
    st.binary(min_size=16, max_size=200),
)


class TestSecureFraming:
    @pytest.mark.req("SEC-012", "SVC-051", "NONCE-007")
    def test_layout_and_length_semantics(self) -> None:
        rec = secure.Record(secure.record_nonce(secure.Role.CLIENT, 1), b"C" * 5 + b"T" * 16)
        raw = rec.encode()
        assert raw[:4] == struct.pack(">I", 12 + 21)  # len counts nonce + ciphertext + tag, not itself
        assert raw[4:16] == bytes.fromhex("000000020000000000000001")
        assert raw[16:] == b"C" * 5 + b"T" * 16
        assert (rec.prefix, rec.counter) == (2, 1)
        assert secure.record_nonce(secure.Role.SERVER, 0)[:4] == b"\x00\x00\x00\x01"

    @pytest.mark.req("SEC-012", "SVC-051")
    @FAST
    @given(st.lists(records, min_size=1, max_size=4), profiles)
    def test_roundtrip_whole_and_bytewise(self, recs: list[secure.Record], profile: Profile) -> None:
        wire = b"".join(r.encode() for r in recs)
        assert [secure.decode_record(r.encode(), profile) for r in recs] == recs
        assert _feed_bytewise(secure.RecordReader(profile), wire) == recs

    @pytest.mark.req("SVC-052")
    @pytest.mark.parametrize(
        ("profile", "length", "ok"),
        [
            (Profile.DRAFT, 28, True),
            (Profile.DRAFT, 27, False),
            (Profile.GO_INTEROP, 12, True),
            (Profile.GO_INTEROP, 11, False),
        ],
        ids=["draft-min", "draft-min-1", "go-min", "go-min-1"],
    )
    def test_minimum_length_per_profile(self, profile: Profile, length: int, ok: bool) -> None:
        raw = struct.pack(">I", length) + bytes(length)
        if ok:
            assert len(secure.decode_record(raw, profile).sealed) == length - 12
        else:
            err = _err(secure.decode_record, raw, profile)
            assert err.code is ErrorCode.LENGTH_MISMATCH and err.field == "secure.length"

    @pytest.mark.req("SVC-052")
    @pytest.mark.parametrize("profile", list(Profile))
    def test_maximum_length_checked_on_prefix_before_buffering(self, profile: Profile) -> None:
        reader = secure.RecordReader(profile)
        reader.feed(struct.pack(">I", secure.MAX_RECORD_LEN))  # exactly max: accepted, waits for the body
        assert reader.next_message() is None
        over = secure.RecordReader(profile)
        with pytest.raises(DecodeError) as info:
            over.feed(struct.pack(">I", secure.MAX_RECORD_LEN + 1))  # max + 1: refused with 4 bytes buffered
        assert info.value.code is ErrorCode.TOO_LARGE and over.buffered == 4
        with pytest.raises(DecodeError):  # the stream stays failed: framing is lost
            over.feed(b"more")
        assert over.failed is info.value

    @pytest.mark.req("SVC-051")
    def test_single_record_invalid_cases(self) -> None:
        good = secure.Record(bytes(12), bytes(20)).encode()
        assert _err(secure.decode_record, good[:-1]).code is ErrorCode.TRUNCATED
        assert _err(secure.decode_record, good + b"x").code is ErrorCode.TRAILING_DATA
        assert _err(secure.decode_record, b"\x00\x00").code is ErrorCode.TRUNCATED
        with pytest.raises(LocalProtocolError):
            secure.encode_record(secure.Record(bytes(11), b""))
        with pytest.raises(LocalProtocolError):
            secure.record_nonce(secure.Role.SERVER, 2**64)

    @pytest.mark.req("SVC-054")
    def test_key_agreement_is_raw_32_bytes(self) -> None:
        assert secure.decode_key(bytes(range(32))) == bytes(range(32))
        assert _err(secure.decode_key, bytes(31)).code is ErrorCode.TRUNCATED
        assert _err(secure.decode_key, bytes(33)).code is ErrorCode.TRAILING_DATA
        reader = secure.KeyAgreementReader()
        record = secure.Record(bytes(12), bytes(16)).encode()
        reader.feed(bytes(range(20)))
        assert reader.next_message() is None
        reader.feed(bytes(range(20, 32)) + record)
        assert reader.next_message() == bytes(range(32))
        assert reader.next_message() is None  # only one key per direction
        assert reader.remainder() == record

    @pytest.mark.req("SVC-055")
    @FAST
    @given(st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1), st.binary(min_size=16, max_size=16),
           st.binary(min_size=64, max_size=64))  # fmt: skip
    def test_auth_frame_roundtrip(self, node: int, ts_: int, nonce: bytes, sig: bytes) -> None:
        frame = secure.AuthFrame(node, ts_, nonce, sig)
        raw = frame.encode()
        assert len(raw) == secure.AUTH_FRAME_SIZE == 92
        assert raw[:4] == node.to_bytes(4, "big") and raw[4:12] == ts_.to_bytes(8, "big")
        assert secure.decode_auth_frame(raw) == frame

    @pytest.mark.req("SVC-055")
    def test_auth_frame_invalid_sizes(self) -> None:
        assert _err(secure.decode_auth_frame, bytes(91)).code is ErrorCode.TRUNCATED
        assert _err(secure.decode_auth_frame, bytes(93)).code is ErrorCode.TRAILING_DATA
        with pytest.raises(LocalProtocolError):
            secure.encode_auth_frame(secure.AuthFrame(1, 1, bytes(15), bytes(64)))

    @pytest.mark.req("SVC-056")
    def test_auth_signed_message_layout(self) -> None:
        msg = secure.auth_signed_message(0x01020304, b"K" * 32, 0x1122334455667788, b"N" * 16)
        assert (
            msg
            == b"pilot-secure-auth:"
            + bytes.fromhex("01020304")
            + b"K" * 32
            + bytes.fromhex("1122334455667788")
            + b"N" * 16
        )
        with pytest.raises(LocalProtocolError):
            secure.auth_signed_message(2**32, b"K" * 32, 0, b"N" * 16)


# -- port 444 ---------------------------------------------------------------------------------

texts = st.text(max_size=40)
trust_msgs = st.builds(
    trust.TrustMessage,
    st.sampled_from(list(trust.TrustType)),
    st.integers(0, 2**32 - 1),
    st.sampled_from([b"", bytes(range(32))]),
    texts,
    st.sampled_from([b"", bytes(range(64))]),
    texts,
    st.integers(-(2**63), 2**63 - 1),
)


def _doc(**over: object) -> bytes:
    doc: dict[str, object] = {"type": "handshake_request", "node_id": 7, "public_key": "", "justification": "j",
                              "signature": "", "reason": "", "timestamp": 1_700_000_000}  # fmt: skip
    doc.update(over)
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


class TestTrust:
    @pytest.mark.req("SVC-061", "SVC-062", "SVC-063")
    @FAST
    @given(trust_msgs, profiles)
    def test_roundtrip(self, msg: trust.TrustMessage, profile: Profile) -> None:
        assert trust.decode_trust(msg.encode(), profile) == msg

    @pytest.mark.req("SVC-061")
    def test_encoding_matches_go_marshal(self) -> None:
        msg = trust.TrustMessage(trust.TrustType.ACCEPT, 42, bytes(32), "a<b>&c", b"", "", 5)
        assert msg.encode() == (
            b'{"type":"handshake_accept","node_id":42,"public_key":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",'
            b'"justification":"a\\u003cb\\u003e\\u0026c","signature":"","reason":"","timestamp":5}'
        )

    @pytest.mark.req("SEC-020", "SVC-065")
    def test_signed_strings(self) -> None:
        assert trust.handshake_signing_string(7, 4294967295) == b"handshake:7:4294967295"
        assert trust.respond_signing_string(0, 12) == b"respond:0:12"

    @pytest.mark.req("SVC-061")
    def test_missing_fields_take_zero_values_like_go(self) -> None:
        msg = trust.decode_trust(b'{"type":"handshake_revoke"}')
        assert msg == trust.TrustMessage(trust.TrustType.REVOKE, 0)

    @pytest.mark.req("SVC-061")
    def test_unknown_field_by_profile(self) -> None:
        raw = _doc(extra=1)
        assert _err(trust.decode_trust, raw, Profile.DRAFT).field == "trust.extra"
        assert trust.decode_trust(raw, Profile.GO_INTEROP).node_id == 7

    @pytest.mark.req("SVC-061", "SVC-062", "SVC-063")
    @pytest.mark.parametrize(
        ("raw", "code", "field"),
        [
            (b"[1]", ErrorCode.BAD_VALUE, "trust.message"),
            (b"{", ErrorCode.BAD_ENCODING, "trust.message"),
            (b"\xff{}", ErrorCode.BAD_ENCODING, "trust.message"),
            (b'{"type":"x","type":"y"}', ErrorCode.BAD_ENCODING, "trust.message"),
            (b'{"node_id":NaN}', ErrorCode.BAD_ENCODING, "trust.message"),
            (_doc(type="handshake_maybe"), ErrorCode.BAD_VALUE, "trust.type"),
            (_doc(type=None), ErrorCode.BAD_VALUE, "trust.type"),
            (_doc(node_id=-1), ErrorCode.OUT_OF_RANGE, "trust.node_id"),
            (_doc(node_id=2**32), ErrorCode.OUT_OF_RANGE, "trust.node_id"),
            (_doc(node_id="7"), ErrorCode.BAD_VALUE, "trust.node_id"),
            (_doc(node_id=7.0), ErrorCode.BAD_VALUE, "trust.node_id"),
            (_doc(node_id=True), ErrorCode.BAD_VALUE, "trust.node_id"),
            (_doc(timestamp=2**63), ErrorCode.OUT_OF_RANGE, "trust.timestamp"),
            (_doc(justification=3), ErrorCode.BAD_VALUE, "trust.justification"),
            (_doc(public_key="not base64!"), ErrorCode.BAD_ENCODING, "trust.public_key"),
            (_doc(public_key=base64.b64encode(bytes(31)).decode()), ErrorCode.LENGTH_MISMATCH, "trust.public_key"),
            (_doc(signature=base64.b64encode(bytes(63)).decode()), ErrorCode.LENGTH_MISMATCH, "trust.signature"),
            (_doc(signature=base64.urlsafe_b64encode(b"\xff" * 64).decode()), ErrorCode.BAD_ENCODING,
             "trust.signature"),
            (b" " * 4097, ErrorCode.TOO_LARGE, "trust.message"),
        ],
        ids=["array", "broken-json", "not-utf8", "duplicate-key", "nan", "unknown-type", "null-type",
             "negative-node", "node-over-u32", "node-string", "node-float", "node-bool", "ts-over-i64",
             "justification-int", "key-not-base64", "key-31-bytes", "sig-63-bytes", "sig-urlsafe", "too-large"],
    )  # fmt: skip
    def test_invalid(self, raw: bytes, code: ErrorCode, field: str) -> None:
        err = _err(trust.decode_trust, raw, Profile.GO_INTEROP)
        assert (err.code, err.field) == (code, field)

    @pytest.mark.req("SVC-061")
    def test_size_limit_boundary(self) -> None:
        base = _doc(justification="")
        pad = trust.MAX_MESSAGE_SIZE - len(base)
        exact = _doc(justification="x" * pad)
        assert len(exact) == trust.MAX_MESSAGE_SIZE and trust.decode_trust(exact).justification == "x" * pad
        assert _err(trust.decode_trust, _doc(justification="x" * (pad + 1))).code is ErrorCode.TOO_LARGE

    @pytest.mark.req("SVC-066")
    def test_timestamp_window(self) -> None:
        msg = trust.TrustMessage(trust.TrustType.REQUEST, 1, timestamp=1000)
        trust.check_timestamp(msg, 1000 + 300)
        trust.check_timestamp(msg, 1000 - 30)
        assert _err(trust.check_timestamp, msg, 1000 + 301).code is ErrorCode.TOO_OLD
        assert _err(trust.check_timestamp, msg, 1000 - 31).code is ErrorCode.BAD_VALUE


# -- port 1001 --------------------------------------------------------------------------------

names = st.text(st.characters(blacklist_characters="/\\\x00", blacklist_categories=("Cs",)), min_size=1,
                max_size=30).filter(lambda n: ".." not in n and len(n.encode()) <= 255)  # fmt: skip
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3),
    max_leaves=8,
)
data_frames = st.one_of(
    st.builds(dx.TextFrame, st.text(max_size=50)),
    st.builds(dx.BinaryFrame, st.binary(max_size=50)),
    json_values.map(lambda v: dx.JsonFrame(json.dumps(v).encode())),
    st.builds(dx.FileFrame, names, st.binary(max_size=50)),
)


class TestDataExchange:
    @pytest.mark.req("SVC-010", "SVC-011", "SVC-012", "SVC-013", "SVC-014")
    @FAST
    @given(st.lists(data_frames, min_size=1, max_size=4))
    def test_roundtrip_whole_and_bytewise(self, frames: list[dx.DataFrame]) -> None:
        wire = b"".join(dx.encode_data_frame(f) for f in frames)
        assert [dx.decode_data_frame(dx.encode_data_frame(f)) for f in frames] == frames
        assert _feed_bytewise(dx.FrameReader(), wire) == frames

    @pytest.mark.req("SVC-010", "SVC-014", "SVC-015")
    def test_exact_layouts(self) -> None:
        assert dx.encode_data_frame(dx.TextFrame("hi")) == bytes.fromhex("0000000100000002") + b"hi"
        assert dx.encode_data_frame(dx.FileFrame("a", b"zz")) == bytes.fromhex("00000004000000050001") + b"azz"
        assert dx.JsonFrame(b'{"a": [1]}').value == {"a": [1]}

    @pytest.mark.req("SVC-016")
    def test_length_limit_on_header(self) -> None:
        reader = dx.FrameReader()
        reader.feed(struct.pack(">II", 2, dx.MAX_PAYLOAD))  # exactly 2^24: waits for the body
        assert reader.next_message() is None
        with pytest.raises(DecodeError) as info:
            dx.FrameReader().feed(struct.pack(">II", 2, dx.MAX_PAYLOAD + 1))
        assert info.value.code is ErrorCode.TOO_LARGE and info.value.requirement == "SVC-016"

    @pytest.mark.req("SVC-017")
    def test_filename_boundaries(self) -> None:
        assert dx.check_filename(b"n" * 255) == "n" * 255
        assert dx.check_filename("é".encode()) == "é"
        for bad, code in [(b"", ErrorCode.OUT_OF_RANGE), (b"n" * 256, ErrorCode.OUT_OF_RANGE),
                          (b"a/b", ErrorCode.BAD_VALUE), (b"a\\b", ErrorCode.BAD_VALUE), (b"..", ErrorCode.BAD_VALUE),
                          (b"x..y", ErrorCode.BAD_VALUE), (b"a\x00", ErrorCode.BAD_VALUE),
                          (b"\xff", ErrorCode.BAD_ENCODING)]:  # fmt: skip
            assert _err(dx.check_filename, bad).code is code, bad
        with pytest.raises(LocalProtocolError):
            dx.encode_data_frame(dx.FileFrame("../etc/passwd", b""))

    @pytest.mark.req("SVC-011", "SVC-012", "SVC-013", "SVC-014")
    @pytest.mark.parametrize(
        ("raw", "code", "field"),
        [
            (struct.pack(">II", 5, 0), ErrorCode.BAD_VALUE, "dataexchange.type"),
            (struct.pack(">II", 0, 0), ErrorCode.BAD_VALUE, "dataexchange.type"),
            (struct.pack(">II", 1, 1) + b"\xff", ErrorCode.BAD_ENCODING, "dataexchange.payload"),
            (struct.pack(">II", 3, 2) + b"{]", ErrorCode.BAD_ENCODING, "dataexchange.payload"),
            (struct.pack(">II", 3, 0), ErrorCode.BAD_ENCODING, "dataexchange.payload"),
            (struct.pack(">II", 4, 1) + b"\x00", ErrorCode.TRUNCATED, "dataexchange.file.name"),
            (struct.pack(">II", 4, 3) + b"\x00\x05a", ErrorCode.TRUNCATED, "dataexchange.file.name"),
            (struct.pack(">II", 4, 2) + b"\x00\x00", ErrorCode.OUT_OF_RANGE, "dataexchange.file.name"),
            (struct.pack(">II", 2, 3) + b"ab", ErrorCode.TRUNCATED, "dataexchange.frame.payload"),
            (struct.pack(">II", 2, 1) + b"ab", ErrorCode.TRAILING_DATA, "dataexchange.frame"),
            (b"\x00\x00\x00\x02\x00", ErrorCode.TRUNCATED, "dataexchange.frame.length"),
        ],
        ids=["type-5", "type-0", "text-not-utf8", "json-broken", "json-empty", "file-no-name-len",
             "file-name-overruns", "file-empty-name", "truncated-payload", "trailing", "truncated-header"],
    )  # fmt: skip
    def test_invalid(self, raw: bytes, code: ErrorCode, field: str) -> None:
        err = _err(dx.decode_data_frame, raw)
        assert (err.code, err.field) == (code, field)


# -- port 1002 --------------------------------------------------------------------------------

topics = st.text(st.characters(blacklist_characters=" \t\r\n", blacklist_categories=("Cs",)), min_size=1,
                 max_size=20)  # fmt: skip
text_payloads = st.text(st.characters(blacklist_characters="\n", blacklist_categories=("Cs",)), max_size=30).map(
    str.encode
)
client_text = st.one_of(st.builds(es.Subscribe, topics), st.builds(es.Publish, topics, text_payloads))


class TestEventStream:
    @pytest.mark.req("SVC-022", "SVC-023", "SVC-024", "SVC-025")
    def test_draft_text_lines(self) -> None:
        assert es.encode_text_line(es.Subscribe("*")) == b"SUB *\n"
        assert es.encode_text_line(es.Publish("news", b"hello world")) == b"PUB news hello world\n"
        assert es.encode_text_line(es.Event("news", b"")) == b"EVENT news\n"
        assert es.decode_text_line(b"PUB news a b  c\n") == es.Publish("news", b"a b  c")
        assert es.decode_text_line(b"EVENT t \n") == es.Event("t", b"")

    @pytest.mark.req("SVC-022", "SVC-023", "SVC-024")
    @FAST
    @given(st.lists(client_text, min_size=1, max_size=5))
    def test_draft_stream_roundtrip_bytewise(self, msgs: list[es.EventMessage]) -> None:
        wire = b"".join(es.encode_message(m, Profile.DRAFT) for m in msgs)
        assert _feed_bytewise(es.EventStreamDecoder(Profile.DRAFT, es.Side.CLIENT), wire) == msgs

    @pytest.mark.req("SVC-026", "SVC-028")
    @FAST
    @given(topics, st.lists(st.tuples(topics, st.binary(max_size=40)), max_size=4))
    def test_go_records_first_is_subscription(self, sub: str, pubs: list[tuple[str, bytes]]) -> None:
        wire = es.encode_message(es.Subscribe(sub), Profile.GO_INTEROP) + b"".join(
            es.encode_message(es.Publish(t, p), Profile.GO_INTEROP) for t, p in pubs
        )
        got = _feed_bytewise(es.EventStreamDecoder(Profile.GO_INTEROP, es.Side.CLIENT), wire)
        assert got == [es.Subscribe(sub)] + [es.Publish(t, p) for t, p in pubs]
        events = es.EventStreamDecoder(Profile.GO_INTEROP, es.Side.BROKER)
        events.feed(wire)
        assert all(isinstance(m, es.Event) for m in events.messages())

    @pytest.mark.req("SVC-026")
    def test_go_record_layout(self) -> None:
        assert es.encode_record("ab", b"xyz") == b"\x00\x02ab\x00\x00\x00\x03xyz"
        assert es.decode_record(b"\x00\x00\x00\x00\x00\x00") == es.EventRecord("", b"")

    @pytest.mark.req("SVC-027")
    def test_go_limits_boundaries(self) -> None:
        at_max = es.encode_record("t" * 1024, b"")
        assert es.decode_record(at_max).topic == "t" * 1024
        with pytest.raises(DecodeError) as info:
            es.EventStreamDecoder(Profile.GO_INTEROP).feed(struct.pack(">H", 1025))
        assert info.value.code is ErrorCode.TOO_LARGE and info.value.field == "eventstream.topic_len"
        ok = es.EventStreamDecoder(Profile.GO_INTEROP)
        ok.feed(b"\x00\x01t" + struct.pack(">I", es.MAX_PAYLOAD))
        assert ok.next_message() is None
        with pytest.raises(DecodeError) as info:
            es.EventStreamDecoder(Profile.GO_INTEROP).feed(b"\x00\x01t" + struct.pack(">I", es.MAX_PAYLOAD + 1))
        assert info.value.field == "eventstream.payload_len"
        with pytest.raises(LocalProtocolError):
            es.encode_record("t" * 1025)

    @pytest.mark.req("SVC-022")
    def test_text_line_limit_without_newline(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(es, "MAX_TEXT_LINE", 32)
        dec = es.EventStreamDecoder(Profile.DRAFT)
        dec.feed(b"PUB t " + b"x" * 26)  # 32 bytes, no newline yet: still acceptable
        assert dec.next_message() is None
        with pytest.raises(DecodeError) as info:
            dec.feed(b"x")
        assert info.value.code is ErrorCode.TOO_LARGE

    @pytest.mark.req("SVC-022", "SVC-023", "SVC-024", "SVC-025")
    @pytest.mark.parametrize(
        ("line", "code", "field"),
        [
            (b"SUB topic", ErrorCode.TRUNCATED, "eventstream.line"),
            (b"SUB\n", ErrorCode.TRUNCATED, "eventstream.topic"),
            (b"SUB \n", ErrorCode.OUT_OF_RANGE, "eventstream.topic"),
            (b"SUB a b\n", ErrorCode.BAD_VALUE, "eventstream.topic"),
            (b"SUB a\tb\n", ErrorCode.BAD_VALUE, "eventstream.topic"),
            (b"SUB " + b"t" * 1025 + b"\n", ErrorCode.OUT_OF_RANGE, "eventstream.topic"),
            (b"PUB\n", ErrorCode.TRUNCATED, "eventstream.topic"),
            (b"sub x\n", ErrorCode.BAD_VALUE, "eventstream.command"),
            (b"UNSUB x\n", ErrorCode.BAD_VALUE, "eventstream.command"),
            (b"PUB t \xff\n", ErrorCode.BAD_ENCODING, "eventstream.line"),
            (b"SUB a\nSUB b\n", ErrorCode.TRAILING_DATA, "eventstream.line"),
        ],
        ids=["no-newline", "sub-no-topic", "empty-topic", "space-in-topic", "tab-in-topic", "topic-1025",
             "pub-no-topic", "lowercase", "unknown-verb", "not-utf8", "two-lines"],
    )  # fmt: skip
    def test_text_invalid(self, line: bytes, code: ErrorCode, field: str) -> None:
        err = _err(es.decode_text_line, line)
        assert (err.code, err.field) == (code, field)

    @pytest.mark.req("SVC-022", "SVC-025")
    def test_direction_enforced(self) -> None:
        broker_reads = es.EventStreamDecoder(Profile.DRAFT, es.Side.CLIENT)
        broker_reads.feed(b"EVENT t x\n")
        assert _err(broker_reads.next_message).code is ErrorCode.BAD_VALUE
        client_reads = es.EventStreamDecoder(Profile.DRAFT, es.Side.BROKER)
        client_reads.feed(b"EVENT t x\nPUB t y\n")
        assert client_reads.next_message() == es.Event("t", b"x")
        with pytest.raises(PilotError):
            client_reads.next_message()

    @pytest.mark.req("SVC-024")
    def test_text_encoder_refuses_newline_payload(self) -> None:
        with pytest.raises(LocalProtocolError):
            es.encode_text_line(es.Publish("t", b"a\nb"))
        with pytest.raises(LocalProtocolError):
            es.encode_text_line(es.Subscribe("a b"))

    @pytest.mark.req("SVC-021")
    def test_wildcard_topic_is_plain_topic_on_wire(self) -> None:
        assert es.WILDCARD == "*"
        assert es.decode_text_line(b"SUB *\n") == es.Subscribe("*")
        assert es.decode_record(es.encode_record("*")).topic == "*"


class TestEventBroker:
    @pytest.mark.req("SVC-020", "SVC-021", "SVC-029")
    def test_draft_broker_fans_out_to_topic_and_wildcard_not_sender(self) -> None:
        broker: es.EventBroker[str] = es.EventBroker(Profile.DRAFT)
        assert broker.receive("a", b"SUB news\n") == []
        assert broker.receive("b", b"SUB *\nSUB news\n") == []
        assert broker.receive("c", b"SUB weather\n") == []
        out = broker.receive("a", b"PUB news rain later\n")
        assert sorted(out) == [("b", b"EVENT news rain later\n")]  # not back to a, not to c; once to b
        assert broker.receive("c", b"PUB weather sun\n") == [("b", b"EVENT weather sun\n")]

    @pytest.mark.req("SVC-028", "SVC-029")
    def test_go_broker_forwards_records_unchanged(self) -> None:
        broker: es.EventBroker[int] = es.EventBroker(Profile.GO_INTEROP)
        broker.receive(1, es.encode_record("news"))
        broker.receive(2, es.encode_record("*"))
        record = es.encode_record("news", b"\x00payload")
        broker.receive(3, es.encode_record("other"))
        assert sorted(broker.receive(3, record)) == [(1, record), (2, record)]
        assert broker.subscriptions(3) == {"other"}  # the later record was a publish, not a second subscription

    @pytest.mark.req("SVC-029")
    def test_bad_connection_is_dropped_others_unaffected(self) -> None:
        broker: es.EventBroker[str] = es.EventBroker(Profile.DRAFT)
        broker.receive("good", b"SUB t\n")
        with pytest.raises(DecodeError):
            broker.receive("bad", b"SUB t\nEVENT t spoof\n")
        assert broker.subscriptions("bad") == frozenset()
        assert broker.receive("other", b"PUB t x\n") == [("good", b"EVENT t x\n")]


# -- port 1003 --------------------------------------------------------------------------------

strs = st.text(max_size=20)
task_msgs = st.one_of(
    st.builds(ts.Submit, strs, strs, strs, strs),
    st.builds(ts.Result, strs, st.sampled_from([200, 400]), strs),
    st.builds(ts.StatusUpdate, strs, st.sampled_from(list(ts.TaskStatus)), strs),
    st.builds(ts.SendResults, strs, st.sampled_from(["text", "file"]), strs, strs, strs, st.binary(max_size=20),
              st.integers(0, 2**40), st.integers(0, 2**40), st.integers(0, 2**40)),
)  # fmt: skip


class TestTaskSubmit:
    @pytest.mark.req("SVC-031", "SVC-033", "SVC-034", "SVC-035", "SVC-036", "SVC-037")
    @FAST
    @given(st.lists(task_msgs, min_size=1, max_size=4))
    def test_roundtrip_whole_and_bytewise(self, msgs: list[ts.TaskMessage]) -> None:
        wire = b"".join(ts.encode_task_frame(m) for m in msgs)
        assert [ts.decode_task_frame(ts.encode_task_frame(m)) for m in msgs] == msgs
        assert _feed_bytewise(ts.TaskFrameReader(), wire) == msgs

    @pytest.mark.req("SVC-031", "SVC-036")
    def test_layout_and_go_omitempty(self) -> None:
        raw = ts.encode_task_frame(ts.SendResults("t1", "text", "2026-01-01T00:00:00Z", result_text="ok"))
        body = b'{"task_id":"t1","result_type":"text","result_text":"ok","completed_at":"2026-01-01T00:00:00Z"}'
        assert raw == struct.pack(">II", 4, len(body)) + body

    @pytest.mark.req("SVC-032")
    def test_length_limit(self) -> None:
        reader = ts.TaskFrameReader()
        reader.feed(struct.pack(">II", 1, ts.MAX_BODY))
        assert reader.next_message() is None
        with pytest.raises(DecodeError) as info:
            ts.TaskFrameReader().feed(struct.pack(">II", 1, ts.MAX_BODY + 1))
        assert info.value.code is ErrorCode.TOO_LARGE

    @pytest.mark.req("SVC-031", "SVC-034", "SVC-035", "SVC-036", "SVC-037")
    @pytest.mark.parametrize(
        ("ftype", "body", "code", "field"),
        [
            (5, b"{}", ErrorCode.BAD_VALUE, "tasksubmit.type"),
            (1, b"[]", ErrorCode.BAD_VALUE, "tasksubmit.body"),
            (1, b"{", ErrorCode.BAD_ENCODING, "tasksubmit.body"),
            (1, b'{"task_id":1}', ErrorCode.BAD_VALUE, "tasksubmit.task_id"),
            (2, b'{"status":201}', ErrorCode.BAD_VALUE, "tasksubmit.status"),
            (2, b'{"status":"200"}', ErrorCode.BAD_VALUE, "tasksubmit.status"),
            (3, b'{"status":"DONE"}', ErrorCode.BAD_VALUE, "tasksubmit.status"),
            (4, b'{"result_type":"image"}', ErrorCode.BAD_VALUE, "tasksubmit.result_type"),
            (4, b'{"result_type":"file","file_data":"!!"}', ErrorCode.BAD_ENCODING, "tasksubmit.file_data"),
            (4, b'{"result_type":"text","time_cpu_ms":1.5}', ErrorCode.BAD_VALUE, "tasksubmit.time_cpu_ms"),
        ],
        ids=["type-5", "array-body", "broken-json", "task-id-int", "result-201", "result-status-string",
             "unknown-status", "result-type-image", "file-data-not-base64", "cpu-ms-float"],
    )  # fmt: skip
    def test_invalid(self, ftype: int, body: bytes, code: ErrorCode, field: str) -> None:
        err = _err(ts.decode_task_frame, struct.pack(">II", ftype, len(body)) + body)
        assert (err.code, err.field) == (code, field)

    @pytest.mark.req("SVC-038")
    @pytest.mark.parametrize(
        ("cpu_ms", "idle_ms", "staged_ms", "score"),
        [
            (0, 0, 0, 1),  # base reward only
            (60_000, 0, 0, 2),  # 1 + log2(2) = 2
            (180_000, 0, 0, 3),  # 1 + log2(4) = 3
            (180_000, 60_000, 600_000, 1),  # 3 * max(0.4, 0.4) = 1.2 -> 1
            (420_000, 30_000, 0, 3),  # 4 * 0.85 = 3.4 -> 3
            (0, 10**9, 10**9, 1),  # floor of 1
        ],
    )
    def test_polo_score(self, cpu_ms: int, idle_ms: int, staged_ms: int, score: int) -> None:
        assert ts.polo_score(cpu_ms, idle_ms, staged_ms) == score

    @pytest.mark.req("SVC-039")
    def test_go_task_timeouts(self) -> None:
        assert (ts.ACCEPT_TIMEOUT, ts.QUEUE_HEAD_TIMEOUT) == (60.0, 3600.0)


# -- vectors ----------------------------------------------------------------------------------


class TestServiceVectors:
    @pytest.mark.req("SVC-010", "SVC-022", "SVC-026", "SVC-031", "SVC-041", "SVC-051", "SVC-061")
    def test_committed_file_verifies_and_is_current(self) -> None:
        from pathlib import Path

        from pilot_proto.vectors import dump, verify_doc
        from pilot_proto.vectors.services import SUITES

        suite = SUITES[0]
        text = (Path(__file__).resolve().parent.parent / "vectors" / suite.filename).read_text(encoding="utf-8")
        assert verify_doc(suite, json.loads(text)) == []
        assert text == dump(suite.generate()), "stale: run `pilot-proto vectors generate --out vectors/`"

    @pytest.mark.req("SVC-022", "SVC-026", "SVC-042", "SVC-056", "SVC-065", "SVC-038")
    def test_every_format_present_and_verifier_catches_tampering(self) -> None:
        import copy

        from pilot_proto.vectors._format import iter_tests
        from pilot_proto.vectors.services import FORMATS, SUITES

        doc = SUITES[0].generate()
        formats = {g["format"] for g, _ in iter_tests(doc) if g["type"] == "DecodeTest"}
        assert formats == set(FORMATS)
        kinds = {g["type"] for g, _ in iter_tests(doc)}
        assert {"PingReplyTest", "AuthSignedMessageTest", "TrustSigningStringTest", "PoloScoreTest"} <= kinds
        for key in ("decoded", "error", "reply", "signedMessage", "signed", "score"):
            broken = copy.deepcopy(doc)
            test = next(t for _, t in iter_tests(broken) if key in t)
            test[key] = 0 if key == "score" else "00" if key != "decoded" else {"type": "x"}
            assert SUITES[0].verify(broken), key


# -- incremental readers agree with the schema decoders -----------------------------------------


def _agree(decode: object, reader: StreamDecoder[object], data: bytes) -> None:
    """The struct-based reader and the construct-schema decoder give the same verdict on ``data``."""
    try:
        expected: object = decode(data)  # type: ignore[operator]
        want_err = None
    except DecodeError as exc:
        want_err = exc
    try:
        reader.feed(data)
        got = reader.messages()
        got_err = None
    except DecodeError as exc:
        got_err = exc
    if want_err is None:
        assert got_err is None and got == [expected] and reader.buffered == 0
    elif want_err.code is ErrorCode.TRUNCATED:
        assert (got_err is None and got == []) or (got_err is not None and got_err.code is ErrorCode.TRUNCATED)
    elif want_err.code is ErrorCode.TRAILING_DATA:
        assert got_err is not None or len(got) >= 1  # the first message, then whatever the rest is
    else:
        assert got_err is not None and got_err.code is want_err.code, (want_err, got_err)


def _mutations(seed: bytes) -> st.SearchStrategy[bytes]:
    return st.tuples(st.integers(0, len(seed)), st.integers(0, 255), st.integers(0, len(seed))).map(
        lambda t: (seed[: t[0]] + bytes([t[1]]) + seed[t[0] + 1 :])[: max(t[2], 1)]
    )


_SEEDS = {
    "dataexchange": dx.encode_data_frame(dx.FileFrame("a.txt", b"xy")) + dx.encode_data_frame(dx.TextFrame("t")),
    "tasksubmit": ts.encode_task_frame(ts.Result("id", 200, "ok")),
    "secure": secure.Record(bytes(12), bytes(17)).encode(),
    "eventstream": es.encode_record("topic", b"payload"),
}


class TestReadersMatchSchemas:
    @pytest.mark.req("SVC-010", "SVC-016")
    @settings(max_examples=150, deadline=None)
    @given(st.one_of(st.binary(max_size=40), _mutations(_SEEDS["dataexchange"])))
    def test_dataexchange(self, data: bytes) -> None:
        _agree(dx.decode_data_frame, dx.FrameReader(), data)

    @pytest.mark.req("SVC-031", "SVC-032")
    @settings(max_examples=150, deadline=None)
    @given(st.one_of(st.binary(max_size=40), _mutations(_SEEDS["tasksubmit"])))
    def test_tasksubmit(self, data: bytes) -> None:
        _agree(ts.decode_task_frame, ts.TaskFrameReader(), data)

    @pytest.mark.req("SVC-051", "SVC-052")
    @settings(max_examples=150, deadline=None)
    @given(st.one_of(st.binary(max_size=40), _mutations(_SEEDS["secure"])), profiles)
    def test_secure(self, data: bytes, profile: Profile) -> None:
        _agree(lambda b: secure.decode_record(b, profile), secure.RecordReader(profile), data)

    @pytest.mark.req("SVC-026", "SVC-027")
    @settings(max_examples=150, deadline=None)
    @given(st.one_of(st.binary(max_size=40), _mutations(_SEEDS["eventstream"])))
    def test_eventstream_records(self, data: bytes) -> None:
        reader = es.EventStreamDecoder(Profile.GO_INTEROP, es.Side.BROKER)
        _agree(lambda b: es.Event(*es.decode_record(b)), reader, data)


# -- registry JSON and replication ---------------------------------------------------------------


class TestRegistry:
    @pytest.mark.req("ARCH-012")
    @FAST
    @given(st.dictionaries(st.text(max_size=8), json_values, max_size=4), st.text(min_size=1, max_size=12))
    def test_roundtrip_and_bytewise(self, extra: dict[str, object], mtype: str) -> None:
        from pilot_proto.wire import registry

        msg = {**extra, "type": mtype}
        raw = registry.encode_registry_message(msg)
        assert registry.decode_registry_message(raw) == msg
        assert _feed_bytewise(registry.RegistryReader(), raw + raw) == [msg, msg]

    @pytest.mark.req("ARCH-012")
    def test_go_map_encoding_and_limit(self) -> None:
        from pilot_proto.wire import registry

        raw = registry.encode_registry_message({"type": "lookup", "node_id": 7, "a": "<x>"})
        assert raw == struct.pack(">I", 49) + b'{"a":"\\u003cx\\u003e","node_id":7,"type":"lookup"}'
        reader = registry.RegistryReader()
        reader.feed(struct.pack(">I", registry.MAX_MESSAGE))
        assert reader.next_message() is None
        with pytest.raises(DecodeError) as info:
            registry.RegistryReader().feed(struct.pack(">I", registry.MAX_MESSAGE + 1))
        assert info.value.code is ErrorCode.TOO_LARGE
        for body, field in ((b"[]", "registry.body"), (b'{"t":1}', "registry.type"), (b'{"type":3}', "registry.type"),
                            (b'{"type":""}', "registry.type")):  # fmt: skip
            err = _err(registry.decode_registry_message, struct.pack(">I", len(body)) + body)
            assert (err.code, err.field) == (ErrorCode.BAD_VALUE, field)

    @pytest.mark.req("REPL-005", "REPL-009")
    def test_primary_heartbeat_every_15_s(self) -> None:
        from pilot_proto.wire import registry

        hb = registry.PrimaryHeartbeat(now=100.0)
        assert hb.get_timer() == 115.0
        assert hb.handle_timer(114.9) == []
        sent = hb.handle_timer(115.0)
        assert [registry.decode_registry_message(m) for m in sent] == [{"type": "heartbeat"}]
        assert hb.get_timer() == 130.0
        assert len(hb.handle_timer(161.0)) == 1 and hb.get_timer() == 175.0  # late: one heartbeat, no burst
        assert registry.subscribe_replication("s3cret") == {"type": "subscribe_replication", "token": "s3cret"}
        assert registry.subscribe_replication() == {"type": "subscribe_replication"}

    @pytest.mark.req("REPL-006")
    @pytest.mark.parametrize(("profile", "timeout"), [(Profile.DRAFT, 30.0), (Profile.GO_INTEROP, 45.0)])
    def test_standby_declares_primary_unavailable(self, profile: Profile, timeout: float) -> None:
        from pilot_proto.wire import registry

        timers = registry.ReplicationTimers.for_profile(profile)
        assert (timers.heartbeat_interval, timers.standby_timeout) == (15.0, timeout)
        live = registry.StandbyLiveness(0.0, timers)
        for t in (15.0, 30.0, 45.0):  # heartbeats on time keep the primary alive
            assert not live.handle_timer(t)
            live.on_message(t)
        assert live.get_timer() == 45.0 + timeout
        assert not live.handle_timer(45.0 + timeout - 0.001)
        assert live.handle_timer(45.0 + timeout) and live.primary_unavailable
        assert not live.handle_timer(1e9) and live.get_timer() is None  # reported once

    @pytest.mark.req("REPL-008")
    def test_standby_refuses_writes(self) -> None:
        from pilot_proto.wire import registry

        assert registry.standby_reply({"type": "lookup"}) is None
        draft = registry.standby_reply({"type": "register"}, Profile.DRAFT)
        assert draft is not None and draft["type"] == "error" and "primary" in draft["error"]
        assert registry.standby_reply({"type": "join_network"}, Profile.GO_INTEROP) == {
            "type": "error",
            "error": "request failed",
        }
