"""Open image files (or bytes) the way every encoder wants them, and say why one cannot be opened.

``open_image`` returns an RGB ``PIL.Image`` upright and flat: EXIF orientation applied, the first
frame of an animation, transparency (RGBA, LA, P with a transparent colour) composited on white (the
background most pictures with an alpha channel are drawn for; black would turn dark line art into
a black square). Anything that keeps a file from becoming such an image raises ``ImageFileError``
with a reason a person can act on: missing, empty, not an image, truncated or corrupt, or so large
it would be a decompression bomb. Callers turn that into a ``Problem`` and go on with the others.

``thumbnail_bytes`` makes the small WebP picture kept with each item for reports and the web page.
"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from kinsight.engine.errors import ImageFileError

__all__ = [
    "IMAGE_SUFFIXES",
    "MAX_PIXELS",
    "THUMBNAIL_FIELD",
    "THUMBNAIL_MIME",
    "THUMBNAIL_SIDE",
    "open_image",
    "thumbnail_bytes",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff")
# PIL's own default: 89 megapixels (a 9,500 px square) decode to ~270 MB of RGB. A larger header is
# far more often a decompression bomb (a tiny file claiming a huge canvas) than a real photo.
MAX_PIXELS = 89_478_485
THUMBNAIL_FIELD = "thumbnail"  # the field (BLOB) each picture's thumbnail is kept in
THUMBNAIL_SIDE = 128
THUMBNAIL_MIME = "image/webp"
_THUMBNAIL_QUALITY = 80
_WHITE = (255, 255, 255)


def open_image(source: str | Path | bytes, *, min_side: int | None = None,
               max_pixels: int = MAX_PIXELS) -> Image.Image:
    """The image at ``source`` (a path, or the bytes of a file) as an upright RGB image.

    ``min_side`` lets JPEG decoding skip detail the caller will throw away: the image is decoded
    at the smallest power-of-two reduction whose shorter side is still at least ``min_side``
    (libjpeg's DCT scaling, several times faster than a full decode of a large photo).

    Raises ``ImageFileError`` for a missing, empty, unreadable, truncated, corrupt or oversized file.
    """
    data = _read(source)
    try:
        with warnings.catch_warnings():
            # PIL warns, then refuses, past its own limit; ours is checked below, before decoding.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageFileError(
                    f"the image is {width}×{height} = {width * height:,} pixels, over the limit "
                    f"of {max_pixels:,} (a decompression bomb, or a very large scan)",
                    "downscale it first, or raise max_pixels if you trust the file")
            if getattr(image, "n_frames", 1) > 1:
                image.seek(0)  # the first frame of an animated GIF, WebP or APNG
            if min_side and image.format == "JPEG":
                image.draft("RGB", _draft_size(width, height, min_side))
            image.load()
            return _flatten(ImageOps.exif_transpose(image) or image)
    except ImageFileError:
        raise
    except UnidentifiedImageError as e:
        raise ImageFileError("not an image PIL can read (unknown or unsupported format)",
                             "convert it to PNG or JPEG, or remove it from the input") from e
    except Image.DecompressionBombError as e:
        raise ImageFileError(f"decompression bomb: {e}", "downscale the image first") from e
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        # PIL reports a cut-off file as OSError("image file is truncated"), broken data as
        # OSError, SyntaxError (bad PNG chunks) or ValueError, depending on the format plugin.
        kind = "truncated" if "truncated" in str(e) else "corrupt"
        raise ImageFileError(f"the image is {kind} ({e})",
                             "re-export or re-download the file, or remove it") from e


def _read(source: str | Path | bytes) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    else:
        path = Path(source)
        try:
            data = path.read_bytes()
        except FileNotFoundError as e:
            raise ImageFileError("no such file", "check the path (relative paths in a list "
                                 "file are relative to the list file's folder)") from e
        except IsADirectoryError as e:
            raise ImageFileError("a folder, not an image file", "point at an image file") from e
        except OSError as e:
            raise ImageFileError(f"cannot read the file ({e.strerror or e})",
                                 "check its permissions") from e
    if not data:
        raise ImageFileError("the file is empty (0 bytes)", "re-export the image or remove it")
    return data


def _draft_size(width: int, height: int, min_side: int) -> tuple[int, int]:
    """The size to ask ``Image.draft`` for so that the shorter side stays ≥ ``min_side``."""
    scale = min_side / max(1, min(width, height))
    return math.ceil(width * scale), math.ceil(height * scale)


def _flatten(image: Image.Image) -> Image.Image:
    """RGB, with any transparency composited on white."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def thumbnail_bytes(image: Image.Image, side: int = THUMBNAIL_SIDE) -> bytes:
    """A WebP thumbnail fitting in ``side``×``side`` (aspect kept), as the bytes of the file."""
    thumb = image.copy()
    thumb.thumbnail((side, side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    thumb.save(out, format="WEBP", quality=_THUMBNAIL_QUALITY, method=4)
    return out.getvalue()
