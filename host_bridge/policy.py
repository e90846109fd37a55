"""Every delay and limit of the bridge's behaviour, in one frozen object.

The decision core (``host_bridge.core``) and the task loop read these from the ``Policy`` they are
given; nothing else in the host side hard-codes a delay or a limit of the task's lifetime. Tests build
a ``Policy`` with shorter times (``dataclasses.replace(DEFAULT_POLICY, finish_grace=0.1)``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Policy:
    # -- the loop's wake-ups
    # The longest sleep (s): the latency of suspend / resume / exit checks while the guest is silent
    # (BOINC's wrapper polls every 1 s). Every guest update wakes the loop at once; an SDK guest writes
    # at least once a second (its heartbeat), so with a tick a little longer than that the loop wakes
    # once a second, not twice (each wake-up costs CPU: docs/benchmarks.md).
    tick: float = 1.25
    report_interval: float = 1.0  # status refresh to the client without guest news (s); also the
    # period of the wrapper-style files (fraction_done_filename, checkpoint_filename, vboxwrapper's)
    # After the guest's finish event: poll for its exit every finish_poll_fast s for finish_fast_window
    # s (an SDK app exits right after boinc_finish), then every finish_poll_slow s until finish_grace.
    finish_poll_fast: float = 0.005
    finish_fast_window: float = 0.25
    finish_poll_slow: float = 0.05
    # The watcher's lstat check for lost inotify events (s): events that stop arriving switch it to
    # polling after two checks (each tick still re-reads the status file every report_interval).
    watch_check_interval: float = 5.0

    # -- the task's lifetime
    finish_grace: float = 10.0  # after the guest's finish event, how long to wait for it to exit (s)
    heartbeat_timeout: float = 0.0  # guest silent this long while running -> hung (0: off)
    max_tick_gap: float = 5.0  # a longer gap between ticks (host sleep, SIGSTOP) is not running time
    max_env_failures: int = 3  # environment failures in a row before the app starts -> the task fails

    # -- temporary-exit delays (s): when BOINC should try the task again
    hung_delay: float = 600.0  # after a hung guest
    failed_delay: float = 300.0  # after the environment failed
    disk_delay: float = 600.0  # after the bridge's own files could not be written (disk full?)

    # -- hostile-input budgets
    decode_budget: float = 20.0  # after a status decode of d seconds, the next waits decode_budget x d
    decode_wait_max: float = 30.0
    decode_costly: float = 0.002  # s: only decodes slower than this are budgeted
    fraction_file_max: int = 4096  # bytes read of a wrapper-style fraction_done file
    default_output_max: int = 16 * 1024**3  # bytes of one output when init data gives no rsc_disk_bound

    # -- the client's side
    fraction_floor_step: float = 0.005  # the fraction-done floor is recorded this far ahead (see state)
    trickle_drain_timeout: float = 15.0  # s to hand queued trickle-ups to the client before finishing
    default_checkpoint_period: float = 300.0  # s, told to the guest when init data gives none

    # -- whole-VM saves (backends that can save a running VM: QEMU with the agent's relay)
    vm_checkpoints: bool = True  # periodic VM checkpoints at BOINC's checkpoint period
    vm_checkpoint_min: float = 0.0  # s: never more often than this (0: BOINC's checkpoint period rules)
    # s a suspended VM keeps its memory before it is saved to disk and ended (0: never); a job's
    # vm_release_after overrides it
    suspend_release_after: float = 600.0


DEFAULT_POLICY = Policy()
