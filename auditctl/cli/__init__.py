"""The ``auditctl`` command: a typer app whose commands parse, call the library, and render."""

from ..i18n import install_as_default_domain

# typer translates its own strings when it is imported, so the catalog must
# be the default gettext domain first.
install_as_default_domain()

from .app import app, main  # noqa: E402

__all__ = ["app", "main"]
