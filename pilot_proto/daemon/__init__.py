"""The Pilot daemon: a sans-IO :class:`Daemon` over :class:`~pilot_proto.node.Node` plus its asyncio driver and IPC."""
