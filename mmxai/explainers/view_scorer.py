"""Scoring perturbed copies of one view as the model's view-averaged
decision (:class:`ViewScorer`)."""
import torch
from torch import Tensor

from .options import SCORES, check_choice


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

    Args:
        adapter: the explainer's model adapter.
        inputs: preprocessed inputs (the model's layout).
        score: ``'prob'`` or ``'logit'`` (above).
    """

    def __init__(self, adapter, inputs: Tensor, score: str = 'prob'):
        check_choice('score', score, SCORES)
        self.adapter = adapter
        self.score = score
        self.video = adapter.to_video(inputs).detach()  # [B, V, C, T, H, W]
        b, v = self.video.shape[:2]
        with torch.no_grad():  # not inference mode: STEP differentiates
            per_view = torch.stack([
                torch.cat([self.logits(self.video[i, j:j + 1])
                           for j in range(v)]) for i in range(b)])
        self.view_logits = per_view.clone()  # [B, V, K]
        self.sum_logits = self.view_logits.sum(1)  # [B, K]
        self.view_probs = self.view_logits.float().softmax(-1)  # [B, V, K]
        self.num_views = v

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
