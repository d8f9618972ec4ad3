package xds_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-gateway/sluice/envoy"
	"github.com/sluice-gateway/sluice/xds"
)

// Real-Envoy tests: the control plane, Envoy 1.40 and fake upstreams on
// loopback ports. They skip unless $SLUICE_ENVOY_BIN names an Envoy binary
// (the Makefile sets it). Every wait is bounded by a context deadline.

const envTimeout = 30 * time.Second

// lockedBuffer collects Envoy's output from the exec copy goroutine.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type testEnv struct {
	srv        *xds.Server
	listenAddr string
	client     *http.Client
}

// freeAddr reserves a loopback port by listening on :0 and releasing it.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// startEnv runs an xds Server configured with p and an Envoy bootstrapped
// against it, and waits until Envoy is LIVE. p.ListenAddr is filled in.
func startEnv(t *testing.T, p xds.Params) *testEnv {
	t.Helper()
	bin := os.Getenv(envoy.EnvBinary)
	if bin == "" {
		t.Skipf("$%s not set; skipping real-Envoy test", envoy.EnvBinary)
	}
	ctx, cancel := context.WithCancel(context.Background())

	logs := &lockedBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := xds.NewServer(logger)
	p.ListenAddr = freeAddr(t)
	if err := srv.Update(p); err != nil {
		t.Fatalf("Update: %v", err)
	}
	xdsLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveDone := make(chan error, 1)
	go func() { serveDone <- srv.Serve(ctx, xdsLis) }()

	adminAddr := freeAddr(t)
	boot, err := envoy.Bootstrap(envoy.BootstrapParams{
		XDSAddr: xdsLis.Addr().String(), AdminAddr: adminAddr, NodeID: t.Name(), Cluster: "sluice-test",
	})
	if err != nil {
		t.Fatal(err)
	}
	out := &lockedBuffer{}
	proc, err := envoy.Start(ctx, bin, boot, t.TempDir(), out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := proc.Stop(5 * time.Second); err != nil {
			t.Errorf("stop envoy: %v", err)
		}
		cancel()
		if err := <-serveDone; err != nil {
			t.Errorf("Serve: %v", err)
		}
		// SLUICE_TEST_DUMP=1 shows the logs of passing runs too (to spot
		// Envoy deprecation warnings).
		if t.Failed() || os.Getenv("SLUICE_TEST_DUMP") != "" {
			t.Logf("envoy output:\n%s", out.String())
			t.Logf("xds log:\n%s", logs.String())
		}
	})
	rctx, rcancel := context.WithTimeout(ctx, envTimeout)
	defer rcancel()
	if err := envoy.WaitReady(rctx, adminAddr); err != nil {
		t.Fatal(err)
	}
	return &testEnv{
		srv:        srv,
		listenAddr: p.ListenAddr,
		// New connections per request: a Listener update drains old ones.
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
	}
}

type reply struct {
	status int
	header http.Header
	body   string
}

func (e *testEnv) do(t *testing.T, method, path string, body []byte, hdr ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+e.listenAddr+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// upstream is a fake dispatcher that names itself in the body and records
// the x-sluice-request-id it saw.
func upstream(t *testing.T, name string) (*httptest.Server, *sync.Map) {
	t.Helper()
	seen := &sync.Map{}
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		seen.Store(r.URL.Path, r.Header.Get("x-sluice-request-id"))
		fmt.Fprintf(w, "%s %d", name, n)
	}))
	t.Cleanup(s.Close)
	return s, seen
}

func closedAddr(t *testing.T) string { return freeAddr(t) }

// eventually polls fn until it returns "" or the deadline passes; fn's last
// complaint is the failure message. No sleep-based assertions.
func eventually(t *testing.T, fn func() string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), envTimeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		msg := fn()
		if msg == "" {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("timed out: %s", msg)
		case <-tick.C:
		}
	}
}

