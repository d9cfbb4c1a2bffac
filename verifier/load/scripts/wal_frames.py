#!/usr/bin/env python3
"""WAL frames per group-commit batch, by B-tree, for the service's schema.

Builds a SQLite store from verifier/service/migrations/ (all of them, or
those up to --upto), writes batches shaped like the group-commit writer's
(per attestation: a consumed nonce, a credential, a session's evidence and
an audit record; the audit head once per batch), and counts the WAL frames
each batch writes, by the B-tree each page belongs to (SQLite's `dbstat`).
Every frame is a page (4 KiB by default) the writer writes, then syncs, and a checkpoint
writes again: the share of the writer's cost that depends on the schema.

    python3 verifier/load/scripts/wal_frames.py [--upto 6] [--nonce-seconds] [--page-size 1024]

--nonce-seconds consumes nonces under a seconds-resolution expiry (challenge
version 2) instead of milliseconds (version 3). --page-size builds the store
with other pages than SQLite's default 4096 bytes, and the report then gives
the bytes per batch as well: smaller pages write fewer bytes in more frames. A model, not the server:
compare its total with `strace -f -c -e pwrite64,fsync -p <verifier>` under
`attest-gate-load` (two pwrite64 per frame, one fsync per batch).
"""

import argparse
import collections
import hashlib
import os
import sqlite3
import struct
import tempfile

MIGRATIONS = os.path.join(os.path.dirname(__file__), "../../service/migrations")
PER_BATCH = 4  # attestations per batch, as at 8 agents
KEYS = 8  # agent keys, as attest-gate-load's default


def store(path, upto, page_size):
    db = sqlite3.connect(path, isolation_level=None)
    # Only a new database takes it, and only before WAL mode is set.
    db.execute(f"PRAGMA page_size = {page_size}")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA wal_autocheckpoint = 0")
    db.execute("PRAGMA synchronous = OFF")
    for name in sorted(os.listdir(MIGRATIONS)):
        if upto is None or int(name.split("_")[0]) <= upto:
            with open(os.path.join(MIGRATIONS, name)) as f:
                db.executescript(f.read())
    return db


def batches(db, n, clock, nonce_seconds):
    for _ in range(n):
        db.execute("BEGIN IMMEDIATE")
        (seq,) = db.execute("SELECT seq FROM audit_head WHERE id = 1").fetchone()
        for _ in range(PER_BATCH):
            seq += 1
            clock[0] += 1
            ms = clock[0]
            expiry = (ms // 1000 + 60) if nonce_seconds else ms + 60_000
            nonce = f"{expiry:016x}" + hashlib.sha256(os.urandom(16)).hexdigest()
            db.execute(
                "INSERT INTO consumed_nonces (nonce_id, expires_at) VALUES (?, ?) "
                "ON CONFLICT DO NOTHING RETURNING nonce_id",
                (nonce, ms // 1000 + 60),
            ).fetchall()
            oid = f"{ms:012x}{os.urandom(16).hex()}"
            jkt = hashlib.sha256(bytes([seq % KEYS])).hexdigest()[:43]
            subject = "spiffe://attest-gate.example/workload/example-agent/agent/" + jkt
            db.execute(
                "INSERT INTO credentials (jti, subject, session_id, parent_jti, workload, "
                "jkt, scope, audience, issued_at, expires_at, test_root, model_digest, "
                "measurements, depth, register_set) "
                "VALUES (?, ?, ?, NULL, 'example-agent', ?, 'inference:invoke tools:search', "
                "'https://api.example', ?, ?, 1, ?, '', 0, ?)",
                (oid, subject, "s" + oid, jkt, ms // 1000, ms // 1000 + 900, "ab" * 48, "cd" * 32),
            )
            db.execute(
                "INSERT INTO session_evidence (session_id, tee, evidence, collateral, "
                "model_digest, expires_at, principal, task_id, scopes, audience, "
                "evidence_bytes, collateral_refs, evidence_tail) "
                "VALUES (?, 'tdx', '', '{}', ?, ?, 'user:alice', 'task-1', "
                "'inference:invoke tools:search', 'https://api.example', ?, '{}', ?)",
                ("s" + oid, "ab" * 48, ms // 1000 + 900, os.urandom(1258), "ef" * 32),
            )
            db.execute(
                "INSERT INTO audit_events (id, at, action, decision, code, tee, workload, "
                "subject, jti, detail, seq, actor, session_id, workload_version, "
                "policy_version, evidence_sha384, prev_hash, hash) "
                "VALUES (?, ?, 'attest', 'allow', 'ok', 'tdx', 'example-agent', ?, ?, "
                "'inference:invoke tools:search', ?, ?, ?, '1.0.0', '0123456789abcdef', ?, ?, ?)",
                ("a" + oid, ms // 1000, subject, oid, seq, "agent:" + jkt, "s" + oid,
                 "12" * 48, "34" * 32, "56" * 32),
            )
        db.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (seq, "56" * 32))
        db.execute("COMMIT")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--upto", type=int, help="the last migration to apply")
    parser.add_argument("--nonce-seconds", action="store_true")
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument(
        "--page-size", type=int, default=4096, choices=[512, 1024, 2048, 4096, 8192, 16384]
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "store.db")
        db = store(path, args.upto, args.page_size)
        clock = [1_800_000_000_000]
        batches(db, 3000, clock, args.nonce_seconds)  # trees a few levels deep
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        batches(db, args.batches, clock, args.nonce_seconds)
        with open(path + "-wal", "rb") as f:
            wal = f.read()
        page_size = struct.unpack(">I", wal[8:12])[0]
        pages = [
            struct.unpack(">I", wal[at : at + 4])[0]
            for at in range(32, len(wal) - 24, 24 + page_size)
        ]
        db.execute("PRAGMA wal_checkpoint(FULL)")
        owner = {
            page: f"{name} ({kind})"
            for name, page, kind in db.execute("SELECT name, pageno, pagetype FROM dbstat")
        }
        counts = collections.Counter(owner.get(p, "?") for p in pages)
        frames = len(pages) / args.batches
        print(
            f"{frames:.1f} frames per batch of {PER_BATCH} "
            f"({frames * (24 + page_size) / 1024:.0f} KiB, {page_size}-byte pages)"
        )
        for name, count in counts.most_common():
            if count / args.batches >= 0.05:
                print(f"  {count / args.batches:5.2f}  {name}")


if __name__ == "__main__":
    main()
