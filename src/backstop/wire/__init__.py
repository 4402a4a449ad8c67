"""The edge between protobuf messages (``backstop.api.v1``) and domain models (``backstop.core``).

Every conversion lives here, in one place; the agent, controller and CLI never build domain
objects from messages themselves. Conversions *from* the wire validate: a message that is
malformed (unknown enum, missing id, out-of-range value) raises ``InvalidInput``.
"""
