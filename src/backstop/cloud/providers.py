"""The provider a cloud agent's settings name; each SDK is imported only when it is used."""

from __future__ import annotations

from backstop.cloud.resources import Provider
from backstop.cloud.settings import CloudSettings


def open_provider(settings: CloudSettings) -> Provider:
    if settings.provider == "aws":
        from backstop.cloud.aws import AwsProvider

        return AwsProvider(settings.regions, endpoint_url=settings.endpoint_url)
    from backstop.cloud.gcp import GcpProvider

    return GcpProvider(settings.project, settings.zones, endpoint_url=settings.endpoint_url)
