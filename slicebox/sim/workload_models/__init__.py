"""Speed models the simulator runs jobs with, loaded from the public profiles.

    from slicebox.sim import workload_models as wm
    wm.GavelThroughputs().throughput("ResNet-50 (batch size 64)", 1, "v100")  # steps/s
    wm.SiaProfiles().samples_per_second("cifar10", "aws", 4, 512)             # samples/s
    wm.SynergySensitivity().speedup("res18", cpus_per_gpu=6, memory_gb_per_gpu=62.5)

An unknown name raises `UnknownNameError`, whose message lists the valid ones.
"""

from slicebox.sim.workload_models.errors import ProfileDataError, UnknownNameError
from slicebox.sim.workload_models.gavel import GavelThroughputs
from slicebox.sim.workload_models.sia import SiaProfiles, StepTime, even_placement
from slicebox.sim.workload_models.sia_apps import APPLICATIONS as SIA_APPLICATIONS
from slicebox.sim.workload_models.sia_apps import SiaApplication
from slicebox.sim.workload_models.synergy import SynergyProfile, SynergySensitivity

__all__ = [
    "SIA_APPLICATIONS",
    "GavelThroughputs",
    "ProfileDataError",
    "SiaApplication",
    "SiaProfiles",
    "StepTime",
    "SynergyProfile",
    "SynergySensitivity",
    "UnknownNameError",
    "even_placement",
]
