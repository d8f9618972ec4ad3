// Package mainlib is the sluice command, importable so tests can run it in-process.
package mainlib

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/sluice-gateway/sluice/internal/logging"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/vkey"
)

const usage = `usage: sluice <command> [flags]

commands:
  serve    run the whole gateway (control plane, extproc, dispatcher and Envoy) on this machine
  keygen   mint a virtual key for a config file: prints its id, secret (shown once) and hash

split deployment (secrets from the environment; see each command's -h):
  xds          the control plane: config store, admin API, fleet push, ADS for Envoy
  extproc      the ext_proc server Envoy calls
  dispatcher   the provider-facing server behind Envoy

alongside an existing Envoy or Istio mesh (see each command's -h):
  envoy-config   print the ext_proc filter, clusters and route for an Envoy you run (--format static|ecds, --bootstrap)
  istio          render the EnvoyFilter (and companions) that put Sluice into an Istio ingress gateway

admin commands (the admin API at $SLUICE_URL, token $SLUICE_API_TOKEN; --format json|table):
  virtual-keys       create|get|list|update|rotate|disable|enable|revoke
  model-providers    create|get|list|update|delete
  routing-policies   create|get|list|update|delete
  budgets            create|get|list|update|delete
  organizations, teams, projects, principals, api-tokens
`

// Main runs the command named by args[0]. It returns when the command ends or ctx is done.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command given")
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stdout, stderr)
	case "keygen":
		return keygen(args[1:], stdout, stderr)
	case "xds":
		return runXDS(ctx, args[1:], stdout, stderr)
	case "extproc":
		return runExtproc(ctx, args[1:], stdout, stderr)
	case "dispatcher":
		return runDispatcher(ctx, args[1:], stdout, stderr)
	case "envoy-config":
		return runEnvoyConfig(args[1:], stdout, stderr)
	case "istio":
		return runIstio(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	if n := findNoun(args[0]); n != nil {
		return runNoun(ctx, n, args[1:], stdout, stderr)
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	// Secrets are redacted in the handler itself, whatever a call site passes it.
	return logging.New(w, l, true), nil
}

// pepper reads the key-hashing pepper from --pepper-file, or else SLUICE_PEPPER(_FILE).
// vkey.NewHasher enforces its minimum length.
func pepper(file string) ([]byte, error) {
	if file == "" {
		p, err := stateSecret(envPepper, "", "")
		return []byte(p), err
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("pepper file: %w", err)
	}
	return []byte(strings.TrimSpace(string(b))), nil
}

func keygen(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	pepperFile := fs.String("pepper-file", "", "file holding the pepper (default: $SLUICE_PEPPER)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	p, err := pepper(*pepperFile)
	if err != nil {
		return err
	}
	k, err := newKey(p)
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(map[string]string{"id": k.id, "secret": k.secret, "hash": k.hash})
}

type mintedKey struct{ id, secret, hash string }

func newKey(pepper []byte) (mintedKey, error) {
	h, err := vkey.NewHasher(pepper)
	if err != nil {
		return mintedKey{}, err
	}
	secret, err := vkey.NewSecret()
	if err != nil {
		return mintedKey{}, err
	}
	return mintedKey{id: config.NewID(config.KindVirtualKey), secret: secret, hash: h.Sum(secret).Hex()}, nil
}
