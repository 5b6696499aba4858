"""`python -m netdoctor`: the same entry point as the `netdoctor` script."""

from netdoctor.cli import main

raise SystemExit(main())
