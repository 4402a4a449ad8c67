"""Shared domain code: models, errors, scope matching and settings.

Purely data-manipulative: no I/O beyond reading configuration files, and no
import of grpc, protobuf, pynvml, psutil, boto3 or kubernetes (checked by the
import-linter contract in ``pyproject.toml``).
"""
