"""The node daemon: collectors, fingerprints, actuators and the controller session."""
