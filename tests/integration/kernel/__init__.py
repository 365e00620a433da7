"""Integration tests of the kernel clients."""
