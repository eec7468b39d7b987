"""The path manager's transition table is what runs (draft 9.4; h2's ``_transitions`` is the model).

* every (state, input) pair is swept through ``PathManager._apply``: listed pairs end in the
  table's next state and run its action (checked by what the action visibly does), unlisted pairs
  are refused with INVALID_STATE and change nothing;
* every public stimulus (connect, confirm_direct, confirm_relay, a due timer) in every state lands
  where the 9.4 strategy says, written down here independently of the code's classifier;
* no code in ``nat/path.py`` assigns a path's state except ``_apply``.
"""

from __future__ import annotations

import ast
import copy
import inspect
from collections.abc import Callable

import pytest

from pilot_proto.errors import ErrorCode, LocalProtocolError
from pilot_proto.nat import (
    TRANSITIONS,
    NatConfig,
    PathDirect,
    PathInput,
    PathManager,
    PathRelayed,
    PathState,
    PeerPath,
    PeerUnreachable,
)
from pilot_proto.nat import path as path_module
from pilot_proto.sansio import Datagram
from pilot_proto.wire.beacon import Endpoint, PunchRequest, Relay, decode_beacon, encode_beacon

BEACON = Endpoint("203.0.113.1", 9001)
PEER = Endpoint("198.51.100.2", 40001)
NEW = Endpoint("198.51.100.2", 40099)
STATES: list[PathState | None] = [None, *PathState]
PROBE = b"PING"


def manager(beacon: Endpoint | None = BEACON) -> PathManager:
    pm = PathManager(1, beacon, NatConfig(rediscover_interval=None), probe=lambda peer: PROBE)
    pm.start(0.0)
    pm.datagrams_to_send()
    pm.events()
    return pm


def put(pm: PathManager, state: PathState | None, **fields: object) -> None:
    """Place peer 2 in ``state`` (test set-up only: the table is what moves it afterwards)."""
    if state is None:
        return
    base: dict[str, object] = {"registered": PEER, "last_sent": 0.0, "last_heard": 0.0}
    if state is PathState.DIRECT:
        base["direct"] = PEER
    base.update(fields)
    pm.peers[2] = PeerPath(2, state, **base)  # type: ignore[arg-type]


def _sent_to(pm: PathManager) -> list[Datagram]:
    return pm.datagrams_to_send()


# What each action visibly does, given the set-up of ``put`` (endpoint argument NEW, now 100.0).
ACTION_EFFECTS: dict[str, Callable[[PathManager, list[Datagram], list[object]], bool]] = {
    "dial": lambda pm, out, ev: (
        out[0] == Datagram(encode_beacon(PunchRequest(1, 2)), BEACON)
        and Datagram(PROBE, NEW) in out
        and pm.peers[2].attempts == 1
    ),
    "learn_locator": lambda pm, out, ev: out == [] and ev == [] and pm.peers[2].registered == NEW,
    "redial": lambda pm, out, ev: (
        PEER in pm.peers[2].candidates and pm.peers[2].direct is None and Datagram(PROBE, PEER) in out
    ),
    "direct_attempt": lambda pm, out, ev: out == [Datagram(PROBE, PEER)],
    "start_relay": lambda pm, out, ev: (
        [decode_beacon(d.data) for d in out] == [Relay(1, 2, PROBE)] and pm.peers[2].attempts == 1
    ),
    "relay_attempt": lambda pm, out, ev: [decode_beacon(d.data) for d in out] == [Relay(1, 2, PROBE)],
    "fail": lambda pm, out, ev: len(ev) == 1 and isinstance(ev[0], PeerUnreachable) and pm.peers[2].deadline is None,
    "go_direct": lambda pm, out, ev: ev == [PathDirect(2, NEW)] and pm.peers[2].direct == NEW,
    "heard_direct": lambda pm, out, ev: pm.peers[2].last_heard == 100.0,  # NEW != PEER: rebinds, see below
    "go_relay": lambda pm, out, ev: ev == [PathRelayed(2)] and pm.peers[2].direct is None,
    "heard_relay": lambda pm, out, ev: ev == [] and out == [] and pm.peers[2].last_heard == 100.0,
    "probe_direct": lambda pm, out, ev: out == [Datagram(PROBE, PEER)] and pm.peers[2].deadline == 160.0,
    "keepalive": lambda pm, out, ev: out == [Datagram(PROBE, PEER)] and pm.peers[2].last_sent == 100.0,
}


def test_every_action_is_a_method_and_every_method_is_an_action() -> None:
    actions = {t.action for t in TRANSITIONS.values()}
    methods = {name[len("_act_") :] for name, _ in inspect.getmembers(PathManager) if name.startswith("_act_")}
    assert actions == methods == set(ACTION_EFFECTS)


