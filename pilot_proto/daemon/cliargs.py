"""Argument types and the one-line error policy of the ``pilot-proto`` command line (issue 9, 11).

Every command-line mistake ends in exactly one line on stderr and exit status 2, never a traceback:

* :class:`CliParser` prints argparse's own complaints as one ``prog: error: ...`` line (no usage dump);
* the ``argparse`` *type* functions here (``HOST:PORT``, node and network IDs, ports, profiles,
  durations, hex, directories and output paths) turn bad text into such a complaint before any
  command runs;
* :func:`harden` fits the same checks onto subcommands other modules register (``decode``,
  ``nat-matrix``, ``trace plot`` ...), by argument name, without touching their code;
* :func:`guarded` runs a command and maps what escapes (Ctrl-C, a closed stdout, ``OSError``,
  :class:`~pilot_proto.errors.PilotError`, ``ValueError``) to one line and an exit status.

Host names in ``HOST:PORT`` are checked for shape by the type function; a command that takes one
resolves it once, at start, with :func:`resolve_endpoint` (as the Go reference's ``net.Dial`` /
``net.ResolveUDPAddr`` would), so the daemon, its drivers and the core only ever see IP literals and no
datagram send waits on a resolver.  A name that does not resolve is one line and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import os
import re
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

from pilot_proto.errors import PilotError
from pilot_proto.profile import Profile

__all__ = [
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "CliParser",
    "UsageError",
    "decoder_name",
    "duration",
    "existing_dir",
    "guarded",
    "harden",
    "hex_text",
    "host_port",
    "network_id",
    "node_id",
    "output_dir",
    "output_file",
    "peer_spec",
    "port",
    "profile",
    "resolve_endpoint",
]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")


class UsageError(Exception):
    """A mistake in what the user asked for, found after parsing (exit 2, one line)."""


class CliParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (no usage block) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _int(text: str, what: str, lo: int, hi: int) -> int:
    try:
        value = int(text.strip(), 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} must be an integer, got {text!r}") from None
    if not lo <= value <= hi:
        raise argparse.ArgumentTypeError(f"{what} must be in {lo}..{hi}, got {value}")
    return value


def node_id(text: str) -> int:
    """A 32-bit node ID (draft 4.1): decimal or 0x-hex, 0..4294967295."""
    return _int(text, "node ID", 0, 0xFFFFFFFF)


def network_id(text: str) -> int:
    """A 16-bit network ID (draft 4.1)."""
    return _int(text, "network ID", 0, 0xFFFF)


def port(text: str) -> int:
    """A 16-bit virtual port (draft 5.1)."""
    return _int(text, "port", 0, 0xFFFF)


def host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT``: an IP literal or a well-formed host name, and a UDP/TCP port 0..65535."""
    raw = text.strip()
    if raw.startswith("["):
        host, sep, rest = raw[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise argparse.ArgumentTypeError(f"expected [IPV6]:PORT, got {text!r}")
        port_text = rest[1:]
    else:
        host, sep, port_text = raw.rpartition(":")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    if not host:
        raise argparse.ArgumentTypeError(f"missing host in {text!r} (expected HOST:PORT)")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME.match(host):
            raise argparse.ArgumentTypeError(f"{host!r} is neither an IP address nor a host name") from None
        if host.rpartition(".")[2].isdigit():  # 300.1.1.1, 1.2.3: a broken IP literal, never a name (RFC 3696)
            raise argparse.ArgumentTypeError(f"{host!r} is not a valid IP address") from None
    if not port_text.isdigit():
        raise argparse.ArgumentTypeError(f"port in {text!r} must be a number 0..65535")
    value = int(port_text)
    if value > 0xFFFF:
        raise argparse.ArgumentTypeError(f"port {value} in {text!r} is out of range 0..65535")
    return host, value


def resolve_endpoint(
    endpoint: tuple[str, int], flag: str, *, family: int = socket.AF_UNSPEC, stream: bool = False
) -> tuple[str, int]:
    """``endpoint`` with its host as an IP literal: unchanged if it is one, else the name resolved once (E-DF-1).

    ``family`` restricts the answer (a UDP destination must match the socket's family); among several
    answers an IPv4 address is preferred, as the node's default socket is IPv4.  Failure is a
    :class:`UsageError` naming ``flag``.
    """
    host, port_number = endpoint
    try:
        ipaddress.ip_address(host)
        return endpoint
    except ValueError:
        pass
    kind = socket.SOCK_STREAM if stream else socket.SOCK_DGRAM
    try:
        infos = socket.getaddrinfo(host, port_number, family, kind)
    except (OSError, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        raise UsageError(f"{flag} {host}:{port_number}: cannot resolve host name {host!r} ({reason})") from None
    addrs = [str(info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)]
    if not addrs:
        raise UsageError(f"{flag} {host}:{port_number}: host name {host!r} has no usable address")
    v4 = [a for a in addrs if ":" not in a]
    return (v4 or addrs)[0], port_number


def peer_spec(text: str) -> tuple[int, tuple[str, int]]:
    """``NODE=HOST:PORT``: a direct peer's node ID and underlay address."""
    node_text, sep, endpoint = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NODE=HOST:PORT, got {text!r}")
    return node_id(node_text), host_port(endpoint)


def profile(text: str) -> Profile:
    """``draft`` or ``go-interop`` (also ``go``)."""
    try:
        return Profile.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def duration(text: str) -> float:
    """A positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"duration must be a positive finite number of seconds, got {text!r}")
    return value


def hex_text(text: str) -> str:
    """Hex digits (whitespace allowed); returned unchanged so the command decodes them itself."""
    try:
        bytes.fromhex(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not hex: {text[:40]!r}") from None
    return text


def existing_dir(text: str) -> str:
    """A directory that exists."""
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"no such directory: {text}")
    return text


def _writable_parent(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` if it is a writable directory, else None."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            return None
        probe = probe.parent
    if probe.is_dir() and os.access(probe, os.W_OK | os.X_OK):
        return probe
    return None


def output_dir(text: str) -> str:
    """A directory we can write into (created later if missing)."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a directory")
    if _writable_parent(path) is None:
        raise argparse.ArgumentTypeError(f"cannot write to {text} (no writable directory on its path)")
    return text


def output_file(text: str) -> str:
    """A file path we can create or overwrite."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory")
    if path.exists():
        if not os.access(path, os.W_OK):
            raise argparse.ArgumentTypeError(f"cannot write to {text}")
        return text
    if not path.parent.is_dir() or not os.access(path.parent, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"cannot create {text}: {path.parent} is not a writable directory")
    return text


def decoder_name(text: str) -> str:
    """A name ``pilot-proto decode --list`` shows."""
    from pilot_proto.wire.formats import discover

    if text not in discover():
        raise argparse.ArgumentTypeError(f"unknown decoder {text!r} (see 'pilot-proto decode --list')")
    return text


# -- fitting the checks onto subcommands other modules register ---------------------------------------

#: ``(command path suffix or "", dest)`` -> type; "" matches every command.
_BY_DEST: dict[tuple[str, str], Callable[[str], Any]] = {
    ("", "profile"): profile,
    ("", "spec"): existing_dir,
    ("decode", "name"): decoder_name,
    ("decode", "hex"): hex_text,
    ("plot", "out"): output_file,
    ("generate", "out"): output_dir,
    ("", "node_id"): node_id,
    ("", "network"): network_id,
    ("", "ping"): node_id,
    ("", "duration"): duration,
    ("node", "listen"): lambda text: _checked(host_port, text),
    ("node", "peer"): lambda text: _checked(peer_spec, text),
}


def _checked(check: Callable[[str], object], text: str) -> str:
    """Validate ``text`` with ``check`` but hand the command the original string (it parses it itself)."""
    check(text)
    return text


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    found: list[argparse.ArgumentParser] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases map to one parser
                found.append(child)
                found.extend(_subparsers(child))
    return found


def harden(parser: argparse.ArgumentParser) -> None:
    """Give every argument known by name (``--profile``, ``--spec``, ``decode NAME HEX`` ...) its checking type.

    Only arguments typed ``str``/``int``/``float`` (or untyped) are changed, so a module that already
    validates with its own function keeps its rule.
    """
    for child in [parser, *_subparsers(parser)]:
        last = child.prog.split()[-1]
        for action in child._actions:
            kind = _BY_DEST.get((last, action.dest)) or _BY_DEST.get(("", action.dest))
            if kind is not None and action.type in (None, str, int, float):
                action.type = kind


# -- running a command --------------------------------------------------------------------------------


def _say(message: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # stderr itself gone: nothing left to tell
        print(message, file=sys.stderr, flush=True)


def _silence_stdout() -> None:
    """After EPIPE on stdout, point fd 1 at /dev/null so interpreter shutdown does not complain again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _describe_os_error(exc: OSError) -> str:
    what = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is not None:
        return f"{what}: {exc.filename}"
    return what


def guarded(prog: str, run: Callable[[], int]) -> int:
    """Run ``run()``; whatever escapes becomes one line on stderr and an exit status (no traceback).

    Set ``PILOT_DEBUG=1`` to let unexpected exceptions through with their traceback.
    """
    try:
        status = run()
        sys.stdout.flush()
        return status
    except SystemExit as exc:  # argparse (errors, --help, --version): hand back the status instead of exiting
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else EXIT_USAGE)
    except KeyboardInterrupt:
        _say(f"{prog}: interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        _say(f"{prog}: error: output closed before everything was written (broken pipe)")
        return EXIT_USAGE
    except UsageError as exc:
        _say(f"{prog}: error: {exc}")
        return EXIT_USAGE
    except OSError as exc:
        _say(f"{prog}: error: {_describe_os_error(exc)}")
        return EXIT_USAGE
    except (PilotError, ValueError) as exc:
        _say(f"{prog}: error: {exc}")
        return EXIT_USAGE
    except Exception as exc:
        if os.environ.get("PILOT_DEBUG"):
            raise
        _say(f"{prog}: internal error ({type(exc).__name__}): {exc} (PILOT_DEBUG=1 shows the traceback)")
        return 1
