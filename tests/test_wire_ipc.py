"""IPC framing and every command 0x01-0x22 (draft 16; Go/SPEC layouts, errata E-IPC-1..4)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilot_proto.errors import DecodeError, ErrorCode, LocalProtocolError
from pilot_proto.profile import Profile
from pilot_proto.wire import ipc
from pilot_proto.wire.address import Addr
from pilot_proto.wire.ipc import Command, Direction, HandshakeSub, NetworkSub

u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
addrs = st.builds(Addr, u16, u32)
data = st.binary(max_size=40)
text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
A = Addr(1, 0x0000F291)


def messages(profile: Profile) -> st.SearchStrategy[ipc.IpcMessage]:
    go = profile is Profile.GO_INTEROP
    extra = u16 if go else st.none()
    return st.one_of(
        st.builds(ipc.Bind, u16), st.builds(ipc.BindOK, u16), st.builds(ipc.Dial, addrs, u16),
        st.builds(ipc.DialOK, u32), st.builds(ipc.Accept, u32, addrs, u16, extra),
        st.builds(ipc.Send, u32, data), st.builds(ipc.Recv, u32, data), st.builds(ipc.Close, u32),
        st.builds(ipc.CloseOK, u32), st.builds(ipc.Error, u16, text), st.builds(ipc.SendTo, addrs, u16, data),
        st.builds(ipc.RecvFrom, addrs, u16, data, extra),
        st.builds(ipc.Empty, st.sampled_from([Command.INFO, Command.DEREGISTER, Command.HEALTH])),
        st.builds(ipc.Text, st.sampled_from([Command.RESOLVE_HOSTNAME, Command.SET_HOSTNAME, Command.SET_WEBHOOK]),
                  text),
        st.builds(ipc.Flag, st.sampled_from([Command.SET_VISIBILITY, Command.SET_TASK_EXEC]), st.booleans()),
        st.builds(ipc.JsonMessage, st.sampled_from(sorted(ipc._JSON_COMMANDS)),
                  st.sampled_from([b"{}", b'{"ok":true}', b'["a","b"]', b"null"])),
        st.sampled_from(list(HandshakeSub)).flatmap(
            lambda s: st.builds(ipc.HandshakeRequest, st.just(s),
                                u32 if s not in (HandshakeSub.PENDING, HandshakeSub.TRUSTED) else st.just(0),
                                text if s in (HandshakeSub.SEND, HandshakeSub.REJECT) else st.just(""))),
        st.sampled_from(list(NetworkSub)).flatmap(
            lambda s: st.builds(ipc.NetworkRequest, st.just(s),
                                u16 if s not in (NetworkSub.LIST, NetworkSub.POLL_INVITES) else st.just(0),
                                text if s is NetworkSub.JOIN else st.just(""),
                                u32 if s is NetworkSub.INVITE else st.just(0),
                                st.booleans() if s is NetworkSub.RESPOND_INVITE else st.just(False))),
    )  # fmt: skip


def _err(fn: object, *args: object) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        fn(*args)  # type: ignore[operator]
    assert info.value.section and info.value.requirement
    return info.value


@pytest.mark.req("IPC-004", "IPC-005")
def test_command_table_matches_draft() -> None:
    assert [c.value for c in Command] == list(range(0x01, 0x23))
    assert Command(0x05).name == "ACCEPT" and Command(0x1F).name == "NETWORK" and Command(0x22).name == "HEALTH_OK"
    to_driver = {c for c, d in ipc.DIRECTION.items() if d is Direction.TO_DRIVER}
    assert to_driver == {Command.BIND_OK, Command.DIAL_OK, Command.ACCEPT, Command.RECV, Command.CLOSE_OK,
                         Command.ERROR, Command.RECV_FROM, Command.INFO_OK, Command.HANDSHAKE_OK,
                         Command.RESOLVE_HOSTNAME_OK, Command.SET_HOSTNAME_OK, Command.SET_VISIBILITY_OK,
                         Command.DEREGISTER_OK, Command.SET_TAGS_OK, Command.SET_WEBHOOK_OK,
                         Command.SET_TASK_EXEC_OK, Command.NETWORK_OK, Command.HEALTH_OK}  # fmt: skip
    assert [s.value for s in NetworkSub] == list(range(1, 8))
    assert [s.value for s in HandshakeSub] == list(range(1, 7))
    assert all((cmd, p) in ipc.PAYLOADS for cmd in Command for p in Profile)


@pytest.mark.req(
    "IPC-001",
    "IPC-003",
    "IPC-006",
    "IPC-007",
    "IPC-009",
    "IPC-010",
    "IPC-011",
    "IPC-012",
    "IPC-014",
    "IPC-015",
    "IPC-016",
    "IPC-017",
    "IPC-018",
    "IPC-019",
    "IPC-020",
    "IPC-021",
    "IPC-022",
)
@pytest.mark.parametrize("profile", list(Profile))
@settings(max_examples=100, deadline=None)
@given(st.data())
def test_every_command_roundtrips(profile: Profile, draw: st.DataObject) -> None:  # fmt: skip
    msg = draw.draw(messages(profile))
    framed = ipc.encode_ipc_frame(msg, profile)
    (length,) = struct.unpack_from(">I", framed)
    assert length == len(framed) - 4 and framed[4] == ipc._command_of(msg)
    assert ipc.decode_ipc_frame(framed, profile) == msg
    assert ipc.decode_ipc_body(framed[4:], profile) == msg


@pytest.mark.req("IPC-001", "IPC-002")
@settings(max_examples=40, deadline=None)
@given(st.lists(messages(Profile.GO_INTEROP), min_size=1, max_size=5))
def test_reader_bytewise(msgs: list[ipc.IpcMessage]) -> None:
    wire = b"".join(ipc.encode_ipc_frame(m, Profile.GO_INTEROP) for m in msgs)
    reader = ipc.IpcReader(Profile.GO_INTEROP)
    got = []
    for i in range(len(wire)):
        reader.feed(wire[i : i + 1])
        got.extend(reader.messages())
    assert got == msgs and reader.buffered == 0


@pytest.mark.req("ARCH-002", "IPC-006", "IPC-007", "IPC-009", "IPC-011", "IPC-012", "IPC-016", "IPC-018", "IPC-022")
@pytest.mark.parametrize(
    ("msg", "body"),
    [
        (ipc.Bind(1000), "0103e8"),
        (ipc.Dial(A, 7), "0300010000f2910007"),
        (ipc.DialOK(9), "0400000009"),
        (ipc.Send(9, b"hi"), "06000000096869"),
        (ipc.Error(1, "no"), "0a00016e6f"),
        (ipc.SendTo(A, 53, b"q"), "0b00010000f291003571"),
        (ipc.Flag(Command.SET_VISIBILITY, True), "1501"),
        (ipc.Empty(Command.HEALTH), "21"),
        (ipc.HandshakeRequest(HandshakeSub.SEND, 5, "hi"), "0f01000000056869"),
        (ipc.HandshakeRequest(HandshakeSub.PENDING), "0f04"),
        (ipc.NetworkRequest(NetworkSub.JOIN, 3, "t"), "1f02000374"),
        (ipc.NetworkRequest(NetworkSub.INVITE, 3, node_id=4), "1f05000300000004"),
        (ipc.NetworkRequest(NetworkSub.RESPOND_INVITE, 3, accept=True), "1f07000301"),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, str) else None,
)
def test_exact_layouts(msg: ipc.IpcMessage, body: str) -> None:
    for profile in Profile:
        assert ipc.encode_ipc_body(msg, profile).hex() == body


@pytest.mark.req("IPC-008")
def test_accept_layout_by_profile() -> None:
    go = ipc.Accept(9, A, 49152, local_port=1000)
    assert ipc.encode_ipc_body(go, Profile.GO_INTEROP).hex() == "0503e80000000900010000f291c000"
    spec = ipc.Accept(9, A, 49152)
    assert ipc.encode_ipc_body(spec, Profile.DRAFT).hex() == "050000000900010000f291c000"
    # each profile refuses the other's size (E-IPC-1)
    err = _err(ipc.decode_ipc_body, ipc.encode_ipc_body(go, Profile.GO_INTEROP), Profile.DRAFT)
    assert err.code is ErrorCode.LENGTH_MISMATCH and err.requirement == "IPC-008"
    err = _err(ipc.decode_ipc_body, ipc.encode_ipc_body(spec, Profile.DRAFT), Profile.GO_INTEROP)
    assert err.code is ErrorCode.LENGTH_MISMATCH
    with pytest.raises(LocalProtocolError):
        ipc.encode_ipc_body(spec, Profile.GO_INTEROP)  # Go needs local_port


@pytest.mark.req("IPC-013")
def test_recvfrom_layout_by_profile() -> None:
    go = ipc.RecvFrom(A, 7, b"d", dst_port=9)
    assert ipc.encode_ipc_body(go, Profile.GO_INTEROP).hex() == "0c00010000f2910007000964"
    spec = ipc.RecvFrom(A, 7, b"d")
    assert ipc.encode_ipc_body(spec, Profile.DRAFT).hex() == "0c00010000f291000764"
    # the same bytes read under the other profile give other fields (E-IPC-2): no error, different meaning
    assert ipc.decode_ipc_body(ipc.encode_ipc_body(go, Profile.GO_INTEROP), Profile.DRAFT) == ipc.RecvFrom(
        A, 7, b"\x00\x09d"
    )
    err = _err(ipc.decode_ipc_body, bytes.fromhex("0c00010000f29100"), Profile.GO_INTEROP)
    assert err.code is ErrorCode.TRUNCATED


@pytest.mark.req("IPC-002")
def test_size_limit_boundaries() -> None:
    exact = ipc.Send(1, bytes(ipc.MAX_MESSAGE - 5))  # cmd + conn_id + data == 1 MiB
    framed = ipc.encode_ipc_frame(exact)
    assert struct.unpack_from(">I", framed)[0] == ipc.MAX_MESSAGE
    assert ipc.decode_ipc_frame(framed) == exact
    with pytest.raises(LocalProtocolError):
        ipc.encode_ipc_frame(ipc.Send(1, bytes(ipc.MAX_MESSAGE - 4)))
    reader = ipc.IpcReader()
    reader.feed(struct.pack(">I", ipc.MAX_MESSAGE))
    assert reader.next_message() is None
    over = ipc.IpcReader()
    with pytest.raises(DecodeError) as info:
        over.feed(struct.pack(">I", ipc.MAX_MESSAGE + 1))  # refused on the prefix alone
    assert info.value.code is ErrorCode.TOO_LARGE and info.value.requirement == "IPC-002"
    with pytest.raises(DecodeError):
        over.next_message()  # stays failed


@pytest.mark.req("IPC-003")
def test_zero_length_message_has_no_command() -> None:
    err = _err(ipc.decode_ipc_frame, b"\x00\x00\x00\x00")
    assert err.code is ErrorCode.TRUNCATED and err.field == "ipc.cmd"
    with pytest.raises(DecodeError):
        ipc.IpcReader().feed(b"\x00\x00\x00\x00")


@pytest.mark.req("IPC-024")
@pytest.mark.parametrize("profile", list(Profile))
def test_trailing_bytes_after_fixed_payload_by_profile(profile: Profile) -> None:
    raw = bytes.fromhex("0103e8ffff")
    if profile is Profile.DRAFT:
        assert _err(ipc.decode_ipc_body, raw, profile).code is ErrorCode.TRAILING_DATA
    else:
        assert ipc.decode_ipc_body(raw, profile) == ipc.Bind(1000)  # Go reads the first two bytes


@pytest.mark.req("IPC-005")
def test_reader_enforces_direction() -> None:
    daemon = ipc.IpcReader(expect=Direction.TO_DAEMON)
    daemon.feed(ipc.encode_ipc_frame(ipc.Bind(7)) + ipc.encode_ipc_frame(ipc.BindOK(7)))
    assert daemon.next_message() == ipc.Bind(7)
    err = _err(daemon.next_message)
    assert err.code is ErrorCode.BAD_VALUE and err.requirement == "IPC-005"


@pytest.mark.req("IPC-004", "IPC-011", "IPC-014", "IPC-016", "IPC-017", "IPC-018", "IPC-021", "IPC-022", "IPC-024")
@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        ("00", ErrorCode.BAD_VALUE, "ipc.cmd"),
        ("23", ErrorCode.BAD_VALUE, "ipc.cmd"),
        ("ff", ErrorCode.BAD_VALUE, "ipc.cmd"),
        ("01" "03", ErrorCode.TRUNCATED, "ipc.bind.port"),
        ("03" "0001" "0000f2", ErrorCode.TRUNCATED, "ipc.dial.addr.node"),
        ("06" "000000", ErrorCode.TRUNCATED, "ipc.send.conn_id"),
        ("0a" "0001" "ff", ErrorCode.BAD_ENCODING, "ipc.error.message"),
        ("0a" "01", ErrorCode.TRUNCATED, "ipc.error.code"),
        ("0e" "7b", ErrorCode.BAD_ENCODING, "ipc.info_ok"),
        ("0e", ErrorCode.BAD_ENCODING, "ipc.info_ok"),
        ("19" "5b31", ErrorCode.BAD_ENCODING, "ipc.set_tags"),
        ("13" "c3", ErrorCode.BAD_ENCODING, "ipc.set_hostname"),
        ("15" "02", ErrorCode.BAD_VALUE, "ipc.set_visibility"),
        ("15", ErrorCode.TRUNCATED, "ipc.set_visibility.value"),
        ("1d" "ff", ErrorCode.BAD_VALUE, "ipc.set_task_exec"),
        ("0f", ErrorCode.TRUNCATED, "ipc.handshake.sub"),
        ("0f" "07", ErrorCode.BAD_VALUE, "ipc.handshake.sub"),
        ("0f" "00", ErrorCode.BAD_VALUE, "ipc.handshake.sub"),
        ("0f" "02" "000001", ErrorCode.TRUNCATED, "ipc.handshake.node_id"),
        ("0f" "03" "00000001" "ff", ErrorCode.BAD_ENCODING, "ipc.handshake.text"),
        ("1f" "08", ErrorCode.BAD_VALUE, "ipc.network.sub"),
        ("1f" "02" "00", ErrorCode.TRUNCATED, "ipc.network.network_id"),
        ("1f" "05" "0001" "000000", ErrorCode.TRUNCATED, "ipc.network.node_id"),
        ("1f" "07" "0001" "02", ErrorCode.BAD_VALUE, "ipc.network.accept"),
        ("1f" "02" "0001" "ff", ErrorCode.BAD_ENCODING, "ipc.network.token"),
    ],
    ids=["cmd-0", "cmd-0x23", "cmd-0xff", "bind-short", "dial-short", "send-short", "error-not-utf8",
         "error-short", "json-broken", "json-empty", "tags-broken", "hostname-not-utf8", "visibility-2",
         "visibility-missing", "taskexec-ff", "hs-no-sub", "hs-sub-7", "hs-sub-0", "hs-approve-short",
         "hs-reason-not-utf8", "net-sub-8", "net-join-short", "net-invite-short", "net-accept-2",
         "net-token-not-utf8"],
)  # fmt: skip
def test_invalid(body: str, code: ErrorCode, field: str) -> None:
    for profile in Profile:
        err = _err(ipc.decode_ipc_body, bytes.fromhex(body), profile)
        assert (err.code, err.field) == (code, field), profile


@pytest.mark.req("IPC-001")
def test_frame_length_mismatches() -> None:
    good = ipc.encode_ipc_frame(ipc.Close(3))
    assert _err(ipc.decode_ipc_frame, good[:3]).code is ErrorCode.TRUNCATED
    assert _err(ipc.decode_ipc_frame, good[:-1]).code is ErrorCode.TRUNCATED
    assert _err(ipc.decode_ipc_frame, good + b"\x00").code is ErrorCode.TRAILING_DATA


@pytest.mark.req("IPC-004")
def test_encoder_refuses_wrong_generic_command() -> None:
    with pytest.raises(LocalProtocolError):
        ipc.encode_ipc_body(ipc.Empty(Command.BIND))
    with pytest.raises(LocalProtocolError):
        ipc.encode_ipc_body(ipc.Flag(Command.SET_HOSTNAME, True))
    with pytest.raises(LocalProtocolError):
        ipc.encode_ipc_body(ipc.Bind(70000))


@pytest.mark.req("IPC-001", "IPC-004", "IPC-008", "IPC-013")
def test_vectors_committed_current_and_cover_every_command() -> None:
    import copy
    import json
    from pathlib import Path

    from pilot_proto.vectors import dump, verify_doc
    from pilot_proto.vectors._format import iter_tests
    from pilot_proto.vectors.ipc import SUITES

    suite = SUITES[0]
    text = (Path(__file__).resolve().parent.parent / "vectors" / suite.filename).read_text(encoding="utf-8")
    doc = json.loads(text)
    assert verify_doc(suite, doc) == []
    assert text == dump(suite.generate()), "stale: run `pilot-proto vectors generate --out vectors/`"
    for profile in Profile:
        cmds = {bytes.fromhex(t["msg"])[4] for _, t in iter_tests(doc) if t["profile"] == profile.value
                and t["result"] == "valid"}  # fmt: skip
        assert cmds == set(range(0x01, 0x23)), profile
    broken = copy.deepcopy(doc)
    next(t for _, t in iter_tests(broken) if t["result"] == "invalid")["error"] = "truncated-not"
    next(t for _, t in iter_tests(broken) if t["result"] == "valid")["decoded"]["port"] = 1
    assert len(suite.verify(broken)) == 2


@pytest.mark.req("IPC-001", "IPC-002", "IPC-024")
@pytest.mark.parametrize("profile", list(Profile))
@settings(max_examples=150, deadline=None)
@given(data=st.one_of(
    st.binary(max_size=24),
    st.tuples(st.sampled_from(range(0x00, 0x25)), st.binary(max_size=16)).map(
        lambda t: struct.pack(">I", 1 + len(t[1])) + bytes([t[0]]) + t[1]
    ),
))  # fmt: skip
def test_reader_agrees_with_schema_decoder(profile: Profile, data: bytes) -> None:
    """IpcReader (struct framing) and decode_ipc_frame (schema) give the same verdict."""
    try:
        expected: ipc.IpcMessage | None = ipc.decode_ipc_frame(data, profile)
        want: DecodeError | None = None
    except DecodeError as exc:
        expected, want = None, exc
    reader = ipc.IpcReader(profile)
    try:
        reader.feed(data)
        got, got_err = reader.messages(), None
    except DecodeError as exc:
        got, got_err = [], exc
    if want is None:
        assert got == [expected] and reader.buffered == 0
    elif want.code is ErrorCode.TRUNCATED:
        assert got == [] and (got_err is None or got_err.code is ErrorCode.TRUNCATED)
    elif want.code is ErrorCode.TRAILING_DATA:
        assert got or got_err is not None
    else:
        assert got_err is not None and got_err.code is want.code