@pytest.mark.req("NAT-030", "NAT-031", "NAT-032", "NAT-033", "NAT-035", "NAT-036")
@pytest.mark.parametrize("state", STATES, ids=lambda s: s.name if s else "NONE")
@pytest.mark.parametrize("inp", list(PathInput), ids=lambda i: i.name)
def test_sweep_apply_follows_the_table(state: PathState | None, inp: PathInput) -> None:
    pm = manager()
    put(pm, state, attempts=3 if inp is PathInput.EXHAUSTED else 0)
    step = TRANSITIONS.get((state, inp))
    before = copy.deepcopy(pm.peers)
    if step is None:
        with pytest.raises(LocalProtocolError) as info:
            pm._apply(2, inp, 100.0, NEW)
        assert info.value.code is ErrorCode.INVALID_STATE
        assert pm.peers == before and pm.datagrams_to_send() == [] and pm.events() == []
        return
    pm._apply(2, inp, 100.0, NEW)
    assert pm.state(2) is step.next
    assert ACTION_EFFECTS[step.action](pm, pm.datagrams_to_send(), list(pm.events())), step


def test_heard_direct_from_a_new_endpoint_follows_it() -> None:
    pm = manager()
    put(pm, PathState.DIRECT)
    pm.confirm_direct(2, PEER, 5.0)
    assert pm.events() == [] and pm.peers[2].last_heard == 5.0
    pm.confirm_direct(2, NEW, 6.0)  # authenticated from elsewhere: the peer's NAT rebound
    assert pm.events() == [PathDirect(2, NEW)] and pm.peers[2].direct == NEW


# The 9.4 strategy for a due timer, independent of PathManager._timer_input:
# (state, attempts made, beacon?, silent for direct_dead_after?) -> state after handle_timer
TIMER_CASES: list[tuple[PathState, int, bool, bool, PathState]] = [
    (PathState.DIRECT_TRYING, 1, True, False, PathState.DIRECT_TRYING),  # NAT-030: attempt 2
    (PathState.DIRECT_TRYING, 3, True, False, PathState.RELAY_TRYING),  # NAT-031
    (PathState.DIRECT_TRYING, 3, False, False, PathState.FAILED),  # no beacon, no relay
    (PathState.RELAY_TRYING, 1, True, False, PathState.RELAY_TRYING),  # NAT-032
    (PathState.RELAY_TRYING, 3, True, False, PathState.FAILED),  # NAT-033
    (PathState.RELAY, 0, True, False, PathState.RELAY),  # NAT-035 probe
    (PathState.DIRECT, 0, True, False, PathState.DIRECT),  # NAT-036 keepalive
    (PathState.DIRECT, 0, True, True, PathState.DIRECT_TRYING),  # silent: dial again
    (PathState.FAILED, 0, True, False, PathState.FAILED),  # no timer runs on a failed path
]


@pytest.mark.req("NAT-030", "NAT-031", "NAT-032", "NAT-033", "NAT-035", "NAT-036")
@pytest.mark.parametrize(("state", "attempts", "beacon", "silent", "after"), TIMER_CASES)
def test_timers_move_paths_as_the_strategy_says(
    state: PathState, attempts: int, beacon: bool, silent: bool, after: PathState
) -> None:
    pm = manager(BEACON if beacon else None)
    now = 100.0
    heard = now - 80.0 if silent else now - 1.0
    put(pm, state, attempts=attempts, deadline=None if state is PathState.FAILED else now, last_heard=heard)
    pm.handle_timer(now)
    assert pm.state(2) is after


STIMULI: dict[str, Callable[[PathManager], None]] = {
    "connect": lambda pm: pm.connect(2, 100.0, NEW),
    "confirm_direct": lambda pm: pm.confirm_direct(2, NEW, 100.0),
    "confirm_relay": lambda pm: pm.confirm_relay(2, 100.0),
}
#: (state, stimulus) -> state afterwards, from the module docstring's strategy
STIMULUS_RESULT: dict[str, Callable[[PathState | None], PathState]] = {
    "connect": lambda s: PathState.DIRECT_TRYING if s in (None, PathState.FAILED) else s,
    "confirm_direct": lambda s: PathState.DIRECT,
    "confirm_relay": lambda s: PathState.RELAY,
}


@pytest.mark.req("NAT-030", "NAT-035", "NAT-043")
@pytest.mark.parametrize("state", STATES, ids=lambda s: s.name if s else "NONE")
@pytest.mark.parametrize("stimulus", list(STIMULI))
def test_public_inputs_land_where_the_strategy_says(state: PathState | None, stimulus: str) -> None:
    pm = manager()
    put(pm, state)
    STIMULI[stimulus](pm)
    assert pm.state(2) is STIMULUS_RESULT[stimulus](state)


def test_only_apply_assigns_a_path_state() -> None:
    """Every ``<x>.state = ...`` in nat/path.py is inside ``PathManager._apply``."""
    tree = ast.parse(inspect.getsource(path_module))
    where: list[str] = []
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(func):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AugAssign | ast.AnnAssign):
                targets = [node.target]
            for t in targets:
                if isinstance(t, ast.Attribute) and t.attr == "state":
                    where.append(func.name)
    assert where == ["_apply"]
