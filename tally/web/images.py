"""Serving an uploaded image, to the read API and the dashboard alike, so that no upload can run as a page."""

import logging
import os
from collections.abc import Iterator
from pathlib import Path

from sqlmodel import Session
from starlette.responses import Response, StreamingResponse

from tally.store.app_access import AppIds, sees
from tally.store.models import InteractionImage

log = logging.getLogger(__name__)
_RASTER_TYPES = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"))
_HEADERS = {"Content-Security-Policy": "default-src 'none'; sandbox", "X-Content-Type-Options": "nosniff",
            "Cache-Control": "private, max-age=3600"}


def image_response(db: Session, data_dir: Path, image_id: int, *, apps: AppIds) -> Response | None:
    """An uploaded image, served only as the raster type its bytes show, so a crafted upload cannot run script;
    None if there is no such upload (that a reader limited to `apps` sees) or its file is gone."""
    image = db.get(InteractionImage, image_id)
    if image is None or image.path is None or not sees(apps, image.app_id):
        return None
    try:
        handle = open(data_dir / image.path, "rb")  # noqa: SIM115 (closed by _chunks: it must outlive the check)
    except OSError as error:
        log.warning("image %s: its file cannot be read: %s", image_id, error)
        return None
    head = handle.read(16)
    handle.seek(0)
    media = next((kind for magic, kind in _RASTER_TYPES if head.startswith(magic)), None)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        media = "image/webp"
    headers = {**_HEADERS, "Content-Length": str(os.fstat(handle.fileno()).st_size)}
    if media is None:
        headers["Content-Disposition"] = f'attachment; filename="image-{image_id}.bin"'
    return StreamingResponse(_chunks(handle), media_type=media or "application/octet-stream", headers=headers)


def _chunks(handle) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(64 * 1024):
            yield chunk
