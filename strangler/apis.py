"""Staff-only REST API of the control plane: the same reads and actions as `manage.py strangler`."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rest_framework import serializers, status
from rest_framework.authentication import SessionAuthentication, TokenAuthentication
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from ops.errors import DomainError
from strangler import selectors, services
from strangler.models import PHASE_ORDER, AuditEntry, Route, Slice
from strangler.ops_overview import ops_overview
from strangler.plan import PlanError, plan_parse


class StaffApi(APIView):
    authentication_classes = [TokenAuthentication, SessionAuthentication]
    permission_classes = [IsAdminUser]

    def who(self, request: Request) -> str:
        return str(getattr(request.user, "username", "api"))


class ApiRootApi(StaffApi):
    """What the staff API offers, so a newcomer at /_strangler/api/ finds the rest."""

    def get(self, request: Request) -> Response:
        base = request.build_absolute_uri()
        return Response(
            {
                "slices": f"{base}slices/",
                "slice": f"{base}slices/<name>/",
                "slice_actions": {
                    "url": f"{base}slices/<name>/<action>/",
                    "actions": ["weight", "shadow", "pause", "resume", "promote", "rollback"],
                },
                "routes": f"{base}routes/",
                "audit": f"{base}audit/",
                "shadow": f"{base}shadow/",
                "plan": f"{base}plan/",
                "ops": f"{base}ops/",
            }
        )


class RouteSerializer(serializers.ModelSerializer):
    slice = serializers.CharField(source="slice.name")

    class Meta:
        model = Route
        fields = ["slice", "name", "prefix", "pattern", "methods", "exposure"]


class SliceSerializer(serializers.ModelSerializer):
    legacy_backend = serializers.CharField(source="legacy_backend.name")
    new_backend = serializers.CharField(source="new_backend.name")

    class Meta:
        model = Slice
        fields = [
            "name",
            "phase",
            "phase_changed_at",
            "canary_weight",
            "shadow_enabled",
            "shadow_sample_rate",
            "paused",
            "write_freeze_until",
            "legacy_backend",
            "new_backend",
            "tables",
        ]


class AuditEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEntry
        fields = ["id", "at", "who", "action", "slice_name", "from_state", "to_state", "why", "gate"]


class ChangeRequestSerializer(serializers.Serializer):
    why = serializers.CharField(required=False, allow_blank=True, default="")
    dry_run = serializers.BooleanField(required=False, default=False)
    weight = serializers.DecimalField(
        max_digits=5, decimal_places=2, min_value=Decimal(0), max_value=Decimal(100), required=False
    )
    enabled = serializers.BooleanField(required=False)
    sample_rate = serializers.FloatField(required=False, min_value=0, max_value=1)
    force = serializers.BooleanField(required=False, default=False)
    to = serializers.ChoiceField(choices=PHASE_ORDER, required=False)


def _change_body(change: services.PlanChange) -> dict[str, Any]:
    return {
        "action": change.action,
        "slice": change.slice_name,
        "from": change.from_state,
        "to": change.to_state,
        "gate": change.gate,
        "dry_run": change.dry_run,
        "audit_id": change.audit_id,
    }


class SliceListApi(StaffApi):
    def get(self, request: Request) -> Response:
        return Response({"results": SliceSerializer(selectors.slice_list(), many=True).data})


class SliceDetailApi(StaffApi):
    def get(self, request: Request, name: str) -> Response:
        slice_ = selectors.slice_list().filter(name=name).first()
        if slice_ is None:
            raise DomainError(f"There is no slice {name!r}.", code="not_found")
        return Response(
            {
                **SliceSerializer(slice_).data,
                "routes": RouteSerializer(selectors.route_list(slice_name=name), many=True).data,
            }
        )


class RouteListApi(StaffApi):
    def get(self, request: Request) -> Response:
        routes = selectors.route_list(slice_name=request.query_params.get("slice"))
        return Response({"results": RouteSerializer(routes, many=True).data})


class AuditListApi(StaffApi):
    def get(self, request: Request) -> Response:
        entries = selectors.audit_list(slice_name=request.query_params.get("slice"))
        return Response({"results": AuditEntrySerializer(entries, many=True).data})


class ShadowReportApi(StaffApi):
    def get(self, request: Request) -> Response:
        return Response({"results": selectors.shadow_report(slice_name=request.query_params.get("slice"))})


class PlanLoadApi(StaffApi):
    def post(self, request: Request) -> Response:
        text = request.data.get("plan") if isinstance(request.data, dict) else None
        if not isinstance(text, str):
            raise DomainError('Send {"plan": "<YAML or JSON text>"}.', code="invalid_request")
        try:
            plan = plan_parse(text)
            change = services.plan_apply(
                plan=plan,
                who=self.who(request),
                why=request.data.get("why", ""),
                dry_run=bool(request.data.get("dry_run", False)),
            )
        except PlanError as exc:
            raise DomainError(
                "The migration plan is invalid.", code="invalid_plan", details=exc.problems
            ) from exc
        except services.OperationRefused as exc:
            raise DomainError(str(exc), code="refused") from exc
        return Response(_change_body(change))


class SliceActionApi(StaffApi):
    """POST /slices/<name>/<action>/ with {"why", "dry_run", ...} for weight, shadow, pause, resume,
    promote, rollback."""

    def post(self, request: Request, name: str, action: str) -> Response:
        body = ChangeRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        common = {"name": name, "who": self.who(request), "why": data["why"], "dry_run": data["dry_run"]}
        try:
            if action == "weight":
                if "weight" not in data:
                    raise DomainError('Give {"weight": percent}.', code="invalid_request")
                change = services.slice_set_weight(weight=data["weight"], **common)
            elif action == "shadow":
                if "enabled" not in data:
                    raise DomainError('Give {"enabled": true|false}.', code="invalid_request")
                change = services.slice_set_shadow(
                    enabled=data["enabled"], sample_rate=data.get("sample_rate"), **common
                )
            elif action in ("pause", "resume"):
                change = services.slice_set_paused(paused=action == "pause", **common)
            elif action == "promote":
                change = services.slice_promote(force=data["force"], **common)
            elif action == "rollback":
                change = services.slice_rollback(to_phase=data.get("to"), **common)
            else:
                return Response(
                    {"error": {"code": "not_found", "message": f"No action {action!r}."}},
                    status=status.HTTP_404_NOT_FOUND,
                )
        except services.OperationRefused as exc:
            raise DomainError(str(exc), code="refused") from exc
        return Response(_change_body(change))


class OpsOverviewApi(StaffApi):
    """The figures of the ops page (/_strangler/ops/), which its script polls."""

    def get(self, request: Request) -> Response:
        return Response(ops_overview())
