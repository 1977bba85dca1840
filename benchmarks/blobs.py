"""Object storage for blobs: s3fs (fsspec) against obstore, on one S3 server, one run.

Starts moto's standalone S3 server on loopback, then for each object size writes and reads
``--rounds`` objects with each library (one atomic PUT each — s3fs ``pipe_file``, obstore
``put`` — and a whole GET), and prints MB/s and the ratio obstore / s3fs.

    python benchmarks/blobs.py [--rounds 20] [--sizes 1024,1048576,26214400]

moto keeps objects in memory in one Python process, so the absolute figures are the
server's; the ratio is what the client libraries add on top of it.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.support.net import free_port  # noqa: E402  (the tests' one free-port helper)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--sizes", default="1024,1048576,26214400")
    args = ap.parse_args()
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                               str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        import boto3
        import obstore
        import s3fs
        from obstore.store import S3Store

        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        creds = {"aws_access_key_id": "x", "aws_secret_access_key": "x"}
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", **creds
                     ).create_bucket(Bucket="bench")
        fs = s3fs.S3FileSystem(key="x", secret="x", endpoint_url=endpoint)
        store = S3Store("bench", endpoint=endpoint, region="us-east-1", access_key_id="x",
                        secret_access_key="x", client_options={"allow_http": True})

        def s3fs_put(k, d):
            fs.pipe_file(f"bench/s3fs/{k}", d)

        def s3fs_get(k):
            return fs.cat_file(f"bench/s3fs/{k}")

        def obs_put(k, d):
            obstore.put(store, f"obstore/{k}", d)

        def obs_get(k):
            return bytes(obstore.get(store, f"obstore/{k}").bytes())

        print(f"{'size':>10} {'op':>4} {'s3fs MB/s':>10} {'obstore MB/s':>13} {'ratio':>6}")
        for size in (int(x) for x in args.sizes.split(",")):
            data = os.urandom(size)
            rounds = max(2, args.rounds if size < 10_000_000 else args.rounds // 4)
            for op in ("put", "get"):
                rates = []
                for put, get in ((s3fs_put, s3fs_get), (obs_put, obs_get)):
                    t0 = time.perf_counter()
                    for i in range(rounds):
                        if op == "put":
                            put(f"{size}-{i}", data)
                        else:
                            assert len(get(f"{size}-{i}")) == size
                    rates.append(size * rounds / (time.perf_counter() - t0) / 1e6)
                print(f"{size:>10} {op:>4} {rates[0]:>10.3g} {rates[1]:>13.3g} "
                      f"{rates[1] / rates[0]:>5.2f}x")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
