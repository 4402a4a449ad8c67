"""``python -m backstop`` is the ``backstop`` command."""

from backstop.cli.main import main

raise SystemExit(main())
