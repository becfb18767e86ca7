"""Evaluation of fusion engines: metrics (PSNR, SSIM, Q^AB/F, NMI), the halo measure, references
(best single frame, depth oracle), the ``evaluate`` runner and its reports (table, JSON, figures).
See docs/evaluation.md.
"""

from .halo import halo_measure
from .metrics import nmi, psnr, qabf, ssim
from .references import best_single_frame, depth_oracle, oracle_index
from .run import BEST_FRAME, ORACLE, evaluate
from .stacks import EvalStack, find_stacks, load_eval_stack

__all__ = [
    "psnr", "ssim", "qabf", "nmi", "halo_measure",
    "best_single_frame", "depth_oracle", "oracle_index",
    "evaluate", "ORACLE", "BEST_FRAME",
    "EvalStack", "find_stacks", "load_eval_stack",
]
