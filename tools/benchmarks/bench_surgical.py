"""The procedure benchmark of issue 15: phase recognition and explanations
measured against known evidence, on generated surgical procedures.

1. generates procedures (``mmxai.generate_procedures``) in Cholec80's layout:
   ``--train`` for training and ``--test`` held-out ones at ``--seed``, and
   ``--test`` more at a fresh generator seed (``--fresh-seed``);
2. trains ``configs/surgical/resnet18s2_tcn_procedures.py`` (the toolbox's
   ``Recognizer2D``: ResNet-18's first two stages per frame + mmxai's
   causal TCN head)
   with MMAction2's own Runner; the checkpoint is the Runner's
   ``epoch_N.pth``;
3. tests it with ``mmxai.PhaseMetric`` (Runner.test) on the held-out and the
   fresh-seed procedures;
4. explains every held-out procedure with the long-video mode
   (``explain_long_video``, an 8 s window every ``--stride``, each method
   of ``--methods``: :data:`METHODS` by default, :data:`MORE_METHODS`
   ready; signed maps scored on their positive part, :class:`PositivePart`)
   and
   scores the maps against the generator's masks (``score_*`` below): the
   pointing game and energy on the phase instrument's mask, temporal
   grounding in windows that straddle a phase transition (spatial map mass
   per frame, and occlusion / IG over the cached feature sequence),
   deletion / insertion; the same scores for a random map and a centre map;
5. writes ``docs/surgical_benchmark.md`` and its figure (``--doc``).

    python tools/benchmarks/bench_surgical.py            # 2 shared cores:
        # ~17 min training + ~30 min for the 9 default methods at --stride 4s
        # on idle cores (estimated from the per-method seconds in the doc);
        # --stride 8s halves the explanations
    python tools/benchmarks/bench_surgical.py --smoke    # ~2 min
    # on loaded cores, the seeds in parallel, then the doc:
    python tools/benchmarks/bench_surgical.py --explain-only test \
        --checkpoint C &
    python tools/benchmarks/bench_surgical.py --explain-only fresh \
        --checkpoint C &
    python tools/benchmarks/bench_surgical.py --probe --checkpoint C &
    wait; python tools/benchmarks/bench_surgical.py --merge --checkpoint C \
        --phase-from OLD/results.json --doc docs/surgical_benchmark.md
"""
import argparse
import json
import os
import os.path as osp
import sys
import time
from collections import defaultdict

import numpy as np

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(HERE))
CONFIG = osp.join(REPO, 'configs', 'surgical',
                  'resnet18s2_tcn_procedures.py')
#: Zhang et al.'s 15 px pointing tolerance at 224, scaled to 64 px.
TOLERANCE = 15.0 * 64 / 224
DI_STEPS = 8

#: The held-out procedures are numbers 9, 10, ... (``--test`` of them);
#: training takes the first ``--train`` other numbers (1-8, then 13, 14, ...),
#: so more training procedures never change the test procedures.
FIRST_TEST = 9
#: The methods of the default run (``name:layer`` names a CAM's layer,
#: ``captum:ALG`` a Captum algorithm); the many-pass ones at modest budgets
#: (:data:`BUDGETS`).
METHODS = ['gradcam', 'gradcam:backbone.layer1', 'gradcam++', 'xgradcam',
           'layercam', 'hirescam', 'saliency', 'captum:InputXGradient',
           'integrated_gradients']
#: Also ready for ``--methods`` (left out of the default run for its time on
#: 2 shared cores): SmoothGrad (8 forward+backward per window), Guided
#: Backprop, occlusion (32 forwards) and RISE (64 forwards).
MORE_METHODS = ['layercam:backbone.layer1', 'captum:GuidedBackprop',
                'smoothgrad', 'occlusion', 'rise']
#: Modest budgets of the methods that run many passes per window.
BUDGETS = {
    'integrated_gradients': dict(n_steps=8),     # 8 forward+backward
    'smoothgrad': dict(n_samples=8),             # 8 forward+backward
    # 2 x 4 x 4 = 32 occluded clips: 4 frames x 16 x 16 px, no overlap
    'occlusion': dict(window=(4, 16, 16), stride=(4, 16, 16)),
    # 64 masks of a 4 x 8 x 8 cell grid
    'rise': dict(num_masks=64, cells=(4, 8, 8)),
}
FULL = dict(train=24, test=4, duration=90.0, epochs=12, di_windows=3,
            stride='4s', methods=METHODS)
SMOKE = dict(train=2, test=1, duration=40.0, epochs=1, di_windows=1,
             stride='4s', methods=['gradcam'])


# ------------------------------------------------------------ scoring
def window_evidence(phase_mask: np.ndarray, phase: np.ndarray,
                    frames, target: int):
    """Known evidence of class ``target`` in a window seeing ``frames``:
    ``masks`` bool ``[T, H, W]`` (the phase instrument, in the frames whose
    phase is ``target``; empty elsewhere) and ``frames`` bool ``[T]`` (the
    frames of that phase)."""
    frames = np.asarray(frames)
    sel = phase[frames] == target
    return phase_mask[frames] & sel[:, None, None], sel


def split_ids(train: int, test: int):
    """``(train_ids, test_ids)``: test ``FIRST_TEST ... FIRST_TEST + test -
    1``, train the first ``train`` other positive numbers."""
    test_ids = list(range(FIRST_TEST, FIRST_TEST + test))
    train_ids, n = [], 1
    while len(train_ids) < train:
        if n not in test_ids:
            train_ids.append(n)
        n += 1
    return train_ids, test_ids


def ranges(ids) -> str:
    """``[1, 2, 3, 13, 14]`` -> ``'1-3, 13-14'``."""
    out, ids = [], sorted(ids)
    i = 0
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        out.append(str(ids[i]) if i == j else f'{ids[i]}-{ids[j]}')
        i = j + 1
    return ', '.join(out)


#: Where a window map's maximum can land (:func:`max_location`).
MAX_PLACES = ('instrument', 'distractor', 'other phase frame',
              'previous instrument place', 'elsewhere')


def max_location(maps, phase_masks, distractor_masks, ev_frames,
                 tolerance: float = TOLERANCE, prev_place=None) -> str:
    """Where the window map's global maximum (``[T, H, W]``; the frame of
    the first maximum, the mean position of that frame's maxima) lands:
    ``'other phase frame'`` (a frame not of the target phase), else within
    ``tolerance`` px of the phase ``'instrument'`` (``phase_masks`` of that
    frame), else of a ``'distractor'`` (another phase's instrument lying
    still), else of ``prev_place`` (bool ``[H, W]``: where the previous
    phase's instrument was in the window's other frames; ``'previous
    instrument place'``, now tissue), else ``'elsewhere'`` (tissue)."""
    maps = np.asarray(maps, np.float32)
    t = int(maps.reshape(len(maps), -1).max(1).argmax())
    if not np.asarray(ev_frames, bool)[t]:
        return 'other phase frame'
    ys, xs = np.nonzero(maps[t] == maps[t].max())
    y, x = ys.mean(), xs.mean()
    cands = [('instrument', phase_masks[t]),
             ('distractor', distractor_masks[t])]
    if prev_place is not None:
        cands.append(('previous instrument place', prev_place))
    for place, m in cands:
        my, mx = np.nonzero(m)
        if len(my) and np.min((my - y) ** 2 + (mx - x) ** 2) <= tolerance**2:
            return place
    return 'elsewhere'


def pointing_hit(maps, masks, tolerance: float) -> float:
    """1 when the window map's maximum points at the evidence: the frame
    holding the global maximum (the first of ties), the mean position of
    that frame's maxima within ``tolerance`` px of its mask (a miss when
    that frame has no evidence)."""
    import torch
    from mmxai.evaluation.functional import pointing_game
    maps = torch.as_tensor(np.asarray(maps, np.float32))
    masks = torch.as_tensor(np.asarray(masks, bool))
    t = int(maps.flatten(1).max(1).values.argmax())
    if not masks[t].any():
        return 0.0
    hits, _ = pointing_game(maps[t:t + 1], masks[t:t + 1], tolerance,
                            mode='frame')
    return float(hits)


def score_spatial(maps, masks, tolerance: float = TOLERANCE) -> dict:
    """Pointing and energy of one window's map ``[T, H, W]`` on its
    evidence ``masks``: ``pointing`` (:func:`pointing_hit` within
    ``tolerance`` px), ``pointing_0`` (the same, strict), ``frame_pointing``
    (share of evidence frames whose own maximum is within ``tolerance``),
    ``energy`` (share of the positive mass inside the masks). A uniform
    random map scores about the masks' volume share on ``energy`` and
    ``pointing_0``."""
    import torch
    from mmxai.evaluation.functional import pointing_game
    from mmxai.evaluation.localization import energy_in_tube
    hits, misses = pointing_game(torch.as_tensor(np.asarray(maps,
                                                            np.float32)),
                                 torch.as_tensor(np.asarray(masks, bool)),
                                 tolerance, mode='frame')
    return dict(pointing=pointing_hit(maps, masks, tolerance),
                pointing_0=pointing_hit(maps, masks, 0.0),
                frame_pointing=hits / max(1, hits + misses),
                energy=energy_in_tube(maps, masks))


def score_temporal(importance, frames) -> dict:
    """Temporal grounding of one window: ``peak`` 1 when the frame of
    largest importance ``[T]`` is an evidence frame (``frames`` bool
    ``[T]``), ``share`` the positive importance in evidence frames;
    ``chance`` the share of evidence frames (a random ordering's expected
    ``peak``)."""
    v = np.asarray(importance, np.float64)
    frames = np.asarray(frames, bool)
    pos = np.clip(v, 0, None)
    return dict(peak=float(frames[int(np.argmax(v))]),
                share=float(pos[frames].sum() / pos.sum()) if pos.sum() > 0
                else 0.0,
                chance=float(frames.mean()))


