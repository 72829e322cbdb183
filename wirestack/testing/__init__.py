"""What wirestack gives test suites: the pytest plugin (the wire fixture) and the fakes for unit tests of the core."""
