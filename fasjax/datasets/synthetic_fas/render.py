"""Parametric 3-D head renderer: vectorised ray casting with exact labels.

Conventions (every label in `synthetic_fas` follows them):

* World frame: x points to the image's right, y up, z towards the camera. The
  camera is orthographic and looks along -z, so a pixel's column grows with x
  and its row grows with -y. Nearer surfaces have larger z.
* Head-local frame: the world axes of a frontal head. +x_local is the
  SUBJECT's left, so in a frontal face the subject's left eye (class 4,
  `l_eye`) appears on the IMAGE's right (larger column) and the right eye (5)
  on the image's left; likewise brows (2 left, 3 right) and ears (7, 8).
* Pose: p_world = scale * R p_local + (tx, ty, 0), R = Rz(roll) Rx(pitch)
  Ry(yaw). Positive yaw turns the nose to the image's right, positive pitch
  tilts it down.
* Parsing: the 13 classes of `PARTS`. Hair, neck and clothes have no class of
  their own in that set, so they are background (0), as in BiSeNet-style maps
  relabelled to 13 classes. Eyeglasses (6) are the frame and temples; the
  lenses are transparent, so the eyes behind them keep their class.

The head is a union of analytic surfaces (cranium and jaw ellipsoids, a nose
ellipsoid, ear ellipsoids, a hair shell, a neck cylinder, a shoulder
ellipsoid and a glasses plane); eyes, brows and lips are regions painted on
the skin surface. Each ray takes the nearest hit (a z-buffer), so the parsing
map and the z map are exact for the rendered picture.
"""

import dataclasses

import numpy as np

PARTS = ('background', 'skin', 'l_brow', 'r_brow', 'l_eye', 'r_eye',
         'eyeglasses', 'l_ear', 'r_ear', 'nose', 'mouth', 'u_lip', 'l_lip')
NUM_CLASSES = len(PARTS)

# Surface kinds of the z-buffer; the order is the index in `_cast`.
_CRANIUM, _JAW, _NOSE, _L_EAR, _R_EAR, _HAIR, _NECK, _BODY, _GLASSES = range(9)
_SKIN_KINDS = (_CRANIUM, _JAW)
_FAR = 1e9


@dataclasses.dataclass(frozen=True)
class Population:
  """Distribution of subjects of one domain."""
  skin_tone: tuple[float, float]  # Beta(a, b) over light (0) .. dark (1).
  skin_hue: float = 0.0  # > 0 yellower, < 0 redder (mean; jittered).
  head_width: tuple[float, float] = (0.70, 0.82)
  glasses_rate: float = 0.2
  long_hair_rate: float = 0.3
  bald_rate: float = 0.05
  blond_rate: float = 0.1


@dataclasses.dataclass(frozen=True)
class Subject:
  """Identity parameters: shape and appearance that stay fixed per subject."""
  axes: np.ndarray  # cranium semi-axes (x, y, z)
  jaw_width: float
  nose_scale: float
  eye_spacing: float
  mouth_width: float
  skin: np.ndarray  # albedo RGB
  lip: np.ndarray
  iris: np.ndarray
  hair_color: np.ndarray
  hairline: tuple[float, float, float] | None  # front, side, back; None: bald
  glasses: np.ndarray | None  # frame RGB or None
  cloth: np.ndarray
  texture_phase: np.ndarray  # (4,) phases of the skin micro-texture


@dataclasses.dataclass(frozen=True)
class Pose:
  """Rigid head pose: angles in radians, translation in crop half-widths."""
  yaw: float = 0.0
  pitch: float = 0.0
  roll: float = 0.0
  tx: float = 0.0
  ty: float = 0.0
  scale: float = 1.0


@dataclasses.dataclass(frozen=True)
class Expression:
  """Per-frame expression: openness in [0, 1], gaze offsets in [-1, 1]."""
  mouth_open: float = 0.0
  brow_raise: float = 0.0
  eye_open: float = 1.0
  gaze: tuple[float, float] = (0.0, 0.0)


@dataclasses.dataclass(frozen=True)
class Light:
  """A directional light plus ambient term, in the world frame."""
  direction: np.ndarray  # unit vector towards the light
  color: np.ndarray  # RGB intensity of the directional light
  ambient: np.ndarray  # RGB intensity of the ambient term
  specular: float = 0.15


