// Package compose validates the docker compose trial (docker-compose.yaml, the Dockerfile
// and deploy/compose) without a Docker engine: the compose file is loaded with the
// compose-spec Go loader, the same one `docker compose` uses, and every service's image,
// ports, dependencies, health checks and secrets are checked against what each process
// actually listens on. It is its own Go module so the loader's dependencies stay out of
// the gateway's.
//
//	cd test/compose && go test ./...
//
// SLUICE_ENVOY_BIN (a real Envoy) adds `envoy --mode validate` of the compose bootstrap;
// SLUICE_E2E_REQUIRED turns that skip into a failure.
package compose

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/distribution/reference"
)

// The repository root, relative to this package.
var repoRoot = func() string {
	p, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		panic(err)
	}
	return p
}()

const composeFile = "docker-compose.yaml"

// The services the trial consists of. One-shots run to completion; every other service
// runs until stopped and must have a health check.
var (
	longRunning = []string{"redis", "xds", "extproc", "dispatcher", "envoy", "demo-provider", "otel-collector", "jaeger"}
	oneShots    = []string{"secrets", "init"}
)

var (
	projectOnce sync.Once
	project     *types.Project
	projectErr  error
)

// loadProject loads docker-compose.yaml as `docker compose` would, with an empty
// environment so nothing on this machine changes the result.
func loadProject(t *testing.T) *types.Project {
	t.Helper()
	projectOnce.Do(func() {
		opts, err := cli.NewProjectOptions([]string{filepath.Join(repoRoot, composeFile)},
			cli.WithWorkingDirectory(repoRoot), cli.WithEnv(nil), cli.WithResolvedPaths(true))
		if err != nil {
			projectErr = err
			return
		}
		project, projectErr = opts.LoadProject(context.Background())
	})
	if projectErr != nil {
		t.Fatalf("docker compose would reject %s: %v", composeFile, projectErr)
	}
	return project
}

func service(t *testing.T, name string) types.ServiceConfig {
	t.Helper()
	s, ok := loadProject(t).Services[name]
	if !ok {
		t.Fatalf("service %q is missing from %s", name, composeFile)
	}
	return s
}

func TestServices(t *testing.T) {
	p := loadProject(t)
	if p.Name != "sluice" {
		t.Errorf("project name = %q, want sluice", p.Name)
	}
	var want []string
	want = append(append(want, longRunning...), oneShots...)
	var got []string
	for name := range p.Services {
		got = append(got, name)
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("services = %v, want %v (update the lists in this test when adding one)", got, want)
	}
	for _, name := range oneShots {
		if r := p.Services[name].Restart; r != "no" && r != "" {
			t.Errorf("%s: restart %q: a one-shot must not restart", name, r)
		}
	}
	for _, name := range longRunning {
		if r := p.Services[name].Restart; r != "unless-stopped" && r != "always" {
			t.Errorf("%s: restart %q: want unless-stopped", name, r)
		}
	}
}

