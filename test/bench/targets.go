package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluice-gateway/sluice/envoy"
	"github.com/sluice-gateway/sluice/internal/config"
	"github.com/sluice-gateway/sluice/internal/fakeprovider"
	"github.com/sluice-gateway/sluice/internal/pricing"
	"github.com/sluice-gateway/sluice/internal/vkey"
	"github.com/sluice-gateway/sluice/xds"
)

// providerCredential is what the fake provider expects. The direct and envoy-only paths send
// it themselves; on the sluice path the client sends a virtual key and the dispatcher must
// swap it for this one, or the fake answers 401 and the run fails.
const providerCredential = "bench-openai-credential-0123456789"

const benchModel = "gpt-4o-mini"

// tailBuffer keeps the last part of a child's output for failure reports.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const tailKeep = 16 << 10

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > 4*tailKeep {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-tailKeep:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf
	if len(s) > n {
		s = s[len(s)-n:]
	}
	return string(s)
}

// fake is the in-process fake provider on a loopback port, zero delay.
type fake struct {
	addr string
	srv  *http.Server
	done chan struct{}
}

func startFake() (*fake, error) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := fakeprovider.New(fakeprovider.Config{OpenAIKey: providerCredential, MaxRecorded: -1})
	f := &fake{addr: lis.Addr().String(), done: make(chan struct{}),
		srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: log.New(discard{}, "", 0)}}
	go func() {
		defer close(f.done)
		_ = f.srv.Serve(lis)
	}()
	return f, nil
}

func (f *fake) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if f.srv.Shutdown(ctx) != nil {
		_ = f.srv.Close()
	}
	<-f.done
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// envoyOnly is client → Envoy → fake: an in-process xds server with ext_proc disabled and an
// Envoy child that routes /v1/ straight to the fake provider.
type envoyOnly struct {
	url     string
	admin   string // Envoy admin, host:port
	dir     string
	proc    *envoy.Process
	out     *tailBuffer
	cancel  context.CancelFunc
	xdsDone chan error
}

// startEnvoyOnly returns a usable out buffer even on error; it has then stopped what it
// started.
func startEnvoyOnly(ctx context.Context, bin, fakeAddr string, concurrency int) (*envoyOnly, error) {
	dir, err := os.MkdirTemp("", "sluice-bench-envoy-")
	if err != nil {
		return &envoyOnly{out: &tailBuffer{}}, err
	}
	ctx, cancel := context.WithCancel(ctx)
	e := &envoyOnly{dir: dir, out: &tailBuffer{}, cancel: cancel, xdsDone: make(chan error, 1)}
	fail := func(err error) (*envoyOnly, error) {
		e.stop()
		return e, err
	}
	listen, err := freeAddr()
	if err != nil {
		return fail(err)
	}
	admin, err := freeAddr()
	if err != nil {
		return fail(err)
	}
	e.url, e.admin = "http://"+listen, admin
	xs := xds.NewServer(nil)
	if err := xs.Update(xds.Params{ListenAddr: listen, DispatcherAddr: fakeAddr, DisableExtProc: true}); err != nil {
		return fail(fmt.Errorf("xds update: %w", err))
	}
	xLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	go func() { e.xdsDone <- xs.Serve(ctx, xLis) }()
	boot, err := envoy.Bootstrap(envoy.BootstrapParams{XDSAddr: xLis.Addr().String(),
		AdminAddr: admin, NodeID: "sluice-bench", Cluster: "sluice-bench"})
	if err != nil {
		return fail(err)
	}
	e.proc, err = envoy.StartWith(ctx, envoy.Options{Bin: bin, Bootstrap: boot, WorkDir: dir,
		Out: e.out, Concurrency: concurrency})
	if err != nil {
		return fail(err)
	}
	readyCtx, readyCancel := context.WithTimeout(ctx, 60*time.Second)
	defer readyCancel()
	go func() { // an Envoy that dies during start-up ends the wait at once
		select {
		case <-e.proc.Done():
			readyCancel()
		case <-readyCtx.Done():
		}
	}()
	if err := envoy.WaitReady(readyCtx, admin); err != nil {
		if e.exited() {
			err = fmt.Errorf("envoy exited during start-up: %v", e.proc.Wait())
		}
		return fail(err)
	}
	if err := envoy.WaitListener(readyCtx, listen); err != nil {
		return fail(fmt.Errorf("envoy listener %s: %w", listen, err))
	}
	return e, nil
}

