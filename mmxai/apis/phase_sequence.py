"""``explain_phase_sequence``: which moments of a whole video drive a
two-stage phase model's phase at time t.

The model: the toolbox's ``Recognizer2D`` (a frame CNN) with mmxai's
``CausalMSTCNHead`` (a causal multi-stage TCN over the frame features).

1. **Features, once per frame.** The video is decoded at the model's
   sampling rate (the test pipeline sampler's ``frame_interval``, else the
   config's ``sample_fps``; or ``sample_fps=``), in batches of
   ``batch_size`` grid frames (bounded memory), through the config's own
   transforms after its decode step; the backbone and the head's pooling
   run once per frame and the sequence ``[D, T]`` is kept in a
   :class:`~mmxai.apis.feature_cache.FeatureCache` under
   ``out_dir/features`` (chunked, atomic, resumable, keyed by the video's
   content, the weights and the settings). Only frames not yet cached
   are computed: explaining minute 40 after minute 39 reuses every
   feature.
2. **The head only.** The prediction at every grid frame and, for each
   explained time t, the temporal attributions (occlusion, integrated
   gradients, frame Shapley values: :mod:`mmxai.explainers.
   sequence_attribution`) of the phase score at t over the context the
   head sees: ``context='full'`` (TeCNO's online model over the whole
   video; the receptive field ``R`` bounds it to frames ``t-R+1 .. t``,
   which gives exactly the whole-sequence output), or an int ``L`` (the
   model's ``L``-frame window, ``'window'``: the test pipeline's
   ``clip_len``, as the toolbox's test and the long-video windows mode
   see it).
3. **Outputs** (``mmxai.outputs.phase_sequence``): ``sequence.json`` and
   ``importance.npz`` (the times x grid-frames matrices) through the one
   writer, ``importance.csv``, ``importance.png`` (importance over the
   context of each explained t, with predicted and ground-truth phase
   ribbons), ``frames.png`` (CAMs on the top frames, ``cams=k``).
"""
import hashlib
import os
import os.path as osp
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from ..datasets.phase_labels import frame_ground_truth
from ..errors import ConfigError, InputError, TargetError
from ..explainers.sequence_attribution import (
    SCORES, check_phase_head, context_baseline, context_integrated_gradients,
    context_occlusion, context_shapley, receptive_field)
from ..fileio import check_writable, json_safe
from .feature_cache import FeatureCache
from ..preflight import check_video_file, parse_time_spec, read_ground_truth
from ..utils.model_state import preserved_model_state
from ..utils.status_line import StatusLine
from .class_names import given_class_names, matched_class_names
from .long_video import (VideoStream, WindowInputs, WindowPlan,
                         _decode_error, run_lock)
from .video_input import test_pipeline_cfg

__all__ = ['explain_phase_sequence', 'PhaseSequenceExplanation',
           'SEQUENCE_METHODS', 'sequence_grid', 'frame_features']

#: The temporal methods (CLI/API names).
SEQUENCE_METHODS = ('occlusion', 'ig', 'shapley')
_ALIASES = {'integrated_gradients': 'ig', 'frame_shapley': 'shapley',
            'feature_occlusion': 'occlusion'}


