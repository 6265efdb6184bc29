"""Run the CLI as ``python -m auditctl``."""

from auditctl.entry import main

main()
