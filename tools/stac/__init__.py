"""STAC imagery search for the ``stac_search`` tool, split along its seams.

* :mod:`tools.stac.args`: the tool's arguments, loose platform words;
* :mod:`tools.stac.client`: the STAC API client, search parameters, fetching (also used by
  ``coverage``);
* :mod:`tools.stac.items`: STAC items -> :class:`~tools.geo.SceneRef` (named bands, dates
  that stay unknown), footprints, GeoScout's own fields;
* :mod:`tools.stac.rank`: post-filtering and ranking the returned items;
* :mod:`tools.stac.tool`: the run, evidence, caveats, hints and the tool's ``SPEC``.
"""
