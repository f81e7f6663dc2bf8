"""OpenStreetMap features for the ``osm_overlay`` tool, split along its seams.

* :mod:`tools.osm.query`: feature words and tags, the layer to relate to;
* :mod:`tools.osm.sources`: local extracts (XML, PBF), vector layers, Overpass; licenses;
* :mod:`tools.osm.reading`: every source read into one frame shape;
* :mod:`tools.osm.measure`: query geometry, predicate, counts, lengths, areas;
* :mod:`tools.osm.tool`: arguments, the run, evidence and the tool's ``SPEC``.
"""
