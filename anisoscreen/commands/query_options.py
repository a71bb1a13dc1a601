"""The candidate filter options of ``query``, ``table``, ``plot`` and ``report``, declared once.

:func:`query_options` adds the options (``--ar-min`` ... ``--descending/--ascending``) to a
typer command and hands them to it as one :class:`QueryOptions` argument named ``filters``;
:meth:`QueryOptions.to_query` builds the :class:`~anisoscreen.query.CandidateQuery` (with the
command's own ``limit`` and ``validated_only``). Every command thus offers and applies the
same filters, with the field names and validation of :class:`CandidateQuery`, which the web
API's parameters (:class:`anisoscreen.web.models.CandidateParams`) extend too.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

if TYPE_CHECKING:  # pragma: no cover
    from anisoscreen.query import CandidateQuery

__all__ = ["QueryOptions", "query_options"]

F = TypeVar("F", bound=Callable[..., Any])

ArMinOption = Annotated[float | None, typer.Option("--ar-min", help="Smallest predicted a_r.")]
ArMaxOption = Annotated[float | None, typer.Option("--ar-max", help="Largest predicted a_r.")]
DimensionalityOption = Annotated[
    list[str] | None,
    typer.Option("--dimensionality", "-d", help="Structural dimensionality 0-3 (repeat or '1,2')."),
]
ElementsOption = Annotated[
    list[str] | None,
    typer.Option("--elements", "-e", help="Elements that must all be present (repeat or 'Mo,S')."),
]
ExcludeElementsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--exclude-elements", "-x", help="Elements that must be absent (repeat or 'Pb,Cd')."
    ),
]
EpsTotalMinOption = Annotated[
    float | None,
    typer.Option("--eps-total-min", help="Smallest predicted static eps_poly (ionic model)."),
]
FomMinOption = Annotated[
    float | None,
    typer.Option("--fom-min", help="Smallest FOM = E_g x predicted static eps_poly (eV)."),
]
DnMinOption = Annotated[
    float | None,
    typer.Option("--dn-min", help="Smallest predicted birefringence dn = n_max - n_min."),
]
ModelOption = Annotated[
    str | None, typer.Option("--model", help="Only predictions of this model (default: newest).")
]
SortOption = Annotated[
    str | None,
    typer.Option(
        "--sort",
        help="Sort key: ar, predicted_ar, dft_ar, eps_poly, predicted_eps_poly, "
        "dft_eps_poly, energy_above_hull, band_gap, material_id, formula, "
        "predicted_eps_ionic, predicted_eps_total, predicted_ar_total, fom, dft_eps_ionic, "
        "dft_eps_total, ar_spread, birefringence, predicted_birefringence, dft_birefringence, "
        "birefringence_spread.",
    ),
]
DescendingOption = Annotated[
    bool | None,
    typer.Option("--descending/--ascending", help="Sort direction (default: natural for the key)."),
]


@dataclass(frozen=True)
class QueryOptions:
    """The filter and sort options of a command, as given (``None``: not given)."""

    ar_min: float | None = None
    ar_max: float | None = None
    dimensionality: list[str] | None = None
    elements: list[str] | None = None
    exclude_elements: list[str] | None = None
    eps_total_min: float | None = None
    fom_min: float | None = None
    dn_min: float | None = None
    model: str | None = None
    sort: str | None = None
    descending: bool | None = None

    def to_query(self, **extra: Any) -> CandidateQuery:
        """The query of these options plus ``extra`` fields (``limit``, ``validated_only``).

        Raises
        ------
        anisoscreen.query.QueryError
            With one readable line per invalid option.
        """
        from anisoscreen.query import CandidateQuery

        return CandidateQuery.build(**asdict(self), **extra)


_OPTION_TYPES: dict[str, Any] = {
    "ar_min": ArMinOption,
    "ar_max": ArMaxOption,
    "dimensionality": DimensionalityOption,
    "elements": ElementsOption,
    "exclude_elements": ExcludeElementsOption,
    "eps_total_min": EpsTotalMinOption,
    "fom_min": FomMinOption,
    "dn_min": DnMinOption,
    "model": ModelOption,
    "sort": SortOption,
    "descending": DescendingOption,
}
"""The typer option of each :class:`QueryOptions` field."""


def query_options(command: F) -> F:
    """Give a typer ``command`` the filter options; it receives them as ``filters``.

    The command declares a ``filters: QueryOptions`` parameter; the returned function has,
    instead of it, one keyword parameter per option (after the command's own parameters), so
    typer shows and parses them like any other option.
    """
    signature = inspect.signature(command, eval_str=True)
    if "filters" not in signature.parameters:
        raise TypeError(f"{command.__name__} has no 'filters' parameter")
    own = [p for p in signature.parameters.values() if p.name != "filters"]
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=option)
        for name, option in _OPTION_TYPES.items()
    ]

    @functools.wraps(command)
    def with_filters(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name, None) for name in _OPTION_TYPES}
        return command(*args, filters=QueryOptions(**values), **kwargs)

    parameters = own + added
    with_filters.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    with_filters.__annotations__ = {
        **{p.name: p.annotation for p in parameters},
        "return": signature.return_annotation,
    }
    return with_filters  # type: ignore[return-value]