// Every image is pinned by a version tag, or built from this repository's Dockerfile at
// a target the Dockerfile defines.
func TestImagesPinned(t *testing.T) {
	p := loadProject(t)
	stages := dockerfileStages(t)
	for name, s := range p.Services {
		if s.Build != nil {
			if s.Build.Context != repoRoot {
				t.Errorf("%s: build context %q, want the repository root", name, s.Build.Context)
			}
			if df := s.Build.Dockerfile; df != "Dockerfile" && df != filepath.Join(repoRoot, "Dockerfile") {
				t.Errorf("%s: build dockerfile %q, want Dockerfile", name, df)
			}
			if s.Build.DockerfileInline != "" {
				t.Errorf("%s: inline Dockerfile: build from the repository's Dockerfile", name)
			}
			if !slices.Contains(stages, s.Build.Target) {
				t.Errorf("%s: build target %q is not a stage of the Dockerfile (%v)", name, s.Build.Target, stages)
			}
			if !strings.HasSuffix(s.Image, ":dev") {
				t.Errorf("%s: a locally built image should be tagged :dev, got %q", name, s.Image)
			}
			continue
		}
		if err := pinnedImage(s.Image); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Every service on the gateway image builds it the same way.
	for name, s := range p.Services {
		if s.Image == "sluice:dev" && (s.Build == nil || s.Build.Target != "runtime") {
			t.Errorf("%s: image sluice:dev must build the Dockerfile's runtime target", name)
		}
	}
}

var versionTag = regexp.MustCompile(`^v?[0-9]+(\.[0-9]+)+([.-][0-9A-Za-z.-]+)?$`)

// pinnedImage accepts name:tag where the tag is a full version (x.y or more), optionally
// with a digest.
func pinnedImage(img string) error {
	ref, err := reference.ParseNormalizedNamed(img)
	if err != nil {
		return err
	}
	tagged, ok := ref.(reference.Tagged)
	if !ok {
		return fmt.Errorf("image %q has no tag: pin a version", img)
	}
	if tag := tagged.Tag(); tag == "latest" || !versionTag.MatchString(tag) {
		return fmt.Errorf("image %q: tag %q is not a pinned version", img, tag)
	}
	return nil
}

func TestPublishedPorts(t *testing.T) {
	p := loadProject(t)
	// Only these are reachable from the host: the gateway, and on loopback the admin API
	// and the trace viewer. The dispatcher in particular is reachable only by Envoy.
	want := map[string]string{
		"envoy":  "0.0.0.0:8080->8080", // host IP empty: every interface
		"xds":    "127.0.0.1:9000->9000",
		"jaeger": "127.0.0.1:16686->16686",
	}
	for name, s := range p.Services {
		var got []string
		for _, pc := range s.Ports {
			host := pc.HostIP
			if host == "" {
				host = "0.0.0.0"
			}
			got = append(got, host+":"+pc.Published+"->"+strconv.Itoa(int(pc.Target)))
			if pc.Protocol != "" && pc.Protocol != "tcp" {
				t.Errorf("%s: port %v: protocol %q", name, pc, pc.Protocol)
			}
		}
		w, ok := want[name]
		switch {
		case !ok && len(got) > 0:
			t.Errorf("%s publishes %v; only %v may publish ports", name, got, keys(want))
		case ok && (len(got) != 1 || got[0] != w):
			t.Errorf("%s publishes %v, want [%s]", name, got, w)
		}
	}
	// Envoy's published port is the listener xds tells it to open.
	if _, port := splitAddr(t, flagValue(t, service(t, "xds"), "--envoy-listen")); port != 8080 {
		t.Errorf("xds --envoy-listen port %d, but envoy publishes 8080", port)
	}
}

func TestDependencies(t *testing.T) {
	p := loadProject(t)
	for name, s := range p.Services {
		for dep, d := range s.DependsOn {
			target, ok := p.Services[dep]
			if !ok {
				t.Errorf("%s depends on %q, which is not a service", name, dep)
				continue
			}
			want := types.ServiceConditionHealthy
			if slices.Contains(oneShots, dep) {
				want = types.ServiceConditionCompletedSuccessfully
			}
			if d.Condition != want {
				t.Errorf("%s depends on %s with condition %q, want %q", name, dep, d.Condition, want)
			}
			if want == types.ServiceConditionHealthy && (target.HealthCheck == nil || target.HealthCheck.Disable) {
				t.Errorf("%s waits for %s to be healthy, but %s has no health check", name, dep, dep)
			}
			if !d.Required {
				t.Errorf("%s: dependency on %s is not required", name, dep)
			}
		}
	}
	// The order the trial needs: secrets before anything reads them, Redis before the control
	// plane (its store) and the replicas (their budget and rate-limit counters), the control
	// plane before the replicas, all three before Envoy, and a serving gateway before init
	// mints and tries a key.
	edges := map[string][]string{
		"xds":            {"secrets", "redis"},
		"extproc":        {"secrets", "redis", "xds"},
		"dispatcher":     {"secrets", "redis", "xds"},
		"envoy":          {"xds", "extproc", "dispatcher"},
		"demo-provider":  {"secrets"},
		"init":           {"xds", "envoy", "demo-provider"},
		"otel-collector": {"jaeger"},
	}
	for name, deps := range edges {
		for _, dep := range deps {
			if _, ok := p.Services[name].DependsOn[dep]; !ok {
				t.Errorf("%s must depend on %s", name, dep)
			}
		}
	}
	// The gateway never waits for the telemetry pipeline: a dead collector must not stop it.
	for _, name := range []string{"xds", "extproc", "dispatcher", "envoy"} {
		for dep := range p.Services[name].DependsOn {
			if dep == "otel-collector" || dep == "jaeger" {
				t.Errorf("%s depends on %s: the gateway must start without telemetry", name, dep)
			}
		}
	}
}

// probe is what a health check tests: an HTTP GET of port and path on loopback, or a
// named check that has no port (redis-cli ping).
type probe struct {
	port int
	path string
}

var (
	httpProbe    = regexp.MustCompile(`http://(?:127\.0\.0\.1|localhost):([0-9]+)(/[^\s"']*)`)
	devTCPProbe  = regexp.MustCompile(`/dev/tcp/127\.0\.0\.1/([0-9]+)\b.*GET (/\S*) HTTP/1\.[01]`)
	wgetExitCode = regexp.MustCompile(`\bwget\b.*-O /dev/null`)
)

func healthProbe(t *testing.T, name string, s types.ServiceConfig) probe {
	t.Helper()
	hc := s.HealthCheck
	if hc == nil || hc.Disable || len(hc.Test) < 2 {
		t.Fatalf("%s: no health check", name)
	}
	if hc.Test[0] != "CMD" && hc.Test[0] != "CMD-SHELL" {
		t.Fatalf("%s: health check %q: want CMD or CMD-SHELL", name, hc.Test)
	}
	if hc.Interval == nil || hc.Timeout == nil || hc.Retries == nil || hc.StartPeriod == nil {
		t.Errorf("%s: health check without interval, timeout, retries and start_period", name)
	}
	cmd := strings.Join(hc.Test[1:], " ")
	if m := httpProbe.FindStringSubmatch(cmd); m != nil {
		if strings.Contains(cmd, "wget") && !wgetExitCode.MatchString(cmd) {
			t.Errorf("%s: wget probe should discard the body (-O /dev/null)", name)
		}
		port, _ := strconv.Atoi(m[1])
		return probe{port: port, path: m[2]}
	}
	if m := devTCPProbe.FindStringSubmatch(cmd); m != nil {
		port, _ := strconv.Atoi(m[1])
		return probe{port: port, path: m[2]}
	}
	if strings.Contains(cmd, "redis-cli") && strings.Contains(cmd, "ping") {
		return probe{path: "PING"}
	}
	t.Fatalf("%s: cannot tell what health check %q probes", name, hc.Test)
	return probe{}
}

// Every long-running service has a health check, and it probes what that service really
// listens on, as its own command line (or config file) says.
func TestHealthChecksMatchListeners(t *testing.T) {
	p := loadProject(t)
	for _, name := range oneShots {
		if hc := p.Services[name].HealthCheck; hc != nil && !hc.Disable {
			t.Errorf("%s is a one-shot; it needs no health check", name)
		}
	}
	type want struct {
		port  int
		paths []string
	}
	listen := func(svc, flag string) int {
		_, port := splitAddr(t, flagValue(t, service(t, svc), flag))
		return port
	}
	ready := []string{"/readyz"} // readiness: serving and holding a config
	bootstrap := envoyBootstrap(t)
	otel := otelConfig(t)
	wants := map[string]want{
		"xds":            {listen("xds", "--admin-listen"), ready},
		"extproc":        {listen("extproc", "--health-listen"), ready},
		"dispatcher":     {listen("dispatcher", "--listen"), ready},
		"demo-provider":  {fakeProviderPort(t), []string{"/v1/models"}},
		"envoy":          {bootstrap.adminPort, []string{"/ready"}},
		"otel-collector": {otel.healthPort, []string{"/"}},
		"jaeger":         {14269, []string{"/"}}, // all-in-one 1.x admin port
		"redis":          {0, []string{"PING"}},
	}
	for _, name := range longRunning {
		w, ok := wants[name]
		if !ok {
			t.Errorf("%s: no expectation for its health check in this test", name)
			continue
		}
		got := healthProbe(t, name, p.Services[name])
		if got.port != w.port || !slices.Contains(w.paths, got.path) {
			t.Errorf("%s: health check probes :%d%s, but the service serves %v on :%d", name, got.port, got.path, w.paths, w.port)
		}
	}
	// The images the probes run in have the tool they call (see the Dockerfile and the
	// comments in docker-compose.yaml): BusyBox wget in the sluice image (Alpine) and the
	// collector image (a static BusyBox added by the otel-collector target), bash in Envoy's.
	tool := map[string]string{"xds": "wget", "extproc": "wget", "dispatcher": "wget", "demo-provider": "wget",
		"envoy": "bash", "otel-collector": "/usr/local/bin/busybox", "redis": "redis-cli", "jaeger": "wget"}
	for name, w := range tool {
		hc := p.Services[name].HealthCheck
		first := strings.Fields(strings.Join(hc.Test[1:], " "))[0]
		if first != w {
			t.Errorf("%s: health check runs %q, want %q (the tool its image has)", name, first, w)
		}
	}
	df := readFile(t, "Dockerfile")
	if !strings.Contains(df, "COPY --from=busybox /bin/busybox /usr/local/bin/busybox") {
		t.Error("Dockerfile: the otel-collector target must add /usr/local/bin/busybox for its health check")
	}
}

// The addresses services give each other resolve to a service that listens there on a
// non-loopback address.
func TestAddressesResolve(t *testing.T) {
	xds := service(t, "xds")
	// listenPort returns svc's port for flag, failing if it binds loopback only.
	listenPort := func(svc, flag string) int {
		host, port := splitAddr(t, flagValue(t, service(t, svc), flag))
		if host != "" && host != "0.0.0.0" && host != "::" {
			t.Errorf("%s %s=%s: other containers cannot reach a listener on %q", svc, flag, flagValue(t, service(t, svc), flag), host)
		}
		return port
	}
	check := func(what, addr, svc string, port int) {
		t.Helper()
		host, p := splitAddr(t, addr)
		if host != svc || p != port {
			t.Errorf("%s = %s, want %s:%d", what, addr, svc, port)
		}
	}
	check("xds --extproc-addr", flagValue(t, xds, "--extproc-addr"), "extproc", listenPort("extproc", "--listen"))
	check("xds --dispatcher-addr", flagValue(t, xds, "--dispatcher-addr"), "dispatcher", listenPort("dispatcher", "--listen"))
	fleet := listenPort("xds", "--fleet-listen")
	check("extproc --xds", flagValue(t, service(t, "extproc"), "--xds"), "xds", fleet)
	check("dispatcher --xds", flagValue(t, service(t, "dispatcher"), "--xds"), "xds", fleet)
	listenPort("extproc", "--health-listen")
	listenPort("xds", "--envoy-listen")

	u, err := url.Parse(flagValue(t, xds, "--redis-url"))
	if err != nil || u.Scheme != "redis" {
		t.Fatalf("xds --redis-url: %v", err)
	}
	check("xds --redis-url", u.Host, "redis", 6379)
	if hasFlag(xds, "--store-dir") {
		t.Error("xds: give --redis-url or --store-dir, not both")
	}
	// extproc and the dispatcher keep the budget and rate-limit counters in the same Redis
	// (without one they refuse requests under a budget or rate limit), and fail closed.
	for _, name := range []string{"extproc", "dispatcher"} {
		s := service(t, name)
		if got := flagValue(t, s, "--redis-url"); got != flagValue(t, xds, "--redis-url") {
			t.Errorf("%s --redis-url=%s, want xds's %s (one Redis holds the counters every replica shares)", name, got, flagValue(t, xds, "--redis-url"))
		}
		if hasFlag(s, "--counter-failure-mode") && flagValue(t, s, "--counter-failure-mode") != "closed" {
			t.Errorf("%s: --counter-failure-mode=%s: the trial enforces budgets and rate limits (closed)", name, flagValue(t, s, "--counter-failure-mode"))
		}
		if v := s.Environment["SLUICE_COUNTER_FAILURE_MODE"]; v != nil && *v != "closed" {
			t.Errorf("%s: SLUICE_COUNTER_FAILURE_MODE=%s: the trial enforces budgets and rate limits (closed)", name, *v)
		}
	}

	// Envoy reaches xds over ADS.
	b := envoyBootstrap(t)
	check("the Envoy bootstrap's ADS cluster", net.JoinHostPort(b.adsHost, strconv.Itoa(b.adsPort)), "xds", listenPort("xds", "--ads-listen"))

	// init talks to the admin API, Envoy and the demo provider.
	env := service(t, "init").Environment
	urlOf := func(key string) string {
		v := env[key]
		if v == nil {
			t.Fatalf("init: %s is not set", key)
		}
		u, err := url.Parse(*v)
		if err != nil || u.Scheme != "http" || u.Path != "" {
			t.Fatalf("init: %s=%q: want http://host:port", key, *v)
		}
		return u.Host
	}
	check("init SLUICE_URL", urlOf("SLUICE_URL"), "xds", listenPort("xds", "--admin-listen"))
	check("init SLUICE_GATEWAY_URL", urlOf("SLUICE_GATEWAY_URL"), "envoy", 8080)
	check("init DEMO_PROVIDER_URL", urlOf("DEMO_PROVIDER_URL"), "demo-provider", fakeProviderPort(t))

	// Sluice's processes export OTLP/HTTP to the collector's HTTP receiver.
	otel := otelConfig(t)
	for _, name := range []string{"xds", "extproc", "dispatcher"} {
		v := service(t, name).Environment["SLUICE_OTLP_ENDPOINT"]
		if v == nil {
			t.Errorf("%s: SLUICE_OTLP_ENDPOINT is not set", name)
			continue
		}
		u, err := url.Parse(*v)
		if err != nil {
			t.Fatal(err)
		}
		check(name+" SLUICE_OTLP_ENDPOINT", u.Host, "otel-collector", otel.otlpHTTPPort)
	}
	check("the collector's trace exporter", otel.traceExport, "jaeger", 4317)
}

// fakeProviderPort is the port demo-provider's -addr flag names.
func fakeProviderPort(t *testing.T) int {
	t.Helper()
	s := service(t, "demo-provider")
	cmd := strings.Join(append(slices.Clone(s.Entrypoint), s.Command...), " ")
	m := regexp.MustCompile(`sluice-fakeprovider\s+-addr\s+(\S+)`).FindStringSubmatch(cmd)
	if m == nil {
		t.Fatalf("demo-provider: no `sluice-fakeprovider -addr` in %q", cmd)
	}
	host, port := splitAddr(t, m[1])
	if host != "0.0.0.0" && host != "" {
		t.Errorf("demo-provider -addr %s: other containers cannot reach it", m[1])
	}
	return port
}

// Each split process gets exactly the secrets it reads (mainlib/split.go), each as a
// VAR_FILE naming a file in a volume mounted read-only; the secrets service generates
// every one of them.
func TestSecrets(t *testing.T) {
	p := loadProject(t)
	need := map[string][]string{
		"xds":        {"SLUICE_PEPPER", "SLUICE_MASTER_KEY", "SLUICE_ADMIN_TOKEN", "SLUICE_FLEET_TOKEN"},
		"extproc":    {"SLUICE_PEPPER", "SLUICE_CTX_KEY", "SLUICE_FLEET_TOKEN"},
		"dispatcher": {"SLUICE_MASTER_KEY", "SLUICE_CTX_KEY", "SLUICE_FLEET_TOKEN"},
	}
	generated := generatedSecrets(t)
	for name, vars := range need {
		s := p.Services[name]
		for _, v := range vars {
			if _, ok := s.Environment[v]; ok {
				t.Errorf("%s: %s set directly; pass %s_FILE", name, v, v)
			}
			path := s.Environment[v+"_FILE"]
			if path == nil || *path == "" {
				t.Errorf("%s: %s_FILE is not set", name, v)
				continue
			}
			vol := mountOf(s, *path)
			switch {
			case vol == nil:
				t.Errorf("%s: %s_FILE=%s is in no mounted volume", name, v, *path)
			case vol.Type != types.VolumeTypeVolume || vol.Source != "sluice-secrets":
				t.Errorf("%s: %s_FILE=%s: want the sluice-secrets volume, got %s %s", name, v, *path, vol.Type, vol.Source)
			case !vol.ReadOnly:
				t.Errorf("%s: the secrets volume must be mounted read-only", name)
			}
			if !slices.Contains(generated, filepath.Base(*path)) {
				t.Errorf("%s: %s_FILE=%s, but deploy/compose/secrets.sh generates %v", name, v, *path, generated)
			}
		}
		for k := range s.Environment {
			if strings.HasPrefix(k, "SLUICE_") && strings.HasSuffix(k, "_FILE") && !slices.Contains(vars, strings.TrimSuffix(k, "_FILE")) {
				t.Errorf("%s: %s is a secret this process does not read", name, k)
			}
		}
	}
	// No secret anywhere in the loaded model: any variable that names a key, token, pepper,
	// password or secret must be a _FILE path (or a directory of them).
	secretish := regexp.MustCompile(`(?i)(KEY|TOKEN|PEPPER|PASSWORD|SECRET)`)
	for name, s := range p.Services {
		for k, v := range s.Environment {
			if !secretish.MatchString(k) {
				continue
			}
			if v == nil || !strings.HasPrefix(*v, "/run/sluice/") ||
				!(strings.HasSuffix(k, "_FILE") || strings.HasSuffix(k, "_DIR")) {
				t.Errorf("%s: environment %s looks like a secret given inline; give a file under /run/sluice", name, k)
			}
		}
	}
	// The compose file itself holds no secret literal.
	raw := readFile(t, composeFile)
	literals := []*regexp.Regexp{
		regexp.MustCompile(`sk-[A-Za-z0-9_-]{8,}`),                                       // provider or Sluice keys
		regexp.MustCompile(`[A-Za-z0-9+/]{32,}={0,2}`),                                   // base64 key material
		regexp.MustCompile(`\b[0-9a-fA-F]{32,}\b`),                                       // hex key material
		regexp.MustCompile(`(?i)(api[_-]?key|password|token)\s*[:=]\s*["']?[A-Za-z0-9]`), // inline credentials
		regexp.MustCompile(`SLUICE_(PEPPER|MASTER_KEY|ADMIN_TOKEN|FLEET_TOKEN|CTX_KEY|API_TOKEN)\s*[:=]`),
	}
	for i, line := range strings.Split(raw, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for _, re := range literals {
			if m := re.FindString(line); m != "" {
				t.Errorf("%s:%d: %q looks like a secret literal", composeFile, i+1, m)
			}
		}
	}
	// The generated files are readable by the gateway's uid only.
	sh := readFile(t, "deploy/compose/secrets.sh")
	for _, want := range []string{"umask 077", "head -c 32 /dev/urandom | base64", `chmod 0400`, `[ -s "$f" ]`} {
		if !strings.Contains(sh, want) {
			t.Errorf("deploy/compose/secrets.sh: missing %q", want)
		}
	}
	sec := service(t, "secrets")
	if sec.User != "0:0" {
		t.Errorf("secrets: user %q: it runs as root to hand the volumes to uid 65532", sec.User)
	}
	for _, name := range []string{"xds", "extproc", "dispatcher", "demo-provider", "init"} {
		if u := p.Services[name].User; u != "" {
			t.Errorf("%s: user %q: the image's non-root uid 65532 is meant", name, u)
		}
	}
}

// generatedSecrets lists the file names deploy/compose/secrets.sh writes into the
// secrets volume.
func generatedSecrets(t *testing.T) []string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^for name in ([a-z_ ]+); do`).FindStringSubmatch(readFile(t, "deploy/compose/secrets.sh"))
	if m == nil {
		t.Fatal("deploy/compose/secrets.sh: no `for name in …; do` list of secrets")
	}
	return strings.Fields(m[1])
}

// mountOf returns the volume of s whose target contains path.
func mountOf(s types.ServiceConfig, path string) *types.ServiceVolumeConfig {
	for i, v := range s.Volumes {
		if path == v.Target || strings.HasPrefix(path, strings.TrimSuffix(v.Target, "/")+"/") {
			return &s.Volumes[i]
		}
	}
	return nil
}

// Bind mounts name files in this repository, read-only; named volumes are declared.
func TestMounts(t *testing.T) {
	p := loadProject(t)
	for name, s := range p.Services {
		for _, v := range s.Volumes {
			switch v.Type {
			case types.VolumeTypeBind:
				rel, err := filepath.Rel(repoRoot, v.Source)
				if err != nil || strings.HasPrefix(rel, "..") {
					t.Errorf("%s: bind mount %s is outside the repository", name, v.Source)
					continue
				}
				if fi, err := os.Stat(v.Source); err != nil || !fi.Mode().IsRegular() {
					t.Errorf("%s: bind mount %s: not a file in the repository (%v)", name, rel, err)
				}
				if !v.ReadOnly {
					t.Errorf("%s: bind mount %s must be read-only", name, rel)
				}
			case types.VolumeTypeVolume:
				if _, ok := p.Volumes[v.Source]; !ok {
					t.Errorf("%s: volume %q is not declared", name, v.Source)
				}
			default:
				t.Errorf("%s: mount type %q", name, v.Type)
			}
		}
	}
	// The state volumes keep each replica's last config (bootstrap mode).
	for _, name := range []string{"extproc", "dispatcher"} {
		s := p.Services[name]
		dir := flagValue(t, s, "--state-dir")
		if v := mountOf(s, dir); v == nil || v.Type != types.VolumeTypeVolume || v.ReadOnly {
			t.Errorf("%s: --state-dir %s is not a writable named volume", name, dir)
		}
	}
	// Scripts are run with sh, so they need no execute bit in the checkout.
	for _, pair := range [][2]string{{"secrets", "/etc/sluice/secrets.sh"}, {"init", "/etc/sluice/init.sh"}} {
		ep := p.Services[pair[0]].Entrypoint
		if len(ep) < 2 || ep[0] != "/bin/sh" || ep[1] != pair[1] {
			t.Errorf("%s: entrypoint %q, want /bin/sh %s", pair[0], ep, pair[1])
		}
	}
}

// ---- helpers ------------------------------------------------------------------------------

// flagValue returns the value of --name=value or --name value in s's command.
func flagValue(t *testing.T, s types.ServiceConfig, name string) string {
	t.Helper()
	for i, a := range s.Command {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
		if a == name && i+1 < len(s.Command) {
			return s.Command[i+1]
		}
	}
	t.Fatalf("%s: no %s in command %q", s.Name, name, s.Command)
	return ""
}

func hasFlag(s types.ServiceConfig, name string) bool {
	for _, a := range s.Command {
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

// splitAddr splits host:port (host may be empty).
func splitAddr(t *testing.T, addr string) (string, int) {
	t.Helper()
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port <= 0 || port > 65535 {
		t.Fatalf("address %q: bad port", addr)
	}
	return host, port
}

func readFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
