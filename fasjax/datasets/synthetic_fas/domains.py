"""Per-domain parameters of `synthetic_fas` and the scene/camera samplers.

Each domain stands in for one public benchmark and differs from the others the
way that one does:

* `o` (OULU-NPU): high-resolution phone cameras, three office sessions, a
  light-skinned population, two printers and two displays, media larger than
  the crop (no edges), many samples.
* `c` (CASIA-FASD): low / normal / high quality cameras, warm indoor light,
  cluttered darker backgrounds, an East-Asian population, warped prints, cut
  photos (eye and mouth holes) and an iPad replay.
* `i` (Replay-Attack): a low-resolution noisy webcam, `controlled` (uniform
  light, plain wall) and `adverse` (side daylight, clutter) sessions, prints
  and two phone / tablet displays, held by hand or fixed on a support.
* `m` (MSU-MFSD): laptop and Android cameras, cool fluorescent light in one
  white lab, a diverse population, vivid large prints and two displays, and
  fewer samples.
"""

import dataclasses
import io

import numpy as np
from PIL import Image

from fasjax.datasets.synthetic_fas import attacks
from fasjax.datasets.synthetic_fas import render as render_lib


@dataclasses.dataclass(frozen=True)
class Camera:
  """A capture device: resolution, noise, colour and compression."""
  resolution: tuple[int, int]  # pixels across the face crop (min, max)
  noise: float  # read noise standard deviation
  shot: float  # shot noise factor (times sqrt(signal))
  gains: tuple[float, float, float]  # white balance
  jpeg: tuple[int, int]  # quality range
  contrast: float = 1.0  # tone curve exponent (> 1 darker midtones)
  auto_exposure: float = 0.6  # how far exposure pulls brightness to target
  target: float = 0.45  # mean brightness auto-exposure aims for


@dataclasses.dataclass(frozen=True)
class Session:
  """Recording conditions: light and background."""
  azimuth: tuple[float, float]  # light direction, degrees (+ = image right)
  elevation: tuple[float, float]  # degrees above the horizon
  color: tuple[float, float, float]
  intensity: tuple[float, float]
  ambient: tuple[float, float]
  backgrounds: tuple[str, ...]  # texture kinds, see `background`
  palette: tuple[tuple[float, float, float], ...]


@dataclasses.dataclass(frozen=True)
class MediumRange:
  """Distribution of a medium's placement in front of the camera."""
  scale: tuple[float, float] = (0.95, 1.05)
  angle_sd: float = 0.05
  shift_sd: float = 0.03
  tilt_sd: float = 0.05
  bend: tuple[float, float] = (0.0, 0.0)  # |curvature| range, random sign
  extent: tuple[float, float] = (1.8, 2.2)


@dataclasses.dataclass(frozen=True)
class Domain:
  """Everything that makes one domain look like itself."""
  name: str
  subjects: dict[str, int]  # subjects per split
  spoofs_per_subject: int
  spoof_cycle: tuple[str, ...]  # attack types, cycled over spoof videos
  population: render_lib.Population
  sessions: tuple[Session, ...]
  cameras: tuple[Camera, ...]
  printers: tuple[attacks.PrintStyle, ...]
  screens: tuple[attacks.ScreenStyle, ...]
  print_pose: MediumRange
  screen_pose: MediumRange
  hand_rate: float = 0.5  # share of attacks held by hand (vs a support)
  photo_light: tuple[float, float] = (0.35, 0.75)  # ambient, direct
  frames: int = 4


def _rgb(*v: float) -> np.ndarray:
  """An RGB triple as an array."""
  return np.array(v, np.float64)


_OFFICE = ((0.78, 0.76, 0.72), (0.70, 0.72, 0.74), (0.82, 0.78, 0.68))
_DARK_ROOM = ((0.35, 0.3, 0.26), (0.28, 0.3, 0.33), (0.45, 0.38, 0.3),
              (0.2, 0.22, 0.2))
_WHITE_LAB = ((0.88, 0.88, 0.9), (0.82, 0.84, 0.86))

