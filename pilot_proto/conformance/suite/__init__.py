"""Conformance test modules, one per draft area (run them through the plugin; see pilot_proto.conformance)."""
