"""Simulated services that emit wire-contract events, with faults injected on a timeline."""

from .services import Fault, SimulatedService, generate

__all__ = ["Fault", "SimulatedService", "generate"]
