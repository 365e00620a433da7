"""Integration tests: every test here talks to a real server."""
