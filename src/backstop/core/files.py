"""The one way Backstop replaces a file: a crash leaves the old content or the new, never a mix.

:func:`write_atomically` writes to a temporary file in the same directory (created with the
final mode, whatever the umask), fsyncs it, renames it over the target (or, with
``overwrite=False``, links it there only if nothing is), then fsyncs the directory so the
rename itself survives a power cut. Keys, certificates, the trust policy, the agent's state
and the CLI's witnessed heads are all written this way.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from backstop.core.errors import BackstopError, Conflict, StoreError


def write_atomically(
    path: Path,
    data: bytes,
    *,
    mode: int,
    overwrite: bool = True,
    error: type[BackstopError] = StoreError,
    what: str = "",
) -> None:
    """Replace ``path`` with ``data`` (see the module doc).

    A failure raises ``error`` saying ``cannot write <what> <path>``, and leaves no temporary
    file behind; with ``overwrite=False`` an existing ``path`` raises :class:`Conflict`.
    """
    directory = path.parent
    name = f"{what} {path}" if what else str(path)
    try:
        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise error(f"cannot write {name}: {exc}") from exc
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if overwrite:
            tmp.replace(path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError as exc:
                raise Conflict(f"{path} already exists; refusing to overwrite it") from exc
        fsync_directory(directory)
    except OSError as exc:
        raise error(f"cannot write {name}: {exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