@dataclass
class PhaseSequenceExplanation:
    """What :func:`explain_phase_sequence` returns.

    Attributes:
        times: explained grid frames ``[N]`` (``times_s``: seconds).
        targets: the explained class at each ``[N]``.
        context_start: first grid frame of each context ``[N]``.
        importance: ``{method: [N, T] float32}``, grid frame ``s``'s
            importance to the score at ``times[i]`` (0 outside the context).
        records: one dict per explained time (scores, completeness,
            Shapley players, top frames).
        pred, probs: the prediction at every grid frame ``[T]``, ``[T, K]``.
        gt: ground truth at every grid frame ``[T]`` (-1 unknown) or None.
        frame_inds: the video frame of each grid frame ``[T]``.
        computed_frames: grid frames whose features this call computed.
        cams: per explained time, ``[(grid frame, map [h, w])]`` (``cams``).
    """
    video: str
    fps: float
    interval: int
    frame_inds: np.ndarray
    times: np.ndarray
    targets: np.ndarray
    context_start: np.ndarray
    importance: Dict[str, np.ndarray]
    records: List[Dict[str, Any]]
    pred: np.ndarray
    probs: np.ndarray
    gt: Optional[np.ndarray]
    class_names: List[str]
    receptive_field: int
    context: Any
    computed_frames: int = 0
    settings: Dict[str, Any] = field(default_factory=dict)
    timings: Dict[str, float] = field(default_factory=dict)
    files: Dict[str, str] = field(default_factory=dict)
    cams: List[List[tuple]] = field(default_factory=list)
    cache: Optional[FeatureCache] = None

    @property
    def times_s(self) -> np.ndarray:
        return self.frame_inds[self.times] / self.fps

    @property
    def grid_fps(self) -> float:
        return self.fps / self.interval

    @property
    def accuracy(self) -> Optional[float]:
        if self.gt is None or not (self.gt >= 0).any():
            return None
        ok = self.gt >= 0
        return float((self.pred[ok] == self.gt[ok]).mean())

    def label(self, c: int) -> str:
        return self.class_names[c] if 0 <= c < len(self.class_names) \
            else str(c)

    def top_frames(self, i: int, method: str = 'occlusion',
                   k: int = 3) -> np.ndarray:
        """The ``k`` grid frames of highest importance to ``times[i]``."""
        row = self.importance[method][i]
        a, t = int(self.context_start[i]), int(self.times[i])
        order = np.argsort(-row[a:t + 1], kind='stable')[:k]
        return order + a


# ----------------------------------------------------------- the grid
def sequence_grid(cfg, video_fps: float,
                  sample_fps: Optional[float] = None) -> int:
    """Video frames between two grid frames: from ``sample_fps``, else the
    test pipeline sampler's ``frame_interval``, else the config's
    ``sample_fps`` (its test dataset's, then its own).

    Raises:
        ConfigError: none of them.
    """
    fps = video_fps if video_fps and video_fps > 0 else 25.0
    if sample_fps is not None:
        if not sample_fps > 0:
            raise InputError(f'sample_fps {sample_fps}: give a rate > 0')
        return max(1, int(round(fps / float(sample_fps))))
    for t in test_pipeline_cfg(cfg):
        if 'Sample' in str(t.get('type', '')) and t.get('frame_interval'):
            return max(1, int(t['frame_interval']))
    ds = (cfg.get('test_dataloader') or {}).get('dataset') or {}
    rate = ds.get('sample_fps', cfg.get('sample_fps'))
    if rate:
        return max(1, int(round(fps / float(rate))))
    raise ConfigError('the config gives no sampling rate (no frame sampler '
                      'with frame_interval in its test pipeline, no '
                      'sample_fps): give sample_fps (--sample-fps)')


def _window_len(cfg) -> int:
    for t in test_pipeline_cfg(cfg):
        if 'Sample' in str(t.get('type', '')):
            return max(1, int(t.get('clip_len', 1) or 1))
    ds = (cfg.get('test_dataloader') or {}).get('dataset') or {}
    return max(1, int(ds.get('clip_len', cfg.get('clip_len', 1)) or 1))


# ------------------------------------------------------- the cache key
def _video_identity(video: str, stream: VideoStream) -> dict:
    """Content, not name: size and SHA-1 of the first and last MiB."""
    size = os.path.getsize(video)
    h = hashlib.sha1()
    with open(video, 'rb') as f:
        h.update(f.read(1 << 20))
        if size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            h.update(f.read(1 << 20))
    return dict(bytes=size, sha1=h.hexdigest(), frames=stream.num_frames,
                fps=round(stream.fps, 6), shape=list(stream.shape))


def _weights_fingerprint(model: nn.Module) -> str:
    """SHA-1 of what the features depend on: the backbone's and the
    head's pooling weights and buffers, and the input normalisation."""
    h = hashlib.sha1()
    for name, t in sorted(model.state_dict().items()):
        if name.startswith(('backbone.', 'cls_head.reduce.',
                            'data_preprocessor.')) or (
                name.startswith('neck.')):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    pre = getattr(model, 'data_preprocessor', None)
    for attr in ('mean', 'std'):
        v = getattr(pre, attr, None)
        if isinstance(v, torch.Tensor):
            h.update(v.detach().cpu().numpy().tobytes())
    head = model.cls_head
    h.update(repr((head.spatial_pool, head.grid_size,
                   head.in_channels)).encode())
    return h.hexdigest()


