"""crew at two git revisions, side by side: the benchmark scripts run on the old and the new engine.

Run (with the project's ``.venv``, which has every package the benchmarks need):

    .venv/bin/python benchmarks/engines.py --old e6a7401 [--new worktree] [--repeat 3]
        [--scripts throughput,send_latency,store_requests,nested] [--quick]
        [--args 'throughput=--jobs 3000 --round-trips 500'] [--show-output]

Each side's tree (``git archive REV``, or the working tree itself for ``worktree``) gets an
environment of its own: a venv whose crew packages are that tree's (a ``.pth`` file puts the
tree's package roots on ``sys.path``, and generated ``*.dist-info`` folders carry their names and
entry points, so plugins load from the tree too); every other package is linked from the
interpreter running this script, less its crew distributions (editable finders and ``.pth``
files included). Benchmarks run in an empty folder, since ``python -m crew_core worker`` would
put the working directory first on ``sys.path``. Before any run, a probe in each environment
prints where crew_core, crew_local and each ``crew`` entry point come from, in the controller and
in a subprocess worker's job, and stops unless all of it is inside that side's tree.

The NEW tree's benchmark scripts run against both sides (the public API is kept), interleaved:
each round runs every chosen script on both sides, and the order of the sides alternates from
round to round. Scripts get ``--repeat 1`` first (the rounds are the repeats; throughput also
``--no-dask``), then ``--quick`` sizes, then ``--args``. Printed: the load average before and after
each run, then per headline figure the median and range of each side and the ratio new/old.
Figures marked (control) do not depend on crew (ProcessPoolExecutor): their spread shows the noise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import site
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
import venv
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
WORKTREE = "worktree"
SCRIPTS = ("throughput", "send_latency", "store_requests", "nested")
BASE_ARGS = {"throughput": ["--repeat", "1", "--no-dask"], "send_latency": ["--repeat", "1"],
             "store_requests": ["--repeat", "1"], "nested": ["--repeat", "1"]}  # fmt: skip
QUICK_ARGS = {"throughput": "--jobs 300 --round-trips 30", "send_latency": "--jobs 300",
              "store_requests": "--stores local --workers 2 --per-worker 2 --seconds 0.2 --idle-seconds 0",
              "nested": "--jobs 100 --inner 2 --forwarders 2"}  # fmt: skip

# ------------------------------------------------------------------ one side: its tree and its venv


@dataclass
class Side:
    """``old`` or ``new``: a revision, its tree, and the interpreter whose crew is that tree's."""

    role: str
    rev: str
    commit: str
    tree: Path
    home: Path  # the side's venv

    @property
    def python(self) -> Path:
        return self.home / "bin" / "python"

    @property
    def label(self) -> str:
        return f"{self.role} ({self.rev})"


def git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout.strip()


def materialise(rev: str, dest: Path) -> Path:
    """The tree of ``rev`` extracted into ``dest`` (no worktree is registered)."""
    dest.mkdir(parents=True)
    archive = subprocess.Popen(["git", "-C", str(ROOT), "archive", "--format=tar", rev], stdout=subprocess.PIPE)
    assert archive.stdout is not None
    with tarfile.open(fileobj=archive.stdout, mode="r|") as tar:
        tar.extractall(dest, filter="data")
    if archive.wait() != 0:
        raise SystemExit(f"git archive {rev} failed")
    return dest


def crew_distributions() -> list[metadata.Distribution]:
    """This interpreter's crew packages: crew-core, whatever requires it or plugs into ``crew``."""
    found = []
    for dist in metadata.distributions():
        requires = {re.split(r"[^A-Za-z0-9._-]", req, maxsplit=1)[0].lower() for req in dist.requires or []}
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name == "crew-core" or "crew-core" in requires or any(ep.group == "crew" for ep in dist.entry_points):
            found.append(dist)
    return found


