"""Root conftest: load the requirement-marker plugin for tests/ and conformance/."""

pytest_plugins = ["pilot_proto.testing.pytest_plugin"]
