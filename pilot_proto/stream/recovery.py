"""Sender-side loss recovery: the sent-segment scoreboard, SACK marking, fast recovery and RTO go-back (draft 8.6, 8.7).

A :class:`SentSegment` is one transmitted, not yet cumulatively acknowledged range ``[start, end)`` of
absolute sequence positions (the FIN is a one-position segment).  :class:`LossRecovery` keeps them in
send order (sorted, disjoint) and answers the questions the connection's output and ACK paths ask:
how many bytes are in flight, which segments are lost and must go again, when fast recovery starts and
ends (RFC 5681 / RFC 6675 / NewReno partial ACKs), and what an RTO presumes lost.

It never builds packets and never touches the congestion controller: it returns decisions and the
:class:`~pilot_proto.stream.connection.Connection` acts on them.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections import deque
from itertools import islice
from operator import attrgetter

__all__ = ["LossRecovery", "SentSegment"]


class SentSegment:
    """One transmitted range and what the scoreboard knows about it."""

    __slots__ = ("end", "lost", "retransmits", "sacked", "sent_at", "start")

    def __init__(self, start: int, end: int, sent_at: float) -> None:
        self.start = start
        self.end = end
        self.sent_at = sent_at  # time of the latest transmission
        self.retransmits = 0
        self.sacked = False  # inside a SACK block: the peer holds it
        self.lost = False  # presumed lost, queued for retransmission (not counted in flight)

    def __repr__(self) -> str:
        marks = ("S" if self.sacked else "") + ("L" if self.lost else "")
        return f"SentSegment({self.start}, {self.end}, rx={self.retransmits}{', ' + marks if marks else ''})"


_seg_start = attrgetter("start")
_seg_end = attrgetter("end")


class LossRecovery:
    """Scoreboard of sent segments plus the duplicate-ACK / fast-recovery state of one connection.

    ``flight`` counts bytes sent and neither acknowledged, SACKed nor presumed lost (RFC 6675 "pipe").
    """

    __slots__ = ("dupacks", "flight", "lost", "prev_sack", "recover", "sacked_bytes", "segs")

    def __init__(self) -> None:
        self.segs: deque[SentSegment] = deque()
        self.lost: deque[SentSegment] = deque()  # retransmission queue (entries may be stale: check .lost)
        self.flight = 0
        self.sacked_bytes = 0
        self.prev_sack: list[tuple[int, int]] = []  # the blocks of the last SACK applied (see apply_sack)
        self.recover: int | None = None  # recovery point while in fast recovery
        self.dupacks = 0

    # ---------------------------------------------------------------- sending
    def sent(self, start: int, end: int, now: float) -> None:
        """A new segment went out."""
        self.segs.append(SentSegment(start, end, now))
        self.flight += end - start

    def retransmitted(self, seg: SentSegment, now: float) -> None:
        """``seg`` went out again."""
        seg.lost = False
        seg.retransmits += 1
        seg.sent_at = now
        self.flight += seg.end - seg.start

    def next_lost(self) -> SentSegment | None:
        """The first segment queued for retransmission (stale queue entries are skipped)."""
        lost = self.lost
        while lost:
            seg = lost[0]
            if seg.lost:
                return seg
            lost.popleft()
        return None

    # ------------------------------------------------------------------ ACKs
    def acked(self, ack: int) -> float | None:
        """Cumulative ACK up to ``ack``: drop covered segments; the send time of an RTT sample (Karn) or None."""
        segs = self.segs
        sample_t: float | None = None
        flight = self.flight
        while segs and segs[0].end <= ack:
            seg = segs.popleft()
            if seg.sacked:
                self.sacked_bytes -= seg.end - seg.start
            elif seg.lost:
                seg.lost = False
            else:
                flight -= seg.end - seg.start
            if seg.retransmits == 0:
                sample_t = seg.sent_at
        if segs and segs[0].start < ack:  # partial acknowledgement of a segment
            seg = segs[0]
            if not seg.sacked and not seg.lost:
                flight -= ack - seg.start
            seg.start = ack
        self.flight = flight
        self.dupacks = 0
        return sample_t

    def exit_point_reached(self, ack: int) -> bool:
        """In fast recovery and ``ack`` reaches the recovery point: recovery ends (the caller tells the cc)."""
        if self.recover is not None and ack >= self.recover:
            self.recover = None
            return True
        return False

    def dupack(self, threshold: int) -> bool:
        """One more duplicate ACK; True when it is the one that should start fast recovery."""
        self.dupacks += 1
        return self.recover is None and self.dupacks == threshold

    def apply_sack(self, blocks: list[tuple[int, int]]) -> None:
        """Mark the segments that lie wholly inside one SACK block.

        Segments inside a block of the previous SACK are marked already (marks are never undone while a
        segment is held), so for each block the walk starts past the part a previous block covered:
        during recovery each ACK looks only at the segments its blocks newly cover.
        """
        segs = self.segs
        if not segs or not blocks:
            return
        prev = self.prev_sack
        flight, sacked = self.flight, self.sacked_bytes
        for ls, rs in blocks:
            covered = ls
            for pl, pr in prev:
                if pl <= ls < pr and pr > covered:
                    covered = pr  # segments in [ls, pr) were inside that earlier block
            i = bisect_left(segs, ls, key=_seg_start)
            if covered > ls:
                i = max(i, bisect_right(segs, covered, key=_seg_end))
            for seg in islice(segs, i, None):
                e = seg.end
                if e > rs:
                    break  # segments are sorted and disjoint: none further can be inside
                if not seg.sacked:
                    seg.sacked = True
                    sacked += e - seg.start
                    if seg.lost:
                        seg.lost = False
                    else:
                        flight -= e - seg.start
        self.flight, self.sacked_bytes = flight, sacked
        self.prev_sack = blocks

    # ------------------------------------------------------------ loss marking
    def enter(self, snd_nxt: int, now: float, rto: float) -> SentSegment | None:
        """Start fast recovery (8.7): recovery point ``snd_nxt``; mark the holes; the first one to resend now."""
        self.recover = snd_nxt
        self.mark_holes(now, rto)
        seg = self.next_lost()
        if seg is not None:
            self.lost.popleft()
        return seg

    def mark_holes(self, now: float, rto: float) -> None:
        """Mark as lost the un-SACKed segments below the highest SACKed byte (or the first one)."""
        segs = self.segs
        if not segs:
            return
        high = -1
        for seg in reversed(segs):
            if seg.sacked:
                high = seg.end
                break
        # a hole already retransmitted is sent again only if that copy looks lost too (an RTO without news)
        stale = now - rto
        first = segs[0]
        if high < 0:  # nothing SACKed: only the first segment can be a hole
            if not first.lost and first.sent_at < now and (first.retransmits == 0 or first.sent_at <= stale):
                self._mark_lost(first)
            return
        # Walk the gaps below `high` only: segments wholly inside a block of the last SACK are SACKed
        # (see apply_sack), so each block is stepped over by bisection.  The sentinel block at `high`
        # ends the last gap.
        pos = 0
        for ls, rs in [*sorted(self.prev_sack), (high, high)]:
            stop = bisect_left(segs, ls if ls < high else high, key=_seg_start)
            if stop > pos:
                for seg in islice(segs, pos, stop):
                    if seg.sacked or seg.lost:
                        continue
                    t = seg.sent_at
                    if t < now and (seg.retransmits == 0 or (seg is first and t <= stale)):
                        self._mark_lost(seg)
            pos = max(pos, stop, bisect_right(segs, rs, key=_seg_end))

    def _mark_lost(self, seg: SentSegment) -> None:
        seg.lost = True
        self.flight -= seg.end - seg.start
        self.lost.append(seg)

    def requeue_from(self, ack: int) -> None:
        """The window reopened after persist: segments from ``ack`` on (refused probes) go again."""
        for seg in self.segs:
            if not seg.sacked and not seg.lost and seg.start >= ack:
                self._mark_lost(seg)

    def go_back(self) -> None:
        """Retransmission timeout: leave recovery; everything not SACKed is presumed lost."""
        self.recover = None
        self.dupacks = 0
        self.lost.clear()
        flight = self.flight
        for seg in self.segs:
            if not seg.sacked:
                if not seg.lost:
                    flight -= seg.end - seg.start
                seg.lost = True
                self.lost.append(seg)
        self.flight = flight

    def first_unsacked(self) -> SentSegment:
        """The oldest segment the peer does not hold (the one whose retransmit count an RTO judges)."""
        return next((s for s in self.segs if not s.sacked), self.segs[0])
