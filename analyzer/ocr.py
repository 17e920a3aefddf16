"""Offline OCR: RapidOCR 3.x on ONNX Runtime, with the models that ship inside its wheel."""

from __future__ import annotations

import asyncio
import threading
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image, ImageDraw, ImageOps

from analyzer.images import decode, flatten
from analyzer.ocr_layout import reading_order
from analyzer.ocr_retry import is_inverse, second_look
from analyzer.ocr_types import OcrLine, OcrResult
from shared.errors import BackendError

__all__ = ["OcrLine", "OcrResult", "read_bytes", "read_image", "read_text", "warm_up"]

if TYPE_CHECKING:
    from rapidocr import RapidOCR

OCR_LONG_EDGE = 1568
"""The same bound as the API images: a label's text stays legible at this size."""

# The PP-OCRv6 "small" pair in the wheel is one multilingual model (Latin scripts,
# Chinese and Japanese kana/kanji); naming the files stops RapidOCR from ever
# trying to download a model, so a missing file fails fast instead of hanging.
MODEL_FILES = {
    "Det": "PP-OCRv6_det_small.onnx",
    "Cls": "ch_ppocr_mobile_v2.0_cls_mobile.onnx",
    "Rec": "PP-OCRv6_rec_small.onnx",
}
MIN_CONFIDENCE = 0.5
SMALL_LONG_EDGE = 640
# Detection at the image's own size ("max" never upscales a prepared image): RapidOCR's
# default ("min" side to 736) upscaled every label and cost ~30% more time for the
# same findings on the synthetic set; small images are upscaled by read_image instead.
ENGINE_PARAMS: dict[str, Any] = {
    "Global.log_level": "error",
    "Det.limit_type": "max",
    "Det.limit_side_len": OCR_LONG_EDGE,
}


_engine: RapidOCR | None = None
_load_lock = threading.Lock()
# RapidOCR.__call__ writes per-call options onto the shared instance, and ONNX
# Runtime already spreads one image over every core: one image at a time.
_run_lock = threading.Lock()


def model_dir() -> Path:
    """Where the installed rapidocr wheel keeps its ONNX models."""
    return Path(str(resources.files("rapidocr") / "models"))


def engine() -> RapidOCR:
    """The process-wide RapidOCR engine, created on first use."""
    global _engine  # noqa: PLW0603 - one engine per process, loaded lazily
    if _engine is None:
        with _load_lock:
            if _engine is None:
                _engine = _load()
    return _engine


def _load() -> RapidOCR:
    try:
        from rapidocr import RapidOCR
    except ImportError as exc:
        raise BackendError(f"the local backend needs rapidocr and onnxruntime: {exc}") from exc
    root = model_dir()
    params = dict(ENGINE_PARAMS)
    for stage, name in MODEL_FILES.items():
        path = root / name
        if not path.is_file():
            raise BackendError(f"OCR model {path} is missing; reinstall the rapidocr package")
        params[f"{stage}.model_path"] = str(path)
    return RapidOCR(params=params)


def warm_up() -> None:
    """Load the engine and its ONNX sessions now rather than on the first scan."""
    # Text, not a blank canvas: RapidOCR loads the recogniser only once a box is found.
    image = Image.new("RGB", (320, 64), "white")
    ImageDraw.Draw(image).text((12, 16), "Made in 2024", fill="black", font_size=24)
    read_image(image)


def read_image(image: Image.Image) -> OcrResult:
    """OCR a decoded image (blocking, CPU-bound): a first pass, a second look, reading order."""
    image = flatten(image).convert("RGB")
    long_edge = max(image.size)
    if long_edge < SMALL_LONG_EDGE:
        # Thumbnails: tiny text reads better enlarged, and more than twice adds nothing.
        factor = min(2.0, SMALL_LONG_EDGE / long_edge)
        size = (round(image.width * factor), round(image.height * factor))
        image = image.resize(size, Image.Resampling.LANCZOS)
    if is_inverse(image):
        # A dark label with light print: the recogniser is trained on dark-on-light.
        image = ImageOps.invert(image)
    started = time.perf_counter()
    first = _run(image)
    lines, unread = second_look(image, first, _run)
    kept = [x for x in lines if x.text.strip() and x.confidence >= MIN_CONFIDENCE]
    ordered = [
        row[0] if len(row) == 1 else _joined(row) for row in reading_order(kept, image.width)
    ]
    return OcrResult(
        lines=ordered,
        width=image.width,
        height=image.height,
        elapsed_s=round(time.perf_counter() - started, 3),
        second_looks=sum(x.second_look for x in ordered),
        unread_strips=unread,
    )


def _joined(row: list[OcrLine]) -> OcrLine:
    """One table row ("key", "value") as one line."""
    box = (
        min(x.box[0] for x in row),
        min(x.box[1] for x in row),
        max(x.box[2] for x in row),
        max(x.box[3] for x in row),
    )
    return OcrLine(
        text=" ".join(x.text for x in row),
        confidence=min(x.confidence for x in row),
        box=box,
        second_look=any(x.second_look for x in row),
    )


def _run(image: Image.Image) -> list[OcrLine]:
    """One recognition pass over an image: every line, whatever its confidence."""
    ocr = engine()
    with _run_lock:
        try:
            output = ocr(image)
        except Exception as exc:
            raise BackendError(f"OCR failed: {type(exc).__name__}: {exc}") from exc
    return _lines(output)


def read_bytes(data: bytes) -> OcrResult:
    """Decode (raising InvalidImageError) and OCR encoded image bytes (blocking)."""
    image, _ = decode(data, OCR_LONG_EDGE)
    return read_image(image)


async def read_text(data: bytes) -> OcrResult:
    """OCR encoded image bytes in a worker thread."""
    return await asyncio.to_thread(read_bytes, data)


def _lines(output: Any) -> list[OcrLine]:
    txts = getattr(output, "txts", None) or ()
    scores = getattr(output, "scores", None) or ()
    boxes = getattr(output, "boxes", None)
    lines: list[OcrLine] = []
    for index, (text, score) in enumerate(zip(txts, scores, strict=False)):
        if not str(text).strip():
            continue
        box = (0, 0, 0, 0)
        if boxes is not None and index < len(boxes):
            xs = [float(point[0]) for point in boxes[index]]
            ys = [float(point[1]) for point in boxes[index]]
            box = (int(min(xs)), int(min(ys)), int(max(xs)), int(max(ys)))
        lines.append(OcrLine(text=str(text).strip(), confidence=round(float(score), 4), box=box))
    return lines
