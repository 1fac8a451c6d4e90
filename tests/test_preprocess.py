"""The preprocessing chain on scikit-image's astronaut photograph."""

import pathlib
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest
from skimage import data as skdata

import media
from fasjax.preprocess import __main__ as cli
from fasjax.preprocess import chain
from fasjax.preprocess import config as config_lib
from fasjax.preprocess import depth as depth_lib
from fasjax.preprocess import detect
from fasjax.preprocess import mesh
from fasjax.preprocess import mesh_regions
from fasjax.preprocess import parsing as parsing_lib
from fasjax.preprocess import video

P = parsing_lib


def _rows_cols(parsing, cls):
  where = np.argwhere(parsing == cls)
  assert len(where), f'class {cls} missing'
  return where.mean(0)


@pytest.fixture(scope='module')
def astronaut():
  return skdata.astronaut()


@pytest.fixture(scope='module')
def live_and_spoof(astronaut):
  """The chain on the photo as a live frame and as a spoof frame."""
  pre = chain.Preprocessor()
  live, = pre.video([(0, astronaut)], live=True)
  spoof, = pre.video([(0, astronaut)], live=False)
  return live, spoof


def test_crop_contract(live_and_spoof):
  live, _ = live_and_spoof
  assert live.detected and live.mesh_score > 0.9
  assert live.image.shape == (256, 256, 3) and live.image.dtype == np.uint8
  assert live.depth.shape == (32, 32) and live.depth.dtype == np.float32
  assert live.parsing.shape == (256, 256) and live.parsing.dtype == np.uint8


def test_parsing_is_face_like(live_and_spoof):
  parsing = live_and_spoof[0].parsing
  l_eye, r_eye = _rows_cols(parsing, P.L_EYE), _rows_cols(parsing, P.R_EYE)
  l_brow, r_brow = _rows_cols(parsing, P.L_BROW), _rows_cols(parsing, P.R_BROW)
  nose = _rows_cols(parsing, P.NOSE)
  u_lip, l_lip = _rows_cols(parsing, P.U_LIP), _rows_cols(parsing, P.L_LIP)
  # Top to bottom: brows, eyes, nose, upper lip, lower lip.
  assert l_brow[0] < l_eye[0] < nose[0] < u_lip[0] < l_lip[0]
  assert r_brow[0] < r_eye[0] < nose[0]
  # The subject's left eye is on the image's right.
  assert r_eye[1] < nose[1] < l_eye[1]
  skin = (parsing == P.SKIN).mean()
  assert 0.15 < skin < 0.6
  # What the mesh cannot give is never produced.
  assert not np.isin(parsing, (6, 7, 8)).any()


def test_depth_is_face_like(live_and_spoof):
  live, spoof = live_and_spoof
  d = live.depth
  assert d.min() == 0.0 and 0.9 < d.max() <= 1.0
  peak = np.unravel_index(d.argmax(), d.shape)
  # The highest point lies on the nose region (parsing at 256 -> 32 grid).
  nose = live.parsing[4::8, 4::8] == P.NOSE
  assert nose[max(peak[0] - 1, 0):peak[0] + 2,
              max(peak[1] - 1, 0):peak[1] + 2].any()
  assert d[0, 0] == 0 and d[-1, -1] == 0  # background corners
  assert not spoof.depth.any()
  np.testing.assert_array_equal(spoof.parsing, live.parsing)


def test_depth_map_of_a_cone_peaks_at_its_apex():
  # A cone seen from the front: height falls off from the apex.
  angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
  ring = [(100 + r * np.cos(a), 100 + r * np.sin(a), -(80 - r))
          for r in (20, 50, 80) for a in angles]
  points = np.array([(100, 100, -80)] + ring, np.float32)
  d = depth_lib.depth_map(points, crop_size=200, size=32)
  assert np.unravel_index(d.argmax(), d.shape) in {(15, 15), (15, 16),
                                                   (16, 15), (16, 16)}
  assert d[16, 16] > d[16, 22] > d[16, 27] > 0
  assert d[0, 0] == 0


