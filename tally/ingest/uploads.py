"""Image uploads: decoding the base64 the clients send and writing the bytes durably under the data directory."""

import base64
import binascii
import os
from pathlib import Path
from typing import Any


def decode_image(data: dict[str, Any] | str) -> bytes:
    """The image bytes of an `upload.data` (OpenAI sends `{"b64_json": …}`, Bedrock `{"b64_json": …}` too)."""
    encoded = data if isinstance(data, str) else data.get("b64_json") or data.get("base64")
    if not isinstance(encoded, str) or not encoded:
        raise ValueError("must hold base64 image data in b64_json")
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError(f"is not valid base64: {error}") from None


def save_upload(uploads_dir: Path, app_id: int, filename: str, content: bytes) -> Path:
    """Write to a temporary file, fsync, then rename into place: a reader never sees half an image."""
    folder = uploads_dir / str(app_id)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / filename
    temporary = folder / f".{filename}.partial"
    with open(temporary, "wb") as handle:
        handle.write(content)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, target)
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return target
