"""``python -m tokenflow``: the same as the ``tokenflow`` command."""

from tokenflow.cli.app import main

raise SystemExit(main())
