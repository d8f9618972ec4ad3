package mainlib

import (
	"context"
	"crypto/rand"
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
	"time"

	"google.golang.org/grpc"

	"github.com/sluice-gateway/sluice/dispatcher"
	"github.com/sluice-gateway/sluice/dispatcher/translate"
	"github.com/sluice-gateway/sluice/envoy"
	"github.com/sluice-gateway/sluice/extproc"
	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/ctxtoken"
	"github.com/sluice-gateway/sluice/internal/vkey"
	"github.com/sluice-gateway/sluice/xds"
)

type serveFlags struct {
	listen, dispatcherListen, xdsListen, adminListen string
	configFile, pepperFile, envoyBin, stateDir       string
	logLevel                                         string
	demo                                             bool
	envoyConcurrency                                 int
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f serveFlags
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.listen, "listen", "127.0.0.1:8080", "client listener (Envoy)")
	fs.StringVar(&f.dispatcherListen, "dispatcher-listen", "127.0.0.1:0", "dispatcher address (loopback; only Envoy calls it)")
	fs.StringVar(&f.xdsListen, "xds-listen", "127.0.0.1:0", "xDS (ADS) gRPC address")
	fs.StringVar(&f.adminListen, "envoy-admin", "", "Envoy admin address (default: a free loopback port)")
	fs.StringVar(&f.configFile, "config", "", "config file (providers and hashed keys); needs the pepper")
	fs.StringVar(&f.pepperFile, "pepper-file", "", "file holding the key-hashing pepper (default: $SLUICE_PEPPER)")
	fs.StringVar(&f.envoyBin, "envoy", "", "Envoy binary (default: $SLUICE_ENVOY_BIN, PATH, then ./.venv)")
	fs.StringVar(&f.stateDir, "state-dir", "", "directory for the extproc socket and Envoy bootstrap (default: a temporary one)")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&f.demo, "demo", false, "run a built-in fake provider and print a ready demo key")
	fs.IntVar(&f.envoyConcurrency, "envoy-concurrency", 0, "Envoy worker threads (default: one per core)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("serve: unexpected argument %q", fs.Arg(0))
	}
	logger, err := newLogger(stderr, f.logLevel)
	if err != nil {
		return err
	}
	g := &group{}
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel()
		g.wait()
	}()
	return runServe(ctx, g, f, stdout, stderr, logger)
}

// group owns the goroutines serve starts: every one ends when serve's ctx does, and serve
// returns only after all have.
type group struct {
	wg   sync.WaitGroup
	once sync.Once
	err  error
}

func (g *group) go_(name string, logger *slog.Logger, cancel context.CancelFunc, fn func() error) {
	g.wg.Go(func() {
		if err := fn(); err != nil {
			logger.Error("serve: component stopped", "component", name, "err", err)
			g.once.Do(func() { g.err = fmt.Errorf("%s: %w", name, err) })
			cancel()
		}
	})
}

func (g *group) wait() { g.wg.Wait() }