def sign_split(pos, neg, frames) -> dict:
    """Where a raw map's signed mass lies in a straddling window (``pos``,
    ``neg`` ``[T]``: its positive and negative mass per frame; ``frames``
    bool ``[T]``: the target phase's): ``pos_prev`` / ``neg_prev`` the
    shares of the positive / negative mass in the previous phase's frames,
    ``neg_of_prev`` the negative part of the mass in those frames (0.5: as
    much against the target as for it); NaN where a total is 0."""
    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    prev = ~np.asarray(frames, bool)
    share = lambda a, b: float(a / b) if b > 0 else float('nan')  # noqa
    return dict(pos_prev=share(pos[prev].sum(), pos.sum()),
                neg_prev=share(neg[prev].sum(), neg.sum()),
                neg_of_prev=share(neg[prev].sum(),
                                  pos[prev].sum() + neg[prev].sum()))


def baseline_maps(shape, seed: int):
    """``{'random': uniform noise, 'centre': a centred Gaussian}``."""
    import torch
    from mmxai.evaluation.localization import centre_map, random_map
    g = torch.Generator().manual_seed(int(seed))
    return dict(random=random_map(shape, g).numpy(),
                centre=centre_map(shape).numpy())


def mean_dicts(rows) -> dict:
    """Per key, the mean over ``rows`` of its non-NaN values (NaN if
    none)."""
    acc = defaultdict(list)
    for r in rows:
        for k, v in r.items():
            acc[k].append(v)
    return {k: float(np.nanmean(v)) if np.isfinite(v).any() else
            float('nan') for k, v in acc.items()}


# ------------------------------------------------------------ steps
def generate(root: str, numbers, seed: int, duration: float) -> None:
    from mmxai.datasets.procedures import generate_procedures
    generate_procedures(root, numbers, seed=seed, duration_s=duration,
                        fps=5.0, size=64)


def load_cfg(root: str, train_ids, test_ids, epochs: int, work_dir: str,
             spatial_pool: str = 'grid', context_dropout=None,
             context_fill=None, smooth_weight=None):
    from mmengine.config import Config
    cfg = Config.fromfile(CONFIG)
    cfg.model.cls_head.spatial_pool = spatial_pool
    if context_dropout is not None:  # training only (CausalMSTCNHead)
        cfg.model.cls_head.context_dropout = float(context_dropout)
    if context_fill is not None:
        cfg.model.cls_head.context_fill = context_fill
    if smooth_weight is not None:  # MS-TCN's truncated smoothing loss
        cfg.model.cls_head.smooth_weight = float(smooth_weight)
    ids = lambda v: ','.join(str(i) for i in v)  # noqa: E731
    cfg.work_dir = work_dir
    cfg.train_dataloader.dataset.update(data_root=root, videos=ids(train_ids))
    for k in ('val_dataloader', 'test_dataloader'):
        cfg[k].dataset.update(data_root=root, videos=ids(test_ids))
    cfg.train_cfg.update(max_epochs=epochs, val_begin=epochs + 1)
    cfg.param_scheduler = [dict(type='CosineAnnealingLR', T_max=epochs,
                                eta_min=1e-5, by_epoch=True, begin=0,
                                end=epochs, convert_to_iter_based=True)]
    cfg.default_hooks.checkpoint.interval = epochs
    return cfg


def train(cfg) -> str:
    from mmengine.runner import Runner
    runner = Runner.from_cfg(cfg)
    runner.train()
    return osp.join(cfg.work_dir, f'epoch_{cfg.train_cfg.max_epochs}.pth')


def test(cfg, ckpt: str, root: str, test_ids) -> dict:
    from mmengine.runner import Runner
    cfg = cfg.copy()
    cfg.load_from = ckpt
    cfg.test_dataloader.dataset.update(
        data_root=root, videos=','.join(str(i) for i in test_ids))
    metrics = Runner.from_cfg(cfg).test()
    return {k: float(v) for k, v in metrics.items()}


def decode(video: str) -> np.ndarray:
    import decord
    vr = decord.VideoReader(video, num_threads=1)
    return vr.get_batch(list(range(len(vr)))).asnumpy()


def model_inputs(frames_u8: np.ndarray, inds):
    """The model's inputs ``[1, T, 3, H, W]`` for frames ``inds`` (the
    config's preprocessing: no resize at 64 px, mean 127.5, std 58)."""
    import torch
    x = torch.from_numpy(frames_u8[np.asarray(inds)]).float()
    x = (x - 127.5) / 58.0
    return x.permute(0, 3, 1, 2).unsqueeze(0).contiguous()


def method_spec(name: str):
    """``'gradcam:backbone.layer3'`` -> ``('gradcam', {target_layers})``,
    ``'captum:InputXGradient'`` -> ``('captum', {algorithm})``; the
    many-pass methods get their :data:`BUDGETS`."""
    if ':' in name:
        m, arg = name.split(':', 1)
        if m == 'captum':
            return m, dict(algorithm=arg)
        return m, dict(target_layers=[arg])
    return name, dict(BUDGETS.get(name, {}))


class PositivePart:
    """Wraps an explainer's ``attribute`` so that its maps are the positive
    part ``max(M, 0)`` of the raw map ``M`` (re-normalised as the method
    normalises), and records, per explained window, the positive and the
    negative mass per frame (``records``: ``(pos [T], neg [T])``).

    Why: the long-video mode stores a *signed* map as drawn, clipped at
    the 99th percentile of ``|M|`` (``signed_scale``), so about 1 % of its
    pixels tie at +-1 and the pointing game's maximum would be a tie. The
    positive part has the signed map's own maximum (where any value is
    positive) and the same positive mass (what ``energy`` and the
    temporal scores read); deletion ranks its negative cells as ties at 0
    instead of by size (they come last either way). Unsigned maps are
    unchanged."""

    def __init__(self, explainer) -> None:
        self.records = []
        self.signed = 0
        self._attribute = explainer.attribute
        explainer.attribute = self.attribute

    def attribute(self, inputs, target='pred', data_samples=None):
        from mmxai.explainers.explanation import normalize_maps
        exp = self._attribute(inputs, target, data_samples)
        raw = exp.raw_maps.detach().float()
        pos = raw.clamp_min(0)
        neg = (-raw).clamp_min(0)
        for b in range(raw.shape[0]):
            self.records.append((pos[b].sum((0, 2, 3)).numpy(),
                                 neg[b].sum((0, 2, 3)).numpy()))
        if bool((raw < 0).any()):
            self.signed += int((neg.flatten(1).sum(1) > 0).sum())
            exp.raw_maps = pos.to(exp.raw_maps.dtype)
            exp.maps = normalize_maps(
                exp.raw_maps, exp.settings.get('normalize', 'joint'))
        return exp


def build_method(model, name: str):
    """The explainer of benchmark method ``name`` (:func:`method_spec`),
    its progress bar off, wrapped in :class:`PositivePart`."""
    from mmxai.explainers.builder import build_explainer
    meth, opts = method_spec(name)
    exp = build_explainer(meth, model, **opts)
    if hasattr(exp, 'progress'):
        exp.progress = False
    return exp, PositivePart(exp)


