"""Property tests of the registry core: random request sequences from a few nodes (hypothesis).

After every request: nothing raises out of ``receive_request``; exactly one reply comes back; a refused
request emits one ``InputRejected`` and journals nothing; and replaying the journal so far into a fresh
registry gives exactly the live registry's durable state (so a restart from the store is faithful).
Hostnames stay unique and every trust pair has both consents.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pilot_proto.profile import Profile
from pilot_proto.registry import Registry, RegistryCodec, RegistryConfig
from pilot_proto.sansio import InputRejected
from pilot_proto.tunnel import Identity

T0 = 1_800_000_000.0
EXAMPLES = int(os.environ.get("REG_EXAMPLES", "60"))  # raise it for a longer local run
IDENTS = [Identity.from_seed(bytes([i + 1]) * 32) for i in range(4)]
SPARE = [Identity.from_seed(bytes([i + 100]) * 32) for i in range(3)]  # keys a node may rotate to
NAMES = ["alpha", "beta", "Bad", ""]

node = st.integers(0, 3)
actor = st.sampled_from([0, 0, 0, 1, 2, 3])  # node 0 owns network 1 (set up first), so role checks often pass
net = st.sampled_from([1, 1, 1, 0, 2])
op = st.one_of(
    st.tuples(st.just("register"), node, st.sampled_from(NAMES), st.integers(1, 3)),
    st.tuples(st.just("heartbeat"), node),
    st.tuples(st.just("deregister"), node),
    st.tuples(st.just("set_hostname"), node, st.sampled_from(NAMES)),
    st.tuples(st.just("set_visibility"), node, st.booleans()),
    st.tuples(st.just("report_trust"), node, node),
    st.tuples(st.just("revoke_trust"), node, node),
    st.tuples(st.just("request_handshake"), node, node),
    st.tuples(st.just("respond_handshake"), node, node, st.booleans()),
    st.tuples(st.just("poll_handshakes"), node),
    st.tuples(st.just("create_network"), node, st.sampled_from(["lab", "ops"])),
    st.tuples(st.just("join_network"), node, st.integers(0, 3)),
    st.tuples(st.just("leave_network"), node, st.integers(0, 3)),
    st.tuples(st.just("resolve"), node, node),
    st.tuples(
        st.sampled_from(["promote_member", "demote_member", "kick_member", "transfer_ownership"]),
        actor,
        net,
        node,
    ),
    st.tuples(st.just("delete_network"), actor, net),
    st.tuples(st.just("set_network_policy"), actor, net, st.integers(0, 5)),
    st.tuples(st.just("forged"), node, node),  # node X's request signed by node Y
    st.tuples(st.just("replay"), node),
    st.tuples(st.just("tick"), st.floats(0, 200)),
    st.tuples(st.just("rotate_key"), node, st.integers(0, 2)),
)


def _request(kind: str, me: int, args: tuple[Any, ...], ids: dict[int, int]) -> dict[str, Any]:
    nid = ids.get(me, 999)
    net_ops = ("join_network", "leave_network", "delete_network", "set_network_policy")
    names_a_peer = bool(args) and isinstance(args[0], int) and kind not in net_ops
    other = ids.get(args[0], 998) if names_a_peer else 0
    if kind == "heartbeat" or kind == "deregister" or kind == "poll_handshakes":
        return {"type": kind, "node_id": nid}
    if kind == "set_hostname":
        return {"type": kind, "node_id": nid, "hostname": args[0]}
    if kind == "set_visibility":
        return {"type": kind, "node_id": nid, "public": args[0]}
    if kind in ("report_trust", "revoke_trust"):
        return {"type": kind, "node_id": nid, "peer_id": other}
    if kind == "request_handshake":
        return {"type": kind, "from_node_id": nid, "to_node_id": other, "justification": "j"}
    if kind == "respond_handshake":
        return {"type": kind, "node_id": nid, "peer_id": other, "accept": args[1]}
    if kind == "create_network":
        return {"type": kind, "node_id": nid, "name": args[0], "admin_token": "t"}
    if kind in ("join_network", "leave_network"):
        return {"type": kind, "node_id": nid, "network_id": args[0]}
    if kind in ("promote_member", "demote_member", "kick_member"):
        return {"type": kind, "node_id": nid, "network_id": args[0], "target_node_id": ids.get(args[1], 998)}
    if kind == "transfer_ownership":
        return {"type": kind, "node_id": nid, "network_id": args[0], "new_owner_id": ids.get(args[1], 998)}
    if kind == "delete_network":
        return {"type": kind, "node_id": nid, "network_id": args[0]}
    if kind == "set_network_policy":
        return {"type": kind, "node_id": nid, "network_id": args[0], "max_members": args[1]}
    if kind == "resolve":
        return {"type": kind, "node_id": other, "requester_id": nid}
    raise AssertionError(kind)


def _durable(reg: Registry) -> dict[str, Any]:
    """The snapshot without the replay floors (a restart raises them to the restart time on purpose)."""
    snap = reg.snapshot()
    snap["nodes"] = [{k: v for k, v in n.items() if k != "last_ts"} for n in snap["nodes"]]
    return snap


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(ops=st.lists(op, max_size=40), profile=st.sampled_from([Profile.DRAFT, Profile.GO_INTEROP]))
def test_random_histories_replay_exactly_and_keep_invariants(ops: list[tuple[Any, ...]], profile: Profile) -> None:
    cfg = RegistryConfig.for_profile(profile, admin_token="t", rate=0)
    reg = Registry(cfg, now=T0)
    codecs = [RegistryCodec(profile) for _ in IDENTS]
    ids: dict[int, int] = {}
    journal: list[dict[str, Any]] = []
    now = T0
    last_signed: dict[str, Any] | None = None
    steps: list[tuple[Any, ...]] = [("register", i, "", 1) for i in range(len(IDENTS))]
    steps += [("create_network", 0, "lab"), ("join_network", 1, 1), ("join_network", 2, 1)]  # network 1, owner 0
    for step in [*steps, *ops]:
        kind, me, *rest = step
        now += 0.5
        if kind == "tick":
            reg.handle_timer(now + float(me))
            journal += reg.records_to_persist()
            while reg.next_event() is not None:
                pass
            continue
        if kind == "register":
            name, port = rest
            msg = codecs[me].register_msg(IDENTS[me], f"127.0.0.1:{port}", hostname=name)
            msg = codecs[me].sign(msg, now)
        elif kind == "forged":
            msg = codecs[rest[0]].sign({"type": "heartbeat", "node_id": ids.get(me, 999)}, now)
        elif kind == "rotate_key":
            if codecs[me].node_id is None:
                continue
            msg = codecs[me].sign(codecs[me].rotate_msg(SPARE[rest[0]], now), now)
        elif kind == "replay":
            if last_signed is None:
                continue
            msg = last_signed
        else:
            msg = codecs[me].sign(_request(kind, me, tuple(rest), ids), now)
        soft = repr((reg._inbox, reg._responses))
        reg.receive_request(msg, "127.0.0.1:1", now, tag=step)
        records = reg.records_to_persist()
        (reply,) = reg.replies_to_send()
        events = []
        while (ev := reg.next_event()) is not None:
            events.append(ev)
        if reply.message["type"] == "error":
            assert records == [] and [type(e) for e in events] == [InputRejected], (step, reply)
            assert repr((reg._inbox, reg._responses)) == soft, step  # nor the soft state (relay inboxes)
        elif kind == "register":
            ids[me] = reply.message["node_id"]
            codecs[me].registered(reply.message)
        elif kind == "rotate_key":
            codecs[me].identity = SPARE[rest[0]]
        if msg.get("signature"):
            last_signed = msg
        journal += records
        # a restart from the journal reproduces the durable state exactly
        fresh = Registry(cfg, now=T0)
        fresh.restore(journal, now)
        assert _durable(fresh) == _durable(reg)
        live = reg.nodes()
        names = [n.hostname for n in live if n.hostname]
        assert len(names) == len(set(names))
        for a in live:
            for b in live:
                if reg.trusted(a.node_id, b.node_id):
                    assert reg.trusted(b.node_id, a.node_id)
    # under draft, replaying a signed request changes nothing (refused, or an idempotent no-op)
    if profile is Profile.DRAFT and last_signed is not None:
        before = reg.snapshot()
        reg.receive_request(last_signed, "127.0.0.1:1", now + 1)
        reply = reg.replies_to_send()[0].message
        assert reg.records_to_persist() == [] and reg.snapshot() == before, reply
