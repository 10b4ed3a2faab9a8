"""Tests of the async, typed and test-kit API (issue 13)."""