def link_dependencies(site_packages: Path) -> None:
    """Link every entry of this interpreter's site-packages into ``site_packages``, except crew's own
    (its packages, dist-info, editable finders and their ``.pth`` files, as each RECORD lists them)."""
    bases = [Path(p) for p in site.getsitepackages() if os.path.isdir(p)]
    hidden: set[Path] = set()  # top-level entries, and files of the top-level __pycache__
    for dist in crew_distributions():
        for file in dist.files or []:
            path = Path(os.path.normpath(dist.locate_file(file)))
            for base in bases:
                if path.is_relative_to(base):
                    parts = path.relative_to(base).parts
                    hidden.add(base.joinpath(*parts[:2]) if parts[0] == "__pycache__" else base / parts[0])
    for base in bases:
        for entry in sorted(base.iterdir()):
            target = site_packages / entry.name
            if entry.name == "__pycache__":  # top-level modules' bytecode, less the editable finders'
                target.mkdir(exist_ok=True)
                for pyc in entry.iterdir():
                    if pyc not in hidden and not (target / pyc.name).exists():
                        (target / pyc.name).symlink_to(pyc)
            elif entry not in hidden and not target.exists():
                target.symlink_to(entry)


def install_tree(tree: Path, site_packages: Path, bin_dir: Path) -> None:
    """Make the tree's packages (its root and ``plugins/*``) importable and visible as distributions."""
    roots = [tree, *sorted(p.parent for p in tree.glob("plugins/*/pyproject.toml"))]
    (site_packages / "crew-engines.pth").write_text("".join(f"{root}\n" for root in roots))
    for root in roots:
        project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
        name, version = project["name"], project.get("version", "0")
        info = site_packages / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        requires = "".join(f"Requires-Dist: {req}\n" for req in project.get("dependencies", []))
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{requires}")
        (info / "INSTALLER").write_text("benchmarks/engines.py\n")
        groups = {**project.get("entry-points", {}), "console_scripts": project.get("scripts", {})}
        (info / "entry_points.txt").write_text("".join(
            f"[{group}]\n" + "".join(f"{key} = {value}\n" for key, value in points.items()) + "\n"
            for group, points in groups.items() if points))  # fmt: skip
        for script, target in project.get("scripts", {}).items():
            module, _, function = target.partition(":")
            path = bin_dir / script
            path.write_text(f"#!{bin_dir / 'python'}\nimport sys\nfrom {module} import {function}\n"
                            f"sys.exit({function}())\n")  # fmt: skip
            path.chmod(0o755)


def make_side(role: str, rev: str, work: Path) -> Side:
    if rev == WORKTREE:
        changed = len(git("status", "--porcelain").splitlines())
        commit = f"{git('rev-parse', '--short', 'HEAD')} + {changed} changed files"
        side = Side(role, rev, commit, ROOT, work / role / "venv")
    else:
        commit = git("rev-parse", "--verify", "--short", f"{rev}^{{commit}}")
        side = Side(role, rev, commit, materialise(commit, work / role / "tree"), work / role / "venv")
    venv.EnvBuilder(with_pip=False, symlinks=True).create(side.home)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site_packages = side.home / "lib" / version / "site-packages"
    install_tree(side.tree, site_packages, side.home / "bin")
    link_dependencies(site_packages)
    return side


def environment(side: Side) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH")}
    env["VIRTUAL_ENV"] = str(side.home)
    env["PATH"] = os.pathsep.join([str(side.home / "bin"), env.get("PATH", "")])
    return env


# ------------------------------------------------------------------ where each side's crew comes from

PROBE = '''
import json, sys
from importlib.metadata import entry_points

def where():
    import crew_core, crew_local
    return {"crew_core": crew_core.__file__, "crew_local": crew_local.__file__, "python": sys.executable}

from crew_core import Crew
plugins = {}
for ep in entry_points(group="crew"):
    ep.load()
    plugins[ep.name] = sys.modules[ep.module].__file__
with Crew(store="local", worker_classes=["subprocess"]) as crew:
    crew.recruit(workers=1)
    crew.send(where)
    worker = crew.receive(timeout=120).get()
print(json.dumps({"controller": where(), "worker": worker, "plugins": plugins}))
'''


