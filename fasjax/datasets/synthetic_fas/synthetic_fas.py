"""`synthetic_fas`: a procedural four-domain face anti-spoofing benchmark.

One config per domain (`o`, `c`, `i`, `m`, standing in for OULU-NPU,
CASIA-FASD, Replay-Attack and MSU-MFSD; see `domains.py`), with miniatures
`<domain>_smoke` for tests and `<domain>_large` at the real releases' video
counts for studies (`LARGE`). Every example is
one frame of a short video of one subject, one attack type and one session.
Live frames are 3-D renders with exact parsing and depth (`render.py`); spoof
frames re-capture a render shown on paper or a screen (`attacks.py`), with
parsing warped along and zero depth. All randomness is seeded from (domain,
split, video) or (domain, subject), never from global state, so every build
writes the same bytes. Nothing is downloaded.

Features follow the builder contract of the project at IMAGE_SIZE:
`image` (64, 64, 3) uint8, `depth` (32, 32) float32 in [0, 1], `parsing`
(64, 64) uint8, `label` (1 live, 0 spoof), `video_id` ('train/v0007', unique
within a domain), `attack_type` ('live', 'print', 'replay', 'cut'),
`subject` (unique within a domain; splits have disjoint subjects) and
`frame_index`.
"""

from collections.abc import Iterator
import dataclasses
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from fasjax.datasets import features

from fasjax.datasets.synthetic_fas import attacks
from fasjax.datasets.synthetic_fas import domains
from fasjax.datasets.synthetic_fas import render as render_lib

IMAGE_SIZE = 64
DEPTH_SIZE = features.DEPTH_SIZE
WORK_SIZE = 2 * IMAGE_SIZE  # render resolution before the camera
PHOTO_SIZE = 128  # pixels across a printed photo's content
SPLITS = ('train', 'dev', 'test')
ATTACK_TYPES = ('live', 'print', 'replay', 'cut')
_DOMAIN_KEYS = {'o': 11, 'c': 12, 'i': 13, 'm': 14}
_SPLIT_KEYS = {'train': 1, 'dev': 2, 'test': 3}


@dataclasses.dataclass(frozen=True)
class Video:
  """One planned video: who, what and where in the split."""
  split: str
  index: int  # unique within the domain
  subject: int  # unique within the domain
  attack: str


# Subjects per split of the `<domain>_smoke` miniatures, used by tests and the
# `smoke` run configs: the same generator, a few videos per split.
SMOKE_SUBJECTS = {'train': 2, 'dev': 1, 'test': 1}


@dataclasses.dataclass(frozen=True)
class Scale:
  """Size of a `<domain>_large` config: subjects, videos each, frames each."""
  subjects: dict[str, int]
  lives: int  # live videos per subject
  spoofs: int  # spoof videos per subject
  frames: int  # frames per video

  def videos(self) -> tuple[int, int]:
    """(live, spoof) videos over all splits."""
    n = sum(self.subjects.values())
    return n * self.lives, n * self.spoofs


# The `<domain>_large` configs: live/spoof videos of the real releases' order
# (OULU-NPU 720/2880, CASIA-FASD 150/450, Replay-Attack 140/700, MSU-MFSD
# 70/210); OULU-NPU at a third of its videos. Subjects per split follow the
# releases (a dev split is cut from train/test where a release has none).
LARGE = {
    'o': Scale({'train': 20, 'dev': 15, 'test': 25}, lives=4, spoofs=16,
               frames=8),  # 240/960
    'c': Scale({'train': 20, 'dev': 6, 'test': 24}, lives=3, spoofs=9,
               frames=8),  # 150/450
    'i': Scale({'train': 10, 'dev': 10, 'test': 15}, lives=4, spoofs=20,
               frames=8),  # 140/700
    'm': Scale({'train': 15, 'dev': 5, 'test': 15}, lives=2, spoofs=6,
               frames=8),  # 70/210
}
# Appended to every video's seed in the large configs: their videos are new
# draws, not copies of the default configs' videos with the same index.
_LARGE_STREAM = 1


