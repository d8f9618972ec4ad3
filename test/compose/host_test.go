package compose

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/sluice-gateway/sluice/envoy"
)

// TestComposeOnHost runs docker-compose.yaml without Docker: every gateway service's own
// command, environment, mounted scripts and health check, taken from the loaded compose
// model, run as host processes in dependency order, with service names mapped to
// 127.0.0.1, container ports to free host ports and volumes to temporary directories.
// It proves the flags, the secrets-as-files, the probes and init.sh (providers, a demo key,
// a chat completion through Envoy and the printed banner) against the real binaries. What
// it cannot prove is the images themselves (Alpine, BusyBox, the Envoy image's bash); the
// static tests cover those. The telemetry services (collector, Jaeger) are not run.
//
// Needs SLUICE_BIN (the sluice binary), SLUICE_ENVOY_BIN, redis-server, redis-cli, sh,
// bash and wget; skipped without them unless SLUICE_E2E_REQUIRED is set.
func TestComposeOnHost(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	need := func(what, v string) string {
		t.Helper()
		if v == "" {
			if os.Getenv("SLUICE_E2E_REQUIRED") != "" {
				t.Fatalf("%s is not available (SLUICE_E2E_REQUIRED)", what)
			}
			t.Skipf("%s is not available", what)
		}
		return v
	}
	look := func(name string) string { p, _ := exec.LookPath(name); return p }
	sluiceBin := need("SLUICE_BIN", os.Getenv("SLUICE_BIN"))
	envoyBin := need("SLUICE_ENVOY_BIN", os.Getenv("SLUICE_ENVOY_BIN"))
	tools := map[string]string{}
	for _, name := range []string{"redis-server", "redis-cli", "sh", "bash", "wget", "go"} {
		tools[name] = need(name, look(name))
	}
	p := loadProject(t)
	dir := t.TempDir()

	// The image's /usr/local/bin on the host: sluice, the fake provider (built from this
	// checkout), and a wget that, like BusyBox's, does not retry.
	binDir := filepath.Join(dir, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(sluiceBin, filepath.Join(binDir, "sluice")); err != nil {
		t.Fatal(err)
	}
	build := exec.Command(tools["go"], "build", "-C", repoRoot, "-o", filepath.Join(binDir, "sluice-fakeprovider"), "./test/fakeprovider")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the fake provider: %v\n%s", err, out)
	}
	writeExec(t, filepath.Join(binDir, "wget"), "#!/bin/sh\nexec "+tools["wget"]+" --tries=1 \"$@\"\n")
	path := binDir + string(os.PathListSeparator) + os.Getenv("PATH")

	// Container ports (unique across the services run here) → free host ports.
	ports := map[int]int{}
	for _, cp := range []int{6379, 9000, 9001, 9002, 9003, 9004, 9100, 8080, 9901, 8000} {
		ports[cp] = freePort(t)
	}
	volumes := map[string]string{} // named volume → host directory
	for name := range p.Volumes {
		volumes[name] = filepath.Join(dir, "volumes", name)
		if err := os.MkdirAll(volumes[name], 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The Envoy bootstrap, rendered as for compose but with the host's addresses.
	bootstrap, err := envoy.Bootstrap(envoy.BootstrapParams{XDSAddr: fmt.Sprintf("127.0.0.1:%d", ports[9002]),
		AdminAddr: fmt.Sprintf("127.0.0.1:%d", ports[9901]), NodeID: composeBootstrap.NodeID, Cluster: composeBootstrap.Cluster})
	if err != nil {
		t.Fatal(err)
	}
	hostBootstrap := filepath.Join(dir, "envoy.yaml")
	if err := os.WriteFile(hostBootstrap, bootstrap, 0o644); err != nil {
		t.Fatal(err)
	}

	services := slices.DeleteFunc(slices.Clone(append(append([]string{}, longRunning...), oneShots...)), func(s string) bool {
		return s == "otel-collector" || s == "jaeger" // images only; nothing of ours to run
	})
	var names []string
	for _, n := range services {
		names = append(names, regexp.QuoteMeta(n))
	}
	svcAddr := regexp.MustCompile(`\b(` + strings.Join(names, "|") + `|0\.0\.0\.0|127\.0\.0\.1|localhost):([0-9]{2,5})\b`)
	bareListen := regexp.MustCompile(`(^|=):([0-9]{2,5})$`)
	devTCP := regexp.MustCompile(`/dev/tcp/127\.0\.0\.1/([0-9]+)\b`)
	redisPort := regexp.MustCompile(`(-p) ([0-9]+)\b`)
	mapPort := func(s string) string {
		n, _ := strconv.Atoi(s)
		if hp, ok := ports[n]; ok {
			return strconv.Itoa(hp)
		}
		return s
	}

	// rewrite turns one string of service svc into its host equivalent.
	rewrite := func(svc types.ServiceConfig, s string) string {
		s = svcAddr.ReplaceAllStringFunc(s, func(m string) string {
			sm := svcAddr.FindStringSubmatch(m)
			port, _ := strconv.Atoi(sm[2])
			if _, ok := ports[port]; !ok {
				return m // e.g. otel-collector:4318: not run here
			}
			return "127.0.0.1:" + mapPort(sm[2])
		})
		s = bareListen.ReplaceAllStringFunc(s, func(m string) string {
			sm := bareListen.FindStringSubmatch(m)
			return sm[1] + "127.0.0.1:" + mapPort(sm[2])
		})
		s = devTCP.ReplaceAllStringFunc(s, func(m string) string {
			return "/dev/tcp/127.0.0.1/" + mapPort(devTCP.FindStringSubmatch(m)[1])
		})
		s = redisPort.ReplaceAllStringFunc(s, func(m string) string {
			sm := redisPort.FindStringSubmatch(m)
			return sm[1] + " " + mapPort(sm[2])
		})
		// Mounts: the longest target first, so /run/sluice/secrets wins over /run/sluice.
		vols := slices.Clone(svc.Volumes)
		slices.SortFunc(vols, func(a, b types.ServiceVolumeConfig) int { return len(b.Target) - len(a.Target) })
		for _, v := range vols {
			host := v.Source
			if v.Type == types.VolumeTypeVolume {
				host = volumes[v.Source]
			}
			if v.Target == "/etc/envoy/sluice.yaml" {
				host = hostBootstrap
			}
			s = strings.ReplaceAll(s, v.Target, host)
		}
		return s
	}
	// rewriteArgs rewrites each argument; a port given as its own argument after -p
	// (redis-cli) is mapped too.
	rewriteArgs := func(svc types.ServiceConfig, in []string) []string {
		var out []string
		for i, a := range in {
			if i > 0 && in[i-1] == "-p" {
				a = mapPort(a)
			}
			out = append(out, rewrite(svc, a))
		}
		return out
	}
	env := func(svc types.ServiceConfig) []string {
		out := []string{"PATH=" + path, "HOME=" + dir,
			// The image runs as uid 65532; here the files belong to whoever runs the test.
			fmt.Sprintf("SLUICE_UID=%d", os.Getuid()), fmt.Sprintf("SLUICE_GID=%d", os.Getgid())}
		for k, v := range svc.Environment {
			if v != nil {
				out = append(out, k+"="+rewrite(svc, *v))
			}
		}
		return out
	}
	argv := func(name string, svc types.ServiceConfig) []string {
		args := rewriteArgs(svc, append(slices.Clone(svc.Entrypoint), svc.Command...))
		switch {
		case name == "redis":
			return append(args, "--port", strconv.Itoa(ports[6379]), "--bind", "127.0.0.1", "--dir", volumes["redis-data"],
				"--save", "", "--protected-mode", "no")
		case name == "envoy":
			args[0] = envoyBin
			return append(args, "--disable-hot-restart", "--use-dynamic-base-id", "--concurrency", "2")
		case len(svc.Entrypoint) == 0: // the image's ENTRYPOINT
			return append([]string{filepath.Join(binDir, "sluice")}, args...)
		case args[0] == "/bin/sh":
			args[0] = tools["sh"]
		}
		return args
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	logs := map[string]*lockedBuffer{}
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if t.Failed() {
			for _, n := range services {
				if b := logs[n]; b != nil {
					t.Logf("---- %s ----\n%s", n, b.String())
				}
			}
		}
	})
	exited := map[string]chan error{}
	start := func(name string) {
		svc := p.Services[name]
		args := argv(name, svc)
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Env = env(svc)
		cmd.Dir = dir
		logs[name] = &lockedBuffer{}
		cmd.Stdout, cmd.Stderr = logs[name], logs[name]
		cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
		cmd.WaitDelay = 5 * time.Second
		if err := cmd.Start(); err != nil {
			t.Fatalf("%s: %q: %v", name, args, err)
		}
		done := make(chan error, 1)
		exited[name] = done
		wg.Go(func() { done <- cmd.Wait() })
	}
	healthy := func(name string) error {
		svc := p.Services[name]
		test := svc.HealthCheck.Test
		args := rewriteArgs(svc, test[1:])
		if test[0] == "CMD-SHELL" {
			args = []string{tools["sh"], "-c", strings.Join(args, " ")}
		} else if p, err := exec.LookPath(args[0]); err == nil {
			args[0] = p
		}
		if args[0] == "wget" {
			args[0] = filepath.Join(binDir, "wget")
		}
		c := exec.Command(args[0], args[1:]...)
		c.Env = env(svc)
		out, err := c.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%q: %v %s", args, err, out)
		}
		return nil
	}

	// Start in dependency order, waiting for each condition as compose does.
	order := topoOrder(t, p, services)
	deadline := time.Now().Add(90 * time.Second)
	for _, name := range order {
		start(name)
		if slices.Contains(oneShots, name) {
			select {
			case err := <-exited[name]:
				if err != nil {
					t.Fatalf("one-shot %s failed: %v\n%s", name, err, logs[name].String())
				}
			case <-time.After(time.Until(deadline)):
				t.Fatalf("one-shot %s did not finish\n%s", name, logs[name].String())
			}
			continue
		}
		for {
			err := healthy(name)
			if err == nil {
				break
			}
			select {
			case werr := <-exited[name]:
				t.Fatalf("%s exited: %v\n%s", name, werr, logs[name].String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s never became healthy: %v\n%s", name, err, logs[name].String())
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Logf("%s healthy", name)
	}

	// init printed a working key and the commands to use it.
	banner := logs["init"].String()
	for _, want := range []string{"model provider demo-openai", "model provider demo-anthropic",
		"a chat completion through", "Sluice is ready on http://127.0.0.1:8080", "Authorization: Bearer sk-sluice-"} {
		if !strings.Contains(banner, want) {
			t.Errorf("init's output lacks %q:\n%s", want, banner)
		}
	}
	t.Logf("init printed:\n%s", banner)
	secret := regexp.MustCompile(`sk-sluice-[0-9A-Za-z]+`).FindString(banner)
	if secret == "" {
		t.Fatalf("no key in init's output:\n%s", banner)
	}
	// The printed Anthropic command works too (translation of nothing: same format).
	gw := fmt.Sprintf("http://127.0.0.1:%d", ports[8080])
	out, err := exec.Command(filepath.Join(binDir, "wget"), "-q", "-O", "-", "--header", "x-api-key: "+secret,
		"--header", "anthropic-version: 2023-06-01", "--header", "Content-Type: application/json",
		"--post-data", `{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"Hello"}]}`,
		gw+"/v1/messages").CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte(`"type":"message"`)) {
		t.Errorf("the printed Anthropic request failed: %v\n%s", err, out)
	}

	checkHostCounters(t, fmt.Sprintf("http://127.0.0.1:%d", ports[9000]), gw, secret,
		filepath.Join(volumes["sluice-secrets"], "admin_token"), tools["redis-cli"], ports[6379])

	// A second run of init (docker compose up again) revokes the first key and mints a new one.
	start("init")
	if err := <-exited["init"]; err != nil {
		t.Fatalf("init, second run: %v\n%s", err, logs["init"].String())
	}
	if !strings.Contains(logs["init"].String(), "revoked the previous demo key") ||
		!strings.Contains(logs["init"].String(), "model provider demo-openai (") {
		t.Errorf("init, second run: want the old key revoked and the providers updated:\n%s", logs["init"].String())
	}
	// The secrets one-shot keeps what it generated.
	start("secrets")
	if err := <-exited["secrets"]; err != nil || strings.Contains(logs["secrets"].String(), "generated") {
		t.Errorf("secrets, second run: want every secret kept: %v\n%s", err, logs["secrets"].String())
	}
}

// checkHostCounters: extproc and the dispatcher count budgets in the compose Redis, the one
// xds reads usage from. With a block budget over the demo key's organization, a request is
// still served (without a counter store extproc would refuse it with 503), its spend shows
// in xds's GET /v1/budgets/{id}/usage once settled, and the counter keys are in Redis.
func checkHostCounters(t *testing.T, admin, gw, key, tokenFile, redisCLI string, redisPort int) {
	t.Helper()
	token, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	call := func(method, url, auth string, body any) (int, map[string]any) {
		t.Helper()
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, err := http.NewRequest(method, url, rd)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+auth)
		req.Header.Set("Content-Type", "application/json")
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var out map[string]any
		_ = json.Unmarshal(raw, &out)
		if out == nil {
			out = map[string]any{"body": string(raw)}
		}
		return resp.StatusCode, out
	}
	code, b := call("POST", admin+"/v1/budgets", strings.TrimSpace(string(token)), map[string]any{"name": "compose-counters",
		"scope": "ORG:default", "window": "day", "limit_usd": "100", "on_breach": "block"})
	id, _ := b["id"].(string)
	if code/100 != 2 || id == "" {
		t.Fatalf("creating a budget: %d %v", code, b)
	}
	chat := map[string]any{"model": "gpt-4o-mini", "messages": []map[string]string{{"role": "user", "content": "Hello"}}}
	var usage map[string]any
	deadline := time.Now().Add(30 * time.Second)
	for {
		// The fleet learns the budget shortly after it is written; until then a request is
		// not counted, so send until one is.
		if code, out := call("POST", gw+"/v1/chat/completions", key, chat); code != http.StatusOK {
			t.Fatalf("a chat completion under a budget: %d %v (a replica without the counter store refuses it)", code, out)
		}
		_, usage = call("GET", admin+"/v1/budgets/"+id+"/usage", strings.TrimSpace(string(token)), nil)
		if spent, _ := usage["spent_usd"].(string); spent != "" && spent != "0" && usage["reserved_usd"] == "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no settled spend in xds's view of the budget: %v", usage)
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Logf("budget usage after requests through the compose fleet: %v", usage)
	out, err := exec.Command(redisCLI, "-p", strconv.Itoa(redisPort), "--scan", "--pattern", "sluice:{*").CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) == 0 {
		t.Errorf("no counter keys (sluice:{…}) in the compose Redis: %v %s", err, out)
	}
}

// topoOrder sorts names so that every service comes after what it depends on.
func topoOrder(t *testing.T, p *types.Project, names []string) []string {
	t.Helper()
	var out []string
	state := map[string]int{}
	var visit func(string)
	visit = func(n string) {
		switch state[n] {
		case 1:
			t.Fatalf("dependency cycle at %s", n)
		case 2:
			return
		}
		state[n] = 1
		deps := keys(p.Services[n].DependsOn)
		for _, d := range deps {
			if slices.Contains(names, d) {
				visit(d)
			}
		}
		state[n] = 2
		out = append(out, n)
	}
	sorted := slices.Clone(names)
	slices.Sort(sorted)
	for _, n := range sorted {
		visit(n)
	}
	return out
}

// freePort returns a loopback port that was free a moment ago, below the kernel's
// ephemeral range (32768 and up on Linux): a port the kernel handed out with :0 and took
// back is the next one it hands to any outgoing connection of the many processes this test
// runs, and the service told to listen there would find it taken (Envoy did, once).
func freePort(t *testing.T) int {
	t.Helper()
	for range 50 {
		port := 20000 + mrand.IntN(12000)
		if l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("no free port below the ephemeral range")
	return 0
}

func writeExec(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
