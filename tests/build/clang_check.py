#!/usr/bin/env python3
"""Compile every C file of a GCC build again with Clang, as the build
compiles it (same flags, warnings as errors) but without optimisation and
into /dev/null: what keeps the tree building with both compilers (CPU
feature names only GCC knows, warnings only Clang gives, GCC-only flags).

usage: clang_check.py CLANG BUILD_DIR
"""
import concurrent.futures
import json
import os
import shlex
import subprocess
import sys

# arguments that name an output or a dependency file: dropped with their value
WITH_VALUE = {"-o", "-MT", "-MF", "-MQ"}
DROPPED = {"-MD", "-MMD"}
# GCC's own options, which the build gives GCC only
GCC_ONLY = ("-fvect-cost-model=",)


def clang_args(clang, entry):
    argv = entry["arguments"] if "arguments" in entry else shlex.split(entry["command"])
    out = [clang]
    args = iter(argv[1:])
    for a in args:
        if a in WITH_VALUE:
            next(args, None)
        elif a in DROPPED or a.startswith(GCC_ONLY):
            continue
        elif a.startswith("-O"):
            out.append("-O0")
        else:
            out.append(a)
    return out + ["-o", os.devnull]


def check(clang, entry):
    r = subprocess.run(clang_args(clang, entry), cwd=entry["directory"],
                       capture_output=True, text=True)
    return entry["file"], r.returncode, r.stderr


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    clang, build = sys.argv[1], sys.argv[2]
    with open(os.path.join(build, "compile_commands.json")) as f:
        entries = [e for e in json.load(f) if e["file"].endswith(".c")]
    if not entries:
        sys.exit(f"clang_check: no C files in {build}/compile_commands.json")
    failed = 0
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        for name, rc, err in pool.map(lambda e: check(clang, e), entries):
            if rc != 0:
                failed += 1
                print(f"FAIL {name}\n{err}", end="")
    print(f"clang_check: {len(entries) - failed} of {len(entries)} C files compile with {clang}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
