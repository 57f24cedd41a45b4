"""Pydantic models of the knowledge base: categories, entries, claims and relations.

Every model is frozen and forbids unknown keys, so a misspelled key in a YAML file is an error
instead of a silently dropped field. Capability fields are enums.
"""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

SLUG = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EntryKind(StrEnum):
    technique = "technique"
    system = "system"
    framework = "framework"
    library = "library"
    hardware = "hardware"
    benchmark = "benchmark"
    application = "application"
    challenge = "challenge"


class ModelFamily(StrEnum):
    cnn = "CNN"
    rnn = "RNN"
    transformer = "Transformer"
    mlp = "MLP"
    gnn = "GNN"
    any = "any"


class Tier(StrEnum):
    device = "device"
    edge = "edge"
    cloud = "cloud"


class RelationType(StrEnum):
    extends = "extends"
    improves_on = "improves-on"
    compared_with = "compared-with"
    combines_with = "combines-with"
    alternative_to = "alternative-to"


class PlanKind(StrEnum):
    """Plan kinds the advisor can execute; `advisor.plans.PLANNERS` registers one per value."""

    baseline_device = "baseline.device"
    baseline_server = "baseline.server"
    partition_chain = "partition.chain"
    partition_dag = "partition.dag"
    partition_three_tier = "partition.three_tier"
    quantize_static_int8 = "quantize.static_int8"
    quantize_dynamic_int8 = "quantize.dynamic_int8"
    convert_fp16 = "convert.fp16"
    prune_structured = "prune.structured"
    combo_quantized_head = "combo.quantized_head_partition"
    compress_boundary_int8 = "compress.boundary_int8"
    early_exit_partition = "early_exit.partition"
    early_exit_threshold = "early_exit.threshold"


class Category(_Frozen):
    id: str
    name: str
    parent: str | None = None
    description: str
    section: str | None = Field(default=None, description="Section of the survey, e.g. 'V-B'")

    @field_validator("id")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not SLUG.match(v):
            raise ValueError(
                f"category id {v!r} must be lower-case letters, digits, '.', '_' or '-'"
            )
        return v


class Source(_Frozen):
    """Where a figure comes from: the paper (authors, venue, year) and, where known, where in it."""

    paper: str
    location: str | None = Field(default=None, description="section, table or 'abstract'")
    version: str | None = Field(
        default=None,
        description="which version of the paper is quoted where versions differ in their "
        "figures, e.g. 'MobiSys 2018' or 'arXiv 2006.04432v1 (2020)'",
    )

    def cite(self) -> str:
        """'paper, location (version: ...)', the form every door prints."""
        text = self.paper + (f", {self.location}" if self.location else "")
        return text + (f" (version: {self.version})" if self.version else "")


class Claim(_Frozen):
    """What a source reports. `value` and `unit` hold its figure; a claim that the source states
    without a figure (e.g. 'needs fewer communication rounds') leaves both out."""

    metric: str
    value: float | None = None
    unit: str = ""
    baseline: str | None = None
    setting: str | None = None
    source: Source
    checked_against: str | None = Field(
        default=None,
        description="the stored source text this figure was checked against and found stated "
        "in, e.g. 'arXiv 2210.17323 abstract'; empty when not yet checked",
    )

    @model_validator(mode="after")
    def _unit_with_value(self) -> Claim:
        if self.value is not None and not self.unit:
            raise ValueError("a claim with a value needs its unit")
        if self.value is None and self.unit:
            raise ValueError("a unit without a value: give the value or leave both out")
        return self

    def figure(self) -> str:
        """'3.1 x (average)', or '' for a claim stated without a figure."""
        return f"{self.value:g} {self.unit}" if self.value is not None else ""

    def statement(self) -> str:
        """'metric: figure', or just the metric when the source gives no figure."""
        return f"{self.metric}: {self.figure()}" if self.value is not None else self.metric


class Relation(_Frozen):
    type: RelationType
    target: str


class Requirements(_Frozen):
    retraining: bool = False
    server: bool = False
    labelled_data: bool = False
    special_hardware: bool = False


class Applicability(_Frozen):
    model_families: list[ModelFamily] = Field(default_factory=lambda: [ModelFamily.any])
    tiers: list[Tier] = Field(default_factory=list)


class Entry(_Frozen):
    id: str
    name: str
    kind: EntryKind
    categories: list[str] = Field(min_length=1)
    year: int | None = Field(default=None, ge=1980, le=2030)
    venue: str | None = None
    authors: str | None = Field(default=None, description="short form, e.g. 'Kang et al.'")
    title: str | None = Field(default=None, description="title of the source paper or page")
    url: str | None = None
    summary: str = Field(min_length=20)
    mechanism: str = Field(min_length=20)
    requirements: Requirements = Field(default_factory=Requirements)
    applicability: Applicability = Field(default_factory=Applicability)
    claims: list[Claim] = Field(default_factory=list)
    relations: list[Relation] = Field(default_factory=list)
    advisor_action: PlanKind | None = None
    advice_only_reason: str | None = Field(
        default=None, description="one line: why the advisor cannot execute this (when no action)"
    )

    @field_validator("id")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not SLUG.match(v):
            raise ValueError(f"entry id {v!r} must be lower-case letters, digits, '.', '_' or '-'")
        return v

    @model_validator(mode="after")
    def _action_or_reason(self) -> Entry:
        if self.advisor_action is None and not self.advice_only_reason:
            raise ValueError("an entry without advisor_action needs advice_only_reason (one line)")
        if self.advisor_action is not None and self.advice_only_reason:
            raise ValueError("give advisor_action or advice_only_reason, not both")
        return self

    @property
    def executable(self) -> bool:
        return self.advisor_action is not None


class EntryFile(_Frozen):
    """One YAML file under data/kb/: a branch of the taxonomy and its entries."""

    branch: str
    entries: list[Entry]


class TaxonomyFile(_Frozen):
    source: str
    categories: list[Category]
