"""Scoring perturbed copies of one view as the model's view-averaged
decision (:class:`ViewScorer`)."""
from typing import Optional

import torch
from torch import Tensor

from .options import SCORES, check_choice
from .targets import check_score_kind


def model_inputs(adapter, video: Tensor) -> Tensor:
    """Canonical ``[N, V, C, T, H, W]`` -> the model's contiguous inputs
    (Recognizer2D's ``view`` needs contiguous memory)."""
    return adapter.from_video(video).contiguous()


class ViewScorer:
    """Score perturbed views as the model's view-averaged decision.

    Each view ``v`` of sample ``b`` is perturbed on its own; a batch of
    perturbed copies ``[N, C, T, H, W]`` is run as ``N`` one-view clips and
    combined with the other views' unperturbed scores, as the toolbox's
    ``average_clip`` combines views:

    * ``score='logit'``: the view-averaged pre-softmax score
      ``z = (z_v' + sum_{u != v} z_u) / V`` (``average_clips='score'``);
    * ``score='prob'``: the view-averaged probability
      ``p = (softmax(z_v') + sum_{u != v} softmax(z_u)) / V``, what
      ``predict`` reports as ``pred_score`` with ``average_clips='prob'``
      (softmax per view, then the mean; not the softmax of the mean).

    Since each view is scored on its own (TSN/TSM consensus runs within a
    view), this equals scoring the whole multi-view input with view ``v``
    perturbed, at the cost of one view. With ``V = 1`` both are exactly the
    model's score and its softmax.

    A model with one output (a regression head, or a callable target seen
    through :class:`.targets.TargetOutputAdapter`) is scored with
    ``score='logit'`` only: the softmax of one output is 1 (one line).

    The clean views are scored as one-view clips, ``views_per_pass`` of a
    sample per forward (``None``: all of them): memory does not grow with
    the number of views. Their average is the model's view-averaged score
    (:attr:`scores`) and the mean of their softmaxes what ``predict``
    reports with ``average_clips='prob'`` (:attr:`probs`), so the methods
    need no forward of all views at once.

    Args:
        adapter: the explainer's model adapter.
        inputs: preprocessed inputs (the model's layout).
        score: ``'prob'`` or ``'logit'`` (above).
        views_per_pass: clean views per forward.
    """

    def __init__(self, adapter, inputs: Tensor, score: str = 'prob',
                 views_per_pass: Optional[int] = None):
        check_choice('score', score, SCORES)
        self.adapter = adapter
        self.score = score
        self.video = adapter.to_video(inputs).detach()  # [B, V, C, T, H, W]
        b, v = self.video.shape[:2]
        step = max(1, views_per_pass or v)
        with torch.no_grad():  # not inference mode: STEP differentiates
            per_view = torch.stack([
                torch.cat([self.logits(self.video[i, j:j + step])
                           for j in range(0, v, step)]) for i in range(b)])
        self.view_logits = per_view.clone()  # [B, V, K]
        check_score_kind('the view scorer', score, per_view.shape[-1])
        self.sum_logits = self.view_logits.sum(1)  # [B, K]
        self.view_probs = self.view_logits.float().softmax(-1)  # [B, V, K]
        self.num_views = v
        #: ``[B, K]`` the view-averaged pre-softmax score
        self.scores = self.view_logits.mean(1)
        #: ``[B, K]`` each view's softmax averaged (``predict``'s 'prob')
        self.probs = self.view_probs.mean(1)

    def logits(self, clips: Tensor) -> Tensor:
        """``[N, C, T, H, W]`` one-view clips -> ``[N, K]`` pre-softmax."""
        return self.adapter.scores(model_inputs(self.adapter, clips[:, None]))

    def combine(self, b: int, v: int, logits: Tensor) -> Tensor:
        """Perturbed view logits ``[N, K]`` -> scores ``[N, K]``."""
        if self.score == 'prob':
            probs = logits.float().softmax(-1)
            if self.num_views > 1:
                others = torch.cat([self.view_probs[b, :v],
                                    self.view_probs[b, v + 1:]])
                probs = (probs + others.sum(0).to(probs)) / self.num_views
            return probs
        if self.num_views > 1:
            rest = (self.sum_logits[b] - self.view_logits[b, v]).to(logits)
            logits = (logits + rest) / self.num_views
        return logits.float()

    def __call__(self, b: int, v: int, clips: Tensor) -> Tensor:
        """Score ``[N, C, T, H, W]`` perturbed copies of view ``v`` of
        sample ``b``: ``[N, K]``."""
        return self.combine(b, v, self.logits(clips))

    def clean(self, b: int, v: int) -> Tensor:
        """``[K]`` score of the unperturbed input."""
        return self.combine(b, v, self.view_logits[b, v][None])[0]
