"""Hybrid search in our own database: BM25 full text and dense vectors, fused by reciprocal rank.

- Full text: SQLite FTS5 `bm25()`, or PostgreSQL `ts_rank_cd` over the `tsv` column.
- Vectors: every chunk's embedding sits in one in-memory matrix per process; a query is one
  matrix-vector product with a visibility mask, run on a native thread in parallel with the
  full-text query. Writers bump two Redis counters
  (`knowledge:added`, `knowledge:deleted`): new chunks are appended, a delete reloads.
- Visibility: the caller's own chunks and the public ones, nothing else.
"""
from __future__ import annotations

import re
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from sqlalchemy import select, text

from shared.database import db
from shared.models import Chunk, File
from shared.redis_client import get_redis
from shared.retrieval import embeddings
from shared.retrieval.base import Hit, ScopeFilter

RRF_K = 60
CANDIDATES = 50
_WORD = re.compile(r"\w+", re.UNICODE)
ADDED, DELETED = "knowledge:added", "knowledge:deleted"


def index_changed(deleted: bool = False) -> None:
    """Writers call this after committing chunks (or deleting them)."""
    get_redis().incr(DELETED if deleted else ADDED)


class _VectorIndex:
    """All chunk vectors of this database, with owner and scope per row."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self.ids = np.zeros(0, dtype=np.int64)
        self.owners = np.zeros(0, dtype=np.int32)
        self.public = np.zeros(0, dtype=bool)
        self.matrix = np.zeros((0, 0), dtype=np.float32)
        self.owner_codes: dict[str, int] = {}
        self.version: tuple[int, int] | None = None
        self.url: str | None = None

    def _rows(self, after_id: int):
        stmt = (select(Chunk.id, Chunk.user_id, Chunk.scope, Chunk.embedding)
                .where(Chunk.id > after_id, Chunk.embedding.is_not(None)).order_by(Chunk.id))
        return db.session.execute(stmt).all()

    def _append(self, rows) -> None:
        if not rows:
            return
        vectors = np.stack([embeddings.from_bytes(r.embedding) for r in rows])
        owners = np.array([self.owner_codes.setdefault(r.user_id, len(self.owner_codes)) for r in rows],
                          dtype=np.int32)
        self.ids = np.concatenate([self.ids, np.array([r.id for r in rows], dtype=np.int64)])
        self.owners = np.concatenate([self.owners, owners])
        self.public = np.concatenate([self.public, np.array([r.scope == "public" for r in rows])])
        self.matrix = vectors if self.matrix.size == 0 else np.vstack([self.matrix, vectors])

    def refresh(self) -> None:
        r = get_redis()
        added, deleted = (int(v or 0) for v in r.mget(ADDED, DELETED))
        url = str(db.engine.url)
        with self.lock:
            if self.version == (added, deleted) and self.url == url:
                return
            if self.version is None or self.version[1] != deleted or self.url != url:
                self._reset()
            self._append(self._rows(int(self.ids[-1]) if len(self.ids) else 0))
            self.version, self.url = (added, deleted), url

    def snapshot(self, owner: str):
        """The arrays as they are now (they are replaced, never changed in place) and the owner's code."""
        with self.lock:
            return self.ids, self.owners, self.public, self.matrix, self.owner_codes.get(owner, -1)


def _top(snapshot, query: np.ndarray, scope: ScopeFilter, n: int) -> list[int]:
    """Nearest visible chunks; pure numpy, so it may run in a native thread."""
    ids, owners, public, matrix, code = snapshot
    if not len(ids):
        return []
    mine = owners == code
    mask = {"all": mine | public, "personal": mine & ~public, "public": public}[scope]
    scores = matrix @ query
    scores[~mask] = -np.inf
    n = min(n, int(mask.sum()))
    if n <= 0:
        return []
    top = np.argpartition(-scores, n - 1)[:n]
    top = top[np.argsort(-scores[top])]
    return [int(ids[i]) for i in top]


_index = _VectorIndex()


def _visibility(scope: ScopeFilter) -> str:
    return {"all": "(c.user_id = :uid OR c.scope = 'public')",
            "personal": "(c.user_id = :uid AND c.scope = 'personal')",
            "public": "c.scope = 'public'"}[scope]


