"""fasjax networks (Flax Linen), used through pure functions in `fasjax.model_fns`."""

from fasjax.models.attention import AttentionSkip
from fasjax.models.attention import ECA
from fasjax.models.attention import eca_kernel_size
from fasjax.models.backbone import DepthEstimator
from fasjax.models.backbone import FeatureExtractor
from fasjax.models.meta_learner import MetaLearner
from fasjax.models.multitask import MultiTaskNet
from fasjax.models.parsing import NUM_CLASSES
from fasjax.models.parsing import ParsingDecoder
