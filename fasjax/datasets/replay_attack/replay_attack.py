"""`replay_attack`: Idiap Replay-Attack built from its raw release (docs/design.md §2).

Layout: `{train,devel,test}/real/*.mov` and `{...}/attack/{fixed,hand}/*.mov`
(the `enroll/` folder is not used). Names: `client001_session01_webcam_...`
(live) and `attack_{print,highdef,mobile}_client001_session01_...`: a printed
photo ('print') or a photo or video on a tablet or phone screen ('replay').
`fixed/` and `hand/` share file names; `video_id` keeps the folder. Clients
are disjoint across splits, so `subject` is the client number. The `devel`
split is `dev`.
"""

import pathlib
import re

from fasjax.datasets.real import builder
from fasjax.datasets.real import layout

_SPLIT_FOLDERS = {'train': 'train', 'dev': 'devel', 'test': 'test'}
_CLIENT = re.compile(r'client(\d+)')
_ATTACK_PREFIX = re.compile(r'attack_(print|highdef|mobile)_')


def _record(path: pathlib.Path, root: pathlib.Path, split: str,
            listing: layout.Listing, live: bool):
  video_id = layout.relative_id(path, root)
  client = _CLIENT.search(path.stem)
  prefix = _ATTACK_PREFIX.match(path.stem)
  if client is None or (not live and prefix is None):
    listing.ignore(video_id, 'not a Replay-Attack video name')
    return
  attack = 'live' if live else (
      'print' if prefix.group(1) == 'print' else 'replay')
  listing.records.append(layout.VideoRecord(
      video_id=video_id, split=split, attack_type=attack,
      subject=int(client.group(1))))


def parse_layout(root: pathlib.Path) -> layout.Listing:
  """Lists Replay-Attack's videos under its release root."""
  listing = layout.Listing()
  for split, folder in _SPLIT_FOLDERS.items():
    for path in layout.video_files(root / folder / 'real'):
      _record(path, root, split, listing, live=True)
    for support in ('fixed', 'hand'):
      for path in layout.video_files(root / folder / 'attack' / support):
        _record(path, root, split, listing, live=False)
  return listing


class ReplayAttack(builder.RealFasBuilder):
  """Idiap Replay-Attack: 50 clients, print, photo and video replay attacks."""

  RELEASE = 'Replay-Attack'
  REQUIRED = tuple(f'{f}/{k}' for f in _SPLIT_FOLDERS.values()
                   for k in ('real', 'attack'))
  SPLITS = tuple(_SPLIT_FOLDERS)
  EXPECTED_VIDEOS = (140, 700)
  MANUAL_DOWNLOAD_INSTRUCTIONS = """\
  Put the licensed Replay-Attack release in the manual dir: train/, devel/
  and test/, each with real/*.mov and attack/fixed/*.mov, attack/hand/*.mov.
  """
  parse_layout = staticmethod(parse_layout)
