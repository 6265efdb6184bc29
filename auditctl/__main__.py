"""Run the CLI as ``python -m auditctl``."""

from auditctl.cli import main

main()
