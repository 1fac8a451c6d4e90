"""Real dataset builders on generated miniatures of the four official layouts.

Each miniature holds a few short videos per split, written with real codecs
and showing scikit-image's `astronaut` photo moved and scaled over frames,
plus corrupt files. The builds run through Apache Beam's direct runner.
"""

import contextlib
import fcntl
import json
import os
import pathlib

import numpy as np
from PIL import Image
import pytest
from skimage import data as skdata
import tensorflow_datasets as tfds

from configs import common
import media
from fasjax import input_pipeline
from fasjax.datasets import casia_fasd
from fasjax.datasets import msu_mfsd
from fasjax.datasets import oulu_npu
from fasjax.datasets import replay_attack
from fasjax.datasets.real import builder as builder_lib
from fasjax.datasets.real import layout
from fasjax.datasets.real import report as report_lib
from fasjax.preprocess import parsing as parsing_lib
from fasjax.preprocess import config as config_lib

FRAMES_PER_VIDEO = 4
SAMPLING = config_lib.Sampling(every=3, max_frames=2)  # frames 0 and 3
LIVE, PRINT, CUT, REPLAY = 'live', 'print', 'cut', 'replay'
# Per file: (split, attack type) of a good video, or how the file is broken.
# 'upside' videos are stored rotated by 180 degrees; 'noface' videos decode
# but show no face; 'truncated' ones are cut short.
MINIATURES = {
    'casia_fasd': {
        'train_release/1/1.avi': ('train', LIVE),
        'train_release/1/3.avi': ('train', PRINT),
        'train_release/1/5.avi': ('train', CUT),
        'train_release/1/HR_4.avi': ('train', REPLAY),
        'train_release/2/2.avi': 'corrupt',
        'test_release/1/1.avi': ('test', LIVE),
        'test_release/1/HR_2.avi': ('test', PRINT),
        'test_release/1/6.avi': ('test', CUT),
        'test_release/1/7.avi': ('test', REPLAY),
        'test_release/1/9.avi': 'unknown',
    },
    'oulu_npu': {
        'Train_files/1_1_01_1.avi': ('train', LIVE),
        'Train_files/1_1_01_2.avi': ('train', PRINT),
        'Train_files/1_1_01_4.avi': ('train', REPLAY),
        'Dev_files/2_1_21_1.avi': ('dev', LIVE),
        'Dev_files/2_1_21_5.avi': ('dev', REPLAY),
        'Dev_files/2_1_21_2.avi': 'noface',
        'Test_files/3_2_36_1.avi': ('test', LIVE),
        'Test_files/3_2_36_3.avi': ('test', PRINT),
        'Test_files/4_2_36_1.avi': 'empty',
        'Test_files/5_2_36_4.avi': 'truncated',
    },
    'replay_attack': {
        'train/real/client001_session01_webcam_authenticate_adverse_1.mov':
            ('train', LIVE),
        'train/attack/fixed/attack_highdef_client001_session01_highdef_photo'
        '_adverse.mov': ('train', REPLAY),
        # Same bare name under hand/: video_id must tell them apart.
        'train/attack/hand/attack_highdef_client001_session01_highdef_photo'
        '_adverse.mov': ('train', REPLAY),
        'devel/real/client003_session01_webcam_authenticate_controlled_1.mov':
            ('dev', LIVE),
        'devel/attack/hand/attack_print_client003_session01_highdef_photo'
        '_controlled.mov': ('dev', PRINT),
        'test/real/client009_session01_webcam_authenticate_adverse_1.mov':
            ('test', LIVE),
        'test/attack/fixed/attack_mobile_client009_session01_mobile_video'
        '_adverse.mov': ('test', REPLAY),
        'test/real/client010_session01_webcam_authenticate_adverse_1.mov':
            'corrupt',
    },
    'msu_mfsd': {
        'scene01/real/real_client003_android_SD_scene01.mp4':
            ('train', LIVE, 'upside'),
        'scene01/real/real_client003_laptop_SD_scene01.mov': ('train', LIVE),
        'scene01/attack/attack_client003_android_SD_printed_photo_scene01.mp4':
            ('train', PRINT),
        'scene01/real/real_client002_laptop_SD_scene01.mov': ('test', LIVE),
        'scene01/attack/attack_client002_laptop_SD_ipad_video_scene01.mov':
            ('test', REPLAY),
        'scene01/attack/attack_client002_android_SD_iphone_video_scene01.mp4':
            'corrupt',
    },
}
EXTRA_FILES = {'msu_mfsd': {'train_sub_list.txt': '003\n',
                            'test_sub_list.txt': '002\n'},
               'casia_fasd': {'readme.txt': 'not a video'}}
