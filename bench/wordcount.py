#!/usr/bin/env python3
"""Word-count peer benchmark: swd vs timely dataflow vs one thread (standard library only).

Workload: the "wordcount-zipf" corpus of `swd gen wordcount` (Zipf over 100,000 words, lines of
10 words, dealt to --partitions files), cached under --cache-dir and reused when it was made with
the same --words/--partitions/--seed. A new corpus's expected.tsv is checked against a count made
here (collections.Counter over the input), independently of swd.

Systems, run in turn in every round (so slow drift of the machine hits all of them alike):
  swd             target/release/swd local --workers 2 --job wordcount --input IN --output OUT
                  --partitions P   (reported "not available" when swd has no --job yet, or does
                  not build)
  single-thread   target/release/single-thread --input IN --output OUT: one thread, one hash map
                  (the per-core limit; "2 x single" is what two perfectly scaling cores would do)
  2x-single       2 single-thread processes side by side, each on every 2nd file (--shard i/2),
                  not merged (the checker adds their counts up): the wall time of 2 perfectly
                  scaling cores with no exchange, as this machine gives them right now
  timely          2 processes of target/release/timely-wordcount, one worker thread each, talking
                  TCP on two free 127.0.0.1 ports; the sockets are set up by timely-wordcount
                  itself (polling every 5 ms) and handed to timely; every worker sends its
                  pre-aggregated counts after each file
  timely-end      (informational) timely with --flush end: each worker sends its pre-aggregated
                  counts once, after its last file, instead of after every file
  timely-stock    (informational) timely with --stock-connect: timely's own
                  CommunicationConfig::Cluster connection setup, whose connect/accept loops sleep
                  1 s while a peer is not up (skip both variants with --no-variants)

Measured per run:
  time     wall clock from starting the first process to the exit of the last one, end to end
           (start-up, reading, counting, exchange, writing the output)
  words/s  the corpus's word count / time; the table shows the median over rounds
  CPU s    user + system CPU time of all the run's processes (median over rounds): less
           sensitive than wall time to other load on the machine
  other load  cores kept busy by everything else on the machine during the run (/proc/stat
           busy time minus the run's own CPU time, over its wall time; median over rounds):
           on a shared 2-core machine, wall times are only comparable when this is near 0
           (coarse for runs shorter than a second: /proc/stat counts in 10 ms ticks)
  memory   the sum over all processes of the run of each process's own peak resident set
           (an upper bound of the simultaneous total, since the peaks need not coincide).
           Each process started here runs under /usr/bin/time -f %M (GNU time), which reports
           its peak exactly. Processes that a program starts itself (swd local's coordinator and
           workers) are sampled every 50 ms from /proc/PID/status (VmHWM, the process's own peak;
           growth in the last <50 ms of a life may be missed); GNU time's %M for swd, a max over
           its whole tree, is a floor. Without GNU time, os.wait4's ru_maxrss is used, which on
           Linux also counts this Python script's own RSS at the moment of the spawn, and so
           over-estimates small programs. RUSAGE_CHILDREN is not used: its maxrss is a maximum
           over children, not a sum. The table shows the largest value over rounds.
Every output is checked against expected.tsv: the output folder's files whose names do not start
with "." or "_" are concatenated, their lines sorted bytewise and compared. A mismatch or a failed
run is printed loudly and makes the script exit 1 (after the table).

Quick run:  python3 bench/wordcount.py --words 2000000 --rounds 1
Full run:   python3 bench/wordcount.py            (20,000,000 words, 8 partitions, 3 rounds)
"""
import argparse
import collections
import json
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
def log(msg):
    print(msg, flush=True)


