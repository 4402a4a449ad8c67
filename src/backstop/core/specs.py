"""Building a new correction's spec: the one factory the CLI and the controller use, and the
one default expiry (``DEFAULT_EXPIRY_S``) a correction gets when its request names none. The
controller's ``default_ttl_s`` setting starts from the same constant.
"""

from __future__ import annotations

from backstop.core.ids import new_correction_id
from backstop.core.models import Action, ActionParams, CorrectionSpec, Scope

DEFAULT_EXPIRY_S = 3600.0
"""How long a correction stays deliverable when nothing else is asked for."""


def new_spec(
    action: Action,
    scope: Scope,
    reason: str,
    issuer: str,
    *,
    now_s: float,
    reverts: str = "",
    ttl_s: float = DEFAULT_EXPIRY_S,
    params: ActionParams | None = None,
    correction_id: str = "",
) -> CorrectionSpec:
    """A fresh spec created ``now_s``, expiring ``ttl_s`` later; its id is ``correction_id``
    (an agent's own lease ids) or else a new random one."""
    return CorrectionSpec(
        correction_id=correction_id or new_correction_id(),
        action=action,
        scope=scope,
        reason=reason,
        issuer=issuer,
        created_at_s=now_s,
        expires_at_s=now_s + ttl_s,
        params=params if params is not None else ActionParams(),
        reverts=reverts,
    )