BUILDERS = {'casia_fasd': casia_fasd.CasiaFasd, 'oulu_npu': oulu_npu.OuluNpu,
            'replay_attack': replay_attack.ReplayAttack,
            'msu_mfsd': msu_mfsd.MsuMfsd}
PARSERS = {'casia_fasd': casia_fasd.casia_fasd.parse_layout,
           'oulu_npu': oulu_npu.oulu_npu.parse_layout,
           'replay_attack': replay_attack.replay_attack.parse_layout,
           'msu_mfsd': msu_mfsd.msu_mfsd.parse_layout}


def astronaut_frames(n: int, seed: int) -> list[np.ndarray]:
  """160x120 frames of the astronaut photo, panning and zooming."""
  photo = Image.fromarray(skdata.astronaut())
  shift = np.random.default_rng(seed).uniform(-10, 10)
  frames = []
  for i in range(n):
    side = 320 + 30 * i  # zoom out over the video
    cx, cy = 215 + 8 * i + shift, 175
    box = (cx - side / 2, cy - 0.375 * side, cx + side / 2, cy + 0.375 * side)
    frames.append(np.asarray(photo.resize((160, 120), Image.BILINEAR,
                                          box=box)))
  return frames


def make_miniature(name: str, root: pathlib.Path) -> pathlib.Path:
  """Writes the miniature release of a dataset under root; returns root."""
  for i, (rel, spec) in enumerate(sorted(MINIATURES[name].items())):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if spec == 'corrupt':
      path.write_bytes(b'RIFF\x00\x10\x00\x00AVI junk' * 64)
    elif spec == 'empty':
      path.write_bytes(b'')
    elif spec == 'truncated':  # a third of a 12-frame video
      media.write_video(path, astronaut_frames(FRAMES_PER_VIDEO, seed=i) * 3)
      path.write_bytes(path.read_bytes()[:path.stat().st_size // 3])
    elif spec == 'noface':
      ramp = np.linspace(0, 255, 160, dtype=np.uint8)
      media.write_video(path, [np.stack([np.tile(ramp, (120, 1))] * 3, -1)] * 4)
    else:
      frames = astronaut_frames(FRAMES_PER_VIDEO, seed=i)
      if 'upside' in spec:
        frames = [np.ascontiguousarray(f[::-1, ::-1]) for f in frames]
      media.write_video(path, frames)
  for rel, text in EXTRA_FILES.get(name, {}).items():
    (root / rel).write_text(text)
  return root


def good_videos(name: str) -> dict[str, tuple[str, str]]:
  """video_id -> (split, attack type) of the miniature's readable videos."""
  return {k: v[:2] for k, v in MINIATURES[name].items()
          if isinstance(v, tuple)}


def broken_videos(name: str, kinds=('corrupt', 'empty', 'truncated')
                  ) -> set[str]:
  """video_ids of the miniature's videos broken in one of these ways."""
  return {k for k, v in MINIATURES[name].items() if v in kinds}


def _shared_dir(tmp_path_factory) -> pathlib.Path:
  """A directory shared by the pytest-xdist workers of this run."""
  base = tmp_path_factory.getbasetemp()
  return base.parent if 'PYTEST_XDIST_WORKER' in os.environ else base


@contextlib.contextmanager
def _locked(path: pathlib.Path):
  """Holds an exclusive lock file, so one worker makes what all share."""
  with open(path, 'w') as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    try:
      yield
    finally:
      fcntl.flock(f, fcntl.LOCK_UN)


@pytest.fixture(scope='module')
def releases(tmp_path_factory):
  """The four miniature releases, written once per test run."""
  base = _shared_dir(tmp_path_factory) / 'fas_raw'
  base.mkdir(exist_ok=True)
  with _locked(base / 'lock'):
    if not (base / 'done').exists():
      for name in MINIATURES:
        make_miniature(name, base / name)
      (base / 'done').write_text('')
  return {name: base / name for name in MINIATURES}


@pytest.mark.parametrize('name', sorted(MINIATURES))
def test_parse_layout(name, releases):
  listing = PARSERS[name](releases[name])
  got = {r.video_id: (r.split, r.attack_type) for r in listing.records}
  broken = broken_videos(name, ('corrupt', 'empty', 'truncated', 'noface'))
  assert {k: v for k, v in got.items() if k not in broken} == good_videos(name)
  assert broken <= set(got)  # broken files are listed; decoding skips them
  assert broken_videos(name, ('noface',)) <= set(got)
  for r in listing.records:
    assert r.label == int(r.attack_type == LIVE)
  unknown = {k for k, v in MINIATURES[name].items() if v == 'unknown'}
  assert {i['video_id'] for i in listing.ignored} == unknown


def test_msu_upside_down_flagged(releases):
  listing = PARSERS['msu_mfsd'](releases['msu_mfsd'])
  flagged = {r.video_id for r in listing.records if r.rotate180}
  assert flagged == {'scene01/real/real_client003_android_SD_scene01.mp4'}
  assert len(msu_mfsd.msu_mfsd.UPSIDE_DOWN) == 6


def test_casia_subjects_unique_across_splits(releases):
  listing = PARSERS['casia_fasd'](releases['casia_fasd'])
  subjects = {r.split: set() for r in listing.records}
  for r in listing.records:
    subjects[r.split].add(r.subject)
  assert not subjects['train'] & subjects['test']


@pytest.mark.parametrize('name', sorted(MINIATURES))
def test_wrong_manual_dir_names_expected_folders(name, tmp_path):
  (tmp_path / 'something_else').mkdir()
  cls = BUILDERS[name]
  with pytest.raises(layout.ManualDirError) as e:
    layout.find_root(tmp_path, cls.REQUIRED, name, 'help')
  for required in cls.REQUIRED:
    assert required in str(e.value)
  assert 'something_else/' in str(e.value)


def test_release_one_folder_below_manual_dir_is_found(tmp_path):
  (tmp_path / 'CASIA-FASD' / 'train_release').mkdir(parents=True)
  (tmp_path / 'CASIA-FASD' / 'test_release').mkdir()
  root = layout.find_root(tmp_path, casia_fasd.CasiaFasd.REQUIRED, 'c', '')
  assert root == tmp_path / 'CASIA-FASD'


def _build(name: str, manual_dir: pathlib.Path, data_dir: pathlib.Path):
  config = builder_lib.RealFasConfig(name='test', sampling=SAMPLING)
  b = BUILDERS[name](config=config, data_dir=str(data_dir))
  # No runner given: the builder picks Beam's in-process FnApiRunner.
  b.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(manual_dir)))
  return b


