"""Hierarchical weighted DRF allocator: pure logic over agents, frameworks and roles.

See DESIGN.md beside this file. The public surface:

    Allocator                   the stateful allocator the leader loop drives
    allocate(snapshot, now)     one pure cycle over a ClusterSnapshot
    RoleResources               resources keyed by reservation role ("*" = unreserved)
    Offer, Launch, Reserve, Unreserve, AcceptResult, AcceptError, AllocatorConfig, AllocatorError
"""

from .allocator import Allocator
from .roles import UNRESERVED, RoleResources
from .snapshot import (
    AgentSnapshot, Allocation, ClusterSnapshot, FilterSnapshot, FrameworkSnapshot, allocate,
)
from .types import (
    ALLOCATION_INTERVAL, DEFAULT_MIN_ALLOCATABLE, DEFAULT_REFUSE_SECONDS, GPU_CAPABILITY,
    AcceptError, AcceptResult, AllocatorConfig, AllocatorError, Launch, Offer, Operation, Reserve,
    Unreserve, refuse_seconds_or_default,
)

__all__ = [
    "ALLOCATION_INTERVAL", "DEFAULT_MIN_ALLOCATABLE", "DEFAULT_REFUSE_SECONDS", "GPU_CAPABILITY",
    "AcceptError", "AcceptResult", "AgentSnapshot", "Allocation", "Allocator", "AllocatorConfig",
    "AllocatorError", "ClusterSnapshot", "FilterSnapshot", "FrameworkSnapshot", "Launch", "Offer",
    "Operation", "Reserve", "RoleResources", "UNRESERVED", "Unreserve", "allocate",
    "refuse_seconds_or_default",
]