def probe(side: Side, cwd: Path) -> None:
    """Print where the side's crew is imported from, in the controller and in a worker; stop if
    any of it is outside the side's tree."""
    script = cwd.parent / "probe" / "probe.py"
    script.parent.mkdir(exist_ok=True)
    script.write_text(PROBE)
    out = subprocess.run([str(side.python), str(script)], cwd=cwd, env=environment(side), capture_output=True,
                         text=True, timeout=300)  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"probe of {side.label} failed:\n{out.stderr[-3000:]}")
    found = json.loads(out.stdout.strip().splitlines()[-1])
    tree = os.path.realpath(side.tree)
    paths = [found["controller"]["crew_core"], found["controller"]["crew_local"], found["worker"]["crew_core"],
             found["worker"]["crew_local"], *found["plugins"].values()]  # fmt: skip
    strays = [p for p in paths if os.path.commonpath([os.path.realpath(p), tree]) != tree]
    if found["worker"]["python"] != str(side.python):
        strays.append(f"worker's interpreter {found['worker']['python']}")
    print(f"{side.label}: {side.commit}, tree {side.tree}")
    print(f"  controller: crew_core from {found['controller']['crew_core']}")
    print(f"              crew_local from {found['controller']['crew_local']}")
    print(f"  worker job: crew_core from {found['worker']['crew_core']} (python {found['worker']['python']})")
    print(f"              crew_local from {found['worker']['crew_local']}")
    if strays:
        raise SystemExit(f"{side.label} imports crew from outside its tree: {strays}")
    print(f"  crew entry points: {', '.join(sorted(found['plugins']))}, all from the tree")


# ------------------------------------------------------------------ headline figures of each script

HIGHER, LOWER, INFO = "higher", "lower", ""
NUMBER = r"(-?[\d.]+|nan|inf)"
Figures = dict[str, tuple[float, str]]  # label: (value, which way is better)


THROUGHPUT = [  # (pattern, one (label, better) per number in it; "" drops a number)
    (r"crew \(2 subprocess workers\)\s+{N} jobs/s", ("jobs/s, 2 subprocess workers", HIGHER)),
    (r"crew \(2 executor workers\)\s+{N} jobs/s", ("jobs/s, 2 executor workers", HIGHER)),
    (r"ProcessPoolExecutor\(2\)\s+{N} jobs/s", ("jobs/s, ProcessPoolExecutor (control)", HIGHER)),
    (r"ratio crew/ProcessPoolExecutor\s+{N}x", ("jobs/s ratio crew/pool", HIGHER)),
    (r"^\s+crew\s+p50\s+{N} ms\s+p95\s+{N} ms", ("round trip p50 ms", LOWER), ("round trip p95 ms", LOWER)),
    (r"^\s+ProcessPoolExecutor\(1\)\s+p50\s+{N} ms\s+p95\s+{N} ms",
     ("round trip p50 ms, pool (control)", LOWER), ("round trip p95 ms, pool (control)", LOWER)),
    (r"ratio crew/ProcessPoolExecutor p50 {N}x", ("round trip p50 ratio crew/pool", LOWER)),
    (r"signing: {N} µs", ("signing µs per job", LOWER)),
    (r"signing beside: {N} µs", ("signing µs per job, local worker", LOWER)),
    (r"import crew_core: {N} ms", ("import crew_core ms", LOWER)),
]  # fmt: skip
SEND_LATENCY = [
    *((rf"{line}\s+send all\s+{{N}} s \(\s*{{N}} µs each\)\s+all back\s+{{N}} s\s+RSS {{N}} MB before, {{N}} MB peak,"
       rf" {{N}} MB after", ("", INFO), (f"send µs per job, {name}", LOWER), (f"all back s, {name}", LOWER),
       ("", INFO), (f"RSS peak MB, {name}", LOWER), (f"RSS after MB, {name}", LOWER))
      for name, line in (("crew", r"crew \(2 subprocess workers\)"), ("pool (control)", r"ProcessPoolExecutor\(2\)"))),
    (r"ratio crew/pool: send {N}x, all back {N}x", ("send ratio crew/pool", LOWER),
     ("all back ratio crew/pool", LOWER)),
    (r"start a worker.*: p50 {N} µs, p99 {N} µs, max {N} ms", ("slow-start send p50 µs", LOWER),
     ("slow-start send p99 µs", LOWER), ("slow-start send max ms", LOWER)),
]  # fmt: skip


