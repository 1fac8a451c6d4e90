"""Pseudo face parsing: mesh regions filled in the 13-class scheme.

Classes (docs/design.md §1): 0 background, 1 skin, 2 l_brow, 3 r_brow, 4 l_eye,
5 r_eye, 6 eyeglasses, 7 l_ear, 8 r_ear, 9 nose, 10 mouth, 11 u_lip, 12 l_lip.

The mesh covers the face from the lower forehead to the chin, between the
cheeks' outlines. It cannot give: ears (7, 8; outside the mesh,
left as background), eyeglasses (6; the mesh fits the eyes through lenses),
hair, neck and the forehead above the mesh's top (background). These classes
never appear in fasjax's pseudo labels, unlike BiSeNet's in the reference.
"""

import numpy as np
from scipy import spatial
from skimage import draw

from fasjax.preprocess import mesh_regions as regions

BACKGROUND, SKIN, L_BROW, R_BROW, L_EYE, R_EYE = 0, 1, 2, 3, 4, 5
NOSE, MOUTH, U_LIP, L_LIP = 9, 10, 11, 12


def _fill(labels: np.ndarray, points_xy: np.ndarray, cls: int):
  rr, cc = draw.polygon(points_xy[:, 1], points_xy[:, 0], labels.shape)
  labels[rr, cc] = cls


def parsing_map(points: np.ndarray, crop_size: int, size: int = 256
                ) -> np.ndarray:
  """Class ids (size x size uint8) of a face mesh given in a crop's pixels."""
  xy = points[:, :2] * (size / crop_size)
  labels = np.zeros((size, size), np.uint8)
  nose = np.asarray(regions.NOSE_POINTS)
  nose_hull = nose[spatial.ConvexHull(xy[nose]).vertices]
  # Later regions paint over earlier ones: skin first, the mouth opening last.
  for contour, cls in ((regions.FACE_OVAL, SKIN), (nose_hull, NOSE),
                       (regions.LEFT_BROW, L_BROW),
                       (regions.RIGHT_BROW, R_BROW),
                       (regions.LEFT_EYE, L_EYE), (regions.RIGHT_EYE, R_EYE),
                       (regions.UPPER_LIP, U_LIP), (regions.LOWER_LIP, L_LIP),
                       (regions.MOUTH, MOUTH)):
    _fill(labels, xy[np.asarray(contour)], cls)
  return labels
