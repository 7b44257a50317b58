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
