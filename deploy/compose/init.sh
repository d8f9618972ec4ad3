#!/bin/sh
# One-shot `init` service of docker-compose.yaml, run once the gateway is healthy: registers
# the demo provider for both wire formats through the admin API (the `sluice` CLI), mints a
# fresh demo virtual key (revoking the previous run's), sends one request through Envoy with
# it, and prints the key with commands to copy. Idempotent: run it again at will.
#
# Runs in the sluice image (BusyBox sh, awk, sed, wget). Every address can be overridden, so
# the same script also runs against a gateway on the host.
set -eu
(set -o pipefail) 2>/dev/null && set -o pipefail

SECRETS=${SLUICE_SECRETS_DIR:-/run/sluice/secrets}
DEMO_KEY_FILE=${DEMO_PROVIDER_KEY_FILE:-/run/sluice/demo/provider_key}
DEMO_URL=${DEMO_PROVIDER_URL:-http://demo-provider:8000}
GATEWAY=${SLUICE_GATEWAY_URL:-http://envoy:8080}       # as this container reaches Envoy
PUBLIC=${SLUICE_PUBLIC_URL:-http://127.0.0.1:8080}     # as the host reaches it
ADMIN_PUBLIC=${SLUICE_ADMIN_PUBLIC_URL:-http://127.0.0.1:9000}
SLUICE=${SLUICE_CLI:-sluice}

export SLUICE_URL="${SLUICE_URL:-http://xds:9000}"
SLUICE_API_TOKEN=$(cat "$SECRETS/admin_token")
export SLUICE_API_TOKEN

# provider NAME TYPE MODELS: create it, or bring an existing one back to the demo settings
# (the credential file may be new, e.g. after `docker compose down` kept the Redis volume).
provider() {
	id=$("$SLUICE" model-providers list | awk -v n="$1" 'NR > 1 && $2 == n { print $1; exit }')
	if [ -n "$id" ]; then
		"$SLUICE" model-providers update "$id" --type "$2" --base-url "$DEMO_URL" \
			--api-key-file "$DEMO_KEY_FILE" --models "$3" >/dev/null
		echo "init: model provider $1 ($id) updated"
	else
		"$SLUICE" model-providers create --name "$1" --type "$2" --base-url "$DEMO_URL" \
			--api-key-file "$DEMO_KEY_FILE" --models "$3" >/dev/null
		echo "init: model provider $1 created: $2 format at $DEMO_URL"
	fi
}

# Resources created without --scope land in ORG:default; make it exist.
if ! "$SLUICE" organizations list | awk 'NR > 1 && $1 == "default" { found = 1 } END { exit !found }'; then
	"$SLUICE" organizations create --id default --name default >/dev/null
	echo "init: organization default created"
fi

provider demo-openai openai gpt-4o-mini,gpt-4o
provider demo-anthropic anthropic claude-sonnet-4-5,claude-haiku-4-5

# A fresh demo key per run, as `sluice serve` does; the previous run's demo keys are revoked.
for id in $("$SLUICE" virtual-keys list | awk 'NR > 1 && $2 == "demo" && $4 == "active" { print $1 }'); do
	"$SLUICE" virtual-keys revoke "$id" >/dev/null
	echo "init: revoked the previous demo key $id"
done
created=$("$SLUICE" virtual-keys create --name demo)
key_id=$(printf '%s\n' "$created" | awk 'NR == 2 { print $1 }')
secret=$(printf '%s\n' "$created" | sed -n 's/^secret: //p')
if [ -z "$secret" ]; then
	echo "init: the admin API returned no secret" >&2
	exit 1
fi

# One request through Envoy, extproc and the dispatcher to the demo provider.
body='{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}'
i=0
until answer=$(wget -q -O - -T 10 --header "Authorization: Bearer $secret" \
	--header "Content-Type: application/json" --post-data "$body" "$GATEWAY/v1/chat/completions" 2>/dev/null); do
	i=$((i + 1))
	if [ "$i" -ge 30 ]; then
		echo "init: the gateway at $GATEWAY did not answer a chat completion with the demo key" >&2
		exit 1
	fi
	sleep 1
done
case $answer in
*'"choices"'*) echo "init: a chat completion through $GATEWAY succeeded" ;;
*)
	echo "init: unexpected answer from $GATEWAY: $answer" >&2
	exit 1
	;;
esac

cat <<EOF

================================================================================
Sluice is ready on $PUBLIC (demo provider: gpt-4o-mini, gpt-4o, claude-sonnet-4-5,
claude-haiku-4-5). Demo virtual key $key_id (shown once, here):

  $secret

Try it:
  curl -s $PUBLIC/v1/chat/completions \\
    -H "Authorization: Bearer $secret" -H "Content-Type: application/json" \\
    -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}'

  curl -s $PUBLIC/v1/messages \\
    -H "x-api-key: $secret" -H "anthropic-version: 2023-06-01" -H "Content-Type: application/json" \\
    -d '{"model":"claude-sonnet-4-5","max_tokens":256,"messages":[{"role":"user","content":"Hello"}]}'

SDKs and coding CLIs:
  export OPENAI_BASE_URL=$PUBLIC/v1 OPENAI_API_KEY=$secret
  export ANTHROPIC_BASE_URL=$PUBLIC ANTHROPIC_API_KEY=$secret

Admin API and CLI (from the host):
  export SLUICE_URL=$ADMIN_PUBLIC SLUICE_API_TOKEN=\$(docker compose exec -T xds cat $SECRETS/admin_token)
  sluice virtual-keys list
Traces: http://127.0.0.1:16686 (Jaeger)
================================================================================
EOF