@dataclasses.dataclass(frozen=True)
class Render:
  """A rendered head: colours, exact labels and the z-buffer."""
  rgb: np.ndarray  # (H, W, 3) float32 linear colour, 0 where nothing is hit
  alpha: np.ndarray  # (H, W) bool: some surface (face, hair, body) is hit
  parsing: np.ndarray  # (H, W) uint8 class ids
  z: np.ndarray  # (H, W) float32 world z of the visible surface, 0 if none


def _skin_albedo(tone: float, hue: float) -> np.ndarray:
  """Skin colour along a light-to-dark palette, shifted in hue."""
  palette = np.array([[0.96, 0.80, 0.70], [0.84, 0.62, 0.47],
                      [0.62, 0.42, 0.29], [0.38, 0.25, 0.17]])
  pos = tone * (len(palette) - 1)
  i = min(int(pos), len(palette) - 2)
  rgb = palette[i] + (pos - i) * (palette[i + 1] - palette[i])
  return np.clip(rgb * np.array([1 + 0.04 * hue, 1 + 0.02 * hue,
                                 1 - 0.10 * hue]), 0, 1)


def sample_subject(rng: np.random.Generator, pop: Population) -> Subject:
  """Draws one subject's identity from a domain's population."""
  tone = rng.beta(*pop.skin_tone)
  skin = _skin_albedo(tone, pop.skin_hue + rng.normal(0, 0.4))
  if rng.random() < pop.blond_rate:
    hair = np.array([0.75, 0.6, 0.35]) * rng.uniform(0.8, 1.1)
  else:
    hair = np.array([0.2, 0.13, 0.08]) * rng.uniform(0.3, 1.6)
  hairline = None
  if rng.random() >= pop.bald_rate:
    long_hair = rng.random() < pop.long_hair_rate
    side = rng.uniform(-0.6, -0.3) if long_hair else rng.uniform(0.2, 0.4)
    hairline = (rng.uniform(0.42, 0.62), side, rng.uniform(-0.95, -0.4))
  glasses = None
  if rng.random() < pop.glasses_rate:
    glasses = rng.choice([[0.05, 0.05, 0.05], [0.35, 0.2, 0.1],
                          [0.6, 0.6, 0.65]]) * 1.0
  width = rng.uniform(*pop.head_width)
  return Subject(
      axes=np.array([width, 0.95, rng.uniform(0.84, 0.95)]),
      jaw_width=rng.uniform(0.76, 0.92),
      nose_scale=rng.uniform(0.85, 1.15),
      eye_spacing=rng.uniform(0.9, 1.08),
      mouth_width=rng.uniform(0.85, 1.15),
      skin=skin,
      lip=np.clip(skin * np.array([0.95, 0.62, 0.62]) + [0.05, 0, 0], 0, 1),
      iris=rng.choice([[0.25, 0.15, 0.08], [0.3, 0.45, 0.6],
                       [0.35, 0.4, 0.2]]) * rng.uniform(0.6, 1.0),
      hair_color=hair,
      hairline=hairline,
      glasses=glasses,
      cloth=rng.uniform(0.1, 0.9, size=3),
      texture_phase=rng.uniform(0, 2 * np.pi, size=4),
  )


def rotation(pose: Pose) -> np.ndarray:
  """The head-to-world rotation R = Rz(roll) Rx(pitch) Ry(yaw)."""
  cy, sy = np.cos(pose.yaw), np.sin(pose.yaw)
  cp, sp = np.cos(pose.pitch), np.sin(pose.pitch)
  cr, sr = np.cos(pose.roll), np.sin(pose.roll)
  ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
  rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
  rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
  return rz @ rx @ ry


def _rows_dot(v: np.ndarray, m: np.ndarray) -> np.ndarray:
  """v @ m for many short rows, without BLAS (whose threads cost more here)."""
  return np.einsum('ij,jk->ik', v, m)


def _quadric_hits(o, d, center, inv_axes):
  """Near and far ray parameters of an axis-aligned quadric (_FAR if missed).

  inv_axes holds 1/semi-axis; a zero entry makes the surface a cylinder
  along that axis.
  """
  oc = (o - center) * inv_axes
  dd = d * inv_axes
  a = dd @ dd
  b = 2.0 * np.einsum('ij,j->i', oc, dd)
  c = np.einsum('ij,ij->i', oc, oc) - 1.0
  disc = b * b - 4 * a * c
  sq = np.sqrt(np.maximum(disc, 0.0))
  hit = disc > 0
  near = np.where(hit, (-b - sq) / (2 * a), np.float32(_FAR))
  far = np.where(hit, (-b + sq) / (2 * a), np.float32(_FAR))
  return near, far


