package mainlib

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/sluice-gateway/sluice/dispatcher"
	"github.com/sluice-gateway/sluice/dispatcher/breaker"
	"github.com/sluice-gateway/sluice/dispatcher/translate"
	"github.com/sluice-gateway/sluice/extproc"
	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/counters"
	"github.com/sluice-gateway/sluice/internal/ctxtoken"
	"github.com/sluice-gateway/sluice/internal/fleet"
	"github.com/sluice-gateway/sluice/internal/metrics"
	"github.com/sluice-gateway/sluice/internal/secretbox"
	"github.com/sluice-gateway/sluice/internal/vkey"
	"github.com/sluice-gateway/sluice/xds/admin"
	"github.com/sluice-gateway/sluice/xds/store"
)

// The three processes of the split deployment are built here; `sluice serve` runs all of
// them in one process over loopback, on the same code paths.

// listen opens "unix:/path" or a TCP host:port.
func listen(addr string) (net.Listener, error) {
	if path, ok := strings.CutPrefix(addr, "unix:"); ok {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		return net.Listen("unix", path)
	}
	return net.Listen("tcp", addr)
}

// serveHTTP runs hs on lis under g and shuts it down when ctx ends.
func serveHTTP(ctx context.Context, g *group, name string, logger *slog.Logger, cancel context.CancelFunc, hs *http.Server, lis net.Listener) {
	hs.ErrorLog = slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	g.go_(name, logger, cancel, func() error {
		if err := hs.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	g.wg.Go(func() {
		<-ctx.Done()
		shutdownHTTP(hs)
	})
}

// serveGRPC runs gs on lis under g and stops it gracefully when ctx ends.
func serveGRPC(ctx context.Context, g *group, name string, logger *slog.Logger, cancel context.CancelFunc, gs *grpc.Server, lis net.Listener) {
	g.go_(name, logger, cancel, func() error { return gs.Serve(lis) })
	g.wg.Go(func() {
		<-ctx.Done()
		stopGRPC(gs)
	})
}

// openStore opens the control plane's store: Redis for a replicated control plane, else the
// embedded file store in dir.
func openStore(ctx context.Context, redisURL, dir string) (store.Store, error) {
	if redisURL != "" {
		return store.OpenRedis(ctx, redisURL, "sluice")
	}
	return store.OpenFile(dir)
}

// controlPlane is the xds side: store, admin API and the fleet push.
type controlPlane struct {
	store     store.Store
	adminAddr string
	fleetAddr string
}

type controlPlaneOptions struct {
	store       store.Store
	adminListen string
	fleetListen string
	hasher      *vkey.Hasher
	keyring     *secretbox.Keyring
	adminToken  string
	fleetToken  string
	metrics     *metrics.Metrics // served on the admin listener's /metrics
	counters    counters.Store   // what budgets have spent, for the admin API; may be nil
}

func startControlPlane(ctx context.Context, g *group, logger *slog.Logger, cancel context.CancelFunc, o controlPlaneOptions) (*controlPlane, error) {
	adm, err := admin.New(admin.Config{Store: o.store, Keyring: o.keyring, Hasher: o.hasher,
		AdminToken: o.adminToken, Logger: logger.With("component", "admin"), Counters: o.counters})
	if err != nil {
		return nil, err
	}
	aLis, err := listen(o.adminListen)
	if err != nil {
		return nil, fmt.Errorf("admin listener: %w", err)
	}
	// Probes, unauthenticated and secret-free: live while serving, ready while the store
	// answers.
	mux := http.NewServeMux()
	mux.Handle("/", adm)
	mux.Handle("GET /metrics", o.metrics.Handler())
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		rctx, rcancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer rcancel()
		if _, err := o.store.Revision(rctx); err != nil {
			http.Error(w, "config store unreachable", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	serveHTTP(ctx, g, "admin", logger, cancel, &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, aLis)
	g.wg.Go(func() { adm.RunSweeper(ctx, 5*time.Minute) })

	fs, err := fleet.NewServer(fleet.ServerConfig{Store: o.store, Logger: logger.With("component", "fleet"), Token: o.fleetToken})
	if err != nil {
		return nil, err
	}
	fLis, err := listen(o.fleetListen)
	if err != nil {
		return nil, fmt.Errorf("fleet listener: %w", err)
	}
	gs := grpc.NewServer(fleet.ServerOptions()...)
	fs.Register(gs)
	o.metrics.RegisterFleetStats(func() metrics.FleetStats {
		st := fs.Stats()
		return metrics.FleetStats{Streams: st.Streams, Pushes: st.Pushes, Acks: st.Acks, Nacks: st.Nacks,
			Lookups: st.Lookups, AuthFailures: st.AuthFailures, PushLagCount: st.PushLagCount, PushLagSum: st.PushLagSum}
	})
	serveGRPC(ctx, g, "fleet", logger, cancel, gs, fLis)
	g.go_("fleet-push", logger, cancel, func() error { return fs.Run(ctx) })
	return &controlPlane{store: o.store, adminAddr: aLis.Addr().String(), fleetAddr: fleetDialAddr(fLis)}, nil
}

// fleetDialAddr is the address a client dials for lis.
func fleetDialAddr(lis net.Listener) string {
	if lis.Addr().Network() == "unix" {
		return "unix:" + lis.Addr().String()
	}
	return lis.Addr().String()
}

// dataPlaneKinds is what extproc needs from the control plane; never API tokens.
var dataPlaneKinds = []config.Kind{config.KindOrganization, config.KindTeam, config.KindProject,
	config.KindPrincipal, config.KindModelProvider, config.KindVirtualKey, config.KindRoutingPolicy,
	config.KindBudget, config.KindGuardrail}

// source is where a data-plane component gets its config: a static snapshot, or the fleet.
type source struct {
	static     *config.Snapshot
	fleetAddr  string
	fleetToken string
	stateFile  string // bootstrap mode: the last snapshot, served while xds is unreachable
	nodeID     string
}

// run delivers snapshots to load: once for a static one; for the fleet, from the state file
// and then on every push, until ctx ends. It returns the fleet client (nil when static).
func (s source) run(ctx context.Context, g *group, logger *slog.Logger, cancel context.CancelFunc, name string,
	kinds []config.Kind, load func(*config.Snapshot) error) (*fleet.Client, error) {
	if s.static != nil {
		return nil, load(s.static)
	}
	c, err := fleet.NewClient(fleet.ClientConfig{Addr: s.fleetAddr, Token: s.fleetToken, NodeID: s.nodeID,
		Kinds: kinds, StateFile: s.stateFile, Logger: logger.With("component", name+"-fleet"),
		OnSnapshot: func(snap *config.Snapshot) {
			// Documents that fail to compile are left out; the rest is served.
			if err := load(snap); err != nil {
				logger.Warn("config: some documents were not applied", "component", name, "version", snap.Version, "err", err)
			}
		}})
	if err != nil {
		return nil, err
	}
	g.go_(name+"-fleet", logger, cancel, func() error { return c.Run(ctx) })
	return c, nil
}

// resolver lets extproc resolve a key hash it has not seen through the fleet stream.
type resolver struct{ c *fleet.Client }

func (r resolver) ResolveKeyHash(ctx context.Context, hexHash string) (bool, error) {
	_, found, err := r.c.Lookup(ctx, config.KindVirtualKey, admin.KeyHashIndex, hexHash)
	return found, err
}

type extprocOptions struct {
	listen       string // "unix:/path" or host:port
	healthListen string // optional HTTP /healthz and /readyz, for probes that cannot speak to a socket
	hasher       *vkey.Hasher
	signer       *ctxtoken.Signer
	source       source
	obs          *observability
	counters     counters.Store // nil: keys under budgets or limits meet the failure mode
	failOpen     bool
}

// startExtproc serves ext_proc and returns the fleet client (nil when static).
func startExtproc(ctx context.Context, g *group, logger *slog.Logger, cancel context.CancelFunc, o extprocOptions) (*fleet.Client, error) {
	ep, err := extproc.New(extproc.Config{Logger: logger.With("component", "extproc"), Signer: o.signer, Hasher: o.hasher,
		Tracer: o.obs.tracer("sluice/extproc"), Metrics: o.obs.metrics, AccessLog: o.obs.accessLog,
		Counters: o.counters, CountersFailOpen: o.failOpen})
	if err != nil {
		return nil, err
	}
	c, err := o.source.run(ctx, g, logger, cancel, "extproc", dataPlaneKinds, o.obs.loader("extproc", ep.LoadSnapshot))
	if err != nil {
		return nil, fmt.Errorf("extproc config: %w", err)
	}
	if c != nil {
		ep.SetResolver(resolver{c})
	}
	lis, err := listen(o.listen)
	if err != nil {
		return nil, fmt.Errorf("extproc listener: %w", err)
	}
	// Envoy sends whole buffered bodies (up to 32 MiB) in one message.
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(64<<20), grpc.MaxSendMsgSize(64<<20))
	ep.Register(gs)
	// The standard gRPC health service (Kubernetes grpc probes): SERVING once a config is
	// loaded, NOT_SERVING while shutting down.
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	g.wg.Go(func() {
		if c != nil {
			select {
			case <-c.Ready():
			case <-ctx.Done():
				return
			}
		}
		hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
		<-ctx.Done()
		hs.Shutdown()
	})
	serveGRPC(ctx, g, "extproc", logger, cancel, gs, lis)
	if o.healthListen != "" {
		hLis, err := listen(o.healthListen)
		if err != nil {
			return nil, fmt.Errorf("extproc health listener: %w", err)
		}
		mux := probes(c)
		mux.Handle("GET /metrics", o.obs.metrics.Handler()) // what the chart's ServiceMonitor scrapes
		serveHTTP(ctx, g, "extproc-health", logger, cancel, &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, hLis)
	}
	return c, nil
}

// probes answers /healthz (the process serves) and /readyz (it holds a config).
func probes(c *fleet.Client) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if c != nil {
			select {
			case <-c.Ready():
			default:
				http.Error(w, "no configuration yet", http.StatusServiceUnavailable)
				return
			}
		}
		w.WriteHeader(http.StatusOK)
	})
	return mux
}

