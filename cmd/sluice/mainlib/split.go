package mainlib

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"

	"github.com/sluice-gateway/sluice/internal/counters"
	"github.com/sluice-gateway/sluice/internal/metrics"
	"github.com/sluice-gateway/sluice/xds"
)

// The split deployment: `sluice xds`, `sluice extproc` and `sluice dispatcher` as separate
// processes (the Helm chart's shape). Secrets come from the environment only (a generated
// one would differ between replicas), each as VAR or as VAR_FILE naming a mounted file:
//
//	xds:        SLUICE_PEPPER, SLUICE_MASTER_KEY, SLUICE_ADMIN_TOKEN, SLUICE_FLEET_TOKEN
//	extproc:    SLUICE_PEPPER, SLUICE_CTX_KEY, SLUICE_FLEET_TOKEN
//	dispatcher: SLUICE_MASTER_KEY, SLUICE_CTX_KEY, SLUICE_FLEET_TOKEN (+ provider env vars)
//
// Each prints "sluice <name>: ready" once its listeners are up.

// commonFlags are what every split command takes.
type commonFlags struct {
	logLevel string
	stateDir string // bootstrap snapshots
}

func (c *commonFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.stateDir, "state-dir", "", "where this replica keeps its last config, to serve and restart while xds is down")
}

func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%s: unexpected argument %q", fs.Name(), fs.Arg(0))
	}
	return nil
}

// runComponent runs start, prints the ready line, and waits for ctx.
func runComponent(ctx context.Context, name string, stdout, stderr io.Writer, c commonFlags,
	start func(ctx context.Context, cancel context.CancelFunc, g *group, logger *slog.Logger) error) error {
	logger, err := newLogger(stderr, c.logLevel)
	if err != nil {
		return err
	}
	if c.stateDir != "" {
		if err := os.MkdirAll(c.stateDir, 0o700); err != nil {
			return err
		}
	} else if name != "xds" {
		logger.Warn("no --state-dir: this replica keeps no snapshot, so it cannot restart while xds is down")
	}
	g := &group{}
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		g.wait()
	}()
	if err := start(ctx, cancel, g, logger); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "sluice %s: ready\n", name)
	<-ctx.Done()
	return g.err
}

