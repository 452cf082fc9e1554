"""The key every identity's encryption secrets are pickled with in the store."""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from pathlib import Path

from salon.app.surface import api_secret
from salon.config.models import SalonConfig
from salon.matrix.api import MatrixAPI
from salon.matrix.crypto import CryptoSettings, DeviceCrypto
from salon.matrix.crypto.resident import ResidentAccounts
from salon.store.crypto import CryptoStore
from salon.store.db import PRIVATE_FILE_MODE, ensure_private_dir

KEY_FILE = "crypto.key"


def crypto_settings(config: SalonConfig, given: Mapping[str, str]) -> CryptoSettings:
    """From the secret ``encryption.pickle_key_env`` names, else ``<data_dir>/crypto.key``
    (32 random bytes, owner-only, made on first start and kept: losing it loses every
    identity's device)."""
    secret = api_secret(config.encryption.pickle_key_env, "encryption.pickle_key_env", given)
    wait_s = config.encryption.undecryptable_wait_s
    resident = ResidentAccounts(config.encryption.resident_accounts)
    if secret is not None:
        return CryptoSettings(hashlib.sha256(secret.encode()).digest(), wait_s, resident)
    data_dir = Path(config.data_dir)
    ensure_private_dir(data_dir)
    path = data_dir / KEY_FILE
    with suppress(FileExistsError):
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, PRIVATE_FILE_MODE)
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_hex(32))
    path.chmod(PRIVATE_FILE_MODE)
    key = hashlib.sha256(path.read_text().strip().encode()).digest()
    return CryptoSettings(key, wait_s, resident)


def operator_device(
    config: SalonConfig, store: CryptoStore, given: Mapping[str, str]
) -> Callable[[MatrixAPI], Awaitable[object]] | None:
    """How the operator the API sends as gets its device (None: encryption is off):
    a durable one like every identity's, so its sends into encrypted rooms are
    encrypted. It never syncs, so each send looks the room's members up anew."""
    if not config.encryption.enabled:
        return None
    settings = crypto_settings(config, given)
    return lambda api: DeviceCrypto.attach(api, store, settings, follows_sync=False)