def _hairline_ok(p, hairline):
  """Whether points of the hair shell lie inside the hair-covered area."""
  front, side, back = hairline
  zr = p[:, 2] / 0.9
  line = np.where(zr >= 0,
                  front + (side - front) * np.clip(1 - zr / 0.55, 0, 1),
                  side + (back - side) * np.clip(-zr, 0, 1))
  # A wavy fringe, so the hairline is not a perfect ellipse.
  line = line + 0.03 * np.sin(11.0 * p[:, 0] + 3.0 * p[:, 2])
  return p[:, 1] > line


def _geometry(s: Subject):
  """Centres and inverse semi-axes of the quadric surfaces, by kind."""
  ax, _, az = s.axes
  centers = np.array([
      [0, 0.08, -0.02], [0, -0.3, -0.02], [0, -0.12, az * 0.93 - 0.02],
      [ax - 0.01, -0.02, -0.06], [-(ax - 0.01), -0.02, -0.06],
      [0, 0.12, -0.04], [0, 0, -0.15], [0, -2.05, -0.2]])
  axes = np.array([
      s.axes, [ax * s.jaw_width, 0.72, az * 0.9],
      np.array([0.12, 0.23, 0.2]) * s.nose_scale,
      [0.08, 0.2, 0.13], [0.08, 0.2, 0.13],
      [ax * 1.12, 1.0, az * 1.08], [0.42, np.inf, 0.4], [1.7, 0.8, 0.9]])
  return centers.astype(np.float32), (1.0 / axes).astype(np.float32)


def _cast(o, d, s: Subject):
  """Ray parameter and surface kind of the nearest hit of every ray."""
  centers, inv_axes = _geometry(s)
  n = len(o)
  ts = np.full((9, n), _FAR, np.float32)
  for kind in (_CRANIUM, _JAW, _NOSE, _L_EAR, _R_EAR, _BODY):
    ts[kind] = _quadric_hits(o, d, centers[kind], inv_axes[kind])[0]
  near, far = _quadric_hits(o, d, centers[_NECK], inv_axes[_NECK])
  y = o[:, 1] + near * d[1]
  ts[_NECK] = np.where((y < -0.45) & (y > -3), near, _FAR)
  if s.hairline is not None:
    near, far = _quadric_hits(o, d, centers[_HAIR], inv_axes[_HAIR])
    ok_near = _hairline_ok(o + near[:, None] * d, s.hairline) & (near < _FAR)
    ok_far = _hairline_ok(o + far[:, None] * d, s.hairline) & (far < _FAR)
    ts[_HAIR] = np.where(ok_near, near, np.where(ok_far, far, _FAR))
  if s.glasses is not None and abs(d[2]) > 1e-6:
    t = (s.axes[2] + 0.08 - o[:, 2]) / d[2]
    ts[_GLASSES] = np.where(_glasses_frame(o + t[:, None] * d, s), t, _FAR)
  kind = np.argmin(ts, axis=0)
  t = ts[kind, np.arange(n)]
  return t, kind, centers, inv_axes


def _ellipse(x, y, cx, cy, rx, ry):
  """Normalised squared radius of points w.r.t. an ellipse (< 1 inside)."""
  return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2


def _glasses_frame(p, s: Subject):
  """Points of the glasses plane that belong to the frame (rims, bridge)."""
  x, y = p[:, 0], p[:, 1]
  ex = 0.29 * s.eye_spacing
  frame = np.zeros(len(p), bool)
  for cx in (ex, -ex):
    r = _ellipse(x, y, cx, 0.2, 0.19, 0.13)
    frame |= (r < 1.0) & (r > 0.70)
  return frame | ((np.abs(x) < ex - 0.17) & (np.abs(y - 0.25) < 0.02))


