"""`oulu_npu`: OULU-NPU built from its raw release (docs/design.md §2).

Layout: `{Train,Dev,Test}_files/{Phone}_{Session}_{User}_{File}.avi`, phones
1-6, sessions 1-3, users 1-55 (disjoint across splits, so `subject` is the
user number). File 1 is live, 2-3 printed photos ('print'), 4-5 video
replays ('replay'); the two printers and displays are not told apart, so
attack types are shared with the other datasets.
"""

import pathlib
import re

from fasjax.datasets.real import builder
from fasjax.datasets.real import layout

_SPLIT_FOLDERS = {'train': 'Train_files', 'dev': 'Dev_files',
                  'test': 'Test_files'}
_NAME = re.compile(r'(\d)_(\d)_(\d+)_(\d)')
_ATTACKS = {'1': 'live', '2': 'print', '3': 'print', '4': 'replay',
            '5': 'replay'}


def parse_layout(root: pathlib.Path) -> layout.Listing:
  """Lists OULU-NPU's videos under its release root."""
  listing = layout.Listing()
  for split, folder in _SPLIT_FOLDERS.items():
    for path in layout.video_files(root / folder):
      video_id = layout.relative_id(path, root)
      match = _NAME.fullmatch(path.stem)
      if not match or match.group(4) not in _ATTACKS:
        listing.ignore(video_id, 'not a Phone_Session_User_File name')
        continue
      attack = _ATTACKS[match.group(4)]
      listing.records.append(layout.VideoRecord(
          video_id=video_id, split=split, attack_type=attack,
          subject=int(match.group(3))))
  return listing


class OuluNpu(builder.RealFasBuilder):
  """OULU-NPU: 55 subjects, 6 phones, 3 sessions, print and replay attacks."""

  RELEASE = 'OULU-NPU'
  REQUIRED = tuple(_SPLIT_FOLDERS.values())
  SPLITS = tuple(_SPLIT_FOLDERS)
  EXPECTED_VIDEOS = (720, 2880)
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Put the licensed OULU-NPU release in the manual dir: Train_files/,
  Dev_files/ and Test_files/, each holding {Phone}_{Session}_{User}_{File}.avi
  videos (e.g. 1_1_01_1.avi).
  """
  parse_layout = staticmethod(parse_layout)
