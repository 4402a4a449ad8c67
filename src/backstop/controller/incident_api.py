"""The incident calls of the control API: open and close (an operator; audited before the
change by :class:`~backstop.controller.incident_book.IncidentBook`), list and show the
timeline (a viewer). A mixin of :class:`~backstop.controller.control_api.ControlService`,
which supplies the caller checks and the book."""

from __future__ import annotations

from typing import Any

from backstop.api.v1 import control_pb2
from backstop.controller.incident_book import IncidentBook
from backstop.controller.rpc_errors import rpc
from backstop.controller.service_part import ServicePart
from backstop.security.identities import Role
from backstop.wire.checks import text
from backstop.wire.incident_convert import incident_to_pb, timeline_to_pb

DEFAULT_INCIDENTS = 100
MAX_INCIDENTS = 10_000


class IncidentCalls(ServicePart):
    _incidents: IncidentBook

    @rpc
    async def OpenIncident(
        self, request: control_pb2.OpenIncidentRequest, context: Any
    ) -> control_pb2.Incident:
        caller = self._caller(context, Role.OPERATOR, "opening an incident", request.requested_by)
        incident = self._incidents.open(
            text(request.title, "title", 1024), text(request.severity, "severity", 32), caller.name
        )
        return incident_to_pb(incident)

    @rpc
    async def ListIncidents(
        self, request: control_pb2.ListIncidentsRequest, context: Any
    ) -> control_pb2.ListIncidentsResponse:
        self._caller(context, Role.VIEWER, "listing incidents")
        limit = min(request.limit or DEFAULT_INCIDENTS, MAX_INCIDENTS)
        found = self._incidents.list(request.open_only, limit)
        return control_pb2.ListIncidentsResponse(incidents=[incident_to_pb(i) for i in found])

    @rpc
    async def GetIncident(
        self, request: control_pb2.GetIncidentRequest, context: Any
    ) -> control_pb2.IncidentTimeline:
        self._caller(context, Role.VIEWER, "showing an incident")
        timeline = self._incidents.timeline(text(request.incident_id, "incident id", 64))
        return timeline_to_pb(timeline)

    @rpc
    async def CloseIncident(
        self, request: control_pb2.CloseIncidentRequest, context: Any
    ) -> control_pb2.Incident:
        caller = self._caller(context, Role.OPERATOR, "closing an incident", request.requested_by)
        incident = self._incidents.close(
            text(request.incident_id, "incident id", 64),
            text(request.summary, "summary", 4096),
            caller.name,
        )
        return incident_to_pb(incident)
