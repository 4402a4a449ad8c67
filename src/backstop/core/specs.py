"""Building a new correction's spec: the one factory the CLI and the controller use, and the
one default expiry (``DEFAULT_EXPIRY_S``) a correction gets when its request names none. The
controller's ``default_ttl_s`` setting starts from the same constant. :func:`validate_params`
holds the bounds of every action parameter, for the wire, the CLI and policy files alike.
"""

from __future__ import annotations

from backstop.core.errors import InvalidInput
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
    policy_digest: str = "",
    incident: str = "",
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
        policy_digest=policy_digest,
        incident=incident,
    )


def validate_params(params: ActionParams) -> None:
    """Refuse an action parameter outside its bounds, saying the bound."""
    if params.power_fraction is not None and not (0.0 < params.power_fraction <= 1.0):
        raise InvalidInput("power fraction must be within (0, 1]")
    if params.cpu_fraction is not None and not (0.0 < params.cpu_fraction <= 4096.0):
        raise InvalidInput("cpu quota must be a positive number of cores")
    if params.grace_s is not None and not (0.0 <= params.grace_s <= 3600.0):
        raise InvalidInput("grace period must be within [0, 3600] seconds")
    if params.sample_interval_s is not None and not (0.1 <= params.sample_interval_s <= 3600.0):
        raise InvalidInput("sample interval must be within [0.1, 3600] seconds")
