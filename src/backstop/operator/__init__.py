"""The Kubernetes operator: deployment corrections applied where they stick.

On Kubernetes, killing a container only makes the kubelet restart it, so the operator corrects
at the orchestrator level. It reconciles ``Correction`` custom resources (``backstop.io/v1``,
cluster-scoped): ``pause`` and ``terminate`` scale the Deployments and StatefulSets in scope to
zero (remembering their replicas in an annotation) and delete bare pods; ``shutdown`` also
cordons and taints the GPU nodes in scope; ``resume`` (or deleting the Correction, through its
finalizer) restores exactly what was there before. With a controller it is also the cluster's
agent: it reports the cluster's GPU workloads and turns controller commands into Corrections.

Modules, from pure to I/O:

- ``crd``: the resource's names and its parsed, typed form (pure);
- ``marks``: the annotations and taint written on touched objects, and the patches that add
  and remove them (pure);
- ``scope``: which workloads and nodes a Correction's scope selects (pure);
- ``inventory``: the cluster's workloads and GPU nodes as views (pure builders, one reader);
- ``status``: target records and the plain-language summary of an outcome (pure);
- ``commands``: controller commands mapped to Correction manifests (pure);
- ``kube``: the thin layer over the Kubernetes client (raw JSON, merge patches with
  resourceVersion preconditions, errors mapped onto Backstop's);
- ``events``: core/v1 Events on touched objects;
- ``actions``: hold, release, delete, fence and unfence one object, retrying on conflicts;
- ``reconciler``: drives one Correction to its phase (Applied, Failed, Reverted);
- ``watchers`` and ``workqueue``: what makes a reconcile happen, and one at a time;
- ``verify``: the operator's own check of controller commands (expiry, signatures);
- ``cluster_agent``: the controller link (reports up, commands down, acknowledgements);
- ``settings`` and ``run``: the daemon; ``rbac``: the permissions it needs.
"""
