"""Presentation of an AnswerBundle: static and web maps, reports, evidence cards, exports.

Above ``agents`` (it reads the bundle contract and typed provenance, never graph internals)
and below the app, the CLI and the evals. Imagery is read through the tools' raster access
and access policy, like the tools themselves.
"""