def explain_procedures(model, test_root, test_ids, methods, di_windows,
                       seed, stride='2s', fig_dir=None, log=print):
    """Scores per method (and the random/centre baselines) over the
    held-out procedures; also what the figure needs."""
    import torch
    from mmxai.apis import explain_long_video
    from mmxai.datasets.phase_labels import CHOLEC80_PHASES
    from mmxai.evaluation.functional import deletion_insertion_curve
    from mmxai.models import (FeatureSequence, feature_integrated_gradients,
                              feature_occlusion)
    spatial = defaultdict(list)
    places = defaultdict(lambda: defaultdict(list))
    signs = defaultdict(lambda: defaultdict(list))
    built = {m: build_method(model, m) for m in methods}
    temporal = defaultdict(list)
    di = defaultdict(lambda: defaultdict(list))
    preds = {}
    keyframes = {}
    windows_total = windows_ok = 0
    times = {}
    for n, vid in enumerate(test_ids):
        name = f'video{vid:02d}'
        video = osp.join(test_root, 'videos', name + '.mp4')
        gt_file = osp.join(test_root, 'phase_annotations',
                           name + '-phase.txt')
        masks_npz = np.load(osp.join(test_root, 'masks',
                                     name + '-masks.npz'))
        pmask, phase = masks_npz['phase_mask'], masks_npz['phase']
        dmask = masks_npz['distractor_mask']
        frames_u8 = decode(video)
        tls, masses = {}, {}
        for m in methods:
            t0 = time.perf_counter()
            out_dir = osp.join(fig_dir, f'{name}_{m.replace(":", "_")}') \
                if fig_dir and n == 0 and m == methods[0] else None
            explainer, pp = built[m]
            pp.records.clear()
            tls[m] = explain_long_video(
                model, video, method=explainer, stride=stride, batch_size=8,
                gt=gt_file, class_names=list(CHOLEC80_PHASES),
                out_dir=out_dir, keep_maps=True, progress=False,
                outputs=('timeline', 'maps') if out_dir else (), map_size=64,
                resume=False)
            times[m] = times.get(m, 0.0) + time.perf_counter() - t0
            ok_ids = [i for i, w in enumerate(tls[m].windows) if w.ok]
            if len(ok_ids) != len(pp.records):
                raise RuntimeError(f'{m}: {len(pp.records)} records for '
                                   f'{len(ok_ids)} windows')
            masses[m] = dict(zip(ok_ids, pp.records))
        tl = tls[methods[0]]
        # predictions at each window's last model frame (online)
        last = np.array([w.frame_inds[-1] for w in tl.windows])
        pred = np.array([w.pred for w in tl.windows])
        preds[name] = (phase, pred, last)
        ok_windows = [i for i, w in enumerate(tl.windows)
                      if w.ok and w.pred == phase[w.frame_inds[-1]]]
        windows_total += len(tl.windows)
        windows_ok += len(ok_windows)
        di_pick = set(np.asarray(ok_windows)[np.linspace(
            0, len(ok_windows) - 1, min(di_windows, len(ok_windows))
        ).round().astype(int)].tolist()) if ok_windows else set()
        for i in ok_windows:
            w = tl.windows[i]
            inds = np.asarray(w.frame_inds)
            target = int(w.pred)
            masks, ev_frames = window_evidence(pmask, phase, inds, target)
            straddles = 0 < ev_frames.sum() < len(ev_frames)
            shape = masks.shape
            cands = {m: tls[m].maps(i)['maps'].astype(np.float32)
                     for m in methods}
            cands.update(baseline_maps(shape, seed * 100003 + vid * 1009 + i))
            inputs = model_inputs(frames_u8, inds)
            for key, maps in cands.items():
                if maps.shape != shape:
                    raise RuntimeError(f'{key}: map {maps.shape} vs mask '
                                       f'{shape}')
                spatial[key].append(score_spatial(maps, masks))
                where = max_location(
                    maps, pmask[inds], dmask[inds], ev_frames,
                    prev_place=pmask[inds][~ev_frames].any(0)
                    if straddles else None)
                for wk in ('all', 'straddle' if straddles else 'within'):
                    places[key][wk].append(where)
                if straddles:
                    temporal[key].append(score_temporal(
                        maps.reshape(len(maps), -1).sum(1), ev_frames))
                if i in di_pick:
                    for mode in ('deletion', 'insertion'):
                        _, auc = deletion_insertion_curve(
                            model, inputs, torch.from_numpy(maps)[None],
                            target, steps=DI_STEPS, cell_size=(1, 8, 8),
                            baseline='fade', mode=mode,
                            batch_size=DI_STEPS + 1)
                        di[key][mode].append(float(auc[0]))
            if straddles:
                for m in methods:
                    signs[m]['rows'].append(sign_split(*masses[m][i],
                                                       ev_frames))
                fs = FeatureSequence(model, inputs)
                t = len(inds) - 1
                occ = feature_occlusion(fs, t, target).numpy()
                ig = feature_integrated_gradients(fs, t, target).numpy()
                temporal['feature_occlusion'].append(
                    score_temporal(occ, ev_frames))
                temporal['feature_ig'].append(score_temporal(ig, ev_frames))
            if n == 0:  # key frame per phase: the window nearest the
                # middle of the phase's first segment
                seg = np.flatnonzero(phase == target)
                mid = seg[len(seg) // 4] if len(seg) else 0
                d = abs(int(inds[-1]) - int(mid))
                if target not in keyframes or d < keyframes[target][0]:
                    keyframes[target] = (d, frames_u8[inds[-1]], {
                        m: cands[m][-1] for m in methods}, masks[-1])
        log(f'  {name}: {len(tl.windows)} windows, {len(ok_windows)} '
            'correct and scored')
    return dict(spatial={k: mean_dicts(v) for k, v in spatial.items()},
                places={k: {wk: {pl: float(np.mean([x == pl for x in v]))
                                 for pl in MAX_PLACES} | dict(n=len(v))
                            for wk, v in d.items()}
                        for k, d in places.items()},
                signs={k: mean_dicts(d['rows']) for k, d in signs.items()
                       if d['rows']},
                signed_windows={m: built[m][1].signed for m in methods},
                spatial_n=len(spatial[methods[0]]),
                temporal={k: mean_dicts(v) for k, v in temporal.items()},
                temporal_n=len(temporal[methods[0]]),
                di={k: {mm: float(np.mean(v)) for mm, v in d.items()}
                    for k, d in di.items()},
                di_n=len(di[methods[0]]['deletion']),
                windows=windows_total, windows_correct=windows_ok,
                window_accuracy=windows_ok / max(1, windows_total),
                seconds=times), preds, keyframes


def fade_region(inputs, frames, masks, grow: int = 2):
    """``inputs`` ``[1, T, 3, H, W]`` with the pixels of ``masks`` (bool
    ``[T, H, W]``, grown by ``grow`` px) set to the mean colour (0 after
    normalisation) in the frames ``frames`` (bool ``[T]``)."""
    import scipy.ndimage as nd
    import torch
    out = inputs.detach().clone()
    for k in np.flatnonzero(frames):
        m = nd.binary_dilation(masks[k], iterations=grow) if grow else \
            masks[k]
        out[0, k][:, torch.from_numpy(m)] = 0.0
    return out


def transition_probe(model, test_root, test_ids, stride='4s', log=print):
    """Is the previous phase's instrument evidence for the target at a
    transition? On each rightly predicted window that straddles one: the
    target's probability ``p``, with the previous phase's instrument faded
    in the earlier frames (``p_prev_faded``) and with the target phase's
    instrument faded in its own frames (``p_target_faded``); where the
    plain gradient's maximum (``saliency``'s map) lands, and the sign of
    Input x Gradient there. Grouped by that place."""
    import torch
    from mmxai.apis import explain_long_video
    from mmxai.datasets.phase_labels import CHOLEC80_PHASES

    def prob(x, t):
        with torch.no_grad():
            feats, kw = model.extract_feat(x, test_mode=True)
            return float(model.cls_head(feats, **kw).softmax(-1)[0, t])
    rows = []
    for vid in test_ids:
        name = f'video{vid:02d}'
        video = osp.join(test_root, 'videos', name + '.mp4')
        z = np.load(osp.join(test_root, 'masks', name + '-masks.npz'))
        pmask, phase, dmask = z['phase_mask'], z['phase'], \
            z['distractor_mask']
        frames_u8 = decode(video)
        tl = explain_long_video(
            model, video, method='gradcam', stride=stride, batch_size=8,
            class_names=list(CHOLEC80_PHASES), progress=False, outputs=(),
            resume=False)
        for w in tl.windows:
            inds = np.asarray(w.frame_inds)
            if not (w.ok and w.pred == phase[inds[-1]]):
                continue
            tgt = int(w.pred)
            masks, ev = window_evidence(pmask, phase, inds, tgt)
            if not 0 < ev.sum() < len(ev):
                continue
            x = model_inputs(frames_u8, inds).requires_grad_(True)
            with torch.enable_grad():
                feats, kw = model.extract_feat(x, test_mode=True)
                score = model.cls_head(feats, **kw)[0, tgt]
                g, = torch.autograd.grad(score, x)
            g = g[0]
            sal = g.abs().amax(1).numpy()
            ixg = (g * x[0].detach()).sum(1).numpy()
            where = max_location(sal, pmask[inds], dmask[inds], ev,
                                 prev_place=pmask[inds][~ev].any(0))
            t = int(sal.reshape(len(sal), -1).max(1).argmax())
            yx = np.unravel_index(int(sal[t].argmax()), sal[t].shape)
            x = x.detach()
            rows.append(dict(
                where=where, ixg_positive=float(ixg[t][yx] > 0),
                p=prob(x, tgt),
                p_prev_faded=prob(fade_region(x, ~ev, pmask[inds]), tgt),
                p_target_faded=prob(fade_region(x, ev, pmask[inds]), tgt)))
        log(f'  probe {name}: {len(rows)} straddling windows so far')
    out = {}
    for place in ('all',) + MAX_PLACES:
        r = [q for q in rows if place == 'all' or q['where'] == place]
        if r:
            out[place] = dict(mean_dicts([{k: v for k, v in q.items()
                                           if k != 'where'} for q in r]),
                              n=len(r),
                              prev_fade_raises=float(np.mean(
                                  [q['p_prev_faded'] > q['p'] for q in r])))
    return out


# ------------------------------------------------------------ figure
PHASE_COLOURS = ['#4e79a7', '#f28e2b', '#e15759', '#76b7b2', '#59a14f',
                 '#edc948', '#b07aa1']


def draw_figure(path: str, preds: dict, keyframes: dict, methods,
                fps: float = 5.0) -> None:
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    from mmxai.datasets.phase_labels import CHOLEC80_PHASES
    cmap = ListedColormap(PHASE_COLOURS)
    names = sorted(preds)
    phases = sorted(keyframes)
    rows = 1 + len(methods)
    fig = plt.figure(figsize=(1.6 * max(7, len(phases)),
                              0.55 * 2 * len(names) + 1.7 * rows + 0.8))
    top = len(names) * 2 * 0.55 + 0.6
    gs = fig.add_gridspec(2, 1, height_ratios=[top, 1.7 * rows],
                          hspace=0.45)
    ax = fig.add_subplot(gs[0])
    yt, yl = [], []
    for k, name in enumerate(names):
        gt, pred, last = preds[name]
        step = (last[1] - last[0]) / fps if len(last) > 1 else 1.0
        for j, (lab, seq, x0, x1) in enumerate((
                ('gt', gt, 0, len(gt) / fps),
                ('pred', pred, last[0] / fps, last[-1] / fps + step))):
            y = -(2 * k + j) * 1.0
            ax.imshow(seq[None], cmap=cmap, vmin=-0.5, vmax=6.5,
                      aspect='auto', interpolation='nearest',
                      extent=(x0, x1, y - 0.45, y + 0.45))
            yt.append(y)
            yl.append(f'{name} {lab}')
    ax.set_yticks(yt, yl, fontsize=7)
    ax.set_ylim(min(yt) - 0.6, 0.6)
    ax.set_xlim(0, max(len(preds[n][0]) / fps for n in names))
    ax.set_xlabel('seconds (online prediction at each window\'s last frame)',
                  fontsize=8)
    handles = [plt.Rectangle((0, 0), 1, 1, color=PHASE_COLOURS[p])
               for p in range(7)]
    ax.legend(handles, [f'{p}: {CHOLEC80_PHASES[p]}' for p in range(7)],
              fontsize=6, ncol=4, loc='upper center',
              bbox_to_anchor=(0.5, 1.35), frameon=False)
    sub = gs[1].subgridspec(rows, max(1, len(phases)), wspace=0.05,
                            hspace=0.15)
    for c, p in enumerate(phases):
        _, frame, maps, mask = keyframes[p]
        for r in range(rows):
            a = fig.add_subplot(sub[r, c])
            a.imshow(frame)
            if r:
                m = maps[methods[r - 1]]
                m = (m - m.min()) / max(1e-12, float(m.max() - m.min()))
                a.imshow(m, cmap='jet', alpha=0.5, vmin=0, vmax=1)
            if mask.any():
                a.contour(mask, levels=[0.5], colors='white',
                          linewidths=0.7)
            a.set_xticks([])
            a.set_yticks([])
            if r == 0:
                a.set_title(f'{p}: {CHOLEC80_PHASES[p][:14]}', fontsize=7)
            if c == 0:
                a.set_ylabel('frame' if r == 0 else methods[r - 1],
                             fontsize=6)
    fig.savefig(path, dpi=110, bbox_inches='tight')
    plt.close(fig)


# ------------------------------------------------------------ report
def fmt(v, nd=3):
    return '-' if v is None or (isinstance(v, float) and np.isnan(v)) \
        else f'{v:.{nd}f}'


#: Why some maps lose to the random map (written from the evidence of the
#: tables of a run; :func:`goal_lines` prints it under the goals).
NOTES = """\
**The model and how it got here.** The shipped model is trained with the
head's context swap (`context_dropout=0.7`, `'swap'`: in 70 % of the
training windows the frames before the last k, k uniform in 1-7, are
another window's, with their labels) for 12 epochs. The model before it (6
epochs, no swap: best pointing 0.787 / 0.848, Input x Gradient) read the
phase at a transition partly from the *previous* phase's instrument in the
earlier frames of its window: fading that instrument lowered the target's
probability (0.91 -> 0.82 at seed 0, 0.91 -> 0.80 at seed 1), so no
faithful map could point at the current instrument there. Its page, with
the transition probe that found this and the first swap attempts, is kept
as `docs/surgical_benchmark_noswap.md`. Attempts, same data and seeds
(accuracy held out / fresh; best pointing held out / fresh; saliency and
Input x Gradient only unless stated): swap 0.7, 6 epochs (all nine maps):
0.972 / 0.967, 0.822 / 0.867; `'shuffle'` fill, 6 epochs: 0.975 / 0.962,
0.778 / 0.795; swap probability 1 and no smoothing loss
(`--context-dropout 1.0 --smooth-weight 0`), 6 epochs: 0.989 / 0.955,
0.681 / 0.750 (worse: within one phase too, 0.889 / 0.808 for saliency);
swap 0.7, **12 epochs** (this page): the 6-epoch swap model had ended at a
higher training cross-entropy than the model without swap (0.33 against
0.22), i.e. the swap made the task harder and 6 epochs left it short.

**At the transitions (the probe above).** Fading the previous phase's
instrument now leaves the target's probability where it was (0.937 ->
0.932 at seed 0, 0.951 -> 0.942 at seed 1; it rises in 48 % / 43 % of the
windows), while fading the target phase's own instrument drops it to 0.27 /
0.21: the model reads the phase from the current instrument. Input x
Gradient and Integrated Gradients put their maximum on the phase
instrument in 0.93 / 0.95 and 0.89 / 0.95 of the straddling windows, and
in a previous phase's frame in 0.00 / 0.00 and 0.04 / 0.00 of them (the
model before: 0.14 / 0.20 and 0.31 / 0.30). `saliency` (the gradient's
magnitude) still lands on a distractor in 0.11 / 0.20 of them; where the
probe's saliency maxima are on a distractor, Input x Gradient is mostly
negative (0.5 / 0.0 of them positive):
the magnitude marks a distractor that counts *against* the phase, a sign a
magnitude map cannot show.

**Why Grad-CAM on the last stage loses to the random map (insertion at
both seeds, deletion at seed 1).** It weights each channel of
`backbone.layer2` by one number per window, the mean of its gradient over
all cells and frames. The head does not pool those channels globally: it
keeps the 8x8 grid (`spatial_pool='grid'`, a 1x1 convolution per cell,
then the TCN over the 1024 cell features), so a channel's gradient has a
different size and sign in every cell, and its mean mixes the phase
instrument's cell with every other place the channel fires. The map then
follows the activations, not the head's use of them (its maximum lands on
tissue in most windows inside one phase, maxima tables), and deleting by
it removes what the head ignores. On the same layer and the same
gradients, the methods that keep per-cell weights, Layer-CAM
(`ReLU(sum_k ReLU(g_k) A_k)`) and HiResCAM (`ReLU(sum_k g_k A_k)`), beat
the random map on all three scores at both seeds. The failure is
Grad-CAM's global-average-pooling assumption, which this head breaks, not
the layer: on the global-mean head of an earlier model Grad-CAM pointed at
0.41 (docs/surgical.md); HiResCAM is the CAM for such heads."""


def beats_random(e: dict, k: str) -> dict:
    """Per score (pointing: higher, deletion: lower, insertion: higher),
    whether map ``k`` beats the random map of the same windows (None when
    either is missing)."""
    sp, di = e['spatial'], e['di']
    out = {}
    for score, src, sign in (('pointing', sp, 1), ('deletion', di, -1),
                             ('insertion', di, 1)):
        a = src.get(k, {}).get(score)
        b = src.get('random', {}).get(score)
        out[score] = None if a is None or b is None else sign * (a - b) > 0
    return out


def probe_lines(res: dict) -> list:
    """The transition probe's table (:func:`transition_probe`)."""
    pr = res.get('probe')
    if not pr:
        return []
    s = res['settings']
    lines = ['## At the transitions: what the model uses', '',
             'The transition probe (`transition_probe`; the straddling, '
             'rightly predicted windows at a window every '
             f"{pr.get('stride', '4s')}): the target's probability `p`, "
             "with the previous phase's instrument faded to the mean "
             'colour (grown 2 px) in the earlier frames, and with the '
             "target phase's instrument faded in its own frames; rows by "
             'where the plain gradient\'s maximum (`saliency`) lands, with '
             'the share of those maxima where Input x Gradient is positive '
             '(a sign-aware map keeps them).', '',
             '| seed | saliency max at | windows | p | p, previous '
             'instrument faded | share where that fade raises p | p, '
             'target instrument faded | Input x Gradient > 0 there |',
             '|---|---|---|---|---|---|---|---|']
    for key, label in (('test', f"{s['seed']}"),
                       ('fresh', f"{s['fresh_seed']} (fresh)")):
        for place, r in pr.get(key, {}).items():
            lines.append(
                f"| {label} | {place} | {r['n']} | {fmt(r['p'])} | "
                f"{fmt(r['p_prev_faded'])} | {fmt(r['prev_fade_raises'])} | "
                f"{fmt(r['p_target_faded'])} | {fmt(r['ixg_positive'])} |")
    return lines + ['']


def goal_lines(res: dict) -> list:
    """The issue's explanation goals, per seed: the best pointing, and
    which maps do not beat the random map on pointing, deletion or
    insertion."""
    s = res['settings']
    lines = ['## Goals (issue 15)', '',
             "| seed | best pointing (4.3 px) | maps not better than "
             'random on pointing | on deletion | on insertion |',
             '|---|---|---|---|---|']
    for key, label in (('test', f"{s['seed']} (held out)"),
                       ('fresh', f"{s['fresh_seed']} (fresh)")):
        e = res['explain'][key]
        ms = [m for m in s['methods'] if m in e['spatial']]
        if not ms:
            continue
        best = max(ms, key=lambda m: e['spatial'][m]['pointing'])
        lose = {sc: [m for m in ms if beats_random(e, m)[sc] is False]
                for sc in ('pointing', 'deletion', 'insertion')}
        lines.append(
            f"| {label} | {best} {fmt(e['spatial'][best]['pointing'])} | "
            + ' | '.join(', '.join(lose[sc]) or 'none' for sc in
                         ('pointing', 'deletion', 'insertion')) + ' |')
    lines += ['']
    if NOTES:
        lines += [NOTES, '']
    return lines


#: What the context-swap run showed (written from its tables;
#: :func:`shortcut_lines` prints it under them).
SHORTCUT_NOTES = """\
**What the swap changed, and what it did not (evidence: the tables of
this section).** Frame accuracy stays above the goal (0.972 / 0.967, was
0.989 / 0.974). The best pointing rises from 0.787 / 0.848 (Input x
Gradient) to 0.822 (`saliency`, seed 0) / 0.867 (Input x Gradient, seed
1): still below 0.9 on both seeds, so this model is not shipped. Inside one
phase the gradient maps now point at the instrument in every window at
seed 0 (1.000 for saliency, Input x Gradient and IG; 0.885-0.923 at seed
1). On the straddling windows the maxima in the previous phase's frames
fell (Input x Gradient 0.138 -> 0.071 and 0.200 -> 0.053; saliency 0.103
-> 0.036 and 0.100 -> 0.000), but straddle pointing stays at 0.68-0.79:
the maxima moved to distractors (saliency 0.069 -> 0.143 and 0.050 ->
0.158, Input x Gradient 0.138 -> 0.214 at seed 0) and to tissue. The
probe says why: fading the previous phase's instrument still lowers the
target's probability (0.824 -> 0.777, 0.840 -> 0.774; before 0.907 ->
0.820, 0.912 -> 0.801), it rises in 26 % / 23 % of the windows (19 % / 8 %
before): the reliance on the previous instrument is weaker, not gone. The
windows whose maximum misses are those the model is least sure of right
after a transition (p 0.55-0.77 in the distractor, previous-place and
elsewhere rows, against 0.88 where the maximum is on the instrument);
there fading the target instrument moves p far less than where the
maximum is on it (0.63 -> 0.62 and 0.77 -> 0.49 at distractor maxima,
against 0.88 -> 0.14 and 0.88 -> 0.12), while fading the previous one
lowers it by 0.10-0.16: those windows are still read partly from the
earlier frames. At a
distractor maximum Input x Gradient is mostly negative (0.4 and 0.0 of
those maxima positive): the plain gradient's magnitude marks a distractor
that counts *against* the phase, which the pointing game counts as a miss.
The CAMs on the last stage got worse (Layer-CAM 0.681 -> 0.444, 0.652 ->
0.467), Grad-CAM better on pointing (0.021 -> 0.333, 0.087 -> 0.267) yet
still below the random map on deletion (0.588 vs 0.564, 0.565 vs 0.419)
and insertion (0.407 vs 0.467, 0.406 vs 0.538) at both seeds: its
channel-mean weights ignore the grid head's per-cell weights whatever the
training, as above; every other map beats the random map on all three
scores at both seeds. Why a swap of the earlier frames leaves part of
the reliance: the loss is on every frame and the TCN's convolutions are
shared over time, so the outputs before the junction (the other window's
frames with their own, real context) and those of the kept suffix (up to
k-1 real earlier frames, a real transition among them) still teach that a
real earlier context is reliable; only the outputs after the junction see
a misleading one (about 0.7 x 4/8 of a batch's frame outputs at k uniform
in 1-7). A fill that makes each earlier frame of a swapped window an
independent random frame of the batch makes the context unreliable at
every position (`context_fill='shuffle'`); tried once, with two maps only
for lack of time (`--train-only --context-dropout 0.7 --context-fill
shuffle --work-dir work_dirs/bench_surgical_shuffle`, 1097 s, then
`--explain-only test|fresh --stride 8s --methods saliency
captum:InputXGradient` on it): frame accuracy 0.975 / 0.962, pointing
saliency 0.756 / 0.727, Input x Gradient 0.778 / 0.795 (both above the
random map on all three scores): *worse* than the swap and no better than
no swap, with as many straddling maxima on distractors (Input x Gradient
0.222 / 0.158): the previous phase's frames are not the only thing the
maps miss for, and a context made useless everywhere costs the model the
order without making it read the current instrument better. Not tried for
lack of time (one training of 22 min
and 25 min of explanations per attempt on the shared cores): a swap
probability of 1 (never a real context: then the model cannot use the
order at all), the `'zero'` / `'last'` fills (weaker by construction:
they leave a real context as reliable as before), training without
MS-TCN's smoothing loss (it rewards an output at t that stays with the one
at t-1, i.e. with the previous phase right after a transition), longer
training (the swap makes the task harder: final training cross-entropy
0.33 against 0.22)."""


def shortcut_lines(res: dict, new: dict, fig_rel: str = None) -> list:
    """``--shortcut-from``: the same benchmark on a model trained with the
    head's context swap (``new``, a ``results.json`` of ``--merge``),
    side by side with this page's model (``res``)."""
    s, ns = res['settings'], new['settings']
    lines = ['## Training against the previous-instrument shortcut', '',
             'The same procedures, methods and scores on a model trained '
             "with the head's context swap (`CausalMSTCNHead(context_dropout="
             f"{ns.get('context_dropout')})`, `context_fill='swap'`: in that "
             'share of the training windows the frames before the last k '
             '(k uniform in 1-7) are replaced, with their labels, by the '
             'same frames of another window of the batch; docs/surgical.md). '
             'Everything else as above (same config, data, 6 epochs, seed); '
             'trained in '
             f"{ns.get('train_given') or 0:.0f} s on the shared cores. Not "
             'shipped (the goal below is not met): the page above and the '
             'bundled demo keep the model without the swap. Commands:', '',
             '```bash', ns.get('command', ''), '```', '',
             '| model | seed | frame accuracy | relaxed Jaccard | edit | '
             'windows right | best pointing (4.3 px) | maps not better than '
             'random on pointing | on deletion | on insertion |',
             '|---|---|---|---|---|---|---|---|---|---|']
    for tag, r in (('without swap (above)', res), ('context swap', new)):
        for key in ('test', 'fresh'):
            e, m = r['explain'][key], r['phase'][key]
            ms = [q for q in r['settings']['methods'] if q in e['spatial']]
            best = max(ms, key=lambda q: e['spatial'][q]['pointing'])
            lose = {sc: [q for q in ms if beats_random(e, q)[sc] is False]
                    for sc in ('pointing', 'deletion', 'insertion')}
            seed = s['seed'] if key == 'test' else s['fresh_seed']
            lines.append(
                f"| {tag} | {seed} | {fmt(m.get('phase/accuracy'))} | "
                f"{fmt(m.get('phase/relaxed_jaccard'))} | "
                f"{fmt(m.get('phase/edit'))} | {e['windows_correct']}/"
                f"{e['windows']} | {best} "
                f"{fmt(e['spatial'][best]['pointing'])} | "
                + ' | '.join(', '.join(lose[sc]) or 'none' for sc in
                             ('pointing', 'deletion', 'insertion')) + ' |')
    lines += ['', 'Per map, without swap -> with swap (pointing at 4.3 px; '
              'deletion AUC, lower better; insertion AUC, higher better):',
              '', '| map | pointing, seed 0 | pointing, seed 1 | deletion, '
              'seed 0 | deletion, seed 1 | insertion, seed 0 | insertion, '
              'seed 1 |', '|---|---|---|---|---|---|---|']

    def pair(k, sc, key):
        src = 'spatial' if sc == 'pointing' else 'di'
        a = res['explain'][key][src].get(k, {}).get(sc)
        b = new['explain'][key][src].get(k, {}).get(sc)
        return f'{fmt(a)} -> {fmt(b)}'
    for k in list(ns['methods']) + ['random', 'centre']:
        lines.append(f'| {k} | ' + ' | '.join(
            pair(k, sc, key) for sc in ('pointing', 'deletion', 'insertion')
            for key in ('test', 'fresh')) + ' |')
    lines += ['', "Where the maximum lands in the windows that straddle a "
              'transition (and, below them, in those inside one phase), '
              'without swap -> with swap (the places of the maxima table '
              'above):', '',
              '| map | seed | windows | ' + ' | '.join(MAX_PLACES) + ' |',
              '|---|---|---|' + '---|' * len(MAX_PLACES)]
    for k in ('saliency', 'captum:InputXGradient', 'integrated_gradients'):
        for wk in ('straddle', 'within'):
            for key in ('test', 'fresh'):
                a = res['explain'][key].get('places', {}).get(k, {}).get(wk)
                b = new['explain'][key].get('places', {}).get(k, {}).get(wk)
                if not (a and b):
                    continue
                seed = s['seed'] if key == 'test' else s['fresh_seed']
                lines.append(
                    f"| {k}{' (within one phase)' if wk == 'within' else ''}"
                    f" | {seed} | {a['n']} -> {b['n']} | " + ' | '.join(
                        f'{fmt(a[x])} -> {fmt(b[x])}' for x in MAX_PLACES)
                    + ' |')
    pa, pb = res.get('probe'), new.get('probe')
    if pa and pb:
        lines += ['', 'Transition probe (as above), without swap -> with '
                  'swap:', '', '| seed | saliency max at | windows | p | p, '
                  'previous instrument faded | share where that fade raises '
                  'p | p, target instrument faded |',
                  '|---|---|---|---|---|---|---|']
        for key in ('test', 'fresh'):
            seed = s['seed'] if key == 'test' else s['fresh_seed']
            for place in ('all',) + MAX_PLACES:
                a, b = pa.get(key, {}).get(place), pb.get(key, {}).get(place)
                if not b:
                    continue
                a = a or {}
                lines.append(
                    f"| {seed} | {place} | {a.get('n', 0)} -> {b['n']} | "
                    + ' | '.join(f'{fmt(a.get(c))} -> {fmt(b[c])}' for c in (
                        'p', 'p_prev_faded', 'prev_fade_raises',
                        'p_target_faded')) + ' |')
    lines += ['']
    if fig_rel:
        lines += [f'![context-swap model: ribbons and key frames]({fig_rel})',
                  '', 'The context-swap model, as in the figure below.', '']
    if SHORTCUT_NOTES:
        lines += [SHORTCUT_NOTES, '']
    return lines


def ch_of(e: dict) -> float:
    """The temporal chance level of an ``explain`` result (share of the
    target phase's frames in the straddling windows)."""
    return next(iter(e['temporal'].values()), {}).get('chance', float('nan'))


def write_doc(path: str, res: dict, fig_rel: str, cmd: str) -> None:
    s = res['settings']
    lines = [
        '# The procedure benchmark (issue 15): phases and explanations '
        'against known evidence',
        '',
        'Generated by `tools/benchmarks/bench_surgical.py`; do not edit by '
        'hand. Command:',
        '',
        '```bash',
        cmd,
        '```',
        '',
    ] + ([s['phase_from_note'], ''] if s.get('phase_from_note') else []) + [
        (f"Machine: {s['machine']}. A split run (`--explain-only` per "
         'seed in parallel, then `--merge`), for the load of the shared '
         'cores (load average '
         f"{s.get('load')} at the end): explanations and scoring "
         + ', '.join(f"seed {s['seed'] if k == 'test' else s['fresh_seed']}"
                     f" {v:.0f} s" for k, v in s['explain_split'].items())
         + (' (two processes at once, all methods)' if s.get(
             'parallel', True) else ' (one after the other, all methods)')
         + '; the phase metrics are '
         "those of the `Runner.test` of the same checkpoint on the same "
         'procedures in the run that trained it or an earlier full run '
         '(`--phase-from`; generation '
         f"{s['gen_s']:.0f} s, Runner tests {s['test_s']:.0f} s), the "
         'checkpoint trained in '
         f"{s.get('train_given') or 0:.0f} s.") if s.get('explain_split')
        else
        f"Machine: {s['machine']}. Total time {s['total_s'] / 60:.1f} min "
        f"(generation {s['gen_s']:.0f} s, "
        + (f"training {s['train_s']:.0f} s, " if 'train_given' not in s else
           'training not in this run (`--checkpoint`; the run that trained '
           'it took ' + (f"{s['train_given']:.0f} s" if s['train_given']
                         else 'an unrecorded time') + '), ')
        + f"Runner tests {s['test_s']:.0f} s, explanations and scoring "
        f"{s['explain_s']:.0f} s"
        + (f", transition probe {s['probe_s']:.0f} s" if 'probe_s' in s
           else '') + ').' + (f" Load average at the end: {s['load']}."
                              if s.get('load') else ''),
        '',
        '## Setting',
        '',
        f"* **Procedures** (`mmxai.generate_procedures`, Cholec80 layout: "
        f"`videoNN.mp4`, `-phase.txt` at 25 fps numbering, `-tool.txt` at 1 "
        f"fps, masks): {s['train']} for training (numbers "
        f"{ranges(s.get('train_ids', range(1, s['train'] + 1)))}) and "
        f"{s['test']} held out (numbers "
        f"{ranges(s.get('test_ids', []))}) at generator seed {s['seed']}, "
        f"the same numbers at the fresh seed "
        f"{s['fresh_seed']} (never seen while the benchmark was written); "
        f"about {s['duration']:.0f} s each (+-25 %), 64x64 px, 5 fps "
        '(reduced from a few minutes at 25 fps to fit 2 CPU cores).',
        '* **Model**: `configs/surgical/resnet18s2_tcn_procedures.py`, the '
        "toolbox's `Recognizer2D` with the first two stages of its `ResNet` "
        "(depth 18, stride 8, random init) per frame and mmxai's "
        '`CausalMSTCNHead` (2 stages x 3 causal layers, 32 channels) over '
        'windows of 8 frames at 1 fps (8 s), '
        + ("the frame features kept on their 8x8 grid "
           "(`spatial_pool='grid'`: a 1x1 convolution to 16 channels per "
           'cell; in these procedures a phase is told by an instrument at '
           'its own place), '
           if s.get('spatial_pool', 'grid') == 'grid' else
           "the frame features globally averaged (`spatial_pool='avg'`), ")
        +
        'labelled online (the phase at the last frame); '
        + (f"trained with the head's context swap (`context_dropout="
           f"{s['context_dropout']}`: in that share of the training "
           'windows the frames before the last k, k uniform in 1-7, are '
           "those of another window of the batch, with their labels; "
           'test behaviour unchanged); ' if s.get('context_dropout') else '')
        +
        f"{s['params'] / 1e6:.2f} M parameters. Trained by MMAction2's "
        f"Runner ({s['epochs']} epochs, AdamW 3e-3, cosine, batch 8 "
        f"windows), checkpoint `epoch_{s['epochs']}.pth` as the Runner "
        "saves it "
        f"({s['ckpt_mb']:.1f} MB).",
        '* **Phase metrics**: `mmxai.PhaseMetric` in `Runner.test()` '
        '(every 1 fps grid frame of each held-out procedure, '
        'docs/surgical.md for the rules).',
        '* **Explanations**: the long-video mode (`explain_long_video`, '
        'the config\'s `test_pipeline`: 8 frames 5 apart) over each whole '
        'held-out procedure at seeds '
        f"{s['seed']} and {s['fresh_seed']}, a window every {s['stride']} (`--stride`), "
        'target = the '
        'prediction; scored on the windows whose prediction is right '
        '(the evidence of a wrong class is not known). Evidence of a '
        "window: the target phase's instrument mask in the frames of that "
        'phase.',
        '* **Methods** (`--methods`; a CAM\'s layer after `:`, default '
        "the backbone's last stage `backbone.layer2`, 8x8 cells; "
        '`captum:ALG` a Captum algorithm through `CaptumExplainer`): '
        + ', '.join(f'`{m}`' + (' (' + ', '.join(
            f'{k}={v}' for k, v in method_spec(m)[1].items()) + ')'
            if m in BUDGETS else '') for m in s['methods']) + '.',
        '',
        '## Phase recognition (held-out procedures)',
        '',
        '| procedures | frame accuracy | relaxed accuracy | Jaccard | '
        'relaxed Jaccard | precision | recall | edit | F1@10 | F1@25 | '
        'F1@50 |',
        '|---|---|---|---|---|---|---|---|---|---|---|',
    ]
    for key, label in (('test', f"seed {s['seed']} (held out)"),
                       ('fresh', f"seed {s['fresh_seed']} (fresh)")):
        m = res['phase'][key]
        g = lambda k: m.get('phase/' + k)  # noqa: E731
        lines.append(
            f"| {label} | {fmt(g('accuracy'))} | "
            f"{fmt(g('relaxed_accuracy'))} | {fmt(g('jaccard'))} | "
            f"{fmt(g('relaxed_jaccard'))} | {fmt(g('precision'))} | "
            f"{fmt(g('recall'))} | {fmt(g('edit'))} | {fmt(g('F1@10'))} | "
            f"{fmt(g('F1@25'))} | {fmt(g('F1@50'))} |")
    lines += ['', 'Edit and F1 are in [0, 1] here (MS-TCN prints them x100).',
              '']
    for key, label in (('test', f"seed {s['seed']}"),
                       ('fresh', f"fresh seed {s['fresh_seed']}")):
        e = res['explain'][key]
        lines += [
            f'## Explanations, {label}',
            '',
            f"{e['windows']} windows, {e['windows_correct']} predicted "
            f"right ({100 * e['window_accuracy']:.1f} %); spatial scores "
            f"over those {e['spatial_n']}, temporal over the "
            f"{e['temporal_n']} of them that straddle a phase transition, "
            f"deletion/insertion over {e['di_n']} (evenly spaced, "
            f"{s['di_windows']} per procedure).",
            '',
            '| map | pointing (4.3 px) | pointing (0 px) | frame pointing | '
            'energy in mask | temporal peak | temporal share | deletion '
            'AUC (lower better) | insertion AUC (higher better) |',
            '|---|---|---|---|---|---|---|---|---|',
        ]
        keys = list(s['methods']) + ['random', 'centre',
                                     'feature_occlusion', 'feature_ig']
        for k in keys:
            sp = e['spatial'].get(k, {})
            # a centre map has the same mass in every frame: its 'peak' is
            # frame 0 by the tie rule, not a temporal baseline
            tp = {} if k == 'centre' else e['temporal'].get(k, {})
            d = e['di'].get(k, {})
            lines.append(
                f"| {k} | {fmt(sp.get('pointing'))} | "
                f"{fmt(sp.get('pointing_0'))} | "
                f"{fmt(sp.get('frame_pointing'))} | {fmt(sp.get('energy'))} "
                f"| {fmt(tp.get('peak'))} | {fmt(tp.get('share'))} | "
                f"{fmt(d.get('deletion'))} | {fmt(d.get('insertion'))} |")
        pl = e.get('places', {})
        if pl:
            lines += ['', 'Where the window map\'s maximum lands (share of '
                      'the scored windows; `within`: the whole window in '
                      'the target phase, `straddle`: a transition inside; '
                      "'other phase frame': the maximum is in a frame of the "
                      "previous phase, 'distractor': within 4.3 px of "
                      "another phase's instrument lying still, 'previous "
                      "instrument place': within 4.3 px of where the "
                      "previous phase's instrument was in the window's "
                      "earlier frames (tissue now), 'elsewhere': other "
                      'tissue):', '',
                      '| map | windows | ' + ' | '.join(MAX_PLACES) + ' |',
                      '|---|---|' + '---|' * len(MAX_PLACES)]
            for k in list(s['methods']) + ['random']:
                for wk in ('all', 'within', 'straddle'):
                    d = pl.get(k, {}).get(wk)
                    if d:
                        lines.append(f"| {k} ({wk}) | {d['n']} | " + ' | '.join(
                            fmt(d[x]) for x in MAX_PLACES) + ' |')
        sg = {k: v for k, v in e.get('signs', {}).items()
              if e.get('signed_windows', {}).get(k)}
        if sg:
            lines += ['', 'Signed maps on the straddling windows (the raw '
                      "map's mass per frame, before the positive part is "
                      "taken): the share of its positive and of its "
                      "negative mass in the previous phase's frames, and "
                      'the negative part of the mass in those frames (0.5: '
                      'as much against the target as for it; previous-'
                      'phase frames are '
                      f"{fmt(1 - ch_of(e))} of these windows' frames):", '',
                      '| map | signed windows | positive mass in previous '
                      'phase | negative mass in previous phase | negative '
                      'part of the previous phase\'s mass |',
                      '|---|---|---|---|---|']
            for k, v in sg.items():
                lines.append(f"| {k} | {e['signed_windows'][k]} | "
                             f"{fmt(v.get('pos_prev'))} | "
                             f"{fmt(v.get('neg_prev'))} | "
                             f"{fmt(v.get('neg_of_prev'))} |")
        ch = next(iter(e['temporal'].values()), {}).get('chance')
        lines += ['', f"Temporal chance level (share of the target phase's "
                      f"frames in those windows): {fmt(ch)}. Mask volume "
                      f"share (a uniform map's energy): "
                      f"{fmt(e.get('mask_share'), 4)}.",
                  f"Seconds per method (all procedures, long-video mode): "
                  + ', '.join(f'{k} {v:.0f}' for k, v in
                              e['seconds'].items()) + '.', '']
    lines += probe_lines(res)
    lines += goal_lines(res)
    if res.get('shortcut'):
        lines += shortcut_lines(res, res['shortcut'],
                                res.get('shortcut_fig'))
    lines += [
        '## Figure',
        '',
        f'![phase ribbons and key frames]({fig_rel})',
        '',
        'Top: ground truth and online prediction of each held-out '
        'procedure (seed '
        f"{s['seed']}). Below: one key frame per phase of the first "
        "procedure (the last frame of a rightly predicted window), the "
        "phase instrument's mask outlined in white, and each method's map "
        'on it.',
        '',
        '## How the scores are computed',
        '',
        "* `pointing`: in the frame holding the window map's global "
        "maximum, the mean position of that frame's maxima lies "
        'within 4.3 px (Zhang et al.\'s 15 px at 224, scaled to 64 px) of '
        'the mask; `pointing (0 px)` inside it; `frame pointing`: per '
        'evidence frame (`pointing_game(mode=\'frame\')`).',
        '* `energy`: share of the positive map mass inside the masks '
        '(`energy_in_tube`).',
        '* `temporal peak`: the frame of largest importance (map mass per '
        'frame; for `feature_occlusion` / `feature_ig` the attribution over '
        "the cached feature sequence, `mmxai.models`, to the last frame's "
        'score) is a frame of the target phase; `temporal share`: the '
        'positive importance in those frames.',
        '* deletion / insertion: `deletion_insertion_curve`, 8x8 px cells of '
        f'each frame ranked by the map, {DI_STEPS} steps, removed to the '
        "mean colour (`fade`), AUC of the target's softmax probability.",
        '* `random`: uniform noise per window; `centre`: a Gaussian at the '
        'frame centre (the instruments work on a ring around it).',
        '* Signed maps (Input x Gradient, Guided Backprop, Integrated '
        'Gradients summed over colour channels, occlusion\'s score drops) '
        'are scored on their positive part `max(M, 0)` '
        '(`PositivePart` in the script): the long-video mode stores a '
        'signed map as drawn, clipped at the 99th percentile of |M|, where '
        'about 1 % of the pixels tie at the top and the maximum is not '
        'defined. The positive part has the signed map\'s own maximum and '
        'positive mass, so pointing, energy and the temporal scores are '
        'those of the signed map; deletion / insertion rank its negative '
        'cells as ties at 0 (last). Unsigned maps (CAMs after their ReLU, '
        '`saliency` = max over colour of |gradient|, SmoothGrad, RISE) '
        'are scored as they are.',
        '',
        'Tests: `tests/test_tools/test_bench_surgical.py` (planted maps; '
        'the smallest end-to-end run is `sweep`-marked).',
        '',
    ]
    with open(path, 'w') as f:
        f.write('\n'.join(lines))


# ------------------------------------------------------------ split runs
def _command(argv) -> str:
    return ('python tools/benchmarks/bench_surgical.py ' + ' '.join(
        argv if argv is not None else sys.argv[1:])).strip()


def explain_one(args, s, work, argv) -> dict:
    """Step 4 for one seed (``--explain-only``): ``explain_<key>.json`` and,
    for the held-out seed, the figure's data (``figure_data.pkl``)."""
    import pickle

    import torch
    from mmxai.apis import init_recognizer
    key = args.explain_only
    seed = args.seed if key == 'test' else args.fresh_seed
    root = osp.join(work, f'procedures_seed{args.seed}')
    r = osp.join(work, f'procedures_seed{seed}')
    train_ids, test_ids = split_ids(s['train'], s['test'])
    cfg = load_cfg(root, train_ids, test_ids, s['epochs'],
                   osp.join(work, 'train'), args.spatial_pool)
    model = init_recognizer(cfg, args.checkpoint, device='cpu')
    t0 = time.perf_counter()
    e, pr, kf = explain_procedures(
        model, r, test_ids, s['methods'], s['di_windows'], seed,
        s['stride'], fig_dir=osp.join(work, 'long_video')
        if key == 'test' else None)
    e['mask_share'] = float(np.mean([np.load(osp.join(
        r, 'masks', f'video{v:02d}-masks.npz'))['phase_mask'].mean()
        for v in test_ids]))
    out = dict(explain=e, seconds=time.perf_counter() - t0,
               started=time.time() - (time.perf_counter() - t0),
               ended=time.time(),
               params=sum(q.numel() for q in model.parameters()),
               load=' '.join(f'{v:.1f}' for v in os.getloadavg()),
               command=_command(argv), torch=torch.__version__)
    with open(osp.join(work, f'explain_{key}.json'), 'w') as f:
        json.dump(out, f, indent=1)
    if key == 'test':
        with open(osp.join(work, 'figure_data.pkl'), 'wb') as f:
            pickle.dump((pr, kf), f)
    print(f"explained seed {seed} in {out['seconds']:.0f} s", flush=True)
    return out


def merge(args, s, work, argv, probe_file) -> dict:
    """``--merge``: the two ``--explain-only`` runs, the probe and the phase
    metrics of ``--phase-from`` -> results.json, the figure, ``--doc``."""
    import pickle
    parts = {}
    for key in ('test', 'fresh'):
        with open(osp.join(work, f'explain_{key}.json')) as f:
            parts[key] = json.load(f)
    with open(args.phase_from) as f:
        old = json.load(f)
    train_ids, test_ids = split_ids(s['train'], s['test'])
    o = old['settings']
    ckpt = args.checkpoint
    # one after the other, or at once (the doc's command says which)
    spans = [(p.get('started'), p.get('ended')) for p in parts.values()]
    overlap = all(a is not None for sp in spans for a in sp) and \
        spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1]
    if s.get('context_dropout') is None:
        s['context_dropout'] = o.get('context_dropout')
    # the run that trained the checkpoint (kept through later merges)
    trained_by = o.get('train_command')
    if trained_by:
        s['train_command'] = trained_by
        s['phase_from_note'] = (
            f"The checkpoint and the phase metrics come from `{trained_by}` "
            '(generation, training with the Runner, `Runner.test`), whose '
            '`results.json`, copied before a merge rewrites it, is the '
            '`--phase-from` file.')
    amp = ' &' if overlap else ''
    s.update(train_ids=train_ids, test_ids=test_ids,
             params=parts['test']['params'], parallel=overlap,
             ckpt_mb=osp.getsize(ckpt) / 2**20, train_s=0.0,
             train_given=args.train_seconds, gen_s=o.get('gen_s', 0.0),
             test_s=o.get('test_s', 0.0),
             explain_s=max(p['seconds'] for p in parts.values()),
             explain_split={k: p['seconds'] for k, p in parts.items()},
             load=parts['fresh']['load'],
             machine=f"{os.cpu_count()} CPU cores (shared), torch "
             f"{parts['test']['torch']}, no GPU",
             command='\n'.join([parts['test']['command'] + amp,
                                 parts['fresh']['command'] + amp,
                                 '{probe}'] + (['wait'] if overlap else [])
                                + [_command(argv)]))
    s['total_s'] = s['explain_s'] + s['gen_s'] + s['test_s']
    res = dict(settings=s, phase=old['phase'],
               explain={k: p['explain'] for k, p in parts.items()},
               checkpoint=ckpt)
    probe_cmd = ''
    if osp.isfile(probe_file):
        with open(probe_file) as f:
            res['probe'] = json.load(f)
        probe_cmd = res['probe'].get('command', '') + amp
    s['command'] = s['command'].replace('{probe}\n', probe_cmd + '\n'
                                        if probe_cmd else '')
    with open(osp.join(work, 'results.json'), 'w') as f:
        json.dump(res, f, indent=1)
    with open(osp.join(work, 'figure_data.pkl'), 'rb') as f:
        preds, keys = pickle.load(f)
    fig = osp.join(work, 'surgical_benchmark.png')
    draw_figure(fig, preds, keys, s['methods'])
    if args.doc:
        import shutil
        fig_dir_doc = osp.join(osp.dirname(osp.abspath(args.doc)), 'figures')
        os.makedirs(fig_dir_doc, exist_ok=True)
        shutil.copy(fig, osp.join(fig_dir_doc, 'surgical_benchmark.png'))
        write_doc(args.doc, res, 'figures/surgical_benchmark.png',
                  s['command'])
    return res