def _face_regions(p, s: Subject, e: Expression):
  """Class ids and albedos of the regions painted on the skin surface."""
  x, y, z = p[:, 0], p[:, 1], p[:, 2]
  front = z > 0.35 * s.axes[2]
  label = np.ones(len(p), np.uint8)
  albedo = np.broadcast_to(s.skin, p.shape).copy()
  # Micro-texture of skin (pores, blotches): live skin has fine detail too.
  ph = s.texture_phase
  tex = (np.sin(53 * x + ph[0]) * np.sin(47 * y + ph[1])
         + 0.6 * np.sin(23 * x - 29 * y + ph[2]))
  albedo *= (1 + 0.012 * tex)[:, None]
  ex = 0.29 * s.eye_spacing
  eye_h = 0.06 * max(e.eye_open, 0.08)
  brow_y = 0.37 + 0.06 * e.brow_raise
  brow = np.broadcast_to(s.hair_color * 0.8, p.shape)
  for side, cx in ((1, ex), (-1, -ex)):
    # The eye socket is a little darker than the cheek.
    socket = _ellipse(x, y, cx, 0.19, 0.2, 0.12) < 1
    albedo[socket & front] *= 0.9
    bx = (x - cx) / 0.17
    in_brow = (np.abs(bx) < 1) & (np.abs(y - brow_y + 0.035 * bx * bx) < 0.032)
    in_brow &= front
    label[in_brow] = 2 if side > 0 else 3
    albedo[in_brow] = brow[in_brow]
    in_eye = (_ellipse(x, y, cx, 0.2, 0.13, eye_h) < 1) & front
    label[in_eye] = 4 if side > 0 else 5
    ix, iy = cx + 0.04 * e.gaze[0], 0.2 + 0.015 * e.gaze[1]
    r2 = (x - ix) ** 2 + (y - iy) ** 2
    eye = np.where((r2 < 0.05 ** 2)[:, None], s.iris, [0.92, 0.9, 0.86])
    eye = np.where((r2 < 0.022 ** 2)[:, None], 0.04, eye)
    albedo[in_eye] = eye[in_eye]
  if s.glasses is not None:
    temple = (np.abs(y - 0.22) < 0.022) & (np.abs(x) > 0.45) & (z > -0.05)
    temple &= z < 0.7 * s.axes[2]
    label[temple] = 6
    albedo[temple] = s.glasses
  _paint_mouth(x, y, front, s, e, label, albedo)
  return label, albedo


def _paint_mouth(x, y, front, s, e, label, albedo):
  """Paints lips and the open mouth into label/albedo in place."""
  w = 0.24 * s.mouth_width
  half = 0.5 * 0.1 * e.mouth_open
  u = np.clip(1 - (x / w) ** 2, 0, None)
  thin = np.sqrt(u)  # lips thin out towards the corners
  rel = y + 0.56
  inside = (u > 0) & front
  mouth = inside & (np.abs(rel) < half * thin + 0.004)
  upper = inside & (rel >= half * thin) & (rel < half * thin + 0.045 * thin)
  lower = inside & (rel <= -half * thin) & (rel > -half * thin - 0.06 * thin)
  label[upper] = 11
  label[lower] = 12
  label[mouth] = 10
  albedo[upper | lower] = s.lip
  teeth = mouth & (rel > 0.3 * half)
  albedo[mouth] = [0.25, 0.06, 0.06]
  albedo[teeth] = [0.85, 0.82, 0.75]


def _normals(p, kind, centers, inv_axes):
  """Unit surface normals in the head frame; cranium and jaw are blended."""
  idx = np.minimum(kind, _BODY)
  normal = (p - centers[idx]) * inv_axes[idx] ** 2
  normal = np.where((kind == _GLASSES)[:, None], [0, 0, 1.0], normal)
  normal /= np.linalg.norm(normal, axis=1, keepdims=True) + 1e-9
  # Blend the two skin surfaces' normals near their seam so the union reads
  # as one smooth face instead of showing a crease along the jaw line.
  skin = np.isin(kind, _SKIN_KINDS)
  n = []
  f = []
  for k in _SKIN_KINDS:
    q = (p[skin] - centers[k]) * inv_axes[k]
    f.append(np.einsum('ij,ij->i', q, q) - 1)
    nk = q * inv_axes[k]
    n.append(nk / (np.linalg.norm(nk, axis=1, keepdims=True) + 1e-9))
  w = np.exp(-6.0 * np.maximum(np.stack(f), 0))[..., None]
  blend = (w * np.stack(n)).sum(0)
  normal[skin] = blend / (np.linalg.norm(blend, axis=1, keepdims=True) + 1e-9)
  return normal


