"""I/O drivers around the sans-IO state machines (the only place sockets and clocks live)."""
