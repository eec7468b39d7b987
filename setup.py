"""Build hook for the one optional C extension; all other metadata lives in pyproject.toml.

``pilot_proto.tunnel._pilsc`` accelerates PILS sealing and in-order opening over OpenSSL's EVP AES-256-GCM
(the way aioquic ships ``_crypto.c`` for its packet protection).  It is ``optional``: without a C compiler or
the OpenSSL headers the build prints a warning, installs the package anyway, and
:mod:`pilot_proto.tunnel.aead` uses its pure-Python path (same bytes, same errors).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "pilot_proto.tunnel._pilsc",
            sources=["pilot_proto/tunnel/_pilsc.c"],
            libraries=["crypto"],
            optional=True,
        )
    ]
)
