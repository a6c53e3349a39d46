"""A simulated month of inbound-lead agent traffic with one silent schema-rename fault."""

from agentwatch.app.demo.simulate import SimulationConfig, SimulationFiles, simulate

__all__ = ["SimulationConfig", "SimulationFiles", "simulate"]
