"""Landmark indices of face regions in MediaPipe's 468-point mesh.

Facts of the mesh topology, from MediaPipe's published face mesh connection
lists (face oval, eyes, eyebrows, lips); the nose set is chosen here from the
mesh's nose points. Subject's left = image right for a frontal face (as in
the parsing classes, see `fasjax.datasets.synthetic_fas.render`).
"""

# Closed contours, in order around the region.
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397,
             365, 379, 378, 400, 377, 152, 148, 176, 149, 150, 136, 172, 58,
             132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159,
             160, 161, 246)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386,
            387, 388, 466)
RIGHT_BROW = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46)
LEFT_BROW = (300, 293, 334, 296, 336, 285, 295, 282, 283, 276)

# Lip lines from mouth corner 61 (subject's right) to corner 291.
_UPPER_OUTER = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
_LOWER_OUTER = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
# Inner lines from inner corner 78 to inner corner 308.
_UPPER_INNER = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
_LOWER_INNER = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
UPPER_LIP = _UPPER_OUTER + _UPPER_INNER[::-1]
LOWER_LIP = _LOWER_OUTER + _LOWER_INNER[::-1]
MOUTH = _UPPER_INNER + _LOWER_INNER[::-1]  # the opening between the lips

# Nose bridge, tip, alae and nostrils: filled as their convex hull.
NOSE_POINTS = (168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 98, 327, 64, 294, 48,
               278, 129, 358, 102, 331, 49, 279, 209, 429, 122, 351, 193, 417)