def parse_lines(patterns: list[tuple[Any, ...]]) -> Callable[[str], Figures]:
    """A parser that reads each pattern's numbers from a script's output (absent patterns give nothing)."""

    def parse(out: str) -> Figures:
        figures: Figures = {}
        for pattern, *labels in patterns:
            if found := re.search(pattern.replace("{N}", NUMBER), out, re.MULTILINE):
                figures |= {label: (float(found[i + 1]), better) for i, (label, better) in enumerate(labels) if label}
        return figures

    return parse


def parse_store_requests(out: str) -> Figures:
    figures: Figures = {}
    store = ""
    for line in out.splitlines():
        row = re.match(rf"(\w+)\s+(\d+)\s+{NUMBER} s /\s*{NUMBER} s\s+{NUMBER}\s+(\S+)\s+(\S+)", line)
        if row:
            store, at = row[1], f"{row[1]} {row[2]} workers"
            figures[f"efficiency, {at}"] = (float(row[5]), HIGHER)
            if row[6] != "-":
                figures[f"requests per job, {at}"] = (float(row[6]), LOWER)
                figures[f"LIST/s, {at}"] = (float(row[7]), LOWER)
        elif ratio := re.match(rf"\s+LIST rate at (\d+) workers / at (\d+): {NUMBER}x", line):
            figures[f"LIST rate {ratio[1]}/{ratio[2]} workers, {store}"] = (float(ratio[3]), LOWER)
        elif idle := re.match(rf"(\w+)\s+idle worker: {NUMBER} requests per minute", line):
            figures[f"idle worker requests/min, {idle[1]}"] = (float(idle[2]), LOWER)
    return figures


def parse_nested(out: str) -> Figures:
    figures: Figures = {}
    for row in re.finditer(rf"^(\w+)\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}x$", out, re.MULTILINE):
        figures[f"{row[1]}, flat"] = (float(row[2]), LOWER)
        figures[f"{row[1]}, nested"] = (float(row[3]), LOWER)
        figures[f"{row[1]}, ratio flat/nested"] = (float(row[4]), INFO)
    return figures


PARSERS: dict[str, Callable[[str], Figures]] = {
    "throughput": parse_lines(THROUGHPUT), "send_latency": parse_lines(SEND_LATENCY),
    "store_requests": parse_store_requests, "nested": parse_nested,
}  # fmt: skip

# ------------------------------------------------------------------ the runs and the table


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run(side: Side, script: Path, args: list[str], cwd: Path, show: bool, loads: list[float]) -> Figures | None:
    """One run of ``script`` on ``side``: its figures, or None if it failed or printed none of them.
    The 1-minute load averages before and after it are added to ``loads``."""
    before, start = load(), time.perf_counter()
    loads.append(os.getloadavg()[0])
    out = subprocess.run([str(side.python), str(script), *args], cwd=cwd, env=environment(side),
                         capture_output=True, text=True)  # fmt: skip
    loads.append(os.getloadavg()[0])
    print(f"  {script.stem:15} {side.label:24} {time.perf_counter() - start:6.1f} s   load {before} -> {load()}",
          flush=True)  # fmt: skip
    figures = PARSERS[script.stem](out.stdout) if out.returncode == 0 else None
    if show or not figures:
        problem = f"exit code {out.returncode}:\n{out.stderr[-3000:]}" if out.returncode else ""
        print(out.stdout + (problem or ("" if figures else "(no figures found in this output)")))
    return figures or None


def number(value: float) -> str:
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 10 else f"{value:#.3g}"


