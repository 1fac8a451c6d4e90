"""Shared defaults and the argument parser of every protocol config.

A protocol config is `get_config(arg)` with a comma-separated argument string:

  python launch.py --config=configs/ocm_to_i.py:synthetic,smoke,seed=3 --workdir=W

Arguments:
  synthetic       use the built-in procedural benchmark `synthetic_fas`
                  (small images and widths, runs on a laptop CPU).
  smoke           tiny model, data and step count (for tests; seconds).
  large           with `synthetic`: the `<domain>_large` configs of
                  `synthetic_fas`, video counts of the real releases' order
                  (for studies; the model and schedule stay `synthetic`'s).
  no_parsing      drop the face-parsing loss (the network is unchanged).
  no_asc          the meta learner sees f only, no attention skip.
  no_triplet      drop the one-side triplet loss (inner and outer).
  no_meta         no inner step: every source domain's losses summed, with
                  the same networks and per-domain BatchNorm.
  normal_triplet  ordinary triplets (anchors of both classes).
  seed=N          the run's seed (parameters, data order, meta-test draws).

The paper's defaults (without `synthetic`) are 256x256x6 inputs, MADDG widths,
10 live + 10 spoof images per source domain, Adam 1e-3 with weight decay 5e-5.
"""

import ml_collections

from fasjax import compilation_cache

DOMAIN_NAMES = {'o': 'OULU-NPU', 'c': 'CASIA-FASD', 'i': 'Replay-Attack',
                'm': 'MSU-MFSD'}
REAL_BUILDERS = {'o': 'oulu_npu', 'c': 'casia_fasd', 'i': 'replay_attack',
                 'm': 'msu_mfsd'}
# Which real releases have an official development split (docs/design.md §2).
REAL_DEV_SPLITS = {'o': True, 'c': False, 'i': True, 'm': False}
ABLATIONS = ('no_parsing', 'no_asc', 'no_triplet', 'no_meta', 'normal_triplet')
FLAGS = ('synthetic', 'smoke', 'large') + ABLATIONS
VALUED = ('seed',)
# The paper-size default; the synthetic and smoke sizes need no remat.
REMAT_DEFAULT = 'domains'


def parse_arg(arg: str | None) -> dict[str, object]:
  """Parses 'synthetic,smoke,seed=3' into a dict; unknown names are an error."""
  parsed: dict[str, object] = {name: False for name in FLAGS}
  parsed['seed'] = 0
  valid = ', '.join(FLAGS + tuple(f'{v}=N' for v in VALUED))
  for token in filter(None, (t.strip() for t in (arg or '').split(','))):
    name, _, value = token.partition('=')
    if name in FLAGS and not value:
      parsed[name] = True
    elif name in VALUED and value:
      try:
        parsed[name] = int(value)
      except ValueError:
        raise ValueError(f'Config argument {name}={value!r} is not an integer. '
                         f'Valid arguments: {valid}.') from None
    else:
      raise ValueError(f'Unknown config argument {token!r}. '
                       f'Valid arguments: {valid}.')
  if parsed['large'] and not parsed['synthetic']:
    raise ValueError('Config argument `large` selects the large synthetic '
                     'benchmark; use it with `synthetic`.')
  if parsed['large'] and parsed['smoke']:
    raise ValueError('Config arguments `large` and `smoke` exclude each '
                     'other (smoke uses the miniature synthetic configs).')
  return parsed


