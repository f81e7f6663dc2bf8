"""The STAC API side of ``stac_search`` (and ``coverage``): the client, search parameters and
fetching, every request under the access policy.

The query goes to a real STAC API with pystac-client (bbox / intersects, datetime,
collections). The local ``rustac serve`` API supports neither the ``query`` nor the
``filter`` extension, so platform, cloud and GSD refinements are a documented post-filter
on the returned items (:mod:`tools.stac.rank`); ``query`` is pushed down as well where the
API conforms to it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tools import access
from tools.access import AccessPolicy
from tools.base import ErrorCode, GeoScoutToolError, ToolContext
from tools.stac.args import StacSearchArgs

# Items fetched before post-filtering and ranking; enough for the local catalog and for a
# bounded online search. When reached, a caveat says the ranking saw only these.
FETCH_CAP = 500
PAGE_SIZE = 100


def is_own_catalog(url: str) -> bool:
    """True when the STAC API is a local one this process started over GeoScout's own index
    (its ``geoscout:`` fields were computed by GeoScout); any other API's ``geoscout:``
    fields are data, and dropped."""
    from tools.catalog.server import is_own_stac_url

    return is_own_stac_url(url)


def open_client(url: str, ctx: ToolContext) -> Any:
    """A pystac-client ``Client`` for the API at ``url``; errors "timeout" and
    "service_unreachable" say what failed without the URL's credentials."""
    import requests
    from pystac_client import Client
    from pystac_client.exceptions import APIError

    # Hook for signing (Planetary Computer) or auth: a callable in ctx.extra, none by default.
    modifier: Callable[[Any], Any] | None = ctx.extra.get("stac_modifier")
    # Every request of the client goes through the access policy: the configured API is
    # trusted, links it hands back to other hosts are checked like data; one timeout per
    # request (the policy's, cut to the step deadline), no redirects, a size cap.
    stac_io = access.stac_io(
        AccessPolicy.from_context(ctx), url, headers={"User-Agent": ctx.user_agent}
    )
    shown = public_url(url)
    try:
        return Client.open(url, modifier=modifier, stac_io=stac_io)
    except requests.exceptions.Timeout as exc:
        raise GeoScoutToolError(
            "timeout", f"the STAC API at {shown} did not answer in time", _reach_hint(ctx)
        ) from exc
    except (requests.exceptions.RequestException, APIError, OSError) as exc:
        raise GeoScoutToolError(
            "service_unreachable",
            f"the STAC API at {shown} could not be reached ({type(exc).__name__})",
            _reach_hint(ctx),
        ) from exc
    except GeoScoutToolError:
        raise
    except Exception as exc:  # not a STAC API (HTML page, missing conformance, ...)
        raise GeoScoutToolError(
            "service_unreachable",
            f"{shown} did not answer as a STAC API ({type(exc).__name__})",
            _reach_hint(ctx),
        ) from exc


def public_url(url: str) -> str:
    """The URL without credentials or query string, for messages and provenance."""
    return access.public_url(url)


def _reach_hint(ctx: ToolContext) -> str:
    if ctx.profile == "offline":
        return "the local STAC API may have stopped; restart the command to start it again"
    return "check the network and GEOSCOUT_STAC_URL, or use the offline profile with local data"


def search_params(
    args: StacSearchArgs, collections: list[str] | None, client: Any
) -> dict[str, Any]:
    """The pystac-client search for ``args``: area, period, collections, cloud where the API
    takes ``query``; capped at :data:`FETCH_CAP` items."""
    from pystac_client import ConformanceClasses

    params: dict[str, Any] = {"max_items": FETCH_CAP, "limit": PAGE_SIZE}
    if args.aoi is not None:
        if args.aoi.geometry is not None:
            params["intersects"] = args.aoi.geometry
        else:
            params["bbox"] = list(args.aoi.bbox)
    if args.datetime is not None and (args.datetime.start or args.datetime.end):
        params["datetime"] = args.datetime.to_stac()
    if collections:
        params["collections"] = collections
    if args.max_cloud is not None and client.conforms_to(ConformanceClasses.QUERY):
        params["query"] = {"eo:cloud_cover": {"lte": args.max_cloud}}
    return params


def fetch_items(client: Any, params: dict[str, Any], url: str) -> tuple[list[dict[str, Any]], bool]:
    """The items of one search (dicts), and whether :data:`FETCH_CAP` cut them short."""
    import requests
    from pystac_client.exceptions import APIError

    try:
        items = list(client.search(**params).items_as_dicts())
    except requests.exceptions.Timeout as exc:
        raise GeoScoutToolError("timeout", f"the STAC search at {url} timed out") from exc
    except (requests.exceptions.RequestException, OSError) as exc:
        raise GeoScoutToolError(
            "service_unreachable",
            f"the STAC API at {url} stopped answering during the search ({type(exc).__name__})",
            "retry; if it persists, restart the command",
        ) from exc
    except APIError as exc:
        status = getattr(exc, "status_code", None)
        code: ErrorCode = (
            "invalid_args" if status is not None and 400 <= status < 500 else "service_unreachable"
        )
        raise GeoScoutToolError(
            code,
            f"the STAC API refused the search (HTTP {status or 'error'})",
            "check the collection ids and the date range",
        ) from exc
    return items, len(items) >= FETCH_CAP
