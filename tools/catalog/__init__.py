"""The local catalog service of the offline profile.

* :mod:`tools.catalog.index`: folders of rasters and STAC item files -> a static STAC catalog;
* :mod:`tools.catalog.server`: that catalog served as a STAC API (``rustac serve``, loopback).
"""
