"""Presentation attacks: a live render shown on a medium and re-captured.

A medium (paper or screen) is a plane in front of the camera. Every capture
sample is mapped back to medium coordinates (a, b), where the shown content
(the photo or video frame, a face crop like the live ones) spans [-1, 1]^2
with b pointing down, beyond it lies the paper margin or the screen bezel up to
`MediumPose.extent`, and beyond that the scene background. The same map
carries the content's parsing, so spoof labels stay exact under the warp.

The capture point-samples the medium on a grid `SUPERSAMPLE` times finer than
the working resolution (1: one sample per pixel, which keeps the build fast)
and box-filters it: the print's halftone and the screen's sub-pixel grid alias
into moire as a real camera sees them; `PrintStyle.texture` and
`ScreenStyle.moire` set how much of that pattern the lens lets through.
Margins, bezels and background are class 0. Spoof depth is zero (set by the
caller).
"""

import dataclasses

import numpy as np

from fasjax.datasets.synthetic_fas import render as render_lib

SUPERSAMPLE = 1


@dataclasses.dataclass(frozen=True)
class MediumPose:
  """Placement of a paper or screen, relative to the capture crop."""
  scale: float = 1.0  # content half-width in capture half-widths
  angle: float = 0.0  # in-plane rotation, radians
  shift: tuple[float, float] = (0.0, 0.0)  # in capture half-widths
  tilt: tuple[float, float] = (0.0, 0.0)  # projective terms (perspective)
  bend: float = 0.0  # curvature of a bend about the vertical axis
  extent: tuple[float, float] = (2.0, 2.0)  # medium half-size, content units


@dataclasses.dataclass(frozen=True)
class PrintStyle:
  """How a printer and paper render a photo."""
  paper: np.ndarray  # RGB of bare paper
  black: float = 0.08  # ink cannot get darker than this
  gamma: float = 1.0
  saturation: float = 0.85
  screen: str = 'halftone'  # 'halftone' (clustered dots) or 'dither'
  period: float = 0.05  # screen cell, in content half-widths
  sharpness: float = 6.0  # ink edge sharpness (inf = binary dots)
  gloss: float = 0.0  # specular sheen of coated paper
  texture: float = 0.5  # share of the dot pattern's contrast the lens keeps


@dataclasses.dataclass(frozen=True)
class ScreenStyle:
  """How a display shows a video frame."""
  pixels: int = 96  # display pixels across the content
  fill: float = 0.8  # lit share of each sub-pixel (the rest: black matrix)
  gamma: float = 1.0  # display tone curve relative to the content's
  saturation: float = 1.0  # display colour gamut relative to the content's
  white: np.ndarray = dataclasses.field(
      default_factory=lambda: np.array([0.95, 1.0, 1.1]))
  brightness: float = 1.0
  reflect: float = 0.05  # share of room light the glass reflects
  glare: float = 0.2  # peak of the light source's reflection
  glare_pos: tuple[float, float] = (0.4, -0.4)
  moire: float = 0.2  # share of the sub-pixel contrast the lens keeps
  bezel: np.ndarray = dataclasses.field(
      default_factory=lambda: np.array([0.05, 0.05, 0.06]))


def _capture_grid(size: int):
  """Normalised capture coordinates (x right, y down) of the sample grid."""
  n = size * SUPERSAMPLE
  c = (np.arange(n) + 0.5) / n * 2 - 1
  x, y = np.meshgrid(c, c)
  return x.ravel(), y.ravel()


