#!/usr/bin/env python3
"""The aws-node image's layout, read from the Dockerfile, for scripts/build-image.sh.

Prints one JSON object describing the Dockerfile's two stages:

  suite         Debian suite of the runtime stage's base (FROM debian:<suite>[-slim])
  slim          whether the base is the -slim variant (docs, man pages, locales dropped)
  bins          the binaries the build stage builds (cargo build ... --bin NAME)
  run           the runtime stage's RUN bodies, continuation lines joined, in order
  packages      the packages those RUN bodies apt-get install
  copies        the runtime stage's COPYs: src (relative to the build context; a build-stage
                file /src/X becomes X), dest, from_build
  workdir, entrypoint
  containerfile the runtime stage without its RUNs and with build-stage COPYs made plain,
                FROM @BASE@ (build-image.sh runs the RUNs in the root filesystem it makes
                and puts the built files at the same relative paths in its context)

Anything build-image.sh could not reproduce faithfully is an error (exit 2): a base that is
not Debian, a RUN after a COPY, a build-stage COPY from outside /src, an unknown stage.

  python3 scripts/image-plan.py [Dockerfile]
"""

import json
import re
import shlex
import sys


class PlanError(Exception):
    pass


def instructions(text):
    """Dockerfile instructions, continuation lines joined with one space, comments dropped."""
    out, cur = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not cur and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            cur += stripped[:-1].rstrip() + " "
        else:
            cur += stripped
            out.append(cur)
            cur = ""
    if cur:
        out.append(cur.strip())
    return out


def stages(steps):
    """[(name, from_image, [instructions after FROM])]."""
    result = []
    for step in steps:
        keyword, _, rest = step.partition(" ")
        if keyword.upper() == "FROM":
            words = rest.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            result.append((name, words[0], []))
        elif result:
            result[-1][2].append(step)
    return result


def apt_packages(run_body):
    """Packages named by `apt-get install` commands of a RUN body."""
    packages = []
    for command in re.split(r"&&|;", run_body):
        words = shlex.split(command)
        if len(words) >= 2 and words[0] == "apt-get" and "install" in words[1:]:
            after = words[words.index("install") + 1:]
            packages += [w for w in after if not w.startswith("-")]
    return packages


def plan(text):
    all_stages = stages(instructions(text))
    if len(all_stages) != 2:
        raise PlanError(f"expected a build stage and a runtime stage, found {len(all_stages)}")
    (build_name, _, build_steps), (_, base, runtime_steps) = all_stages
    match = re.fullmatch(r"debian:([a-z]+)(-slim)?", base)
    if not match:
        raise PlanError(f"the runtime base {base} is not debian:<suite>[-slim]")
    bins = []
    for step in build_steps:
        if step.startswith("RUN ") and "cargo build" in step:
            words = step.split()
            bins += [b for a, b in zip(words, words[1:]) if a == "--bin"]
    result = {
        "suite": match.group(1),
        "slim": match.group(2) is not None,
        "bins": bins,
        "run": [],
        "packages": [],
        "copies": [],
        "workdir": None,
        "entrypoint": None,
    }
    lines = ["FROM @BASE@"]
    for step in runtime_steps:
        keyword, _, rest = step.partition(" ")
        keyword = keyword.upper()
        if keyword == "RUN":
            if result["copies"]:
                raise PlanError("a RUN after a COPY cannot be run in the root filesystem")
            result["run"].append(rest)
            result["packages"] += apt_packages(rest)
            continue
        if keyword == "COPY":
            words = rest.split()
            from_stage = [w[len("--from="):] for w in words if w.startswith("--from=")]
            args = [w for w in words if not w.startswith("--")]
            if len(args) != 2:
                raise PlanError(f"one source and one destination per COPY: {step}")
            src, dest = args
            if from_stage:
                if from_stage != [build_name]:
                    raise PlanError(f"COPY from an unknown stage: {step}")
                if not src.startswith("/src/"):
                    raise PlanError(f"a build-stage COPY from outside /src: {step}")
                src = src[len("/src/"):]
            result["copies"].append({"src": src, "dest": dest, "from_build": bool(from_stage)})
            lines.append(f"COPY {src} {dest}")
            continue
        if keyword == "WORKDIR":
            result["workdir"] = rest.strip()
        elif keyword == "ENTRYPOINT":
            result["entrypoint"] = json.loads(rest)
        lines.append(f"{keyword} {rest}")
    result["containerfile"] = "\n".join(lines) + "\n"
    return result


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "Dockerfile"
    try:
        with open(path, encoding="utf-8") as f:
            print(json.dumps(plan(f.read()), indent=1))
    except (OSError, PlanError, ValueError) as e:
        print(f"image-plan: {path}: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
