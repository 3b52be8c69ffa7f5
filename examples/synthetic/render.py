"""Drawing a frame of the synthetic archive: numpy and Pillow only, text in Pillow's default font.

:func:`render_frame` draws the frame at any time of a timeline (deterministic: same
events and time, same pixels); :func:`object_geometry` says where an object is then.

Example::

    >>> from groundzero.synthetic.events import Event
    >>> e = Event(10.0, 20.0, "circle", "red", "left", target=True)
    >>> render_frame([e], 15.0, size=(96, 72)).shape
    (72, 96, 3)
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from groundzero.synthetic.events import Event, progress
from groundzero.synthetic.vocabulary import BACKGROUNDS, COLOURS, OBJECT_KINDS

#: the background outside every ``background`` event (not a nameable colour)
DEFAULT_BACKGROUND: tuple[int, int, int] = (90, 90, 90)

TEXT_RGB: tuple[int, int, int] = (245, 245, 245)
PANEL_RGB: tuple[int, int, int] = (25, 25, 25)

#: object radius as a fraction of min(width, height) of the frame
OBJECT_SCALE = 0.13


def object_geometry(
    event: Event, t: float, size: tuple[int, int]
) -> tuple[float, float, float]:
    """``(cx, cy, radius)`` in pixels of an object event at ``t`` seconds in a ``(W, H)`` frame.

    Movers travel from one edge to the other (kept fully inside the frame)
    over the event's duration; ``appears`` grows the radius from 0 to full,
    ``disappears`` shrinks it from full to 0. The centre pixel is always inside
    the drawn shape when ``radius >= 1``.
    """
    w, h = size
    r = OBJECT_SCALE * min(w, h)
    p = progress(event, t)
    lo_x, hi_x = r + 1.0, w - r - 2.0
    lo_y, hi_y = r + 1.0, h - r - 2.0
    cx = min(hi_x, max(lo_x, event.x_frac * w))
    cy = min(hi_y, max(lo_y, event.y_frac * h))
    if event.motion == "left":
        cx = hi_x - p * (hi_x - lo_x)
    elif event.motion == "right":
        cx = lo_x + p * (hi_x - lo_x)
    elif event.motion == "up":
        cy = hi_y - p * (hi_y - lo_y)
    elif event.motion == "down":
        cy = lo_y + p * (hi_y - lo_y)
    if event.kind == "appears":
        r *= p
    elif event.kind == "disappears":
        r *= 1.0 - p
    return cx, cy, r


def _shape_points(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """Polygon vertices (pixels) of a square, triangle or star of radius ``r``."""
    if shape == "square":
        s = 0.85 * r
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    if shape == "triangle":
        return [(cx, cy - r), (cx + 0.95 * r, cy + 0.7 * r), (cx - 0.95 * r, cy + 0.7 * r)]
    pts = []
    for k in range(10):  # star: 5 outer and 5 inner vertices, alternating
        rad = r if k % 2 == 0 else 0.45 * r
        ang = -math.pi / 2 + k * math.pi / 5
        pts.append((cx + rad * math.cos(ang), cy + rad * math.sin(ang)))
    return pts


def _draw_object(draw: ImageDraw.ImageDraw, event: Event, t: float, size: tuple[int, int]) -> None:
    cx, cy, r = object_geometry(event, t, size)
    if r < 0.5:
        return
    fill = COLOURS[str(event.colour)]
    if event.shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        draw.polygon(_shape_points(str(event.shape), cx, cy, r), fill=fill)


def _text_mask(word: str, size: tuple[int, int]) -> Image.Image:
    """White-on-black ``L`` mask of ``word`` in the default font, scaled up to fit the frame.

    The text is drawn at the font's native size, on one line or wrapped onto
    two (whichever ends up larger), then enlarged with nearest-neighbour
    sampling and thresholded: crisp, pure-white, and still legible-ish after a
    downsample to 64x64.
    """
    w, h = size
    font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("L", (1, 1)))
    layouts = []
    for text in (word, word.replace(" ", "\n", 1)):
        box = probe.multiline_textbbox((0, 0), text, font=font, spacing=2)
        x0, y0, x1, y1 = (int(v) for v in box)
        scale = min(0.9 * w / max(1, x1 - x0), 0.6 * h / max(1, y1 - y0))
        layouts.append((scale, text, (x0, y0, x1, y1)))
    scale, text, (x0, y0, x1, y1) = max(layouts, key=lambda layout: layout[0])
    small = Image.new("L", (x1 - x0 + 2, y1 - y0 + 2), 0)
    ImageDraw.Draw(small).multiline_text(
        (1 - x0, 1 - y0), text, font=font, fill=255, spacing=2, align="center"
    )
    big = small.resize(
        (max(1, round(small.width * scale)), max(1, round(small.height * scale))),
        Image.Resampling.NEAREST,
    )
    return big.point(lambda v: 255 if v >= 96 else 0)


def _draw_title(img: Image.Image, draw: ImageDraw.ImageDraw, word: str) -> None:
    mask = _text_mask(word, img.size)
    w, h = img.size
    x, y = (w - mask.width) // 2, (h - mask.height) // 2
    pad = max(1, round(0.03 * min(w, h)))
    panel = [x - pad, y - pad, x + mask.width + pad - 1, y + mask.height + pad - 1]
    draw.rectangle(panel, fill=PANEL_RGB)
    img.paste(TEXT_RGB, (x, y, x + mask.width, y + mask.height), mask)


def render_frame(
    events_active: Iterable[Event], t: float, size: tuple[int, int] = (160, 120)
) -> np.ndarray:
    """The frame at ``t`` seconds: uint8 RGB array of shape ``(H, W, 3)`` for ``size = (W, H)``.

    Draws the background (grey, or the colour of an active ``background``
    event), then titles (white text on a dark panel, centred), then objects at
    their positions at ``t``. Events not active at ``t`` are skipped, so passing
    a whole timeline is correct, only slower. Deterministic: same arguments,
    same pixels.
    """
    events = [e for e in events_active if e.active(t)]
    bg = DEFAULT_BACKGROUND
    for e in events:
        if e.kind == "background":
            bg = BACKGROUNDS[str(e.colour)]
    img = Image.new("RGB", size, bg)
    draw = ImageDraw.Draw(img)
    for e in events:
        if e.kind == "title":
            _draw_title(img, draw, str(e.word))
    for e in events:
        if e.kind in OBJECT_KINDS:
            _draw_object(draw, e, t, size)
    return np.array(img, dtype=np.uint8)
