r"""A PyTorch port of fasjax's meta iteration, for speed comparisons only.

Written as the reference RFMetaFAS code runs an iteration, extended with the
paper's branches: one forward of the multi-task network per source domain
(so BatchNorm statistics are per domain), depth MSE and 13-class parsing
cross-entropy on every domain, the ASC (conv + ECA) feeding the meta learner
beside f, for each meta-train domain an inner SGD step on the meta learner's
parameters from `torch.autograd.grad(..., create_graph=True)` (second order),
the meta-test losses under each adapted parameter set (functional forward),
one backward of the total and one Adam step (weight decay in the gradient).
Architecture, widths and loss weights are fasjax's (the paper config's).

torch is not a fasjax dependency: it is imported inside the functions, so
importing this module costs nothing without it. Used by
`benchmarks/train_step.py`, `benchmarks/profile_step.py`,
`benchmarks/conv_layers.py` and `python -m fasjax.check_accelerator --torch`.
"""

from typing import Any

import numpy as np

from fasjax import models
from fasjax.models import layers

NUM_CLASSES = 13
# The paper config's loss weights and meta hyper-parameters.
LOSS = dict(cls=1.0, dep=10.0, seg=1.0, trip=0.5, inner_lr=1e-3,
            inner_trip=1.0, margin=0.1)


def default_device() -> str:
  """'cuda' when torch sees a GPU, else 'cpu'."""
  import torch  # pylint: disable=g-import-not-at-top
  return 'cuda' if torch.cuda.is_available() else 'cpu'


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
    hinge = hinge * (1 - torch.eye(len(live), device=emb.device))[:, :, None]
    return hinge.sum() / (hinge > 0).sum().clamp(min=1)

  return (F.binary_cross_entropy_with_logits, triplet, F.mse_loss,
          F.cross_entropy)


def make_torch_step(width: float, device: Any = 'cpu'):
  """One full second-order meta iteration in PyTorch, as a closure.

  The closure takes a batch from `torch_batch` (on the same device) and
  returns the total loss as a float, which waits for the device.
  """
  import torch  # pylint: disable=g-import-not-at-top
  from torch.func import functional_call  # pylint: disable=g-import-not-at-top

  torch.manual_seed(0)
  net, learner = build_torch(width)
  net.to(device).train()
  learner.to(device).train()
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
      theta = list(learner.parameters())
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


def torch_batch(batch: dict[str, np.ndarray],
                device: Any = 'cpu') -> dict[str, Any]:
  """A numpy [D, B, ...] batch as NCHW torch tensors on `device`."""
  import torch  # pylint: disable=g-import-not-at-top
  out = {
      'image': torch.from_numpy(
          np.ascontiguousarray(batch['image'].transpose(0, 1, 4, 2, 3))),
      'depth': torch.from_numpy(batch['depth']),
      'parsing': torch.from_numpy(batch['parsing'].astype(np.int64)),
      'label': torch.from_numpy(batch['label'].astype(np.int64)),
  }
  return {k: v.to(device) for k, v in out.items()}