def plan(domain: str, subjects: dict[str, int] | None = None,
         lives: int = 1, spoofs: int | None = None) -> list[Video]:
  """All videos of a domain: per subject its live videos then its spoofs."""
  d = domains.DOMAINS[domain]
  subjects = subjects or d.subjects
  spoofs = d.spoofs_per_subject if spoofs is None else spoofs
  videos = []
  subject = 0
  spoof = 0
  for split in SPLITS:
    for _ in range(subjects[split]):
      attacks_ = ['live'] * lives
      for _ in range(spoofs):
        attacks_.append(d.spoof_cycle[spoof % len(d.spoof_cycle)])
        spoof += 1
      for attack in attacks_:
        videos.append(Video(split, len(videos), subject, attack))
      subject += 1
  return videos


def _subject(domain: str, subject: int) -> render_lib.Subject:
  rng = np.random.default_rng([_DOMAIN_KEYS[domain], 0, subject])
  return render_lib.sample_subject(rng, domains.DOMAINS[domain].population)


def _motion(rng, n, base: render_lib.Pose, amount: float):
  """Per-frame poses: a small random walk around a base pose."""
  poses = []
  pose = base
  for _ in range(n):
    step = rng.normal(0, amount, 5)
    pose = dataclasses.replace(
        pose, yaw=pose.yaw + step[0], pitch=pose.pitch + step[1],
        roll=pose.roll + 0.5 * step[2], tx=pose.tx + 0.3 * step[3],
        ty=pose.ty + 0.3 * step[4])
    poses.append(pose)
  return poses


def _expressions(rng, n):
  """Per-frame expressions with occasional blinks."""
  mouth = rng.uniform(0, 0.5)
  brow = rng.uniform(0, 0.5)
  out = []
  for _ in range(n):
    mouth = float(np.clip(mouth + rng.normal(0, 0.15), 0, 1))
    blink = rng.random() < 0.15
    out.append(render_lib.Expression(
        mouth_open=mouth, brow_raise=brow,
        eye_open=0.15 if blink else rng.uniform(0.7, 1.0),
        gaze=tuple(rng.uniform(-1, 1, 2))))
  return out


def _base_pose(rng) -> render_lib.Pose:
  return render_lib.Pose(
      yaw=rng.normal(0, 0.15), pitch=rng.normal(0, 0.08),
      roll=rng.normal(0, 0.05), tx=rng.normal(0, 0.02),
      ty=rng.normal(0, 0.02), scale=rng.uniform(0.93, 1.05))


def _composite(r: render_lib.Render, bg: np.ndarray) -> np.ndarray:
  return np.where(r.alpha[..., None], r.rgb, bg)


def _recording(rng, d: domains.Domain, size: int):
  """Light and backdrop under which the attacker took the photo or video.

  Half are taken in one of the domain's own sessions, half under the
  domain's soft photo light in front of a session backdrop.
  """
  session = d.sessions[rng.integers(len(d.sessions))]
  if rng.random() < 0.5:
    light = domains.sample_light(rng, session)
  else:
    light = domains.photo_light(rng, d)
  return light, domains.lit(domains.background(rng, session, size), light)


def _content(subject, pose, expr, light, backdrop):
  """One photo or video frame of the subject, as the attacker recorded it."""
  r = render_lib.render(subject, pose, expr, light, backdrop.shape[0])
  return r, _composite(r, backdrop)


@dataclasses.dataclass(frozen=True)
class _Shot:
  """What every frame of one video shares: who, where, and the motion."""
  domain: domains.Domain
  subject: render_lib.Subject
  light: render_lib.Light
  background: np.ndarray
  poses: list[render_lib.Pose]
  expressions: list[render_lib.Expression]
  shake: float  # medium jitter per frame: hand-held or on a support


