"""``python -m tokenflow``: the same as the ``tokenflow`` command."""

from tokenflow.cli import main

raise SystemExit(main())
