"""Shell completion: ``backstop completion bash|zsh|fish`` prints the script (argcomplete's),
and the script asks ``backstop`` itself what completes, through argcomplete's environment
(``_ARGCOMPLETE``, ``COMP_LINE``, ``COMP_POINT``), which :func:`complete_if_asked` answers."""

from __future__ import annotations

import argparse
import os
import sys


def completion(args: argparse.Namespace) -> int:
    from argcomplete.shell_integration import shellcode

    sys.stdout.write(shellcode(["backstop"], shell=args.shell))
    return 0


def complete_if_asked(parser: argparse.ArgumentParser) -> None:
    """When a shell's completion asks, write the completions and exit; else return at once."""
    if "_ARGCOMPLETE" not in os.environ:
        return
    import argcomplete

    argcomplete.autocomplete(parser)
