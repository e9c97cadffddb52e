#!/usr/bin/env bash
# Copies Apache Cassandra (cassandra-all) and its runtime jars from Maven Central into
# cassandra/lib, using ~/.m2 as the download cache. Idempotent: does nothing when the jars of the
# pinned version are already there.
#
#   CASSANDRA_VERSION  5.0.x to fetch (default: the one pinned in pom.xml)
#   CASSANDRA_LIB      where the jars go (default: <this dir>/lib)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LIB="${CASSANDRA_LIB:-$HERE/lib}"
VERSION="${CASSANDRA_VERSION:-$(sed -n 's#.*<cassandra.version>\(.*\)</cassandra.version>.*#\1#p' "$HERE/pom.xml")}"

if [ -f "$LIB/cassandra-all-$VERSION.jar" ] && [ -f "$LIB/.complete-$VERSION" ]; then
  echo "fetch: cassandra $VERSION already in $LIB ($(ls "$LIB"/*.jar | wc -l) jars)"
  exit 0
fi
command -v mvn >/dev/null || { echo "fetch: mvn not found (apt-get install maven)" >&2; exit 1; }

# A half-finished earlier run or another version: start the folder over so no stale jar stays on
# the classpath.
rm -rf "$LIB"
mkdir -p "$LIB"
mvn -B -q -f "$HERE/pom.xml" package -Dcassandra.version="$VERSION" -Dcassandra.lib="$LIB"
touch "$LIB/.complete-$VERSION"
echo "fetch: cassandra $VERSION -> $LIB ($(ls "$LIB"/*.jar | wc -l) jars)"
