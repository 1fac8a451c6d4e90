r"""One full meta iteration in fasjax against a PyTorch port, same CPU, same run.

The JAX side is `fasjax.meta.train_step`, jitted. The PyTorch side is written
here as the reference RFMetaFAS code runs an iteration, extended with the
paper's branches: one forward of the multi-task network per source domain
(so BatchNorm statistics are per domain), depth MSE and 13-class parsing
cross-entropy on every domain, the ASC (conv + ECA) feeding the meta learner
beside f, for each meta-train domain an inner SGD step on the meta learner's
parameters from `torch.autograd.grad(..., create_graph=True)` (second order),
the meta-test losses under each adapted parameter set (functional forward),
one backward of the total and one Adam step (weight decay in the gradient).
Both sides share architecture, widths, batch, input size and loss weights.

Timing: one warm-up step each, then `--repeats` steps alternating JAX and
PyTorch so that load changes on a shared machine hit both alike; medians are
reported. `gflops_per_s` is the JAX step's FLOP count from XLA's cost analysis
(of the plain-conv step: the same arithmetic for every `--conv-impl`) over
the JAX median; `peak_gflops_per_s` is a dense float32
2048x2048 matmul in JAX, timed between the steps of the same run.

  PYTHONPATH=. python benchmarks/train_step.py --json              # defaults
  PYTHONPATH=. python benchmarks/train_step.py --conv-impl=matmul --json
  PYTHONPATH=. python benchmarks/train_step.py --size=256 --analyze-only --json

`--analyze-only` compiles the JAX step without running it and prints XLA's
FLOP count and memory estimate (for planning GPU runs; no PyTorch needed).
"""

import argparse
import functools
import os
import statistics
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fasjax import meta
from fasjax import models
from fasjax.models import layers
import bench_common  # benchmarks/, next to this script

