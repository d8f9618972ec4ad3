// Package charts validates the Helm chart in charts/sluice without a cluster: helm lint and
// helm template (helm pinned in tools/go.mod) for the default values and every documented
// variant, every rendered manifest strictly decoded into the pinned k8s.io/api types, and
// assertions on the rendered output.
package charts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// kubeVersion is the Kubernetes version the chart is rendered for (helm built from source
// defaults to v1.20, below the chart's kubeVersion constraint).
const kubeVersion = "1.34.0"

var (
	repoRoot string
	chartDir string
	helmBin  string
)

func TestMain(m *testing.M) {
	if err := setup(); err != nil {
		fmt.Fprintln(os.Stderr, "charts:", err)
		os.Exit(1)
	}
	code := m.Run()
	if sluiceBin != "" { // built by sluiceBinary (istio_test.go)
		_ = os.RemoveAll(filepath.Dir(sluiceBin))
	}
	os.Exit(code)
}

func setup() error {
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	repoRoot = filepath.Clean(filepath.Join(wd, "..", ".."))
	chartDir = filepath.Join(repoRoot, "charts", "sluice")
	if d := os.Getenv("SLUICE_CHART_DIR"); d != "" { // a copy, e.g. to check that a broken chart fails
		chartDir = d
	}
	if _, err := os.Stat(filepath.Join(chartDir, "Chart.yaml")); err != nil {
		return err
	}
	// SLUICE_HELM names a helm binary; otherwise the one pinned in tools/go.mod, built once
	// into the Go build cache (`go tool -n` prints its path, building it when needed).
	if helmBin = os.Getenv("SLUICE_HELM"); helmBin != "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "tool", "-modfile="+filepath.Join(repoRoot, "tools", "go.mod"), "-n", "helm")
	cmd.Dir = filepath.Join(repoRoot, "tools")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("building helm from tools/go.mod: %v\n%s", err, stderr.String())
	}
	helmBin = strings.TrimSpace(string(out))
	return nil
}

// helm runs the pinned helm with a deadline and returns stdout, or an error carrying stderr.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, helmBin, args...)
	cmd.Dir = repoRoot
	// No repositories, registries or plugins: keep helm's state out of $HOME.
	tmp := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+tmp, "HELM_CONFIG_HOME="+tmp, "HELM_DATA_HOME="+tmp)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// doc is one rendered manifest.
type doc struct {
	Source string // the template it came from
	Raw    []byte // YAML
	Obj    map[string]any
}

func (d doc) Kind() string       { s, _ := d.Obj["kind"].(string); return s }
func (d doc) APIVersion() string { s, _ := d.Obj["apiVersion"].(string); return s }
func (d doc) Name() string {
	m, _ := d.Obj["metadata"].(map[string]any)
	s, _ := m["name"].(string)
	return s
}
func (d doc) String() string { return fmt.Sprintf("%s %s (%s)", d.Kind(), d.Name(), d.Source) }

const (
	releaseName = "gw"
	namespace   = "sluice"
)

// render runs helm template with args and splits the output into documents.
func render(t *testing.T, args ...string) ([]doc, error) {
	t.Helper()
	base := []string{"template", releaseName, chartDir, "--namespace", namespace, "--kube-version", kubeVersion}
	out, err := helm(t, append(base, args...)...)
	if err != nil {
		return nil, err
	}
	return splitDocs(out)
}

func splitDocs(out string) ([]doc, error) {
	var docs []doc
	for _, part := range strings.Split("\n"+out, "\n---") {
		src := ""
		for _, line := range strings.Split(part, "\n") {
			if s, ok := strings.CutPrefix(line, "# Source: "); ok {
				src = s
			}
		}
		if strings.TrimSpace(stripComments(part)) == "" {
			continue
		}
		var obj map[string]any
		if err := yaml.UnmarshalStrict([]byte(part), &obj); err != nil {
			return nil, fmt.Errorf("%s: %w", src, err)
		}
		if obj == nil {
			continue
		}
		docs = append(docs, doc{Source: src, Raw: []byte(part), Obj: obj})
	}
	if len(docs) == 0 {
		return nil, errors.New("helm template rendered nothing")
	}
	return docs, nil
}

func stripComments(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	return b.String()
}
