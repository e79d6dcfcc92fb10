"""A Concord client in Python, from code generated out of proto/ with grpcio-tools.

Generate the code, then run this against a coordinator (and, optionally, shard replicas):

    python -m grpc_tools.protoc -I proto --python_out=gen --grpc_python_out=gen proto/concord/v1/*.proto
    python tests/python/kv_client.py --generated gen --coordinator 127.0.0.1:7070 --shards 127.0.0.1:7101

It exercises what a client in another language relies on: unary calls (Put, Get, Delete),
a server stream (Scan), many calls in flight on one connection, a value larger than HTTP/2's
initial flow-control windows, the status and message of a refused request, and Shard.Status on
each replica. Any surprise raises; on success it prints a JSON summary on stdout.
"""

import argparse
import json
import sys
import grpc

CONCURRENT_PUTS = 200
LARGE_VALUE_BYTES = 1024 * 1024
TIMEOUT_S = 10


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--generated", required=True, help="directory of the generated Python code")
    parser.add_argument("--coordinator", required=True)
    parser.add_argument("--shards", default="", help="comma-separated shard replica addresses")
    parser.add_argument("--prefix", default="py:")
    args = parser.parse_args()
    sys.path.insert(0, args.generated)
    from concord.v1 import kv_pb2, kv_pb2_grpc, shard_pb2, shard_pb2_grpc

    summary = {}
    with grpc.insecure_channel(args.coordinator) as channel:
        kv = kv_pb2_grpc.KVStub(channel)
        key = args.prefix + "a"

        first = kv.Put(kv_pb2.PutRequest(key=key, value=b"hello"), timeout=TIMEOUT_S)
        got = kv.Get(kv_pb2.GetRequest(key=key), timeout=TIMEOUT_S)
        check(got.found and got.value == b"hello" and got.version == first.version, f"Get after Put: {got}")
        second = kv.Put(kv_pb2.PutRequest(key=key, value=b"again"), timeout=TIMEOUT_S)
        check(second.version > first.version, f"versions {first.version} then {second.version}")
        kv.Delete(kv_pb2.DeleteRequest(key=key), timeout=TIMEOUT_S)
        check(not kv.Get(kv_pb2.GetRequest(key=key), timeout=TIMEOUT_S).found, "Get after Delete found the key")
        summary["versions"] = [first.version, second.version]

        # Many calls in flight on one connection.
        keys = [f"{args.prefix}c:{i:04d}" for i in range(CONCURRENT_PUTS)]
        puts = [kv.Put.future(kv_pb2.PutRequest(key=k, value=k.encode() * 20), timeout=TIMEOUT_S) for k in keys]
        versions = [future.result().version for future in puts]
        gets = [kv.Get.future(kv_pb2.GetRequest(key=k), timeout=TIMEOUT_S) for k in keys]
        for k, future in zip(keys, gets):
            answer = future.result()
            check(answer.found and answer.value == k.encode() * 20, f"Get {k}: {answer}")
        summary["concurrent_puts"] = sum(1 for v in versions if v > 0)

        # Larger than the 64 KiB initial windows, both ways.
        large = bytes(range(256)) * (LARGE_VALUE_BYTES // 256)
        kv.Put(kv_pb2.PutRequest(key=args.prefix + "large", value=large), timeout=TIMEOUT_S)
        back = kv.Get(kv_pb2.GetRequest(key=args.prefix + "large"), timeout=TIMEOUT_S)
        check(back.found and back.value == large, f"the large value came back with {len(back.value)} bytes")
        summary["large_value_bytes"] = len(back.value)

        # A server stream, merged across shard groups in key order.
        scanned = []
        for message in kv.Scan(kv_pb2.ScanRequest(prefix=args.prefix + "c:", limit=1000), timeout=TIMEOUT_S):
            scanned.extend(item.key for item in message.kvs)
        check(scanned == keys, f"Scan returned {len(scanned)} keys, in order: {scanned == sorted(scanned)}")
        summary["scanned"] = len(scanned)

        # Bad input: a clear status and message, nothing written.
        try:
            kv.Put(kv_pb2.PutRequest(key="", value=b"x"), timeout=TIMEOUT_S)
            raise AssertionError("a Put with an empty key was accepted")
        except grpc.RpcError as error:
            summary["refused"] = {"code": error.code().name, "details": error.details()}

    replicas = []
    for address in filter(None, args.shards.split(",")):
        with grpc.insecure_channel(address) as channel:
            status = shard_pb2_grpc.ShardStub(channel).Status(shard_pb2.ShardStatusRequest(), timeout=TIMEOUT_S)
            replicas.append({"address": address, "group": status.group_id, "member": status.member_id, "role": status.role})
    summary["replicas"] = replicas

    print(json.dumps(summary))


if __name__ == "__main__":
    main()
