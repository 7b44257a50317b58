"""Localisation and sanity-check metrics of the benchmark, on planted maps."""
import numpy as np
import pytest
import torch

import mmxai  # noqa: F401
from mmxai.datasets.synthetic_benchmark import (DIFFICULTIES, difficulty_cfg,
                                                generate_benchmark_dataset)
from mmxai.errors import MMXAIError
from mmxai.evaluation.localization import (centre_map, energy_in_tube,
                                           localization_scores, random_map,
                                           scaled_tolerance, st_pointing_game,
                                           temporal_energy,
                                           temporal_grounding_hit)
from mmxai.evaluation.sanity import (cascading_randomization,
                                     randomized_copy, rank_correlation)


def tube(t=8, s=16):
    """Evidence in frames 2..4, pixels [4:8, 10:14]."""
    m = torch.zeros(t, s, s, dtype=torch.bool)
    m[2:5, 4:8, 10:14] = True
    return m


def test_pointing_hit_and_miss():
    mask = tube()
    hit = torch.zeros(8, 16, 16)
    hit[3, 5, 11] = 1.0
    assert st_pointing_game(hit, mask)
    off_space = torch.zeros(8, 16, 16)
    off_space[3, 12, 2] = 1.0
    assert not st_pointing_game(off_space, mask)
    off_time = torch.zeros(8, 16, 16)
    off_time[6, 5, 11] = 1.0  # right place, frame without evidence
    assert not st_pointing_game(off_time, mask)
    near = torch.zeros(8, 16, 16)
    near[3, 5, 8] = 1.0  # 2 px left of the tube
    assert not st_pointing_game(near, mask, tolerance=1.0)
    assert st_pointing_game(near, mask, tolerance=2.0)
    with pytest.raises(MMXAIError):
        st_pointing_game(hit, torch.zeros_like(mask))
    assert scaled_tolerance(64) == pytest.approx(15 * 64 / 224)


def test_energy_in_tube():
    mask = tube()
    m = torch.zeros(8, 16, 16)
    m[mask] = 3.0
    assert energy_in_tube(m, mask) == pytest.approx(1.0)
    m[0, 0, 0] = 3 * mask.sum()  # as much mass outside as inside
    assert energy_in_tube(m, mask) == pytest.approx(0.5)
    m[1, 1, 1] = -100.0  # negative evidence does not count
    assert energy_in_tube(m, mask) == pytest.approx(0.5)
    uniform = torch.ones(8, 16, 16)
    assert energy_in_tube(uniform, mask) == pytest.approx(
        float(mask.float().mean()))
    assert energy_in_tube(torch.zeros(8, 16, 16), mask) == 0.0


def test_temporal_grounding_and_energy():
    m = torch.zeros(8, 4, 4)
    m[3] = 1.0
    m[6, 0, 0] = 2.0  # brighter pixel, but less mass than frame 3
    assert temporal_grounding_hit(m, [2, 3, 4])
    assert not temporal_grounding_hit(m, [5, 6])
    frames = torch.zeros(8, dtype=torch.bool)
    frames[2:5] = True
    assert temporal_grounding_hit(m, frames)
    assert temporal_energy(m, frames) == pytest.approx(16 / 18)
    scores = localization_scores(m, torch.zeros(8, 4, 4, dtype=torch.bool)
                                 .index_fill_(0, torch.tensor([3]), True))
    # frame 3 holds the most mass, but the brightest voxel is in frame 6
    assert scores['temporal_grounding'] == 1.0 and scores['pointing'] == 0.0


def test_baseline_maps():
    g = torch.Generator().manual_seed(0)
    r = random_map((8, 16, 16), g)
    assert r.shape == (8, 16, 16) and 0 <= r.min() and r.max() <= 1
    assert not torch.equal(r[0], r[1])
    st = random_map((2, 8, 16, 16), g, static=True)
    assert st.shape == (2, 8, 16, 16) and torch.equal(st[1, 0], st[1, 7])
    assert not torch.equal(st[0, 0], st[1, 0])
    c = centre_map((8, 16, 16))
    assert c.shape == (8, 16, 16)
    assert torch.equal(c[0], c[7])
    y, x = divmod(int(c[0].argmax()), 16)
    assert {y, x} <= {7, 8}
    centred = torch.zeros(8, 16, 16, dtype=torch.bool)
    centred[3:5, 6:10, 6:10] = True
    # maxima at the 4 centre pixels of every frame: mean (3.5, 7.5, 7.5)
    assert st_pointing_game(c, centred, tolerance=1.0)
    assert not st_pointing_game(c, tube(), tolerance=1.0)


