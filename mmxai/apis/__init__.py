"""High-level APIs: build a recognizer, explain a video, write outputs."""
from .compare import Comparison, compare_methods
from .dataset_runner import explain_dataset
from .inference import VideoExplanation, explain_video
from .long_video import explain_long_video
from .model import init_recognizer, resolve_config_path, strip_pretrained
from .outputs import write_video_outputs
from .phase_sequence import PhaseSequenceExplanation, explain_phase_sequence
from .phase_video import explain_phase_video
from .video_input import load_video_sample

__all__ = ['explain_dataset', 'explain_video', 'explain_long_video', 'VideoExplanation', 'init_recognizer',
           'resolve_config_path', 'strip_pretrained', 'write_video_outputs',
           'load_video_sample', 'compare_methods', 'Comparison',
           'explain_phase_sequence', 'PhaseSequenceExplanation',
           'explain_phase_video']
