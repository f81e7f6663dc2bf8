"""GeoScout: command line entry points."""
