"""The allocator's vocabulary: configuration, offers, operations and accept results."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Mapping, Union

from dcosd.model.resources import Resources
from dcosd.model.states import Reason, TaskState

from .roles import SCALE, Pools, RoleResources, pools_flat, ranges_norm

# Mesos defaults (src/master/constants.hpp and flags).
DEFAULT_REFUSE_SECONDS = 5.0
MAX_REFUSE_SECONDS = 365 * 24 * 3600.0  # Mesos caps a filter at a year
ALLOCATION_INTERVAL = 1.0  # seconds between periodic cycles of the leader loop
# An offer must hold at least one of these sets in full (Mesos: "cpus:0.01|mem:32").
DEFAULT_MIN_ALLOCATABLE: tuple[Mapping[str, float], ...] = ({"cpus": 0.01}, {"mem": 32.0})

GPU_CAPABILITY = "GPU_RESOURCES"


class AllocatorError(ValueError):
    """A call that contradicts the allocator's state (unknown agent, releasing what is not held...).

    The master treats it as a bug or a stale request; it never corrupts the state:
    every method validates before it mutates.
    """


@dataclass(frozen=True)
class AllocatorConfig:
    # Offers older than this are to be rescinded (None: never, as Mesos' default).
    offer_timeout: float | None = None
    min_allocatable: tuple[Mapping[str, float], ...] = DEFAULT_MIN_ALLOCATABLE
    # Scalar names left out of dominant shares (Mesos --fair_sharing_excluded_resource_names).
    fairness_excluded: tuple[str, ...] = ()
    # Agents are visited in a seeded shuffled order each cycle, as Mesos shuffles them,
    # so no agent is always first; the seed keeps runs reproducible. None: insertion order.
    shuffle_seed: int | None = 0
    # Offer ids are "<prefix>-O<n>"; the leader passes something unique per leadership term.
    offer_id_prefix: str = "offer"
    # Agents with GPUs are only offered to frameworks with the GPU_RESOURCES capability.
    filter_gpu_resources: bool = True


def refuse_seconds_or_default(value: float | None) -> float:
    """Mesos' rule: absent, negative or NaN means the default; beyond a year is capped."""
    if value is None or not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
        return DEFAULT_REFUSE_SECONDS
    return min(float(value), MAX_REFUSE_SECONDS)


class Offer:
    """Resources of one agent offered to one framework for one of its roles.

    ``resources`` is keyed by reservation role (``"*"`` unreserved, ``role`` the
    role's reservations). Built lazily from the internal form: the hot path never
    pays for a conversion nobody reads.
    """

    __slots__ = ("offer_id", "framework_id", "agent_id", "hostname", "role", "created_at",
                 "attributes", "_pools", "_resources")

    def __init__(self, offer_id: str, framework_id: str, agent_id: str, hostname: str, role: str,
                 created_at: float, attributes: Mapping[str, str], pools: Pools) -> None:
        self.offer_id = offer_id
        self.framework_id = framework_id
        self.agent_id = agent_id
        self.hostname = hostname
        self.role = role
        self.created_at = created_at
        self.attributes = attributes
        self._pools = pools
        self._resources: RoleResources | None = None

    @property
    def resources(self) -> RoleResources:
        if self._resources is None:
            self._resources = RoleResources.from_pools(self._pools)
        return self._resources

    def scalars(self) -> dict[str, float]:
        """Flat scalar amounts (all reservation roles together), cheaply."""
        return {k: v / SCALE for k, v in pools_flat(self._pools).items()}

    def ports(self) -> tuple[tuple[int, int], ...]:
        if len(self._pools) == 1:
            for bag in self._pools.values():
                return bag.p
        return ranges_norm(tuple(r for bag in self._pools.values() for r in bag.p))

    def __repr__(self) -> str:
        return (f"Offer({self.offer_id} {self.framework_id}@{self.agent_id} role={self.role} "
                f"{self.resources!r})")


# -- operations in an ACCEPT -------------------------------------------------------------


@dataclass(frozen=True)
class Launch:
    """LAUNCH / LAUNCH_GROUP: resources a task (or group) consumes from the offer.

    ``resources`` may be plain ``Resources`` (drawn from the role's reservation
    first, then unreserved) or ``RoleResources`` (drawn exactly as given).
    ``role`` is the allocation role; it may be omitted when the accepted offers
    share one role.
    """

    resources: Union[Resources, RoleResources]
    task_id: str | None = None
    role: str | None = None


@dataclass(frozen=True)
class Reserve:
    """RESERVE: unreserved resources of the offer become reserved for the offer's role."""

    resources: Resources
    role: str | None = None


@dataclass(frozen=True)
class Unreserve:
    """UNRESERVE: dynamically reserved resources of the offer become unreserved."""

    resources: Resources
    role: str | None = None


Operation = Union[Launch, Reserve, Unreserve]


class AcceptError(str, enum.Enum):
    NO_OFFERS = "NO_OFFERS"                  # ACCEPT named no offer
    DUPLICATE_OFFER = "DUPLICATE_OFFER"      # the same offer id twice
    UNKNOWN_OFFER = "UNKNOWN_OFFER"          # never issued, or already answered
    RESCINDED_OFFER = "RESCINDED_OFFER"      # rescinded (timeout, agent gone, framework inactive)
    WRONG_FRAMEWORK = "WRONG_FRAMEWORK"      # offer made to another framework
    MULTIPLE_AGENTS = "MULTIPLE_AGENTS"      # offers from different agents in one ACCEPT
    OVER_COMMITTED = "OVER_COMMITTED"        # operations need more than the offers hold
    INVALID_OPERATION = "INVALID_OPERATION"  # e.g. unknown role, unreserving a static reservation

    def __str__(self) -> str:
        return self.value

    @property
    def task_state(self) -> TaskState:
        """What the scheduler API reports for each task of a refused ACCEPT."""
        return TaskState.DROPPED

    @property
    def task_reason(self) -> Reason:
        return Reason.INVALID_OFFERS


@dataclass(frozen=True)
class AcceptResult:
    """The outcome of ACCEPT. Atomic: on error nothing was applied.

    On success ``launched[i]`` is what the i-th Launch drew (by reservation role):
    record it with the task and hand it back to ``Allocator.recover`` when the
    task ends. ``reserved``/``unreserved`` list the dynamic reservation changes
    the master must commit (role, resources). ``returned`` is what went back to
    the pool (filtered for ``refuse_seconds``).
    """

    error: AcceptError | None = None
    message: str = ""
    agent_id: str | None = None
    launched: tuple[tuple[str, RoleResources], ...] = ()  # (allocation role, drawn)
    reserved: tuple[tuple[str, Resources], ...] = ()
    unreserved: tuple[tuple[str, Resources], ...] = ()
    returned: RoleResources = field(default_factory=RoleResources)

    @property
    def ok(self) -> bool:
        return self.error is None
