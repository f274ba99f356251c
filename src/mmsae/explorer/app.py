"""The explorer's web app: a JSON API over `ExplorerData` plus a static single-page front end.

Every parameter is validated (bad input is a 4xx with a message), every list is paginated, and
files are served only from three places: the bundled front end, the analyses' plots found in the
run folder (by name, never by path) and the store's image root (`mmsae.data.images.safe_file`).
Stored strings (names, captions, modality names, sources) come from anywhere, so every response
carries a strict Content-Security-Policy on top of the front end's escaping, and requests must
name this machine in their Host header (a page on another site could otherwise rebind its own
DNS name to 127.0.0.1 and read the API).
"""

from __future__ import annotations

import json
import math
import mimetypes
import re
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import torch

from mmsae.analysis.search import QUERY_CONCEPTS, query_weights
from mmsae.data.images import IMAGE_SUFFIXES, OutsideRoot, image_root, safe_file
from mmsae.errors import MmsaeError
from mmsae.explorer.index import HIST_BINS, HIST_LOG10_RANGE, ExplorerData

STATIC = Path(__file__).parent / "static"
SORT_KEYS = ("concept", "name", "frequency", "energy", "modality_score", "stability", "bridge_mass")
BUCKETS = ("image", "text", "bimodal", "dead")
MAX_LIMIT = 500
SCAN_BLOCK = 65536
SMALL_FILE = 4 << 20
LOOPBACK = ("localhost", "127.0.0.1", "::1")
CSP = (
    "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
DOCS_CSP = (
    "default-src 'self'; img-src 'self' data: https://fastapi.tiangolo.com; object-src 'none'; "
    "script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "base-uri 'none'; frame-ancestors 'none'"
)
"""FastAPI's /api/docs page is Swagger UI from a CDN with an inline script; it shows no stored data."""


def _readonly_tensor(block: np.ndarray) -> torch.Tensor:
    """A tensor view of a read-only memory-mapped block (never written to, so no copy is needed)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(np.ascontiguousarray(block))


def _num(v: Any) -> Any:
    """JSON-safe scalar: NaN and inf become null."""
    if isinstance(v, (np.floating, float)):
        v = float(v)
        return None if math.isnan(v) or math.isinf(v) else v
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


class Explorer:
    """Queries behind the API; plain methods so they can be tested and benchmarked without HTTP."""

    def __init__(self, data: ExplorerData, text_encoder: tuple[str | None, str | None] = (None, None)):
        """`text_encoder`: (spec, weights) of `--text-encoder`, or (None, None) for the store's recorded one."""
        self.data = data
        self.text_encoder_spec = text_encoder
        self.store = data.store
        self.root = image_root(data.store)
        meta = data.rows_meta()
        self.modality = np.asarray(meta.column("modality").to_pylist(), dtype=object)
        self.pair_id = meta.column("pair_id").to_numpy()
        self.source = meta.column("source")
        self.text = meta.column("text")
        self._encoder: Any = None
        self._encoder_error: str | None = None
        self._norms: dict[int, np.ndarray] = {}
        self._tokens: tuple[np.ndarray, np.ndarray] | None = None  # picture and cell of every row, once asked
        t = data.table
        self._names_l = [(n or "").lower() for n in t["name"]]
        self._terms_l = [[s.lower() for s in terms] for terms in data.terms]
        key = np.array([(n or "\uffff").lower() for n in t["name"]], dtype=object)
        self._name_rank = np.argsort(np.argsort(key, kind="stable"), kind="stable")

    # ---- concepts -------------------------------------------------------------------------
    def concept_row(self, j: int) -> dict[str, Any]:
        t = self.data.table
        row = {k: _num(v[j]) for k, v in t.items()}
        row["name"] = row["name"] or None
        row["terms"] = self.data.terms[j][:5]
        return row

    def concepts(
        self,
        sort: str = "frequency",
        order: str = "desc",
        q: str = "",
        bucket: str = "",
        min_frequency: float = 0.0,
        offset: int = 0,
        limit: int = 50,
    ) -> dict[str, Any]:
        if sort not in SORT_KEYS:
            raise ValueError(f"sort must be one of {', '.join(SORT_KEYS)}")
        if order not in ("asc", "desc"):
            raise ValueError("order must be asc or desc")
        if bucket and bucket not in BUCKETS:
            raise ValueError(f"bucket must be one of {', '.join(BUCKETS)}")
        t = self.data.table
        keep = t["frequency"] >= min_frequency
        if bucket:
            keep &= t["bucket"] == bucket
        if q:
            ql = q.lower()
            keep &= np.array(
                [
                    ql in n or any(ql in s for s in terms) or ql == str(c)
                    for c, (n, terms) in enumerate(zip(self._names_l, self._terms_l))
                ],
                dtype=bool,
            )
        idx = np.nonzero(keep)[0]
        if sort == "name":
            order_idx = np.argsort(self._name_rank[idx], kind="stable")  # = a stable sort of the lowercased names
            if order == "desc":
                order_idx = order_idx[::-1]
        else:
            v = t[sort][idx].astype(float)
            v = np.where(np.isnan(v), -np.inf if order == "desc" else np.inf, v)  # missing values go last
            order_idx = np.argsort(-v if order == "desc" else v, kind="stable")
        page = idx[order_idx][offset : offset + limit]
        return {
            "total": int(len(idx)),
            "offset": offset,
            "limit": limit,
            "sort": sort,
            "order": order,
            "items": [self.concept_row(int(j)) for j in page],
        }

    def concept(self, j: int, examples: int = 12) -> dict[str, Any]:
        self._check_concept(j)
        out = self.concept_row(j)
        out["top"] = {}
        for m, (acts, ids) in self.data.tops.items():
            out["top"][m] = [
                {**self.row_brief(int(r)), "activation": _num(a)}
                for a, r in zip(acts[:examples, j], ids[:examples, j])
                if r >= 0
            ]
        lo, hi = HIST_LOG10_RANGE
        edges = 10 ** np.linspace(lo, hi, HIST_BINS + 1)
        counts = self.data.hist_FMB[j]
        nz = np.nonzero(counts.sum(0))[0]
        a, b = (int(nz.min()), int(nz.max()) + 1) if len(nz) else (0, 0)
        out["histogram"] = {
            "edges": [float(e) for e in edges[a : b + 1]],
            "counts": {m: counts[i, a:b].tolist() for i, m in enumerate(self.data.modalities)},
        }
        out["bridges"] = [
            {
                "concept": b["text_concept"] if b["image_concept"] == j else b["image_concept"],
                "side": "image" if b["image_concept"] == j else "text",
                "score": b["score"],
                "significant": b["significant"],
            }
            for b in self.data.bridges
            if j in (b["image_concept"], b["text_concept"])
        ]
        for b in out["bridges"]:
            b["name"] = self.data.table["name"][b["concept"]] or None
        out["neighbors"] = self.neighbors(j)
        return out

    def neighbors(self, j: int, n: int = 8) -> list[dict[str, Any]]:
        D = self.data.directions_FD
        cos = D @ D[j]
        cos[j] = -np.inf
        n = min(n, len(cos) - 1)
        best = np.argpartition(-cos, n - 1)[:n] if n > 0 else np.array([], int)
        best = best[np.argsort(-cos[best])]
        return [{"concept": int(c), "cosine": float(cos[c]), "name": self.data.table["name"][c] or None} for c in best]

    def _check_concept(self, j: int) -> None:
        if not 0 <= j < self.data.dict_size:
            raise KeyError(f"concept {j} does not exist (0 … {self.data.dict_size - 1})")

    # ---- rows -----------------------------------------------------------------------------
    def image_url(self, r: int) -> str | None:
        """URL of an image row's picture, or None when it has none inside the image root. A row whose
        source is a web address gets none: the server never fetches a URL (see `row_brief`'s link)."""
        from mmsae.data.metadata import web_link

        if self.root is None or self.modality[r] != "image":
            return None
        name = self.source[r].as_py() or ""
        if web_link(name) is not None:
            return None
        try:
            path = safe_file(self.root, name, IMAGE_SUFFIXES)
        except OSError:  # outside the root (OutsideRoot), or a name the file system refuses (too long, ...)
            return None
        return None if path is None else "/images/" + quote(path.relative_to(self.root).as_posix())

    def row_brief(self, r: int) -> dict[str, Any]:
        """`link`: the row's source when it is an http(s) address (an imported `url`), shown as a
        link to follow in the browser, never fetched here. `label`: what a listing shows, as the CLI
        does (`EmbeddingStore.labels`): the text, else the source (image path or URL), else `row N`."""
        from mmsae.data.metadata import web_link

        text, source = self.text[r].as_py(), self.source[r].as_py()
        return {
            "row": r,
            "modality": str(self.modality[r]),
            "pair_id": int(self.pair_id[r]),
            "text": text,
            "label": text or source or f"row {r}",
            "image_url": self.image_url(r),
            "link": web_link(self.source[r].as_py()),
        }

    # ---- patch tokens ------------------------------------------------------------------------
    @property
    def patch_tokens(self) -> dict | None:
        """How the token rows of a store heatmaps can be drawn from were read
        (`mmsae.analysis.heatmaps.token_layout`: every patch token, an image folder), else None."""
        from mmsae.analysis.heatmaps import token_layout

        try:
            return token_layout(self.store)
        except MmsaeError:
            return None

    def _require_patch_tokens(self) -> dict:
        """`patch_tokens`, or a KeyError (404) saying why this store has none to draw or click."""
        from mmsae.analysis.heatmaps import token_layout

        try:
            return token_layout(self.store)
        except MmsaeError as exc:
            raise KeyError(str(exc)) from None

    @property
    def patch_grid(self) -> list[int] | None:
        """The tower's patch grid, for the summary; None without patches, or where each picture has its own."""
        tokens = self.patch_tokens
        return None if tokens is None or tokens.get("grid") is None else list(tokens["grid"])

    def _token_index(self) -> tuple[np.ndarray, np.ndarray]:
        """`mmsae.analysis.heatmaps.token_index` of the store, read once."""
        from mmsae.analysis.heatmaps import token_index

        if self._tokens is None:
            self._tokens = token_index(self.store)
        return self._tokens

    @torch.no_grad()
    def heatmap_png(self, j: int, r: int) -> bytes:
        """The picture of row r (a patch token) with concept j's code on each of its patches blended
        over it (`mmsae.analysis.heatmaps.overlay`), as PNG bytes."""
        import io

        from PIL import Image

        from mmsae.analysis.heatmaps import centre_crop, heat_grid, overlay, picture_grid
        from mmsae.metrics.evaluate import routed_encode

        self._check_concept(j)
        self._check_row(r)
        tokens = self._require_patch_tokens()
        grid = picture_grid(self.store, tokens, r)
        url = self.image_url(r)
        if url is None:
            raise KeyError(f"row {r} has no picture in the store's image folder")
        image, cell = self._token_index()
        rows = np.flatnonzero((image == image[r]) & (cell[:, 0] >= 0))
        x = self.store.get(rows)
        z = routed_encode(self.data.model, torch.as_tensor(x), self.modality[rows])[:, j].float().numpy()
        heat = heat_grid(z, cell[rows], grid)
        path = safe_file(self.root, self.source[r].as_py(), IMAGE_SUFFIXES)
        buf = io.BytesIO()
        try:
            with Image.open(path) as picture:
                drawn = overlay(picture, heat, float(z.max()) if len(z) else 0.0, crop=centre_crop(tokens))
        except OSError as exc:  # changed or damaged since it was embedded
            raise KeyError(f"the picture of row {r} cannot be read: {exc}") from None
        drawn.save(buf, format="PNG")
        return buf.getvalue()

    def _check_row(self, r: int) -> None:
        if not 0 <= r < len(self.store):
            raise KeyError(f"row {r} does not exist (0 … {len(self.store) - 1})")

    @torch.no_grad()
    def row(self, r: int, n_concepts: int = 12, n_similar: int = 12) -> dict[str, Any]:
        self._check_row(r)
        x = self.store.get([r])
        out = self.row_brief(r)
        out["source"] = self.source[r].as_py()
        try:
            out["extra"] = self.store.extras([r])[0]  # the import's other metadata columns, or None
        except MmsaeError:  # a damaged shard: the row page still shows what is known
            out["extra"] = None
        if out["link"] is None and out["extra"] is not None:
            from mmsae.data.metadata import web_link

            out["link"] = web_link(out["extra"].get("url"))
        out["concepts"] = self._top_concepts(x, r, n_concepts)
        out["patches"] = self._patch_place(r) if out["image_url"] is not None else None
        partners = np.nonzero(self.pair_id == self.pair_id[r])[0] if self.pair_id[r] >= 0 else np.array([], int)
        out["pair"] = [self.row_brief(int(p)) for p in partners[:20] if p != r]
        out["similar"] = [
            {**self.row_brief(i), "cosine": s}
            for i, s in self.nearest(x[0], str(self.modality[r]), n_similar, exclude=r)
        ]
        return out

    def _top_concepts(self, x_1D: np.ndarray, r: int, n: int) -> list[dict[str, Any]]:
        """Row r's n strongest concepts (x_1D: its embedding), strongest first."""
        from mmsae.metrics.evaluate import routed_encode

        z = routed_encode(self.data.model, torch.as_tensor(x_1D), self.modality[r : r + 1])[0].float()
        n = min(n, int((z > 0).sum()))
        vals, idx = z.topk(n) if n else (torch.zeros(0), torch.zeros(0, dtype=torch.long))
        return [
            {"concept": int(j), "activation": float(v), "name": self.data.table["name"][j] or None}
            for v, j in zip(vals.tolist(), idx.tolist())
        ]

    def _patch_place(self, r: int) -> dict[str, Any] | None:
        """Where row r sits among its picture's patches: {"grid": [h, w] (the picture's), "cell":
        [y, x] (None for a class token or a mean), "crop": whether the grid covers the picture's
        centred square or all of it}, or None when the store holds no patch tokens of its picture."""
        from mmsae.analysis.heatmaps import centre_crop, picture_grid

        tokens = self.patch_tokens
        if tokens is None:
            return None
        image, cell = self._token_index()
        if image[r] < 0:
            return None
        return {
            "grid": list(picture_grid(self.store, tokens, r)),
            "cell": cell[r].tolist() if cell[r, 0] >= 0 else None,
            "crop": centre_crop(tokens),
        }

    @torch.no_grad()
    def patch(self, r: int, y: int, x: int, n_concepts: int = 12) -> dict[str, Any]:
        """The patch at cell (y, x) of row r's picture: its row and its strongest concepts (a click on
        the row page's picture)."""
        self._check_row(r)
        self._require_patch_tokens()  # says why a store has no patches to click (pooled, sampled, ...)
        place = self._patch_place(r)
        if place is None:
            raise KeyError(f"row {r} is not a patch token of a picture (a class token or a mean has no place)")
        h, w = place["grid"]
        if not (0 <= y < h and 0 <= x < w):
            raise ValueError(f"patch ({y}, {x}) is outside the {h}×{w} patch grid")
        image, cell = self._token_index()
        hit = np.flatnonzero((image == image[r]) & (cell[:, 0] == y) & (cell[:, 1] == x))
        if not len(hit):  # --patches-per-image keeps a sample of each picture's patches
            raise KeyError(f"the store holds no row for patch ({y}, {x}) of this picture (sampled patches)")
        p = int(hit[0])
        return {"row": p, "cell": [y, x], "concepts": self._top_concepts(self.store.get([p]), p, n_concepts)}

    def nearest(self, v_D: np.ndarray, modality: str | None, n: int, exclude: int = -1) -> list[tuple[int, float]]:
        """Rows of `modality` with the highest cosine to v: a scan of the memory-mapped shards in the
        store's own dtype (a float16 matrix-vector product is ~30× faster here than converting to
        float32 first), then the best n + 64 candidates re-scored exactly in float32."""
        if n <= 0:
            return []
        v = np.asarray(v_D, np.float32)
        v = torch.as_tensor(v / max(float(np.linalg.norm(v)), 1e-12))
        cand = n + 64
        best_r, best_s = np.zeros(0, np.int64), np.zeros(0, np.float32)
        for i, shard in enumerate(self.store.shards):
            emb = self.store.shard_embeddings(i)
            norms = self._row_norms(i)
            for lo in range(0, shard.n_rows, SCAN_BLOCK):
                X = _readonly_tensor(emb[lo : lo + SCAN_BLOCK])
                s = torch.mv(X, v.to(X.dtype)).float().numpy() / np.maximum(norms[lo : lo + len(X)], 1e-12)
                rows = np.arange(shard.row_start + lo, shard.row_start + lo + len(X))
                bad = rows == exclude
                if modality is not None:
                    bad |= self.modality[rows] != modality
                s[bad] = -np.inf
                if len(s) > cand:
                    keep = np.argpartition(-s, cand - 1)[:cand]
                    rows, s = rows[keep], s[keep]
                best_r, best_s = np.concatenate([best_r, rows]), np.concatenate([best_s, s])
                if len(best_s) > cand:
                    keep = np.argpartition(-best_s, cand - 1)[:cand]
                    best_r, best_s = best_r[keep], best_s[keep]
        best_r = best_r[np.isfinite(best_s)]
        if not len(best_r):
            return []
        X = self.store.get(np.sort(best_r))
        exact = X @ v.numpy() / np.maximum(np.linalg.norm(X, axis=1), 1e-12)
        order = np.argsort(-exact, kind="stable")[:n]
        rows = np.sort(best_r)
        return [(int(rows[o]), float(exact[o])) for o in order]

    def _row_norms(self, shard: int) -> np.ndarray:
        if shard not in self._norms:
            emb = self.store.shard_embeddings(shard)
            self._norms[shard] = np.concatenate(
                [
                    torch.linalg.vector_norm(_readonly_tensor(emb[lo : lo + SCAN_BLOCK]).float(), dim=1).numpy()
                    for lo in range(0, len(emb), SCAN_BLOCK)
                ]
                or [np.zeros(0, np.float32)]
            )
        return self._norms[shard]

    # ---- text query -----------------------------------------------------------------------
    def encoder(self):
        if self._encoder is None and self._encoder_error is None:
            from mmsae.backends.registry import text_encoder_for

            try:
                self._encoder = text_encoder_for(self.store, *self.text_encoder_spec)
            except (MmsaeError, ImportError) as exc:
                self._encoder_error = f"searched concept names only: {exc}"
        return self._encoder

    @torch.no_grad()
    def search(self, q: str, n: int = 12) -> dict[str, Any]:
        """Words → concepts (through the store's text encoder when there is one, and by name) → rows."""
        q = q.strip()
        if not q:
            raise ValueError("q must not be empty")
        t = self.data.table
        ql = q.lower()
        by_name = [j for j, (nm, terms) in enumerate(zip(self._names_l, self._terms_l)) if ql in nm or ql in terms]
        by_name.sort(key=lambda j: -t["frequency"][j])
        out: dict[str, Any] = {"query": q, "method": "names", "concepts": [], "rows": []}
        emb = None
        enc = self.encoder()
        if enc is not None:
            try:
                emb = enc.embed_texts([q])[0]
            except MmsaeError as exc:
                out["note"] = str(exc)
        else:
            out["note"] = self._encoder_error
        if emb is not None:
            from mmsae.metrics.evaluate import routed_encode

            z = routed_encode(self.data.model, torch.as_tensor(emb[None]), np.array(["text"]))[0].float()
            k = min(max(n, QUERY_CONCEPTS), int((z > 0).sum()))
            vals, idx = z.topk(k) if k else (torch.zeros(0), torch.zeros(0, dtype=torch.long))
            out["method"] = "encoder"
            encoded = [
                {**self.concept_row(int(j)), "activation": float(v)} for v, j in zip(vals.tolist(), idx.tolist())
            ]
            out["concepts"] = encoded[:n]
            # rows as `mmsae search --query` ranks them: by the encoded concepts alone
            found: dict[str, list] = {"by_encoding": encoded}
        else:  # no text encoder: the concepts whose names hold the query
            found = {"by_name": [{"concept": j} for j in by_name]}
        seen = {c["concept"] for c in out["concepts"]}
        out["concepts"] += [{**self.concept_row(j), "activation": None} for j in by_name[:n] if j not in seen]
        out["rows"] = self.rows_for(query_weights(found, QUERY_CONCEPTS), n)
        return out

    def rows_for(self, weighted: list[tuple[int, float]], n: int) -> list[dict[str, Any]]:
        """Images (else texts) that the given concepts fire on most, ranked as `mmsae search` ranks
        them (`analysis.search.rank_rows`); words → concepts → rows without touching the store."""
        from mmsae.analysis.search import rank_rows

        target = "image" if "image" in self.data.tops else next(iter(self.data.tops), None)
        if target is None:
            return []
        return [
            {**self.row_brief(r["row"]), "score": r["score"]} for r in rank_rows(self.data.tops, weighted, target, n)
        ]


def _hostname(host: str) -> str:
    """The name in a Host header or an --allow-host value, without port or IPv6 brackets."""
    h = host.strip().lower()
    m = re.fullmatch(r"\[([0-9a-f:.]+)\](?::\d{1,5})?|([^:\[\]\s/]+)(?::\d{1,5})?", h)
    if m:
        return m.group(1) or m.group(2)
    return h if re.fullmatch(r"[0-9a-f:.]+", h) else ""  # a bare IPv6 address (an --allow-host value)


class Guard:
    """Refuses requests for another host name (403) and adds the security headers to every answer,
    errors and static files included; plain ASGI, so it costs next to nothing per request."""

    def __init__(self, app, hosts: Iterable[str], docs_url: str | None):
        self.app, self.hosts, self.docs_url = app, {_hostname(h) for h in hosts} - {""}, docs_url

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        csp = DOCS_CSP if scope["path"] == self.docs_url else CSP
        extra = [
            (b"content-security-policy", csp.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"no-referrer"),
        ]
        host = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"host"), "")
        if _hostname(host) not in self.hosts:
            from starlette.responses import PlainTextResponse

            msg = (
                f"host {host[:100]!r} is not served here; pass `mmsae explore ... --allow-host NAME` to allow "
                "another name for this machine\n"
            )
            resp = PlainTextResponse(msg, 403)
            resp.raw_headers += extra
            return await resp(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _json_bytes(obj: Any) -> bytes:
    """What FastAPI would send for `obj`, without its per-value `jsonable_encoder` walk, which cost
    more than the queries themselves; numpy scalars are the only non-JSON values the queries make."""
    return json.dumps(
        obj,
        ensure_ascii=False,
        allow_nan=False,
        separators=(",", ":"),
        default=lambda v: v.item() if isinstance(v, np.generic) else str(v),
    ).encode()


def create_app(
    data: ExplorerData,
    allowed_hosts: Iterable[str] = LOOPBACK,
    cache_bytes: int = 16 << 20,
    text_encoder: tuple[str | None, str | None] = (None, None),
):
    """`allowed_hosts`: the names requests may carry in their Host header (with any port).
    `text_encoder`: (spec, weights) for the search box, default the store's recorded encoder.

    The event loop only sends what is in memory (the front end, the summary, answers already
    computed); queries and file reads run in the thread pool, where the heavy parts (the store
    scan, the text encoder) release the GIL. A query's answer is a pure function of the loaded
    data, so the most recent answers of each query, up to `cache_bytes` of JSON, are kept."""
    from fastapi import FastAPI, HTTPException, Query
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
    from starlette.concurrency import run_in_threadpool

    ex = Explorer(data, text_encoder)
    app = FastAPI(title="mmsae explorer", docs_url="/api/docs", redoc_url=None, openapi_url="/api/openapi.json")
    app.state.explorer = ex
    app.add_middleware(Guard, hosts=allowed_hosts, docs_url=app.docs_url)
    page = (STATIC / "index.html").read_bytes()
    static = {p.name: (p.read_bytes(), mimetypes.guess_type(p.name)[0]) for p in STATIC.iterdir() if p.is_file()}

    def call(fn, *a, **kw):
        try:
            return fn(*a, **kw)
        except KeyError as exc:
            raise HTTPException(404, str(exc.args[0] if exc.args else exc)) from None
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None

    def cached(query):
        memo: OrderedDict[tuple, bytes] = OrderedDict()  # touched on the event loop only: no lock
        used = 0

        async def answer(*a):
            nonlocal used
            body = memo.get(a)
            if body is not None:
                memo.move_to_end(a)
            else:
                body = await run_in_threadpool(lambda: _json_bytes(call(query, *a)))  # errors raise: not kept
                used += len(body) - len(memo.pop(a, b""))
                memo[a] = body
                while used > cache_bytes:
                    used -= len(memo.popitem(last=False)[1])
            return Response(body, media_type="application/json")

        return answer

    get_concepts, get_concept, get_row, get_search, get_patch = (
        cached(ex.concepts),
        cached(ex.concept),
        cached(lambda r, n: ex.row(r, n_similar=n)),
        cached(ex.search),
        cached(ex.patch),
    )

    def send_file(path: Path, media_type: str | None = None, headers: dict[str, str] | None = None):
        """A small file in one read, in the handler's thread: FileResponse streams through several
        trips to the thread pool, each queued behind every pending query."""
        try:
            if path.stat().st_size > SMALL_FILE:
                return FileResponse(path, media_type=media_type, headers=headers)
            body = path.read_bytes()
        except OSError:  # gone since it was found, unreadable, ...
            raise HTTPException(404, f"cannot read {path.name[:100]!r}") from None
        return Response(body, media_type=media_type or mimetypes.guess_type(path.name)[0], headers=headers)

    @app.get("/", response_class=HTMLResponse)
    async def index():
        return HTMLResponse(page)

    @app.get("/static/{name}")
    async def static_file(name: str):
        if name not in static:
            raise HTTPException(404, f"no file {name[:100]!r} in the front end")
        return Response(static[name][0], media_type=static[name][1])

    summary_bytes = _json_bytes(
        {
            **data.meta,
            "has_images": ex.root is not None,
            "patch_grid": ex.patch_grid,
            "patches": ex.patch_tokens is not None,
            "modalities": data.modalities,
            "n_bridges": len(data.bridges),
            "run": str(data.layout.root),
        }
    )
    plots_bytes = _json_bytes([{"name": n, "url": f"/plots/{quote(n)}.png"} for n in sorted(data.layout.plots)])

    @app.get("/api/summary")
    async def summary():
        return Response(summary_bytes, media_type="application/json")

    @app.get("/api/concepts")
    async def concepts(
        sort: str = "frequency",
        order: str = "desc",
        q: str = Query("", max_length=200),
        bucket: str = "",
        min_frequency: float = Query(0.0, ge=0.0, le=1.0),
        offset: int = Query(0, ge=0),
        limit: int = Query(50, ge=1, le=MAX_LIMIT),
    ):
        return await get_concepts(sort, order, q, bucket, min_frequency, offset, limit)

    @app.get("/api/concepts/{j}")
    async def concept(j: int, examples: int = Query(12, ge=1, le=100)):
        return await get_concept(j, examples)

    @app.get("/api/rows/{r}")
    async def row(r: int, similar: int = Query(12, ge=0, le=100)):
        return await get_row(r, similar)

    @app.get("/api/rows/{r}/patch")
    async def patch(r: int, y: int = Query(..., ge=0), x: int = Query(..., ge=0)):
        return await get_patch(r, y, x)

    @app.get("/api/search")
    async def search(q: str = Query(..., min_length=1, max_length=200), limit: int = Query(12, ge=1, le=100)):
        return await get_search(q, limit)

    @app.get("/api/plots")
    async def plots():
        return Response(plots_bytes, media_type="application/json")

    @app.get("/plots/{name}.png")
    def plot(name: str):
        path = data.layout.plots.get(name)
        if path is None:
            raise HTTPException(
                404, f"no plot named {name!r}; available: {', '.join(sorted(data.layout.plots)) or 'none'}"
            )
        return send_file(path, "image/png")

    @app.get("/heatmaps/{j}/{r}.png")
    def heatmap(j: int, r: int):
        return Response(call(ex.heatmap_png, j, r), media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    @app.get("/images/{path:path}")
    def image(path: str):
        if ex.root is None:
            raise HTTPException(404, "this store has no image files")
        try:
            target = safe_file(ex.root, path, IMAGE_SUFFIXES)
        except OutsideRoot:
            raise HTTPException(403, "outside the store's image folder") from None
        except OSError:  # a name the file system refuses (too long, ...): no such image
            target = None
        if target is None:
            raise HTTPException(404, f"no image {path[:200]!r}")
        return send_file(target, headers={"Cache-Control": "max-age=3600"})

    @app.exception_handler(404)
    async def not_found(request, exc):
        detail = getattr(exc, "detail", None) or "not found"
        return JSONResponse({"detail": detail}, status_code=404)

    return app