func runXDS(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c commonFlags
	var redisURL, storeDir, adminListen, fleetListen, adsListen, envoyOTLPEndpoint string
	var p xds.Params
	fs := flag.NewFlagSet("xds", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.register(fs)
	fs.StringVar(&redisURL, "redis-url", os.Getenv("SLUICE_REDIS_URL"), "config store in Redis (a replicated control plane)")
	fs.StringVar(&storeDir, "store-dir", "", "config store in this directory (the embedded file store), when no Redis")
	fs.StringVar(&adminListen, "admin-listen", "127.0.0.1:9000", "admin API address")
	fs.StringVar(&fleetListen, "fleet-listen", "127.0.0.1:9001", "config push to extproc and dispatcher replicas (gRPC)")
	fs.StringVar(&adsListen, "ads-listen", "127.0.0.1:9002", "ADS for Envoy (gRPC)")
	fs.StringVar(&p.ListenAddr, "envoy-listen", "0.0.0.0:8080", "the client listener Envoy is told to open")
	fs.StringVar(&p.ExtProcAddr, "extproc-addr", "unix:/var/run/sluice/extproc.sock", "where Envoy reaches extproc")
	fs.StringVar(&p.DispatcherAddr, "dispatcher-addr", "127.0.0.1:9100", "where Envoy reaches the dispatcher")
	fs.StringVar(&envoyOTLPEndpoint, "otlp-endpoint", os.Getenv("SLUICE_OTLP_ENDPOINT"),
		"collector Envoy exports its own spans to (grpc:// or http:// only; other schemes: Envoy exports none)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if redisURL == "" && storeDir == "" {
		return errors.New("xds: give --redis-url or --store-dir")
	}
	return runComponent(ctx, "xds", stdout, stderr, c, func(ctx context.Context, cancel context.CancelFunc, g *group, logger *slog.Logger) error {
		p.OTLPEndpoint = envoyOTLP(envoyOTLPEndpoint, logger)
		hasher, err := hasherFrom("")
		if err != nil {
			return err
		}
		keyring, err := masterKeyring("")
		if err != nil {
			return err
		}
		adminTk, err := stateSecret(envAdminToken, "", "")
		if err != nil {
			return err
		}
		fleetTk, err := stateSecret(envFleetToken, "", "")
		if err != nil {
			return err
		}
		st, err := openStore(ctx, redisURL, storeDir)
		if err != nil {
			return fmt.Errorf("config store: %w", err)
		}
		g.onStop(func() { _ = st.Close() }) // after the admin API and the fleet push have stopped
		// The gateway counts budgets in the same Redis: the admin API reads what they spent.
		var ctrs counters.Store
		if redisURL != "" {
			if ctrs, err = openCounters(g, logger, redisURL, ""); err != nil {
				return err
			}
		}
		// Metrics on the admin listener (/metrics, unauthenticated like the probes).
		if _, err := startControlPlane(ctx, g, logger, cancel, controlPlaneOptions{store: st, adminListen: adminListen,
			fleetListen: fleetListen, hasher: hasher, keyring: keyring, adminToken: adminTk, fleetToken: fleetTk,
			metrics: metrics.New(), counters: ctrs}); err != nil {
			return err
		}
		xs := xds.NewServer(logger.With("component", "xds"))
		if err := xs.Update(p); err != nil {
			return err
		}
		lis, err := net.Listen("tcp", adsListen)
		if err != nil {
			return err
		}
		g.go_("ads", logger, cancel, func() error { return xs.Serve(ctx, lis) })
		return nil
	})
}

// fleetSource is the source of a replica: the fleet at addr, with its snapshot in stateDir.
func fleetSource(addr, stateDir, name string) (source, error) {
	tok, err := stateSecret(envFleetToken, "", "")
	if err != nil {
		return source{}, err
	}
	host, _ := os.Hostname()
	return source{fleetAddr: addr, fleetToken: tok, stateFile: statePath(stateDir, name+".snapshot.json"),
		nodeID: fmt.Sprintf("%s-%s-%d", name, host, os.Getpid())}, nil
}

func runExtproc(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c commonFlags
	var of obsFlags
	var cf counterFlags
	var listenAddr, healthAddr, xdsAddr, redisURL string
	fs := flag.NewFlagSet("extproc", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.register(fs)
	of.register(fs)
	cf.register(fs)
	fs.StringVar(&redisURL, "redis-url", os.Getenv("SLUICE_REDIS_URL"), redisCountersUsage)
	fs.StringVar(&listenAddr, "listen", "unix:/var/run/sluice/extproc.sock", "ext_proc gRPC address (unix:/path or host:port)")
	fs.StringVar(&healthAddr, "health-listen", "", "HTTP /healthz and /readyz for probes (e.g. :9003); gRPC health is always on the ext_proc address")
	fs.StringVar(&xdsAddr, "xds", "127.0.0.1:9001", "the control plane's fleet address")
	if err := parse(fs, args); err != nil {
		return err
	}
	return runComponent(ctx, "extproc", stdout, stderr, c, func(ctx context.Context, cancel context.CancelFunc, g *group, logger *slog.Logger) error {
		hasher, err := hasherFrom("")
		if err != nil {
			return err
		}
		signer, _, err := ctxKeys("")
		if err != nil {
			return err
		}
		src, err := fleetSource(xdsAddr, c.stateDir, "extproc")
		if err != nil {
			return err
		}
		obs, err := startObservability(ctx, g, logger, cancel, "sluice-extproc", of)
		if err != nil {
			return err
		}
		ctrs, failOpen, err := splitCounters(g, logger, cf, redisURL)
		if err != nil {
			return err
		}
		_, err = startExtproc(ctx, g, logger, cancel, extprocOptions{listen: listenAddr, healthListen: healthAddr,
			hasher: hasher, signer: signer, source: src, obs: obs, counters: ctrs, failOpen: failOpen})
		return err
	})
}

func runDispatcher(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var c commonFlags
	var of obsFlags
	var cf counterFlags
	var bf breakerFlags
	var listenAddr, xdsAddr, providerEnv, redisURL string
	fs := flag.NewFlagSet("dispatcher", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c.register(fs)
	of.register(fs)
	cf.register(fs)
	bf.register(fs)
	fs.StringVar(&redisURL, "redis-url", os.Getenv("SLUICE_REDIS_URL"), redisCountersUsage)
	fs.StringVar(&providerEnv, "provider-env", defaultProviderEnv, "environment variables a provider's credentials_env may name")
	fs.StringVar(&listenAddr, "listen", "127.0.0.1:9100", "dispatcher HTTP address (only Envoy may reach it)")
	fs.StringVar(&xdsAddr, "xds", "127.0.0.1:9001", "the control plane's fleet address")
	if err := parse(fs, args); err != nil {
		return err
	}
	return runComponent(ctx, "dispatcher", stdout, stderr, c, func(ctx context.Context, cancel context.CancelFunc, g *group, logger *slog.Logger) error {
		keyring, err := masterKeyring("")
		if err != nil {
			return err
		}
		_, verifier, err := ctxKeys("")
		if err != nil {
			return err
		}
		src, err := fleetSource(xdsAddr, c.stateDir, "dispatcher")
		if err != nil {
			return err
		}
		obs, err := startObservability(ctx, g, logger, cancel, "sluice-dispatcher", of)
		if err != nil {
			return err
		}
		ctrs, failOpen, err := splitCounters(g, logger, cf, redisURL)
		if err != nil {
			return err
		}
		_, _, err = startDispatcher(ctx, g, logger, cancel, dispatcherOptions{listen: listenAddr, verifier: verifier,
			keyring: keyring, getenv: os.Getenv, providerEnv: splitList(providerEnv), source: src, obs: obs,
			counters: ctrs, failOpen: failOpen, breakers: bf.config()})
		return err
	})
}

const redisCountersUsage = "Redis holding budget spend and rate-limit windows, shared by every extproc and dispatcher replica; without it, keys under a budget or rate limit meet --counter-failure-mode"

// splitCounters opens a split replica's counter store: Redis, shared by the fleet. A replica
// has no local store: counting per replica would let each one spend the whole budget.
func splitCounters(g *group, logger *slog.Logger, cf counterFlags, redisURL string) (counters.Store, bool, error) {
	failOpen, err := cf.failOpen()
	if err != nil {
		return nil, false, err
	}
	if redisURL == "" {
		logger.Warn("no --redis-url: budgets and rate limits cannot be counted; requests under them meet --counter-failure-mode", "mode", cf.failureMode)
		return nil, failOpen, nil
	}
	st, err := openCounters(g, logger, redisURL, "")
	return st, failOpen, err
}