# ------------------------------------------------------------ features
def frame_features(model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Pooled frame features ``[D, m]`` of preprocessed frames ``inputs
    [1, m, C, H, W]`` (backbone + the head's pooling, as
    :class:`~mmxai.models.FeatureSequence`)."""
    feats, kw = model.extract_feat(inputs, test_mode=True)
    return model.cls_head.pool(feats, kw['num_segs'])[0]


def _fill_cache(model, cfg, stream, cache, todo, interval, batch_size,
                progress, timings) -> None:
    """Compute the features of grid frames ``todo`` into ``cache``."""
    if not len(todo):
        return
    plan = WindowPlan([0], batch_size * interval,
                      np.arange(batch_size) * interval, 'segments', None,
                      stream.fps, stream.num_frames, interval, 0,
                      stream.num_frames, 'one')
    inputs = WindowInputs(cfg, plan, stream.shape, stream.video)
    bar = StatusLine(len(todo), 'features', 'frames', progress)
    done = 0
    for lo in range(0, len(todo), batch_size):
        grid = todo[lo:lo + batch_size]
        frames = grid * interval
        t = time.perf_counter()
        try:
            got = stream.get(frames)
        except Exception as e:  # noqa: BLE001 - decord raises its own
            stream.reopen()
            try:  # a fresh reader once: read-ahead errors
                got = stream.get(frames)
            except Exception:  # noqa: BLE001
                raise InputError(
                    f'{osp.basename(stream.video)}: video frames '
                    f'{int(frames[0])}..{int(frames[-1])} do not decode '
                    f'({_decode_error(e)}); the features cached so far are '
                    'kept: re-encode the video (ffmpeg -i IN -c:v libx264 '
                    'OUT.mp4) or end the run before them (until=\'last\')'
                ) from None
        timings['decode'] += time.perf_counter() - t
        t = time.perf_counter()
        sample = inputs.sample(got, frames)
        del got
        data = model.data_preprocessor(
            dict(inputs=[sample['inputs']],
                 data_samples=[sample['data_samples']]), False)
        timings['pipeline'] += time.perf_counter() - t
        t = time.perf_counter()
        with torch.no_grad():
            f = frame_features(model, data['inputs'])
        timings['features'] += time.perf_counter() - t
        cache.add(grid, f.T.float().cpu().numpy())
        done += len(grid)
        bar.update(done)
    cache.flush()
    bar.update(done, force=True)


# --------------------------------------------------------------- times
def _parse_times(times, duration: float) -> Union[str, List[float]]:
    """``'transitions'``, or seconds: ``'every:30s'``, a list of specs."""
    if times is None:
        return 'transitions'
    if isinstance(times, str):
        s = times.strip().lower()
        if s == 'transitions':
            return s
        if s.startswith('every'):
            spec = s[5:].lstrip(':= ')
            step = parse_time_spec(spec, '--times every:')
            if step[1] != 's' or step[0] <= 0:
                raise InputError(f'--times {times!r}: give a step in '
                                 'seconds, e.g. every:30s')
            n = int(duration // step[0] + 1e-9)
            return [step[0] * (k + 1) for k in range(n)
                    if step[0] * (k + 1) < duration] or [0.0]
        times = [times]
    out = []
    for x in times:
        v, unit = parse_time_spec(x, '--times')
        if unit == 'f':
            raise InputError(f'--times {x!r}: give times in seconds, '
                             'minutes or m:ss (not frames)')
        if v >= duration + 1e-9 or v < 0:
            raise InputError(f'--times {x!r} is outside the video (it '
                             f'lasts {duration:.1f} s); give times before '
                             'its end')
        out.append(v)
    return out


# ------------------------------------------------------- the prediction
def _predict(head, seq: torch.Tensor, context: int) -> torch.Tensor:
    """Last-stage probabilities ``[T, K]`` at every grid frame: the whole
    causal sequence (``context`` 0), or each frame's ``context``-frame
    window ending there."""
    T = seq.shape[-1]
    with torch.no_grad():
        if context <= 0:
            return head.sequence_logits(seq[None])[-1][0].T.softmax(-1)
        out = torch.empty(T, head.num_classes)
        for t in range(min(T, context - 1)):
            out[t] = head.sequence_logits(seq[None, :, :t + 1])[-1][0, :, -1]
        if T >= context:
            win = seq.unfold(1, context, 1).permute(1, 0, 2)  # [W, D, L]
            step = max(1, (1 << 23) // max(1, win[0].numel()))
            for lo in range(0, len(win), step):
                out[context - 1 + lo:context - 1 + lo + step] = \
                    head.sequence_logits(win[lo:lo + step].contiguous()
                                         )[-1][:, :, -1]
        return out.softmax(-1)


# --------------------------------------------------------------- the run
def explain_phase_sequence(
        model: Union[nn.Module, str], video: str,
        times: Union[None, str, Sequence[Any]] = None,
        methods: Sequence[str] = SEQUENCE_METHODS,
        target: Union[str, int] = 'pred', context: Union[str, int] = 'full',
        baseline: Any = 'mean', score: str = 'logit',
        out_dir: Optional[str] = None, gt: Optional[str] = None,
        class_names: Union[None, str, Sequence[str]] = None,
        sample_fps: Optional[float] = None, until: str = 'video',
        batch_size: int = 32, chunk: int = 256,
        refresh_features: bool = False, ig_steps: int = 32,
        occlusion_block: int = 1, shapley_players: int = 8,
        shapley_max_exact: int = 8, shapley_samples: int = 64,
        seed: int = 0, cams: int = 0, cam_method: str = 'occlusion',
        outputs: Sequence[str] = ('json', 'npz', 'csv', 'png'),
        progress: bool = True, checkpoint: Optional[str] = None,
        device: str = 'cpu', trust_checkpoint: bool = False,
        cfg_options: Optional[dict] = None,
        allow_partial_checkpoint: bool = False
) -> PhaseSequenceExplanation:
    """Temporal attribution of a two-stage phase model over a whole video.

    Args:
        model: a recognizer with ``.cfg`` (``init_recognizer``) whose head
            is ``CausalMSTCNHead``, or a config (``checkpoint``, ...).
        video: the video file.
        times: ``'transitions'`` (default: where the predicted phase
            changes), ``'every:30s'``, or a list of times (``'40m'``,
            ``'1:30'``, seconds); each is explained at the last grid frame
            at or before it.
        methods: of ``'occlusion'``, ``'ig'``, ``'shapley'``.
        target: ``'pred'`` (the phase predicted at t), ``'gt'`` (needs
            ``gt``) or a class index.
        context: ``'full'`` (the whole causal sequence, bounded by the
            receptive field), ``'window'`` (the test pipeline's
            ``clip_len``) or a number of grid frames.
        baseline: ``'mean'`` (the context's mean frame), ``'zeros'`` or a
            number: what occlusion, IG and Shapley put in place of a frame.
        score: ``'logit'`` or ``'prob'`` of the target at t.
        out_dir: the folder (features cache under ``features/``); None:
            a cache in memory only, nothing written.
        sample_fps: the grid's rate (default: the config's).
        until: ``'video'`` (features of the whole video: the prediction
            ribbon and ``'transitions'`` need them) or ``'last'`` (up to
            the last explained time only: online use).
        batch_size: grid frames per backbone pass; chunk: grid frames per
            cache file.
        refresh_features: recompute a cache made for another input
            (default: refuse it).
        ig_steps, occlusion_block, shapley_*: the methods' settings.
        cams: CAMs (gradient x activation of the frame CNN's last feature
            map for the score at t) on the top ``cams`` frames of each t by
            ``cam_method``'s importance (0: none).
        outputs: of ``json``, ``npz`` (the writer's), ``csv``, ``png``.
    Raises:
        UnsupportedModelError: the head is not CausalMSTCNHead.
        InputError, TargetError, ConfigError, OutputError: one line.
    """
    t_start = time.perf_counter()
    timings = dict(decode=0.0, pipeline=0.0, features=0.0, head=0.0,
                   attribution=0.0, cams=0.0, write=0.0)
    check_video_file(video)
    methods = [_ALIASES.get(m, m) for m in ([methods] if isinstance(
        methods, str) else list(methods))]
    bad = [m for m in methods if m not in SEQUENCE_METHODS]
    if bad or not methods:
        raise InputError(f'sequence methods {bad or methods}: choose from '
                         f'{", ".join(SEQUENCE_METHODS)}')
    if score not in SCORES:
        raise InputError(f"score {score!r}: give 'logit' or 'prob'")
    if until not in ('video', 'last'):
        raise InputError(f"until {until!r}: give 'video' or 'last'")
    if batch_size < 1:
        raise InputError(f'batch_size {batch_size}: give 1 or more')
    bad_out = set(outputs) - {'json', 'npz', 'csv', 'png'}
    if bad_out:
        raise InputError(f'phase-sequence outputs {sorted(bad_out)}: choose '
                         'from json npz csv png')
    if out_dir is not None:
        check_writable(out_dir)
    gt_rows = read_ground_truth(gt) if gt else None
    if target == 'gt' and gt_rows is None:
        raise TargetError("target 'gt' needs gt=FILE (per-frame labels)")
    names = given_class_names(class_names)
    from .model import model_and_config
    model, cfg = model_and_config(
        model, checkpoint, device=device, trust_checkpoint=trust_checkpoint,
        cfg_options=cfg_options,
        allow_partial_checkpoint=allow_partial_checkpoint)
    head = check_phase_head(model)
    stream = VideoStream(video)
    interval = sequence_grid(cfg, stream.fps, sample_fps)
    fps = stream.fps if stream.fps > 0 else 25.0
    T = (stream.num_frames - 1) // interval + 1
    frame_inds = np.arange(T) * interval
    duration = stream.num_frames / fps
    spec = _parse_times(times, duration)
    R = receptive_field(head)
    if context == 'full':
        L = 0
    elif context == 'window':
        L = _window_len(cfg)
    elif isinstance(context, int) and not isinstance(context, bool) \
            and context >= 1:
        L = int(context)
    else:
        raise InputError(f"context {context!r}: give 'full', 'window' or a "
                         'number of grid frames >= 1')
    span = R if L == 0 else min(L, R)
    K = head.num_classes
    names = matched_class_names(names, model, cfg, K)
    if isinstance(target, int) and not 0 <= target < K:
        raise TargetError(f'target class {target} is out of range: the '
                          f'model has {K} classes')
    if isinstance(target, str) and target not in ('pred', 'gt'):
        raise TargetError(f"target {target!r}: give 'pred', 'gt' or a "
                          'class index')
    gt_grid = None
    if gt_rows is not None:
        g = frame_ground_truth(gt_rows, stream.num_frames, fps, names, K)
        gt_grid = np.asarray(g)[frame_inds]

    def grid_of(sec):
        return min(T - 1, int(np.floor(sec * fps / interval + 1e-9)))
    if spec == 'transitions' and until == 'last':
        raise InputError("times 'transitions' needs the whole video's "
                         "prediction: use until='video'")
    last = T if (until == 'video' or spec == 'transitions') else \
        max(grid_of(s) for s in spec) + 1
    key = dict(video=_video_identity(video, stream),
               weights=_weights_fingerprint(model),
               grid=dict(interval=interval),
               pipeline=json_safe(test_pipeline_cfg(cfg)))
    folder = osp.join(out_dir, 'features') if out_dir is not None else None
    import contextlib
    import tempfile
    with contextlib.ExitStack() as stack:
        if folder is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(
                prefix='mmxai-features-'))
        else:
            stack.enter_context(run_lock(out_dir))
        stack.enter_context(preserved_model_state(model))
        model.eval()
        cache = FeatureCache(folder, key, T, chunk=chunk,
                             refresh=refresh_features)
        todo = cache.missing(0, last)
        _fill_cache(model, cfg, stream, cache, todo, interval, batch_size,
                    progress, timings)
        dev = next(model.parameters()).device
        t0 = time.perf_counter()
        seq = torch.from_numpy(cache.read(0, last)).to(dev)
        probs = _predict(head, seq, L).cpu()
        pred = probs.argmax(-1).numpy()
        timings['head'] += time.perf_counter() - t0
        if spec == 'transitions':
            grid_t = (np.flatnonzero(np.diff(pred)) + 1).tolist()
        else:
            grid_t = sorted({grid_of(s) for s in spec})
        N = len(grid_t)
        imp = {m: np.zeros((N, last), np.float32) for m in methods}
        targets = np.zeros(N, np.int64)
        starts = np.zeros(N, np.int64)
        records = []
        t0 = time.perf_counter()
        for i, t in enumerate(grid_t):
            if target == 'pred':
                c = int(pred[t])
            elif target == 'gt':
                c = int(gt_grid[t])
                if c < 0:
                    raise TargetError(f'target gt: no ground truth at '
                                      f'{frame_inds[t] / fps:.1f} s')
            else:
                c = int(target)
            a = max(0, t - span + 1)
            ctx = seq[:, a:t + 1]
            base = context_baseline(ctx, baseline)
            rec = dict(index=i, grid_frame=int(t),
                       frame=int(frame_inds[t]),
                       time_s=float(frame_inds[t] / fps), target=c,
                       target_name=names[c] if c < len(names) else str(c),
                       pred=int(pred[t]), prob=float(probs[t, c]),
                       context_start=int(a),
                       context_start_s=float(frame_inds[a] / fps),
                       gt=None if gt_grid is None else int(gt_grid[t]))
            if 'occlusion' in methods:
                r = context_occlusion(head, ctx, c, base, score,
                                      occlusion_block)
                imp['occlusion'][i, a:t + 1] = r['values'].numpy()
                rec['score'] = r['f_x']
            if 'ig' in methods:
                r = context_integrated_gradients(head, ctx, c, base, score,
                                                 ig_steps)
                imp['ig'][i, a:t + 1] = r['values'].numpy()
                rec.update(score=r['f_x'], ig_baseline_score=r['f_b'],
                           ig_sum=float(r['values'].sum()),
                           ig_completeness_gap=r['gap'])
            if 'shapley' in methods:
                r = context_shapley(head, ctx, c, base, score,
                                    shapley_players, shapley_max_exact,
                                    shapley_samples, seed=seed + i)
                imp['shapley'][i, a:t + 1] = r['values'].numpy()
                rec.update(shapley_v_all=r['v_all'],
                           shapley_v_empty=r['v_empty'],
                           shapley_exact=r['exact'],
                           shapley_players=[
                               dict(first=int(a + g0), last=int(a + g1),
                                    value=float(v)) for (g0, g1), v in
                               zip(r['groups'], r['player_values'])])
            for m in methods:
                row = imp[m][i]
                top = np.argsort(-row[a:t + 1], kind='stable')[:5] + a
                rec[f'top_{m}'] = [[int(s), float(frame_inds[s] / fps),
                                    float(row[s])] for s in top]
            targets[i], starts[i] = c, a
            records.append(rec)
        timings['attribution'] += time.perf_counter() - t0
        res = PhaseSequenceExplanation(
            video=video, fps=fps, interval=interval,
            frame_inds=frame_inds[:last], times=np.asarray(grid_t, np.int64),
            targets=targets, context_start=starts, importance=imp,
            records=records, pred=pred, probs=probs.numpy(),
            gt=None if gt_grid is None else gt_grid[:last],
            class_names=list(names), receptive_field=R,
            context=context, computed_frames=int(cache.added),
            cache=cache)
        if cams:
            t0 = time.perf_counter()
            from .phase_sequence_cams import frame_cams
            res.cams = frame_cams(model, cfg, stream, res, seq, span,
                                  cams, cam_method if cam_method in methods
                                  else methods[0], score, interval)
            timings['cams'] += time.perf_counter() - t0
        res.settings = json_safe(dict(
            video=osp.abspath(video), video_frames=stream.num_frames,
            video_fps=fps, interval=interval, grid_fps=fps / interval,
            grid_frames=T, explained_until=last, methods=methods,
            target=target, context=context, context_frames=span,
            receptive_field=R, window=L or None, baseline=baseline,
            score=score, ig_steps=ig_steps, occlusion_block=occlusion_block,
            shapley_players=shapley_players,
            shapley_max_exact=shapley_max_exact,
            shapley_samples=shapley_samples, seed=seed, times=times,
            gt=gt, checkpoint=checkpoint, cams=cams,
            features=dict(folder=folder if out_dir else None, dim=cache.dim,
                          computed=int(cache.added), cached=int(last) -
                          int(cache.added), chunk=chunk)))
        res.timings = timings
        if out_dir is not None:
            from ..outputs.phase_sequence import write_phase_sequence
            t0 = time.perf_counter()
            res.files = write_phase_sequence(out_dir, res, outputs)
            timings['write'] += time.perf_counter() - t0
    res.cache = None if out_dir is None else res.cache
    timings['total'] = time.perf_counter() - t_start
    return res
