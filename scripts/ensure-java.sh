#!/usr/bin/env bash
# Makes sure a Java 11+ runtime is installed (ScienceWorld runs scienceworld.jar in a JVM).
# Installs a headless JRE with apt-get when none is found and this runs as root on a Debian
# or Ubuntu machine; otherwise says what to install. Used by `cargo xtask setup` and CI.
set -euo pipefail

java_major() {
    # `java -version` prints e.g. `openjdk version "17.0.15" ...` (or "1.8.0_392") on stderr.
    local quoted
    quoted=$(java -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -n1)
    case "$quoted" in
        1.*) echo "$quoted" | cut -d. -f2 ;;
        "") echo 0 ;;
        *) echo "$quoted" | cut -d. -f1 | cut -d- -f1 | cut -d+ -f1 ;;
    esac
}

if command -v java >/dev/null 2>&1 && [ "$(java_major)" -ge 11 ]; then
    echo "java $(java_major) found at $(command -v java)"
    exit 0
fi

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "no Java 11+ runtime; installing openjdk-17-jre-headless with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
    echo "java $(java_major) installed at $(command -v java)"
    exit 0
fi

echo "ScienceWorld needs a Java 11+ runtime and none was found on PATH." >&2
echo "Install one (Debian/Ubuntu: sudo apt-get install openjdk-17-jre-headless), then rerun." >&2
exit 1
