"""Python scripts the client pod runs (``python3 -c``) against the gateway Service.

They use only what our image has (Python and aiohttp) and print one JSON line, so a test
reads exactly what a client inside the cluster saw.
"""

from __future__ import annotations

# argv[1]: {"method", "url", "token", "body", "sse_events", "timeout"}. Prints
# {"status", "headers", "body", "chunks", "events"}; status 0 means no HTTP answer at all
# ("error" says why), so callers can wait for a Service that is not reachable yet.
CALL = r"""
import asyncio, json, sys
import aiohttp

spec = json.loads(sys.argv[1])

async def main():
    headers = {}
    if spec.get("token"):
        headers["Authorization"] = "Bearer " + spec["token"]
    body = spec.get("body")
    data = None
    if body is not None:
        data = body if isinstance(body, str) else json.dumps(body)
        headers["Content-Type"] = "application/json"
    result = {"status": 0, "headers": {}, "body": "", "chunks": [], "events": []}
    timeout = aiohttp.ClientTimeout(total=spec.get("timeout", 30))
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.request(spec["method"], spec["url"], data=data,
                                       headers=headers) as response:
                result["status"] = response.status
                result["headers"] = {k: v for k, v in response.headers.items()}
                wanted = spec.get("sse_events", 0)
                if wanted:
                    event = {}
                    async for raw in response.content:
                        line = raw.decode().rstrip("\n")
                        if not line:
                            if event:
                                result["events"].append(event)
                                event = {}
                            data_events = [e for e in result["events"]
                                           if e.get("event", "") == ""]
                            if len(data_events) >= wanted or (
                                    result["events"] and
                                    result["events"][-1].get("event") == "end"):
                                break
                            continue
                        name, _, value = line.partition(": ")
                        if name == "data":
                            event["data"] = event.get("data", "") + value
                        else:
                            event[name] = value
                else:
                    body = b""
                    async for chunk, _ in response.content.iter_chunks():
                        result["chunks"].append(chunk.decode(errors="replace"))
                        body += chunk
                    result["body"] = body.decode(errors="replace")
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(result))

asyncio.run(main())
"""

# argv: url token rate seconds body-json. Open loop: one query every 1/rate s for
# ``seconds``, whatever the answers take. Prints {"sent", "statuses": {status: n},
# "failures": [first few non-200 answers], "frames_missing": n}.
LOAD = r"""
import asyncio, json, sys, time
import aiohttp

url, token, rate, seconds, body = sys.argv[1], sys.argv[2], float(sys.argv[3]), \
    float(sys.argv[4]), sys.argv[5]
template = json.loads(body)
ref_id = template["queries"][0]["refId"]

def distinct(index):
    # Each query differs (the plugin ignores "seq"), as a dashboard's do over time: the
    # gateway quarantines a query that coincided with a backend dying, not its neighbours.
    query = {**template["queries"][0], "seq": index}
    return json.dumps({**template, "queries": [query]})

async def main():
    statuses, failures, missing = {}, [], 0
    headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        async def one(index):
            nonlocal missing
            try:
                async with session.post(url, data=distinct(index), headers=headers) as response:
                    text = await response.text()
                    key = str(response.status)
                    if response.status == 200:
                        if not json.loads(text)["results"][ref_id].get("frames"):
                            missing += 1
                    elif len(failures) < 5:
                        failures.append(f"{response.status}: {text[:300]}")
            except Exception as exc:
                key = type(exc).__name__
                if len(failures) < 5:
                    failures.append(f"{key}: {exc}")
            statuses[key] = statuses.get(key, 0) + 1

        start = time.monotonic()
        tasks = []
        total = int(rate * seconds)
        for index in range(total):
            delay = start + index / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(index)))
        await asyncio.gather(*tasks)
    print(json.dumps({"sent": total, "statuses": statuses, "failures": failures,
                      "frames_missing": missing}))

asyncio.run(main())
"""