def _live_frames(rng, shot: _Shot):
  """Renders of the subject in the scene, with exact depth."""
  del rng
  for pose, expr in zip(shot.poses, shot.expressions):
    r = render_lib.render(shot.subject, pose, expr, shot.light, WORK_SIZE)
    yield (_composite(r, shot.background), r.parsing,
           render_lib.depth_map(r, DEPTH_SIZE))


def _replay_frames(rng, shot: _Shot):
  """A recorded video of the subject played on a display and re-captured."""
  d = shot.domain
  style = d.screens[rng.integers(len(d.screens))]
  style = dataclasses.replace(style,
                              glare_pos=tuple(rng.uniform(-0.8, 0.8, 2)))
  base = domains.sample_medium(rng, d.screen_pose)
  light, backdrop = _recording(rng, d, style.pixels)
  for pose, expr in zip(shot.poses, shot.expressions):
    r, frame = _content(shot.subject, pose, expr, light, backdrop)
    mp = domains.jitter_medium(rng, base, shot.shake)
    rgb, labels = attacks.screen_attack(frame, r.parsing, style, mp,
                                        shot.light, shot.background)
    yield rgb, labels, None


def _print_frames(rng, shot: _Shot, cut: bool):
  """A static printed photo re-captured; `cut` adds eye and mouth holes."""
  d = shot.domain
  style = d.printers[rng.integers(len(d.printers))]
  base = domains.sample_medium(rng, d.print_pose)
  if cut:  # a cut photo is held flat against the face
    base = dataclasses.replace(base, bend=base.bend * 0.3)
  photo_pose = dataclasses.replace(_base_pose(rng), yaw=rng.normal(0, 0.05))
  light, backdrop = _recording(rng, d, PHOTO_SIZE)
  r, photo = _content(shot.subject, photo_pose, render_lib.Expression(),
                      light, backdrop)
  holes = attacks.cut_holes(r.parsing) if cut else None
  behind_poses = _motion(rng, len(shot.poses), photo_pose, 0.01)
  for pose, expr in zip(behind_poses, shot.expressions):
    behind = None
    if cut:  # the attacker's real face, blinking behind the holes
      behind = render_lib.render(shot.subject, pose, expr, shot.light,
                                 PHOTO_SIZE)
    mp = domains.jitter_medium(rng, base, shot.shake)
    rgb, labels = attacks.print_attack(photo, r.parsing, style, mp,
                                       shot.light, shot.background,
                                       behind=behind, holes=holes)
    yield rgb, labels, None


def render_video(domain: str, video: Video, frames: int | None = None,
                 stream: int = 0) -> Iterator[dict[str, Any]]:
  """Yields the example dicts of one video's frames.

  `frames` overrides the domain's frames per video; a nonzero `stream` draws
  the video from another random stream (the large configs).
  """
  d = domains.DOMAINS[domain]
  frames = frames or d.frames
  rng = np.random.default_rng(
      [_DOMAIN_KEYS[domain], _SPLIT_KEYS[video.split], video.index]
      + ([stream] if stream else []))
  session = d.sessions[rng.integers(len(d.sessions))]
  light = domains.sample_light(rng, session)
  background = domains.lit(domains.background(rng, session, WORK_SIZE), light)
  camera = d.cameras[rng.integers(len(d.cameras))]
  exposure = domains.sample_exposure(rng, camera)
  shot = _Shot(
      domain=d, subject=_subject(domain, video.subject), light=light,
      background=background,
      poses=_motion(rng, frames, _base_pose(rng), 0.02),
      expressions=_expressions(rng, frames),
      shake=0.015 if rng.random() < d.hand_rate else 0.002)
  if video.attack == 'live':
    frames = _live_frames(rng, shot)
  elif video.attack == 'replay':
    frames = _replay_frames(rng, shot)
  else:
    frames = _print_frames(rng, shot, cut=video.attack == 'cut')
  zeros = np.zeros((DEPTH_SIZE, DEPTH_SIZE), np.float32)
  for i, (rgb, labels, depth) in enumerate(frames):
    yield {
        'image': domains.capture(rng, exposure, rgb, IMAGE_SIZE),
        'depth': (zeros if depth is None else depth).astype(np.float32),
        'parsing': render_lib.downsample_labels(labels, IMAGE_SIZE),
        'label': int(video.attack == 'live'),
        'video_id': f'{video.split}/v{video.index:04d}',
        'attack_type': video.attack,
        'subject': video.subject,
        'frame_index': i,
    }


