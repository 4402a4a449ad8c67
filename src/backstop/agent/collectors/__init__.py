"""Collectors: one per file, each sampling one source (NVML, processes)."""
