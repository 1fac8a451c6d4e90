"""The JSON build report: per-split counts, skipped files, expected counts."""

import collections
from typing import Any

from fasjax.datasets.real import layout

REPORT_NAME = 'build_report.json'
# Status kinds of a video.
BUILT, UNREADABLE, NO_FACE = 'built', 'unreadable', 'no_face'
# Below this face probability the mesh (and so the pseudo labels) of a frame
# is doubtful: counted, not dropped.
MESH_DOUBT = 0.5
# docs/design.md §2 compares train + test (dev splits are held out).
COMPARED_SPLITS = ('train', 'test')


def _counts(items: list[dict[str, Any]]) -> dict[str, int]:
  live = [s for s in items if s['label'] == 1]
  spoof = [s for s in items if s['label'] == 0]
  return {'live_videos': len(live), 'spoof_videos': len(spoof),
          'live_frames': sum(s.get('frames', 0) for s in live),
          'spoof_frames': sum(s.get('frames', 0) for s in spoof)}


def build_report(dataset: str, listing: layout.Listing,
                 statuses: list[dict[str, Any]],
                 expected: tuple[int, int],
                 settings: dict[str, Any]) -> dict[str, Any]:
  """Summarises a build: listed vs built videos per split, and what was skipped.

  `expected` is the (live, spoof) train+test video count of a full release.
  """
  listed = collections.defaultdict(list)
  for r in listing.records:
    listed[r.split].append({'label': r.label})
  built = collections.defaultdict(list)
  for s in statuses:
    if s['kind'] == BUILT:
      built[s['split']].append(s)
  splits = {}
  for split in sorted(listed):
    c = _counts(built[split])
    on_disk = _counts(listed[split])
    c['listed_live_videos'] = on_disk['live_videos']
    c['listed_spoof_videos'] = on_disk['spoof_videos']
    for key in ('frames_without_face', 'frames_doubtful_mesh',
                'videos_turned180'):
      c[key] = sum(s.get(key, 0) for s in built[split])
    splits[split] = c
  listed_tt = [sum(splits.get(s, {}).get(f'listed_{k}_videos', 0)
                   for s in COMPARED_SPLITS) for k in ('live', 'spoof')]
  built_tt = [sum(splits.get(s, {}).get(f'{k}_videos', 0)
                  for s in COMPARED_SPLITS) for k in ('live', 'spoof')]
  skipped = [{'video_id': s['video_id'], 'split': s['split'],
              'kind': s['kind'], 'reason': s['reason']}
             for s in sorted(statuses, key=lambda s: s['video_id'])
             if s['kind'] != BUILT]
  return {
      'dataset': dataset,
      'settings': settings,
      'splits': splits,
      'train_test_videos': {
          'expected_full_release': dict(zip(('live', 'spoof'), expected)),
          'listed': dict(zip(('live', 'spoof'), listed_tt)),
          'built': dict(zip(('live', 'spoof'), built_tt)),
          'listed_matches_expected': tuple(listed_tt) == tuple(expected),
          'built_matches_expected': tuple(built_tt) == tuple(expected),
      },
      'skipped_unreadable': sum(s['kind'] == UNREADABLE
                                for s in skipped),
      'skipped_no_face': sum(s['kind'] == NO_FACE for s in skipped),
      'skipped': skipped,
      'ignored_files': listing.ignored,
  }


def summary(report: dict[str, Any]) -> str:
  """A few human-readable lines of a report, for the build log."""
  lines = [f'{report["dataset"]} build report:']
  for split, c in report['splits'].items():
    lines.append(
        f'  {split}: {c["live_videos"]}/{c["listed_live_videos"]} live and '
        f'{c["spoof_videos"]}/{c["listed_spoof_videos"]} spoof videos built/'
        f'listed, {c["live_frames"]} live + {c["spoof_frames"]} spoof frames')
  tt = report['train_test_videos']
  exp = tt['expected_full_release']
  verdict = ('matches' if tt['built_matches_expected'] else 'differs from')
  lines.append(
      f'  train+test videos built {tt["built"]["live"]}/'
      f'{tt["built"]["spoof"]} (live/spoof) {verdict} a full release\'s '
      f'{exp["live"]}/{exp["spoof"]} (docs/design.md §2); listed '
      f'{tt["listed"]["live"]}/{tt["listed"]["spoof"]}')
  borrowed = sum(c['frames_without_face'] for c in report['splits'].values())
  doubtful = sum(c['frames_doubtful_mesh'] for c in report['splits'].values())
  turned = sum(c['videos_turned180'] for c in report['splits'].values())
  lines.append(f'  frames cropped at a neighbour\'s box: {borrowed}; with a '
               f'doubtful face mesh: {doubtful}; videos found upside down '
               f'and turned upright: {turned}')
  lines.append(f'  skipped: {report["skipped_unreadable"]} unreadable, '
               f'{report["skipped_no_face"]} without a face; '
               f'{len(report["ignored_files"])} files not in the layout')
  return '\n'.join(lines)
