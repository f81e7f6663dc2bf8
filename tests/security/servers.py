"""Real HTTP servers on 127.0.0.1 and real poisoned files for the security tests.

``RecordingServer`` is a threaded ``http.server`` on a free loopback port that records
every request it gets (method, path) and answers from a route table: plain bodies, slow
answers, trickled bodies, redirects, huge bodies, files. Tests assert both on what GeoScout
returned and on what reached the server (usually: nothing). Servers are context managers
and stop when the test ends.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.transform import from_bounds


@dataclass
class Route:
    """How one path is answered."""

    body: bytes | Callable[[RecordingServer, str], bytes] = b""
    status: int = 200
    content_type: str = "application/json"
    delay_s: float = 0.0  # before the status line
    trickle_s: float = 0.0  # between chunks of the body
    chunk: int = 64
    headers: dict[str, str] = field(default_factory=dict)


class RecordingServer:
    """``with RecordingServer({"/": Route(b"...")}) as srv: srv.url, srv.requests``."""

    def __init__(self, routes: dict[str, Route] | None = None, default: Route | None = None):
        self.routes = dict(routes or {})
        self.default = default or Route(b"not found", status=404, content_type="text/plain")
        self.requests: list[tuple[str, str]] = []
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RecordingServer:
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _answer(self) -> None:
                with srv._lock:
                    srv.requests.append((self.command, self.path))
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                path = self.path.split("?", 1)[0]
                route = srv.routes.get(path, srv.default)
                if route.delay_s:
                    time.sleep(route.delay_s)
                body = route.body(srv, self.path) if callable(route.body) else route.body
                try:
                    self.send_response(route.status)
                    self.send_header("Content-Type", route.content_type)
                    self.send_header("Content-Length", str(len(body)))
                    for k, v in route.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    if self.command == "HEAD":
                        return
                    if route.trickle_s:
                        for i in range(0, len(body), route.chunk):
                            self.wfile.write(body[i : i + route.chunk])
                            self.wfile.flush()
                            time.sleep(route.trickle_s)
                    else:
                        self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up, as it should

            do_GET = do_POST = do_HEAD = _answer

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> RecordingServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def file_route(path: Path, content_type: str = "image/tiff") -> Route:
    return Route(body=path.read_bytes(), content_type=content_type)


# --------------------------------------------------------------------------- a fake STAC API

CONFORMS = [
    "https://api.stacspec.org/v1.0.0/core",
    "https://api.stacspec.org/v1.0.0/item-search",
]


def stac_landing(base: str, search_href: str | None = None) -> bytes:
    return json.dumps(
        {
            "type": "Catalog",
            "stac_version": "1.0.0",
            "id": "fake",
            "description": "a STAC API under test",
            "conformsTo": CONFORMS,
            "links": [
                {"rel": "self", "href": base + "/", "type": "application/json"},
                {"rel": "root", "href": base + "/", "type": "application/json"},
                {
                    "rel": "search",
                    "href": search_href or base + "/search",
                    "type": "application/geo+json",
                    "method": "GET",
                },
                {"rel": "data", "href": base + "/collections", "type": "application/json"},
            ],
        }
    ).encode()


def stac_item(
    item_id: str,
    bbox: tuple[float, float, float, float],
    href: str,
    properties: dict[str, Any] | None = None,
) -> dict[str, Any]:
    w, s, e, n = bbox
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "id": item_id,
        "collection": "poisoned",
        "bbox": list(bbox),
        "geometry": {
            "type": "Polygon",
            "coordinates": [[[w, s], [e, s], [e, n], [w, n], [w, s]]],
        },
        "properties": {"datetime": "2020-06-01T00:00:00Z", "gsd": 10.0, **(properties or {})},
        "links": [],
        "assets": {
            "data": {
                "href": href,
                "type": "image/tiff; application=geotiff",
                "roles": ["data"],
                "eo:bands": [
                    {"name": "red", "common_name": "red"},
                    {"name": "green", "common_name": "green"},
                    {"name": "blue", "common_name": "blue"},
                ],
            }
        },
    }


def item_collection(items: list[dict[str, Any]], next_href: str | None = None) -> bytes:
    links = [{"rel": "next", "href": next_href, "method": "GET"}] if next_href else []
    return json.dumps({"type": "FeatureCollection", "features": items, "links": links}).encode()


def fake_stac_routes(base: str, items: list[dict[str, Any]], **search: Any) -> dict[str, Route]:
    return {
        "/": Route(stac_landing(base, search.pop("search_href", None))),
        "/conformance": Route(json.dumps({"conformsTo": CONFORMS}).encode()),
        "/collections": Route(json.dumps({"collections": [], "links": []}).encode()),
        "/search": Route(item_collection(items, search.pop("next_href", None)), **search),
    }


# --------------------------------------------------------------------------- real files


def geotiff(
    path: Path,
    bounds: tuple[float, float, float, float] = (-99.15, 47.01, -99.14, 47.02),
    size: tuple[int, int] = (64, 64),
    bands: int = 3,
    value: int | None = None,
) -> Path:
    """A small real GeoTIFF in EPSG:4326 with colour tags (uint8, RGB)."""
    width, height = size
    rng = np.random.default_rng(0)
    data = (
        np.full((bands, height, width), value, dtype=np.uint8)
        if value is not None
        else rng.integers(1, 255, (bands, height, width), dtype=np.uint8)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=bands,
        dtype="uint8",
        crs="EPSG:4326",
        transform=from_bounds(*bounds, width, height),
        photometric="RGB" if bands == 3 else None,
    ) as ds:
        ds.write(data)
    return path


def vrt_pointing_at(target: str, width: int = 64, height: int = 64) -> str:
    """An inline GDAL VRT whose single band reads ``target`` (a file or /vsicurl/ URL)."""
    return (
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">'
        "<SRS>EPSG:4326</SRS><GeoTransform>-99.15, 0.0001, 0, 47.02, 0, -0.0001</GeoTransform>"
        '<VRTRasterBand dataType="Byte" band="1"><SimpleSource>'
        f"<SourceFilename>{target}</SourceFilename><SourceBand>1</SourceBand>"
        "</SimpleSource></VRTRasterBand></VRTDataset>"
    )


def osm_xml(secret: str, bounds: tuple[float, float, float, float]) -> str:
    """A tiny real OSM extract: one road way whose name carries ``secret``."""
    w, s, e, n = bounds
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<osm version="0.6" generator="test">\n'
        f'<bounds minlon="{w}" minlat="{s}" maxlon="{e}" maxlat="{n}"/>\n'
        f'<node id="1" lat="{s + (n - s) * 0.3}" lon="{w + (e - w) * 0.3}" version="1"/>\n'
        f'<node id="2" lat="{s + (n - s) * 0.6}" lon="{w + (e - w) * 0.6}" version="1"/>\n'
        '<way id="10" version="1"><nd ref="1"/><nd ref="2"/>'
        f'<tag k="highway" v="residential"/><tag k="name" v="{secret}"/></way>\n</osm>\n'
    )