func (e *envoyOnly) stop() {
	if e.proc != nil {
		_ = e.proc.Stop(10 * time.Second)
	}
	e.cancel()
	select {
	case <-e.xdsDone:
	case <-time.After(10 * time.Second):
	}
	_ = os.RemoveAll(e.dir)
}

// exited reports whether the Envoy child has died.
func (e *envoyOnly) exited() bool {
	if e.proc == nil {
		return false
	}
	select {
	case <-e.proc.Done():
		return true
	default:
		return false
	}
}

// sluiceProc is the full path: the real `sluice serve --config F` as a child process.
type sluiceProc struct {
	url     string
	admin   string // its Envoy's admin, host:port
	secret  string // the virtual key the client sends
	guarded string // a virtual key whose requests, answers and streams run a PII guardrail
	// governed is a virtual key under a block budget and RPM/TPM limits: every request is
	// reserved and settled in the in-process counter store.
	governed string
	dir      string
	cmd      *exec.Cmd
	out      *tailBuffer
	done     chan struct{} // closed when the child has exited
}

// startSluice returns a usable out buffer even on error; it has then stopped what it started.
func startSluice(ctx context.Context, bin, envoyBin, fakeAddr string, concurrency int, otlp string) (*sluiceProc, error) {
	dir, err := os.MkdirTemp("", "sluice-bench-")
	if err != nil {
		return &sluiceProc{out: &tailBuffer{}}, err
	}
	s := &sluiceProc{dir: dir, out: &tailBuffer{}, done: make(chan struct{})}
	fail := func(err error) (*sluiceProc, error) {
		s.stop()
		return s, err
	}
	pepper := randomHex(32)
	hasher, err := vkey.NewHasher([]byte(pepper))
	if err != nil {
		return fail(err)
	}
	if s.secret, err = vkey.NewSecret(); err != nil {
		return fail(err)
	}
	if s.guarded, err = vkey.NewSecret(); err != nil {
		return fail(err)
	}
	if s.governed, err = vkey.NewSecret(); err != nil {
		return fail(err)
	}
	cfg := config.Config{Version: config.Version,
		Providers: []config.Provider{{ID: "p-fake", Type: "openai", BaseURL: "http://" + fakeAddr,
			APIKeyEnv: "BENCH_OPENAI_KEY", Models: []string{benchModel},
			Pricing: pricing.Overrides{benchModel: {Input: config.NanoPerUSD, Output: 2 * config.NanoPerUSD}}}},
		Budgets: []config.Budget{{ID: "bg_bench", Name: "bench", Scope: config.MustParseScope("PROJECT:proj-governed"),
			Window: config.WindowMonth, LimitNanoUSD: 1_000_000 * config.NanoPerUSD, OnBreach: config.BreachBlock}},
		Guardrails: []config.Guardrail{{ID: "pii", Name: "PII", Kind: config.GuardrailPII, Action: config.ActionRedact,
			Directions: []config.GuardrailDirection{config.DirectionRequest, config.DirectionResponse, config.DirectionStream}}},
		Keys: []config.Key{
			{ID: config.NewID(config.KindVirtualKey), Name: "bench", Hash: hasher.Sum(s.secret).Hex(),
				OrgID: "org-bench", TeamID: "team-bench", ProjectID: "proj-bench"},
			{ID: config.NewID(config.KindVirtualKey), Name: "bench-guarded", Hash: hasher.Sum(s.guarded).Hex(),
				OrgID: "org-bench", TeamID: "team-bench", ProjectID: "proj-bench", Guardrails: []string{"pii"}},
			{ID: config.NewID(config.KindVirtualKey), Name: "bench-governed", Hash: hasher.Sum(s.governed).Hex(),
				OrgID: "org-bench", TeamID: "team-bench", ProjectID: "proj-governed",
				RateLimits: config.RateLimits{RPM: 1 << 40, TPM: 1 << 50}},
		},
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return fail(err)
	}
	cfgPath := filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		return fail(err)
	}
	listen, err := freeAddr()
	if err != nil {
		return fail(err)
	}
	disp, err := freeAddr()
	if err != nil {
		return fail(err)
	}
	if s.admin, err = freeAddr(); err != nil {
		return fail(err)
	}
	s.url = "http://" + listen
	s.cmd = exec.Command(bin, "serve", "--config", cfgPath, "--listen", listen,
		"--dispatcher-listen", disp, "--envoy-admin", s.admin, "--envoy", envoyBin, "--state-dir", filepath.Join(dir, "state"),
		"--envoy-concurrency", strconv.Itoa(concurrency), "--otlp-endpoint", otlp)
	s.cmd.Env = append(os.Environ(), "SLUICE_PEPPER="+pepper, "BENCH_OPENAI_KEY="+providerCredential)
	s.cmd.Stderr = s.out
	// Own process group: a terminal ^C reaches only us, and we stop sluice in order. Pdeathsig:
	// if we die anyway, the kernel kills sluice, and sluice's own Pdeathsig kills its Envoy.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		return fail(err)
	}
	if err := s.cmd.Start(); err != nil {
		return fail(err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		signalled := false
		for sc.Scan() {
			fmt.Fprintln(s.out, "[stdout] "+sc.Text())
			if !signalled && strings.HasPrefix(sc.Text(), "sluice: ready on ") {
				signalled = true
				close(ready)
			}
		}
		_ = s.cmd.Wait()
		close(s.done)
	}()
	timer := time.NewTimer(90 * time.Second)
	defer timer.Stop()
	select {
	case <-ready:
		return s, nil
	case <-s.done:
		return fail(fmt.Errorf("sluice exited before ready: %v", s.cmd.ProcessState))
	case <-timer.C:
		return fail(errors.New("sluice not ready after 90s"))
	case <-ctx.Done():
		return fail(ctx.Err())
	}
}

