"""Actuators: the mechanisms that apply an action to a workload on this node."""