def medium_coords(
    size: int, mp: MediumPose
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Medium coordinates, bend angle and validity of every capture sample."""
  x, y = _capture_grid(size)
  u, v = x - mp.shift[0], y - mp.shift[1]
  ca, sa = np.cos(mp.angle), np.sin(mp.angle)
  u, v = (ca * u + sa * v) / mp.scale, (-sa * u + ca * v) / mp.scale
  w = 1.0 + mp.tilt[0] * u + mp.tilt[1] * v
  a, b = u / w, v / w
  valid = w > 0.2
  theta = np.zeros_like(a)
  if abs(mp.bend) > 1e-4:
    # A sheet bent on a cylinder: its arc length a maps to sin(k a) / k.
    s = mp.bend * a
    valid &= np.abs(s) < 1
    theta = np.arcsin(np.clip(s, -1, 1))
    a = theta / mp.bend
  inside = valid & (np.abs(a) <= mp.extent[0]) & (np.abs(b) <= mp.extent[1])
  return a, b, theta, inside


def _pixel(coord, n):
  """Continuous pixel coordinate of medium coordinate in [-1, 1]."""
  return (coord + 1) * 0.5 * n - 0.5


def sample_bilinear(img: np.ndarray, a: np.ndarray,
                    b: np.ndarray) -> np.ndarray:
  """Bilinear lookup of an (n, n, C) image at medium coordinates."""
  n = img.shape[0]
  col = np.clip(_pixel(a, n), 0, n - 1.001)
  row = np.clip(_pixel(b, n), 0, n - 1.001)
  c0, r0 = col.astype(int), row.astype(int)
  fc, fr = (col - c0)[:, None], (row - r0)[:, None]
  top = img[r0, c0] * (1 - fc) + img[r0, c0 + 1] * fc
  bot = img[r0 + 1, c0] * (1 - fc) + img[r0 + 1, c0 + 1] * fc
  return top * (1 - fr) + bot * fr


def sample_nearest(img: np.ndarray, a: np.ndarray,
                   b: np.ndarray) -> np.ndarray:
  """Nearest-pixel lookup of an (n, n, ...) array at medium coordinates."""
  n = img.shape[0]
  col = np.clip(np.floor((a + 1) * 0.5 * n).astype(int), 0, n - 1)
  row = np.clip(np.floor((b + 1) * 0.5 * n).astype(int), 0, n - 1)
  return img[row, col]


def _ink_threshold(a, b, style: PrintStyle, channel: int):
  """Screen threshold in [0, 1] of one ink at medium coordinates."""
  if style.screen == 'dither':
    # Stochastic screening: a hashed random threshold per printer dot.
    ia = np.floor(a / style.period).astype(np.int64)
    ib = np.floor(b / style.period).astype(np.int64)
    h = (ia * 73856093) ^ (ib * 19349663) ^ (channel * 83492791)
    return ((h * 2654435761) % 4093) / 4093.0
  angle = np.deg2rad((15.0, 75.0, 0.0)[channel])
  ra = np.cos(angle) * a + np.sin(angle) * b
  rb = -np.sin(angle) * a + np.cos(angle) * b
  k = 2 * np.pi / style.period
  return 0.5 + 0.25 * (np.cos(k * ra) + np.cos(k * rb))


def _saturate(rgb, saturation: float):
  """Scales colourfulness around the grey axis; clips to [0, 1]."""
  rgb = np.clip(rgb, 0, 1)
  grey = rgb.mean(axis=-1, keepdims=True)
  return np.clip(grey + saturation * (rgb - grey), 0, 1)


def print_colors(photo_rgb: np.ndarray, a: np.ndarray, b: np.ndarray,
                 style: PrintStyle) -> np.ndarray:
  """Printed reflectance at medium points: gamut compression + screening."""
  rgb = _saturate(photo_rgb, style.saturation) ** style.gamma
  out = np.empty_like(rgb)
  for c in range(3):
    ink = 1.0 - rgb[:, c]
    dots = np.clip((ink - _ink_threshold(a, b, style, c)) * style.sharpness
                   + 0.5, 0, 1)
    out[:, c] = 1 - dots
  # The camera's optics blur most of the dot pattern away; what survives
  # aliases into the capture.
  out = style.texture * out + (1 - style.texture) * rgb
  return (style.black + (1 - style.black) * out) * style.paper


def _paper_shading(theta, light: render_lib.Light, gloss: float):
  """Light reflected by a (possibly bent) matte sheet facing the camera."""
  normal = np.stack([np.sin(theta), np.zeros_like(theta), np.cos(theta)], -1)
  lam = np.clip(np.einsum('ij,j->i', normal, light.direction), 0,
                None)[:, None]
  shade = light.ambient + lam * light.color
  half = light.direction + np.array([0.0, 0.0, 1.0])
  half /= np.linalg.norm(half)
  sheen = gloss * np.clip(np.einsum('ij,j->i', normal, half), 0,
                          None)[:, None] ** 8
  return shade, sheen * light.color


def _finish(rgb_samples, labels, size):
  """Box-filters the supersampled colours; labels stay at sample rate."""
  n = size * SUPERSAMPLE
  rgb = rgb_samples.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE, 3)
  return (rgb.mean(axis=(1, 3)).astype(np.float32),
          labels.reshape(n, n).astype(np.uint8))


def _background_samples(background: np.ndarray) -> np.ndarray:
  """The scene background repeated to the sample grid."""
  up = np.repeat(np.repeat(background, SUPERSAMPLE, 0), SUPERSAMPLE, 1)
  return up.reshape(-1, 3)


def print_attack(
    photo_rgb: np.ndarray, photo_parsing: np.ndarray, style: PrintStyle,
    mp: MediumPose, light: render_lib.Light, background: np.ndarray,
    behind: render_lib.Render | None = None, holes: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
  """Re-captures a printed photo; `holes` cut through to `behind` (cut attack).

  Returns the captured colour (size, size, 3) and the parsing at the sample
  grid (size * SUPERSAMPLE)^2, size = background's size.
  """
  size = background.shape[0]
  a, b, theta, on_paper = medium_coords(size, mp)
  in_photo = on_paper & (np.abs(a) <= 1) & (np.abs(b) <= 1)
  rgb = _background_samples(background).copy()
  labels = np.zeros(len(a), np.uint8)
  shade, sheen = _paper_shading(theta[on_paper], light, style.gloss)
  reflect = np.broadcast_to(style.paper, (on_paper.sum(), 3)).copy()
  ip = in_photo[on_paper]
  ap, bp = a[in_photo], b[in_photo]
  reflect[ip] = print_colors(sample_bilinear(photo_rgb, ap, bp), ap, bp, style)
  rgb[on_paper] = reflect * shade + sheen
  labels[in_photo] = sample_nearest(photo_parsing, ap, bp)
  if holes is not None and behind is not None:
    # Through the holes the attacker's own face shows, half in the print's
    # shadow; its labels replace the print's there.
    hole = in_photo.copy()
    hole[in_photo] = sample_nearest(holes, ap, bp)
    ah, bh = a[hole], b[hole]
    seen = sample_nearest(behind.alpha, ah, bh)
    face = sample_bilinear(behind.rgb, ah, bh) * 0.85
    rgb[hole] = np.where(seen[:, None], face, 0.05)
    labels[hole] = sample_nearest(behind.parsing, ah, bh)
  return _finish(rgb, labels, size)


def screen_attack(
    frame_rgb: np.ndarray, frame_parsing: np.ndarray, style: ScreenStyle,
    mp: MediumPose, light: render_lib.Light, background: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
  """Re-captures a video frame shown on a display (replay attack).

  frame_rgb has style.pixels pixels across. Returns the captured colour
  (size, size, 3) and the parsing at the sample grid.
  """
  size = background.shape[0]
  a, b, _, on_device = medium_coords(size, mp)
  on_screen = on_device & (np.abs(a) <= 1) & (np.abs(b) <= 1)
  rgb = _background_samples(background).copy()
  labels = np.zeros(len(a), np.uint8)
  room = (light.ambient + light.color * 0.5) * style.reflect
  rgb[on_device] = style.bezel * (light.ambient + light.color * 0.3) + room
  a_s, b_s = a[on_screen], b[on_screen]
  n = style.pixels
  col, row = _pixel(a_s, n) + 0.5, _pixel(b_s, n) + 0.5
  # RGB stripes: each pixel is three sub-pixel columns, each partly lit.
  sub = (col - np.floor(col)) * 3
  stripe = np.floor(sub).astype(int)
  lit = ((sub - stripe) < style.fill) & ((row - np.floor(row)) < style.fill)
  content = _saturate(sample_nearest(frame_rgb, a_s, b_s), style.saturation)
  content = content ** style.gamma
  pattern = np.zeros_like(content)
  pattern[np.arange(len(stripe)), stripe] = 3 * lit / style.fill ** 2
  emitted = content * (1 - style.moire + style.moire * pattern)
  rgb[on_screen] = emitted * style.white * style.brightness + room
  labels[on_screen] = sample_nearest(frame_parsing, a_s, b_s)
  # The glass mirrors the room light: a soft highlight over screen and bezel.
  x, y = _capture_grid(size)
  gx, gy = style.glare_pos
  glare = style.glare * np.exp(-((x - gx) ** 2 + (y - gy) ** 2) / 0.18)
  rgb[on_device] += glare[on_device, None] * light.color
  return _finish(rgb, labels, size)


def cut_holes(parsing: np.ndarray) -> np.ndarray:
  """Eye and mouth holes of a cut photo: ellipses around those regions."""
  n = parsing.shape[0]
  rows, cols = np.mgrid[0:n, 0:n]
  holes = np.zeros(parsing.shape, bool)
  for classes, (ry, rx) in (((4,), (0.045, 0.09)), ((5,), (0.045, 0.09)),
                            ((10, 11, 12), (0.07, 0.14))):
    m = np.isin(parsing, classes)
    if not m.any():
      continue
    cy, cx = rows[m].mean(), cols[m].mean()
    holes |= (((rows - cy) / (ry * n)) ** 2 + ((cols - cx) / (rx * n)) ** 2
              < 1)
  return holes
