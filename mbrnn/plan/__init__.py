"""The planner: which states to keep during BPTT, and what to recompute.

Pure Python (stdlib + numpy); it never imports torch.
"""

from .baselines import chen_ops as chen_ops
from .baselines import recompute_all_ops as recompute_all_ops
from .baselines import store_all_ops as store_all_ops
from .chain import Chain as Chain
from .hierarchy import EXACT_LIMIT as EXACT_LIMIT
from .hsm import hsm_cost as hsm_cost
from .hsm import hsm_split as hsm_split
from .ops import Backward as Backward
from .ops import Forward as Forward
from .ops import ForwardKeep as ForwardKeep
from .ops import FreeHidden as FreeHidden
from .ops import KeepHidden as KeepHidden
from .ops import Op as Op
from .ops import OpSequence as OpSequence
from .ops import Plan as Plan
from .ops import Simulation as Simulation
from .policy import POLICIES as POLICIES
from .policy import Policy as Policy
from .policy import check_policy as check_policy
from .policy import rank as rank
from .simulate import simulate as simulate
from .simulate import simulate_ops as simulate_ops
from .simulate import summary as summary
from .solver import solve as solve

__all__ = [
    "EXACT_LIMIT",
    "POLICIES",
    "Backward",
    "Chain",
    "Forward",
    "ForwardKeep",
    "FreeHidden",
    "KeepHidden",
    "Op",
    "OpSequence",
    "Plan",
    "Policy",
    "Simulation",
    "check_policy",
    "chen_ops",
    "hsm_cost",
    "hsm_split",
    "rank",
    "recompute_all_ops",
    "simulate",
    "simulate_ops",
    "solve",
    "store_all_ops",
    "summary",
]
