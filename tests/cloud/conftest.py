"""Cloud tests: moto in server mode for AWS, the Compute REST double for GCP."""

from tests.support.fake_gce import gce
from tests.support.moto_server import moto, moto_process

__all__ = ["gce", "moto", "moto_process"]
