"""Adapters without I/O: inbound parsers and verifiers, the outbound rate limiter."""
