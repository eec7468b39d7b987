"""Run one harness under atheris (coverage-guided libFuzzer): ``python -m pilot_proto.fuzzing.atheris_main NAME [libFuzzer args]``.

This is what ``fuzz/fuzz_*.py`` (the OSS-Fuzz / ClusterFuzzLite entry points) and
``pilot-proto fuzz NAME --engine atheris`` call.  Our package is instrumented at import so libFuzzer
sees coverage of the decoders and state machines, not only of this file.
"""

from __future__ import annotations

import sys


def main(name: str, argv: list[str]) -> None:
    try:
        import atheris
    except ImportError:  # pragma: no cover - depends on the optional extra
        sys.stderr.write("pilot-proto fuzz: atheris is not installed (pip install 'pilot-proto[fuzz]')\n")
        raise SystemExit(2) from None
    with atheris.instrument_imports(include=["pilot_proto"]):
        from pilot_proto.fuzzing.harness import select

        harness = select([name])[0]
        harness.seeds()  # build the seed corpus (and import everything it needs) under instrumentation
    fn = harness.fuzz_one_input
    atheris.Setup([sys.argv[0], *argv], lambda data: fn(bytes(data)))
    atheris.Fuzz()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.stderr.write("usage: python -m pilot_proto.fuzzing.atheris_main HARNESS [libFuzzer args]\n")
        raise SystemExit(2)
    main(sys.argv[1], sys.argv[2:])
