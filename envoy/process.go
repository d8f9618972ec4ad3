package envoy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// DefaultConcurrency is Envoy's worker-thread count when [Options] leaves it
// zero. Envoy's own default is one worker per core, which on a shared host
// competes with extproc and the dispatcher in the all-in-one mode.
const DefaultConcurrency = 2

// BootstrapFile is the name Start writes the bootstrap to inside workDir.
const BootstrapFile = "envoy-bootstrap.yaml"

// killDelay bounds how long a SIGTERMed Envoy may take once ctx is done before
// it is killed (exec.Cmd.WaitDelay).
const killDelay = 10 * time.Second

// Options configures [StartWith]. Zero values select the documented defaults.
type Options struct {
	Bin       string // the Envoy binary; see FindBinary
	Bootstrap []byte // rendered by Bootstrap
	WorkDir   string // receives BootstrapFile; must exist
	// Out receives Envoy's stdout and stderr; nil discards them.
	Out io.Writer
	// Concurrency is --concurrency; default DefaultConcurrency.
	Concurrency int
	// LogLevel is -l; default "warn".
	LogLevel string
	// ExtraArgs are appended to the command line.
	ExtraArgs []string
}

// Process is a running Envoy child. Its methods are safe for concurrent use.
type Process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the child has exited and err is set
	err  error         // Wait's result; read only after done is closed

	stopOnce sync.Once
}

// Start runs Envoy with the default [Options]. See [StartWith].
func Start(ctx context.Context, bin string, bootstrap []byte, workDir string, out io.Writer) (*Process, error) {
	return StartWith(ctx, Options{Bin: bin, Bootstrap: bootstrap, WorkDir: workDir, Out: out})
}

// StartWith writes the bootstrap into o.WorkDir and starts Envoy as a child
// process. When ctx is done the child gets SIGTERM, then SIGKILL after
// killDelay. On Linux the child is also SIGKILLed if the parent dies.
//
// Hot restart is disabled and the base id is dynamic, so several Envoys (test
// runs in parallel, a second sluice) can share a host without colliding on
// Envoy's shared-memory region.
func StartWith(ctx context.Context, o Options) (*Process, error) {
	if o.Bin == "" {
		return nil, errors.New("envoy: no binary given")
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.LogLevel == "" {
		o.LogLevel = "warn"
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	cfg := filepath.Join(o.WorkDir, BootstrapFile)
	if err := os.WriteFile(cfg, o.Bootstrap, 0o600); err != nil {
		return nil, fmt.Errorf("envoy: write bootstrap: %w", err)
	}
	args := []string{
		"-c", cfg,
		"--concurrency", strconv.Itoa(o.Concurrency),
		"-l", o.LogLevel,
		"--disable-hot-restart",
		"--use-dynamic-base-id",
	}
	args = append(args, o.ExtraArgs...)

	cmd := exec.CommandContext(ctx, o.Bin, args...)
	cmd.Dir = o.WorkDir
	cmd.Stdout = o.Out
	cmd.Stderr = o.Out
	// Envoy drains and exits on SIGTERM; SIGKILL (Go's default) would skip
	// that. WaitDelay then bounds a child that ignores it.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = killDelay
	setParentDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("envoy: start %s: %w", o.Bin, err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	// The one goroutine a Process owns; it ends when the child exits,
	// which ctx, Stop or the child itself guarantees.
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid is the child's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the child has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Wait blocks until the child exits and returns its exit error (nil for a
// zero exit status). It may be called any number of times.
func (p *Process) Wait() error {
	<-p.done
	return p.err
}

// Stop sends SIGTERM, waits up to timeout for Envoy to exit, then sends
// SIGKILL and waits for the exit. It returns nil once the child has exited,
// whatever its exit status: a stop is not a failure.
func (p *Process) Stop(timeout time.Duration) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	var sigErr error
	p.stopOnce.Do(func() {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			sigErr = fmt.Errorf("envoy: SIGTERM: %w", err)
		}
	})
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.done:
		return nil
	case <-timer.C:
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return errors.Join(sigErr, fmt.Errorf("envoy: SIGKILL: %w", err))
	}
	<-p.done
	return nil
}

// readyPollInterval is how often WaitReady polls the admin endpoint.
const readyPollInterval = 50 * time.Millisecond

// WaitReady polls Envoy's admin /ready until it answers 200 "LIVE", or ctx
// ends. Envoy reports LIVE only after its initial xDS fetch (listeners and
// clusters from ADS) has completed, so LIVE means the listener is up.
func WaitReady(ctx context.Context, adminAddr string) error {
	client := &http.Client{Timeout: time.Second}
	url := "http://" + adminAddr + "/ready"
	ticker := time.NewTicker(readyPollInterval)
	defer ticker.Stop()
	var last string
	for {
		if state, err := readyState(ctx, client, url); err == nil && state == "LIVE" {
			return nil
		} else if err != nil {
			last = err.Error()
		} else {
			last = "state " + state
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("envoy: not ready at %s (last: %s): %w", adminAddr, last, ctx.Err())
		case <-ticker.C:
		}
	}
}

func readyState(ctx context.Context, client *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// WaitListener polls the client listener at addr until Envoy answers on it. Sluice routes
// every path outside /v1/ to a direct 404, so a 404 proves the listener and its routes
// arrived over xDS, not merely that the process is up.
func WaitListener(ctx context.Context, addr string) error {
	client := &http.Client{Timeout: 2 * time.Second}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/sluice/ready", nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNotFound {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
