"""Python scripts the client pod runs (``python3 -c``) to attack the gateway Service.

Like tests/e2e/gateway/client.py they use only what our image has (Python and aiohttp) and
print one JSON line, so a test reads exactly what a caller inside the cluster saw.
"""

from __future__ import annotations

# stdin: {"base": url, "concurrency": n, "groups": [{"name", "method", "path", "token",
# "body" (text), "stream_bytes" (a body of that many bytes, generated while sent),
# "content_length" (bool: announce stream_bytes), "count"}]}. Every request of every group
# runs concurrently (at most ``concurrency`` at once). Prints {name: {"statuses":
# {status or error: n}, "messages": [first distinct answers]}}; a status is the gateway's
# answer even when it closed the connection before the body was all sent.
FLOOD = r"""
import asyncio, json, sys
import aiohttp

spec = json.load(sys.stdin)
CHUNK = b"x" * 65536

async def stream(size):
    sent = 0
    while sent < size:
        part = CHUNK[:min(len(CHUNK), size - sent)]
        sent += len(part)
        yield part

async def main():
    report = {g["name"]: {"statuses": {}, "messages": []} for g in spec["groups"]}
    gate = asyncio.Semaphore(spec.get("concurrency", 16))
    timeout = aiohttp.ClientTimeout(total=120)
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        async def one(group):
            headers = {"Content-Type": "application/json"}
            if group.get("token"):
                headers["Authorization"] = "Bearer " + group["token"]
            if group.get("stream_bytes"):
                data = stream(group["stream_bytes"])
                if group.get("content_length"):
                    headers["Content-Length"] = str(group["stream_bytes"])
            else:
                data = group.get("body")
            async with gate:
                try:
                    async with session.request(group["method"], spec["base"] + group["path"],
                                               data=data, headers=headers) as response:
                        key, text = str(response.status), await response.text()
                except aiohttp.ClientResponseError as exc:
                    key, text = str(exc.status), exc.message
                except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                    key, text = type(exc).__name__, str(exc)
            entry = report[group["name"]]
            entry["statuses"][key] = entry["statuses"].get(key, 0) + 1
            if len(entry["messages"]) < 3 and text[:300] not in entry["messages"]:
                entry["messages"].append(text[:300])

        await asyncio.gather(*(one(g) for g in spec["groups"] for _ in range(g["count"])))
    print(json.dumps(report))

asyncio.run(main())
"""

# stdin: {"url", "method", "token", "body" (a query body: each request gets a distinct
# copy, as a dashboard's queries differ over time), "rate", "seconds"}. Open loop: one
# request every 1/rate s, whatever the answers take. Prints {"sent", "statuses": {status or
# error: n}, "failures": [the first few non-200 answers, with when they came]}.
STEADY = r"""
import asyncio, json, sys, time
import aiohttp

spec = json.load(sys.stdin)

def body(index):
    template = spec.get("body")
    if template is None:
        return None
    queries = [{**q, "seq": index} for q in template["queries"]]
    return json.dumps({**template, "queries": queries})

async def main():
    statuses, failures = {}, []
    headers = {"Content-Type": "application/json"}
    if spec.get("token"):
        headers["Authorization"] = "Bearer " + spec["token"]
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        start = time.monotonic()

        async def one(index):
            try:
                async with session.request(spec.get("method", "GET"), spec["url"],
                                           data=body(index), headers=headers) as response:
                    text = await response.text()
                    key = str(response.status)
            except Exception as exc:
                key, text = type(exc).__name__, str(exc)
            statuses[key] = statuses.get(key, 0) + 1
            if key != "200" and len(failures) < 10:
                failures.append(f"{time.monotonic() - start:.1f}s {key}: {text[:300]}")

        tasks, total = [], int(spec["rate"] * spec["seconds"])
        for index in range(total):
            delay = start + index / spec["rate"] - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(index)))
        await asyncio.gather(*tasks)
    print(json.dumps({"sent": total, "statuses": statuses, "failures": failures}))

asyncio.run(main())
"""