NUM_CLASSES = 13
# The unit as imported, before `make_networks` may swap it.
_PLAIN_UNIT = layers.ConvBNReLU
LOSS = dict(cls=1.0, dep=10.0, seg=1.0, trip=0.5, inner_lr=1e-3,
            inner_trip=1.0, margin=0.1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
  """Command-line options."""
  p = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
  bench_common.add_step_shape_args(p)
  p.add_argument('--conv-impl', default='xla', choices=layers.CONV_IMPLS)
  p.add_argument('--dtype', default='float32', choices=('float32', 'bfloat16'))
  p.add_argument('--repeats', type=int, default=3)
  p.add_argument('--threads', type=int, default=0,
                 help='torch intra-op threads (0: torch default)')
  p.add_argument('--no-torch', action='store_true')
  p.add_argument('--analyze-only', action='store_true',
                 help='compile the JAX step, print XLA analyses, do not run')
  p.add_argument('--json', action='store_true', help='one JSON line only')
  return p.parse_args(argv)


# ----------------------------------------------------------------------------
# JAX side.


def make_networks(width: float, conv_impl: str = 'xla',
                  dtype: Any = jnp.float32,
                  hp: meta.MetaHParams | None = None) -> meta.Networks:
  """fasjax's networks with the conv implementation `conv_impl`."""
  hp = hp or meta.MetaHParams()
  fields = models.MultiTaskNet.__dataclass_fields__
  if 'conv_impl' in fields:
    return meta.Networks(
        models.MultiTaskNet(width=width, dtype=dtype, conv_impl=conv_impl),
        models.MetaLearner(width=width, dtype=dtype, conv_impl=conv_impl), hp)
  # Until the model modules carry `conv_impl` themselves, change the default
  # of the unit they all build (they look it up at trace time).
  layers.ConvBNReLU = _PLAIN_UNIT
  if conv_impl != 'xla':
    class _ConvBNReLU(_PLAIN_UNIT):
      conv_impl: str = 'matmul'
    layers.ConvBNReLU = _ConvBNReLU
  return meta.Networks(models.MultiTaskNet(width=width, dtype=dtype),
                       models.MetaLearner(width=width, dtype=dtype), hp)


def synthetic_batch(domains: int, batch: int, size: int,
                    seed: int = 0) -> dict[str, np.ndarray]:
  """A [D, B, ...] batch of the train stream's shapes (live first)."""
  rng = np.random.default_rng(seed)
  half = batch // 2
  label = np.tile(np.r_[np.ones(half), np.zeros(batch - half)], (domains, 1))
  d = size // 8
  return {
      'image': rng.random((domains, batch, size, size, 6), np.float32),
      'depth': (rng.random((domains, batch, d, d), np.float32)
                * label[..., None, None]).astype(np.float32),
      'parsing': rng.integers(0, NUM_CLASSES, (domains, batch, size, size),
                              dtype=np.int32),
      'label': label.astype(np.int32),
  }


def compile_jax_step(nets: meta.Networks, batch: dict[str, np.ndarray],
                     size: int):
  """(compiled step, abstract state, compile seconds) without running it."""
  tx = meta.make_optimizer(1e-3, 0.9, 0.999, 1e-8, 5e-5)
  init = functools.partial(meta.init_state, nets, tx, image_size=size)
  with jax.threefry_partitionable(False):
    state_shape = jax.eval_shape(init, jax.random.PRNGKey(0))
  step = jax.jit(functools.partial(meta.train_step, nets=nets, tx=tx),
                 donate_argnums=0)
  t0 = time.perf_counter()
  compiled = step.lower(state_shape, batch).compile()
  compile_s = time.perf_counter() - t0
  return compiled, tx, compile_s


def plain_flops(width: float, dtype: Any, batch: dict[str, np.ndarray],
                size: int) -> float:
  """FLOPs of the step with XLA convs (the same arithmetic as any impl).

  XLA's cost analysis counts a loop body once, so the matmul path's tap loop
  would be under-counted; the un-optimised HLO of the plain path is not.
  """
  nets = make_networks(width, 'xla', dtype)
  tx = meta.make_optimizer(1e-3, 0.9, 0.999, 1e-8, 5e-5)
  init = functools.partial(meta.init_state, nets, tx, image_size=size)
  with jax.threefry_partitionable(False):
    state_shape = jax.eval_shape(init, jax.random.PRNGKey(0))
  lowered = jax.jit(functools.partial(meta.train_step, nets=nets,
                                      tx=tx)).lower(state_shape, batch)
  cost = lowered.cost_analysis()
  if isinstance(cost, list):
    cost = cost[0]
  return float(cost['flops'])


def xla_analysis(compiled) -> dict[str, float]:
  """FLOPs and memory of a compiled computation from XLA's analyses."""
  cost = compiled.cost_analysis()
  if isinstance(cost, list):  # Older jax returns one dict per computation.
    cost = cost[0]
  out = {'flops': float(cost.get('flops', float('nan')))}
  mem = compiled.memory_analysis()
  if mem is not None:
    args = mem.argument_size_in_bytes
    outs = mem.output_size_in_bytes
    temp = mem.temp_size_in_bytes
    alias = mem.alias_size_in_bytes
    out.update(argument_bytes=args, output_bytes=outs, temp_bytes=temp,
               peak_bytes_estimate=args + outs + temp - alias)
  return out


def peak_matmul_s(n: int = 2048) -> float:
  """Seconds of one float32 n x n matmul (median of 5, after warm-up)."""
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
  mm = jax.jit(jnp.matmul)
  mm(a, a).block_until_ready()
  times = []
  for _ in range(5):
    t0 = time.perf_counter()
    mm(a, a).block_until_ready()
    times.append(time.perf_counter() - t0)
  return statistics.median(times)


# ----------------------------------------------------------------------------
# PyTorch side (imported only when used: torch is not a fasjax dependency).


def build_torch(width: float):
  """The PyTorch port: (multi-task net, meta learner), fasjax's topology."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch import nn  # pylint: disable=g-import-not-at-top
  from torch.nn import functional as F  # pylint: disable=g-import-not-at-top

  sc = lambda c: layers.scaled(c, width)

  class Unit(nn.Sequential):
    def __init__(self, cin, cout):
      conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
      nn.init.xavier_normal_(conv.weight)
      super().__init__(conv, nn.BatchNorm2d(cout, eps=1e-5, momentum=0.1),
                       nn.ReLU())

  class ECA(nn.Module):
    def __init__(self, channels):
      super().__init__()
      k = models.eca_kernel_size(channels)
      self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)

    def forward(self, x):
      w = self.conv(x.mean((2, 3))[:, None, :])[:, 0]
      return x * torch.sigmoid(w)[:, :, None, None]

  class MultiTask(nn.Module):
    def __init__(self):
      super().__init__()
      self.inc = Unit(6, sc(64))
      blocks, cin = [], sc(64)
      for _ in range(3):
        units = []
        for c in (128, 196, 128):
          units.append(Unit(cin, sc(c)))
          cin = sc(c)
        blocks.append(nn.Sequential(*units, nn.MaxPool2d(2)))
      self.blocks = nn.ModuleList(blocks)
      self.depth = nn.Sequential(Unit(3 * sc(128), sc(128)),
                                 Unit(sc(128), sc(64)), Unit(sc(64), 1))
      stages, cin = [], sc(128)
      for skip, c in zip((sc(128), sc(128), sc(64)), (128, 64, 64)):
        stages.append(nn.Sequential(Unit(cin + skip, sc(c)),
                                    Unit(sc(c), sc(c))))
        cin = sc(c)
      self.stages = nn.ModuleList(stages)
      self.classifier = nn.Conv2d(cin, NUM_CLASSES, 1)
      self.asc = nn.Sequential(Unit(cin, sc(128)), ECA(sc(128)))

    def forward(self, x):
      x1 = self.inc(x)
      maps, h = [x1], x1
      for block in self.blocks:
        h = block(h)
        maps.append(h)
      x1, x2, x3, x4 = maps
      f = x4.shape[-1]
      catfeat = torch.cat([F.adaptive_avg_pool2d(x2, f),
                           F.adaptive_avg_pool2d(x3, f), x4], 1)
      depth = self.depth(catfeat)[:, 0]
      h = x4
      for stage, skip in zip(self.stages, (x3, x2, x1)):
        up = F.interpolate(h, scale_factor=2, mode='bilinear',
                           align_corners=False)
        h = stage(torch.cat([up, skip], 1))
      parsing = self.classifier(h)
      asc = F.adaptive_avg_pool2d(self.asc(h), f)
      return depth, parsing, torch.cat([x4, asc], 1)

  class MetaLearner(nn.Module):
    def __init__(self):
      super().__init__()
      cin = 2 * sc(128)
      units = []
      for i, c in enumerate((128, 256, 512)):
        units.append(Unit(cin, sc(c)))
        if i < 2:
          units.append(nn.MaxPool2d(2))
        cin = sc(c)
      self.body = nn.Sequential(*units)
      self.fc = nn.Linear(cin, 1)
      nn.init.xavier_normal_(self.fc.weight)
      nn.init.zeros_(self.fc.bias)

    def forward(self, x):
      pooled = self.body(x).mean((2, 3))
      return F.normalize(pooled, dim=1), self.fc(pooled)[:, 0]

  return MultiTask(), MetaLearner()


def torch_losses():
  """(cls, triplet, depth, parsing) loss functions matching fasjax.losses."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch.nn import functional as F  # pylint: disable=g-import-not-at-top

  def triplet(emb, y):
    # One-side batch-all: live anchor and positive, spoof negative.
    # Squared distances by differences (cdist has no second derivative).
    live, spoof = emb[y == 1], emb[y == 0]
    d_ap = ((live[:, None] - live[None]) ** 2).sum(-1)
    d_an = ((live[:, None] - spoof[None]) ** 2).sum(-1)
    hinge = F.relu(d_ap[:, :, None] - d_an[:, None, :] + LOSS['margin'])
    hinge = hinge * (1 - torch.eye(len(live)))[:, :, None]
    return hinge.sum() / (hinge > 0).sum().clamp(min=1)

  return (F.binary_cross_entropy_with_logits, triplet, F.mse_loss,
          F.cross_entropy)


def make_torch_step(width: float):
  """One full second-order meta iteration in PyTorch, as a closure."""
  import torch  # pylint: disable=g-import-not-at-top
  from torch.func import functional_call  # pylint: disable=g-import-not-at-top

  torch.manual_seed(0)
  net, learner = build_torch(width)
  net.train()
  learner.train()
  opt = torch.optim.Adam(list(net.parameters()) + list(learner.parameters()),
                         lr=1e-3, betas=(0.9, 0.999), weight_decay=5e-5)
  cls_fn, trip_fn, dep_fn, seg_fn = torch_losses()
  names = [n for n, _ in learner.named_parameters()]
  gen = np.random.default_rng(0)

  def step(batch: dict[str, Any]) -> float:
    domains = batch['image'].shape[0]
    order = gen.permutation(domains)
    train_ids, test_id = order[:-1], order[-1]
    opt.zero_grad(set_to_none=True)
    total = 0.0
    adapted = []
    for d in train_ids:
      depth, parsing, feat = net(batch['image'][d])
      emb, logit = learner(feat)
      y = batch['label'][d]
      cls, trip = cls_fn(logit, y.float()), trip_fn(emb, y)
      theta = [p for p in learner.parameters()]
      grads = torch.autograd.grad(cls + LOSS['inner_trip'] * trip, theta,
                                  create_graph=True)
      adapted.append({n: p - LOSS['inner_lr'] * g
                      for n, p, g in zip(names, theta, grads)})
      total = total + (LOSS['cls'] * cls + LOSS['trip'] * trip
                       + LOSS['dep'] * dep_fn(depth, batch['depth'][d])
                       + LOSS['seg'] * seg_fn(parsing, batch['parsing'][d]))
    depth, parsing, feat = net(batch['image'][test_id])
    y = batch['label'][test_id]
    total = total + (LOSS['dep'] * dep_fn(depth, batch['depth'][test_id])
                     + LOSS['seg'] * seg_fn(parsing,
                                            batch['parsing'][test_id]))
    for params in adapted:
      emb, logit = functional_call(learner, params, (feat,))
      total = total + (LOSS['cls'] * cls_fn(logit, y.float())
                       + LOSS['trip'] * trip_fn(emb, y))
    total.backward()
    opt.step()
    return float(total.detach())

  return step


def torch_batch(batch: dict[str, np.ndarray]) -> dict[str, Any]:
  """The numpy batch as NCHW torch tensors."""
  import torch  # pylint: disable=g-import-not-at-top
  return {
      'image': torch.from_numpy(
          np.ascontiguousarray(batch['image'].transpose(0, 1, 4, 2, 3))),
      'depth': torch.from_numpy(batch['depth']),
      'parsing': torch.from_numpy(batch['parsing'].astype(np.int64)),
      'label': torch.from_numpy(batch['label'].astype(np.int64)),
  }


# ----------------------------------------------------------------------------


def _timed(fn) -> float:
  t0 = time.perf_counter()
  fn()
  return time.perf_counter() - t0


def run(args: argparse.Namespace) -> dict[str, Any]:
  """Compiles, analyses and (unless --analyze-only) times both steps."""
  dtype = jnp.dtype(args.dtype)
  nets = make_networks(args.width, args.conv_impl, dtype)
  batch = synthetic_batch(args.domains, args.batch, args.size)
  compiled, tx, compile_s = compile_jax_step(nets, batch, args.size)
  analysis = xla_analysis(compiled)
  if args.conv_impl != 'xla':
    analysis['flops'] = plain_flops(args.width, dtype, batch, args.size)
    make_networks(args.width, args.conv_impl, dtype)  # Restore the unit.
  result: dict[str, Any] = {
      'size': args.size, 'width': args.width, 'batch': args.batch,
      'domains': args.domains, 'conv_impl': args.conv_impl,
      'dtype': args.dtype, 'backend': jax.default_backend(),
      'devices': jax.device_count(), 'cpu_count': os.cpu_count(),
      'compile_s': round(compile_s, 2),
      'step_gflop': round(analysis['flops'] / 1e9, 2),
  }
  if 'peak_bytes_estimate' in analysis:
    result['peak_memory_gb'] = round(analysis['peak_bytes_estimate'] / 2**30,
                                     3)
    result['temp_memory_gb'] = round(analysis['temp_bytes'] / 2**30, 3)
  if args.analyze_only:
    return result

  with jax.threefry_partitionable(False):
    state = jax.jit(functools.partial(meta.init_state, nets, tx,
                                      image_size=args.size))(
                                          jax.random.PRNGKey(0))
  device_batch = jax.device_put(batch)
  holder = {'state': state}

  def jax_step():
    holder['state'], metrics = compiled(holder['state'], device_batch)
    jax.block_until_ready(metrics['loss'])

  torch_step = None
  if not args.no_torch:
    import torch  # pylint: disable=g-import-not-at-top
    if args.threads:
      torch.set_num_threads(args.threads)
    result['torch_version'] = torch.__version__
    result['torch_threads'] = torch.get_num_threads()
    tb = torch_batch(batch)
    step_fn = make_torch_step(args.width)
    torch_step = functools.partial(step_fn, tb)

  jax_step()  # Warm-up (first execution allocates).
  if torch_step:
    torch_step()
  jax_times, torch_times, peak_times = [], [], []
  for _ in range(args.repeats):
    jax_times.append(_timed(jax_step))
    peak_times.append(peak_matmul_s())
    if torch_step:
      torch_times.append(_timed(torch_step))
  jax_s = statistics.median(jax_times)
  peak_s = statistics.median(peak_times)
  result.update(
      jax_step_s=round(jax_s, 3),
      jax_images_per_s=round(args.domains * args.batch / jax_s, 2),
      gflops_per_s=round(analysis['flops'] / jax_s / 1e9, 1),
      peak_gflops_per_s=round(2 * 2048**3 / peak_s / 1e9, 1),
      jax_times_s=[round(t, 3) for t in jax_times])
  if torch_step:
    torch_s = statistics.median(torch_times)
    result.update(torch_step_s=round(torch_s, 3),
                  ratio=round(jax_s / torch_s, 3),
                  torch_times_s=[round(t, 3) for t in torch_times])
  result['loadavg_1m'] = round(os.getloadavg()[0], 2)
  return result


def main(argv: list[str] | None = None) -> None:
  """Prints the result (one JSON line with --json)."""
  args = parse_args(argv)
  bench_common.print_result(run(args), args.json)


if __name__ == '__main__':
  sys.exit(main())
