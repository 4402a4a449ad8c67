"""The uplink: the one outbound gRPC stream to the controller from anything that reports and
takes commands (the node agent, the operator's cluster agent, the cloud agent), reconnecting,
with a disk spool so no report is lost while the controller is away."""