func runServe(parent context.Context, g *group, f serveFlags, stdout, stderr io.Writer, logger *slog.Logger) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()

	stateDir := f.stateDir
	if stateDir == "" {
		d, err := os.MkdirTemp("", "sluice-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		stateDir = d
	} else if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return err
	}

	// Configuration: a file, or providers from the environment, or the built-in demo provider.
	var (
		cfg    *config.Config
		pep    []byte
		minted *mintedKey
		extra  = map[string]string{}
		demo   *demoProvider
		err    error
	)
	if f.configFile != "" {
		if f.demo {
			return errors.New("serve: --demo and --config are exclusive")
		}
		if pep, err = pepper(f.pepperFile); err != nil {
			return err
		}
		if cfg, err = config.Load(f.configFile); err != nil {
			return err
		}
	} else {
		pep = make([]byte, 32)
		_, _ = rand.Read(pep)
		if f.demo || (os.Getenv("OPENAI_API_KEY") == "" && os.Getenv("ANTHROPIC_API_KEY") == "") {
			f.demo = true
			if demo, err = startDemoProvider(ctx, g, logger, cancel); err != nil {
				return err
			}
			cfg = demo.config()
			for k, v := range demo.keys {
				extra[k] = v
			}
		} else {
			cfg = envConfig()
		}
		k, err := newKey(pep)
		if err != nil {
			return err
		}
		minted = &k
		cfg.Keys = append(cfg.Keys, config.Key{ID: k.id, Name: "local", Hash: k.hash})
		if err := cfg.Validate(); err != nil {
			return err
		}
	}

	signKey := make([]byte, 32)
	_, _ = rand.Read(signKey)
	signer, _ := ctxtoken.NewSigner(signKey)
	verifier, _ := ctxtoken.NewVerifier(signKey)
	hasher, err := vkey.NewHasher(pep)
	if err != nil {
		return err
	}

	// extproc, over a Unix socket: co-located with Envoy.
	ep, err := extproc.New(extproc.Config{Logger: logger, Signer: signer, Hasher: hasher})
	if err != nil {
		return err
	}
	if err := ep.Load(cfg); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	sock := filepath.Join(stateDir, "extproc.sock")
	_ = os.Remove(sock)
	epLis, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	gs := grpc.NewServer(grpc.MaxRecvMsgSize(64<<20), grpc.MaxSendMsgSize(64<<20))
	ep.Register(gs)
	g.go_("extproc", logger, cancel, func() error { return gs.Serve(epLis) })
	defer stopGRPC(gs)

	// dispatcher.
	tr, err := translate.New(ctx, translate.Config{Logger: logger})
	if err != nil {
		return err
	}
	defer tr.Close()
	disp, err := dispatcher.New(dispatcher.Config{
		Logger: logger, Verifier: verifier, Translator: tr,
		Getenv: func(k string) string {
			if v, ok := extra[k]; ok {
				return v
			}
			return os.Getenv(k)
		},
	})
	if err != nil {
		return err
	}
	if err := disp.Load(cfg); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	dLis, err := net.Listen("tcp", f.dispatcherListen)
	if err != nil {
		return err
	}
	hs := &http.Server{Handler: disp, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 5 * time.Minute,
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn)}
	g.go_("dispatcher", logger, cancel, func() error {
		if err := hs.Serve(dLis); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	defer shutdownHTTP(hs)

	// xds.
	xs := xds.NewServer(logger)
	if err := xs.Update(xds.Params{ListenAddr: f.listen, ExtProcAddr: "unix:" + sock,
		DispatcherAddr: dLis.Addr().String()}); err != nil {
		return err
	}
	xLis, err := net.Listen("tcp", f.xdsListen)
	if err != nil {
		return err
	}
	g.go_("xds", logger, cancel, func() error { return xs.Serve(ctx, xLis) })

	// Envoy, as a child configured entirely over ADS.
	bin := f.envoyBin
	if bin == "" {
		if bin, err = envoy.FindBinary(); err != nil {
			return err
		}
	}
	admin := f.adminListen
	if admin == "" {
		if admin, err = freeLoopbackAddr(); err != nil {
			return err
		}
	}
	boot, err := envoy.Bootstrap(envoy.BootstrapParams{XDSAddr: xLis.Addr().String(), AdminAddr: admin,
		NodeID: "sluice-serve", Cluster: "sluice"})
	if err != nil {
		return err
	}
	proc, err := envoy.StartWith(ctx, envoy.Options{Bin: bin, Bootstrap: boot, WorkDir: stateDir,
		Out: stderr, Concurrency: f.envoyConcurrency})
	if err != nil {
		return err
	}
	defer func() { _ = proc.Stop(10 * time.Second) }()
	g.go_("envoy", logger, cancel, func() error {
		err := proc.Wait()
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("exited unexpectedly: %v", err)
	})
	readyCtx, readyCancel := context.WithTimeout(ctx, 60*time.Second)
	defer readyCancel()
	if err := envoy.WaitReady(readyCtx, admin); err != nil {
		return fmt.Errorf("envoy did not become ready: %w", err)
	}
	if err := envoy.WaitListener(readyCtx, f.listen); err != nil {
		return fmt.Errorf("listener %s did not answer: %w", f.listen, err)
	}

	printReady(stdout, f.listen, minted, demo != nil)
	logger.Info("sluice: ready", "listen", f.listen, "dispatcher", dLis.Addr().String(),
		"xds", xLis.Addr().String(), "envoy_admin", admin)
	<-ctx.Done()
	logger.Info("sluice: shutting down")
	return g.err
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