def test_regions_index_the_mesh():
  for name in dir(mesh_regions):
    value = getattr(mesh_regions, name)
    if name.isupper() and isinstance(value, tuple):
      assert all(0 <= i < mesh.NUM_LANDMARKS for i in value), name


def test_fill_missing_takes_nearest_box():
  a, b = detect.Box(0, 0, 10, 10), detect.Box(5, 5, 10, 10)
  assert detect.fill_missing([None, a, None, None, b]) == [a, a, a, b, b]
  assert detect.fill_missing([None, None]) is None


def test_crop_pads_outside_the_frame_with_black():
  frame = np.full((100, 100, 3), 200, np.uint8)
  out = detect.crop(frame, detect.Box(0, 0, 50, 50), margin=0.25, size=64)
  assert out.shape == (64, 64, 3)
  assert out[0, 0].max() == 0 and out[-1, -1].min() == 200


@pytest.fixture(scope='module')
def astronaut_video(astronaut, tmp_path_factory):
  photo = Image.fromarray(astronaut).resize((256, 256))
  frames = [np.asarray(photo.rotate(0, translate=(2 * i, i))) for i in range(7)]
  path = tmp_path_factory.mktemp('video') / 'astronaut.avi'
  media.write_video(path, frames)
  return path


def test_read_frames_samples_every_kth_up_to_n(astronaut_video):
  frames = video.read_frames(astronaut_video, config_lib.Sampling(every=3))
  assert [i for i, _ in frames] == [0, 3, 6]
  frames = video.read_frames(astronaut_video, config_lib.Sampling(2, max_frames=2))
  assert [i for i, _ in frames] == [0, 2]
  assert frames[0][1].shape == (256, 256, 3)
  upright = frames[0][1]
  flipped = video.read_frames(astronaut_video, config_lib.Sampling(2, 1),
                              rotate180=True)[0][1]
  np.testing.assert_array_equal(flipped, upright[::-1, ::-1])


@pytest.mark.parametrize('content', [b'', b'\x00\x01 not a video' * 50])
def test_unreadable_video_errors_name_the_file(content, tmp_path):
  path = tmp_path / 'broken.mov'
  path.write_bytes(content)
  with pytest.raises(video.VideoError, match='broken.mov'):
    video.read_frames(path)