type dispatcherOptions struct {
	listen      string
	verifier    *ctxtoken.Verifier
	keyring     *secretbox.Keyring
	getenv      func(string) string
	providerEnv []string // the variables a provider's credentials_env may name
	source      source
	obs         *observability
	counters    counters.Store // nil: holds cannot be settled; provider limits meet the failure mode
	failOpen    bool
	breakers    breaker.Config
}

// startDispatcher serves the dispatcher and returns its address and fleet client.
func startDispatcher(ctx context.Context, g *group, logger *slog.Logger, cancel context.CancelFunc, o dispatcherOptions) (string, *fleet.Client, error) {
	tr, err := translate.New(ctx, translate.Config{Logger: logger.With("component", "translate")})
	if err != nil {
		return "", nil, err
	}
	g.wg.Go(func() {
		<-ctx.Done()
		tr.Close()
	})
	disp, err := dispatcher.New(dispatcher.Config{Logger: logger.With("component", "dispatcher"),
		Verifier: o.verifier, Translator: tr, Keyring: o.keyring, Getenv: o.getenv, CredentialEnv: o.providerEnv,
		Tracer: o.obs.tracer("sluice/dispatcher"), Metrics: o.obs.metrics, AccessLog: o.obs.accessLog,
		Counters: o.counters, CountersFailOpen: o.failOpen, Breakers: o.breakers})
	if err != nil {
		return "", nil, err
	}
	// Projects: their telemetry (own collector, content capture).
	c, err := o.source.run(ctx, g, logger, cancel, "dispatcher", []config.Kind{config.KindModelProvider, config.KindProject},
		o.obs.loader("dispatcher", disp.LoadSnapshot))
	if err != nil {
		return "", nil, fmt.Errorf("dispatcher config: %w", err)
	}
	lis, err := listen(o.listen)
	if err != nil {
		return "", nil, fmt.Errorf("dispatcher listener: %w", err)
	}
	// Probes live beside the API; Envoy routes only /v1/ here, so clients never see them.
	mux := probes(c)
	mux.Handle("/", disp)
	serveHTTP(ctx, g, "dispatcher", logger, cancel,
		&http.Server{Handler: mux, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 5 * time.Minute}, lis)
	return lis.Addr().String(), c, nil
}

