"""`msu_mfsd`: MSU-MFSD built from its raw release (docs/design.md §2).

Layout: `scene01/real/real_client002_{android,laptop}_SD_scene01.{mp4,mov}`,
`scene01/attack/attack_client002_{android,laptop}_SD_{ipad_video,
iphone_video,printed_photo}_scene01.{mp4,mov}`, and the subject lists
`train_sub_list.txt` and `test_sub_list.txt` (client numbers)
that split the 35 clients 15/20. Printed photos are 'print', the iPad and
iPhone videos 'replay'. No dev split.

Six android live videos are stored upside down; they are turned upright
(the list is the one of the bob-db-msu-mfsd-mod package).
"""

import pathlib
import re

from fasjax.datasets.real import builder
from fasjax.datasets.real import layout

_SUBJECT_LISTS = {'train': 'train_sub_list.txt', 'test': 'test_sub_list.txt'}
_NAME = re.compile(r'(real|attack)_client(\d+)_(android|laptop)_SD_(.*)')
UPSIDE_DOWN = frozenset(
    f'real_client{c:03d}_android_SD_scene01' for c in (3, 5, 6, 7, 8, 9))


def _subjects(path: pathlib.Path) -> set[int]:
  # Tolerates 'client002' as well as '002' entries.
  return {int(n) for n in re.findall(r'\d+', path.read_text())}


def parse_layout(root: pathlib.Path) -> layout.Listing:
  """Lists MSU-MFSD's videos under its release root."""
  listing = layout.Listing()
  split_of = {}
  for split, name in _SUBJECT_LISTS.items():
    for subject in _subjects(root / name):
      split_of[subject] = split
  for kind in ('real', 'attack'):
    for path in layout.video_files(root / 'scene01' / kind):
      video_id = layout.relative_id(path, root)
      match = _NAME.fullmatch(path.stem)
      if not match or match.group(1) != kind:
        listing.ignore(video_id, 'not an MSU-MFSD video name')
        continue
      subject = int(match.group(2))
      if subject not in split_of:
        listing.ignore(video_id, 'client in neither subject list')
        continue
      attack = 'live' if kind == 'real' else (
          'print' if 'printed_photo' in match.group(4) else 'replay')
      listing.records.append(layout.VideoRecord(
          video_id=video_id, split=split_of[subject],
          attack_type=attack, subject=subject,
          rotate180=path.stem in UPSIDE_DOWN))
  return listing


class MsuMfsd(builder.RealFasBuilder):
  """MSU-MFSD: 35 clients, laptop and android captures, print and replay."""

  RELEASE = 'MSU-MFSD'
  REQUIRED = ('scene01/real', 'scene01/attack', *_SUBJECT_LISTS.values())
  SPLITS = tuple(_SUBJECT_LISTS)
  EXPECTED_VIDEOS = (70, 210)
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Put the licensed MSU-MFSD release in the manual dir: scene01/real/,
  scene01/attack/ (the .mp4 and .mov videos), train_sub_list.txt and
  test_sub_list.txt.
  """
  parse_layout = staticmethod(parse_layout)
