"""Build hook for the one optional C extension; all other metadata lives in pyproject.toml.

``pilot_proto.tunnel._pilsc`` accelerates PILS sealing and in-order opening over OpenSSL's EVP AES-256-GCM
(the way aioquic ships ``_crypto.c`` for its packet protection).  It is ``optional``: without a C compiler or
the OpenSSL headers the build prints a warning, installs the package anyway, and
:mod:`pilot_proto.tunnel.aead` uses its pure-Python path (same bytes, same errors).

The SHA-256 of the C source is compiled in as ``_pilsc.SOURCE_SHA256`` so a test can tell a built module that
is older than the source beside it (an in-place build not redone after a merge) instead of testing stale code.
"""

import hashlib
from pathlib import Path

from setuptools import Extension, setup

_SOURCE = "pilot_proto/tunnel/_pilsc.c"
_DIGEST = hashlib.sha256((Path(__file__).resolve().parent / _SOURCE).read_bytes()).hexdigest()

setup(
    ext_modules=[
        Extension(
            "pilot_proto.tunnel._pilsc",
            sources=[_SOURCE],
            libraries=["crypto"],
            define_macros=[("PILSC_SOURCE_SHA256", f'"{_DIGEST}"')],
            optional=True,
        )
    ]
)
