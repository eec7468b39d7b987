"""The registry's rules for networks: create, join, leave, list, roles, policies and the audit log
(draft 3.2, 10.7, 18.1-18.3).

Roles are owner > admin > member (ENT-001); every role-gated request is signed by the acting node or carries
the admin token (E-REG-10).  Built on the shared checks in :mod:`~pilot_proto.registry.rules`.
"""

from __future__ import annotations

import hmac
from dataclasses import replace
from typing import Any

from pilot_proto.errors import ErrorCode
from pilot_proto.profile import Profile
from pilot_proto.registry.rules import Handler, _addr, _admin_ok, _bool, _live, _str, _uint, _verify
from pilot_proto.registry.state import (
    _HOSTNAME,
    _RESERVED_NETWORKS,
    Registry,
    _Network,
    _Node,
    _refuse,
    _Staged,
)


def _create_network(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    reg = st.reg
    if not _admin_ok(reg, msg):
        raise _refuse(ErrorCode.AUTH_REQUIRED, "network creation needs a valid admin token", "admin_token",
                      "CONS-004", "19.3")  # fmt: skip
    creator = _live(reg, _uint(msg, "node_id"))
    name = _str(msg, "name", 63, required=True)
    if not _HOSTNAME.match(name) or name in _RESERVED_NETWORKS:
        raise _refuse(ErrorCode.BAD_VALUE, f"invalid network name {name!r}", "name")
    rule = _str(msg, "join_rule", 16) or "open"
    if rule not in ("open", "token", "invite"):
        raise _refuse(ErrorCode.BAD_VALUE, f"join_rule {rule!r} not supported (open, token or invite)", "join_rule")
    token = _str(msg, "token", 256)
    if rule == "token" and not token:
        raise _refuse(ErrorCode.BAD_VALUE, "a token network needs a token", "token")
    if any(n.name == name for n in reg._networks.values()):
        raise _refuse(ErrorCode.INVALID_STATE, f"network {name!r} already exists", "name")
    if len(reg._networks) >= reg.config.max_networks or reg._next_net >= 0xFFFF:
        raise _refuse(ErrorCode.TABLE_FULL, "network table full", "network_id")
    net = _Network(reg._next_net, name, rule, token, [creator.node_id], {creator.node_id: "owner"}, now)
    st.put_net(net)
    st.put_node(replace(creator, networks=[*creator.networks, net.net_id]))
    st.audit(now, "network.created", creator.node_id, network_id=net.net_id, name=name, join_rule=rule)
    return {"type": "create_network_ok", "network_id": net.net_id, "name": name, "enterprise": False}


def _membership(st: _Staged, msg: dict[str, Any], now: float) -> tuple[_Node, _Network]:
    reg = st.reg
    node = _live(reg, _uint(msg, "node_id"))
    net_id = _uint(msg, "network_id", 16)
    if net_id == 0:
        raise _refuse(ErrorCode.BAD_VALUE, "cannot join or leave the backbone network", "network_id")
    _verify(st, node, msg, now)
    net = reg._networks.get(net_id)
    if net is None:
        raise _refuse(ErrorCode.UNKNOWN_PEER, f"network {net_id} not found", "network_id")
    return node, net


def _join_network(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    node, net = _membership(st, msg, now)
    if net.join_rule == "invite":
        raise _refuse(ErrorCode.AUTH_REQUIRED, f"network {net.net_id} is invite-only: it is joined by accepting an "
                      "invite (invite_to_network, then respond_invite)", "network_id", "ENT-005", "18.1")  # fmt: skip
    if net.join_rule == "token":
        token = _str(msg, "token", 256)
        if not hmac.compare_digest(token.encode(), net.token.encode()):
            raise _refuse(ErrorCode.AUTH_REQUIRED, f"invalid token for network {net.net_id}", "token")
    if net.net_id in node.networks:
        raise _refuse(ErrorCode.INVALID_STATE, f"node {node.node_id} already in network {net.net_id}", "network_id")
    limit = int(net.policy.get("max_members", 0)) or st.reg.config.max_members
    if len(net.members) >= min(limit, st.reg.config.max_members):
        raise _refuse(ErrorCode.TABLE_FULL, "network membership limit reached", "network_id", "ENT-008", "18.2")
    st.put_net(replace(net, members=[*net.members, node.node_id], roles={**net.roles, node.node_id: "member"}))
    st.put_node(replace(node, networks=[*node.networks, net.net_id]))
    st.audit(now, "network.joined", node.node_id, network_id=net.net_id)
    return {"type": "join_network_ok", "network_id": net.net_id, "address": _addr(node.node_id, net.net_id)}


def _leave_network(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    node, net = _membership(st, msg, now)
    if net.net_id not in node.networks:
        raise _refuse(ErrorCode.INVALID_STATE, f"node {node.node_id} is not a member of network {net.net_id}",
                      "network_id")  # fmt: skip
    if net.roles.get(node.node_id) == "owner" and len(net.members) > 1:
        raise _refuse(ErrorCode.INVALID_STATE, "cannot leave network: the owner must transfer ownership first",
                      "network_id", "ENT-002", "18.1")  # fmt: skip
    st.put_net(replace(net, members=[m for m in net.members if m != node.node_id],
                       roles={k: v for k, v in net.roles.items() if k != node.node_id}))  # fmt: skip
    st.put_node(replace(node, networks=[n for n in node.networks if n != net.net_id]))
    st.revoke_invites(node.node_id, net.net_id)  # a member who left invites no one there (as Go)
    st.audit(now, "network.left", node.node_id, network_id=net.net_id)
    return {"type": "leave_network_ok", "network_id": net.net_id}


_RANK = {"member": 1, "admin": 2, "owner": 3}


def _net_and_actor(st: _Staged, msg: dict[str, Any], now: float, minimum: str) -> tuple[_Network, int | None]:
    """The network and the acting node, which must hold at least ``minimum`` there (ENT-005) or be the admin."""
    reg = st.reg
    net_id = _uint(msg, "network_id", 16)
    if net_id == 0:
        raise _refuse(ErrorCode.BAD_VALUE, "the backbone network has no roles", "network_id", "ENT-005", "18.1")
    net = reg._networks.get(net_id)
    if net is None:
        raise _refuse(ErrorCode.UNKNOWN_PEER, f"network {net_id} not found", "network_id")
    if _admin_ok(reg, msg):
        return net, None
    actor = _live(reg, _uint(msg, "node_id"))
    _verify(st, actor, msg, now, admin_ok=False)
    role = net.roles.get(actor.node_id)
    if role is None or _RANK[role] < _RANK[minimum]:
        raise _refuse(ErrorCode.AUTH_REQUIRED, f"rbac: node {actor.node_id} has role {role or 'none'} in network "
                      f"{net_id}; this needs {minimum}", "node_id", "ENT-005", "18.1")  # fmt: skip
    return net, actor.node_id


def _member(reg: Registry, net: _Network, msg: dict[str, Any], key: str) -> int:
    target = _uint(msg, key)
    if target not in net.members:
        raise _refuse(ErrorCode.UNKNOWN_PEER, f"node {target} is not a member of network {net.net_id}", key)
    return target


def _promote(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    return _change_role(st, msg, now, "member", "admin", "promote", "promoted", "already {role}")


def _demote(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    return _change_role(st, msg, now, "admin", "member", "demote", "demoted", "{role}")


def _change_role(
    st: _Staged, msg: dict[str, Any], now: float, old: str, new: str, verb: str, done: str, state: str
) -> dict[str, Any]:
    """Promote (member -> admin) or demote (admin -> member) ``target_node_id``.  Draft 18.1: admins may do
    both; Go lets only the owner (E-REG-10).  ``state`` phrases the refusal when the target's role is not ``old``."""
    need = "owner" if st.reg.profile is Profile.GO_INTEROP else "admin"
    net, actor = _net_and_actor(st, msg, now, need)
    target = _member(st.reg, net, msg, "target_node_id")
    role = net.roles.get(target, "member")
    if role != old:
        raise _refuse(ErrorCode.INVALID_STATE, f"cannot {verb} node {target}: it is {state.format(role=role)}",
                      "target_node_id")  # fmt: skip
    st.put_net(replace(net, roles={**net.roles, target: new}))
    st.audit(now, f"member.{done}", actor, network_id=net.net_id, target=target, old=role, new=new)
    return {"type": f"{verb}_member_ok", "network_id": net.net_id, "target_node_id": target, "role": new}


def _kick(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    reg = st.reg
    net, actor = _net_and_actor(st, msg, now, "admin")
    target = _member(reg, net, msg, "target_node_id")
    if net.roles.get(target) == "owner":
        raise _refuse(ErrorCode.INVALID_STATE, "cannot kick the network owner", "target_node_id", "ENT-002", "18.1")
    st.put_net(replace(net, members=[m for m in net.members if m != target],
                       roles={k: v for k, v in net.roles.items() if k != target}))  # fmt: skip
    node = reg._nodes.get(target)
    if node is not None:
        st.put_node(replace(node, networks=[n for n in node.networks if n != net.net_id]))
    st.revoke_invites(target, net.net_id)  # nor does a kicked one (as Go)
    st.audit(now, "member.kicked", actor, network_id=net.net_id, target=target)
    return {"type": "kick_member_ok", "network_id": net.net_id, "target_node_id": target}


def _transfer(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    net, actor = _net_and_actor(st, msg, now, "owner")
    target = _member(st.reg, net, msg, "new_owner_id")
    owners = [m for m, r in net.roles.items() if r == "owner"]
    if target in owners:
        raise _refuse(ErrorCode.INVALID_STATE, f"node {target} is already the owner", "new_owner_id")
    roles = {**net.roles, **dict.fromkeys(owners, "admin"), target: "owner"}
    st.put_net(replace(net, roles=roles))
    st.audit(now, "network.ownership_transferred", actor, network_id=net.net_id, old=owners, new=target)
    return {"type": "transfer_ownership_ok", "network_id": net.net_id, "new_owner_id": target}


def _delete_network(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    reg = st.reg
    net, actor = _net_and_actor(st, msg, now, "owner")
    for m in net.members:
        node = reg._nodes.get(m)
        if node is not None:
            st.put_node(replace(node, networks=[n for n in node.networks if n != net.net_id]))
    st.del_net(net.net_id)
    st.audit(now, "network.deleted", actor, network_id=net.net_id, name=net.name, members=len(net.members))
    return {"type": "delete_network_ok", "network_id": net.net_id}


def _set_policy(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    net, actor = _net_and_actor(st, msg, now, "admin")
    policy = dict(net.policy)
    if "max_members" in msg:
        limit = _uint(msg, "max_members", 17)
        if limit > st.reg.config.max_members:
            raise _refuse(ErrorCode.OUT_OF_RANGE, f"max_members above {st.reg.config.max_members}", "max_members")
        if limit and limit < len(net.members):
            raise _refuse(ErrorCode.INVALID_STATE, f"cannot set max_members to {limit}: network already has "
                          f"{len(net.members)} members", "max_members", "ENT-008", "18.2")  # fmt: skip
        policy["max_members"] = limit
    if "allowed_ports" in msg:
        ports = msg["allowed_ports"]
        if (
            not isinstance(ports, list)
            or len(ports) > 100
            or not all(isinstance(p, int) and not isinstance(p, bool) and 0 < p < 65536 for p in ports)
        ):
            raise _refuse(ErrorCode.BAD_VALUE, "allowed_ports: at most 100 port numbers from 1 to 65535",
                          "allowed_ports", "ENT-009", "18.2")  # fmt: skip
        policy["allowed_ports"] = sorted(set(ports))
    if "description" in msg:
        policy["description"] = _str(msg, "description", 256)
    st.put_net(replace(net, policy=policy))
    st.audit(now, "policy.changed", actor, network_id=net.net_id, old=dict(net.policy), new=policy)
    return {"type": "set_network_policy_ok", "network_id": net.net_id, **_policy_view(policy)}


def _policy_view(policy: dict[str, Any]) -> dict[str, Any]:
    return {"max_members": int(policy.get("max_members", 0)), "allowed_ports": list(policy.get("allowed_ports", [])),
            "description": str(policy.get("description", ""))}  # fmt: skip


def _get_policy(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    net_id = _uint(msg, "network_id", 16)
    if net_id == 0:  # the backbone has no policy; a Go head daemon asks at startup for every network (E-GH-2)
        return {"type": "get_network_policy_ok", "network_id": 0, **_policy_view({})}
    net = st.reg._networks.get(net_id)
    if net is None:
        raise _refuse(ErrorCode.UNKNOWN_PEER, f"network {msg.get('network_id')} not found", "network_id")
    return {"type": "get_network_policy_ok", "network_id": net.net_id, **_policy_view(net.policy)}


def _get_role(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    net = st.reg._networks.get(_uint(msg, "network_id", 16))
    if net is None:
        raise _refuse(ErrorCode.UNKNOWN_PEER, f"network {msg.get('network_id')} not found", "network_id")
    target = _member(st.reg, net, msg, "target_node_id")
    return {"type": "get_member_role_ok", "network_id": net.net_id, "target_node_id": target,
            "role": net.roles.get(target, "member")}  # fmt: skip


def _get_audit_log(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    if not _admin_ok(st.reg, msg):
        raise _refuse(ErrorCode.AUTH_REQUIRED, "the audit log needs a valid admin token", "admin_token", "CONS-004",
                      "19.3")  # fmt: skip
    net_id = _uint(msg, "network_id", 16, required=False)
    entries = [e for e in st.reg._audit if not net_id or e.get("network_id") == net_id]
    limit = _uint(msg, "limit", 16, required=False, default=100) or 100
    return {"type": "get_audit_log_ok", "entries": entries[-limit:], "total": len(entries)}


def _list_networks(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    reg = st.reg
    live = sum(1 for n in reg._nodes.values() if n.live)
    nets = [{"id": 0, "name": "backbone", "members": live, "join_rule": "open", "enterprise": False, "created": 0}]
    nets += [{"id": n.net_id, "name": n.name, "members": len(n.members), "join_rule": n.join_rule,
              "enterprise": False, "created": int(n.created)} for n in reg._networks.values()]  # fmt: skip
    return {"type": "list_networks_ok", "networks": nets}


def _list_nodes(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    reg = st.reg
    net_id = _uint(msg, "network_id", 16, required=False)
    if net_id == 0:
        if not _admin_ok(reg, msg):
            raise _refuse(ErrorCode.AUTH_REQUIRED, "listing backbone nodes is not permitted (use lookup with a "
                          "specific node_id)", "network_id", "SEC-023", "10.7")  # fmt: skip
        members = [n.node_id for n in reg._nodes.values() if n.live]
        roles: dict[int, str] = {}
    else:
        net = reg._networks.get(net_id)
        if net is None:
            raise _refuse(ErrorCode.UNKNOWN_PEER, f"network {net_id} not found", "network_id")
        members, roles = net.members, net.roles
    out = []
    for nid in members:
        node = reg._nodes.get(nid)
        entry: dict[str, Any] = {"node_id": nid, "address": _addr(nid, net_id)}
        if node is None or not node.live:
            entry["offline"] = True
        else:
            entry.update(public=node.public, polo_score=0)
            if node.hostname:
                entry["hostname"] = node.hostname
            if node.public:
                entry["real_addr"] = node.listen_addr
        if nid in roles:
            entry["role"] = roles[nid]
        out.append(entry)
    return {"type": "list_nodes_ok", "nodes": out}


# -- invites (IPC Network sub-commands 0x05-0x07, draft 16.3, 18.1) ---------------------------------------------


def _member_limit(st: _Staged, net: _Network) -> int:
    limit = int(net.policy.get("max_members", 0)) or st.reg.config.max_members
    return min(limit, st.reg.config.max_members)


def _live_invites(reg: Registry, node_id: int, now: float) -> list[dict[str, Any]]:
    """``node_id``'s pending invites that have not expired (Go: 30 days) and whose network exists.  Reads only:
    a write handler removes the rest with :func:`_expire_invites`, so a poll never writes to the store."""
    return [inv for inv in reg._invites.get(node_id, [])
            if now - inv["timestamp"] <= reg.config.invite_ttl and inv["network_id"] in reg._networks]  # fmt: skip


def _expire_invites(st: _Staged, node_id: int, now: float) -> int:
    """Stage the removal of ``node_id``'s dead invites (what :func:`_live_invites` skips); returns how many."""
    live = {inv["network_id"] for inv in _live_invites(st.reg, node_id, now)}
    dead = [inv["network_id"] for inv in st.reg._invites.get(node_id, []) if inv["network_id"] not in live]
    if dead:
        st.del_invites(node_id, dead)
    return len(dead)


def _room_for_an_invite(st: _Staged, now: float) -> bool:
    """The registry-wide bound (``max_invites``): when it is reached, sweep every inbox's dead invites first."""
    reg = st.reg
    if reg.invite_count < reg.config.max_invites:
        return True
    freed = sum(_expire_invites(st, target, now) for target in list(reg._invites))
    return reg.invite_count - freed < reg.config.max_invites


def _invite(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    """An owner or admin (ENT-001) of an invite-only network invites a node; signed by the inviter over
    ``invite:<inviter>:<net>:<target>`` or carrying the admin token.  Invites are journaled, as Go keeps them in
    its store: a restarted registry still has them (E-DF-4).  Bounded per node and in all (spec/bounds.md)."""
    reg = st.reg
    inviter_id, target_id = _uint(msg, "inviter_id"), _uint(msg, "target_node_id")
    net_id = _uint(msg, "network_id", 16)
    if inviter_id == target_id:
        raise _refuse(ErrorCode.BAD_VALUE, "cannot invite yourself", "target_node_id")
    admin = _admin_ok(reg, msg)
    inviter = reg._nodes.get(inviter_id)
    if not admin:
        inviter = _live(reg, inviter_id)
        _verify(st, inviter, msg, now, admin_ok=False)
    net = reg._networks.get(net_id) if net_id else None
    if net is None:
        raise _refuse(ErrorCode.UNKNOWN_PEER, f"network {net_id} not found", "network_id")
    if net.join_rule != "invite":
        raise _refuse(ErrorCode.INVALID_STATE, f"network {net_id} is not invite-only (rule: {net.join_rule})",
                      "network_id")  # fmt: skip
    role = net.roles.get(inviter_id)
    if not admin and role not in ("owner", "admin"):
        raise _refuse(ErrorCode.AUTH_REQUIRED, f"rbac: node {inviter_id} has role {role or 'none'} in network "
                      f"{net_id}; inviting needs admin", "inviter_id", "ENT-005", "18.1")  # fmt: skip
    target = _live(reg, target_id)
    if net_id in target.networks:
        raise _refuse(ErrorCode.INVALID_STATE, f"node {target_id} is already a member of network {net_id}",
                      "target_node_id")  # fmt: skip
    if len(net.members) >= _member_limit(st, net):
        raise _refuse(ErrorCode.TABLE_FULL, "network membership limit reached", "network_id", "ENT-008", "18.2")
    box = _live_invites(reg, target_id, now)
    reply = {"type": "invite_to_network_ok", "network_id": net_id, "target_node_id": target_id}
    if any(inv["network_id"] == net_id for inv in box):
        return {**reply, "status": "already_invited"}
    if len(box) >= reg.config.max_invite_inbox:
        raise _refuse(ErrorCode.TABLE_FULL, f"invite inbox full for node {target_id}", "target_node_id")
    _expire_invites(st, target_id, now)
    if not _room_for_an_invite(st, now):
        raise _refuse(ErrorCode.TABLE_FULL, f"the registry holds {reg.config.max_invites} pending invites, its limit",
                      "target_node_id")  # fmt: skip
    st.audit(now, "invite.created", inviter_id if not admin else None, network_id=net_id, target_node_id=target_id)
    st.put_invite(target_id, net_id, inviter_id, int(now))
    return reply


def _poll_invites(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    """A node's pending invites, not consumed (respond_invite does that); signed over ``poll_invites:<n>``."""
    reg = st.reg
    node = _live(reg, _uint(msg, "node_id"))
    _verify(st, node, msg, now, admin_ok=False)
    return {"type": "poll_invites_ok", "invites": [dict(inv) for inv in _live_invites(reg, node.node_id, now)]}


def _respond_invite(st: _Staged, msg: dict[str, Any], host: str | None, now: float) -> dict[str, Any]:
    """Accept (join) or reject one pending invite; signed over ``respond_invite:<n>:<net>``."""
    reg = st.reg
    node = _live(reg, _uint(msg, "node_id"))
    net_id = _uint(msg, "network_id", 16)
    accept = _bool(msg, "accept")
    _verify(st, node, msg, now, admin_ok=False)
    if not any(inv["network_id"] == net_id for inv in _live_invites(reg, node.node_id, now)):
        raise _refuse(ErrorCode.INVALID_STATE, f"no pending invite for node {node.node_id} to network {net_id}",
                      "network_id")  # fmt: skip
    if accept:
        net = reg._networks.get(net_id)
        if net is None:
            raise _refuse(ErrorCode.UNKNOWN_PEER, f"network {net_id} not found", "network_id")
        if net_id in node.networks:
            raise _refuse(ErrorCode.INVALID_STATE, f"node {node.node_id} is already a member of network {net_id}",
                          "network_id")  # fmt: skip
        if len(net.members) >= _member_limit(st, net):  # the invite stays: the node may retry later (as Go)
            raise _refuse(ErrorCode.TABLE_FULL, "network membership limit reached", "network_id", "ENT-008", "18.2")
        st.put_net(replace(net, members=[*net.members, node.node_id], roles={**net.roles, node.node_id: "member"}))
        st.put_node(replace(node, networks=[*node.networks, net_id]))
    st.audit(now, "invite.responded", node.node_id, network_id=net_id, accepted=accept)
    _expire_invites(st, node.node_id, now)
    st.del_invites(node.node_id, [net_id])
    return {"type": "respond_invite_ok", "accepted": accept, "network_id": net_id}


NETWORK_HANDLERS: dict[str, Handler] = {
    "create_network": _create_network,
    "join_network": _join_network,
    "leave_network": _leave_network,
    "list_networks": _list_networks,
    "list_nodes": _list_nodes,
    "promote_member": _promote,
    "demote_member": _demote,
    "kick_member": _kick,
    "transfer_ownership": _transfer,
    "delete_network": _delete_network,
    "set_network_policy": _set_policy,
    "get_network_policy": _get_policy,
    "get_member_role": _get_role,
    "get_audit_log": _get_audit_log,
    "invite_to_network": _invite,
    "poll_invites": _poll_invites,
    "respond_invite": _respond_invite,
}
