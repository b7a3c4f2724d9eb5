"""Applying a validated migration plan to the control database: backends, slices and routes.

Loads are serialised by the lock on the single control-settings row, audited, and bump the routing
version like every other change.
"""

from __future__ import annotations

from django.db import transaction

from strangler import selectors
from strangler.models import Backend, ControlSettings, Phase, Route, Slice
from strangler.plan import Plan
from strangler.services.changes import OperationRefused, PlanChange, change_finish


def plan_apply(*, plan: Plan, who: str, why: str = "", dry_run: bool = False) -> PlanChange:
    """Creates or updates backends, slices and routes from a validated plan.

    Phases, weights and shadow switches of existing slices are kept: the plan says what exists, the
    operator commands say where it stands. A slice past legacy cannot be dropped from the plan.
    """
    alias = selectors.control_alias()
    with transaction.atomic(using=alias):
        control, _ = ControlSettings.objects.using(alias).select_for_update().get_or_create(id=1)
        before = {
            "plan_digest": control.plan_digest,
            "slices": selectors.slice_names(alias=alias),
        }
        backends: dict[str, Backend] = {}
        for backend_spec in plan.backends:
            backend, _ = Backend.objects.using(alias).update_or_create(
                name=backend_spec.name,
                defaults={"base_urls": backend_spec.urls, "health_path": backend_spec.health_path},
            )
            backends[backend_spec.name] = backend
        planned = {s.name for s in plan.slices}
        for stale in Slice.objects.using(alias).exclude(name__in=planned):
            if stale.phase != Phase.LEGACY:
                raise OperationRefused(
                    f"Slice {stale.name!r} is in phase {stale.phase} but missing from the plan; "
                    "roll it back to legacy before removing it."
                )
            stale.delete()
        for spec in plan.slices:
            slice_, created = Slice.objects.using(alias).get_or_create(
                name=spec.name,
                defaults={"legacy_backend": backends[spec.legacy], "new_backend": backends[spec.service]},
            )
            if not created and slice_.phase != Phase.LEGACY and slice_.new_backend.name != spec.service:
                raise OperationRefused(
                    f"Slice {spec.name!r} is in phase {slice_.phase}; its service cannot change from "
                    f"{slice_.new_backend.name!r} to {spec.service!r} before it is rolled back to legacy."
                )
            slice_.legacy_backend = backends[spec.legacy]
            slice_.new_backend = backends[spec.service]
            slice_.tables = spec.tables
            slice_.requires = spec.requires
            for model_field, value in spec.settings.items():
                setattr(slice_, model_field, value)
            slice_.save(using=alias)
            Route.objects.using(alias).filter(slice=slice_).delete()
            Route.objects.using(alias).bulk_create(
                Route(
                    slice=slice_,
                    name=r.name,
                    prefix=r.prefix,
                    pattern=r.pattern,
                    methods=r.methods,
                    exposure=r.exposure,
                    read_only=r.read_only,
                    sunset=r.sunset,
                    position=i,
                )
                for i, r in enumerate(spec.routes)
            )
        Backend.objects.using(alias).exclude(name__in=backends).filter(
            legacy_slices=None, new_slices=None
        ).delete()
        control.default_backend = backends[plan.default_backend]
        control.default_exposure = plan.default_exposure
        control.plan_digest = plan.digest
        control.save(using=alias)
        after = {"plan_digest": plan.digest, "slices": sorted(planned)}
        return change_finish(
            alias=alias,
            action="plan.load",
            slice_=None,
            before=before,
            after=after,
            who=who,
            why=why,
            gate={
                "backends": len(plan.backends),
                "slices": len(plan.slices),
                "routes": sum(len(s.routes) for s in plan.slices),
            },
            dry_run=dry_run,
        )
