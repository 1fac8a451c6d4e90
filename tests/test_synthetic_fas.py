"""Tests of the procedural `synthetic_fas` benchmark and its tfds builder."""

import collections
import itertools

import numpy as np
import pytest
import tensorflow_datasets as tfds

from fasjax.datasets import synthetic_fas as sfas
from fasjax.datasets.synthetic_fas import render
from fasjax.datasets.synthetic_fas import synthetic_fas as builder_lib

ATTACKS = {
    'o': {'live', 'print', 'replay'},
    'c': {'live', 'print', 'cut', 'replay'},
    'i': {'live', 'print', 'replay'},
    'm': {'live', 'print', 'replay'},
}


@pytest.fixture(scope='module')
def built_c(tmp_path_factory):
  """Domain `c` built once through tfds, as numpy frames per split."""
  data_dir = tmp_path_factory.mktemp('tfds')
  builder = sfas.SyntheticFas(config='c', data_dir=str(data_dir))
  builder.download_and_prepare()
  frames = {s: list(tfds.as_numpy(builder.as_dataset(split=s)))
            for s in ('train', 'dev', 'test')}
  return builder, frames


def _all(frames):
  return [ex for split in frames.values() for ex in split]


def test_four_configs_and_their_miniatures():
  names = [c.name for c in sfas.SyntheticFas.BUILDER_CONFIGS]
  assert names == ['o', 'c', 'i', 'm', 'o_smoke', 'c_smoke', 'i_smoke',
                   'm_smoke', 'o_large', 'c_large', 'i_large', 'm_large']
  videos = {n: len(builder_lib.plan(n)) for n in 'ocim'}
  smoke = {n: len(builder_lib.plan(n, builder_lib.SMOKE_SUBJECTS))
           for n in 'ocim'}
  assert all(smoke[n] < videos[n] for n in 'ocim')
  assert str(sfas.SyntheticFas.VERSION) == '1.0.0'


# Live/spoof videos of the real releases (docs/design.md §2); OULU-NPU at a third.
REAL_VIDEOS = {'o': (720, 2880), 'c': (150, 450), 'i': (140, 700),
               'm': (70, 210)}