def table(script: str, old: list[Figures], new: list[Figures]) -> None:
    labels = list(dict.fromkeys(label for runs in (new, old) for figures in runs for label in figures))
    print(f"\n{script} (old runs: {len(old)}, new runs: {len(new)})")
    print(f"  {'figure':42} {'better':>6} {'old median':>11} {'new median':>11} {'new/old':>8}   "
          f"{'old min..max':>17} {'new min..max':>17}")  # fmt: skip
    for label in labels:
        olds = [f[label][0] for f in old if label in f]
        news = [f[label][0] for f in new if label in f]
        better = next(f[label][1] for f in (*old, *new) if label in f)
        o = statistics.median(olds) if olds else float("nan")
        n = statistics.median(news) if news else float("nan")
        ratio = f"{n / o:8.2f}" if o else f"{'-':>8}"
        spans = [f"{number(min(v))}..{number(max(v))}" if v else "-" for v in (olds, news)]
        print(f"  {label:42} {better:>6} {number(o):>11} {number(n):>11} {ratio}   {spans[0]:>17} {spans[1]:>17}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", required=True, help=f"a git revision, or {WORKTREE!r}")
    parser.add_argument("--new", default=WORKTREE, help=f"a git revision, or {WORKTREE!r} (default)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each runs every script on both sides")
    parser.add_argument("--scripts", default=",".join(SCRIPTS), help="comma-separated, of " + ",".join(SCRIPTS))
    parser.add_argument("--quick", action="store_true", help="small sizes, to see that everything runs")
    parser.add_argument("--args", action="append", default=[], metavar="SCRIPT=ARGS",
                        help="extra arguments for one script, e.g. 'throughput=--jobs 3000' (repeatable)")
    parser.add_argument("--show-output", action="store_true", help="print each run's own output")
    ns = parser.parse_args()
    if ns.repeat < 1:
        parser.error("--repeat must be at least 1")
    scripts = ns.scripts.split(",")
    if unknown := set(scripts) - set(SCRIPTS):
        parser.error(f"unknown scripts {sorted(unknown)}; known: {','.join(SCRIPTS)}")
    extra: dict[str, list[str]] = {s: [*BASE_ARGS[s], *shlex.split(QUICK_ARGS[s] if ns.quick else "")] for s in SCRIPTS}
    for item in ns.args:
        script, _, args = item.partition("=")
        if script not in SCRIPTS:
            parser.error(f"--args {item!r}: say which script, e.g. 'throughput=--jobs 3000'")
        extra[script] += shlex.split(args)

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the trees are removed on the way out
    work = Path(tempfile.mkdtemp(prefix="crew-engines-"))
    print(f"temporary folder: {work}")
    try:
        old, new = make_side("old", ns.old, work), make_side("new", ns.new, work)
        cwd = work / "run"  # empty: `python -m crew_core` puts the working directory first on sys.path
        cwd.mkdir()
        for side in (old, new):
            probe(side, cwd)
        paths = {s: new.tree / "benchmarks" / f"{s}.py" for s in scripts}
        if missing := [str(p) for p in paths.values() if not p.exists()]:
            raise SystemExit(f"the new tree has no {missing}")
        print(f"\nload average at start: {load()} ({os.cpu_count()} cores); scripts of the new tree, with:")
        for s in scripts:
            print(f"  {s}: {shlex.join(extra[s])}")
        figures: dict[tuple[str, str], list[Figures]] = {}
        loads: list[float] = []
        failed = 0
        for round_ in range(ns.repeat):
            print(f"round {round_ + 1} of {ns.repeat}", flush=True)
            for s in scripts:
                for side in (old, new) if round_ % 2 == 0 else (new, old):  # neither side always goes first
                    result = run(side, paths[s], extra[s], cwd, ns.show_output, loads)
                    if result is None:
                        failed += 1
                    else:
                        figures.setdefault((side.role, s), []).append(result)
        print(f"\nold = {old.rev} ({old.commit}), new = {new.rev} ({new.commit}); medians of {ns.repeat} interleaved"
              f" rounds; 1-minute load average around the runs {min(loads):.2f}..{max(loads):.2f}"
              f" (median {statistics.median(loads):.2f}) on {os.cpu_count()} cores; at end: {load()}")  # fmt: skip
        for s in scripts:
            table(s, figures.get(("old", s), []), figures.get(("new", s), []))
        if failed:
            raise SystemExit(f"{failed} runs failed (their output is above)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
