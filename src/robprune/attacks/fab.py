"""FAB-T: targeted Fast Adaptive Boundary attack, Croce & Hein 2020, "Minimally distorted adversarial
examples with a fast adaptive boundary attack" (ICML), L-inf.

FAB looks for the *smallest* perturbation that changes the decision: at the
current point x_i it linearises the decision boundary between the true class
y and the target t, g(z) = f_t(z) - f_y(z) ~ g(x_i) + grad g . (z - x_i), and
projects both x_i and the original x onto that hyperplane inside the box
[0, 1] (Eq. 5, the minimal L-inf projection). The next point is the biased
combination (Eq. 8)

    x_{i+1} = clip( (1 - a) (x_i + eta d_i) + a (x + eta d_orig) ),
    a = min(||d_i|| / (||d_i|| + ||d_orig||), a_max),

with overshoot eta = 1.05 and a_max = 0.1; when x_{i+1} is adversarial the
smallest such point is kept and the iterate steps back towards x:
x_{i+1} <- (1 - beta) x + beta x_{i+1}, beta = 0.9. A point counts as broken
only if its smallest adversarial perturbation is within eps. Inputs in [0, 1],
eps in pixel units (one number: FAB minimises one L-inf norm).
"""

from __future__ import annotations

import torch
from torch import nn

from .apgd import over_targets
from .common import any_in_group, check_eps, check_positive_int, frozen, misclassified, prepare_inputs
from .registry import register_attack

ETA, BETA, ALPHA_MAX = 1.05, 0.9, 0.1  # the paper's L-inf settings (also AutoAttack's)


def linf_projection(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per image, the smallest-L-inf d with w . d + b = 0 and x + d in [0, 1] (Eq. 5).

    Moving every coordinate by t in the direction that shrinks |w . d + b|,
    capped by the room the box leaves, changes w . d by G(t) = sum_i |w_i| min(t, room_i),
    a piecewise-linear increasing function; the answer is the smallest t with
    G(t) = |b|. When even the whole box is not enough, the furthest corner is returned.
    """
    shape = x.shape
    x, w = x.flatten(1), w.flatten(1)
    direction = -torch.sign(b)[:, None] * torch.sign(w)
    room = torch.where(direction > 0, 1.0 - x, x) * (direction != 0)
    weight = w.abs() * (direction != 0)
    room_sorted, order = room.sort(dim=1)
    w_sorted = weight.gather(1, order)
    below = (w_sorted * room_sorted).cumsum(1)  # sum_{j <= k} |w_j| room_j
    above = w_sorted.flip(1).cumsum(1).flip(1)  # sum_{j >= k} |w_j|
    gain = below + room_sorted * (above - w_sorted)  # G(room_k)
    need = b.abs()
    reach = gain >= need[:, None]
    k = reach.float().argmax(1)  # first breakpoint where G reaches |b|
    reachable = reach.any(1)
    rows = torch.arange(len(x), device=x.device)
    a = torch.where(k > 0, below[rows, (k - 1).clamp_min(0)], torch.zeros_like(need))
    t = (need - a) / above[rows, k].clamp_min(1e-12)
    t = torch.where(reachable, t, room_sorted[:, -1])
    return (direction * torch.minimum(room, t[:, None])).view(shape)


def _boundary(model: nn.Module, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor):
    """g = f_t - f_y at x and its input gradient."""
    x = x.detach().requires_grad_(True)
    logits = model(x).float()
    g = logits.gather(1, t[:, None]).squeeze(1) - logits.gather(1, y[:, None]).squeeze(1)
    (grad,) = torch.autograd.grad(g.sum(), x)
    return g.detach(), grad.detach()


def fab_targeted(model: nn.Module, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor, steps: int,
                 restarts: int = 1, seed: int = 0, stop_at: float | None = None,
                 groups: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(smallest adversarial points found, their L-inf norms; inf where none) towards one target per image.

    With ``stop_at``, an image stops once a point within that radius is found (the question "broken at eps?" is
    then answered; FAB would only shrink the norm further); ``groups`` (one id per row) stops every copy of an
    image (one per target) once one copy is that close.
    """
    n = len(x)
    view = (-1, 1, 1, 1)
    best = x.clone()
    best_norm = torch.full((n,), torch.inf, device=x.device)
    gid = torch.unique(groups, return_inverse=True)[1] if groups is not None else torch.arange(n, device=x.device)
    g_rand = torch.Generator(device=x.device).manual_seed(seed)
    for r in range(restarts):
        x_i = x.clone()
        if r > 0:  # later restarts start at random inside half the best radius found so far
            radius = torch.where(torch.isfinite(best_norm), best_norm, torch.ones_like(best_norm)).view(view)
            noise = torch.empty_like(x).uniform_(-1.0, 1.0, generator=g_rand)
            x_i = (x + 0.5 * radius * noise / noise.flatten(1).abs().amax(1).clamp_min(1e-12).view(view)).clamp(0, 1)
        for _ in range(steps):
            a = torch.arange(n, device=x.device) if stop_at is None else \
                (~any_in_group(gid, best_norm <= stop_at)).nonzero().squeeze(1)
            if len(a) == 0:
                break
            xa, x0, ya = x_i[a], x[a], y[a]
            g, w = _boundary(model, xa, ya, target[a])
            d_i = linf_projection(xa, w, g)
            g_orig = g + (w * (x0 - xa)).flatten(1).sum(1)
            d_orig = linf_projection(x0, w, g_orig)
            n_i = d_i.flatten(1).abs().amax(1)
            n_orig = d_orig.flatten(1).abs().amax(1)
            alpha = (n_i / (n_i + n_orig).clamp_min(1e-12)).clamp(0.0, ALPHA_MAX).view(view)
            xa = ((1 - alpha) * (xa + ETA * d_i) + alpha * (x0 + ETA * d_orig)).clamp(0.0, 1.0)
            fooled = misclassified(model, xa, ya)
            norm = (xa - x0).flatten(1).abs().amax(1)
            better = fooled & (norm < best_norm[a])
            best[a[better]], best_norm[a[better]] = xa[better], norm[better]
            x_i[a] = torch.where(fooled.view(view), (1 - BETA) * x0 + BETA * xa, xa)
    return best, best_norm


@register_attack("fab-t", label="FAB-T ({steps} steps, {targets} targets)", default_budget=100,
                 options=("targets", "restarts"), per_channel_eps=False)
def fab_t(model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int = 100, *, seed: int = 0,
          targets: int = 9, restarts: int = 1) -> torch.Tensor:
    """FAB-T at radius eps: once per target class (highest clean logits first, all targets in one batch, see
    ``over_targets``); a point stops once some target has found an adversarial point within eps.

    Returns the smallest adversarial point found where its L-inf distance is
    at most eps, else x itself.
    """
    check_eps(eps)
    check_positive_int(steps, "steps")
    check_positive_int(restarts, "restarts")
    x, y = prepare_inputs(x, y)
    with torch.no_grad(), frozen(model):
        logits = model(x).float()

    def attack(idx: torch.Tensor, target: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
        radius = eps + 1e-7  # float round-off at the boundary of the ball
        found, norm = fab_targeted(model, x[idx], y[idx], target, steps, restarts, seed, stop_at=radius,
                                   groups=groups)
        broken = (norm <= radius).view(-1, 1, 1, 1)
        # the found point lies within eps up to round-off: project it onto the ball
        inside = torch.minimum(torch.maximum(found, x[idx] - eps), x[idx] + eps).clamp(0.0, 1.0)
        return torch.where(broken, inside, x[idx])

    with frozen(model):
        return over_targets(model, x, y, logits, targets, attack).detach()
