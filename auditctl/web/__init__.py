"""The read-only web page of ``auditctl serve``."""

from .app import WebConfig, create_app

__all__ = ["WebConfig", "create_app"]
