package cachectl

import "testing"

// BenchmarkCacheCtl measures each function on a 37 KB Claude Code request, as sent (four
// breakpoints) and stripped (none, the case Force works on). Compare runs with
//
//	go test -run '^$' -bench CacheCtl -count 10 ./dispatcher/cachectl/ > new.txt
//	benchstat old.txt new.txt
func BenchmarkCacheCtl(b *testing.B) {
	sent := fixture(b, "claude_code.json")
	stripped, _ := Strip(sent)
	for _, c := range []struct {
		name string
		run  func()
	}{
		{"Strip", func() { Strip(sent) }},
		{"Strip/none", func() { Strip(stripped) }},
		{"HasCacheControl", func() { HasCacheControl(sent) }},
		{"HasCacheControl/none", func() { HasCacheControl(stripped) }},
		{"Force", func() { Force(stripped) }},
		{"Force/has", func() { Force(sent) }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(sent)))
			b.ReportAllocs()
			for b.Loop() {
				c.run()
			}
		})
	}
}

// TestAllocs holds each function to one allocation, the new body, and none when the
// body stays as it is.
func TestAllocs(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts are checked in full runs")
	}
	sent := fixture(t, "claude_code.json")
	stripped, _ := Strip(sent)
	for name, c := range map[string]struct {
		run func()
		max float64
	}{
		"Strip":                {func() { Strip(sent) }, 1},
		"Strip/none":           {func() { Strip(stripped) }, 0},
		"HasCacheControl":      {func() { HasCacheControl(sent) }, 0},
		"HasCacheControl/none": {func() { HasCacheControl(stripped) }, 0},
		"Force":                {func() { Force(stripped) }, 1},
		"Force/has":            {func() { Force(sent) }, 0},
	} {
		if got := testing.AllocsPerRun(20, c.run); got > c.max {
			t.Errorf("%s: %v allocations per run, want at most %v", name, got, c.max)
		}
	}
}
