#!/usr/bin/env python3
"""CPU tests of what needs no GPU: tools/compare_peers.py's tables and run_peers.py's decisions (peers_common).

    python3 lab/peers/test_peers.py      (stdlib only; not part of CI)
"""
import json
import os
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))

import compare_peers as cp  # noqa: E402
import peers_common as pc  # noqa: E402


def perf_row(nbytes, backend, us, world=2, gpu="NVIDIA H200"):
    return json.dumps({"world": world, "gpu": gpu, "dtype": "bf16", "backend": backend, "algo": "x",
                       "bytes": nbytes, "graph": True, "oop_us": us, "ip_us": us, "busbw_gbs": 1.0, "wrong": 0})


class Files:
    """Temporary JSON-lines files, removed at the end of a test."""

    def __init__(self):
        self.dir = tempfile.TemporaryDirectory()

    def write(self, name, lines):
        path = os.path.join(self.dir.name, name)
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path


def table_rows(lines):
    """{first cell: {header: cell}} of the first Markdown table in lines."""
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(head, cells))
    return rows


class CompareTables(unittest.TestCase):
    def setUp(self):
        self.files = Files()
        self.perf = self.files.write("perf.jsonl", [perf_row(1024, "nccl", 6.0), perf_row(1024, "auto", 2.0),
                                                    perf_row(1024, "nccl-symm", 4.0), perf_row(2048, "auto", 2.1)])

    def tearDown(self):
        self.files.dir.cleanup()

    def peers(self, name, rows, gpu="NVIDIA H200"):
        lines = [pc.row(2, gpu, backend, "x", nbytes, us, 0, call="in-place") for backend, nbytes, us in rows]
        return self.files.write(name, lines)

    def test_same_run_peer_sets_best_and_ratio(self):
        peers = self.peers("p.jsonl", [("sgl-push", 1024, 2.5), ("fi-vllm", 1024, 4.2)])
        rows = table_rows(cp.report(self.perf, peers=[peers]))
        self.assertEqual(rows["1024"]["sgl-push"], "2.50")
        self.assertEqual(rows["1024"]["which"], "sgl-push")
        self.assertEqual(rows["1024"]["auto/best peer"], "0.80")
        self.assertEqual(rows["1024"]["auto/nccl"], "0.33")

    def test_elsewhere_column_is_marked_and_not_in_ratio(self):
        away = self.peers("a.jsonl", [("sgl-push", 1024, 1.0)])
        lines = cp.report(self.perf, elsewhere=[away])
        rows = table_rows(lines)
        self.assertEqual(rows["1024"]["sgl-push" + cp.DAGGER], "1.00")
        self.assertEqual(rows["1024"]["best peer"], "-")
        self.assertEqual(rows["1024"]["auto/best peer"], "-")
        self.assertTrue(any(line.startswith(cp.DAGGER + " measured elsewhere") for line in lines))

    def test_same_run_file_from_another_gpu_is_demoted(self):
        peers = self.peers("p.jsonl", [("sgl-push", 1024, 1.0)], gpu="NVIDIA H100 80GB HBM3")
        rows = table_rows(cp.report(self.perf, peers=[peers]))
        self.assertIn("sgl-push" + cp.DAGGER, rows["1024"])
        self.assertEqual(rows["1024"]["auto/best peer"], "-")

    def test_elsewhere_column_hidden_when_same_run_has_it(self):
        peers = self.peers("p.jsonl", [("sgl-push", 1024, 2.5)])
        away = self.peers("a.jsonl", [("sgl-push", 1024, 1.0)])
        rows = table_rows(cp.report(self.perf, peers=[peers], elsewhere=[away]))
        self.assertNotIn("sgl-push" + cp.DAGGER, rows["1024"])

    def test_nccl_symm_counts_as_peer_only_beside_another(self):
        peers = self.peers("p.jsonl", [("symm-2", 1024, 7.0)])
        rows = table_rows(cp.report(self.perf, peers=[peers]))
        self.assertEqual(rows["1024"]["which"], "nccl-symm")
        self.assertEqual(rows["2048"]["best peer"], "-")

    def test_skipped_rows_are_left_out(self):
        lines = [pc.row(2, "NVIDIA H200", "sgl-push", "x", 1024, None, 0, skip="too big")]
        peers = self.files.write("p.jsonl", lines)
        rows = table_rows(cp.report(self.perf, peers=[peers]))
        self.assertNotIn("sgl-push", rows["1024"])

    def test_ratio_table_divides_auto_by_each_peer(self):
        peers = self.peers("p.jsonl", [("sgl-push", 1024, 2.5), ("fi-vllm", 1024, 4.0)])
        lines = cp.report(self.perf, peers=[peers])
        second = lines[lines.index("") + 1:]
        rows = table_rows(second)
        self.assertEqual(rows["1024"]["auto/fi-vllm"], "0.50")
        self.assertEqual(rows["1024"]["auto/sgl-push"], "0.80")

    def test_fused_rows_get_their_own_table(self):
        line = pc.row(2, "NVIDIA H200", "fi-trtllm1", "x", 8 * 4096 * 2, 9.5, 0, op="fused_add_rmsnorm", tokens=8,
                      hidden=4096)
        peers = self.files.write("p.jsonl", [line])
        lines = cp.report(self.perf, peers=[peers])
        start = lines.index("fused_add_rmsnorm, hidden 4096 (µs per call):")
        rows = table_rows(lines[start + 2:])
        self.assertEqual(rows["8"]["fi-trtllm1"], "9.50")
        self.assertEqual(rows["8"]["auto (all-reduce alone)"], "-")
        self.assertNotIn(str(8 * 4096 * 2), table_rows(lines))

    def test_fused_table_shows_customar_all_reduce_of_the_same_bytes(self):
        line = pc.row(2, "NVIDIA H200", "fi-trtllm1", "x", 2048, 3.5, 0, op="fused_add_rmsnorm", tokens=1,
                      hidden=1024)
        peers = self.files.write("p.jsonl", [line])
        lines = cp.report(self.perf, peers=[peers])
        start = lines.index("fused_add_rmsnorm, hidden 1024 (µs per call):")
        self.assertEqual(table_rows(lines[start + 2:])["1"]["auto (all-reduce alone)"], "2.10")

    def test_other_world_size_rows_are_ignored(self):
        lines = [pc.row(4, "NVIDIA H200", "sgl-push", "x", 1024, 1.0, 0)]
        peers = self.files.write("p.jsonl", lines)
        rows = table_rows(cp.report(self.perf, peers=[peers]))
        self.assertNotIn("sgl-push", rows["1024"])

    def test_readme_figures_are_elsewhere(self):
        readme = self.files.write("README.md", ["## world size 2", "", "| bytes | nccl | vllm | sgl-push |",
                                                "|---:|---:|---:|---:|", "| 1024 | 6.1 | 4.2 | 2.2 |"])
        rows = table_rows(cp.report(self.perf, readme=readme))
        self.assertEqual(rows["1024"]["vllm" + cp.DAGGER], "4.2")
        self.assertEqual(rows["1024"]["sgl-push" + cp.DAGGER], "2.2")
        self.assertEqual(rows["1024"]["auto/best peer"], "-")