// defaultProviderEnv is what --provider-env allows unless told otherwise.
const defaultProviderEnv = "OPENAI_API_KEY,ANTHROPIC_API_KEY"

// splitList splits a comma-separated flag value, dropping empty entries.
func splitList(s string) []string {
	var out []string
	for v := range strings.SplitSeq(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// waitReady waits until every fleet client has a snapshot, bounded by d.
func waitReady(ctx context.Context, d time.Duration, clients ...*fleet.Client) error {
	t := time.NewTimer(d)
	defer t.Stop()
	for _, c := range clients {
		if c == nil {
			continue
		}
		select {
		case <-c.Ready():
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
			return errors.New("no configuration from the control plane yet")
		}
	}
	return nil
}

// ctxKeys derives the context-token signer and verifier from SLUICE_CTX_KEY (or dir/ctx.key).
func ctxKeys(dir string) (*ctxtoken.Signer, *ctxtoken.Verifier, error) {
	k, err := stateSecret(envCtxKey, dir, "ctx.key")
	if err != nil {
		return nil, nil, err
	}
	s, err := ctxtoken.NewSigner([]byte(k))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", envCtxKey, err)
	}
	v, err := ctxtoken.NewVerifier([]byte(k))
	return s, v, err
}

// hasherFrom builds the key hasher from SLUICE_PEPPER (or dir/pepper).
func hasherFrom(dir string) (*vkey.Hasher, error) {
	p, err := stateSecret(envPepper, dir, "pepper")
	if err != nil {
		return nil, err
	}
	h, err := vkey.NewHasher([]byte(p))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", envPepper, err)
	}
	return h, nil
}

func statePath(dir, name string) string {
	if dir == "" {
		return ""
	}
	return filepath.Join(dir, name)
}
