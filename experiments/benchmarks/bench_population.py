"""Population attacks at scale: 10,000 CIFAR-10 ciphertexts of one key at 32x32, block 4.

For every cipher (proposed, LE, ELE, EtC, PE; and the linear patch ciphers orthomix and
orthomix_sub under both of their attacks, ``orthomix:covariance``, ``orthomix:ica``...) one child
process loads the victims (test split,
fixed random order) and 5,000 public train images from a cache, encrypts the victims with one
key, then times the attack (:func:`vitlearnenc.attacks.population.population_attack`) and the
restoration of all ciphertexts, with ``--threads`` torch threads (2 = the project machine). The
child reports its peak RSS (``VmHWM``) before the attack (libraries, data and ciphertexts
loaded) and after it, so the attack's own memory is the difference. Target: each attack under
10 minutes on 2 cores. The linear ciphers' real-valued ciphertexts are encrypted chunk by chunk
on every pass of the attack (never held whole), so their rows at ``--count 1000`` and
``--count 10000`` show whether the attack's memory grows with N.

    python -m experiments.benchmarks.bench_population [--count 10000] [--threads 2]
    python -m experiments.benchmarks.bench_population --ciphers orthomix:covariance
    python -m experiments.benchmarks.bench_population --count 1000 --ciphers orthomix:ica

Writes ``experiments/results/bench/population_cpu.json``; rows of (cipher, count) not run this
time are kept from the file, so single rows can be added or rerun.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from experiments.benchmarks.common import machine_info, write_results

CIPHERS = ("proposed", "le", "ele", "etc", "pe")
LINEAR = tuple(f"{c}:{m}" for c in ("orthomix", "orthomix_sub") for m in ("covariance", "ica"))
TARGET_SECONDS = 600.0


def child(cache: Path, name: str, count: int, threads: int) -> dict[str, Any]:
    """One cipher's measurement (runs in its own process)."""
    from experiments.attacks.population.common import RealCiphertexts, encrypt, victim_cipher
    from vitlearnenc.attacks.population import Corpus, population_attack
    from vitlearnenc.attacks.population.linear import linear_population_attack

    torch.set_num_threads(threads)
    data = torch.load(cache)
    victims, public = data["victims"][:count], data["public"]
    cipher_name, _, method = name.partition(":")
    cipher = victim_cipher(cipher_name, 32, 4)
    corpus: Any
    if method:  # linear patch cipher: real-valued float32 chunks, encrypted on every pass
        corpus = RealCiphertexts(cipher, Corpus.from_tensor(victims, 1024))
    else:
        corpus = Corpus.from_tensor(torch.cat(list(encrypt(cipher, Corpus.from_tensor(victims)))))
    rss_before_mb = peak_rss_mb()
    started = time.perf_counter()
    if method:
        divisor = int(getattr(cipher, "mixing_unit_divisor", 1))
        result: Any = linear_population_attack(corpus, public, 4, divisor, method)  # type: ignore[arg-type]
    else:
        result = population_attack(type(cipher), corpus, public, 4)
    attack_seconds = time.perf_counter() - started
    started = time.perf_counter()
    restored = 0
    for chunk in corpus:
        restored += result.decrypt(chunk).shape[0]
    restore_seconds = time.perf_counter() - started
    return {
        "cipher": name,
        "images": restored,
        "threads": threads,
        "attack_seconds": round(attack_seconds, 2),
        "restore_seconds": round(restore_seconds, 2),
        "total_seconds": round(attack_seconds + restore_seconds, 2),
        "within_10_min": attack_seconds + restore_seconds < TARGET_SECONDS,
        "peak_rss_before_attack_mb": round(rss_before_mb),
        "peak_rss_mb": round(peak_rss_mb()),
    }


def peak_rss_mb() -> float:
    """This process's peak resident set (``VmHWM``), in MB. Not ``ru_maxrss``: Linux carries
    that over from the parent through fork and exec, so a child would report the parent's
    decoded dataset."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ciphers", nargs="+", default=list(CIPHERS))
    parser.add_argument("--child", nargs=2, metavar=("CACHE", "CIPHER"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        cache, name = args.child
        print(json.dumps(child(Path(cache), name, args.count, args.threads)))
        return
    from experiments.attacks.population.common import load_cifar

    victims, public = load_cifar()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cifar.pt"
        torch.save({"victims": victims[: args.count].clone(), "public": public.clone()}, cache)
        del victims, public
        for name in args.ciphers:
            command = [
                sys.executable, "-m", "experiments.benchmarks.bench_population",
                "--count", str(args.count), "--threads", str(args.threads),
                "--child", str(cache), name,
            ]  # fmt: skip
            output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(output.strip().splitlines()[-1]))
            rows[-1]["command"] = "python -m experiments.benchmarks.bench_population " + " ".join(
                sys.argv[1:]
            )
            print(json.dumps(rows[-1]), flush=True)
    done = {(row["cipher"], row["images"]) for row in rows}
    path = Path(__file__).resolve().parents[1] / "results" / "bench" / "population_cpu.json"
    if path.exists():  # keep the rows of (cipher, count) not run this time
        old = json.loads(path.read_text())["rows"]
        kept = [r for r in old if (r["cipher"], r["images"]) not in done]
        rows = sorted(
            kept + rows, key=lambda r: ((CIPHERS + LINEAR).index(r["cipher"]), r["images"])
        )
    payload = {
        "description": __doc__.split("\n\n")[0],
        "command": "python -m experiments.benchmarks.bench_population " + " ".join(sys.argv[1:]),
        "machine": machine_info(torch.device("cpu")) | {"torch_threads": args.threads},
        "rows": rows,
    }
    print(write_results("population_cpu", payload))


if __name__ == "__main__":
    main()