DOMAINS = {
    'o': Domain(
        name='o', subjects={'train': 12, 'dev': 4, 'test': 8},
        spoofs_per_subject=3, spoof_cycle=('print', 'replay'),
        population=render_lib.Population(skin_tone=(1.3, 6.0), skin_hue=-0.3,
                                         glasses_rate=0.2, blond_rate=0.3),
        sessions=(
            Session((-30, 30), (40, 70), (1.0, 1.0, 0.97), (0.6, 0.8),
                    (0.3, 0.4), ('plain', 'wall'), _OFFICE),
            Session((-20, 20), (50, 80), (1.0, 0.97, 0.92), (0.45, 0.6),
                    (0.25, 0.32), ('wall',), _OFFICE),
            Session((50, 80), (0, 30), (0.95, 1.0, 1.05), (0.7, 0.9),
                    (0.2, 0.3), ('window', 'plain'), _OFFICE)),
        cameras=(Camera((96, 128), 0.01, 0.01, (1.0, 1.0, 1.0), (85, 95)),
                 Camera((56, 72), 0.03, 0.03, (1.05, 1.0, 0.92), (70, 85),
                        1.15),
                 Camera((72, 96), 0.02, 0.015, (0.96, 1.0, 1.05), (80, 92),
                        0.9)),
        printers=(
            attacks.PrintStyle(paper=_rgb(1.0, 0.97, 0.9), black=0.1,
                               saturation=0.75, period=0.04, sharpness=5.0,
                               texture=0.6),
            attacks.PrintStyle(paper=_rgb(0.98, 0.96, 0.93), black=0.03,
                               saturation=1.15, gamma=1.15, screen='dither',
                               period=0.02, sharpness=8.0, gloss=0.25,
                               texture=0.5)),
        screens=(
            attacks.ScreenStyle(pixels=96, fill=0.75, gamma=0.9,
                                white=_rgb(0.95, 1.0, 1.1), brightness=0.8,
                                glare=0.15, moire=0.12),
            attacks.ScreenStyle(pixels=128, fill=0.85, gamma=1.15,
                                saturation=1.1, white=_rgb(1.0, 1.0, 1.0),
                                brightness=1.1, glare=0.1, moire=0.1)),
        print_pose=MediumRange(extent=(1.8, 2.5)),
        screen_pose=MediumRange(extent=(1.6, 2.0)),
        hand_rate=0.5,
    ),
    'c': Domain(
        name='c', subjects={'train': 12, 'dev': 4, 'test': 8},
        spoofs_per_subject=3, spoof_cycle=('print', 'cut', 'replay'),
        population=render_lib.Population(skin_tone=(2.0, 4.0), skin_hue=1.0,
                                         glasses_rate=0.3, blond_rate=0.0,
                                         long_hair_rate=0.4),
        sessions=(
            Session((-50, 50), (20, 60), (1.0, 0.85, 0.65), (0.55, 0.8),
                    (0.25, 0.35), ('clutter', 'curtain'), _DARK_ROOM),),
        cameras=(Camera((32, 40), 0.03, 0.03, (1.05, 1.0, 0.9), (55, 75), 1.1),
                 Camera((48, 64), 0.02, 0.02, (1.0, 1.0, 0.95), (70, 85)),
                 Camera((112, 128), 0.01, 0.01, (0.98, 1.0, 1.0), (88, 95))),
        printers=(
            attacks.PrintStyle(paper=_rgb(1.0, 0.95, 0.85), black=0.12,
                               saturation=0.95, gamma=1.1, period=0.05,
                               sharpness=4.0, gloss=0.15, texture=0.3),),
        screens=(
            attacks.ScreenStyle(pixels=112, fill=0.8, gamma=1.2,
                                white=_rgb(0.92, 0.97, 1.1), brightness=0.7,
                                glare=0.25, moire=0.2),),
        print_pose=MediumRange(scale=(0.9, 1.05), bend=(0.3, 0.8),
                               extent=(1.3, 1.8), tilt_sd=0.08),
        screen_pose=MediumRange(extent=(1.3, 1.6)),
        hand_rate=1.0,
    ),
    'i': Domain(
        name='i', subjects={'train': 12, 'dev': 4, 'test': 8},
        spoofs_per_subject=3, spoof_cycle=('print', 'replay'),
        population=render_lib.Population(skin_tone=(2.0, 4.0),
                                         glasses_rate=0.35),
        sessions=(
            Session((-15, 15), (50, 80), (1.0, 1.0, 1.0), (0.55, 0.7),
                    (0.35, 0.45), ('plain',), ((0.62, 0.68, 0.75),
                                                (0.7, 0.7, 0.68))),
            Session((60, 90), (5, 30), (1.0, 0.95, 0.85), (0.8, 1.0),
                    (0.12, 0.2), ('clutter', 'window'), _DARK_ROOM + _OFFICE)),
        cameras=(Camera((48, 64), 0.03, 0.025, (1.0, 1.0, 1.05), (65, 85)),),
        printers=(
            attacks.PrintStyle(paper=_rgb(0.97, 0.97, 0.97), black=0.05,
                               saturation=1.1, gamma=1.05, period=0.03,
                               sharpness=6.0, texture=0.4),),
        screens=(  # a phone (few, coarse pixels) and a tablet
            attacks.ScreenStyle(pixels=64, fill=0.7, gamma=1.1,
                                saturation=1.3, white=_rgb(0.9, 1.0, 1.15),
                                brightness=1.05, glare=0.35, moire=0.12),
            attacks.ScreenStyle(pixels=112, fill=0.8, gamma=1.1,
                                saturation=1.25, white=_rgb(0.95, 1.0, 1.05),
                                brightness=0.9, glare=0.2, moire=0.07)),
        print_pose=MediumRange(scale=(0.9, 1.05), extent=(1.15, 1.6)),
        screen_pose=MediumRange(scale=(0.9, 1.05), extent=(1.1, 1.4)),
        hand_rate=0.5,
    ),
    'm': Domain(
        name='m', subjects={'train': 12, 'dev': 4, 'test': 8},
        spoofs_per_subject=2, spoof_cycle=('print', 'replay'),
        population=render_lib.Population(skin_tone=(1.5, 1.5),
                                         glasses_rate=0.25),
        sessions=(
            Session((-10, 10), (60, 85), (0.9, 0.97, 1.08), (0.35, 0.5),
                    (0.42, 0.52), ('plain', 'wall'), _WHITE_LAB),),
        cameras=(Camera((56, 72), 0.02, 0.02, (0.95, 1.0, 1.06), (75, 90)),
                 Camera((72, 96), 0.015, 0.015, (1.02, 1.0, 0.98), (80, 92))),
        printers=(
            attacks.PrintStyle(paper=_rgb(0.96, 0.98, 1.0), black=0.04,
                               saturation=1.15, gamma=1.1, period=0.035,
                               sharpness=5.0, texture=0.45),),
        screens=(
            attacks.ScreenStyle(pixels=128, fill=0.85, gamma=1.1,
                                white=_rgb(1.0, 1.0, 1.05), brightness=1.1,
                                glare=0.12, moire=0.06),
            attacks.ScreenStyle(pixels=88, fill=0.8, gamma=1.05,
                                white=_rgb(0.97, 1.0, 1.08), brightness=1.05,
                                glare=0.2, moire=0.08)),
        print_pose=MediumRange(extent=(1.6, 2.2)),
        screen_pose=MediumRange(extent=(1.3, 1.7)),
        hand_rate=1.0,
        photo_light=(0.25, 0.85),
    ),
}


