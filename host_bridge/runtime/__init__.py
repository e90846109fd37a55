"""The bridge's runtime: one run of the bridge for one slot.

- ``plan``: where and how each task runs (the one rule, shared with ``host-bridge check``);
- ``job``: ``Runtime.run`` — load the job, restore the checkpoint, run the planned tasks in order;
- ``taskloop``: one task's loop — gather, ``core.decide``, apply;
- ``guest``: the guest's status (strict, budgeted decoding; vboxwrapper's files);
- ``messages``: the client's side (status, trickles, uploads) and the control file for the guest;
- ``slotfiles``: files between the slot and the share (inputs, outputs, zips, upload destinations);
- ``store``: the bridge's own checkpoint and the fraction-done floor.
"""

from .job import Runtime, default_backend_factory, job_digest, load_job
from .plan import JobPlan, PlanContext, TaskPlan, plan_job

__all__ = [
    "JobPlan",
    "PlanContext",
    "Runtime",
    "TaskPlan",
    "default_backend_factory",
    "job_digest",
    "load_job",
    "plan_job",
]
