"""`shock-index` (patient-view), the test-only fourth service: heart rate / systolic blood pressure
from the newest pair of vital signs charted together; a warning card at or above the knowledge
file's `abnormal_from` (1.0, Allgöwer and Burri 1967). No pair within the look-back: no card
(an example, not a monitor).

Everything a service needs is here: the hook, the options struct, the plain constructor (from
`CDSService`), `load()` reading its knowledge file, and `evaluate()`.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Self

import msgspec

from cds.fhir.dates import effective_time
from cds.fhir.terminology import CodeSet
from cds.fhir.units import quantity_in
from cds.fhir.value import dicts
from cds.hooks.cards import Card, Source, truncate_summary
from cds.hooks.service import CDSService, ServiceLoadError

if TYPE_CHECKING:
    from cds.fhir.record import PatientRecord
    from cds.hooks.request import HookRequest

KNOWLEDGE = Path(__file__).with_name("shock_index.json")


class ShockIndexOptions(msgspec.Struct, kw_only=True):
    """`[services.shock-index]`."""

    max_age_hours: Annotated[float, msgspec.Meta(gt=0)] = 24.0  # look-back from the hook's now
    max_pair_minutes: Annotated[float, msgspec.Meta(ge=0)] = 15.0  # HR and SBP charted this close
    knowledge_file: str | None = None  # None: shock_index.json beside this module


class ShockIndexService(CDSService[ShockIndexOptions]):
    id = "shock-index"
    hook = "patient-view"
    Options = ShockIndexOptions

    def load(self) -> Self:
        path = Path(self.options.knowledge_file) if self.options.knowledge_file else KNOWLEDGE
        try:
            kb = json.loads(path.read_text())
            self.source = kb["source"]
            self.heart_rate = CodeSet([tuple(kb["heart_rate"])])
            self.systolic = CodeSet([tuple(kb["systolic_bp"])])
            self.abnormal_from = float(kb["abnormal_from"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ServiceLoadError(f"shock-index knowledge {path} is unreadable: {e!r}") from None
        return self

    def evaluate(self, request: HookRequest, record: PatientRecord) -> list[Card]:
        pair = self.newest_pair(record)
        if pair is None:
            return []
        rate, systolic, when = pair
        index = rate / systolic
        if index < self.abnormal_from:
            return []
        summary = (
            f"Shock index {index:.2f} (heart rate {rate:.0f}/min, systolic BP {systolic:.0f} mmHg): "
            f"{self.abnormal_from:g} or more suggests shock"
        )
        return [
            Card(
                summary=truncate_summary(summary),
                indicator="warning",
                source=Source(label=self.source["label"], url=self.source["url"]),
                kind="shock-index:abnormal",
                detail=(
                    f"Heart rate {rate:.0f}/min and systolic blood pressure {systolic:.0f} mmHg charted at "
                    f"{when:%Y-%m-%d %H:%M} UTC. Source: {self.source['citation']}"
                ),
                score=round(index, 3),
            )
        ]

    def newest_pair(self, record: PatientRecord) -> tuple[float, float, datetime] | None:
        """(heart rate /min, systolic mmHg, time) of the newest heart rate with a systolic pressure
        charted within `max_pair_minutes` of it, in the look-back; None when there is none."""
        since = record.now - timedelta(hours=self.options.max_age_hours)
        pair_gap = timedelta(minutes=self.options.max_pair_minutes)
        pressures = [
            (t, v)
            for obs in record.observations(self.systolic, since)
            if (t := effective_time(obs)) is not None and (v := self._systolic(obs)) is not None and v > 0
        ]
        for obs in record.observations(self.heart_rate, since):
            t = effective_time(obs)
            rate = quantity_in(obs.get("valueQuantity"), "/min")
            if t is None or rate is None:
                continue
            near = [(abs(t - pt), v) for pt, v in pressures if abs(t - pt) <= pair_gap]
            if near:
                return rate, min(near)[1], t
        return None

    def _systolic(self, obs: dict[str, Any]) -> float | None:
        """The systolic pressure of an observation: its own value, or a BP panel's component."""
        if self.systolic.matches(obs.get("code")):
            return quantity_in(obs.get("valueQuantity"), "mm[Hg]")
        for c in dicts(obs.get("component")):
            if self.systolic.matches(c.get("code")):
                return quantity_in(c.get("valueQuantity"), "mm[Hg]")
        return None
