"""Files sent encrypted: what :func:`encrypt_bytes` makes opens with the download
side's :func:`decrypt_file` (hash checked), and with no other key; message types."""

from __future__ import annotations

from pathlib import Path

import pytest

from salon.matrix.media import MediaError, decrypt_file, encrypted_file
from salon.matrix.upload import encrypt_bytes, msgtype_for


def test_an_encrypted_file_opens_with_its_keys(tmp_path: Path) -> None:
    data = b"secret minutes\n" * 1000
    ciphertext, keys = encrypt_bytes(data)
    assert ciphertext != data and len(ciphertext) == len(data)
    assert keys["key"]["alg"] == "A256CTR" and keys["v"] == "v2"
    source, dest = tmp_path / "c", tmp_path / "p"
    source.write_bytes(ciphertext)
    decrypt_file(source, dest, encrypted_file({"url": "mxc://x/y", **keys}))
    assert dest.read_bytes() == data


def test_each_file_gets_its_own_key_and_a_tampered_one_is_refused(tmp_path: Path) -> None:
    one, keys_one = encrypt_bytes(b"same")
    two, keys_two = encrypt_bytes(b"same")
    assert keys_one["key"]["k"] != keys_two["key"]["k"] and one != two
    source = tmp_path / "c"
    source.write_bytes(one[:-1] + bytes([one[-1] ^ 1]))
    with pytest.raises(MediaError, match="SHA-256"):
        decrypt_file(source, tmp_path / "p", encrypted_file(keys_one))


@pytest.mark.parametrize(
    ("mime", "msgtype"),
    [
        ("image/png", "m.image"),
        ("audio/ogg", "m.audio"),
        ("video/mp4", "m.video"),
        ("text/plain", "m.file"),
        ("application/pdf", "m.file"),
    ],
)
def test_the_message_type_follows_the_mime_type(mime: str, msgtype: str) -> None:
    assert msgtype_for(mime) == msgtype
