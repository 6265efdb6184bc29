"""Backups: pg_dump (or an app's JSON endpoint) into verified, checksummed, rotated, encrypted and mailed files."""