// stop SIGTERMs sluice (which stops its Envoy) and waits; SIGKILL after 20 s.
func (s *sluiceProc) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(20 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	}
	_ = os.RemoveAll(s.dir)
}

func (s *sluiceProc) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// envoyVersion runs `envoy --version` and returns its version string.
func envoyVersion(ctx context.Context, bin string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "--version").CombinedOutput()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	for _, line := range strings.Split(string(bytes.TrimSpace(out)), "\n") {
		if _, v, ok := strings.Cut(line, "version:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return strings.TrimSpace(string(out))
}

// extProcMessages returns how many messages the Envoy at admin has sent to ext_proc so far,
// from its own ext_proc statistics.
func extProcMessages(ctx context.Context, admin string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/stats?filter=ext_proc\\.stream_msgs_sent$", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var total int64
	found := false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if _, v, ok := strings.Cut(sc.Text(), ": "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("ext_proc stat %q: %w", sc.Text(), err)
			}
			total, found = total+n, true
		}
	}
	if !found {
		return 0, errors.New("envoy reports no ext_proc stream_msgs_sent counter")
	}
	return total, sc.Err()
}

// envoyTimes returns Envoy's own request-time histograms (ms; cumulative over the whole run,
// warm-ups included): downstream_rq_time is the whole request inside Envoy, upstream_rq_time
// the part spent on its upstream (the fake, or sluice's dispatcher).
func envoyTimes(ctx context.Context, admin string) []string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet,
		"http://"+admin+"/stats?usedonly&filter=(http\\.sluice\\.downstream_rq_time|cluster\\.sluice_dispatcher\\.upstream_rq_time)", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return []string{"stats unavailable: " + err.Error()}
	}
	defer resp.Body.Close()
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, hist, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			continue
		}
		var keep []string
		for _, f := range strings.Fields(hist) {
			for _, p := range []string{"P50(", "P90(", "P99(", "P99.9("} {
				if strings.HasPrefix(f, p) {
					if _, cum, ok := strings.Cut(strings.TrimSuffix(f, ")"), ","); ok {
						keep = append(keep, strings.TrimSuffix(p, "(")+"="+cum+"ms")
					}
				}
			}
		}
		if len(keep) > 0 {
			lines = append(lines, name+": "+strings.Join(keep, " "))
		}
	}
	return lines
}