class _Builds:
  """Builds each miniature on first use: name -> (examples per split, report).

  Lazy, and shared by pytest-xdist workers: each dataset is built once.
  """

  def __init__(self, releases, data_dir: pathlib.Path):
    self._releases = releases
    self._data_dir = data_dir
    self._done = {}

  def __getitem__(self, name):
    if name not in self._done:
      # Another worker may be building it: tfds reuses a finished build.
      with _locked(self._data_dir / f'{name}.lock'):
        b = _build(name, self._releases[name], self._data_dir)
      examples = {s: list(tfds.as_numpy(b.as_dataset(split=s)))
                  for s in b.info.splits}
      report = json.loads(
          (pathlib.Path(b.data_dir) / 'build_report.json').read_text())
      self._done[name] = (examples, report)
    return self._done[name]


@pytest.fixture(scope='module')
def built(releases, tmp_path_factory):
  data_dir = _shared_dir(tmp_path_factory) / 'fas_data'
  data_dir.mkdir(exist_ok=True)
  return _Builds(releases, data_dir)


@pytest.mark.parametrize('name', sorted(MINIATURES))
def test_build_splits_labels_and_counts(name, built):
  examples, report = built[name]
  good = good_videos(name)
  assert set(examples) == {s for s, _ in good.values()}
  for split, exs in examples.items():
    per_video = {}
    for ex in exs:
      vid = ex['video_id'].decode()
      per_video.setdefault(vid, []).append(int(ex['frame_index']))
      assert good[vid] == (split, ex['attack_type'].decode())
      assert ex['label'] == int(good[vid][1] == LIVE)
      assert ex['image'].shape == (256, 256, 3)
      assert ex['parsing'].shape == (256, 256) and ex['parsing'].max() <= 12
      assert ex['depth'].shape == (32, 32)
      if ex['label'] == 0:
        assert not ex['depth'].any()
      else:
        assert 0 <= ex['depth'].min() and ex['depth'].max() <= 1
        assert ex['depth'].max() > 0.5
    assert set(per_video) == {v for v, (s, _) in good.items() if s == split}
    assert all(sorted(f) == [0, 3] for f in per_video.values())
    counts = report['splits'][split]
    lives = sum(a == LIVE for s, a in good.values() if s == split)
    spoofs = sum(a != LIVE for s, a in good.values() if s == split)
    assert (counts['live_videos'], counts['spoof_videos']) == (lives, spoofs)
    assert counts['live_frames'] + counts['spoof_frames'] == len(exs)
    assert counts['frames_without_face'] == counts['frames_doubtful_mesh'] == 0
    # MSU's upside-down videos are turned by name before the chain sees them.
    assert counts['videos_turned180'] == 0


