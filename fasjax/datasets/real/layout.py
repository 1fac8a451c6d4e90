"""What a layout parser gives per video, and finding the release's root."""

import dataclasses
import os
import pathlib

VIDEO_SUFFIXES = ('.avi', '.mov', '.mp4')


@dataclasses.dataclass(frozen=True)
class VideoRecord:
  """One video of a raw release, with its labels."""
  video_id: str  # path relative to the release root, '/'-separated, unique
  split: str  # 'train', 'dev' or 'test'
  attack_type: str  # 'live', 'print', 'cut' or 'replay'
  subject: int  # unique within the dataset
  rotate180: bool = False  # stored upside down

  @property
  def label(self) -> int:
    """1 live, 0 spoof (derived from the attack type)."""
    return int(self.attack_type == 'live')


@dataclasses.dataclass
class Listing:
  """A parsed release: its videos and the files that were not understood."""
  records: list[VideoRecord] = dataclasses.field(default_factory=list)
  ignored: list[dict[str, str]] = dataclasses.field(default_factory=list)

  def ignore(self, video_id: str, reason: str):
    """Notes a video file the layout does not explain."""
    self.ignored.append({'video_id': video_id, 'reason': reason})


class ManualDirError(FileNotFoundError):
  """The manual directory does not hold the expected release."""


def find_root(manual_dir: str | os.PathLike, required: tuple[str, ...],
              dataset: str, layout_help: str) -> pathlib.Path:
  """The release root: `manual_dir` or its single subfolder holding `required`.

  Archives often unpack into one top folder (e.g. `MSU-MFSD/`), so one level
  below the manual dir is accepted too. Raises ManualDirError naming the
  expected entries and what was found.
  """
  manual = pathlib.Path(manual_dir)
  if not manual.is_dir():
    raise ManualDirError(
        f'{dataset}: manual dir {manual} does not exist. It must hold the raw '
        f'release: {", ".join(required)}.\n{layout_help}')
  candidates = [manual] + sorted(p for p in manual.iterdir() if p.is_dir())
  for root in candidates:
    if all((root / r).exists() for r in required):
      return root
  found = sorted(p.name + ('/' if p.is_dir() else '') for p in manual.iterdir())
  missing = [r for r in required if not (manual / r).exists()]
  raise ManualDirError(
      f'{dataset}: manual dir {manual} does not hold the raw release in its '
      f'official layout. Expected {", ".join(required)} in it (or in one '
      f'folder below it); missing {", ".join(missing)}; found '
      f'{", ".join(found[:20]) or "nothing"}.\n{layout_help}')


def video_files(folder: pathlib.Path) -> list[pathlib.Path]:
  """Video files directly in a folder, sorted (missing folder: none)."""
  if not folder.is_dir():
    return []
  return sorted(p for p in folder.iterdir()
                if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


def relative_id(path: pathlib.Path, root: pathlib.Path) -> str:
  """The video_id of a file: its '/'-separated path relative to the root."""
  return path.relative_to(root).as_posix()
