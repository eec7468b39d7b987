"""Port ranges and well-known ports (draft 5, 20.3)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pilot_proto.wire.ports import PortRange, WellKnownPort, check_port, is_ephemeral, port_range


@pytest.mark.req("PORT-001")
@pytest.mark.parametrize("bad", [-1, 0x10000, 1 << 40, True, 1.0, "80"])
def test_ports_are_u16(bad: object) -> None:
    with pytest.raises(ValueError):
        check_port(bad)  # type: ignore[arg-type]
    assert check_port(0) == 0 and check_port(0xFFFF) == 0xFFFF


@pytest.mark.req("PORT-002", "PORT-003", "PORT-004")
@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.integers(0, 0xFFFF))
def test_range_classification(port: int) -> None:
    expected = PortRange.WELL_KNOWN if port < 1024 else PortRange.REGISTERED if port < 49152 else PortRange.EPHEMERAL
    assert port_range(port) is expected
    assert is_ephemeral(port) == (port >= 49152)


@pytest.mark.req("PORT-002", "PORT-003", "PORT-004")
def test_range_edges() -> None:
    edges = {0: "well-known", 1023: "well-known", 1024: "registered", 49151: "registered", 49152: "ephemeral"}
    for port, name in {**edges, 65535: "ephemeral"}.items():
        assert port_range(port).value == name


@pytest.mark.req(
    "PORT-010", "PORT-011", "PORT-012", "PORT-013", "PORT-014", "PORT-015", "PORT-016", "PORT-017", "PORT-018",
    "PORT-019", "PORT-020", "IANA-009",
)  # fmt: skip
def test_well_known_port_numbers() -> None:
    table = {p.name: p.value for p in WellKnownPort}
    assert table == {
        "PING": 0, "CONTROL": 1, "ECHO": 7, "NAMESERVER": 53, "HTTP": 80, "SECURE": 443, "TRUST": 444,
        "STDIO": 1000, "DATA_EXCHANGE": 1001, "EVENT_STREAM": 1002, "TASK_SUBMIT": 1003,
    }  # fmt: skip
    # every well-known service, 1000-1003 included, sits in the reserved range 0-1023
    assert {port_range(p) for p in WellKnownPort} == {PortRange.WELL_KNOWN}