@pytest.mark.parametrize('name', sorted(MINIATURES))
def test_build_reports_broken_files(name, built):
  _, report = built[name]
  skipped = {s['video_id'] for s in report['skipped']}
  no_face = broken_videos(name, ('noface',))
  assert skipped == broken_videos(name) | no_face
  assert report['skipped_unreadable'] == len(broken_videos(name))
  assert report['skipped_no_face'] == len(no_face)
  for s in report['skipped']:
    assert s['video_id'] in s['reason']  # the warning names the file
  tt = report['train_test_videos']
  assert not tt['built_matches_expected']  # a miniature, not a release
  assert tt['expected_full_release'] == dict(zip(
      ('live', 'spoof'), BUILDERS[name].EXPECTED_VIDEOS))


def test_msu_upside_down_video_comes_out_upright(built):
  examples, _ = built['msu_mfsd']
  vid = b'scene01/real/real_client003_android_SD_scene01.mp4'
  for ex in (e for e in examples['train'] if e['video_id'] == vid):
    rows = {c: np.argwhere(ex['parsing'] == c)[:, 0].mean()
            for c in (parsing_lib.L_EYE, parsing_lib.R_EYE, parsing_lib.L_LIP)}
    assert rows[parsing_lib.L_EYE] < rows[parsing_lib.L_LIP]
    assert rows[parsing_lib.R_EYE] < rows[parsing_lib.L_LIP]


