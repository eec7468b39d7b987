"""Helpers for testing Pilot stacks: deterministic keys, fake clocks, lossy links, NAT simulation.

Nothing here is used by the core at run time; it exists for our tests and for
users who test their own runtimes against our state machines.

``clock.FakeClock`` is a monotonic clock that moves only when told;
``link.ImpairedLink`` / ``link.LinkConfig`` carry opaque datagrams between
endpoints with seeded delay, jitter, loss, reordering, duplication, bit
corruption and a bandwidth cap; ``pair.StreamPair`` joins two stream
endpoints over such a link and runs them on a fake clock
(``run_until(predicate, max_time)`` jumps to the next timer or delivery).

``keys`` holds DETERMINISTIC, INSECURE Ed25519/X25519 keys and an RNG for tests
and vectors only (``InsecureDeterministicRng``, ``insecure_test_identity``).
"""
