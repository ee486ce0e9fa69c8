#!/usr/bin/env python3
"""Open-loop load for scripts/bench-keypool.sh (standard library only).

Sends POST /v1/chat/completions at Poisson arrivals of a fixed mean rate for a fixed time,
whatever the answers take (so waiting shows as latency, not as a lower offered rate), and
prints one JSON line: answers by status, how many 429s carried Retry-After, latency
percentiles of the 200s.

    keypool_load.py --port 8000 --key sk-... --body chat.json --rate 9 --seconds 60 [--seed 1]
"""

import argparse
import asyncio
import json
import random
import time


async def one(port, payload, timeout):
    """One request on its own connection: (status, seconds, has Retry-After)."""
    started = time.monotonic()
    writer = None
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), timeout
        )
        writer.write(payload)
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        retry_after = any(l.lower().startswith("retry-after:") for l in lines[1:])
        # The body, to the end (Connection: close).
        await asyncio.wait_for(reader.read(), timeout)
        return status, time.monotonic() - started, retry_after
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError):
        return 0, time.monotonic() - started, False
    finally:
        if writer is not None:
            writer.close()


def quantile(sorted_values, q):
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--body", required=True)
    ap.add_argument("--rate", type=float, required=True, help="mean requests per second")
    ap.add_argument("--seconds", type=float, required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=90.0)
    args = ap.parse_args()
    with open(args.body, "rb") as f:
        body = f.read().strip()
    payload = (
        "POST /v1/chat/completions HTTP/1.1\r\n"
        "Host: 127.0.0.1\r\n"
        f"Authorization: Bearer {args.key}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body

    rng = random.Random(args.seed)
    tasks = []
    start = time.monotonic()
    at = 0.0
    while True:
        at += rng.expovariate(args.rate)
        if at >= args.seconds:
            break
        delay = start + at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(args.port, payload, args.timeout)))
    results = await asyncio.gather(*tasks)

    by_status = {}
    with_retry_after = 0
    latencies = []
    for status, secs, retry_after in results:
        by_status[str(status)] = by_status.get(str(status), 0) + 1
        if status == 429 and retry_after:
            with_retry_after += 1
        if status == 200:
            latencies.append(secs)
    latencies.sort()
    print(
        json.dumps(
            {
                "sent": len(results),
                "seconds": args.seconds,
                "status": by_status,
                "429_with_retry_after": with_retry_after,
                "p50_s": round(quantile(latencies, 0.50), 3),
                "p99_s": round(quantile(latencies, 0.99), 3),
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
