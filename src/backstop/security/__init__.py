"""Trust: PKI, mutual TLS, operator keys, signatures, quorum, audit chain."""