func TestEnvoyLiveUpdate(t *testing.T) {
	a, _ := upstream(t, "A")
	b, _ := upstream(t, "B")
	p := xds.Params{DisableExtProc: true, DispatcherAddr: a.Listener.Addr().String()}
	e := startEnv(t, p)

	if r := e.do(t, "GET", "/v1/anything", nil); r.status != 200 || r.body != "A 0" {
		t.Fatalf("via A: got %d %q, want 200 \"A 0\"", r.status, r.body)
	}
	first := e.srv.Version()

	p.ListenAddr = e.listenAddr
	p.DispatcherAddr = b.Listener.Addr().String()
	if err := e.srv.Update(p); err != nil {
		t.Fatal(err)
	}
	if e.srv.Version() == first {
		t.Fatal("version unchanged after a dispatcher change")
	}
	eventually(t, func() string {
		if r := e.do(t, "GET", "/v1/anything", nil); r.body != "B 0" {
			return fmt.Sprintf("still %d %q", r.status, r.body)
		}
		return ""
	})

	// A dead dispatcher: Envoy's 503 becomes an OpenAI-format error.
	p.DispatcherAddr = closedAddr(t)
	if err := e.srv.Update(p); err != nil {
		t.Fatal(err)
	}
	var last reply
	eventually(t, func() string {
		last = e.do(t, "POST", "/v1/chat/completions", []byte(`{}`))
		if last.status != 503 {
			return fmt.Sprintf("got %d %q", last.status, last.body)
		}
		return ""
	})
	checkOpenAIError(t, last, "server_error", "upstream_unavailable")
	r := e.do(t, "POST", "/v1/messages", []byte(`{}`))
	checkAnthropicError(t, r, 503, "api_error")
}

func TestEnvoyNotFound(t *testing.T) {
	a, _ := upstream(t, "A")
	e := startEnv(t, xds.Params{DisableExtProc: true, DispatcherAddr: a.Listener.Addr().String()})
	for _, path := range []string{"/", "/v2/chat/completions", "/v1"} {
		r := e.do(t, "GET", path, nil)
		want := `{"error":{"message":"Unknown endpoint.","type":"not_found_error","code":"not_found","param":null}}`
		if r.status != 404 || r.body != want || r.header.Get("content-type") != "application/json" {
			t.Errorf("GET %s: got %d %q (content-type %q), want 404 %s", path, r.status, r.body, r.header.Get("content-type"), want)
		}
		if r.header.Get("x-sluice-request-id") == "" {
			t.Errorf("GET %s: no x-sluice-request-id", path)
		}
	}
}

func TestEnvoyExtProcFailsClosed(t *testing.T) {
	a, seen := upstream(t, "A")
	e := startEnv(t, xds.Params{ExtProcAddr: closedAddr(t), DispatcherAddr: a.Listener.Addr().String()})
	r := e.do(t, "POST", "/v1/chat/completions", []byte(`{"model":"x"}`), "x-sluice-request-id", "client-sent")
	if rid := r.header.Get("x-sluice-request-id"); rid == "" || rid == "client-sent" {
		t.Errorf("x-sluice-request-id = %q, want an Envoy-minted id, never the client's", rid)
	}
	if r.status < 500 {
		t.Fatalf("ext_proc down: got %d %q, want a 5xx (fail closed)", r.status, r.body)
	}
	checkOpenAIError(t, r, "server_error", "")
	r = e.do(t, "POST", "/v1/messages", []byte(`{"model":"x"}`))
	checkAnthropicError(t, r, r.status, "api_error")
	if r.status < 500 {
		t.Errorf("ext_proc down on /v1/messages: got %d", r.status)
	}
	seen.Range(func(k, _ any) bool {
		t.Errorf("request %v reached the dispatcher with ext_proc down", k)
		return true
	})
}