@pytest.mark.parametrize('domain', ['o', 'c', 'i', 'm'])
def test_large_plan_has_the_real_releases_scale(domain):
  scale = builder_lib.LARGE[domain]
  videos = builder_lib.plan(domain, scale.subjects, scale.lives, scale.spoofs)
  live = sum(v.attack == 'live' for v in videos)
  expected = REAL_VIDEOS[domain]
  if domain == 'o':
    expected = (expected[0] // 3, expected[1] // 3)
  assert (live, len(videos) - live) == expected == scale.videos()
  assert {v.attack for v in videos} == ATTACKS[domain]
  assert len({v.index for v in videos}) == len(videos)
  by_split = collections.defaultdict(set)
  for v in videos:
    by_split[v.split].add(v.subject)
  assert sum(map(len, by_split.values())) == sum(scale.subjects.values())
  assert not by_split['train'] & (by_split['dev'] | by_split['test'])
  assert not by_split['dev'] & by_split['test']
  # Every subject has its live videos and its spoofs.
  per_subject = collections.Counter((v.subject, v.attack == 'live')
                                    for v in videos)
  assert set(per_subject.values()) == {scale.lives, scale.spoofs}


def test_large_videos_are_deterministic_new_draws():
  frames = builder_lib.LARGE['m'].frames
  first = list(itertools.islice(
      builder_lib.generate_examples('m', 'dev', large=True), 2 * frames))
  assert [ex['frame_index'] for _, ex in first] == 2 * list(range(frames))
  again = builder_lib.generate_examples('m', 'dev', large=True)
  for (ka, a), (kb, b) in zip(first, again):
    assert ka == kb and a['image'].tobytes() == b['image'].tobytes()
  # A new random stream, not the default config's draw for the same video.
  scale = builder_lib.LARGE['m']
  video = next(v for v in builder_lib.plan('m', scale.subjects, scale.lives,
                                           scale.spoofs) if v.split == 'dev')
  default = next(builder_lib.render_video('m', video))
  assert first[0][1]['image'].tobytes() != default['image'].tobytes()


def test_config_argument_large():
  from configs import common  # pylint: disable=g-import-not-at-top
  config = common.protocol_config('ocm', 'i', 'synthetic,large,seed=1')
  assert dict(config.data.builders) == {d: f'synthetic_fas/{d}_large'
                                  for d in 'ocim'}
  assert common.protocol_config('ocm', 'i', 'synthetic').data.builders[
      'i'] == 'synthetic_fas/i'
  with pytest.raises(ValueError, match='with `synthetic`'):
    common.parse_arg('large')
  with pytest.raises(ValueError, match='exclude each other'):
    common.parse_arg('synthetic,large,smoke')


def test_features_shapes_and_splits(built_c):
  builder, frames = built_c
  info = builder.info
  assert set(info.splits.keys()) == {'train', 'dev', 'test'}
  assert info.features['image'].shape == (64, 64, 3)
  assert info.features['depth'].shape == (32, 32)
  assert info.features['parsing'].shape == (64, 64)
  ex = frames['train'][0]
  assert ex['image'].shape == (64, 64, 3) and ex['image'].dtype == np.uint8
  assert ex['depth'].shape == (32, 32) and ex['depth'].dtype == np.float32
  assert ex['parsing'].shape == (64, 64) and ex['parsing'].dtype == np.uint8
  for key in ('label', 'subject', 'frame_index'):
    assert ex[key].dtype == np.int64
  for ex in _all(frames):
    assert 0.0 <= ex['depth'].min() and ex['depth'].max() <= 1.0
    assert ex['parsing'].max() < render.NUM_CLASSES
    assert ex['label'] in (0, 1)


def test_sizes(built_c):
  _, frames = built_c
  videos = {s: {ex['video_id'] for ex in f} for s, f in frames.items()}
  assert {s: len(v) for s, v in videos.items()} == {
      'train': 48, 'dev': 16, 'test': 32}


def test_deterministic():
  first = list(sfas.generate_examples('m', 'dev'))
  second = list(sfas.generate_examples('m', 'dev'))
  assert [k for k, _ in first] == [k for k, _ in second]
  for (_, a), (_, b) in zip(first, second):
    for key in ('image', 'depth', 'parsing'):
      assert a[key].tobytes() == b[key].tobytes()
    assert a['video_id'] == b['video_id']


def test_videos_are_consistent(built_c):
  _, frames = built_c
  per_video = collections.defaultdict(list)
  for split, exs in frames.items():
    for ex in exs:
      vid = ex['video_id'].decode()
      assert vid.startswith(split + '/')
      per_video[vid].append(ex)
  for vid, exs in per_video.items():
    assert len({(e['label'], e['attack_type'], e['subject']) for e in exs}) == 1
    assert sorted(e['frame_index'] for e in exs) == list(range(len(exs)))
    # Frames move a little: not identical, not unrelated.
    a, b = (exs[0]['image'].astype(float), exs[1]['image'].astype(float))
    assert 0 < np.abs(a - b).mean() < 40, vid


def test_disjoint_subjects_and_both_labels(built_c):
  _, frames = built_c
  subjects = {s: {int(e['subject']) for e in f} for s, f in frames.items()}
  assert not subjects['train'] & subjects['dev']
  assert not subjects['train'] & subjects['test']
  assert not subjects['dev'] & subjects['test']
  for exs in frames.values():
    assert {int(e['label']) for e in exs} == {0, 1}


@pytest.mark.parametrize('domain', ['o', 'c', 'i', 'm'])
def test_plan_attacks_and_splits(domain):
  videos = builder_lib.plan(domain)
  assert {v.attack for v in videos} == ATTACKS[domain]
  assert len({v.index for v in videos}) == len(videos)
  for split in ('train', 'dev', 'test'):
    labels = {v.attack == 'live' for v in videos if v.split == split}
    assert labels == {True, False}
  by_split = collections.defaultdict(set)
  for v in videos:
    by_split[v.split].add(v.subject)
  assert not by_split['train'] & by_split['test']


def test_built_attack_types(built_c):
  _, frames = built_c
  kinds = {e['attack_type'].decode() for e in _all(frames)}
  assert kinds == ATTACKS['c']
  for e in _all(frames):
    assert (e['attack_type'] == b'live') == (e['label'] == 1)


def test_depth_live_vs_spoof(built_c):
  _, frames = built_c
  nose, skin = [], []
  for e in _all(frames):
    if e['label'] == 0:
      assert not e['depth'].any()
      continue
    assert e['depth'].max() > 0.5
    parsing = e['parsing'][::2, ::2]  # to the depth map's 32x32 grid
    if (parsing == 9).any():
      nose.append(e['depth'][parsing == 9].mean())
      skin.append(e['depth'][parsing == 1].mean())
  assert len(nose) > 10
  assert np.mean(nose) > np.mean(skin) + 0.1


def test_live_parsing_classes(built_c):
  _, frames = built_c
  live = [e for e in _all(frames) if e['label'] == 1]
  present = collections.Counter()
  for e in live:
    present.update(set(np.unique(e['parsing']).tolist()))
  for cls in (1, 4, 5, 9):
    assert present[cls] >= 0.8 * len(live), cls
  lips = sum(bool(np.isin(e['parsing'], (10, 11, 12)).any()) for e in live)
  assert lips >= 0.8 * len(live)


def test_spoof_parsing_has_face(built_c):
  _, frames = built_c
  for e in _all(frames):
    if e['label'] == 0:
      assert (e['parsing'] == 1).mean() > 0.05


def _centroid_col(parsing, cls):
  return np.nonzero(parsing == cls)[1].mean()


def test_left_right_convention_render():
  rng = np.random.default_rng(0)
  subject = render.sample_subject(rng, render.Population(skin_tone=(2, 2)))
  light = render.Light(direction=np.array([0.0, 0.0, 1.0]),
                       color=np.ones(3) * 0.6, ambient=np.ones(3) * 0.4)
  r = render.render(subject, render.Pose(), render.Expression(), light, 128)
  # The subject's left (l_*) shows on the image's right for a frontal face.
  for left, right in ((4, 5), (2, 3), (7, 8)):
    assert _centroid_col(r.parsing, left) > 64 > _centroid_col(r.parsing, right)


def test_left_right_convention_dataset(built_c):
  _, frames = built_c
  votes = [_centroid_col(e['parsing'], 4) > _centroid_col(e['parsing'], 5)
           for e in _all(frames)
           if (e['parsing'] == 4).any() and (e['parsing'] == 5).any()]
  assert len(votes) > 50 and np.mean(votes) > 0.95
