#!/usr/bin/env bash
# Check that every Debian package name in binder/apt.txt exists in an Ubuntu release, as
# Binder (repo2docker, Ubuntu 24.04 "noble") and Colab install them. apt reads that release's
# package index into a throw-away folder; this machine's own apt state is not touched.
#   scripts/check_apt_names.sh            # noble (Binder's base)
#   scripts/check_apt_names.sh jammy      # Ubuntu 22.04
# Prints each name with the version the release has; exits 1 if one is missing.
# The index's signature is not verified (Ubuntu's keyring is not on a Debian machine): this
# answers "does the name exist", it installs nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
release=${1:-noble}
mirror=${UBUNTU_MIRROR:-http://archive.ubuntu.com/ubuntu}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"/{lists/partial,cache/archives/partial,parts,prefs}
echo "deb [trusted=yes arch=amd64] $mirror $release main universe" > "$tmp/sources.list"
touch "$tmp/status"
opts=(-o Dir::State::Lists="$tmp/lists" -o Dir::State::status="$tmp/status" -o Dir::Cache="$tmp/cache"
      -o Dir::Etc::SourceList="$tmp/sources.list" -o Dir::Etc::SourceParts="$tmp/parts"
      -o Dir::Etc::PreferencesParts="$tmp/prefs" -o APT::Architecture=amd64 -o Acquire::Languages=none)
apt-get "${opts[@]}" -qq update 2>/dev/null || true
missing=0
while read -r name; do
  [ -z "$name" ] && continue
  version=$(apt-cache "${opts[@]}" policy "$name" 2>/dev/null | awk '/Candidate:/ {print $2}')
  if [ -z "$version" ] || [ "$version" = "(none)" ]; then
    echo "MISSING  $name (not in $release main/universe)"
    missing=1
  else
    echo "ok       $name $version ($release)"
  fi
done < binder/apt.txt
exit $missing
