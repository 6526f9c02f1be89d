"""One training-step API per model: a warm-up step, a critic step and a generator step, each
returning a dict of detached scalar losses. The training loop calls them; they know nothing about
Ray or MLflow. Networks may arrive wrapped in DDP; the critic loss (with its gradient penalty) is
one loss with one backward so DDP all-reduces the double-backward gradients too.

Naming follows BasicSR: `lq` is the low-quality (zero-filled LR) input, `gt` the ground-truth HR;
`lr` is only ever a learning rate.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

from mrisr_ray import losses
from mrisr_ray.config import Config, bf16_autocast, perceptual_active
from mrisr_ray.models.circle import CircleCritic, CircleGenerator
from mrisr_ray.models.cpce import CPCECritic, CPCEGenerator
from mrisr_ray.models.vgg import build_perceptual
from mrisr_ray.registry import model_spec

Scalars = dict[str, torch.Tensor]


@contextlib.contextmanager
def frozen(*modules: nn.Module) -> Iterator[None]:
    """No gradients for `modules` inside the block (the critic during a generator step)."""
    params = [p for m in modules for p in m.parameters()]
    states = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, state in zip(params, states, strict=True):
            p.requires_grad_(state)


def unwrap(module: nn.Module) -> nn.Module:
    """The plain module inside a DDP (or torch.compile) wrapper."""
    module = getattr(module, "module", module)
    return getattr(module, "_orig_mod", module)


class GanSteps:
    """Networks, optimizers and autocast shared by both models."""

    generators: dict[str, nn.Module]
    critics: dict[str, nn.Module]

    def __init__(self, config: Config, device: torch.device):
        self.config, self.loss, self.device = config, config.loss, device
        self.scorers: dict[str, nn.Module] = {}  # compiled critic forwards (`compile`)
        enabled = bf16_autocast(config.train, device.type)
        self.autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)

    def place(self, module: nn.Module) -> nn.Module:
        """`module` on the device, its convolution weights NHWC with `train.channels_last` (on CPU
        too: CPCE's steps, VGG-19 included, run 20-30% faster; docs/training.md)."""
        memory_format = torch.channels_last if self.config.train.channels_last else torch.contiguous_format
        return module.to(self.device, memory_format=memory_format)

    def scorer(self, name: str) -> nn.Module:
        """Critic `name` as the generator step calls it: compiled by `compile` (same weights)."""
        return self.scorers.get(name, self.critics[name])

    def make_optimizers(self) -> None:
        """New Adam optimizers (at construction, and when the adversarial phase begins)."""
        train = self.config.train
        fused = train.fused_adam and self.device.type == "cuda"
        self.opt_g = torch.optim.Adam([p for g in self.generators.values() for p in g.parameters()],
                                      lr=train.lr, betas=train.betas, fused=fused)
        self.opt_d = torch.optim.Adam([p for d in self.critics.values() for p in d.parameters()],
                                      lr=train.lr, betas=train.betas, fused=fused)

    def set_lr(self, lr: float) -> None:
        for optimizer in (self.opt_g, self.opt_d):
            for group in optimizer.param_groups:
                group["lr"] = lr

    def train(self, mode: bool = True) -> None:
        for net in [*self.generators.values(), *self.critics.values()]:
            net.train(mode)

    def state_dict(self) -> dict:
        nets = {name: unwrap(n).state_dict() for name, n in {**self.generators, **self.critics}.items()}
        return {"networks": nets, "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        for name, net in {**self.generators, **self.critics}.items():
            unwrap(net).load_state_dict(state["networks"][name])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])

    @property
    def sr_generator(self) -> nn.Module:
        """The LR → HR generator (what validation, reports and predict use)."""
        return unwrap(self.generators["G"])

    def compile(self) -> None:
        """torch.compile the generators (and CPCE's VGG), and the critics' forward where the
        generator step scores its output (`scorers`). The critic step stays eager: the gradient
        penalty's double backward does not compile."""
        self.generators = {k: torch.compile(g) for k, g in self.generators.items()}
        self.scorers = {k: torch.compile(d) for k, d in self.critics.items()}

    def _update(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


class CPCESteps(GanSteps):
    """λ_adv · WGAN-GP + λp · VGG-19 perceptual loss + λ_l1 · L1 (paper: λ_adv 1, λ_l1 0)."""

    def __init__(self, config: Config, device: torch.device, wrap: Callable[[nn.Module], nn.Module]):
        super().__init__(config, device)
        self.generators = {"G": wrap(self.place(CPCEGenerator(config.cpce)))}
        self.critics = {"D": wrap(self.place(CPCECritic(config.data.patch_size, config.cpce)))}
        self.perceptual = None
        if perceptual_active(config):  # vgg_weights was resolved on the driver (models/vgg.py)
            self.perceptual = self.place(build_perceptual(config.loss.perceptual, config.loss.vgg_weights,
                                                          config.train.seed))
        self.make_optimizers()

    def compile(self) -> None:
        super().compile()
        if self.perceptual is not None:
            self.perceptual = torch.compile(self.perceptual)

    def warmup_step(self, lq: torch.Tensor, gt: torch.Tensor) -> Scalars:
        """PSNR-oriented warm-up: L1 of G(lq) to gt, no critic, no VGG."""
        with self.autocast():
            pixel = losses.l1(self.generators["G"](lq), gt)
        self._update(self.opt_g, pixel)
        return {"g_loss": pixel.detach(), "g_l1": pixel.detach()}

    def critic_step(self, lq: torch.Tensor, gt: torch.Tensor) -> Scalars:
        g, d = self.generators["G"], self.critics["D"]
        with torch.no_grad(), self.autocast():
            fake = g(lq)
        with self.autocast():
            loss, penalty = losses.critic_loss(d, gt, fake.float(), self.loss.gp_weight)
        self._update(self.opt_d, loss)
        return {"d_loss": loss.detach(), "gp": penalty.detach()}

    def generator_step(self, lq: torch.Tensor, gt: torch.Tensor) -> Scalars:
        g, d, w = self.generators["G"], self.critics["D"], self.loss
        with frozen(d), self.autocast():
            sr = g(lq)
            adversarial = losses.adversarial_loss(self.scorer("D"), sr)
            total = w.lambda_adv * adversarial
            out = {"g_adv": adversarial.detach()}
            if self.perceptual is not None:
                perceptual = losses.perceptual_loss(self.perceptual, sr, gt)
                total = total + w.lambda_p * perceptual
                out["g_perceptual"] = perceptual.detach()
            if w.lambda_l1 > 0:
                pixel = losses.l1(sr, gt)
                total = total + w.lambda_l1 * pixel
                out["g_l1"] = pixel.detach()
        self._update(self.opt_g, total)
        return {"g_loss": total.detach(), **out}


class CircleSteps(GanSteps):
    """λ_adv · WGAN-GP both ways + λ1 · cycle L1 + λ2 · identity L1 + λ3 · JST(τ) + λ_l1 · L1
    (paper: λ_adv 1, λ_l1 0).

    G: LR → HR judged by D_Y (HR domain); F: HR → LR judged by D_X (LR domain).
    """

    def __init__(self, config: Config, device: torch.device, wrap: Callable[[nn.Module], nn.Module]):
        super().__init__(config, device)
        size, c = config.data.patch_size, config.circle
        self.generators = {"G": wrap(self.place(CircleGenerator(c))),
                           "F": wrap(self.place(CircleGenerator(c)))}
        self.critics = {"D_Y": wrap(self.place(CircleCritic(size, c))),
                        "D_X": wrap(self.place(CircleCritic(size, c)))}
        self.make_optimizers()

    def warmup_step(self, lq: torch.Tensor, gt: torch.Tensor) -> Scalars:
        """PSNR-oriented warm-up: L1 of G(lq) to gt and of F(gt) to lq, no critics."""
        with self.autocast():
            forward = losses.l1(self.generators["G"](lq), gt)
            backward = losses.l1(self.generators["F"](gt), lq)
            total = forward + backward
        self._update(self.opt_g, total)
        return {"g_loss": total.detach(), "g_l1": forward.detach(), "f_l1": backward.detach()}

    def critic_step(self, lq: torch.Tensor, gt: torch.Tensor) -> Scalars:
        g, f = self.generators["G"], self.generators["F"]
        d_y, d_x = self.critics["D_Y"], self.critics["D_X"]
        with torch.no_grad(), self.autocast():
            fake_gt, fake_lq = g(lq), f(gt)
        with self.autocast():
            loss_y, gp_y = losses.critic_loss(d_y, gt, fake_gt.float(), self.loss.gp_weight)
            loss_x, gp_x = losses.critic_loss(d_x, lq, fake_lq.float(), self.loss.gp_weight)
            loss = loss_y + loss_x
        self._update(self.opt_d, loss)
        return {"d_loss": loss.detach(), "d_y_loss": loss_y.detach(), "d_x_loss": loss_x.detach(),
                "gp": (gp_y + gp_x).detach() / 2}

    def generator_step(self, lq: torch.Tensor, gt: torch.Tensor) -> Scalars:
        g, f = self.generators["G"], self.generators["F"]
        d_y, d_x = self.critics["D_Y"], self.critics["D_X"]
        w = self.loss
        with frozen(d_y, d_x), self.autocast():
            sr, lq_hat = g(lq), f(gt)
            adversarial = (losses.adversarial_loss(self.scorer("D_Y"), sr)
                           + losses.adversarial_loss(self.scorer("D_X"), lq_hat))
            cycle = losses.cycle_loss(g, f, lq, gt, sr, lq_hat)
            identity = losses.identity_loss(g, f, lq, gt)
            jst = losses.jst_loss(sr.float(), gt, w.tau)
            total = w.lambda_adv * adversarial + w.lambda_cycle * cycle \
                + w.lambda_identity * identity + w.lambda_jst * jst
            out = {"g_adv": adversarial.detach(), "g_cycle": cycle.detach(),
                   "g_identity": identity.detach(), "g_jst": jst.detach()}
            if w.lambda_l1 > 0:
                pixel = losses.l1(sr, gt)
                total = total + w.lambda_l1 * pixel
                out["g_l1"] = pixel.detach()
        self._update(self.opt_g, total)
        return {"g_loss": total.detach(), **out}


def identity_wrap(module: nn.Module) -> nn.Module:
    return module


def build_steps(config: Config, device: torch.device | str = "cpu",
                wrap: Callable[[nn.Module], nn.Module] = identity_wrap) -> GanSteps:
    """Networks + optimizers of `config.model` on `device`; `wrap` is applied to every trainable
    network (e.g. Ray Train's `prepare_model` for DDP)."""
    return model_spec(config.model).steps(config, torch.device(device), wrap)
