"""Streaming age encryption with a passphrase (the scrypt recipient of age-encryption.org/v1).

pyrage only encrypts to a passphrase from bytes in memory, which a dump of
many gigabytes must not be, so this module writes the same format as a
stream. The format, from the age v1 specification (C2SP age.md):

- header: ``age-encryption.org/v1``, one ``-> scrypt SALT LOG2N`` stanza
  whose body is the 16-byte file key sealed with ChaCha20-Poly1305 under
  scrypt(passphrase, "age-encryption.org/v1/scrypt" + salt, N=2**LOG2N,
  r=8, p=1), then ``--- MAC`` with HMAC-SHA256 over the header, keyed by
  HKDF-SHA256(file key, info "header");
- payload: a 16-byte nonce, then 64 KiB chunks sealed with
  ChaCha20-Poly1305 under HKDF-SHA256(file key, salt nonce, info
  "payload"); the chunk nonce is an 11-byte big-endian counter and a final
  byte that is 1 on the last chunk only.

``age -d`` and ``rage -d`` ask for the passphrase and decrypt these files;
the tests decrypt them with pyrage's own implementation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from ..errors import BackupError
from ..i18n import _

VERSION_LINE = b"age-encryption.org/v1"
SCRYPT_LABEL = b"age-encryption.org/v1/scrypt"
CHUNK_SIZE = 64 * 1024
TAG_SIZE = 16
# age's own default work factor: about a second and 256 MiB of memory for scrypt.
DEFAULT_LOG2_N = 18
# Reject files that ask for more work than this when decrypting (age uses the same bound).
MAX_LOG2_N = 22


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data).rstrip(b"=")


def _unb64(text: bytes) -> bytes:
    return base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)


def _hkdf(key: bytes, salt: bytes | None, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(key)


def _scrypt_key(passphrase: bytes, salt: bytes, log2_n: int) -> bytes:
    return Scrypt(salt=SCRYPT_LABEL + salt, length=32, n=2 ** log2_n, r=8, p=1).derive(passphrase)


def _read_full(reader: BinaryIO, size: int) -> bytes:
    """Read exactly ``size`` bytes unless the stream ends first (pipes return short reads)."""
    parts = []
    remaining = size
    while remaining:
        data = reader.read(remaining)
        if not data:
            break
        parts.append(data)
        remaining -= len(data)
    return b"".join(parts)


def _chunk_nonce(counter: int, last: bool) -> bytes:
    return counter.to_bytes(11, "big") + (b"\x01" if last else b"\x00")


def encrypt_with_passphrase(reader: BinaryIO, writer: BinaryIO, passphrase: bytes,
                            log2_n: int = DEFAULT_LOG2_N) -> None:
    """Encrypt ``reader`` into ``writer`` in the age format, 64 KiB at a time."""
    file_key = os.urandom(16)
    salt = os.urandom(16)
    wrapped = ChaCha20Poly1305(_scrypt_key(passphrase, salt, log2_n)).encrypt(bytes(12), file_key, None)
    header = (VERSION_LINE + b"\n" + b"-> scrypt " + _b64(salt) + b" " + str(log2_n).encode() + b"\n"
              + _b64(wrapped) + b"\n---")
    mac = hmac.new(_hkdf(file_key, None, b"header"), header, hashlib.sha256).digest()
    writer.write(header + b" " + _b64(mac) + b"\n")

    nonce = os.urandom(16)
    writer.write(nonce)
    cipher = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
    counter = 0
    chunk = _read_full(reader, CHUNK_SIZE)
    while True:
        following = _read_full(reader, CHUNK_SIZE) if len(chunk) == CHUNK_SIZE else b""
        last = not following
        writer.write(cipher.encrypt(_chunk_nonce(counter, last), chunk, None))
        if last:
            return
        chunk = following
        counter += 1


def _read_line(reader: BinaryIO) -> bytes:
    line = bytearray()
    while len(line) < 1024:
        byte = reader.read(1)
        if not byte:
            break
        if byte == b"\n":
            return bytes(line)
        line += byte
    raise BackupError(_("Not an age file, or its header is damaged."))


def decrypt_with_passphrase(reader: BinaryIO, writer: BinaryIO, passphrase: bytes) -> None:
    """Decrypt an age file sealed with a passphrase; raise BackupError on a wrong passphrase or damage."""
    if _read_line(reader) != VERSION_LINE:
        raise BackupError(_("Not an age file, or its header is damaged."))
    stanza = _read_line(reader).split(b" ")
    if len(stanza) != 4 or stanza[:2] != [b"->", b"scrypt"]:
        raise BackupError(_("This age file is not encrypted with a passphrase; use --identity with its key."))
    body = _read_line(reader)
    mac_line = _read_line(reader)
    try:
        salt, log2_n = _unb64(stanza[2]), int(stanza[3])
        wrapped, mac = _unb64(body), _unb64(mac_line[4:])
    except ValueError:
        raise BackupError(_("Not an age file, or its header is damaged.")) from None
    if not mac_line.startswith(b"--- ") or len(salt) != 16 or not 1 <= log2_n <= MAX_LOG2_N:
        raise BackupError(_("Not an age file, or its header is damaged."))
    try:
        file_key = ChaCha20Poly1305(_scrypt_key(passphrase, salt, log2_n)).decrypt(bytes(12), wrapped, None)
    except InvalidTag:
        raise BackupError(_("Wrong passphrase for this age file.")) from None
    header = VERSION_LINE + b"\n" + b" ".join(stanza) + b"\n" + body + b"\n---"
    expected = hmac.new(_hkdf(file_key, None, b"header"), header, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, mac):
        raise BackupError(_("Not an age file, or its header is damaged."))

    nonce = _read_full(reader, 16)
    cipher = ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))
    counter = 0
    sealed = _read_full(reader, CHUNK_SIZE + TAG_SIZE)
    while True:
        following = _read_full(reader, CHUNK_SIZE + TAG_SIZE) if len(sealed) == CHUNK_SIZE + TAG_SIZE else b""
        last = not following
        try:
            writer.write(cipher.decrypt(_chunk_nonce(counter, last), sealed, None))
        except InvalidTag:
            raise BackupError(_("The age payload is damaged or truncated at chunk {number}.").format(
                number=counter + 1)) from None
        if last:
            return
        sealed = following
        counter += 1