def check_corpus(corpus):
    """Counts the words of the corpus's input here and compares with its expected.tsv and words.txt."""
    counts = collections.Counter()
    input_dir = os.path.join(corpus, "input")
    for name in sorted(os.listdir(input_dir)):
        with open(os.path.join(input_dir, name), "rb") as f:
            for line in f:
                counts.update(line.split())
    expected = b"".join(b"%s\t%d\n" % (w, c) for w, c in sorted(counts.items()))
    with open(os.path.join(corpus, "expected.tsv"), "rb") as f:
        if f.read() != expected:
            sys.exit("corpus: %s/expected.tsv differs from the input's word count" % corpus)
    with open(os.path.join(corpus, "words.txt")) as f:
        if int(f.read().split()[0]) != sum(counts.values()):
            sys.exit("corpus: %s/words.txt differs from the input's number of words" % corpus)


def ensure_corpus(args, swd):
    """Returns the corpus folder, generating it with `swd gen` unless a complete one with the same
    parameters exists."""
    params = {"words": args.words, "partitions": args.partitions, "seed": args.seed}
    name = "w%d-p%d-s%d" % (args.words, args.partitions, args.seed)
    corpus = os.path.join(args.cache_dir, name)
    stamp = os.path.join(corpus, "params.json")
    if os.path.isfile(stamp):
        with open(stamp) as f:
            if json.load(f) == params:
                log("corpus: reusing %s" % corpus)
                return corpus
    if not os.path.isfile(swd):
        sys.exit("corpus: %s not found: the corpus is made by `swd gen` (build swd first)" % swd)
    tmp = corpus + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(corpus, ignore_errors=True)
    cmd = [swd, "gen", "wordcount", "--words", str(args.words), "--files", str(args.partitions),
           "--seed", str(args.seed), "--out", tmp]
    log("corpus: generating: %s" % shlex.join(cmd))
    subprocess.run(cmd, check=True)
    log("corpus: checking expected.tsv against a count of the input")
    check_corpus(tmp)
    with open(os.path.join(tmp, "params.json"), "w") as f:
        json.dump(params, f)
    os.rename(tmp, corpus)
    return corpus