def _full_size_names(name: str) -> list[str]:
  """Every video path of a full release (docs/design.md §2), by its naming rules."""
  if name == 'oulu_npu':
    users = {'Train_files': range(1, 21), 'Dev_files': range(21, 36),
             'Test_files': range(36, 56)}
    return [f'{d}/{p}_{s}_{u:02d}_{f}.avi' for d, us in users.items()
            for u in us for p in range(1, 7) for s in range(1, 4)
            for f in range(1, 6)]
  if name == 'casia_fasd':
    files = [str(i) for i in range(1, 9)] + [f'HR_{i}' for i in range(1, 5)]
    return [f'{d}/{s}/{f}.avi' for d, n in (('train_release', 20),
                                            ('test_release', 30))
            for s in range(1, n + 1) for f in files]
  if name == 'replay_attack':
    clients = {'train': range(1, 16), 'devel': range(16, 31),
               'test': range(31, 51)}
    kinds = ('print_client{c:03d}_session01_highdef_photo',
             'highdef_client{c:03d}_session01_highdef_photo',
             'highdef_client{c:03d}_session01_highdef_video',
             'mobile_client{c:03d}_session01_mobile_photo',
             'mobile_client{c:03d}_session01_mobile_video')
    names = []
    for d, cs in clients.items():
      for c in cs:
        for light in ('controlled', 'adverse'):
          names += [f'{d}/real/client{c:03d}_session01_webcam_authenticate_'
                    f'{light}_{i}.mov' for i in (1, 2)]
          names += [f'{d}/attack/{support}/attack_{k.format(c=c)}_{light}.mov'
                    for support in ('fixed', 'hand') for k in kinds]
    return names
  assert name == 'msu_mfsd'
  names = []
  for c in range(1, 36):
    for device, ext in (('android', 'mp4'), ('laptop', 'mov')):
      names.append(f'scene01/real/real_client{c:03d}_{device}_SD_scene01.{ext}')
      names += [f'scene01/attack/attack_client{c:03d}_{device}_SD_{k}'
                f'_scene01.{ext}'
                for k in ('ipad_video', 'iphone_video', 'printed_photo')]
  return names


@pytest.mark.parametrize('name', sorted(MINIATURES))
def test_full_size_layout_gives_design_counts(name, tmp_path):
  for rel in _full_size_names(name):
    (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / rel).touch()
  if name == 'msu_mfsd':
    (tmp_path / 'train_sub_list.txt').write_text(
        '\n'.join(f'{c:03d}' for c in range(1, 16)))
    (tmp_path / 'test_sub_list.txt').write_text(
        '\n'.join(f'{c:03d}' for c in range(16, 36)))
  listing = PARSERS[name](tmp_path)
  assert not listing.ignored
  tt = [r for r in listing.records if r.split in ('train', 'test')]
  counts = (sum(r.label for r in tt), sum(1 - r.label for r in tt))
  assert counts == BUILDERS[name].EXPECTED_VIDEOS
  assert len({r.video_id for r in listing.records}) == len(listing.records)
  subjects = {}
  for r in listing.records:
    subjects.setdefault(r.split, set()).add(r.subject)
  splits = sorted(subjects)
  assert splits == sorted(BUILDERS[name].SPLITS)
  for i, a in enumerate(splits):
    for b in splits[i + 1:]:
      assert not subjects[a] & subjects[b], (a, b)
  if name == 'msu_mfsd':
    assert sum(r.rotate180 for r in listing.records) == 6
  statuses = [{'video_id': r.video_id, 'split': r.split, 'label': r.label,
               'attack_type': r.attack_type, 'kind': report_lib.BUILT,
               'frames': 25, 'frames_without_face': 0,
               'frames_doubtful_mesh': 0}
              for r in listing.records]
  rep = report_lib.build_report(name, listing, statuses,
                                BUILDERS[name].EXPECTED_VIDEOS, {})
  assert rep['train_test_videos']['listed_matches_expected']
  assert rep['train_test_videos']['built_matches_expected']
  assert 'matches a full release' in report_lib.summary(rep)


def test_default_build_is_read_by_the_input_pipeline(releases, tmp_path):
  # What a protocol config without `synthetic` reads (configs/common.py).
  b = BUILDERS['casia_fasd'](data_dir=str(tmp_path))
  b.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir=str(releases['casia_fasd'])))
  assert b.builder_config.name == 'default'
  ds = input_pipeline.load_domain(
      common.REAL_BUILDERS['c'], None, ('train', 'test'), str(tmp_path))
  examples = list(tfds.as_numpy(ds))
  # Default sampling keeps frame 0 of each 4-frame video.
  assert len(examples) == len(good_videos('casia_fasd'))
  assert {int(e['frame_index']) for e in examples} == {0}
