"""Drivers send Pilot frames without the Don't Fragment bit (draft 13.3, MTU-008)."""

from __future__ import annotations

import asyncio
import os
import socket
import sys

import pytest

from pilot_proto.drivers._socket import allow_fragmentation, fragmentation_allowed
from pilot_proto.drivers.beacon import BeaconDriver
from pilot_proto.drivers.udp import NodeDriver
from pilot_proto.node import Node

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="IP_MTU_DISCOVER is a Linux option")


@linux_only
@pytest.mark.req("MTU-008")
@pytest.mark.parametrize("family", [socket.AF_INET, socket.AF_INET6])
def test_kernel_default_sets_df_and_allow_fragmentation_clears_it(family: socket.AddressFamily) -> None:
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        assert fragmentation_allowed(sock) is False  # Linux default: path-MTU discovery, DF set
        assert allow_fragmentation(sock)
        assert fragmentation_allowed(sock) is True


@linux_only
@pytest.mark.req("MTU-008")
def test_both_drivers_clear_df_on_their_sockets() -> None:
    async def main() -> tuple[bool | None, bool | None]:
        node = await NodeDriver.start(Node(7, os.urandom))
        beacon = await BeaconDriver.start(("127.0.0.1", 0))
        try:
            assert node.transport is not None and beacon.transport is not None
            return (
                fragmentation_allowed(node.transport.get_extra_info("socket")),
                fragmentation_allowed(beacon.transport.get_extra_info("socket")),
            )
        finally:
            node.shutdown()
            beacon.close()

    assert asyncio.run(asyncio.wait_for(main(), 5.0)) == (True, True)