def render(s: Subject, pose: Pose, expr: Expression, light: Light,
           size: int, view: float = 1.3) -> Render:
  """Renders a head into a size x size crop spanning +-view world units."""
  coords = ((np.arange(size) + 0.5) / size * 2 - 1) * view
  xw, yw = np.meshgrid(coords, -coords)
  rot = rotation(pose)
  o_world = np.stack([xw.ravel() - pose.tx * view, yw.ravel() - pose.ty * view,
                      np.full(size * size, 10.0)], -1)
  # Row vectors: v @ R applies R^T, i.e. world -> head-local.
  # float32 halves the cost; z differences of interest are >> 1e-5.
  o = _rows_dot(o_world / pose.scale, rot).astype(np.float32)
  d = (np.array([0.0, 0.0, -1.0]) @ rot).astype(np.float32)
  t, kind, centers, inv_axes = _cast(o, d, s)
  # Shade only the rays that hit something.
  idx = np.flatnonzero(t < _FAR / 2)
  t, kind = t[idx], kind[idx]
  p = o[idx] + t[:, None] * d
  normal = _normals(p, kind, centers, inv_axes)
  skin = np.isin(kind, _SKIN_KINDS)
  label = np.zeros(len(idx), np.uint8)
  albedo = np.empty((len(idx), 3))
  label[skin], albedo[skin] = _face_regions(p[skin], s, expr)
  for k, cls in ((_NOSE, 9), (_L_EAR, 7), (_R_EAR, 8), (_GLASSES, 6)):
    label[kind == k] = cls
  for k, color in ((_NOSE, s.skin), (_L_EAR, s.skin), (_R_EAR, s.skin),
                   (_HAIR, s.hair_color), (_NECK, s.skin * 0.85),
                   (_BODY, s.cloth), (_GLASSES, s.glasses)):
    if color is not None:
      albedo[kind == k] = color
  # The nostrils: the underside of the nose is dark.
  albedo[(kind == _NOSE) & (normal[:, 1] < -0.55)] *= 0.45
  shape = (size, size)
  rgb = np.zeros((size * size, 3), np.float32)
  rgb[idx] = _shade(_rows_dot(normal, rot.T), albedo, light, kind)
  parsing = np.zeros(size * size, np.uint8)
  parsing[idx] = label
  z = np.zeros(size * size, np.float32)
  z[idx] = 10.0 - t * pose.scale
  alpha = np.zeros(size * size, bool)
  alpha[idx] = True
  return Render(rgb=rgb.reshape(shape + (3,)), alpha=alpha.reshape(shape),
                parsing=parsing.reshape(shape), z=z.reshape(shape))


def _shade(normal_w, albedo, light: Light, kind):
  """Lambertian shading with a small Blinn-Phong highlight on skin."""
  lam = np.clip(np.einsum('ij,j->i', normal_w, light.direction), 0, None)
  half = light.direction + np.array([0.0, 0.0, 1.0])
  half /= np.linalg.norm(half)
  spec = np.clip(np.einsum('ij,j->i', normal_w, half), 0,
                 None) ** 24 * light.specular
  spec = np.where(kind == _HAIR, spec * 0.4, spec)
  rgb = albedo * (light.ambient + lam[:, None] * light.color)
  return rgb + spec[:, None] * light.color


def depth_map(r: Render, out_size: int) -> np.ndarray:
  """Face depth in [0, 1] (nearest = 1, background 0), area-averaged."""
  face = r.parsing > 0
  depth = np.zeros(r.z.shape, np.float32)
  if face.any():
    zf = r.z[face]
    lo, hi = zf.min(), zf.max()
    depth[face] = (zf - lo) / max(hi - lo, 1e-6)
  k = r.z.shape[0] // out_size
  return depth.reshape(out_size, k, out_size, k).mean(axis=(1, 3))


def downsample_labels(parsing: np.ndarray, out_size: int) -> np.ndarray:
  """Majority vote of class ids over k x k blocks."""
  k = parsing.shape[0] // out_size
  onehot = parsing[..., None] == np.arange(NUM_CLASSES, dtype=np.uint8)
  votes = onehot.reshape(out_size, k, out_size, k, NUM_CLASSES).sum((1, 3))
  return np.argmax(votes, axis=-1).astype(np.uint8)
