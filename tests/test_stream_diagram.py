"""The draft's connection state machine, transcribed by hand, against ``pilot_proto.stream``'s table.

Independent of the code: the draft's figure 2 and its transition prose (sections 6.4, 8.1-8.5, 8.12, 8.13) are
written out below as (state, input) -> next state, and every other row the implementation has is listed
with the erratum that justifies it (spec/errata.md).  Both directions are checked: every transcribed
transition is in the table with the same next state, and every table row is transcribed -- deleting,
adding or redirecting a row fails here.  State and input names are looked up by name in the enums, so a
rename fails too.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pilot_proto.stream import TRANSITIONS, Input, State

ERRATA = Path(__file__).resolve().parents[1] / "spec" / "errata.md"

Row = tuple[str, str]  # (state name, input name)

#: Figure 2 of the draft (section 8.1) and the transition prose, with the text that states each one.
DRAFT: dict[Row, tuple[str, str]] = {
    ("CLOSED", "APP_CONNECT"): ("SYN_SENT", "8.1 figure: CLOSED --Dial()--> SYN_SENT"),
    ("SYN_SENT", "RECV_SYN_ACK"): ("ESTABLISHED", "8.1 figure: SYN_SENT --SYN-ACK recv--> ESTABLISHED"),
    ("ESTABLISHED", "APP_CLOSE"): ("FIN_WAIT", "8.1 figure: ESTABLISHED --Close()--> FIN_WAIT"),
    ("FIN_WAIT", "RECV_FIN_ACK"): ("TIME_WAIT", "8.1 figure / 8.3: FIN_WAIT --ACK recv--> TIME_WAIT"),
    ("TIME_WAIT", "TIMEOUT_TIME_WAIT"): ("CLOSED", "8.1 figure / 8.13: TIME_WAIT --10s timeout--> CLOSED"),
    ("SYN_SENT", "TIMEOUT_HANDSHAKE"): ("CLOSED", "8.5.1: SYN retransmitted up to 5 retries, then the dial fails"),
    ("ESTABLISHED", "APP_SEND"): ("ESTABLISHED", "8.4: reliable byte stream while connected"),
    ("ESTABLISHED", "RECV_DATA"): ("ESTABLISHED", "8.4: reliable byte stream while connected"),
}
# 6.4: RST "aborts the connection"; 8.5.1: "8 retransmission attempts before the connection is closed" --
# both apply to every state that has a connection with data (or a FIN) in flight.
for _state in ("ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK"):
    DRAFT[(_state, "RECV_RST")] = ("CLOSED", "6.4: RST aborts the connection")
    DRAFT[(_state, "TIMEOUT_RETRANSMIT")] = ("CLOSED", "8.5.1: retransmissions exhausted, connection closed")

#: Draft transitions the implementation realises through intermediate states, and the erratum saying why.
DRAFT_PATHS: list[tuple[str, str, str, list[Row]]] = [
    ("8.1 figure: Listen() + SYN recv -> ESTABLISHED", "ESTABLISHED", "E-SES-12",
     [("LISTEN", "RECV_SYN"), ("SYN_RECEIVED", "RECV_HANDSHAKE_ACK")]),
    ("8.3 figure: the remote ACKs the FIN and is CLOSED", "CLOSED", "E-SES-2",
     [("ESTABLISHED", "RECV_FIN"), ("CLOSE_WAIT", "APP_CLOSE"), ("LAST_ACK", "RECV_FIN_ACK")]),
    ("8.12: a connection idle for 120 s is closed", "TIME_WAIT", "E-SES-13",
     [("ESTABLISHED", "TIMEOUT_IDLE"), ("FIN_WAIT", "RECV_FIN_ACK")]),
]  # fmt: skip

#: Every other row, with its next state and the erratum that justifies it.
ERRATUM_ROWS: dict[Row, tuple[str, str]] = {
    ("LISTEN", "RECV_SYN"): ("SYN_RECEIVED", "E-SES-12"),
    ("LISTEN", "APP_CLOSE"): ("CLOSED", "E-ORC-1"),
    ("SYN_SENT", "APP_SEND"): ("SYN_SENT", "E-SES-12"),
    ("SYN_SENT", "APP_CLOSE"): ("SYN_SENT", "E-SES-12"),
    ("SYN_SENT", "RECV_RST"): ("CLOSED", "E-SES-11"),
    ("SYN_RECEIVED", "RECV_SYN"): ("SYN_RECEIVED", "E-SES-12"),
    ("SYN_RECEIVED", "RECV_HANDSHAKE_ACK"): ("ESTABLISHED", "E-SES-12"),
    ("SYN_RECEIVED", "APP_SEND"): ("SYN_RECEIVED", "E-SES-12"),
    ("SYN_RECEIVED", "APP_CLOSE"): ("SYN_RECEIVED", "E-SES-12"),
    ("SYN_RECEIVED", "RECV_RST"): ("CLOSED", "E-SES-11"),
    ("SYN_RECEIVED", "TIMEOUT_HANDSHAKE"): ("CLOSED", "E-SES-8"),
    ("ESTABLISHED", "RECV_SYN_ACK"): ("ESTABLISHED", "E-ORC-1"),
    ("ESTABLISHED", "RECV_FIN"): ("CLOSE_WAIT", "E-SES-2"),
    ("ESTABLISHED", "TIMEOUT_IDLE"): ("FIN_WAIT", "E-SES-13"),
    ("FIN_WAIT", "RECV_DATA"): ("FIN_WAIT", "E-SES-14"),
    ("FIN_WAIT", "RECV_FIN"): ("FIN_WAIT", "E-ORC-1"),
    ("FIN_WAIT", "TIMEOUT_IDLE"): ("FIN_WAIT", "E-SES-13"),
    ("FIN_WAIT", "APP_CLOSE"): ("FIN_WAIT", "E-ORC-1"),
    ("TIME_WAIT", "RECV_DATA"): ("TIME_WAIT", "E-SES-14"),
    ("TIME_WAIT", "RECV_FIN"): ("TIME_WAIT", "E-SES-14"),
    ("TIME_WAIT", "RECV_SYN_ACK"): ("TIME_WAIT", "E-ORC-1"),
    ("TIME_WAIT", "APP_CLOSE"): ("TIME_WAIT", "E-ORC-1"),
    ("TIME_WAIT", "RECV_RST"): ("CLOSED", "E-ORC-1"),
    ("TIME_WAIT", "RECV_SYN"): ("TIME_WAIT", "E-SES-10"),
    ("TIME_WAIT", "REUSE"): ("CLOSED", "E-SES-10"),
    ("CLOSE_WAIT", "APP_SEND"): ("CLOSE_WAIT", "E-SES-2"),
    ("CLOSE_WAIT", "RECV_DATA"): ("CLOSE_WAIT", "E-STR-2"),
    ("CLOSE_WAIT", "APP_CLOSE"): ("LAST_ACK", "E-SES-2"),
    ("CLOSE_WAIT", "TIMEOUT_IDLE"): ("LAST_ACK", "E-SES-13"),
    ("LAST_ACK", "RECV_DATA"): ("LAST_ACK", "E-STR-2"),
    ("LAST_ACK", "RECV_FIN_ACK"): ("CLOSED", "E-SES-2"),
    ("LAST_ACK", "APP_CLOSE"): ("LAST_ACK", "E-ORC-1"),
    ("LAST_ACK", "TIMEOUT_IDLE"): ("LAST_ACK", "E-SES-13"),
}
for _state in ("SYN_SENT", "SYN_RECEIVED", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT"):
    ERRATUM_ROWS[(_state, "APP_ABORT")] = ("CLOSED", "E-ORC-1")
for _state in ("ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK"):
    ERRATUM_ROWS[(_state, "RECV_SYN")] = (_state, "E-ORC-1")
for _state in ("FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT"):
    ERRATUM_ROWS[(_state, "RECV_FIN_AGAIN")] = (_state, "E-STR-2")


def _table() -> dict[Row, str]:
    return {(s.name, i.name): nxt.name for (s, i), (nxt, _action) in TRANSITIONS.items()}


def test_transcription_uses_the_implementations_names() -> None:
    for state, inp in [*DRAFT, *ERRATUM_ROWS]:
        assert State[state].name == state and Input[inp].name == inp  # KeyError on a rename
    assert not set(DRAFT) & set(ERRATUM_ROWS), "a row is both in the draft and in an erratum"


@pytest.mark.req("SES-001")
@pytest.mark.parametrize("row", sorted(DRAFT), ids=lambda r: f"{r[0]}-{r[1]}")
def test_every_draft_transition_is_in_the_table(row: Row) -> None:
    want, text = DRAFT[row]
    assert _table().get(row) == want, f"draft ({text}): {row} -> {want}; table has {_table().get(row)}"


@pytest.mark.req("SES-001")
@pytest.mark.parametrize(("text", "want", "erratum", "path"), DRAFT_PATHS, ids=[p[0][:12] for p in DRAFT_PATHS])
def test_draft_transitions_reached_through_intermediate_states(
    text: str, want: str, erratum: str, path: list[Row]
) -> None:
    table = _table()
    state = path[0][0]
    for row in path:
        assert row[0] == state, f"{text}: path breaks at {row}"
        assert row in table, f"{text} ({erratum}): table lacks {row}"
        state = table[row]
    assert state == want, f"{text} ({erratum}): path ends in {state}, not {want}"


def test_every_table_row_is_transcribed_with_its_justification() -> None:
    table = _table()
    unjustified = {r: n for r, n in table.items() if r not in DRAFT and r not in ERRATUM_ROWS}
    assert not unjustified, f"table rows in neither the draft nor an erratum: {unjustified}"
    wrong = {r: (n, ERRATUM_ROWS[r][0]) for r, n in table.items() if r in ERRATUM_ROWS and ERRATUM_ROWS[r][0] != n}
    assert not wrong, f"table rows whose next state differs from the erratum's: {wrong}"
    missing = sorted(set(ERRATUM_ROWS) - set(table))
    assert not missing, f"rows an erratum describes but the table lacks: {missing}"


def test_every_cited_erratum_exists() -> None:
    headings = set(re.findall(r"^## (E-[A-Z0-9]+-\d+):", ERRATA.read_text(encoding="utf-8"), re.MULTILINE))
    cited = {e for _, e in ERRATUM_ROWS.values()} | {p[2] for p in DRAFT_PATHS}
    assert cited <= headings, f"cited errata not in spec/errata.md: {sorted(cited - headings)}"
