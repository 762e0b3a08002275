"""Retrieval figures: search latency at 100,000 chunks, PDF ingestion speed, and quality.

- Latency: 100,000 chunks (random text from a 5,000-word vocabulary, random unit vectors)
  are written straight into the database; then POST /api/knowledge/search through the
  stack's web server, and the retriever called in-process, each timed over many queries.
- Ingestion: a 100-page text PDF uploaded through the API, timed until the file is ready.
- Quality: the labelled set in bench/corpus.py, hit@1 and hit@5 for BM25 alone, vectors
  alone, and their fusion.
"""
from __future__ import annotations

import random
import time

import numpy as np
import requests

from bench.corpus import QUESTIONS, page_texts
from bench.harness import Environment, Figure, Results, summary_ms

SECTION = "retrieval"


def _fill(env: Environment, owner: str, n: int) -> None:
    from sqlalchemy import insert

    from shared.database import db, write_tx
    from shared.models import Chunk, File
    from shared.retrieval.builtin import index_changed
    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(5000)]
    with env.app.app_context():
        with write_tx():
            f = File(user_id=owner, name="filler.txt", size=1, content_type="text/plain", sha256="0" * 64,
                     storage_key="files/x/filler", status="ready")
            db.session.add(f)
        vectors = np.random.default_rng(7).standard_normal((n, 256)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        for start in range(0, n, 5000):
            rows = [{"file_id": f.id, "user_id": owner, "scope": "personal" if i % 2 else "public",
                     "page": i % 300 + 1, "ordinal": i,
                     "text": " ".join(rng.choices(vocab, k=90)),
                     "embedding": vectors[i].astype(np.float16).tobytes()} for i in range(start, min(n, start + 5000))]
            with write_tx():
                db.session.execute(insert(Chunk), rows)
    index_changed()


def _pypdf_alone(pdf: bytes) -> float:
    """Seconds to extract the text of every page with pypdf, nothing else."""
    import io

    from pypdf import PdfReader
    started = time.perf_counter()
    for page in PdfReader(io.BytesIO(pdf)).pages:
        page.extract_text()
    return time.perf_counter() - started


def _upload_and_wait(url: str, token: str, content: bytes, name: str, timeout: float = 300) -> tuple[dict, float]:
    started = time.perf_counter()
    r = requests.post(f"{url}/api/upload/file", headers={"Authorization": f"Bearer {token}"},
                      files={"file": (name, content)})
    r.raise_for_status()
    body = r.json()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = requests.get(url + body["status_url"]).json()
        if job["state"] in ("succeeded", "failed"):
            return job, time.perf_counter() - started
        time.sleep(0.05)
    raise RuntimeError("ingestion timed out")


def run(env: Environment, results: Results, quick: bool = False) -> None:
    from tests import documents  # the same document makers as the tests
    n_chunks = 20_000 if quick else 100_000
    stack = env.stack("retrieval")
    stack.start_worker(queues="default,files", concurrency=1)
    stack.start_web(workers=1)
    owner, token = env.user()
    _, other_token = env.user()

    # Quality on the labelled set (its own user, so the filler does not dilute it).
    job, _ = _upload_and_wait(stack.url, other_token, documents.pdf(page_texts()), "corpus.pdf")
    assert job["state"] == "succeeded", job
    from shared.retrieval.builtin import BuiltinRetriever
    with env.app.app_context():
        from shared.database import db
        from shared.models import File
        quality_owner = db.session.query(File).filter_by(name="corpus.pdf").one().user_id
        hits: dict[str, tuple[float, float]] = {}
        for mode in ("bm25", "vector", "hybrid"):  # BM25 alone is the baseline of the other two
            retriever = BuiltinRetriever(mode)
            hit1 = hit5 = 0
            for question, page in QUESTIONS:
                pages = [h.page for h in retriever.search(quality_owner, question, 5, "personal")]
                hit1 += bool(pages) and pages[0] == page
                hit5 += page in pages
            hits[mode] = (hit1 / len(QUESTIONS), hit5 / len(QUESTIONS))
            n_pages = len(page_texts())
            chance = (1 / n_pages, min(1.0, 5 / n_pages))  # BM25's own baseline: a page drawn at random
            base = hits["bm25"] if mode != "bm25" else chance
            base_name = "BM25 alone" if mode != "bm25" else "chance"
            results.add(Figure(SECTION, f"hit@1 {mode}", hits[mode][0], "fraction",
                               baseline=base[0], baseline_name=base_name,
                               note=(f"{len(QUESTIONS)} questions over {len(page_texts())} pages"
                                     if mode == "bm25" else "")))
            results.add(Figure(SECTION, f"hit@5 {mode}", hits[mode][1], "fraction",
                               baseline=base[1], baseline_name=base_name))

    # Ingestion of a 100-page PDF through the API and the files worker.
    pages = [f"Page {i}. " + " ".join(f"Lecture {i} sentence {j} explains topic {i * 7 % 13}." for j in range(30))
             for i in range(1, 101)]
    pdf = documents.pdf(pages)
    job, seconds = _upload_and_wait(stack.url, token, pdf, "hundred.pdf")
    assert job["state"] == "succeeded", job
    results.add(Figure(SECTION, "100-page PDF ingestion", seconds, "s", baseline=_pypdf_alone(pdf),
                       baseline_name="pypdf text extraction alone, in-process", target="< 10 s", met=seconds < 10,
                       note=f"{100 / seconds:.1f} pages/s, upload to ready (extraction, chunking, embeddings, "
                            f"index), {job['result']['chunks']} chunks"))

    # Search latency at n_chunks.
    _fill(env, owner, n_chunks)
    queries = [f"w{random.Random(i).randrange(5000)} w{random.Random(i + 1).randrange(5000)} lecture topic"
               for i in range(300)]
    h = {"Authorization": f"Bearer {token}"}
    session = requests.Session()
    session.post(f"{stack.url}/api/knowledge/search", headers=h, json={"query": "warm up", "k": 5}).raise_for_status()
    samples = []
    for q in queries:
        t = time.perf_counter()
        session.post(f"{stack.url}/api/knowledge/search", headers=h, json={"query": q, "k": 5}).raise_for_status()
        samples.append(time.perf_counter() - t)
    http = summary_ms(samples)
    with env.app.app_context():
        retriever = BuiltinRetriever()
        retriever.search(owner, "warm up", 5)
        inproc = []
        for q in queries:
            t = time.perf_counter()
            retriever.search(owner, q, 5)
            inproc.append(time.perf_counter() - t)
    local = summary_ms(inproc)
    results.add(Figure(SECTION, f"search p99, HTTP, {n_chunks:,} chunks", http["p99"], "ms",
                       baseline=local["p99"], baseline_name="retriever in-process p99",
                       target="< 25 ms", met=http["p99"] < 25,
                       note=f"p50 {http['p50']:.1f} ms over {http['n']} queries"))
    results.add(Figure(SECTION, f"search p50, HTTP, {n_chunks:,} chunks", http["p50"], "ms",
                       baseline=local["p50"], baseline_name="retriever in-process p50"))
    stack.close()
