"""Fake providers: real HTTP servers on 127.0.0.1 with fault knobs, for the demo and the tests."""