# ------------------------------------------------------------ main
def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--work-dir', default='work_dirs/bench_surgical')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--fresh-seed', type=int, default=1)
    p.add_argument('--train', type=int)
    p.add_argument('--test', type=int)
    p.add_argument('--duration', type=float)
    p.add_argument('--epochs', type=int)
    p.add_argument('--di-windows', type=int)
    p.add_argument('--stride', help="between explained windows ('2s')")
    p.add_argument('--methods', nargs='+')
    p.add_argument('--spatial-pool', choices=('grid', 'avg'), default='grid',
                   help="the head's pooling of the frame features ('avg': "
                   'the global mean, the ablation)')
    p.add_argument('--context-dropout', type=float,
                   help="the head's training-time context swap probability "
                   "(CausalMSTCNHead context_dropout; default the config's)")
    p.add_argument('--context-fill',
                   choices=('swap', 'shuffle', 'zero', 'last'),
                   help="CausalMSTCNHead context_fill (default the config's)")
    p.add_argument('--smooth-weight', type=float,
                   help="CausalMSTCNHead smooth_weight, MS-TCN's smoothing "
                   "loss (0: off; default the config's)")
    p.add_argument('--train-only', action='store_true',
                   help='steps 1-3 only (procedures, training, phase '
                   'metrics); results.json then serves --phase-from')
    p.add_argument('--smoke', action='store_true',
                   help='smallest setting (2 train, 1 test, 40 s, 1 epoch)')
    p.add_argument('--checkpoint', help='skip training, use this')
    p.add_argument('--train-seconds', type=float,
                   help='with --checkpoint: the training time of the run '
                   'that made it (reported in the doc as such)')
    p.add_argument('--probe', action='store_true',
                   help='only the transition probe (transition_probe) on '
                   "the work dir's procedures and --checkpoint; its "
                   'results go to transition_probe.json, which the doc '
                   'reports')
    p.add_argument('--explain-only', choices=('test', 'fresh'),
                   help='only step 4 for one seed (the held-out or the '
                   'fresh one) with --checkpoint, on the procedures of the '
                   "work dir; writes explain_<seed>.json there (run both "
                   'at once, then --merge)')
    p.add_argument('--merge', action='store_true',
                   help='write results.json, the figure and --doc from '
                   'explain_test.json, explain_fresh.json, '
                   'transition_probe.json and the phase metrics of '
                   '--phase-from')
    p.add_argument('--phase-from', help='with --merge: a results.json whose '
                   'phase metrics (Runner.test of the same checkpoint on '
                   'the same procedures) are reported')
    p.add_argument('--report-only', action='store_true',
                   help="rewrite --doc from the work dir's results.json")
    p.add_argument('--shortcut-from', help='with --report-only: a '
                   'results.json (--merge) of a model trained with the '
                   "head's context swap, reported side by side in its own "
                   'section (its figure next to it, if there)')
    p.add_argument('--doc', help='write this markdown page (and its figure '
                   'next to it in figures/)')
    args = p.parse_args(argv)
    s = dict(SMOKE if args.smoke else FULL)
    for k in ('train', 'test', 'duration', 'epochs', 'di_windows',
              'methods', 'stride'):
        if getattr(args, k) is not None:
            s[k] = getattr(args, k)
    s.update(seed=args.seed, fresh_seed=args.fresh_seed,
             spatial_pool=args.spatial_pool,
             context_dropout=args.context_dropout,
             context_fill=args.context_fill, smooth_weight=args.smooth_weight)
    torch_threads = int(os.environ.get('OMP_NUM_THREADS', '0') or 0)
    import torch
    if torch_threads:
        torch.set_num_threads(torch_threads)
    torch.manual_seed(args.seed)
    import mmxai  # noqa: F401  (registers the dataset, head, metric)
    work = osp.abspath(args.work_dir)
    os.makedirs(work, exist_ok=True)
    probe_file = osp.join(work, 'transition_probe.json')
    if args.probe:
        from mmxai.apis import init_recognizer
        root = osp.join(work, f'procedures_seed{args.seed}')
        fresh_root = osp.join(work, f'procedures_seed{args.fresh_seed}')
        _, test_ids = split_ids(s['train'], s['test'])
        cfg = load_cfg(root, [1], test_ids, s['epochs'],
                       osp.join(work, 'train'), args.spatial_pool)
        model = init_recognizer(cfg, args.checkpoint, device='cpu')
        probe = dict(stride=s['stride'], command=(
            'python tools/benchmarks/bench_surgical.py ' + ' '.join(
                argv if argv is not None else sys.argv[1:])).strip())
        for key, r in (('test', root), ('fresh', fresh_root)):
            probe[key] = transition_probe(model, r, test_ids, s['stride'])
        with open(probe_file, 'w') as f:
            json.dump(probe, f, indent=1)
        print(json.dumps(probe, indent=1))
        return probe
    if args.explain_only:
        return explain_one(args, s, work, argv)
    if args.merge:
        return merge(args, s, work, argv, probe_file)
    if args.report_only:
        with open(osp.join(work, 'results.json')) as f:
            res = json.load(f)
        if osp.isfile(probe_file):
            with open(probe_file) as f:
                res['probe'] = json.load(f)
        if args.shortcut_from:
            import shutil
            with open(args.shortcut_from) as f:
                res['shortcut'] = json.load(f)
            fig = osp.join(osp.dirname(args.shortcut_from),
                           'surgical_benchmark.png')
            if osp.isfile(fig):
                fig_dir_doc = osp.join(osp.dirname(osp.abspath(args.doc)),
                                       'figures')
                os.makedirs(fig_dir_doc, exist_ok=True)
                shutil.copy(fig, osp.join(
                    fig_dir_doc, 'surgical_benchmark_context_swap.png'))
                res['shortcut_fig'] = \
                    'figures/surgical_benchmark_context_swap.png'
        write_doc(args.doc, res, 'figures/surgical_benchmark.png',
                  res['settings'].get('command', ''))
        return res
    t_all = time.perf_counter()
    log = lambda *a: print(*a, flush=True)  # noqa: E731
    # 1. procedures
    t0 = time.perf_counter()
    root = osp.join(work, f'procedures_seed{args.seed}')
    fresh_root = osp.join(work, f'procedures_seed{args.fresh_seed}')
    train_ids, test_ids = split_ids(s['train'], s['test'])
    s.update(train_ids=train_ids, test_ids=test_ids)
    generate(root, train_ids + test_ids, args.seed, s['duration'])
    generate(fresh_root, test_ids, args.fresh_seed, s['duration'])
    s['gen_s'] = time.perf_counter() - t0
    log(f"generated {len(train_ids)}+{len(test_ids)} procedures (seed "
        f"{args.seed}) and {len(test_ids)} (seed {args.fresh_seed}) in "
        f"{s['gen_s']:.0f} s")
    # 2. train with the Runner
    cfg = load_cfg(root, train_ids, test_ids, s['epochs'],
                   osp.join(work, 'train'), args.spatial_pool,
                   args.context_dropout, args.context_fill,
                   args.smooth_weight)
    t0 = time.perf_counter()
    ckpt = args.checkpoint or train(cfg)
    s['train_s'] = time.perf_counter() - t0
    if args.checkpoint:
        s['train_given'] = args.train_seconds
    else:  # --merge names this run as the checkpoint's origin
        s['train_command'] = _command(argv)
    s['ckpt_mb'] = osp.getsize(ckpt) / 2**20
    log(f"checkpoint {ckpt} ({s['ckpt_mb']:.1f} MB) after "
        f"{s['train_s']:.0f} s")
    # 3. phase metrics through Runner.test
    t0 = time.perf_counter()
    phase = dict(test=test(cfg, ckpt, root, test_ids),
                 fresh=test(cfg, ckpt, fresh_root, test_ids))
    s['test_s'] = time.perf_counter() - t0
    for k, v in phase.items():
        log(f"phase metrics ({k}): accuracy {v['phase/accuracy']:.3f}, "
            f"relaxed Jaccard {v['phase/relaxed_jaccard']:.3f}")
    if args.train_only:
        s['command'] = _command(argv)
        res = dict(settings=s, phase=phase, checkpoint=ckpt)
        with open(osp.join(work, 'results.json'), 'w') as f:
            json.dump(res, f, indent=1)
        return res
    # 4. explanations through the long-video mode
    from mmxai.apis import init_recognizer
    model = init_recognizer(cfg, ckpt, device='cpu')
    s['params'] = sum(q.numel() for q in model.parameters())
    t0 = time.perf_counter()
    fig_dir = osp.join(work, 'long_video')
    explain, preds, keys = {}, {}, {}
    for key, r, seed in (('test', root, args.seed),
                         ('fresh', fresh_root, args.fresh_seed)):
        log(f'explaining the held-out procedures (seed {seed})')
        explain[key], pr, kf = explain_procedures(
            model, r, test_ids, s['methods'], s['di_windows'], seed,
            s['stride'], fig_dir=fig_dir if key == 'test' else None, log=log)
        share = []
        for vid in test_ids:
            z = np.load(osp.join(r, 'masks', f'video{vid:02d}-masks.npz'))
            share.append(z['phase_mask'].mean())
        explain[key]['mask_share'] = float(np.mean(share))
        if key == 'test':
            preds, keys = pr, kf
    s['explain_s'] = time.perf_counter() - t0
    t0 = time.perf_counter()
    probe = dict(stride='4s')
    for key, r in (('test', root), ('fresh', fresh_root)):
        probe[key] = transition_probe(model, r, test_ids, '4s', log=log)
    with open(probe_file, 'w') as f:
        json.dump(probe, f, indent=1)
    s['probe_s'] = time.perf_counter() - t0
    s['total_s'] = time.perf_counter() - t_all
    s['load'] = ' '.join(f'{v:.1f}' for v in os.getloadavg())
    s['machine'] = (f'{os.cpu_count()} CPU cores (shared), torch '
                    f'{torch.__version__}, no GPU')
    s['command'] = ('python tools/benchmarks/bench_surgical.py ' + ' '.join(
        argv if argv is not None else sys.argv[1:])).strip()
    res = dict(settings=s, phase=phase, explain=explain, checkpoint=ckpt,
               probe=probe)
    with open(osp.join(work, 'results.json'), 'w') as f:
        json.dump(res, f, indent=1)
    fig = osp.join(work, 'surgical_benchmark.png')
    draw_figure(fig, preds, keys, s['methods'])
    log(json.dumps(dict(phase=phase, explain=explain), indent=1))
    if args.doc:
        fig_dir_doc = osp.join(osp.dirname(osp.abspath(args.doc)), 'figures')
        os.makedirs(fig_dir_doc, exist_ok=True)
        import shutil
        shutil.copy(fig, osp.join(fig_dir_doc, 'surgical_benchmark.png'))
        write_doc(args.doc, res, 'figures/surgical_benchmark.png',
                  s['command'])
        log(f'wrote {args.doc}')
    log(f"total {s['total_s'] / 60:.1f} min")
    return res


if __name__ == '__main__':
    main()