def sample_light(rng: np.random.Generator, s: Session) -> render_lib.Light:
  """Draws a directional + ambient light from a session."""
  az = np.deg2rad(rng.uniform(*s.azimuth))
  el = np.deg2rad(rng.uniform(*s.elevation))
  direction = np.array([np.sin(az) * np.cos(el), np.sin(el) * 0.6,
                        np.cos(az) * np.cos(el)])
  direction /= np.linalg.norm(direction)
  color = np.array(s.color) * (1 + rng.normal(0, 0.03, 3))
  return render_lib.Light(direction=direction,
                          color=color * rng.uniform(*s.intensity),
                          ambient=color * rng.uniform(*s.ambient))


def photo_light(rng: np.random.Generator, d: Domain) -> render_lib.Light:
  """The soft frontal light under which an attack's photo/video was taken."""
  direction = np.array([rng.normal(0, 0.3), rng.uniform(0.2, 0.5), 1.0])
  white = np.ones(3) * (1 + rng.normal(0, 0.03, 3))
  return render_lib.Light(direction=direction / np.linalg.norm(direction),
                          color=white * d.photo_light[1],
                          ambient=white * d.photo_light[0], specular=0.08)


def resize(img: np.ndarray, n_out: int) -> np.ndarray:
  """Resizes a square (n, n, C) float image to (n_out, n_out, C), antialiased.

  PIL's float resampling is used rather than matrix products: small BLAS
  calls spawn threads that make the build several times slower on a busy
  2-core machine.
  """
  chans = [np.asarray(Image.fromarray(np.ascontiguousarray(
      img[..., c], dtype=np.float32), mode='F').resize(
          (n_out, n_out), Image.Resampling.BILINEAR))
           for c in range(img.shape[-1])]
  return np.stack(chans, axis=-1)


def _smooth_noise(rng, size, cells):
  """Low-frequency noise in [-1, 1]: a random grid, bilinearly upsampled."""
  grid = rng.uniform(-1, 1, (cells, cells, 1))
  return resize(grid, size)[..., 0]


