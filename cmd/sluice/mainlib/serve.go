package mainlib

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/sluice-gateway/sluice/envoy"
	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/ctxtoken"
	"github.com/sluice-gateway/sluice/internal/secretbox"
	"github.com/sluice-gateway/sluice/internal/vkey"
	"github.com/sluice-gateway/sluice/xds"
)

type serveFlags struct {
	listen, dispatcherListen, xdsListen, envoyAdmin string
	adminListen, redisURL, providerEnv              string
	configFile, pepperFile, envoyBin, stateDir      string
	logLevel                                        string
	demo                                            bool
	envoyConcurrency                                int
	obs                                             obsFlags
	counters                                        counterFlags
	breakers                                        breakerFlags
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f serveFlags
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.listen, "listen", "127.0.0.1:8080", "client listener (Envoy)")
	fs.StringVar(&f.adminListen, "admin-listen", "127.0.0.1:9000", "admin API address (what SLUICE_URL names)")
	fs.StringVar(&f.dispatcherListen, "dispatcher-listen", "127.0.0.1:0", "dispatcher address (loopback; only Envoy calls it)")
	fs.StringVar(&f.xdsListen, "xds-listen", "127.0.0.1:0", "xDS (ADS) gRPC address Envoy is configured from")
	fs.StringVar(&f.envoyAdmin, "envoy-admin", "", "Envoy admin address (default: a free loopback port)")
	fs.StringVar(&f.stateDir, "state-dir", ".sluice", "persistent state: the config store, generated secrets, bootstrap snapshots")
	fs.StringVar(&f.redisURL, "redis-url", os.Getenv("SLUICE_REDIS_URL"), "keep the config store and the budget and rate-limit counters in Redis instead of the state directory (replicas share them)")
	fs.StringVar(&f.configFile, "config", "", "serve a static config file (providers and hashed keys) instead of the control plane; needs the pepper")
	fs.StringVar(&f.pepperFile, "pepper-file", "", "with --config: file holding the key-hashing pepper (default: $SLUICE_PEPPER)")
	fs.StringVar(&f.providerEnv, "provider-env", defaultProviderEnv, "environment variables a provider's credentials_env may name")
	fs.StringVar(&f.envoyBin, "envoy", "", "Envoy binary (default: $SLUICE_ENVOY_BIN, PATH, then ./.venv)")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&f.demo, "demo", false, "run a built-in fake provider and print a ready demo key")
	f.obs.register(fs)
	f.counters.register(fs)
	f.breakers.register(fs)
	fs.IntVar(&f.envoyConcurrency, "envoy-concurrency", 0, "Envoy worker threads (default: one per core)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected argument %q", fs.Arg(0))
	}
	if f.demo && f.configFile != "" {
		return errors.New("serve: --demo and --config are exclusive")
	}
	logger, err := newLogger(stderr, f.logLevel)
	if err != nil {
		return err
	}
	return runServe(ctx, f, stdout, stderr, logger)
}

// group owns the goroutines a command starts: every one ends when the components' ctx
// does, and the command returns only after all have and its stop hooks have run.
type group struct {
	wg   sync.WaitGroup
	once sync.Once
	err  error

	mu      sync.Mutex // guards onStop
	onStops []func()
}

// onStop registers f to run after every goroutine has ended, in reverse order of
// registration: what was opened first (the store) closes last.
func (g *group) onStop(f func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.onStops = append(g.onStops, f)
}

func (g *group) go_(name string, logger *slog.Logger, cancel context.CancelFunc, fn func() error) {
	g.wg.Go(func() {
		if err := fn(); err != nil {
			logger.Error("component stopped", "component", name, "err", err)
			g.once.Do(func() { g.err = fmt.Errorf("%s: %w", name, err) })
			cancel()
		}
	})
}

// wait waits for every goroutine, then runs the stop hooks.
func (g *group) wait() {
	g.wg.Wait()
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := len(g.onStops) - 1; i >= 0; i-- {
		g.onStops[i]()
	}
	g.onStops = nil
}

