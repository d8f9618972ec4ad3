package policyscan

import (
	"testing"

	"github.com/sluice-gateway/sluice/extproc/content"
)

var benchBodies = []struct {
	file  string
	shape content.Shape
}{
	{"claude_code.json", content.AnthropicMessages},
	{"codex_responses.json", content.OpenAIResponses},
}

// BenchmarkScan measures each visitor on a Claude Code request (37 KB) and a Codex
// Responses request (31 KB). Compare runs with
//
//	go test -run '^$' -bench Scan -count 10 ./extproc/policyscan/ > new.txt
//	benchstat old.txt new.txt
func BenchmarkScan(b *testing.B) {
	for _, c := range benchBodies {
		body := fixture(b, c.file)
		n := 0
		count := func(string) bool { n++; return true }
		for name, visit := range map[string]func(){
			"Tools":      func() { Tools(body, c.shape, count) },
			"MCPServers": func() { MCPServers(body, count) },
			"URLs":       func() { URLs(body, count) },
		} {
			b.Run(c.file+"/"+name, func(b *testing.B) {
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					visit()
				}
			})
		}
	}
}

// TestAllocs holds the visitors to their allocation budget on the fixtures: none for
// Tools and MCPServers, and for URLs one copy per URL found in an escaped string.
func TestAllocs(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("allocation counts are checked in full runs without the race detector")
	}
	for _, c := range benchBodies {
		body := fixture(t, c.file)
		nop := func(string) bool { return true }
		for name, c := range map[string]struct {
			visit func()
			max   float64
		}{
			"Tools":      {func() { Tools(body, c.shape, nop) }, 0},
			"MCPServers": {func() { MCPServers(body, nop) }, 0},
			"URLs":       {func() { URLs(body, nop) }, 2},
		} {
			if got := testing.AllocsPerRun(50, c.visit); got > c.max {
				t.Errorf("%s: %v allocations per run, want at most %v", name, got, c.max)
			}
		}
	}
}
