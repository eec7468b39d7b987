"""Helpers for testing Pilot stacks: deterministic keys, fake clocks, lossy links, NAT simulation.

Nothing here is used by the core at run time; it exists for our tests and for
users who test their own runtimes against our state machines.

``keys`` holds DETERMINISTIC, INSECURE Ed25519/X25519 keys and an RNG for tests
and vectors only (``InsecureDeterministicRng``, ``insecure_test_identity``).
"""
