"""Every deliberately broken variant of our node is caught by at least one failing conformance test.

:mod:`pilot_proto.conformance.variants` flips one behaviour per variant (in the built-in node's own
subprocess).  For each, the suite runs the tests that should notice (``-k``) and the run must report a
counted ``fail`` among them while the sanity check still passes -- so the variant is caught by a
specific test, not because the node stopped working.  All variants run concurrently (3 at a time).
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from test_conformance_builtin import run_suite  # tests/ is on sys.path (rootdir conftest, no __init__.py)

from pilot_proto.conformance.variants import VARIANTS

pytestmark = pytest.mark.slow

#: variant -> the -k expression selecting the tests that must catch it
CATCHERS = {
    "crc-ignored": "test_wrong_crc or test_crc_covers_payload",
    "no-replay-check": "test_replayed_frame or test_counter_too_far_behind",
    "forged-advances-window": "test_forged_frames_do_not_move_the_window",
    "aad-unchecked": "test_wrong_aad_is_dropped",
    "no-source-check": "test_inner_source_must_match_sender",
    "no-rst": "test_syn_to_closed_port_gets_rst or test_ack_for_unknown_connection",
    "zero-window-ignored": "test_zero_window_stops_the_sender",
    "slow-rto": "test_unacknowledged_data_is_retransmitted",
    "dest-unchecked": "test_packet_for_another_node or test_syn_for_another_node",
    "no-nagle": "test_small_writes_are_coalesced",
    "fin-not-reacked": "test_retransmitted_fin_is_reacknowledged",
    "passive-time-wait": "test_syn_reusing_a_closed_tuple",
    "ping-payload-truncated": "test_ping_payload_is_echoed_exactly",
    "pilp-moves-path": "test_pilp_from_a_stranger_claiming_the_peer",
    "syn-limit-shared": "test_syn_flood_does_not_refuse_another_source",
    "small-initial-window": "test_initial_window_is_ten_full_segments",
    "cwnd-kept-after-rto": "test_rto_halves_ssthresh_and_restarts_from_one_segment",
    "no-fast-retransmit": "test_three_duplicate_acks_trigger_fast_retransmit",
    "data-acks-counted-as-dup": "test_acks_carrying_data_are_not_duplicates",
    "sack-blocks-trusted": "test_bogus_sack_blocks_are_ignored",
    "sack-blocks-unlimited": "test_at_most_four_sack_blocks",
    "trust-gate-open": "test_private_node_drops_an_untrusted_syn",
    "trust-timestamp-unchecked": "test_stale_or_future_trust_request_is_refused",
    "dataexchange-frame-overlong": "test_dataexchange_reads_every_frame_type",
    "eventstream-echoes-publisher": "test_eventstream_text_commands or test_eventstream_binary_records",
    "secure-aad-unbound": "test_secure_channel_key_agreement_and_records",
    "task-length-unbounded": "test_task_frame_over_16_mib_is_refused",
}

#: variant -> extra suite options (a SHOULD-level catcher counts only with --strict-should)
EXTRA_ARGS = {
    "syn-limit-shared": ("--strict-should",),
    "trust-gate-open": ("--builtin-trust=gated",),  # the gate exists only on a private node
    "trust-timestamp-unchecked": ("--builtin-trust=gated",),
}


def test_every_variant_has_a_catcher() -> None:
    assert set(CATCHERS) == set(VARIANTS)


@pytest.fixture(scope="module")
def variant_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[int, dict[str, Any], str, float]]:
    def one(name: str) -> tuple[int, dict[str, Any], str, float]:
        profile = VARIANTS[name][1][0]
        return run_suite(tmp_path_factory.mktemp(name), f"--builtin-variant={name}", f"--profile={profile}",
                         "-k", f"test_sanity or {CATCHERS[name]}", "--seed=2", *EXTRA_ARGS.get(name, ()))  # fmt: skip

    with ThreadPoolExecutor(3) as pool:
        return dict(zip(VARIANTS, pool.map(one, VARIANTS), strict=True))


@pytest.mark.req("PKT-010", "CONS-016", "CONS-019", "SEC-006", "SEC-027", "SES-131", "SES-082", "SES-043", "PKT-025")
@pytest.mark.req("SES-090", "SES-020", "SES-022", "SES-152", "NAT-043", "SEC-025")
@pytest.mark.req("SES-070", "SES-076", "SES-073", "SES-074", "SES-065", "SES-062")
@pytest.mark.req("SEC-015", "SVC-066", "SVC-010", "SVC-029", "SEC-013", "SVC-032")
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_is_caught(variant_runs: dict[str, Any], variant: str) -> None:
    code, report, out, _ = variant_runs[variant]
    assert report, f"no report:\n{out[-3000:]}"
    assert code != 0, f"the suite passed against the broken variant {variant!r}"
    verdicts = {t["id"]: t["verdict"] for t in report["tests"]}
    assert verdicts.get("test_sanity_first") == "pass", (
        f"sanity failed, the variant broke more than one thing: {verdicts}"
    )
    caught = [t["id"] for t in report["tests"] if t["verdict"] == "fail" and t["counted"] and "sanity" not in t["id"]]
    assert caught, f"variant {variant!r} was not caught by any test: {verdicts}"
    for t in report["tests"]:
        if t["verdict"] == "fail":
            assert any(Path(a).suffix == ".pcap" for a in t["artifacts"]), f"{t['id']} failed without a pcap"
            for a in t["artifacts"]:
                path = Path(a)
                assert path.stat().st_size > 24, f"{a} holds no datagram"
                if path.suffix == ".jsonl":
                    rows = [json.loads(line) for line in path.read_text().splitlines()]
                    assert any(r.get("dir") == "in" for r in rows) and any(r.get("dir") == "out" for r in rows), a