def test_rank_correlation_identical_and_random():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(8, 16, 16, generator=g)
    assert rank_correlation(a, a) == pytest.approx(1.0)
    assert rank_correlation(a, 2 * a + 1) == pytest.approx(1.0)  # monotone
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
    b = torch.rand(8, 16, 16, generator=g)
    assert abs(rank_correlation(a, b)) < 0.1
    assert rank_correlation(a, torch.zeros_like(a)) == 0.0
    assert rank_correlation(torch.ones(3), torch.ones(3)) == 1.0


def test_cascading_randomization_changes_a_model_dependent_map():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv1d(1, 4, 3, padding=1),
                                torch.nn.ReLU(), torch.nn.Conv1d(4, 1, 1))
    x = torch.randn(1, 1, 64)

    def grad_map(m):  # input gradient: depends on the weights
        xx = x.clone().requires_grad_(True)
        m(xx).sum().backward()
        return xx.grad.abs().view(1, 64)

    def input_map(m):  # ignores the model: must not change
        return x.abs().view(1, 64)

    before = [p.clone() for p in model.parameters()]
    steps = cascading_randomization(grad_map, model, ['2', '0'])
    assert [s['layers'] for s in steps] == [['2'], ['2', '0']]
    assert steps[-1]['spearman'] < 0.9
    assert all(torch.equal(a, b) for a, b in zip(before,
                                                 model.parameters()))
    same = cascading_randomization(input_map, model, ['2', '0'])
    assert same[-1]['spearman'] == pytest.approx(1.0)
    copy = randomized_copy(model, ['0'], seed=1)
    assert not torch.equal(copy[0].weight, model[0].weight)
    assert torch.equal(copy[2].weight, model[2].weight)


def test_difficulty_and_generation(tmp_path):
    assert difficulty_cfg('medium')['num_distractors'] == \
        DIFFICULTIES['medium']['num_distractors']
    assert difficulty_cfg(1.0)['noise'] == DIFFICULTIES['hard']['noise']
    assert difficulty_cfg(0.25)['noise'] == pytest.approx(6.0)
    with pytest.raises(ValueError):
        difficulty_cfg('impossible')
    anns = generate_benchmark_dataset(
        str(tmp_path), 'hard', splits=['test'], sizes=dict(test=(1, 5)),
        num_frames=8, size=32)
    lines = open(anns['test']).read().split()
    assert len(lines) == 8  # 4 clips: path + label
    with np.load(tmp_path / (lines[0][:-4] + '.npz')) as z:
        assert z['mask'].shape == (8, 32, 32) and z['mask'].any()
        assert len(z['active_frames']) >= 1


@pytest.mark.parametrize('name,layers', [
    ('i3d', None), ('tsm', None), ('transformer', ['backbone.blocks3.1'])])
def test_benchmark_configs_build_and_explain(name, layers):
    """The shipped configs build with the toolbox; Grad-CAM on the layer the
    benchmark uses gives an input-sized map from a 4x4 grid."""
    import os.path as osp
    from mmxai.apis import init_recognizer
    from mmxai.explainers import GradCAM
    from mmxai.utils.hooks import capture_activations
    root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    model = init_recognizer(osp.join(root, 'configs', 'benchmark',
                                     f'{name}_synthetic.py'))
    cam = GradCAM(model, target_layers=layers)
    shape = (1, 8, 3, 64, 64) if name == 'tsm' else (1, 1, 3, 16, 64, 64)
    x = torch.randn(shape)
    exp = cam.attribute(x, target=0)
    t = 8 if name == 'tsm' else 16
    assert exp.maps.shape == (1, 1, t, 64, 64)
    with capture_activations(model, cam.target_layers) as store, \
            torch.no_grad():
        cam.adapter.scores(x)
        act = store.collect()[cam.target_layers[0]]
    grid = cam.adapter.activation_grid(cam.target_layers[0], act, x)
    assert grid.shape[-3:] == (8, 4, 4)
