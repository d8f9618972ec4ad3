#!/bin/sh
# One-shot `secrets` service of docker-compose.yaml: generates each process secret once into
# the sluice-secrets volume, and the demo provider's credential into the demo-secrets volume.
# An existing file is kept, so a restart never changes the pepper (every stored key hash
# depends on it) or the master key (every sealed provider credential does).
#
# Runs as root in the sluice image (BusyBox sh, head, base64), then hands the files and the
# replicas' state directories to the uid the gateway runs as. Prints names, never values.
set -eu

SECRETS=${SLUICE_SECRETS_DIR:-/run/sluice/secrets}
DEMO=${SLUICE_DEMO_SECRETS_DIR:-/run/sluice/demo}
OWNER=${SLUICE_UID:-65532}:${SLUICE_GID:-65532}

umask 077
mkdir -p "$SECRETS" "$DEMO"

# gen DIR NAME: 32 random bytes, base64 (44 characters: the pepper, the context-token key
# and the admin token need at least 32; the master key must decode to exactly 32 bytes).
gen() {
	f="$1/$2"
	if [ -s "$f" ]; then
		echo "secrets: $2 kept"
		return
	fi
	head -c 32 /dev/urandom | base64 >"$f.tmp"
	mv "$f.tmp" "$f"
	echo "secrets: $2 generated"
}

for name in pepper master_key admin_token fleet_token ctx_key; do
	gen "$SECRETS" "$name"
done
gen "$DEMO" provider_key

chown -R "$OWNER" "$SECRETS" "$DEMO"
chmod 0500 "$SECRETS" "$DEMO"
chmod 0400 "$SECRETS"/* "$DEMO"/*

# The replicas' bootstrap snapshots (--state-dir) live in named volumes that start root-owned.
for d in "$@"; do
	mkdir -p "$d"
	chown "$OWNER" "$d"
	chmod 0700 "$d"
done
echo "secrets: ready"
