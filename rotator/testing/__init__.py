"""Real in-memory twins for tests: ``MemoryIam`` (IAM) and ``MemoryAws`` (clients for it).

Nothing here is imported by rotator's own code paths; it ships with the package so that
tests (rotator's and its users') can run the engine without AWS or moto.
"""

from rotator.testing.memory_aws import MemoryAws, MemorySts
from rotator.testing.memory_iam import MemoryIam

__all__ = ["MemoryAws", "MemoryIam", "MemorySts"]
