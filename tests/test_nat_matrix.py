"""The 4 x 4 NAT matrix: what draft 9.2 / 9.3 claim, checked in the simulator.

Rows are A's NAT (A dials), columns B's.  Expected outcome from RFC 4787 terms:

* cone x cone (endpoint-independent mapping on both sides): the punch makes each
  side's filter admit the other's single public endpoint -> DIRECT (NAT-017).
  The no-punch control shows it is the punch that does it whenever B filters.
* symmetric x symmetric: each side's port towards the other is new and
  unknown -> RELAY (NAT-020).
* symmetric x port-restricted: the symmetric side's traffic to the PRC side
  comes from a new port the PRC filter has never sent to -> RELAY.
* symmetric x full / restricted cone: the cone filter admits the symmetric
  side's new port (any port: FC; same IP: RC), so its packets get through, and
  the cone side can answer once it learns that port.  It learns it from the
  authenticated probe when the symmetric side dials (DIRECT in both profiles),
  and -- only under ``draft`` -- from the PILP's sender ID when the cone side
  dials (go-interop's 4-byte PILP names nobody: RELAY).  That is erratum
  E-NAT-1 made visible.

Every pair must end connected one way or the other with data both ways.
"""

from __future__ import annotations

import pytest

from pilot_proto.nat import NatConfig
from pilot_proto.profile import Profile
from pilot_proto.testing.nat import NatType, PairResult, format_matrix, run_matrix, run_pair

pytestmark = [pytest.mark.req("NAT-016", "NAT-017", "NAT-020", "NAT-030", "NAT-031", "NAT-034")]

FC, RC, PRC, SYM = NatType.FULL_CONE, NatType.RESTRICTED_CONE, NatType.PORT_RESTRICTED_CONE, NatType.SYMMETRIC


def expected(a: NatType, b: NatType, profile: Profile, punch: bool = True) -> str:
    """The outcome RFC 4787 logic predicts (see the module docstring)."""
    if not punch:
        # without a punch only B's filter matters for A's first packet, and B never writes first
        return "DIRECT" if b is FC else "RELAY"
    if a.endpoint_independent_mapping and b.endpoint_independent_mapping:
        return "DIRECT"
    if a is SYM and b is SYM:
        return "RELAY"
    sym_is_a = a is SYM
    cone = b if sym_is_a else a
    if cone is PRC:
        return "RELAY"
    if sym_is_a:
        return "DIRECT"
    return "DIRECT" if profile is Profile.DRAFT else "RELAY"


def run(profile: Profile, punch: bool) -> dict[tuple[NatType, NatType], PairResult]:
    return run_matrix(NatConfig.for_profile(profile, use_punch=punch))


@pytest.mark.req("NAT-011", "NAT-013", "NAT-015", "NAT-024", "NAT-033", "NAT-043")
@pytest.mark.parametrize("profile", list(Profile), ids=lambda p: p.value)
def test_nat_matrix(profile: Profile) -> None:
    with_punch = run(profile, punch=True)
    without = run(profile, punch=False)
    text = (
        format_matrix(with_punch, f"[{profile.value}] with punching (rows: A's NAT, dialling; cols: B's NAT)")
        + "\n"
        + format_matrix(without, f"[{profile.value}] control: no punch request")
    )
    print("\n" + text)
    problems = []
    for (a, b), res in with_punch.items():
        if res.outcome != expected(a, b, profile):
            problems.append(f"{a.short}x{b.short}: got {res.outcome}, expected {expected(a, b, profile)}")
        if not (res.a_to_b and res.b_to_a):
            problems.append(f"{a.short}x{b.short}: data did not flow both ways")
        if res.relayed != (res.outcome == "RELAY",) * 2:
            problems.append(f"{a.short}x{b.short}: data took the wrong path ({res.relayed})")
        if res.punch_commands != 1:
            problems.append(f"{a.short}x{b.short}: beacon coordinated {res.punch_commands} punches, expected 1")
    for (a, b), res in without.items():
        if res.outcome != expected(a, b, profile, punch=False):
            problems.append(f"no-punch {a.short}x{b.short}: got {res.outcome}")
    assert not problems, "\n".join(problems) + "\n" + text


@pytest.mark.req("NAT-017")
def test_cone_pairs_need_the_punch() -> None:
    """Every cone pair in which B filters (RC, PRC) is DIRECT only because of the punch."""
    for a in (FC, RC, PRC):
        for b in (RC, PRC):
            punched = run_pair(a, b, NatConfig.for_profile(Profile.DRAFT)).outcome
            plain = run_pair(a, b, NatConfig.for_profile(Profile.DRAFT, use_punch=False)).outcome
            assert (punched, plain) == ("DIRECT", "RELAY"), (a, b, punched, plain)


@pytest.mark.req("NAT-001", "NAT-002")
def test_public_hosts_connect_directly_without_nat() -> None:
    res = run_pair(None, None, NatConfig.for_profile(Profile.DRAFT))
    assert res.outcome == "DIRECT" and res.a_to_b and res.b_to_a


@pytest.mark.req("NAT-017", "NAT-020")
def test_cli_prints_the_matrix(capsys: pytest.CaptureFixture[str]) -> None:
    from pilot_proto.cli import main

    assert main(["nat-matrix", "--profile", "go-interop"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].split() == ["A", "\\", "B", "FC", "RC", "PRC", "SYM"]
    assert out[-1].split() == ["SYM", "DIRECT", "DIRECT", "RELAY", "RELAY"]


@pytest.mark.req("NAT-017", "NAT-020", "NAT-034")
@pytest.mark.parametrize("profile", ["draft", "go-interop"])
def test_cli_matrix_with_real_nodes_matches_the_stand_in(profile: str, capsys: pytest.CaptureFixture[str]) -> None:
    from pilot_proto.cli import main

    assert main(["nat-matrix", "--profile", profile]) == 0
    toy = capsys.readouterr().out.splitlines()
    assert main(["nat-matrix", "--profile", profile, "--nodes"]) == 0
    real = capsys.readouterr().out.splitlines()
    assert "real nodes" in real[0] and real[1:] == toy[1:]
    assert sum(line.count("RELAY") for line in real) == (5 if profile == "go-interop" else 3)
