"""What every Stampede dashboard shares: scope variables, link bar, panel styles, layout.

A dashboard module states only what is its own (titles, descriptions, queries, units,
thresholds, sizes); these helpers apply the rest through the SDK's typed builders, so the
dashboards cannot drift apart in look or in how Grafana's sidecar provisions them.

Queries write ``$scope`` for the label matchers that pin a series to the namespace and
release picked in the variables; the helpers expand it, so the JSON carries plain PromQL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from string import ascii_uppercase

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.variants import Dataquery
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

# Whichever Prometheus the viewer picks: no `${DS_...}` input to fill in on import, so the
# sidecar provisions the JSON as it is.
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")

# Every series of a release carries these labels (the ServiceMonitors attach them), so two
# releases sharing a Prometheus never mix in one panel.
SCOPE = 'namespace="$namespace", release="$release"'

# Heights in grid rows. The grid is 24 columns wide; the SDK flows panels left to right
# and wraps them, so a module gives only each panel's span and, where it differs, height.
TIMESERIES_HEIGHT = 8
STAT_HEIGHT = 4


@dataclass(frozen=True)
class Section:
    """An expanded row titled ``title`` with ``panels`` laid out under it, in order."""

    title: str
    panels: Sequence[Builder[model.Panel]]


def board(name: str, title: str, description: str, sections: Sequence[Section]) -> model.Dashboard:
    """The dashboard ``stampede-<name>``, tagged ``stampede`` and ``name``.

    Its panels are numbered from 1 in reading order, so a panel keeps its id (and the links
    people share to it) until panels are inserted before it.
    """
    builder = (
        dashboard_builders.Dashboard(title)
        .uid(f"stampede-{name}")
        .description(description)
        .tags(["stampede", name])
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .time("now-1h", "now")
        .refresh("30s")
        .live_now(False)
        .version(1)
        .annotations([])
        .link(
            dashboard_builders.DashboardLink("Stampede dashboards")
            .type(model.DashboardLinkType.DASHBOARDS)
            .tags(["stampede"])
            .as_dropdown(True)
            .include_vars(True)
            .keep_time(True)
        )
        .variables(_scope_variables())
    )
    for section in sections:
        builder.with_row(dashboard_builders.Row(section.title))
        for panel in section.panels:
            builder.with_panel(panel)
    built = builder.build()
    for number, placed in enumerate(built.panels or [], start=1):
        placed.id_val = number
    return built


def _scope_variables() -> list[Builder[model.VariableModel]]:
    """The data source, then a namespace running an API, then a release in that namespace."""
    return [
        dashboard_builders.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        _label_values("namespace", "Namespace", 'up{component="api"}'),
        _label_values("release", "Release", 'up{component="api", namespace="$namespace"}'),
    ]


def _label_values(name: str, label: str, selector: str) -> dashboard_builders.QueryVariable:
    return (
        dashboard_builders.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query({"query": f"label_values({selector}, {name})", "refId": name})
        # Releases come and go: look again whenever the time range changes.
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
    )


def timeseries_panel(
    title: str,
    description: str,
    *,
    unit: str,
    span: int,
    queries: Mapping[str, str],
    thresholds: Mapping[str, float] | None = None,
    stacked: bool = False,
    height: int = TIMESERIES_HEIGHT,
) -> timeseries.Panel:
    """Lines, one per series, with any thresholds drawn dashed across the graph.

    ``queries`` maps each legend format to its PromQL, in the order of their refIds;
    ``thresholds`` maps a colour to the value where it starts, above green.
    """
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .span(span)
        .height(height)
        .unit(unit)
        .thresholds(_thresholds(thresholds))
        .color_scheme(dashboard_builders.FieldColor().mode(model.FieldColorModeId.PALETTE_CLASSIC))
        .draw_style(common.GraphDrawStyle.LINE)
        .line_width(1)
        .fill_opacity(10)
        .show_points(common.VisibilityMode.NEVER)
        .stacking(
            common_builders.StackingConfig()
            .mode(common.StackingMode.NORMAL if stacked else common.StackingMode.NONE)
            .group("A")
        )
        .thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(
                common.GraphThresholdsStyleMode.DASHED
                if thresholds
                else common.GraphThresholdsStyleMode.OFF
            )
        )
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(
            common_builders.VizTooltipOptions()
            .mode(common.TooltipDisplayMode.MULTI)
            .sort(common.SortOrder.DESCENDING)
        )
        .targets(_targets(queries))
    )


def stat_panel(
    title: str,
    description: str,
    *,
    unit: str,
    span: int,
    queries: Mapping[str, str],
    thresholds: Mapping[str, float] | None = None,
    height: int = STAT_HEIGHT,
) -> stat.Panel:
    """The latest value on a background coloured by ``thresholds``, over its sparkline.

    ``queries`` and ``thresholds`` as for :func:`timeseries_panel`.
    """
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .span(span)
        .height(height)
        .unit(unit)
        .thresholds(_thresholds(thresholds))
        .color_scheme(dashboard_builders.FieldColor().mode(model.FieldColorModeId.THRESHOLDS))
        .reduce_options(
            common_builders.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)
        )
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.AREA)
        .targets(_targets(queries))
    )


def quantile(q: float, histogram: str, by: str = "le") -> str:
    """PromQL: the ``q``-quantile of a histogram (its base name) over the rate interval.

    ``by`` lists the labels kept; it must include ``le``, which the quantile consumes.
    """
    return (
        f"histogram_quantile({q}, sum by ({by}) (rate({histogram}_bucket"
        "{$scope}[$__rate_interval])))"
    )


def _thresholds(steps: Mapping[str, float] | None) -> dashboard_builders.ThresholdsConfig:
    return (
        dashboard_builders.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps(
            [
                model.Threshold(color="green", value=None),
                *(
                    model.Threshold(color=color, value=value)
                    for color, value in (steps or {}).items()
                ),
            ]
        )
    )


def _targets(queries: Mapping[str, str]) -> list[Builder[Dataquery]]:
    targets: list[Builder[Dataquery]] = []
    for index, (legend, expr) in enumerate(queries.items()):
        if "$scope" not in expr:
            raise ValueError(f"query for {legend!r} is not scoped to a release: {expr}")
        targets.append(
            prometheus.Dataquery()
            .ref_id(ascii_uppercase[index])
            .expr(expr.replace("$scope", SCOPE))
            .legend_format(legend)
            .datasource(DATASOURCE)
        )
    return targets
