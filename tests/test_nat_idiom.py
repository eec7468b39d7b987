"""The NAT layer speaks the one sans-IO idiom (pilot_proto.sansio): Protocol, events, refused input.

For each of the three state machines (beacon server, beacon client, path manager) every kind of
bad input yields exactly one ``InputRejected`` with the refusing layer and the whole typed error,
sends nothing, and leaves the state exactly as it was.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from collections.abc import Callable

import pytest

from pilot_proto.errors import ErrorCode, PilotError
from pilot_proto.nat import BeaconClient, BeaconConfig, BeaconServer, NatConfig, PathManager
from pilot_proto.nat import events as nat_events
from pilot_proto.profile import Profile
from pilot_proto.sansio import DatagramEndpoint, Event, InputRejected
from pilot_proto.testing.nat import SimHost, SimSink
from pilot_proto.wire.beacon import (
    Discover,
    DiscoverReply,
    Endpoint,
    PunchCommand,
    PunchRequest,
    Relay,
    RelayDeliver,
    Sync,
    encode_beacon,
)

BEACON = Endpoint("203.0.113.1", 9001)
A = Endpoint("198.51.100.1", 40000)
B = Endpoint("198.51.100.2", 40001)
EVIL = Endpoint("192.0.2.66", 6666)
FRAME = b"PILS" + bytes(36)

ENDPOINTS: list[Callable[[], object]] = [
    lambda: BeaconServer(),
    lambda: BeaconClient(1, BEACON),
    lambda: PathManager(1, BEACON),
    lambda: SimHost(1, A, BEACON),
    lambda: SimSink(),
]


@pytest.mark.parametrize("make", ENDPOINTS, ids=["BeaconServer", "BeaconClient", "PathManager", "SimHost", "SimSink"])
def test_every_nat_endpoint_is_a_datagram_endpoint(make: Callable[[], object]) -> None:
    obj = make()
    assert isinstance(obj, DatagramEndpoint)
    params = list(inspect.signature(obj.receive_datagram).parameters)  # type: ignore[attr-defined]
    assert params == ["data", "addr", "now"]
    assert obj.receive_datagram(b"\xff", EVIL, 0.0) is None  # type: ignore[attr-defined]  # nothing is returned


def test_nat_events_are_frozen_slotted_event_dataclasses() -> None:
    classes = [c for _, c in inspect.getmembers(nat_events, inspect.isclass) if c.__module__ == nat_events.__name__]
    assert len(classes) == 10
    for cls in classes:
        assert issubclass(cls, Event) and dataclasses.is_dataclass(cls)
        assert cls.__dataclass_params__.frozen, cls  # type: ignore[attr-defined]
        assert "__slots__" in cls.__dict__ and cls.__dictoffset__ == 0, cls  # slotted all the way: no __dict__
    assert nat_events.Datagram.__module__ == "pilot_proto.sansio"


def _check_one_rejection(events: list[Event], layer: str, code: ErrorCode) -> PilotError:
    assert len(events) == 1, events
    [ev] = events
    assert isinstance(ev, InputRejected) and ev.layer == layer
    err = ev.error
    assert isinstance(err, PilotError) and err.code is code
    assert err.field and err.rule and err.section and err.requirement, err.to_dict()
    return err


# -- beacon server -------------------------------------------------------------------------------------


def _server() -> BeaconServer:
    srv = BeaconServer(BeaconConfig(max_relay_payload=100, rate_per_source=1.0, burst_per_source=50.0))
    srv.receive_datagram(encode_beacon(Discover(1)), A, 0.0)
    srv.receive_datagram(encode_beacon(Discover(2)), B, 0.0)
    srv.datagrams_to_send()
    srv.events()
    return srv


SERVER_BAD: list[tuple[str, bytes, Endpoint, ErrorCode]] = [
    ("unknown type", b"\x09", A, ErrorCode.BAD_MAGIC),
    ("truncated", b"\x01\x00", A, ErrorCode.TRUNCATED),
    ("empty", b"", A, ErrorCode.TRUNCATED),
    ("daemon-bound", encode_beacon(DiscoverReply(A)), A, ErrorCode.BAD_VALUE),
    ("sync", encode_beacon(Sync(5, (1,))), A, ErrorCode.BAD_VALUE),
    ("punch from elsewhere", encode_beacon(PunchRequest(1, 2)), EVIL, ErrorCode.SPOOFED),
    ("punch unknown target", encode_beacon(PunchRequest(1, 99)), A, ErrorCode.UNKNOWN_PEER),
    ("relay too large", encode_beacon(Relay(1, 2, b"P" * 101)), A, ErrorCode.TOO_LARGE),
    ("relay spoofed sender", encode_beacon(Relay(2, 1, FRAME)), A, ErrorCode.SPOOFED),
    ("relay unknown dest", encode_beacon(Relay(1, 99, FRAME)), A, ErrorCode.UNKNOWN_PEER),
]


@pytest.mark.req("NAT-027", "NAT-018", "NAT-025", "NAT-045")
@pytest.mark.parametrize(("what", "data", "source", "code"), SERVER_BAD, ids=[c[0] for c in SERVER_BAD])
def test_beacon_server_refuses_with_one_event(what: str, data: bytes, source: Endpoint, code: ErrorCode) -> None:
    srv = _server()
    before = copy.deepcopy(srv.nodes)
    srv.receive_datagram(data, source, 5.0)
    _check_one_rejection(srv.events(), "beacon-server", code)
    assert srv.nodes == before and srv.datagrams_to_send() == []


@pytest.mark.req("NAT-044")
def test_beacon_server_rate_limit_is_one_event_per_datagram() -> None:
    srv = BeaconServer(BeaconConfig(rate_per_source=1.0, burst_per_source=2.0))
    for _ in range(2):
        srv.receive_datagram(encode_beacon(Discover(1)), A, 0.0)
    srv.datagrams_to_send()
    srv.events()
    before = copy.deepcopy(srv.nodes)
    srv.receive_datagram(encode_beacon(Discover(7)), A, 0.0)
    _check_one_rejection(srv.events(), "beacon-server", ErrorCode.RATE_LIMITED)
    assert srv.nodes == before and srv.datagrams_to_send() == [] and srv.stats["rate_limited"] == 1


# -- beacon client -------------------------------------------------------------------------------------


def _client(profile: Profile = Profile.DRAFT) -> BeaconClient:
    cl = BeaconClient(1, BEACON, NatConfig.for_profile(profile))
    cl.start(0.0)
    cl.receive_datagram(encode_beacon(DiscoverReply(A)), BEACON, 0.1)  # discovery done
    cl.datagrams_to_send()
    cl.events()
    return cl


def _client_state(cl: BeaconClient) -> tuple[object, ...]:
    return cl.endpoint, cl.discovering, cl.get_timer(), cl._tries


CLIENT_BAD: list[tuple[str, Profile, bytes, Endpoint, ErrorCode]] = [
    ("not from the beacon", Profile.DRAFT, encode_beacon(PunchCommand(EVIL)), EVIL, ErrorCode.SPOOFED),
    ("unknown type", Profile.DRAFT, b"\x09abc", BEACON, ErrorCode.BAD_MAGIC),
    ("truncated", Profile.DRAFT, b"\x04\x04", BEACON, ErrorCode.TRUNCATED),
    ("unsolicited reply", Profile.DRAFT, encode_beacon(DiscoverReply(EVIL)), BEACON, ErrorCode.INVALID_STATE),
    ("beacon-bound type", Profile.DRAFT, encode_beacon(Discover(3)), BEACON, ErrorCode.BAD_VALUE),
    ("punch in a relay", Profile.GO_INTEROP, encode_beacon(RelayDeliver(2, b"PILP")), BEACON, ErrorCode.BAD_VALUE),
    ("short relay", Profile.GO_INTEROP, encode_beacon(RelayDeliver(2, b"PI")), BEACON, ErrorCode.BAD_VALUE),
    ("bare frame (go)", Profile.GO_INTEROP, FRAME, BEACON, ErrorCode.BAD_MAGIC),
    ("bare punch (draft)", Profile.DRAFT, b"PILP\x00\x00\x00\x02", BEACON, ErrorCode.BAD_VALUE),
]


@pytest.mark.req("NAT-010", "NAT-027", "NAT-040", "NAT-042", "NAT-023")
@pytest.mark.parametrize(("what", "profile", "data", "source", "code"), CLIENT_BAD, ids=[c[0] for c in CLIENT_BAD])
def test_beacon_client_refuses_with_one_event(
    what: str, profile: Profile, data: bytes, source: Endpoint, code: ErrorCode
) -> None:
    cl = _client(profile)
    before = _client_state(cl)
    cl.receive_datagram(data, source, 1.0)
    err = _check_one_rejection(cl.events(), "beacon-client", code)
    assert _client_state(cl) == before and cl.datagrams_to_send() == [], err


# -- path manager --------------------------------------------------------------------------------------


def _paths(**kw: object) -> PathManager:
    pm = PathManager(1, BEACON, NatConfig.for_profile(Profile.DRAFT, **kw))
    pm.start(0.0)
    pm.receive_datagram(encode_beacon(DiscoverReply(A)), BEACON, 0.1)
    pm.connect(2, 0.2, B)
    pm.confirm_direct(2, B, 0.3)
    pm.datagrams_to_send()
    pm.events()
    return pm


def _path_state(pm: PathManager) -> tuple[object, ...]:
    return copy.deepcopy(pm.peers), _client_state(pm.beacon)


PATH_BAD: list[tuple[str, bytes, Endpoint, str, ErrorCode]] = [
    ("truncated frame", b"PI", B, "path", ErrorCode.TRUNCATED),
    ("empty datagram", b"", B, "path", ErrorCode.TRUNCATED),
    ("short PILP", b"PILP\x00", EVIL, "path", ErrorCode.TRUNCATED),
    ("long PILP", b"PILP\x00\x00\x00\x02\x00", EVIL, "path", ErrorCode.TRAILING_DATA),
    ("spoofed punch command", encode_beacon(PunchCommand(EVIL)), EVIL, "beacon-client", ErrorCode.SPOOFED),
    ("malformed beacon message", b"\x02\x05", BEACON, "beacon-client", ErrorCode.BAD_VALUE),
]


@pytest.mark.req("NAT-027", "NAT-040", "NAT-043", "TUN-006")
@pytest.mark.parametrize(("what", "data", "source", "layer", "code"), PATH_BAD, ids=[c[0] for c in PATH_BAD])
def test_path_manager_refuses_with_one_event(
    what: str, data: bytes, source: Endpoint, layer: str, code: ErrorCode
) -> None:
    pm = _paths()
    before = _path_state(pm)
    pm.receive_datagram(data, source, 1.0)
    _check_one_rejection(pm.events(), layer, code)
    assert _path_state(pm) == before and pm.datagrams_to_send() == []


@pytest.mark.req("NAT-046", "NAT-041")
def test_rate_limited_unsolicited_punch_is_one_event() -> None:
    pm = _paths(unsolicited_punch_burst=1.0, unsolicited_punch_rate=0.001)
    cmd = encode_beacon(PunchCommand(EVIL))
    pm.receive_datagram(cmd, BEACON, 1.0)  # within the budget: three PILPs, no event
    assert len(pm.datagrams_to_send()) == 3 and pm.events() == []
    before = _path_state(pm)
    pm.receive_datagram(cmd, BEACON, 1.0)
    err = _check_one_rejection(pm.events(), "path", ErrorCode.RATE_LIMITED)
    assert err.requirement == "NAT-046" and pm.stats["punch_rate_limited"] == 1
    assert _path_state(pm) == before and pm.datagrams_to_send() == []
