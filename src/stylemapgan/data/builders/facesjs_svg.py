"""Rasterising facesjs SVGs: the picture, and a part-index label map from a flat-colour re-render.

The node script wraps each feature's fragment in ``<g class="smg-part-FEATURE">``. For the label map we
rewrite every paint inside such a group to one flat colour identifying its part, drop anything faint (a
paint whose effective opacity is below ``FAINT_ALPHA``, e.g. cheek blush, multiply shading, the alpha fade
of a fade haircut), render without anti-aliasing at ``MASK_SUPERSAMPLE`` times the size, and take the most
frequent part in each block (small parts weighted double, see ``PART_WEIGHT``). So a pixel gets the
topmost part that visibly paints it, at the same z-order as the picture, with edges that agree with the
anti-aliased image.
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET

import numpy as np
from PIL import Image

SVG_NS = "http://www.w3.org/2000/svg"
# Square crop of facesjs's 400x600 canvas that holds the whole head (hats slightly cut) and the shoulders.
VIEW_BOX = (-60.0, 30.0, 520.0, 520.0)
FAINT_ALPHA = 0.3
MASK_SUPERSAMPLE = 4

PARTS = (
    "background",
    "face",
    "hair",
    "eyes",
    "eyebrows",
    "nose",
    "mouth",
    "ears",
    "glasses",
    "facial_hair",
    "body",
    "clothes",
    "accessories",
)
FEATURE_TO_PART = {
    "head": "face",
    "eyeLine": "face",
    "smileLine": "face",
    "miscLine": "face",
    "hair": "hair",
    "hairBg": "hair",
    "eye": "eyes",
    "eyebrow": "eyebrows",
    "nose": "nose",
    "mouth": "mouth",
    "ear": "ears",
    "glasses": "glasses",
    "facialHair": "facial_hair",
    "body": "body",
    "jersey": "clothes",
    "accessories": "accessories",
}
PART_INDEX = {name: i for i, name in enumerate(PARTS)}
# Small parts drawn with thin strokes (a nose can be one 5-unit line: under a pixel wide at 64 px) would vanish
# under a plain majority vote; their coverage counts double, roughly what the eye sees in the picture.
FINE_PARTS = ("eyes", "eyebrows", "nose", "mouth", "glasses", "facial_hair", "ears")
PART_WEIGHT = np.array([2.0 if p in FINE_PARTS else 1.0 for p in PARTS], dtype=np.float32)
_SHAPES = {"path", "rect", "circle", "ellipse", "polygon", "polyline", "line"}
_PAINT_PROPS = ("fill", "stroke", "opacity", "fill-opacity", "stroke-opacity", "mix-blend-mode")
_NAMED_ALPHA = {"none": 0.0, "transparent": 0.0}


def _tag(el: ET.Element) -> str:
    return el.tag.rsplit("}", 1)[-1]


def set_view_box(svg: str, view_box: tuple[float, float, float, float] = VIEW_BOX) -> str:
    """Replace facesjs's portrait canvas by a square crop."""
    vb = " ".join(f"{v:g}" for v in view_box)
    svg, n = re.subn(r'viewBox="[^"]*"', f'viewBox="{vb}"', svg, count=1)
    if n != 1:
        raise ValueError("facesjs SVG without a viewBox")
    return svg


def render_png(svg: str, size: int, background: str = "white") -> Image.Image:
    """The picture: anti-aliased, composited on ``background``, RGB ``size`` x ``size``."""
    import cairosvg

    png = cairosvg.svg2png(bytestring=svg.encode(), output_width=size, output_height=size, background_color=background)
    with Image.open(io.BytesIO(png)) as im:
        return im.convert("RGB")


def _style(el: ET.Element) -> dict[str, str]:
    out = {}
    for decl in (el.get("style") or "").split(";"):
        key, sep, value = decl.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def _gradient_alpha(root: ET.Element) -> dict[str, float]:
    """Max stop opacity of each gradient id (a fade that is faint everywhere counts as faint)."""
    out = {}
    for el in root.iter():
        if _tag(el) in ("linearGradient", "radialGradient") and el.get("id"):
            alphas = []
            for stop in el:
                st = _style(stop)
                color = st.get("stop-color", stop.get("stop-color", "#000"))
                op = float(st.get("stop-opacity", stop.get("stop-opacity", "1")) or 1)
                alphas.append(_color_alpha(color, {}) * op)
            out[el.get("id")] = max(alphas, default=1.0)
    return out


