"""What a person sees of a correction comes from the bytes that are signed, decoded here.

The controller sends each correction twice: its own decoded copy (``Correction.spec``) and
the exact bytes the signatures cover (``Correction.signed_spec``). A compromised controller
could make the two differ, to show one scope and get another approved; so every view that
leads to a signature (approve, the confirmation prompt, status) decodes the signed bytes
itself and shows those, and says loudly when the controller's copy says something else.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from backstop.cli import render
from backstop.core.errors import BackstopError, InvalidInput
from backstop.core.models import CorrectionSpec, Scope
from backstop.wire import correction_convert
from backstop.wire.received import ReceivedCorrection

BANNER = "WARNING: THE CONTROLLER'S COPY OF THIS CORRECTION DIFFERS FROM THE SIGNED BYTES."


@dataclass(frozen=True, slots=True)
class SignedView:
    spec: CorrectionSpec
    """Decoded by the CLI from the signed bytes (or, with ``verified`` False, the
    controller's copy, for a correction the controller sent no bytes of)."""
    data: bytes
    warnings: tuple[str, ...] = ()

    @property
    def verified(self) -> bool:
        return bool(self.data)


def view(c: ReceivedCorrection, data: bytes = b"") -> SignedView:
    """The correction as its signed bytes say: ``data`` when the caller has them (it signed
    or is about to sign them), else ``c.signed_spec``. Differences are warnings."""
    data = data or c.signed_spec
    if not data:
        return SignedView(
            c.controllers_copy(),
            b"",
            ("note: the controller sent no signed bytes; shown is the controller's own copy",),
        )
    try:
        spec = correction_convert.spec_from_bytes(data)
    except BackstopError as exc:
        raise InvalidInput(
            f"the signed bytes the controller sent are not a valid correction ({exc.message}); "
            "do not trust this controller"
        ) from exc
    if c.signed_spec and c.signed_spec != data:
        return SignedView(spec, data, (BANNER, "  the controller sent other signed bytes"))
    return SignedView(spec, data, _differences(spec, c))


def _differences(spec: CorrectionSpec, c: ReceivedCorrection) -> tuple[str, ...]:
    theirs = c.shown
    if theirs is None:
        return (BANNER, f"  the controller's copy is not a valid correction: {c.shown_error}")
    if theirs == spec:
        return ()
    lines = [BANNER]
    for f in fields(CorrectionSpec):
        mine, other = getattr(spec, f.name), getattr(theirs, f.name)
        if mine != other:
            lines.append(f"  {f.name}: the controller shows {_text(other)}; signed: {_text(mine)}")
    lines.append("  shown below is what the signatures cover (the signed bytes)")
    return tuple(lines)


def _text(value: object) -> str:
    if isinstance(value, Scope):
        return render.scope_text(value)
    return render.escape(value if isinstance(value, str) else repr(value))
