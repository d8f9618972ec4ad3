package compose

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	line int
	op   string // upper case
	args string
}

func dockerfile(t *testing.T) []instruction {
	t.Helper()
	var out []instruction
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(readFile(t, "Dockerfile"), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if cur.Len() > 0 && strings.HasPrefix(trimmed, "#") {
			continue // a comment inside a continued instruction
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if s, ok := strings.CutSuffix(trimmed, "\\"); ok {
			cur.WriteString(s + " ")
			continue
		}
		cur.WriteString(trimmed)
		op, args, _ := strings.Cut(cur.String(), " ")
		out = append(out, instruction{line: start, op: strings.ToUpper(op), args: strings.TrimSpace(args)})
		cur.Reset()
	}
	if cur.Len() > 0 {
		t.Fatal("Dockerfile ends inside a continued instruction")
	}
	return out
}

var fromLine = regexp.MustCompile(`^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$`)

// dockerfileStages returns the Dockerfile's stage names, in order.
func dockerfileStages(t *testing.T) []string {
	t.Helper()
	var stages []string
	for _, in := range dockerfile(t) {
		if in.op != "FROM" {
			continue
		}
		m := fromLine.FindStringSubmatch(in.args)
		if m == nil {
			t.Fatalf("Dockerfile:%d: FROM %s", in.line, in.args)
		}
		stages = append(stages, strings.ToLower(m[2]))
	}
	return stages
}

// The Dockerfile needs nothing beyond pinned base images, their package managers and this
// repository: pinned FROM lines, no ADD of URLs, no curl | sh, no downloaded binaries.
func TestDockerfile(t *testing.T) {
	ins := dockerfile(t)
	var stages []string
	var froms []string
	for _, in := range ins {
		switch in.op {
		case "FROM":
			m := fromLine.FindStringSubmatch(in.args)
			if m == nil || m[2] == "" {
				t.Errorf("Dockerfile:%d: FROM %s: name every stage (AS name)", in.line, in.args)
				continue
			}
			if slices.Contains(stages, strings.ToLower(m[1])) {
				t.Errorf("Dockerfile:%d: FROM an earlier stage is fine but unexpected here: %s", in.line, in.args)
			} else if err := pinnedImage(m[1]); err != nil {
				t.Errorf("Dockerfile:%d: %v", in.line, err)
			}
			stages = append(stages, strings.ToLower(m[2]))
			froms = append(froms, m[1])
		case "ADD":
			t.Errorf("Dockerfile:%d: ADD: use COPY of repository files", in.line)
		case "COPY":
			if strings.Contains(in.args, "--from=") {
				m := regexp.MustCompile(`--from=(\S+)`).FindStringSubmatch(in.args)
				if !slices.Contains(stages, strings.ToLower(m[1])) {
					t.Errorf("Dockerfile:%d: COPY --from=%s: copy only from a stage of this file", in.line, m[1])
				}
			}
		case "RUN":
			for _, bad := range []string{"curl", "wget", "| sh", "|sh", "| bash", "git clone", "go install", "apk add", "apt-get"} {
				if strings.Contains(in.args, bad) {
					t.Errorf("Dockerfile:%d: RUN uses %q: the build must need only the base images and the repository", in.line, bad)
				}
			}
		}
	}
	if want := []string{"build", "busybox", "otel-collector", "runtime"}; !slices.Equal(stages, want) {
		t.Errorf("stages = %v, want %v (runtime last: it is the default target)", stages, want)
	}
	// The Go toolchain is the one go.mod asks for (major.minor at least).
	goMod := readFile(t, "go.mod")
	m := regexp.MustCompile(`(?m)^go ([0-9]+\.[0-9]+)`).FindStringSubmatch(goMod)
	if m == nil || len(froms) == 0 || !strings.HasPrefix(froms[0], "golang:"+m[1]+".") {
		t.Errorf("build stage FROM %v: want golang:%s.x to match go.mod", froms, m)
	}
	if len(froms) != 4 || !strings.HasPrefix(froms[2], "otel/opentelemetry-collector-contrib:") {
		t.Errorf("FROM lines %v: the otel-collector stage must extend the upstream collector-contrib image", froms)
	}

	text := readFile(t, "Dockerfile")
	for _, want := range []string{
		"ENV CGO_ENABLED=0",
		"COPY go.mod go.sum ./",
		"COPY . .",
		"go build -trimpath -ldflags=\"-s -w\" -o /out/sluice ./cmd/sluice",
		"go build -trimpath -ldflags=\"-s -w\" -o /out/sluice-fakeprovider ./test/fakeprovider",
		"COPY --from=build /out/sluice /out/sluice-fakeprovider /usr/local/bin/",
		"USER 65532:65532",
		`ENTRYPOINT ["/usr/local/bin/sluice"]`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("Dockerfile: missing %q", want)
		}
	}
	// USER comes after the last RUN of the runtime stage, so the gateway never runs as root.
	var lastUser, lastRun int
	inRuntime := false
	for _, in := range ins {
		if in.op == "FROM" {
			inRuntime = strings.HasSuffix(strings.ToLower(in.args), " as runtime")
		}
		if !inRuntime {
			continue
		}
		switch in.op {
		case "USER":
			lastUser = in.line
		case "RUN":
			lastRun = in.line
		}
	}
	if lastUser == 0 || lastUser < lastRun {
		t.Error("Dockerfile: the runtime stage must end as USER 65532:65532")
	}
}

// The build context is the repository's sources: local state (a dev gateway's secrets in
// .sluice), tool installs and VCS data stay out.
func TestDockerignore(t *testing.T) {
	lines := strings.Split(readFile(t, ".dockerignore"), "\n")
	for _, want := range []string{".git", ".sluice", "**/.sluice", ".venv", "bin", "**/node_modules"} {
		if !slices.Contains(lines, want) {
			t.Errorf(".dockerignore: missing %q", want)
		}
	}
	for _, l := range lines {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		// Nothing the build compiles may be excluded.
		for _, needed := range []string{"go.mod", "go.sum", "cmd", "internal", "envoy", "xds", "extproc", "dispatcher", "test/fakeprovider", "test"} {
			if strings.TrimPrefix(strings.TrimSuffix(l, "/"), "/") == needed || l == "*" || l == "**" {
				t.Errorf(".dockerignore excludes %q, which the build needs", l)
			}
		}
	}
}