def build(args):
    """Builds the binaries; returns (swd_ok, reason)."""
    if args.no_build:
        return True, ""
    cmd = ["cargo", "build", "--release", "-p", "timely-wordcount"]
    if not args.swd:
        cmd[3:3] = ["-p", "swd"]
    log("build: %s" % shlex.join(cmd))
    t0 = time.time()
    r = subprocess.run(cmd, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    if r.returncode == 0:
        log("build: done in %.1f s" % (time.time() - t0))
        return True, ""
    tail = "\n".join(r.stderr.strip().splitlines()[-20:])
    log("build: FAILED with swd included:\n%s\nbuild: retrying without swd" % tail)
    subprocess.run(["cargo", "build", "--release", "-p", "timely-wordcount"], cwd=ROOT, check=True)
    return False, "swd did not build"


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


# ---- process-tree memory sampling -------------------------------------------------------------

def children_of(pid):
    kids = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                kids.extend(int(x) for x in f.read().split())
    except OSError:
        pass
    return kids


def vm_hwm_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


class TreeSampler:
    """Records the peak RSS (VmHWM) of every descendant of the given roots, every `interval` s."""

    def __init__(self, roots, interval=0.05):
        self.roots, self.interval = list(roots), interval
        self.peak = {}  # pid -> KiB, for processes below the roots
        self.root_peak = {}  # root pid -> its own VmHWM
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _sample(self):
        for root in self.roots:
            v = vm_hwm_kib(root)
            if v is not None:
                self.root_peak[root] = max(v, self.root_peak.get(root, 0))
            todo, seen = children_of(root), set()
            while todo:
                pid = todo.pop()
                if pid in seen:
                    continue
                seen.add(pid)
                v = vm_hwm_kib(pid)
                if v is not None:
                    self.peak[pid] = max(v, self.peak.get(pid, 0))
                todo.extend(children_of(pid))

    def _run(self):
        while not self._stop.wait(self.interval):
            self._sample()

    def stop(self):
        self._stop.set()
        self._thread.join()


# ---- running one system -----------------------------------------------------------------------

class Run:
    def __init__(self, seconds, rss_kib, cpu, others, ok, note=""):
        self.seconds, self.rss_kib, self.cpu, self.others = seconds, rss_kib, cpu, others
        self.ok, self.note = ok, note


GNU_TIME = "/usr/bin/time"
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def machine_busy_seconds():
    """CPU seconds the whole machine has spent busy (all but idle and iowait), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal (guest time is already in user)
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


def have_gnu_time():
    try:
        r = subprocess.run([GNU_TIME, "-f", "%M", "true"], capture_output=True, text=True, timeout=30)
        return r.returncode == 0 and r.stderr.strip().splitlines()[-1].isdigit()
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return False


def read_time_file(path):
    """(peak RSS KiB, CPU s) from the "%M %U %S" line GNU time wrote last into `path` (earlier
    lines may note an exit status)."""
    try:
        with open(path) as f:
            lines = [x.strip() for x in f if x.strip()]
        rss, user, system = lines[-1].split()
        return int(rss), float(user) + float(system)
    except (OSError, ValueError, IndexError):
        return 0, 0.0


def run_processes(cmds, workdir, sample_tree, use_time):
    """Starts `cmds` at once, waits for all; returns (seconds, summed peak RSS KiB, CPU seconds,
    other load in cores, number of processes seen, failures). CPU seconds: user + system time of all processes (children
    included)."""
    outs, procs, time_files = [], [], []
    busy0 = machine_busy_seconds()
    t0 = time.perf_counter()
    for i, cmd in enumerate(cmds):
        out = open(os.path.join(workdir, "proc%d.log" % i), "w")
        outs.append(out)
        if use_time:
            time_files.append(os.path.join(workdir, "proc%d.maxrss" % i))
            cmd = [GNU_TIME, "-f", "%M %U %S", "-o", time_files[-1]] + cmd
        procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
    sampler = TreeSampler([p.pid for p in procs]) if sample_tree else None
    maxrss, cpu, failures = {}, 0.0, []
    pending = {p.pid: (i, p) for i, p in enumerate(procs)}
    while pending:
        pid, status, usage = os.wait4(-1, 0)
        if pid not in pending:
            continue
        i, p = pending.pop(pid)
        p.returncode = os.waitstatus_to_exitcode(status)
        # Without GNU time: ru_maxrss of a child started from this (large) Python process,
        # which Linux raises to this process's own peak RSS at the exec: an over-estimate.
        if use_time:
            maxrss[i], used = read_time_file(time_files[i])
        else:
            maxrss[i], used = usage.ru_maxrss, usage.ru_utime + usage.ru_stime
        cpu += used
        if p.returncode != 0:
            failures.append((i, p.returncode))
            for _, q in pending.values():  # do not wait for the peers of a failed process forever
                q.kill()
    seconds = time.perf_counter() - t0
    busy1 = machine_busy_seconds()
    # Cores kept busy by everything else on the machine (other users, steal) during the run.
    others = None if busy0 is None or busy1 is None else max(0.0, (busy1 - busy0 - cpu) / seconds)
    for out in outs:
        out.close()
    if sampler is not None:
        sampler.stop()
    nprocs = len(procs) + (len(sampler.peak) if sampler is not None else 0) - (
        len(procs) if use_time and sampler is not None and sampler.peak else 0)
    if use_time and sampler is not None and sampler.peak:
        # Below each GNU time: the program and whatever it starts, each sampled on its own.
        # %M (a max over that tree, exact) is a floor for the sum.
        rss = max(sum(sampler.peak.values()), max(maxrss.values()))
    elif sampler is not None and sampler.peak:
        rss = sum(sampler.root_peak.get(pid, 0) for pid in sampler.roots) + sum(sampler.peak.values())
        rss = max(rss, max(maxrss.values()))
    else:
        rss = sum(maxrss.values())
    return seconds, rss, cpu, others, nprocs, failures


def log_tail(workdir, n=15):
    lines = []
    for name in sorted(os.listdir(workdir)):
        if name.endswith(".log"):
            with open(os.path.join(workdir, name), errors="replace") as f:
                tail = f.read().splitlines()[-n:]
            lines.append("--- %s (last %d lines)" % (name, len(tail)))
            lines.extend(tail)
    return "\n".join(lines)


def verify(outdir, expected_lines, merge=False):
    """Compares the sorted lines of the output files with expected.tsv; returns (ok, detail).
    With `merge`, the counts of a word in several lines are added up first."""
    if not os.path.isdir(outdir):
        return False, "no output folder %s" % outdir
    data = []
    names = sorted(n for n in os.listdir(outdir)
                   if not n.startswith((".", "_")) and os.path.isfile(os.path.join(outdir, n)))
    for name in names:
        with open(os.path.join(outdir, name), "rb") as f:
            data.extend(f.read().splitlines())
    if merge:
        sums = {}
        try:
            for line in data:
                word, count = line.split(b"\t")
                sums[word] = sums.get(word, 0) + int(count)
        except ValueError:
            return False, "malformed line %r" % line
        data = [b"%s\t%d" % kv for kv in sums.items()]
    data.sort()
    if data == expected_lines:
        return True, "%d lines in %d files" % (len(data), len(names))
    got, want = set(data), set(expected_lines)
    missing, extra = sorted(want - got), sorted(got - want)
    detail = ["files: %s" % names, "lines: got %d, expected %d" % (len(data), len(expected_lines)),
              "missing (%d): %s" % (len(missing), [m.decode(errors="replace") for m in missing[:5]]),
              "unexpected (%d): %s" % (len(extra), [e.decode(errors="replace") for e in extra[:5]])]
    if len(data) != len(got):
        detail.append("duplicate lines in the output: %d" % (len(data) - len(got)))
    return False, "\n".join(detail)


class System:
    def __init__(self, name, make_cmds, sample_tree=False, available=True, reason="", merge=False):
        self.name, self.make_cmds, self.sample_tree, self.merge = name, make_cmds, sample_tree, merge
        self.available, self.reason = available, reason
        self.runs, self.example = [], None

    def run(self, workdir, expected_lines, input_dir, use_time):
        outdir = os.path.join(workdir, "out")
        shutil.rmtree(workdir, ignore_errors=True)
        os.makedirs(workdir)
        cmds = self.make_cmds(input_dir, outdir)
        self.example = " & ".join(shlex.join(c) for c in cmds) if len(cmds) > 1 else shlex.join(cmds[0])
        seconds, rss, cpu, others, nprocs, failures = run_processes(cmds, workdir, self.sample_tree, use_time)
        if failures:
            msg = "FAILED: %s: process(es) %s exited non-zero\n%s" % (self.name, failures, log_tail(workdir))
            self.runs.append(Run(seconds, rss, cpu, others, False, msg))
            log("  %-14s %7.2f s  FAILED" % (self.name, seconds))
            log(msg)
            return
        ok, detail = verify(outdir, expected_lines, self.merge)
        status = "OK" if ok else "MISMATCH"
        log("  %-14s %7.2f s  CPU %6.2f s  peak RSS %7.1f MiB (%d proc)  other load %s cores  %s (%s)"
            % (self.name, seconds, cpu, rss / 1024, nprocs, fmt_load(others), status,
               detail.splitlines()[0]))
        if not ok:
            log("!" * 78 + "\nMISMATCH: output of %s differs from expected.tsv\n%s\n" % (self.name, detail)
                + "!" * 78)
        self.runs.append(Run(seconds, rss, cpu, others, ok, "" if ok else "MISMATCH: " + detail))
        shutil.rmtree(outdir, ignore_errors=True)


def swd_supports_job(swd):
    if not os.path.isfile(swd):
        return False, "%s not built" % swd
    try:
        r = subprocess.run([swd, "local", "--help"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, "swd local --help: %s" % e
    if "--job" not in r.stdout + r.stderr:
        return False, "swd local has no --job option yet"
    return True, ""


def fmt_load(x):
    return "?" if x is None else "%.1f" % x


def fmt_rate(x):
    return "%.2f M" % (x / 1e6)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--words", type=int, default=20_000_000, help="corpus size in words (default 20,000,000)")
    ap.add_argument("--partitions", type=int, default=8, help="input files and swd partitions (default 8)")
    ap.add_argument("--many-partitions", type=int, default=1000,
                    help="also run swd with this many partitions on the same input (0: not)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--rounds", type=int, default=3, help="rounds; each runs every system once (default 3)")
    ap.add_argument("--workers", type=int, default=2, help="swd workers / timely processes (default 2)")
    ap.add_argument("--cache-dir", default=os.path.join(ROOT, "target", "bench-corpus"))
    ap.add_argument("--work-dir", default=os.path.join(ROOT, "target", "bench-wordcount"),
                    help="scratch folder for outputs and logs")
    ap.add_argument("--no-build", action="store_true", help="use the binaries already in target/release")
    ap.add_argument("--swd", help="swd binary to run (default: target/release/swd, built here)")
    ap.add_argument("--no-checkpoints", action="store_true",
                    help="skip the swd rows with checkpoints (every 1 s, and every 100 ms)")
    ap.add_argument("--no-variants", action="store_true",
                    help="skip the informational timely variants (timely-end, timely-stock)")
    args = ap.parse_args()
    args.cache_dir = os.path.abspath(args.cache_dir)

    swd_built, swd_reason = build(args)
    release = os.path.join(ROOT, "target", "release")
    swd = os.path.abspath(args.swd) if args.swd else os.path.join(release, "swd")

    corpus = ensure_corpus(args, swd)
    input_dir = os.path.join(corpus, "input")
    with open(os.path.join(corpus, "words.txt")) as f:
        total_words = int(f.read().split()[0])
    with open(os.path.join(corpus, "expected.tsv"), "rb") as f:
        expected_lines = f.read().splitlines()
    input_bytes = sum(os.path.getsize(os.path.join(input_dir, n)) for n in os.listdir(input_dir))
    single = os.path.join(release, "single-thread")
    timely = os.path.join(release, "timely-wordcount")
    swd_ok, reason = swd_supports_job(swd) if swd_built else (False, swd_reason)
    n = args.workers

    def swd_cmds(inp, out, extra=(), partitions=None):
        return [[swd, "local", "--workers", str(n), "--job", "wordcount", "--input", inp, "--output", out,
                 "--partitions", str(partitions or args.partitions)] + list(extra)]

    def swd_checkpointed(interval):
        return lambda inp, out: swd_cmds(inp, out, ["--checkpoint-interval", interval])

    def swd_many_partitions(inp, out):
        # The same job on the same input over --many-partitions partitions.
        return swd_cmds(inp, out, partitions=args.many_partitions)

    def single_cmds(inp, out):
        return [[single, "--input", inp, "--output", out]]

    def sharded_single_cmds(inp, out):
        return [[single, "--input", inp, "--output", out, "--shard", "%d/%d" % (i, n)] for i in range(n)]

    def timely_cmds(extra):
        def make(inp, out):
            hosts = ",".join("127.0.0.1:%d" % p for p in free_ports(n))
            return [[timely, "--input", inp, "--output", out, "--process", str(i), "--processes", str(n),
                     "--hosts", hosts] + extra for i in range(n)]
        return make

    systems = [
        System("swd", swd_cmds, sample_tree=True, available=swd_ok, reason=reason),
        System("single-thread", single_cmds),
        System("%dx-single" % n, sharded_single_cmds, merge=True),
        System("timely", timely_cmds([])),
    ]
    if not args.no_checkpoints:
        for interval in ("1s", "100ms"):
            systems.append(System("swd+ckpt-" + interval, swd_checkpointed(interval), sample_tree=True,
                                  available=swd_ok, reason=reason))
    if args.many_partitions:
        systems.append(System("swd-P%d" % args.many_partitions, swd_many_partitions, sample_tree=True,
                              available=swd_ok, reason=reason))
    if not args.no_variants:
        systems.append(System("timely-end", timely_cmds(["--flush", "end"])))
        systems.append(System("timely-stock", timely_cmds(["--stock-connect"])))
    for s in systems:
        if not s.available:
            log("%s: not available (%s)" % (s.name, s.reason))
    use_time = have_gnu_time()
    log("memory: %s" % ("GNU time %M per process" if use_time else
                        "no GNU time at %s: os.wait4 ru_maxrss (over-estimates: includes this "
                        "script's own RSS)" % GNU_TIME))

    log("corpus: %s: %d words, %.1f MiB in %d files; %d cores; %d rounds"
        % (corpus, total_words, input_bytes / 2**20, len(os.listdir(input_dir)), os.cpu_count(), args.rounds))
    for r in range(args.rounds):
        log("round %d/%d" % (r + 1, args.rounds))
        for s in systems:
            if s.available:
                s.run(os.path.join(args.work_dir, s.name), expected_lines, input_dir, use_time)

    # ---- report ----
    rates = {}
    log("")
    log("word count, %d words (%.1f MiB, %d files), %d rounds, %d cores (os.cpu_count())"
        % (total_words, input_bytes / 2**20, args.partitions, args.rounds, os.cpu_count()))
    header = "%-14s %12s %10s %14s %10s %14s %12s  %s" % (
        "system", "words/s", "median s", "min..max s", "CPU s", "peak RSS MiB", "other load", "verified")
    log(header)
    log("-" * len(header))
    failed = []
    for s in systems:
        if not s.available:
            log("%-14s %12s  (%s)" % (s.name, "not available", s.reason))
            continue
        good = [x for x in s.runs if x.ok]
        bad = [x for x in s.runs if not x.ok]
        failed.extend((s.name, x.note) for x in bad)
        if not good:
            log("%-14s %12s  (all %d runs failed or mismatched)" % (s.name, "FAILED", len(s.runs)))
            continue
        secs = [x.seconds for x in good]
        med = statistics.median(secs)
        rates[s.name] = total_words / med
        loads = [x.others for x in good if x.others is not None]
        log("%-14s %12s %10.2f %14s %10.2f %14.1f %12s  %d/%d OK" % (
            s.name, fmt_rate(rates[s.name]), med, "%.2f..%.2f" % (min(secs), max(secs)),
            statistics.median(x.cpu for x in good), max(x.rss_kib for x in good) / 1024,
            fmt_load(statistics.median(loads) if loads else None), len(good), len(s.runs)))
    log("")
    side = "%dx-single" % n
    ratios = [("swd", "timely", 1), ("swd", "single-thread", n), ("swd", side, 1),
              ("timely", "single-thread", n), ("timely", side, 1),
              ("swd+ckpt-1s", "swd", 1), ("swd+ckpt-100ms", "swd", 1), ("swd+ckpt-1s", "timely", 1),
              ("swd-P%d" % args.many_partitions, "swd", 1)]
    for a, b, k in ratios:
        label = "%s / %s" % (a, b if k == 1 else "(%d x %s)" % (k, b))
        if a in rates and b in rates:
            log("%-36s = %.2f" % (label, rates[a] / (k * rates[b])))
        elif a == "swd" and b == "timely":
            log("%-36s = n/a (swd %s)" % (label, "failed" if systems[0].available else "not available"))
    log("")
    log("commands (run from %s):" % ROOT)
    for s in systems:
        log("  %-14s %s" % (s.name, s.example or shlex.join(s.make_cmds(input_dir, "OUT")[0])))
    log("  %-14s %s" % ("driver", shlex.join([sys.executable] + sys.argv)))
    if failed:
        log("\n" + "!" * 78)
        for name, note in failed:
            log("%s: %s" % (name, note.splitlines()[0] if note else "failed"))
        log("!" * 78)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
