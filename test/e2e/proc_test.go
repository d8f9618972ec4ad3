package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// proc is a child process of a test: its output is kept for the failure report, it dies with
// the test binary, and Cleanup stops it.
type proc struct {
	name string
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan error
}

// startProc starts argv and waits until a line of its stdout contains ready (if not empty).
func startProc(t *testing.T, name, ready string, env []string, argv ...string) *proc {
	t.Helper()
	p := &proc{name: name, logs: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stderr = p.logs
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	up := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		signalled := ready == ""
		if signalled {
			close(up)
		}
		for sc.Scan() {
			fmt.Fprintln(p.logs, "[stdout] "+sc.Text())
			if !signalled && strings.Contains(sc.Text(), ready) {
				signalled = true
				close(up)
			}
		}
		p.done <- p.cmd.Wait()
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s output (last 4 KiB):\n%s", name, p.logs.tail(4<<10))
		}
	})
	select {
	case <-up:
	case err := <-p.done:
		p.done <- err
		t.Fatalf("%s exited before ready: %v\n%s", name, err, p.logs.tail(4<<10))
	case <-time.After(60 * time.Second):
		t.Fatalf("%s not ready after 60s\n%s", name, p.logs.tail(4<<10))
	}
	return p
}

// stop sends SIGTERM and waits (bounded) for the exit; it is idempotent.
func (p *proc) stop() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		p.done <- err
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
	}
}

// startRedis runs a throwaway redis-server on a free loopback port.
func startRedis(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		required(t, "redis-server")
	}
	addr, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(addr)
	startProc(t, "redis", "Ready to accept connections", nil, bin, "--port", port, "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", t.TempDir())
	return "redis://" + addr
}

// adminAPI is a tiny client for the admin API.
type adminAPI struct {
	url, token string
}

func (a adminAPI) call(t *testing.T, method, path string, body any) map[string]any {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, method, a.url+path, rd)
	req.Header.Set("Authorization", "Bearer "+a.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("admin %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		t.Fatalf("admin %s %s: %d %s", method, path, resp.StatusCode, raw)
	}
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return out
}

// chatStatus sends a small chat request with key through the listener at base and returns
// the status and, for an error, its code.
func chatStatus(base, key string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", base+"/v1/chat/completions",
		strings.NewReader(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var e struct {
		Error struct{ Code string } `json:"error"`
	}
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &e)
	return resp.StatusCode, e.Error.Code
}

// eventually polls chatStatus until it returns want (status and, when set, code) and
// returns how long that took; it fails the test after limit.
func eventually(t *testing.T, base, key string, want int, code string, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var got int
	var gotCode string
	for {
		if got, gotCode = chatStatus(base, key); got == want && (code == "" || gotCode == code) {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("%s: still %d %q after %v, want %d %q", base, got, gotCode, limit, want, code)
		}
		<-tick.C
	}
}

// cli runs the sluice CLI against an admin API and decodes its --format json output.
func cli(t *testing.T, bin string, api adminAPI, args ...string) map[string]any {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(args, "--format", "json")...)
	cmd.Env = append(os.Environ(), "SLUICE_URL="+api.url, "SLUICE_API_TOKEN="+api.token)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("sluice %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var out map[string]any
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		t.Fatalf("sluice %s: output is not JSON: %s", strings.Join(args, " "), stdout.String())
	}
	return out
}
