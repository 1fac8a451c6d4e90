"""`casia_fasd`: CASIA-FASD built from its raw release (docs/design.md §2).

Layout: `{train,test}_release/<subject>/{1..8,HR_1..HR_4}.avi`; 20 training
and 30 test subjects, 12 videos each. Files 1, 2 and HR_1 are live; 3, 4,
HR_2 warped photos ('print'); 5, 6, HR_3 cut photos ('cut'); 7, 8, HR_4
video replays ('replay'). Subject folders are numbered from 1 in both
splits but are different people, so test subjects get `subject` =
100 + folder number. No dev split.
"""

import pathlib

from fasjax.datasets.real import builder
from fasjax.datasets.real import layout

_SPLIT_FOLDERS = {'train': 'train_release', 'test': 'test_release'}
_SUBJECT_OFFSET = {'train': 0, 'test': 100}
_ATTACKS = {'1': 'live', '2': 'live', 'HR_1': 'live',
            '3': 'print', '4': 'print', 'HR_2': 'print',
            '5': 'cut', '6': 'cut', 'HR_3': 'cut',
            '7': 'replay', '8': 'replay', 'HR_4': 'replay'}


def parse_layout(root: pathlib.Path) -> layout.Listing:
  """Lists CASIA-FASD's videos under its release root."""
  listing = layout.Listing()
  for split, folder in _SPLIT_FOLDERS.items():
    subjects = sorted(p for p in (root / folder).iterdir() if p.is_dir())
    for subject_dir in subjects:
      for path in layout.video_files(subject_dir):
        video_id = layout.relative_id(path, root)
        attack = _ATTACKS.get(path.stem)
        if attack is None or not subject_dir.name.isdigit():
          listing.ignore(video_id, 'not a CASIA-FASD video name')
          continue
        listing.records.append(layout.VideoRecord(
            video_id=video_id, split=split, attack_type=attack,
            subject=_SUBJECT_OFFSET[split] + int(subject_dir.name)))
  return listing


class CasiaFasd(builder.RealFasBuilder):
  """CASIA-FASD: 50 subjects, live, warped/cut photo and replay attacks."""

  RELEASE = 'CASIA-FASD'
  REQUIRED = tuple(_SPLIT_FOLDERS.values())
  SPLITS = tuple(_SPLIT_FOLDERS)
  EXPECTED_VIDEOS = (150, 450)
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Put the licensed CASIA-FASD release in the manual dir: train_release/ and
  test_release/, each with one folder per subject holding 1.avi ... 8.avi
  and HR_1.avi ... HR_4.avi.
  """
  parse_layout = staticmethod(parse_layout)
