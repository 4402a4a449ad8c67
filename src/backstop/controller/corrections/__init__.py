"""Corrections: admitted, delivered to agents, driven to their final state, watched.

:class:`CorrectionsEngine` (``engine``) is what the controller's services use; its
collaborators are ``admission``, ``delivery``, ``progress`` and ``records``, with the pure
rules (``rules``, ``settling``) and in-memory state (``tracking``, ``watching``) beside them.
"""

from backstop.controller.corrections.admission import CreateRequest
from backstop.controller.corrections.delivery import AgentLink
from backstop.controller.corrections.engine import CorrectionsEngine

__all__ = ["AgentLink", "CorrectionsEngine", "CreateRequest"]