// runServe starts everything, waits for a signal (or a component's failure), then stops in
// layers: Envoy first, so no request arrives at a stopping component; then extproc, the
// dispatcher, the admin API and the fleet push, draining; then the store.
func runServe(sigCtx context.Context, f serveFlags, stdout, stderr io.Writer, logger *slog.Logger) error {
	// Sockets and Envoy's bootstrap live in a private temporary directory: short paths (Unix
	// socket names are limited) and nothing stale after a crash.
	runDir, err := os.MkdirTemp("", "sluice-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(runDir)
	// The components live until Envoy has stopped, not until the signal.
	ctx, cancel := context.WithCancel(context.Background())
	g := &group{}
	defer func() {
		cancel()
		g.wait()
	}()
	// Startup waits end on a signal too.
	startCtx, startCancel := context.WithCancel(ctx)
	defer startCancel()
	defer context.AfterFunc(sigCtx, startCancel)()

	// One signing key per process: extproc and the dispatcher run side by side here.
	signKey := make([]byte, 32)
	_, _ = rand.Read(signKey)
	signer, _ := ctxtoken.NewSigner(signKey)
	verifier, _ := ctxtoken.NewVerifier(signKey)

	extra := map[string]string{} // credentials of the demo provider, by env-style name
	getenv := func(k string) string {
		if v, ok := extra[k]; ok {
			return v
		}
		return os.Getenv(k)
	}
	providerEnv := splitList(f.providerEnv)
	// Budget spend and rate-limit windows: shared by extproc (reserves), the dispatcher
	// (settles) and the admin API (reads).
	failOpen, err := f.counters.failOpen()
	if err != nil {
		return err
	}
	ctrs, err := openCounters(g, logger, f.redisURL, f.stateDir)
	if err != nil {
		return err
	}
	var (
		src, srcDisp source
		hasher       *vkey.Hasher
		keyring      *secretbox.Keyring
		cp           *controlPlane
		adminTk      string
		obs          *observability
	)
	if f.configFile != "" {
		// Static mode: a file, no control plane. Its hashes need the pepper they were made with.
		p, err := pepper(f.pepperFile)
		if err != nil {
			return err
		}
		if hasher, err = vkey.NewHasher(p); err != nil {
			return err
		}
		c, err := config.Load(f.configFile)
		if err != nil {
			return err
		}
		snap, err := c.Snapshot()
		if err != nil {
			return fmt.Errorf("config %s: %w", f.configFile, err)
		}
		src, srcDisp = source{static: snap}, source{static: snap}
		if obs, err = startObservability(ctx, g, logger, cancel, "sluice", f.obs); err != nil {
			return err
		}
		// The file is the operator's own: the variables it names are the allowed ones.
		for _, p := range c.Providers {
			if p.APIKeyEnv != "" {
				providerEnv = append(providerEnv, p.APIKeyEnv)
			}
		}
	} else {
		if err := os.MkdirAll(f.stateDir, 0o700); err != nil {
			return err
		}
		if hasher, err = hasherFrom(f.stateDir); err != nil {
			return err
		}
		if keyring, err = masterKeyring(f.stateDir); err != nil {
			return err
		}
		if adminTk, err = stateSecret(envAdminToken, f.stateDir, "admin.token"); err != nil {
			return err
		}
		obs, err = startObservability(ctx, g, logger, cancel, "sluice", f.obs)
		if err != nil {
			return err
		}
		st, err := openStore(ctx, f.redisURL, filepath.Join(f.stateDir, "store"))
		if err != nil {
			return fmt.Errorf("config store: %w", err)
		}
		g.onStop(func() { _ = st.Close() })
		fleetToken := randomToken()
		if cp, err = startControlPlane(ctx, g, logger, cancel, controlPlaneOptions{store: st,
			adminListen: f.adminListen, fleetListen: "unix:" + filepath.Join(runDir, "fleet.sock"),
			hasher: hasher, keyring: keyring, adminToken: adminTk, fleetToken: fleetToken, metrics: obs.metrics,
			counters: ctrs}); err != nil {
			return err
		}
		src = source{fleetAddr: cp.fleetAddr, fleetToken: fleetToken, nodeID: "serve-extproc",
			stateFile: filepath.Join(f.stateDir, "extproc.snapshot.json")}
		srcDisp = source{fleetAddr: cp.fleetAddr, fleetToken: fleetToken, nodeID: "serve-dispatcher",
			stateFile: filepath.Join(f.stateDir, "dispatcher.snapshot.json")}
	}

	var demo *demoProvider
	if f.configFile == "" && (f.demo || (os.Getenv("OPENAI_API_KEY") == "" && os.Getenv("ANTHROPIC_API_KEY") == "")) {
		if demo, err = startDemoProvider(ctx, g, logger, cancel); err != nil {
			return err
		}
		for k, v := range demo.keys {
			extra[k] = v
			providerEnv = append(providerEnv, k)
		}
	}

	sock := "unix:" + filepath.Join(runDir, "extproc.sock")
	epClient, err := startExtproc(ctx, g, logger, cancel, extprocOptions{listen: sock, hasher: hasher, signer: signer, source: src, obs: obs,
		counters: ctrs, failOpen: failOpen})
	if err != nil {
		return err
	}
	dispAddr, dClient, err := startDispatcher(ctx, g, logger, cancel, dispatcherOptions{listen: f.dispatcherListen,
		verifier: verifier, keyring: keyring, getenv: getenv, providerEnv: providerEnv, source: srcDisp, obs: obs,
		counters: ctrs, failOpen: failOpen, breakers: f.breakers.config()})
	if err != nil {
		return err
	}

	// The gateway's own config: demo or environment providers, and a first key.
	var minted *mintedSecret
	if cp != nil {
		a := &apiClient{base: "http://" + cp.adminAddr, token: adminTk, hc: &http.Client{Timeout: 30 * time.Second}}
		if minted, err = seed(startCtx, a, demo); err != nil {
			return fmt.Errorf("seeding the config: %w", err)
		}
	}
	if err := waitReady(startCtx, 30*time.Second, epClient, dClient); err != nil {
		return err
	}

	// xds for Envoy.
	xs := xds.NewServer(logger.With("component", "xds"))
	if err := xs.Update(xds.Params{ListenAddr: f.listen, ExtProcAddr: sock, DispatcherAddr: dispAddr,
		OTLPEndpoint: envoyOTLP(f.obs.otlpEndpoint, logger)}); err != nil {
		return err
	}
	xLis, err := net.Listen("tcp", f.xdsListen)
	if err != nil {
		return err
	}
	g.go_("xds", logger, cancel, func() error { return xs.Serve(ctx, xLis) })

	// Envoy, as a child configured entirely over ADS.
	var stopping atomic.Bool
	proc, adminAddr, err := startEnvoy(ctx, g, logger, cancel, f, runDir, xLis.Addr().String(), stderr, &stopping)
	if err != nil {
		return err
	}
	defer func() { _ = proc.Stop(10 * time.Second) }()
	readyCtx, readyCancel := context.WithTimeout(startCtx, 60*time.Second)
	defer readyCancel()
	if err := envoy.WaitReady(readyCtx, adminAddr); err != nil {
		return fmt.Errorf("envoy did not become ready: %w", err)
	}
	if err := envoy.WaitListener(readyCtx, f.listen); err != nil {
		return fmt.Errorf("listener %s did not answer: %w", f.listen, err)
	}

	banner := readyBanner{listen: f.listen, key: minted, demo: demo != nil}
	if cp != nil {
		banner.adminURL = "http://" + cp.adminAddr
		if os.Getenv(envAdminToken) == "" {
			banner.adminTokenFile = filepath.Join(f.stateDir, "admin.token")
		}
	}
	banner.print(stdout)
	logger.Info("sluice: ready", "listen", f.listen, "dispatcher", dispAddr, "xds", xLis.Addr().String(), "envoy_admin", adminAddr)
	select {
	case <-sigCtx.Done():
	case <-ctx.Done(): // a component failed
	}
	logger.Info("sluice: shutting down")
	stopping.Store(true)
	if err := proc.Stop(10 * time.Second); err != nil {
		logger.Warn("envoy did not stop cleanly", "err", err)
	}
	cancel()
	g.wait()
	return g.err
}

// startEnvoy starts Envoy as a child of this process and returns it with its admin address.
// stopping is set before Envoy is stopped on purpose, so its exit is not taken for a crash.
func startEnvoy(ctx context.Context, g *group, logger *slog.Logger, cancel context.CancelFunc, f serveFlags, runDir, xdsAddr string, out io.Writer, stopping *atomic.Bool) (*envoy.Process, string, error) {
	bin := f.envoyBin
	var err error
	if bin == "" {
		if bin, err = envoy.FindBinary(); err != nil {
			return nil, "", err
		}
	}
	admin := f.envoyAdmin
	if admin == "" {
		if admin, err = freeLoopbackAddr(); err != nil {
			return nil, "", err
		}
	}
	boot, err := envoy.Bootstrap(envoy.BootstrapParams{XDSAddr: xdsAddr, AdminAddr: admin, NodeID: "sluice-serve", Cluster: "sluice"})
	if err != nil {
		return nil, "", err
	}
	proc, err := envoy.StartWith(ctx, envoy.Options{Bin: bin, Bootstrap: boot, WorkDir: runDir, Out: out, Concurrency: f.envoyConcurrency})
	if err != nil {
		return nil, "", err
	}
	g.go_("envoy", logger, cancel, func() error {
		err := proc.Wait()
		if ctx.Err() != nil || stopping.Load() {
			return nil
		}
		return fmt.Errorf("exited unexpectedly: %v", err)
	})
	return proc, admin, nil
}

func stopGRPC(gs *grpc.Server) {
	done := make(chan struct{})
	go func() { gs.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		gs.Stop()
		<-done
	}
}

func shutdownHTTP(hs *http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if hs.Shutdown(ctx) != nil {
		_ = hs.Close()
	}
}

func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
