"""Pseudo depth: the face mesh's z rasterised with a z-buffer."""

import numpy as np
from scipy import spatial


def triangulate(points_xy: np.ndarray) -> np.ndarray:
  """Triangles (Tx3 indices) covering the mesh points' image-plane hull.

  MediaPipe's own triangle list lives in its C++ graph, not in the shipped
  model, so the surface is the Delaunay triangulation of the projected
  points: the same vertices and heights, a slightly different tessellation.
  """
  return spatial.Delaunay(points_xy).simplices


def depth_map(points: np.ndarray, crop_size: int, size: int = 32
              ) -> np.ndarray:
  """Depth map (size x size float32 in [0, 1]) of a mesh in a crop's pixels.

  Each pixel centre takes the interpolated height (-z) of the nearest
  triangle covering it (a z-buffer: correct for any triangle list; with the
  Delaunay tessellation each pixel is covered once, and near the occluding
  outline of a strongly turned head front and hidden points get blended).
  Heights are normalised over the mesh: 1 at the nearest
  point (the nose tip for a frontal face), 0 at the farthest and on the
  background, as the reference works' PRNet maps.
  """
  xy = points[:, :2] * (size / crop_size)
  height = -points[:, 2].astype(np.float64)
  tris = triangulate(xy)
  tri, px, py = _covered_pixels(xy[tris], size)
  a, b, c = (xy[tris[tri, k]] for k in range(3))  # N x 2 each
  centre = np.stack([px, py], -1) + 0.5
  # Barycentric coordinates of each candidate pixel centre in its triangle.
  v0, v1, v2 = b - a, c - a, centre - a
  den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
  den = np.where(np.abs(den) < 1e-12, np.inf, den)  # degenerate: no cover
  wb = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
  wc = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
  wa = 1.0 - wb - wc
  inside = (wa >= 0) & (wb >= 0) & (wc >= 0)
  h = (wa * height[tris[tri, 0]] + wb * height[tris[tri, 1]]
       + wc * height[tris[tri, 2]])
  zbuffer = np.full(size * size, -np.inf)
  np.maximum.at(zbuffer, (py * size + px)[inside], h[inside])
  lo, hi = height.min(), height.max()
  depth = np.where(np.isfinite(zbuffer), (zbuffer - lo) / max(hi - lo, 1e-6),
                   0.0)
  return np.clip(depth, 0.0, 1.0).reshape(size, size).astype(np.float32)


def _covered_pixels(corners: np.ndarray, size: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(triangle, x, y) of every pixel whose centre is in a triangle's bbox."""
  # Pixel (x, y) has its centre at (x + 0.5, y + 0.5).
  lo = np.clip(np.ceil(corners.min(1) - 0.5), 0, size).astype(int)  # T x 2
  hi = np.clip(np.floor(corners.max(1) - 0.5), -1, size - 1).astype(int)
  n = np.maximum(hi - lo + 1, 0)  # pixels per axis
  count = n[:, 0] * n[:, 1]
  tri = np.repeat(np.arange(len(corners)), count)
  k = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)
  nx = np.maximum(n[tri, 0], 1)
  return tri, lo[tri, 0] + k % nx, lo[tri, 1] + k // nx