def test_truncated_video_is_an_error(astronaut_video, tmp_path):
  content = astronaut_video.read_bytes()
  path = tmp_path / 'cut.avi'
  path.write_bytes(content[:len(content) // 3])
  with pytest.raises(video.VideoError, match='cut.avi: truncated'):
    video.read_frames(path, config_lib.Sampling(every=1))


def test_sampling_validates():
  with pytest.raises(ValueError):
    config_lib.Sampling(every=0)
  with pytest.raises(ValueError):
    config_lib.Sampling(max_frames=0)


def test_frame_without_face_borrows_the_nearest_box(astronaut):
  blank = np.full_like(astronaut, 90)
  out = chain.Preprocessor().video(
      [(0, astronaut), (5, blank), (10, blank)], live=True)
  assert [f.detected for f in out] == [True, False, False]
  assert out[0].mesh_score > 0.9 and out[1].mesh_score < 0.5
  assert [f.frame_index for f in out] == [0, 5, 10]
  # Cropped where the face was: the same square of a flat frame.
  assert (out[1].image == 90).all()


class _ScriptedDetector:
  """Confidence read off each frame's first pixel, upright or turned."""

  def detect_scored(self, frames):
    return [(None, float(f[0, 0, 0]) / 100) for f in frames]


@pytest.mark.parametrize('upright, turned, expected', [
    (90, 99, True),    # a 0.09 gain: clearly more face-like turned over
    (90, 94, False),   # 0.04: within the margin
    (99, 83, False),   # the astronaut's 0.99 upright vs 0.83 turned
    (0, 0, False)])    # no face either way
def test_upside_down_compares_probe_frames_both_ways(upright, turned,
                                                     expected):
  frames = []
  for _ in range(7):
    f = np.zeros((4, 4, 3), np.uint8)
    f[0, 0, 0], f[-1, -1, 0] = upright, turned  # rot90(f, 2) swaps them
    frames.append(f)
  confidences = [upright / 100] * 7
  assert detect.upside_down(_ScriptedDetector(), frames,
                            confidences) is expected
  assert detect.ORIENT_MARGIN == 0.05


def test_an_upside_down_face_is_turned_upright_before_labelling(
    astronaut, live_and_spoof):
  pre = chain.Preprocessor()
  upright = live_and_spoof[0]
  turned, = pre.video([(0, np.rot90(astronaut, 2))], live=True)
  assert turned.turned180 and not upright.turned180
  # Turned back, the frame is the upright photograph: the same crop and
  # the same labels, where the mesh alone would have labelled an upright
  # face on an upside-down crop.
  np.testing.assert_array_equal(turned.image, upright.image)
  np.testing.assert_array_equal(turned.parsing, upright.parsing)
  np.testing.assert_array_equal(turned.depth, upright.depth)


def test_video_without_face_raises():
  blank = np.full((120, 160, 3), 90, np.uint8)
  with pytest.raises(chain.NoFaceError):
    chain.Preprocessor().video([(0, blank), (5, blank)], live=True)


def test_cli_writes_pngs_for_image_and_video(astronaut, astronaut_video,
                                             tmp_path):
  image_path = tmp_path / 'face.png'
  Image.fromarray(astronaut).save(image_path)
  assert cli.main([str(image_path), '--out', str(tmp_path / 'img')]) == 0
  crop = np.asarray(Image.open(tmp_path / 'img' / 'face_f00000_crop.png'))
  depth = np.asarray(Image.open(tmp_path / 'img' / 'face_f00000_depth.png'))
  parsing = Image.open(tmp_path / 'img' / 'face_f00000_parsing.png')
  assert crop.shape == (256, 256, 3) and depth.shape == (32, 32)
  assert parsing.mode == 'P' and np.asarray(parsing).max() <= 12
  assert cli.main([str(astronaut_video), '--out', str(tmp_path / 'vid'),
                   '--every', '3', '--max-frames', '2', '--spoof']) == 0
  written = sorted(p.name for p in (tmp_path / 'vid').iterdir())
  assert len(written) == 6 and written[0] == 'astronaut_f00000_crop.png'
  depth = np.asarray(Image.open(tmp_path / 'vid' /
                                'astronaut_f00003_depth.png'))
  assert not depth.any()  # spoof


def test_cli_reports_unreadable_input(tmp_path, capsys):
  path = tmp_path / 'empty.avi'
  path.write_bytes(b'')
  assert cli.main([str(path), '--out', str(tmp_path / 'o')]) == 1
  assert 'empty.avi' in capsys.readouterr().err


def test_module_entry_point():
  root = pathlib.Path(__file__).resolve().parents[1]
  result = subprocess.run(
      [sys.executable, '-m', 'fasjax.preprocess', '--help'], cwd=root,
      capture_output=True, text=True, check=True, timeout=60)
  assert '--out' in result.stdout


def test_read_image_checks_before_decoding(tmp_path):
  Image.new('RGB', (40, 30), (10, 200, 30)).save(tmp_path / 'ok.png')
  image = video.read_image(tmp_path / 'ok.png')
  assert image.shape == (30, 40, 3) and tuple(image[0, 0]) == (10, 200, 30)
  with pytest.raises(video.VideoError, match='ok.png: image of 40x30 pixels '
                     'exceeds --max_pixels=1000'):
    video.read_image(tmp_path / 'ok.png', max_pixels=1000)
  png = (tmp_path / 'ok.png').read_bytes()
  (tmp_path / 'cut.png').write_bytes(png[:len(png) // 2])
  with pytest.raises(video.VideoError, match='cut.png: corrupt or truncated'):
    video.read_image(tmp_path / 'cut.png')
  (tmp_path / 'notes.txt').write_text('not an image')
  with pytest.raises(video.NotAnImageError, match='notes.txt'):
    video.read_image(tmp_path / 'notes.txt')
