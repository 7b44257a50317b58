"""Timeline records: per-frame predictions, frame accuracy, CSV/JSON."""
import csv
import json

import numpy as np

from mmxai.outputs import Timeline, WindowRecord
from mmxai.outputs.timeline import write_timeline_csv, write_timeline_json


def _timeline():
    wins = [WindowRecord(0, 0, 9, 0.0, 1.0, pred=0, pred_prob=0.9,
                         topk=[(0, 0.9), (1, 0.1)], target=0,
                         target_prob=0.9, mass=[0.5, 0.5]),
            WindowRecord(1, 5, 14, 0.5, 1.5, pred=1, pred_prob=0.8,
                         topk=[(1, 0.8)], target=1, target_prob=0.8),
            WindowRecord(2, 15, 19, 1.5, 2.0, status='failed',
                         error='cannot decode')]
    gt = np.array([0] * 6 + [1] * 14)
    return Timeline(wins, 10.0, 20, ['a', 'b'], gt=gt)


def test_frame_predictions_nearest_covering_window():
    tl = _timeline()
    pred = tl.frame_predictions()
    # frames 0..7 nearer window 0's centre (4.5; 7 is a tie: the first),
    # 8..14 window 1's (9.5); 15.. only the failed window
    assert pred.tolist() == [0] * 8 + [1] * 7 + [-1] * 5
    assert abs(tl.frame_accuracy() - 13 / 15) < 1e-9  # frames 6, 7 wrong
    assert [w.index for w in tl.failed] == [2]


def test_online_windows_take_their_label_frame():
    # online windows (label at the last seen frame): window 0 sees 0..9
    # (label frame 9), window 1 sees 5..14 (label frame 14); frame f takes
    # the covering window whose label frame is nearest: 0..9 window 0
    # (5..9 are nearer 9 than 14), 10..14 only window 1 covers
    wins = [WindowRecord(0, 0, 9, 0.0, 1.0, pred=0, label_frame=9),
            WindowRecord(1, 5, 14, 0.5, 1.5, pred=1, label_frame=14)]
    tl = Timeline(wins, 10.0, 15, ['a', 'b'],
                  gt=np.array([0] * 10 + [1] * 5))
    assert tl.frame_predictions().tolist() == [0] * 10 + [1] * 5
    assert tl.frame_accuracy() == 1.0
    assert abs(wins[0].at_s - 0.95) < 1e-9  # frame 9's time centre
    assert abs(wins[1].at_s - 1.45) < 1e-9
    # the same windows read as offline (centres 4.5, 9.5): frames 8, 9
    # go to window 1 and are wrong
    for w in wins:
        w.label_frame = None
    assert tl.frame_predictions().tolist() == [0] * 8 + [1] * 7
    assert abs(tl.frame_accuracy() - 13 / 15) < 1e-9
    assert abs(wins[0].at_s - 0.5) < 1e-9


def test_label_position_reads_the_config_and_the_head():
    from mmengine.config import Config
    from torch import nn

    from mmxai.apis.long_video import label_position
    online = Config(dict(test_dataloader=dict(dataset=dict(
        type='mmxai.Cholec80Dataset', label_at='last'))))
    offline = Config(dict(test_dataloader=dict(dataset=dict(
        type='VideoDataset'))))
    assert label_position(nn.Module(), online) == 'last'
    assert label_position(nn.Module(), offline) == 'centre'

    class CausalMSTCNHead(nn.Module):
        pass
    m = nn.Module()
    m.cls_head = CausalMSTCNHead()
    assert label_position(m, offline) == 'last'


def test_csv_and_json_round_trip(tmp_path):
    tl = _timeline()
    write_timeline_csv(str(tmp_path / 't.csv'), tl)
    rows = list(csv.DictReader(open(tmp_path / 't.csv')))
    assert rows[0]['topk'] == 'a:0.9000;b:0.1000'
    assert rows[0]['mass'] == '0.5000;0.5000'
    assert rows[2]['status'] == 'failed' and rows[2]['pred_label'] == ''
    tl.out_dir = str(tmp_path)
    tl.files['json'] = str(tmp_path / 'timeline.json')
    write_timeline_json(tl.files['json'], tl)
    back = Timeline.load(str(tmp_path))
    assert json.dumps([w.to_dict() for w in back]) == json.dumps(
        [w.to_dict() for w in tl])
