"""The CLI's witness: the newest audit head it has seen from each controller.

Every call that returns a head (a correction, ``GetAuditHead``, a verified export) offers it
here; the file keeps, per controller address, the one with the highest index, so it never moves
backwards. ``backstop audit verify`` then holds the controller's chain to it: a chain cut or
rewritten after this CLI saw it fails, naming this file.

The file is ``$XDG_STATE_HOME/backstop/audit-heads.json`` (default
``~/.local/state/backstop``), JSON ``{"controllers": {ADDRESS: {"seq": N, "hash": H}}}``,
written atomically under a lock. Failing to write it never fails a command (a warning says so).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from backstop.core.errors import StoreError
from backstop.core.files import write_atomically
from backstop.core.models import AuditHead

FILE_NAME = "audit-heads.json"
MAX_CONTROLLERS = 1000
"""Addresses kept; beyond that the lowest-index heads are dropped."""


def default_path(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_STATE_HOME") or ""
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "state"
    return root / "backstop" / FILE_NAME


class HeadMemory:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else default_path()
        self._warned = False

    def get(self, controller: str) -> AuditHead:
        """The newest head seen from ``controller`` (``AuditHead()`` if none)."""
        return self._read().get(controller, AuditHead())

    def remember(self, controller: str, head: AuditHead) -> None:
        """Keep ``head`` if it is further on than the one kept; never fails the caller."""
        if head.empty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with self._locked():
                heads = self._read()
                if head.seq <= heads.get(controller, AuditHead()).seq:
                    return
                heads[controller] = head
                self._write(heads)
        except (OSError, StoreError) as exc:
            if not self._warned:
                self._warned = True
                why = exc.strerror if isinstance(exc, OSError) else exc.message
                print(
                    f"warning: cannot record the audit head in {self.path}: {why}",
                    file=sys.stderr,
                )

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        lock = self.path.with_name(self.path.name + ".lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _read(self) -> dict[str, AuditHead]:
        try:
            data: Any = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            print(f"warning: ignoring unreadable {self.path}: {exc}", file=sys.stderr)
            return {}
        heads: dict[str, AuditHead] = {}
        entries = data.get("controllers") if isinstance(data, dict) else None
        for address, item in (entries or {}).items():
            if isinstance(item, dict) and _valid(item.get("seq"), item.get("hash")):
                heads[str(address)] = AuditHead(int(item["seq"]), str(item["hash"]))
        return heads

    def _write(self, heads: dict[str, AuditHead]) -> None:
        kept = sorted(heads.items(), key=lambda kv: kv[1].seq, reverse=True)[:MAX_CONTROLLERS]
        data = {"controllers": {a: {"seq": h.seq, "hash": h.hash} for a, h in sorted(kept)}}
        text = json.dumps(data, indent=1, sort_keys=True).encode()
        write_atomically(self.path, text, mode=0o600, error=StoreError)


def _valid(seq: object, head_hash: object) -> bool:
    return (
        isinstance(seq, int)
        and not isinstance(seq, bool)
        and seq > 0
        and isinstance(head_hash, str)
        and len(head_hash) == 64
        and not head_hash.strip("0123456789abcdef")
    )