def _fulltext(user_id: str, query: str, scope: ScopeFilter, n: int) -> list[int]:
    words = [w for w in _WORD.findall(query.lower()) if len(w) > 1][:32]
    if not words:
        return []
    params = {"uid": user_id, "n": n}
    if db.engine.dialect.name == "postgresql":
        params["q"] = " | ".join(words)
        sql = (f"SELECT c.id FROM chunks c, to_tsquery('english', :q) q WHERE c.tsv @@ q AND {_visibility(scope)} "
               "ORDER BY ts_rank_cd(c.tsv, q) DESC LIMIT :n")
        return [row[0] for row in db.session.execute(text(sql), params)]
    params["q"] = " OR ".join('"' + w.replace('"', '') + '"' for w in words)
    # Fast path: the best matches regardless of owner, then keep the visible ones. Enough of
    # them survive when most matching material is visible (public course files, one's own).
    params["wide"] = n * 4
    ranked = [row[0] for row in db.session.execute(text(
        "SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH :q ORDER BY rank LIMIT :wide"), params)]
    if not ranked:
        return []
    visible = {row[0] for row in db.session.execute(
        text(f"SELECT c.id FROM chunks c WHERE c.id IN ({','.join(str(i) for i in ranked)}) AND {_visibility(scope)}"),
        params)}
    kept = [i for i in ranked if i in visible]
    if len(kept) >= n or len(ranked) < params["wide"]:
        return kept[:n]
    sql = (f"SELECT c.id FROM chunks_fts JOIN chunks c ON c.id = chunks_fts.rowid "
           f"WHERE chunks_fts MATCH :q AND {_visibility(scope)} ORDER BY chunks_fts.rank LIMIT :n")
    return [row[0] for row in db.session.execute(text(sql), params)]


def _in_native_thread(fn, *args):
    """Start fn(*args) on a real OS thread (numpy releases the GIL); returns an object with .get()."""
    from gevent import monkey
    if monkey.is_module_patched("threading"):
        import gevent
        return gevent.get_hub().threadpool.spawn(fn, *args)
    future = _pool.submit(fn, *args)
    future.get = future.result
    return future


_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="vector-search")


def fuse(*rankings: list[int], k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal rank fusion of several rankings of chunk ids: (id, score), best first."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, chunk_id in enumerate(ranking):
            scores[chunk_id] = scores.get(chunk_id, 0.0) + 1.0 / (k + rank + 1)
    return sorted(scores.items(), key=lambda kv: -kv[1])


class BuiltinRetriever:
    """Search in our own database: BM25, vectors, or both fused (`mode`)."""
    mode = "hybrid"  # or "bm25" / "vector", for the quality report

    def __init__(self, mode: str = "hybrid") -> None:
        self.mode = mode

    def rank(self, user_id: str, query: str, scope: ScopeFilter, n: int) -> list[tuple[int, float]]:
        """Up to about n (chunk id, fused score) pairs, best first, visible to the user."""
        pending = None
        if self.mode in ("hybrid", "vector"):  # the vector product runs while SQLite ranks the text
            _index.refresh()
            pending = _in_native_thread(_top, _index.snapshot(user_id), embeddings.encode([query])[0], scope, n)
        lexical = _fulltext(user_id, query, scope, n) if self.mode in ("hybrid", "bm25") else []
        dense = pending.get() if pending is not None else []
        return fuse(lexical, dense)

    def search(self, user_id: str, query: str, k: int, scope: ScopeFilter = "all") -> list[Hit]:
        """The k best hits, with their files' names and pages."""
        ranked = self.rank(user_id, query, scope, max(CANDIDATES, k))[:k]
        if not ranked:
            return []
        rows = {r.id: r for r in db.session.execute(
            select(Chunk.id, Chunk.file_id, Chunk.page, Chunk.text, File.name)
            .join(File, File.id == Chunk.file_id).where(Chunk.id.in_([cid for cid, _ in ranked])))}
        return [Hit(file_id=rows[cid].file_id, file_name=rows[cid].name, page=rows[cid].page,
                    text=rows[cid].text, score=round(score, 6)) for cid, score in ranked if cid in rows]