def generate_examples(domain: str, split: str,
                      subjects: dict[str, int] | None = None,
                      large: bool = False
                      ) -> Iterator[tuple[str, dict[str, Any]]]:
  """Yields (key, example) of one domain's split, without tfds.

  `subjects` overrides the domain's subjects per split (for miniatures);
  `large` generates the domain's `<domain>_large` config (`LARGE`).
  """
  if domain not in domains.DOMAINS:
    raise ValueError(
        f'Unknown domain {domain!r}; one of {list(domains.DOMAINS)}')
  if split not in SPLITS:
    raise ValueError(f'Unknown split {split!r}; one of {SPLITS}')
  if large:
    scale = LARGE[domain]
    videos = plan(domain, scale.subjects, scale.lives, scale.spoofs)
    frames, stream = scale.frames, _LARGE_STREAM
  else:
    videos, frames, stream = plan(domain, subjects), None, 0
  for video in videos:
    if video.split != split:
      continue
    for ex in render_video(domain, video, frames, stream):
      yield f'{ex["video_id"]}/f{ex["frame_index"]}', ex


class SyntheticFasConfig(tfds.core.BuilderConfig):
  """One domain of `synthetic_fas`: default, smoke miniature or large."""

  def __init__(self, *, domain: str, subjects: dict[str, int] | None = None,
               large: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.domain = domain
    self.subjects = subjects
    self.large = large


class SyntheticFas(tfds.core.GeneratorBasedBuilder):
  """Procedural four-domain face anti-spoofing benchmark (o, c, i, m)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'First release.'}
  BUILDER_CONFIGS = [
      SyntheticFasConfig(name=k, domain=k, description=f'Domain {k}: '
                         + {'o': 'OULU-NPU', 'c': 'CASIA-FASD',
                            'i': 'Replay-Attack', 'm': 'MSU-MFSD'}[k]
                         + '-like, procedurally rendered.')
      for k in ('o', 'c', 'i', 'm')
  ] + [
      SyntheticFasConfig(name=f'{k}_smoke', domain=k, subjects=SMOKE_SUBJECTS,
                         description=f'Miniature of domain {k} for smoke tests.')
      for k in ('o', 'c', 'i', 'm')
  ] + [
      SyntheticFasConfig(
          name=f'{k}_large', domain=k, large=True,
          description=f'Domain {k} at the real release\'s scale: '
          f'{LARGE[k].videos()[0]}/{LARGE[k].videos()[1]} live/spoof videos '
          f'of {LARGE[k].frames} frames (for studies).')
      for k in ('o', 'c', 'i', 'm')
  ]

  def _info(self) -> tfds.core.DatasetInfo:
    """Feature contract shared with the real dataset builders."""
    return self.dataset_info_from_configs(
        features=features.contract_features(IMAGE_SIZE),
        supervised_keys=('image', 'label'),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    """Three splits rendered on the fly; nothing is downloaded."""
    del dl_manager
    return {s: self._generate_examples(s) for s in SPLITS}

  def _generate_examples(self, split: str):
    """Yields the examples of one split of this config's domain."""
    config = self.builder_config
    yield from generate_examples(config.domain, split, config.subjects,
                                 config.large)
