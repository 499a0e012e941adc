"""The floor: a bare asyncssh fan-out (`uptime` on every host, 50 at a time), nothing else.

    python tests/perf/fanout_floor.py HOSTS_JSON KEY_FILE USER [CONCURRENCY]
HOSTS_JSON is a list of [address, port]. Prints how many hosts answered with exit status 0.
"""
import asyncio
import json
import sys

import asyncssh


async def main() -> None:
    hosts = json.loads(open(sys.argv[1]).read())
    key = asyncssh.read_private_key(sys.argv[2])
    user = sys.argv[3]
    limit = asyncio.Semaphore(int(sys.argv[4]) if len(sys.argv) > 4 else 50)

    async def one(address: str, port: int) -> bool:
        async with limit:
            async with asyncssh.connect(address, port, username=user, client_keys=[key], known_hosts=None,
                                        agent_path=None, config=None) as conn:
                return (await conn.run("uptime", check=False)).exit_status == 0

    oks = await asyncio.gather(*(one(a, p) for a, p in hosts), return_exceptions=True)
    print(sum(1 for ok in oks if ok is True))


asyncio.run(main())