class PeerDecisions(unittest.TestCase):
    def test_median_is_the_middle_replay_per_call(self):
        self.assertAlmostEqual(pc.median_us([2.0, 9.0, 1.0, 4.0, 3.0, 8.0, 5.0], 20), 200.0)

    def test_busbw_matches_nccl_tests(self):
        self.assertAlmostEqual(pc.busbw_gbs(1 << 20, 10.0, 2), (1 << 20) / 1e-5 / 1e9)
        self.assertAlmostEqual(pc.busbw_gbs(1 << 20, 10.0, 8), (1 << 20) / 1e-5 / 1e9 * 1.75)

    def test_trtllm_oneshot_uses_4096_rows(self):
        self.assertEqual(pc.trtllm_shape(1 << 20, 8, twoshot=False), (256, 4096))
        self.assertEqual(pc.trtllm_shape(512, 2, twoshot=False), (1, 512))

    def test_trtllm_twoshot_needs_more_tokens_than_ranks(self):
        tokens, hidden = pc.trtllm_shape(1024, 8, twoshot=True)
        self.assertGreater(tokens, 8)
        self.assertGreaterEqual(hidden, 64)
        self.assertIsNone(pc.trtllm_shape(512, 8, twoshot=True))

    def test_trtllm_oneshot_skips_past_the_lamport_cap(self):
        self.assertIsNone(pc.trtllm_skip(256 << 20, 2, oneshot=True))
        self.assertIn("Lamport", pc.trtllm_skip(256 << 20, 8, oneshot=True))
        self.assertIn("world sizes", pc.trtllm_skip(1024, 3, oneshot=True))

    def test_rows_carry_customar_perf_keys(self):
        r = json.loads(pc.row(2, "NVIDIA H200", "symm-1", "one_shot", 1024, 5.0, 0, call="out-of-place"))
        for key in ("world", "gpu", "dtype", "backend", "algo", "bytes", "graph", "oop_us", "ip_us", "busbw_gbs",
                    "wrong"):
            self.assertIn(key, r)
        self.assertIsNone(r["ip_us"])

    def test_parse_bytes_takes_suffixes(self):
        self.assertEqual(pc.parse_bytes("256M"), 256 << 20)
        self.assertEqual(pc.parse_bytes("1K"), 1024)
        self.assertEqual(pc.parse_bytes("4096"), 4096)
        self.assertEqual(pc.parse_bytes("16MiB"), 16 << 20)


if __name__ == "__main__":
    unittest.main(verbosity=1)