def _color_alpha(paint: str, gradients: dict[str, float]) -> float:
    p = paint.strip().lower()
    if p in _NAMED_ALPHA:
        return _NAMED_ALPHA[p]
    if p.startswith("url("):
        m = re.match(r"url\(\s*#([^)\s]+)\s*\)", p)
        return gradients.get(m.group(1), 1.0) if m else 1.0
    if p.startswith("rgba(") or p.startswith("hsla("):
        try:
            return float(p[5:-1].split(",")[3])
        except (IndexError, ValueError):
            return 1.0
    if p.startswith("#") and len(p) == 9:
        return int(p[7:9], 16) / 255.0
    return 1.0


def _num(text: str | None, default: float = 1.0) -> float:
    try:
        return float(text) if text is not None else default
    except ValueError:
        return default


def _flatten(
    el: ET.Element, color: str, inherited: dict[str, str], opacity: float, gradients: dict[str, float]
) -> None:
    """Resolve paints down the tree and replace each visible one by ``color``, faint ones by none."""
    st = _style(el)
    state = dict(inherited)
    for prop in ("fill", "stroke", "fill-opacity", "stroke-opacity"):
        value = st.get(prop, el.get(prop))
        if value is not None and value != "inherit":
            state[prop] = value
    opacity *= _num(st.get("opacity", el.get("opacity")))
    keep = {k: v for k, v in st.items() if k not in _PAINT_PROPS}
    for prop in _PAINT_PROPS:
        el.attrib.pop(prop, None)
    if keep:
        el.set("style", ";".join(f"{k}:{v}" for k, v in keep.items()))
    else:
        el.attrib.pop("style", None)
    if _tag(el) in _SHAPES:
        fill_a = _color_alpha(state["fill"], gradients) * _num(state.get("fill-opacity")) * opacity
        stroke_a = _color_alpha(state["stroke"], gradients) * _num(state.get("stroke-opacity")) * opacity
        el.set("fill", color if fill_a >= FAINT_ALPHA else "none")
        el.set("stroke", color if stroke_a >= FAINT_ALPHA else "none")
    for child in el:
        if _tag(child) not in ("defs", "style"):
            _flatten(child, color, state, opacity, gradients)


def flat_svg(svg: str) -> str:
    """The same drawing with each part in its own flat grey level (part index), no anti-aliasing."""
    ET.register_namespace("", SVG_NS)
    root = ET.fromstring(svg)
    gradients = _gradient_alpha(root)
    root.set("shape-rendering", "crispEdges")
    for group in root.iter():
        cls = group.get("class") or ""
        if not cls.startswith("smg-part-"):
            continue
        part = FEATURE_TO_PART.get(cls.removeprefix("smg-part-"))
        if part is None:
            raise ValueError(f"facesjs feature {cls!r} has no part mapping")
        k = PART_INDEX[part]
        _flatten(group, f"rgb({k},{k},{k})", {"fill": "#000", "stroke": "none"}, 1.0, gradients)
    return ET.tostring(root, encoding="unicode")


def render_label_map(svg: str, size: int, supersample: int = MASK_SUPERSAMPLE) -> np.ndarray:
    """uint8 [size, size] part indices (see PARTS), by majority over supersample x supersample blocks."""
    import cairosvg

    big = size * supersample
    png = cairosvg.svg2png(bytestring=flat_svg(svg).encode(), output_width=big, output_height=big)
    with Image.open(io.BytesIO(png)) as im:
        rgba = np.asarray(im.convert("RGBA"))
    labels = np.where(rgba[..., 3] == 255, rgba[..., 0], 0).astype(np.uint8)
    if labels.max(initial=0) >= len(PARTS):
        raise ValueError("flat render produced a colour outside the part palette")
    if supersample == 1:
        return labels
    blocks = labels.reshape(size, supersample, size, supersample).transpose(0, 2, 1, 3).reshape(size, size, -1)
    scores = np.zeros((size, size, len(PARTS)), dtype=np.float32)
    for k in range(len(PARTS)):
        scores[..., k] = (blocks == k).sum(-1) * PART_WEIGHT[k]
    # Ties go to the higher part index (never to background): argmax over the reversed order.
    return (len(PARTS) - 1 - np.argmax(scores[..., ::-1], axis=-1)).astype(np.uint8)
