#!/usr/bin/env bash
# Compile android_app/bench-core (pure Java, no Android, no Gradle, no network) with the JDK's javac and run
# its JUnit 4 tests. Needs Debian's default-jdk-headless and junit4 (scripts/setup.sh installs both).
#   scripts/build_bench_core.sh            compile + run the JUnit tests
#   BUILD_DIR=/tmp/x scripts/build_bench_core.sh --compile-only   classes only (the cross-language test)
# Prints the classpath of the compiled classes (main + test) as its last line.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=android_app/bench-core/src
BUILD=${BUILD_DIR:-android_app/bench-core/build}
JUNIT=${JUNIT_JAR:-/usr/share/java/junit4.jar}
HAMCREST=${HAMCREST_JAR:-/usr/share/java/hamcrest-core.jar}
for tool in javac java; do
  command -v "$tool" >/dev/null 2>&1 || { echo "error: $tool not found: run scripts/setup.sh (installs default-jdk-headless)" >&2; exit 2; }
done
[ -f "$JUNIT" ] || { echo "error: $JUNIT not found: run scripts/setup.sh (installs junit4)" >&2; exit 2; }
rm -rf "$BUILD/classes" "$BUILD/test-classes"
mkdir -p "$BUILD/classes" "$BUILD/test-classes"
# --release 8: the language level the Android app module compiles bench-core with
javac -encoding UTF-8 -nowarn -Xlint:-options --release 8 -d "$BUILD/classes" $(find "$SRC/main/java" -name '*.java' | sort)
javac -encoding UTF-8 -nowarn -Xlint:-options --release 8 -cp "$BUILD/classes:$JUNIT" -d "$BUILD/test-classes" \
  $(find "$SRC/test/java" -name '*.java' | sort)
CP="$BUILD/classes:$BUILD/test-classes"
if [ "${1:-}" != "--compile-only" ]; then
  tests=$(cd "$SRC/test/java" && find . -name '*Test.java' | sed 's|^\./||; s|\.java$||; s|/|.|g' | sort)
  java -cp "$CP:$JUNIT:$HAMCREST" org.junit.runner.JUnitCore $tests
fi
echo "$CP"
