"""Behaviour profiles: the draft as written, or what the Go reference does.

Where ``draft-teodor-pilot-protocol-01`` and the Go reference implementation
disagree, every component takes a :class:`Profile` and behaves accordingly.
Each difference is an erratum in ``spec/errata.md`` with both readings; the
erratum IDs are listed next to the rule that depends on them.

Subsystems keep their own configuration objects (``StreamConfig``,
``TunnelConfig`` ...) with a ``for_profile()`` constructor, so this module only
names the profiles.
"""

from __future__ import annotations

import enum

__all__ = ["DEFAULT_PROFILE", "Profile"]


class Profile(enum.Enum):
    """Which reading of the protocol to follow."""

    #: The text of draft-teodor-pilot-protocol-01, strictly.
    DRAFT = "draft"
    #: What the Go reference daemon (jerryfane/pilotprotocol at 64c2780) puts on
    #: the wire and accepts, where that differs from the draft.
    GO_INTEROP = "go-interop"

    @classmethod
    def parse(cls, name: str | Profile) -> Profile:
        """Accept a profile or its name (``"draft"``, ``"go-interop"``, ``"go"``)."""
        if isinstance(name, Profile):
            return name
        key = name.strip().lower().replace("_", "-")
        if key in ("go", "interop"):
            key = "go-interop"
        for member in cls:
            if member.value == key:
                return member
        raise ValueError(f"unknown profile {name!r}; expected 'draft' or 'go-interop'")


DEFAULT_PROFILE = Profile.DRAFT
