"""Encryption in the age format (age-encryption.org/v1) through pyrage, the Python binding of rage.

Data always streams: pyrage reads and writes 64 KiB chunks through the file
objects it is given, so neither a dump nor its plaintext is held in memory
or written to disk. Files decrypt with ``age -d -i KEY`` or ``rage -d -i KEY``.
"""

from __future__ import annotations

import io
import logging
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyrage
from pyrage import ssh, x25519

from ..errors import BackupError, ConfigError
from ..i18n import _
from .age_passphrase import decrypt_with_passphrase, encrypt_with_passphrase

logger = logging.getLogger(__name__)

AGE_EXTENSION = ".age"


@dataclass(frozen=True)
class Encryption:
    """The age recipients (``age1…`` keys or SSH public keys) or the passphrase file a backup is encrypted with."""

    recipients: tuple[str, ...] = ()
    passphrase_file: Path | None = None

    def encrypt(self, reader: BinaryIO, writer: BinaryIO) -> None:
        """Encrypt everything ``reader`` yields into ``writer``."""
        if self.passphrase_file is not None:
            encrypt_with_passphrase(reader, writer, read_passphrase(self.passphrase_file))
            return
        try:
            pyrage.encrypt_io(reader, writer, [parse_recipient(text) for text in self.recipients])
        except pyrage.EncryptError as exc:
            raise BackupError(_("Encryption failed: {error}").format(error=exc)) from None


@dataclass(frozen=True)
class Decryption:
    """The secret that opens encrypted backups: an identity file or a passphrase file."""

    identity_file: Path | None = None
    passphrase_file: Path | None = None

    @property
    def available(self) -> bool:
        return self.identity_file is not None or self.passphrase_file is not None

    def check(self, path: Path) -> None:
        """Read the identity or passphrase file that opens ``path``, so that a missing one fails before other steps."""
        with path.open("rb") as reader:
            use_passphrase = self._uses_passphrase(reader)
        if use_passphrase:
            read_passphrase(self.passphrase_file)
        elif self.identity_file is not None:
            load_identities(self.identity_file)

    def _uses_passphrase(self, reader: BinaryIO) -> bool:
        """Tell whether the passphrase file opens the age stream of ``reader``.

        With both files given, the age header decides: a file encrypted to
        a passphrase has an scrypt stanza, one encrypted to keys has none.
        """
        return self.passphrase_file is not None and (self.identity_file is None or _has_scrypt_stanza(reader))

    def decrypt(self, reader: BinaryIO, writer: BinaryIO) -> None:
        """Decrypt an age stream from ``reader`` into ``writer`` with the key file that matches its header."""
        if self._uses_passphrase(reader):
            decrypt_with_passphrase(reader, writer, read_passphrase(self.passphrase_file))
        elif self.identity_file is not None:
            decrypt(reader, writer, load_identities(self.identity_file))
        else:
            raise BackupError(_("The backup is encrypted; pass --identity or --passphrase-file."))


def _has_scrypt_stanza(reader: BinaryIO) -> bool:
    """Tell whether the age header at the reader's position names a passphrase (scrypt) recipient.

    The reader is left where it was. age puts each recipient stanza on a
    line of its own that starts with "-> TYPE", before the "---" line that
    ends the header; 4 KiB covers the header of a few dozen recipients.
    """
    position = reader.tell()
    head = reader.read(4096)
    reader.seek(position)
    return b"\n-> scrypt " in head.split(b"\n---", 1)[0]


def _require_private(path: Path) -> None:
    """Raise ConfigError unless ``path`` can be read and only its owner may read it."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise ConfigError(_("Cannot read {path}: {error}").format(path=path, error=exc.strerror)) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(_("File {path} is readable by other users; run `chmod 600 {path}`.").format(path=path))


def read_passphrase(path: Path) -> bytes:
    """Read a passphrase file (mode 0600); one trailing newline is not part of the passphrase."""
    _require_private(path)
    data = path.read_bytes()
    passphrase = data[:-1] if data.endswith(b"\n") else data
    if not passphrase:
        raise ConfigError(_("Passphrase file {path} is empty.").format(path=path))
    return passphrase


def parse_recipient(text: str):
    """Parse one recipient line: an ``age1…`` X25519 key or an ``ssh-ed25519``/``ssh-rsa`` public key."""
    try:
        if text.startswith("ssh-"):
            return ssh.Recipient.from_str(text)
        return x25519.Recipient.from_str(text)
    except pyrage.RecipientError:
        raise ConfigError(
            _("Invalid age recipient {recipient!r}: expected an age1… public key or an SSH public key.")
            .format(recipient=text[:80])) from None


def read_key_lines(path: Path) -> list[str]:
    """Read a recipients or identity file: one key a line, ``#`` comments and blank lines ignored."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(_("Cannot read key file {path}: {error}").format(path=path, error=exc.strerror)) from None
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def recipients_with_passphrase_error() -> ConfigError:
    return ConfigError(_("Use either age recipients or a passphrase file, not both: the age format allows a "
                         "passphrase only as the sole recipient."))


def load_encryption(recipients: list[str], recipients_file: Path | None,
                    passphrase_file: Path | None = None) -> Encryption | None:
    """Build the encryption settings, or None when neither recipients nor a passphrase file are set."""
    keys = list(recipients)
    if recipients_file is not None:
        keys += read_key_lines(recipients_file)
    if passphrase_file is not None:
        if keys:
            raise recipients_with_passphrase_error()
        read_passphrase(passphrase_file)
        return Encryption(passphrase_file=passphrase_file)
    if not keys:
        return None
    for key in keys:
        parse_recipient(key)
    return Encryption(tuple(keys))


def load_identities(path: Path) -> list:
    """Read an age identity file (``AGE-SECRET-KEY-1…`` lines); it must not be readable by others."""
    _require_private(path)
    identities = []
    for line in read_key_lines(path):
        try:
            identities.append(x25519.Identity.from_str(line))
        except pyrage.IdentityError:
            raise ConfigError(
                _("Identity file {path} contains a line that is not an AGE-SECRET-KEY-1… key.").format(path=path)
            ) from None
    if not identities:
        raise ConfigError(_("Identity file {path} contains no key.").format(path=path))
    return identities


def decrypt(reader: BinaryIO, writer: BinaryIO, identities: list) -> None:
    """Decrypt an age stream from ``reader`` into ``writer``."""
    try:
        pyrage.decrypt_io(reader, writer, identities)
    except pyrage.DecryptError as exc:
        raise BackupError(
            _("Decryption failed: {error}. Check that the identity file matches a recipient of this backup.")
            .format(error=exc)) from None


class PipeWriter(io.RawIOBase):
    """A writable file object over a child's stdin that swallows the child closing it early.

    ``pg_restore --list`` stops reading once it has the table of contents;
    the rest of the stream is then discarded instead of failing the caller.
    """

    def __init__(self, pipe: BinaryIO):
        self._pipe = pipe
        self.closed_early = False

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if not self.closed_early:
            try:
                self._pipe.write(data)
            except BrokenPipeError:
                self.closed_early = True
        return len(data)
