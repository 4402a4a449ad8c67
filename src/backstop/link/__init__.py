"""The link to the controller from anything that reports and takes commands (the node agent,
the Kubernetes operator): one long-lived outbound gRPC stream, reconnecting, with a disk spool
so no report is lost while the controller is away."""