func TestEnvoyBodyLimitAndExtProc(t *testing.T) {
	a, seen := upstream(t, "A")
	const limit = 64 << 10
	e := startEnv(t, xds.Params{
		ExtProcAddr: startFakeExtProc(t), DispatcherAddr: a.Listener.Addr().String(), MaxRequestBytes: limit,
	})

	// Within the limit: buffered, passed through ext_proc, reaches the
	// dispatcher with the header extproc set.
	small := bytes.Repeat([]byte("a"), limit-1024)
	if r := e.do(t, "POST", "/v1/chat/completions", small); r.status != 200 || r.body != fmt.Sprintf("A %d", len(small)) {
		t.Fatalf("small body: got %d %q", r.status, r.body)
	}
	if r := e.do(t, "POST", "/v1/chat/completions", small); r.header.Get("x-sluice-request-id") != fakeRequestID {
		t.Errorf("200 x-sluice-request-id = %q, want %q", r.header.Get("x-sluice-request-id"), fakeRequestID)
	}
	if rid, _ := seen.Load("/v1/chat/completions"); rid != fakeRequestID {
		t.Errorf("dispatcher saw x-sluice-request-id %q, want %q", rid, fakeRequestID)
	}

	// Over the limit plus the listener's 1 MiB headroom (the effective cap,
	// see buildRouteConfig): 413 in the client's dialect, with the request id
	// extproc minted.
	big := bytes.Repeat([]byte("a"), limit+(2<<20))
	r := e.do(t, "POST", "/v1/messages?beta=true", big, "x-sluice-request-id", "client-sent")
	checkAnthropicError(t, r, 413, "request_too_large")
	checkGatewayRequestID(t, r)
	r = e.do(t, "POST", "/v1/chat/completions", big, "x-sluice-request-id", "client-sent")
	if r.status != 413 {
		t.Fatalf("big body on OpenAI route: got %d %q", r.status, r.body)
	}
	checkOpenAIError(t, r, "invalid_request_error", "request_too_large")
	checkGatewayRequestID(t, r)

	// extproc's own JSON errors (ImmediateResponse) are not rewrapped by
	// the local-reply mappers.
	r = e.do(t, "POST", "/v1/chat/completions", []byte(`{}`), denyHeader, "1")
	if r.status != 401 || r.body != denyBody || r.header.Get("content-type") != "application/json" {
		t.Errorf("ImmediateResponse: got %d %q (content-type %q), want 401 %s", r.status, r.body, r.header.Get("content-type"), denyBody)
	}
	if got := r.header.Get("x-sluice-request-id"); got != fakeRequestID {
		t.Errorf("ImmediateResponse x-sluice-request-id = %q, want extproc's %q", got, fakeRequestID)
	}
}

// TestEnvoyExtProcUnixSocket: the co-located deployment reaches extproc over
// a Unix socket (Envoy pipe address).
func TestEnvoyExtProcUnixSocket(t *testing.T) {
	a, seen := upstream(t, "A")
	sock := startFakeExtProcOn(t, "unix", t.TempDir()+"/extproc.sock")
	e := startEnv(t, xds.Params{ExtProcAddr: "unix:" + sock, DispatcherAddr: a.Listener.Addr().String()})
	if r := e.do(t, "POST", "/v1/responses", []byte(`{}`)); r.status != 200 {
		t.Fatalf("via UDS ext_proc: got %d %q", r.status, r.body)
	}
	if rid, _ := seen.Load("/v1/responses"); rid != fakeRequestID {
		t.Errorf("dispatcher saw x-sluice-request-id %q, want %q", rid, fakeRequestID)
	}
}

// checkGatewayRequestID: a 413 carries extproc's id when the buffer
// overflowed after extproc's header response, else the id Envoy minted
// (requestIDMutation) — it races with the upload. Never the client's.
func checkGatewayRequestID(t *testing.T, r reply) {
	t.Helper()
	if got := r.header.Get("x-sluice-request-id"); got == "" || got == "client-sent" {
		t.Errorf("%d x-sluice-request-id = %q, want extproc's or an Envoy-minted id", r.status, got)
	}
}

func checkOpenAIError(t *testing.T, r reply, typ, code string) {
	t.Helper()
	var env struct {
		Error struct {
			Message string  `json:"message"`
			Type    string  `json:"type"`
			Code    string  `json:"code"`
			Param   *string `json:"param"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(r.body), &env); err != nil {
		t.Errorf("%d body %q is not JSON: %v", r.status, r.body, err)
		return
	}
	if !strings.HasPrefix(r.header.Get("content-type"), "application/json") {
		t.Errorf("content-type %q, want application/json", r.header.Get("content-type"))
	}
	if env.Error.Type != typ || (code != "" && env.Error.Code != code) || env.Error.Message == "" || !strings.Contains(r.body, `"param":null`) {
		t.Errorf("OpenAI envelope: got %s, want type %q code %q, a message and param null", r.body, typ, code)
	}
}

func checkAnthropicError(t *testing.T, r reply, status int, typ string) {
	t.Helper()
	var env struct {
		Type  string `json:"type"`
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if r.status != status {
		t.Errorf("status %d, want %d (body %q)", r.status, status, r.body)
	}
	if err := json.Unmarshal([]byte(r.body), &env); err != nil {
		t.Errorf("%d body %q is not JSON: %v", r.status, r.body, err)
		return
	}
	if !strings.HasPrefix(r.header.Get("content-type"), "application/json") {
		t.Errorf("content-type %q, want application/json", r.header.Get("content-type"))
	}
	if env.Type != "error" || env.Error.Type != typ || env.Error.Message == "" {
		t.Errorf("Anthropic envelope: got %s, want type error/%q with a message", r.body, typ)
	}
}