def protocol_config(sources: str, target: str, arg: str | None
                    ) -> ml_collections.ConfigDict:
  """Builds the config of a leave-out protocol, e.g. sources='ocm', target='i'."""
  args = parse_arg(arg)
  c = ml_collections.ConfigDict()
  c.protocol = f'{sources}_to_{target}'
  c.seed = args['seed']
  c.variant = ','.join(a for a in ABLATIONS if args[a]) or 'full'

  c.data = ml_collections.ConfigDict()
  c.data.sources = list(sources)
  c.data.target = target
  c.data.data_dir = ml_collections.FieldReference(None, field_type=str)
  if args['synthetic']:
    suffix = '_large' if args['large'] else ''
    c.data.builders = {d: f'synthetic_fas/{d}{suffix}' for d in 'ocim'}
    c.data.dev_domains = list(sources)
  else:
    c.data.builders = dict(REAL_BUILDERS)
    c.data.dev_domains = [d for d in sources if REAL_DEV_SPLITS[d]]
  # docs/design.md §2: sources train on train+test, the target is tested on
  # train+test, and the sources' dev splits choose the honest threshold.
  c.data.train_splits = ['train', 'test']
  c.data.target_splits = ['train', 'test']
  c.data.dev_splits = ['dev']
  c.data.per_class_batch = 10
  c.data.flip = True
  c.data.shuffle_buffer = 1024

  c.model = ml_collections.ConfigDict()
  c.model.image_size = 256
  c.model.width = 1.0
  c.model.normalize_embedding = True
  c.model.use_asc = not args['no_asc']
  c.model.dtype = 'float32'  # 'bfloat16': bf16 compute, float32 parameters.
  # 'auto' picks per backend (fasjax/model_setup.py): native 'xla' convs on
  # GPUs and TPUs; on CPUs 'matmul' (3x3 weight gradients as nine matmuls,
  # the same math) at width >= 0.5, where it is faster.
  c.model.conv_impl = 'auto'
  # Rematerialisation of the multi-task net's forward pass (fasjax/meta.py):
  # 'none', 'conv' (keep conv outputs, recompute BatchNorm/ReLU), 'blocks'
  # (keep stage boundaries only) or 'domains' (domains one after another,
  # recomputed one at a time). REMAT_DEFAULT fits the paper-size step on one
  # 24 GB accelerator (docs/accelerators.md#memory).
  c.model.remat = REMAT_DEFAULT

  c.loss = ml_collections.ConfigDict()
  c.loss.lambda_cls = 1.0
  c.loss.lambda_dep = 10.0
  c.loss.lambda_seg = 0.0 if args['no_parsing'] else 1.0
  c.loss.lambda_trip = 0.0 if args['no_triplet'] else 0.5
  c.loss.lambda_meta_train = 1.0
  c.loss.lambda_meta_test = 1.0
  c.loss.one_side_triplet = not args['normal_triplet']
  c.loss.margin_all = 0.1
  c.loss.margin_hard = 0.5

  c.meta = ml_collections.ConfigDict()
  c.meta.enabled = not args['no_meta']
  c.meta.inner_lr = 1e-3
  c.meta.inner_trip_weight = 0.0 if args['no_triplet'] else 1.0
  c.meta.first_order = False

  c.optim = ml_collections.ConfigDict()
  c.optim.lr = 1e-3
  c.optim.b1 = 0.9
  c.optim.b2 = 0.999
  c.optim.eps = 1e-8
  c.optim.weight_decay = 5e-5

  c.num_steps = 5000
  c.hard_mining_step = 2500
  c.log_every = 50
  c.eval_every = 500
  c.checkpoint_every = 500
  c.keep_checkpoints = 3
  c.eval_batch_size = 64
  # JAX's persistent compilation cache (fasjax/compilation_cache.py): a rerun
  # loads the compiled step instead of compiling it; '' turns it off.
  c.compilation_cache_dir = compilation_cache.default_dir()
  # XLA's exec_time_optimization_effort in [-1, 1] for the train step; None:
  # per backend, -1 on TPUs (compiles ~2.5x faster), 0 elsewhere
  # (fasjax/compile_options.py).
  c.exec_time_optimization_effort = ml_collections.FieldReference(
      None, field_type=float)

  if args['synthetic']:
    # Sized so the README demo ends within 15 minutes on 2 CPU cores.
    c.model.remat = 'none'
    c.model.image_size = 64
    c.model.width = 0.125
    c.data.per_class_batch = 5
    c.num_steps = 1200
    c.hard_mining_step = 600
    c.log_every = 25
    c.eval_every = 200
    c.checkpoint_every = 200
  if args['smoke']:
    c.model.remat = 'none'
    c.model.image_size = 32
    c.model.width = 0.125
    c.data.per_class_batch = 2
    c.data.shuffle_buffer = 64
    c.num_steps = 6
    c.hard_mining_step = 3
    c.log_every = 2
    c.eval_every = 3
    c.checkpoint_every = 3
    c.keep_checkpoints = 2
    c.eval_batch_size = 32
    if args['synthetic']:
      c.data.builders = {d: f'synthetic_fas/{d}_smoke' for d in 'ocim'}
  return c
