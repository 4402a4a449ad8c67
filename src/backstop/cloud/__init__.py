"""The cloud agent: one per AWS or GCP account, the account's GPU capacity as one node.

It inventories GPU instances (EC2, Compute Engine) and managed model endpoints (SageMaker),
reports them to the controller as workloads, and on command stops them and holds them
stopped; resume starts what it stopped. It never deletes anything: a terminate or shutdown at
the cloud level stops and holds, because deleting an instance or endpoint cannot be undone.
"""
