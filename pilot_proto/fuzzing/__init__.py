"""Fuzzing campaigns for Pilot Protocol: harnesses, oracles, a runner and a network fuzzer.

A *harness* (:class:`~pilot_proto.fuzzing.harness.Harness`) is one ``fuzz_one_input(data: bytes)``
function that raises :class:`~pilot_proto.fuzzing.harness.Finding` when an oracle is broken.  The
same function runs three ways:

* under **atheris** (coverage-guided libFuzzer; the ``fuzz`` extra) -- ``fuzz/fuzz_*.py`` are the
  OSS-Fuzz / ClusterFuzzLite entry points (:mod:`~pilot_proto.fuzzing.layout`), and
  ``pilot-proto fuzz NAME --engine atheris`` runs one here;
* under the built-in **mutational engine** (:mod:`~pilot_proto.fuzzing.engine`; no dependency):
  seeds from our vectors, byte-level mutations, a dictionary of magics and type bytes;
* under **hypothesis** in the default test suite (a few seconds per harness, ``tests/test_fuzz_*.py``).

Harness families (``pilot-proto fuzz --list``):

``decoder:<name>``   every decoder of :func:`pilot_proto.wire.formats.discover`: only ``PilotError``
                     escapes, and an accepted input re-encodes to the same bytes where the format
                     is canonical (``encode(decode(x)) == x``).
``diff:<name>``      differential: fast codec vs ``construct`` schema vs scapy layer (same verdict,
                     same fields), our PILS sealer/opener vs plain ``cryptography`` AES-GCM.
``machine:<name>``   state machines (tunnel, stream, beacon client/server, path manager, node):
                     the input is a script of datagrams and clock steps; oracles are "nothing but
                     ``LocalProtocolError`` for misuse escapes", "timers never go backwards", and
                     the *twin* oracle: a twin that never sees the inputs the first copy rejected
                     must produce exactly the same output, so a rejected input changed no state.

:mod:`~pilot_proto.fuzzing.network` fuzzes a live implementation over UDP (127.0.0.1 unless told
otherwise), inside and outside a real tunnel, with a liveness check after every batch.
"""