def background(rng: np.random.Generator, s: Session, size: int) -> np.ndarray:
  """A (size, size, 3) scene background of one of the session's kinds."""
  kind = s.backgrounds[rng.integers(len(s.backgrounds))]
  base = np.array(s.palette[rng.integers(len(s.palette))])
  base = base * rng.uniform(0.85, 1.1)
  y, x = np.mgrid[0:size, 0:size] / size - 0.5
  g = rng.normal(0, 0.15, 2)
  img = base * (1 + g[0] * x + g[1] * y)[..., None]
  if kind == 'wall':
    img *= (1 + 0.12 * _smooth_noise(rng, size, 6))[..., None]
  elif kind == 'curtain':
    freq, phase = rng.uniform(4, 9), rng.uniform(0, 2 * np.pi)
    img *= (1 + 0.2 * np.sin(2 * np.pi * freq * x + phase))[..., None]
  elif kind == 'clutter':
    for _ in range(10):
      x0, y0 = rng.uniform(-0.6, 0.5, 2)
      w, h = rng.uniform(0.05, 0.4, 2)
      box = (x >= x0) & (x < x0 + w) & (y >= y0) & (y < y0 + h)
      img[box] = rng.uniform(0.1, 0.8, 3)
    img *= (1 + 0.08 * _smooth_noise(rng, size, 12))[..., None]
  elif kind == 'window':
    edge = rng.uniform(0.1, 0.35) * rng.choice([-1, 1])
    bright = (x > edge) if edge > 0 else (x < edge)
    img[bright] = np.array([0.95, 0.97, 1.0]) * rng.uniform(0.9, 1.1)
  return np.clip(img, 0, 1).astype(np.float32)


def lit(albedo: np.ndarray, light: render_lib.Light) -> np.ndarray:
  """A background wall facing the camera, lit by the scene's light."""
  facing = max(float(light.direction[2]), 0.0)
  return (albedo * (light.ambient + facing * light.color)).astype(np.float32)


def sample_medium(rng: np.random.Generator,
                  r: MediumRange) -> attacks.MediumPose:
  """Draws a medium's base placement."""
  return attacks.MediumPose(
      scale=rng.uniform(*r.scale), angle=rng.normal(0, r.angle_sd),
      shift=tuple(rng.normal(0, r.shift_sd, 2)),
      tilt=tuple(rng.normal(0, r.tilt_sd, 2)),
      bend=rng.uniform(*r.bend) * rng.choice([-1, 1]),
      extent=(rng.uniform(*r.extent), rng.uniform(*r.extent)))


def jitter_medium(rng: np.random.Generator, mp: attacks.MediumPose,
                  amount: float) -> attacks.MediumPose:
  """The medium's placement in one frame: the base plus hand/support shake."""
  return dataclasses.replace(
      mp, angle=mp.angle + rng.normal(0, amount),
      shift=tuple(np.array(mp.shift) + rng.normal(0, amount, 2)),
      scale=mp.scale * (1 + rng.normal(0, amount * 0.5)))


@dataclasses.dataclass(frozen=True)
class Exposure:
  """One video's camera settings, drawn from a `Camera`."""
  camera: Camera
  resolution: int
  quality: int
  gains: np.ndarray


def sample_exposure(rng: np.random.Generator, cam: Camera) -> Exposure:
  """Draws per-video resolution, JPEG quality and white balance."""
  return Exposure(cam, int(rng.integers(cam.resolution[0],
                                        cam.resolution[1] + 1)),
                  int(rng.integers(cam.jpeg[0], cam.jpeg[1] + 1)),
                  np.array(cam.gains) * (1 + rng.normal(0, 0.02, 3)))


def capture(rng: np.random.Generator, e: Exposure, rgb: np.ndarray,
            out_size: int) -> np.ndarray:
  """Camera pipeline: white balance, sensor sampling, noise, JPEG, rescale."""
  x = np.clip(resize(rgb * e.gains, e.resolution), 0, None)
  # Auto-exposure: phones and webcams meter the whole frame.
  level = x.mean() + 1e-3
  x = x * (e.camera.target / level) ** e.camera.auto_exposure
  x = x + rng.normal(0, 1, x.shape) * (e.camera.noise
                                       + e.camera.shot * np.sqrt(x))
  x = np.clip(x, 0, 1) ** e.camera.contrast
  img = Image.fromarray(np.round(x * 255).astype(np.uint8))
  buf = io.BytesIO()
  img.save(buf, format='JPEG', quality=e.quality)
  x = np.asarray(Image.open(buf).convert('RGB'), np.float32) / 255.0
  x = resize(x, out_size)
  return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)
